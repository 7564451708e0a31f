module.exports = { ...require("../../jest.preset.cjs"), displayName: "tokenization", rootDir: __dirname };
