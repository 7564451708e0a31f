module.exports = { ...require("../../jest.preset.cjs"), displayName: "schedulers", rootDir: __dirname };
