module.exports = { ...require("../../jest.preset.cjs"), displayName: "testing", rootDir: __dirname, setupFiles: [require.resolve("@tensorflow/tfjs")] };
