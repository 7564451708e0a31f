import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

/** The functions of build/Release/patchlm_native.node (src/cc/addon.cc). */
export interface Addon {
  info(): { blasConfig: string; blasCore: string; blasThreads: number; poolThreads: number };
  setThreads(blas: number, pool: number): void;
  /** For each i: out[i·M·N ..] = op(a[aOffsets[i] ..]) · op(b[bOffsets[i] ..]), row-major. */
  gemm(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    M: number,
    N: number,
    K: number,
    transposeA: boolean,
    transposeB: boolean,
    aOffsets: Int32Array,
    bOffsets: Int32Array,
  ): void;
}

export type Loaded = { readonly _tag: "Loaded"; readonly addon: Addon } | { readonly _tag: "Missing"; readonly reason: string };

const buildDir = path.join(__dirname, "..", "..", "build");
export const addonPath = path.join(buildDir, "Release", "patchlm_native.node");

// The addon is a run-time artifact of `npm ci` (or `npm run build -w @patchlm/native`), so it is
// loaded by path, and its absence is an expected outcome with a reason, not an import error.
const load = createRequire(__filename);

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split("\n")[0];

const missingReason = (): string => {
  const explanation = path.join(buildDir, "unavailable.txt");
  if (existsSync(explanation)) return readFileSync(explanation, "utf8").trim();
  return `${path.relative(process.cwd(), addonPath)} is missing: the addon was never built (npm run build -w @patchlm/native)`;
};

let loaded: Loaded | undefined;

/** Load the addon once; a missing or unloadable addon yields the reason. */
export const loadAddon = (): Loaded => {
  if (loaded !== undefined) return loaded;
  if (!existsSync(addonPath)) {
    loaded = { _tag: "Missing", reason: missingReason() };
    return loaded;
  }
  try {
    loaded = { _tag: "Loaded", addon: load(addonPath) as Addon };
  } catch (e) {
    // E.g. libopenblas.so.0 removed after the build, or a build for another Node ABI.
    loaded = { _tag: "Missing", reason: `${addonPath} failed to load: ${firstLine(e)}` };
  }
  return loaded;
};
