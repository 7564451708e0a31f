import { fusedSuite } from "./fusedSuite";

fusedSuite("wasm");
