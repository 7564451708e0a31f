// The suite runs on both the cpu and the wasm backend. Libraries never import a backend (lint
// forbids it in their sources and tests), so the test runner registers wasm here.
module.exports = {
  ...require("../../jest.preset.cjs"),
  displayName: "losses",
  rootDir: __dirname,
  setupFiles: [require.resolve("@tensorflow/tfjs"), require.resolve("@tensorflow/tfjs-backend-wasm")],
};
