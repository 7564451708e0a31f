export { runTest, runTestWith, runTestFailure } from "./Effects";
export { expectClose, compareClose, type CloseOptions, type CloseReport } from "./Close";
export { type Compute, expectMatchesCpu, expectNoTensorLeak, outputsOn, randomTensor, useBackend } from "./Tensors";
export { mulberry32, randomFloats, randomInts } from "./Rng";
export * as Processes from "./Processes";
