import { optimSuite } from "./optimSuite";

optimSuite("wasm");
