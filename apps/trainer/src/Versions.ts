import * as fs from "node:fs";
import * as path from "node:path";

const versionOf = (pkg: string): string => {
  try {
    const file = require.resolve(`${pkg}/package.json`);
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
};

/** Versions recorded in checkpoint manifests: what produced the weights. */
export const packageVersions = (): Record<string, string> => ({
  patchlm: (JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8")) as { version: string }).version,
  node: process.versions.node,
  "@tensorflow/tfjs": versionOf("@tensorflow/tfjs"),
  effect: versionOf("effect"),
});
