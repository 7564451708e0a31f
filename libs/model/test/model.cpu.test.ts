import { modelSuite } from "./modelSuite";

modelSuite("cpu");
