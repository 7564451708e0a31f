/**
 * Patch strategies from a user's module: the plug-in behind `patch.strategyModule` and the
 * trainer's `--strategy-module`. A strategy module is a JavaScript or TypeScript file (TypeScript
 * through tsx: the one running already, as in this workspace, or the user's own, registered on
 * demand) exporting one or more `PatchStrategy` values: as named exports, as the default
 * export, or as an array in either. Its path and sha256 are recorded with a run, and every later
 * use (resume, inspect, evaluation) loads the same file again and refuses one that changed: the
 * weights a run wrote were trained by that code.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Effect, Layer, Schema } from "effect";
import { Config, ConfigError } from "@patchlm/core";
import type { PatchStrategy } from "./PatchStrategy";
import * as Registry from "./Registry";

export class StrategyModuleError extends Schema.TaggedError<StrategyModuleError>()("StrategyModuleError", {
  reason: Schema.Literal("NotFound", "Changed", "ImportFailed", "NoStrategy"),
  path: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `patch strategy module ${this.path}: ${this.detail}`;
  }
}

/** What a run records of its strategy module. */
export const Record = Schema.Struct({
  /** Absolute, so that a run resumed from another working directory finds it. */
  path: Schema.String,
  sha256: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  /** The strategies it exported, by name. */
  strategies: Schema.Array(Schema.String),
});
export type Record = typeof Record.Type;

export interface Loaded extends Record {
  readonly loaded: ReadonlyArray<PatchStrategy>;
}

/** Whether `u` has the shape of a `PatchStrategy` (what an export must be to count as one). */
export const isPatchStrategy = (u: unknown): u is PatchStrategy => {
  if (typeof u !== "object" || u === null) return false;
  const s = u as { [k: string]: unknown };
  return typeof s.name === "string" && s.name !== "" && typeof s.description === "string" && typeof s.parameters === "function" && typeof s.aggregate === "function";
};

/** Every strategy a module namespace exports (named, default, or in arrays), each once. */
export const strategiesOf = (namespace: { readonly [k: string]: unknown }): ReadonlyArray<PatchStrategy> => {
  const found = new Set<PatchStrategy>();
  const add = (u: unknown): void => {
    if (isPatchStrategy(u)) found.add(u);
    else if (Array.isArray(u)) for (const x of u) if (isPatchStrategy(x)) found.add(x);
  };
  for (const [key, value] of Object.entries(namespace)) {
    add(value);
    // A CommonJS module imported from ESM arrives as { default: module.exports }.
    if (key === "default" && typeof value === "object" && value !== null && !isPatchStrategy(value) && !Array.isArray(value)) {
      for (const v of Object.values(value)) add(v);
    }
  }
  return [...found];
};

