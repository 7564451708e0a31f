import { optimSuite } from "./optimSuite";

optimSuite("cpu");
