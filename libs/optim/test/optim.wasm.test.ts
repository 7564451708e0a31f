// Registers the wasm backend for this file only; its .wasm binaries resolve from the package.
require("@tensorflow/tfjs-backend-wasm");
import { optimSuite } from "./optimSuite";

optimSuite("wasm");
