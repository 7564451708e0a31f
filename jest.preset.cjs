// Shared jest settings: @swc/jest compiles TypeScript without type checking (tsc does that
// separately), which is several times faster than ts-jest.
module.exports = {
  testEnvironment: "node",
  // Jest 30 "soft deletes" globals a test file left behind and wraps them in warning proxies; an
  // Effect fiber still scheduled from an earlier file in the same worker then recursed through
  // those proxies until the stack overflowed (seen in CI). Leave globals alone.
  testEnvironmentOptions: {
    globalsCleanup: "off",
    // Libs resolve to their TypeScript sources in the workspace (see tsconfig.base.json).
    customExportConditions: ["@patchlm/source", "node", "node-addons"],
  },
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
