// Shared jest settings: @swc/jest compiles TypeScript without type checking (tsc does that
// separately), which is several times faster than ts-jest.
module.exports = {
  testEnvironment: "node",
  transform: {
    "^.+\\.(t|j)s$": [
      "@swc/jest",
      { jsc: { parser: { syntax: "typescript" }, target: "es2022" }, module: { type: "commonjs" } },
    ],
  },
  moduleFileExtensions: ["ts", "js", "json", "node"],
  testMatch: ["<rootDir>/{src,test}/**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "/build/"],
};
