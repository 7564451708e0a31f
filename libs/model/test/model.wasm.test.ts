// Registers the wasm backend for this file only (its .wasm binaries resolve from the package
// under Node). Libraries never pick a backend; this test has to, and libs/testing's useBackend
// does not register wasm, hence the one exemption from the boundary rule.
// eslint-disable-next-line @nx/enforce-module-boundaries
require("@tensorflow/tfjs-backend-wasm");
import { modelSuite } from "./modelSuite";

modelSuite("wasm");