const sha256Of = (file: string): Effect.Effect<string, StrategyModuleError> =>
  Effect.try({
    try: () => createHash("sha256").update(fs.readFileSync(file)).digest("hex"),
    catch: (e) =>
      new StrategyModuleError({
        path: file,
        reason: "NotFound",
        detail: (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : `cannot read it: ${(e as Error).message}`,
      }),
  });

/**
 * Load a strategy module. `recorded` (from the run that used it) makes a module whose content
 * changed since an error naming both hashes, so a resumed or evaluated run never silently runs
 * other code than it was trained with.
 */
export const load = Effect.fn("StrategyModule.load")(function* (modulePath: string, recorded?: Pick<Record, "sha256">) {
  const file = path.resolve(modulePath);
  const sha256 = yield* sha256Of(file);
  if (recorded !== undefined && recorded.sha256 !== sha256) {
    return yield* new StrategyModuleError({
      path: file,
      reason: "Changed",
      detail: `its content changed since the run recorded it (sha256 ${recorded.sha256.slice(0, 12)}…, now ${sha256.slice(0, 12)}…); restore that version, or start a new run`,
    });
  }
  const namespace = yield* Effect.tryPromise({
    try: () => importModule(file),
    catch: (e) => new StrategyModuleError({ path: file, reason: "ImportFailed", detail: `could not be imported: ${(e as Error).message}` }),
  });
  const loaded = strategiesOf(namespace);
  if (loaded.length === 0) {
    return yield* new StrategyModuleError({
      path: file,
      reason: "NoStrategy",
      detail: `exports no patch strategy (exports: ${Object.keys(namespace).join(", ") || "none"}); export objects with name, description, parameters(C, K) and aggregate(x, params)`,
    });
  }
  const result: Loaded = { path: file, sha256, strategies: loaded.map((s) => s.name), loaded };
  return result;
});

const isTypeScript = (file: string): boolean => /\.[cm]?ts$/.test(file);

/**
 * Import a module file. A TypeScript file that plain node cannot load (an installed, compiled
 * trainer runs without tsx) is loaded through tsx when the user's project has it, found from the
 * module's folder or the working directory; else the error says how to make it loadable.
 */
const importModule = async (file: string): Promise<{ readonly [k: string]: unknown }> => {
  const url = pathToFileURL(file).href;
  try {
    return (await import(url)) as { readonly [k: string]: unknown };
  } catch (e) {
    if (!isTypeScript(file) || (e as NodeJS.ErrnoException).code !== "ERR_UNKNOWN_FILE_EXTENSION") throw e;
    // tsx's ESM entry of its API, through its exports map ("import" condition): a require-style
    // resolution would give its CommonJS face, which cannot register the ESM hooks here.
    const api = [path.dirname(file), process.cwd()]
      .map((from) => {
        try {
          const manifest = createRequire(path.join(from, "noop.js")).resolve("tsx/package.json");
          const target = (JSON.parse(fs.readFileSync(manifest, "utf8")) as { exports?: { "./esm/api"?: { import?: { default?: string } } } }).exports?.["./esm/api"]?.import?.default;
          return target === undefined ? undefined : path.join(path.dirname(manifest), target);
        } catch {
          return undefined;
        }
      })
      .find((found) => found !== undefined);
    if (api === undefined) {
      throw new Error("it is TypeScript and this process runs none: add tsx to your project (npm install --save-dev tsx), or compile the module to JavaScript", { cause: e });
    }
    // tsImport loads the file through tsx's loader scoped to this one import (nothing global).
    const tsx = (await import(pathToFileURL(api).href)) as { tsImport: (specifier: string, parentURL: string) => Promise<unknown> };
    return (await tsx.tsImport(url, pathToFileURL(__filename).href)) as { readonly [k: string]: unknown };
  }
};

/**
 * The built-in strategies plus those of the loaded modules and any `extra` ones (strategies a
 * program defines in code); a name taken twice is an error.
 */
export const registryLayer = (
  modules: ReadonlyArray<Loaded>,
  extra: ReadonlyArray<PatchStrategy> = [],
): Layer.Layer<Registry.PatchStrategies, Registry.StrategyError> => {
  const added = [...modules.flatMap((m) => m.loaded), ...extra];
  return added.length === 0 ? Registry.layer : Registry.layerWith(added);
};

/** The record a run keeps (no functions). */
export const toRecord = (m: Loaded): Record => ({ path: m.path, sha256: m.sha256, strategies: m.strategies });

/** Whether a recorded module's file is still there and unchanged (for `inspect`; reads the file). */
export const status = (recorded: Pick<Record, "path" | "sha256">): "unchanged" | "changed" | "missing" => {
  try {
    return createHash("sha256").update(fs.readFileSync(recorded.path)).digest("hex") === recorded.sha256 ? "unchanged" : "changed";
  } catch {
    return "missing";
  }
};

/** The file beside a run's config that records its strategy module. */
export const RECORD_FILE = "strategy-module.json";

/** The strategy module a run directory recorded, if any. */
export const readRecord = (runDir: string): Effect.Effect<Record | undefined, ConfigError> => {
  const file = path.join(runDir, RECORD_FILE);
  if (!fs.existsSync(file)) return Effect.succeed(undefined);
  return Effect.try({
    try: () => JSON.parse(fs.readFileSync(file, "utf8")) as unknown,
    catch: (e) => new ConfigError({ source: file, issues: [`not JSON: ${(e as Error).message}`] }),
  }).pipe(Effect.flatMap((json) => Config.decodeConfig(Record)(file, json)));
};
