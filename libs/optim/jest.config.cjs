module.exports = { ...require("../../jest.preset.cjs"), displayName: "optim", rootDir: __dirname };
