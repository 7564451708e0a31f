import nx from "@nx/eslint-plugin";

// Module boundaries are the architecture: pure libs never see tensors, tensor libs never pick a
// backend, only the backend lib and the apps do.
const tensorBackends = [
  "@tensorflow/tfjs-backend-*",
  "@tensorflow/tfjs-node",
  "@tensorflow/tfjs-node-gpu",
];

const constraints = (forTests) => {
  // Tests may also use the jest helpers of libs/testing; production code may not.
  const t = forTests ? ["type:testing"] : [];
  return [
    { sourceTag: "type:pure", onlyDependOnLibsWithTags: ["type:pure", ...t], bannedExternalImports: ["@tensorflow/*"] },
    // Tensor libs use the API alone (@tensorflow/tfjs-core): the union package would register
    // the cpu and webgl backends as a side effect of importing a lib. Tests are programs and may.
    {
      sourceTag: "type:tensor",
      onlyDependOnLibsWithTags: ["type:pure", "type:tensor", ...t],
      bannedExternalImports: forTests ? tensorBackends : [...tensorBackends, "@tensorflow/tfjs"],
    },
    {
      sourceTag: "type:native",
      onlyDependOnLibsWithTags: ["type:pure", "type:tensor", "type:native", ...t],
      bannedExternalImports: ["@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu"],
    },
    { sourceTag: "type:backend", onlyDependOnLibsWithTags: ["type:pure", "type:tensor", "type:native", "type:backend", ...t] },
    { sourceTag: "type:testing", onlyDependOnLibsWithTags: ["type:pure", "type:tensor", "type:backend", "type:testing"] },
    // The CLI runtime is the apps' alone: no lib's behaviour depends on how it is started.
    { sourceTag: "type:cli", onlyDependOnLibsWithTags: ["type:pure", ...t] },
    { sourceTag: "type:app", onlyDependOnLibsWithTags: ["type:pure", "type:tensor", "type:backend", "type:native", "type:cli", ...t] },
  ];
};

const boundaries = (forTests) => [
  "error",
  { enforceBuildableLibDependency: false, allow: [], depConstraints: constraints(forTests) },
];

export default [
  ...nx.configs["flat/base"],
  ...nx.configs["flat/typescript"],
  { ignores: ["**/node_modules", "**/build", "**/dist", ".nx", "runs", "**/*.cjs"] },
  {
    files: ["**/*.ts"],
    rules: {
      "@nx/enforce-module-boundaries": boundaries(false),
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    files: ["**/test/**/*.ts", "tools/**/*.ts"],
    rules: { "@nx/enforce-module-boundaries": boundaries(true) },
  },
];
