import { modelSuite } from "./modelSuite";

modelSuite("wasm");
