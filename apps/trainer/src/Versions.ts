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

/** This app's version (src/ and dist/ both sit beside its package.json). */
export const version: string = (JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8")) as { version: string }).version;

/** Versions recorded in checkpoint manifests: what produced the weights. */
export const packageVersions = (): Record<string, string> => ({
  patchlm: version,
  node: process.versions.node,
  "@tensorflow/tfjs": versionOf("@tensorflow/tfjs"),
  effect: versionOf("effect"),
});
