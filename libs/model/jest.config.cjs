// Tensor libs import only @tensorflow/tfjs-core; a program brings the rest by importing
// @tensorflow/tfjs (gradients, chained ops, the cpu backend) once, as the setup file here does.
// The suite runs on both the cpu and the wasm backend (test/model.{cpu,wasm}.test.ts). Libraries
// never import a backend (lint forbids it in sources and tests), so the runner registers wasm here;
// its .wasm binaries resolve from the package under Node.
module.exports = {
  ...require("../../jest.preset.cjs"),
  displayName: "model",
  rootDir: __dirname,
  setupFiles: [require.resolve("@tensorflow/tfjs"), require.resolve("@tensorflow/tfjs-backend-wasm")],
};
