module.exports = { ...require("../../jest.preset.cjs"), displayName: "native", rootDir: __dirname, setupFiles: [require.resolve("@tensorflow/tfjs")] };
