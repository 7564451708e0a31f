module.exports = { ...require("../../jest.preset.cjs"), displayName: "eval", rootDir: __dirname, setupFiles: [require.resolve("@tensorflow/tfjs")] };
