import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs";

export type TensorflowProbe =
  | { readonly _tag: "Available"; readonly packageName: string }
  | { readonly _tag: "Missing"; readonly reason: string };

/** GPU first: both packages register a backend named "tensorflow". */
export const tensorflowPackages = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] as const;

// Optional peer dependencies: loaded by name at run time so that their absence (the usual case:
// their install script downloads libtensorflow, which these machines cannot reach) is not a
// build or import error.
const load = createRequire(__filename);

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split("\n")[0];

/**
 * Try to load tfjs-node-gpu, then tfjs-node. Loading one registers the "tensorflow" backend with
 * the @tensorflow/tfjs-core it resolves; if that is another copy than ours, it is useless here.
 */
export const probeTensorflow = (): TensorflowProbe => {
  if (tf.findBackendFactory("tensorflow") != null) return { _tag: "Available", packageName: "(already registered)" };
  const reasons: Array<string> = [];
  for (const packageName of tensorflowPackages) {
    try {
      load(packageName);
    } catch (e) {
      reasons.push(`${packageName}: ${firstLine(e)}`);
      continue;
    }
    if (tf.findBackendFactory("tensorflow") != null) return { _tag: "Available", packageName };
    reasons.push(
      `${packageName} loaded but registered "tensorflow" with another copy of @tensorflow/tfjs-core; ` +
        `install the version matching @tensorflow/tfjs ${tf.version.tfjs}`,
    );
  }
  return { _tag: "Missing", reason: reasons.join("; ") };
};
