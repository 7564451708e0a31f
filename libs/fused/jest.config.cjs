// The fallbacks are tested on both the cpu and the wasm backend. Libraries never import a backend
// (lint forbids it in sources and tests), so the runner registers wasm here; its .wasm binaries
// resolve from the package under Node.
module.exports = {
  ...require("../../jest.preset.cjs"),
  displayName: "fused",
  rootDir: __dirname,
  setupFiles: [require.resolve("@tensorflow/tfjs"), require.resolve("@tensorflow/tfjs-backend-wasm")],
};
