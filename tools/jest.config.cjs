// Tests of the workspace itself (package manifests, build configuration), not of a lib.
module.exports = { ...require("../jest.preset.cjs"), displayName: "workspace", rootDir: __dirname, testMatch: ["<rootDir>/test/**/*.test.ts"] };
