// The whole suite: one jest run over every project, so `.ci/run` can count results once.
module.exports = {
  projects: ["<rootDir>/libs/*/jest.config.cjs", "<rootDir>/apps/*/jest.config.cjs", "<rootDir>/tools/jest.config.cjs"],
};
