import { Effect, Either } from "effect";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";
import { ConfigError, FileError } from "@patchlm/core";
import * as RunConfig from "./RunConfig";

/** Parse a JSON or YAML config file (by extension; YAML is a superset, used for anything else). */
export const readConfigFile = Effect.fn("ConfigFile.read")(function* (file: string) {
  const text = yield* Effect.try({
    try: () => fs.readFileSync(file, "utf8"),
    catch: (e) =>
      new FileError({
        path: file,
        reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unreadable",
        detail: `cannot read config file: ${(e as Error).message}`,
      }),
  });
  return yield* Effect.try({
    try: () => (path.extname(file) === ".json" ? JSON.parse(text) : YAML.parse(text)) as unknown,
    catch: (e) => new FileError({ path: file, reason: "Malformed", detail: `expected JSON or YAML: ${(e as Error).message}` }),
  });
});

/**
 * Overrides from the command line: `key.path=value` pairs. Values parse as JSON when they can
 * (numbers, booleans, null, quoted strings), otherwise they stay strings.
 */
export const parseOverrides = (pairs: ReadonlyArray<string>): Either.Either<Record<string, unknown>, ConfigError> => {
  const out: Record<string, unknown> = {};
  const issues: Array<string> = [];
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      issues.push(`--set ${pair}: expected key.path=value`);
      continue;
    }
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    setPath(out, key.split("."), value);
  }
  return issues.length > 0 ? Either.left(new ConfigError({ source: "flags", issues })) : Either.right(out);
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const setPath = (target: Record<string, unknown>, keys: ReadonlyArray<string>, value: unknown): void => {
  let node = target;
  for (const k of keys.slice(0, -1)) {
    if (!isObject(node[k])) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
};

/** Deep merge: later layers win; objects merge key by key, everything else is replaced. */
export const merge = (...layers: ReadonlyArray<unknown>): unknown =>
  layers.reduce<unknown>((acc, layer) => {
    if (layer === undefined) return acc;
    if (!isObject(acc) || !isObject(layer)) return layer;
    const out: Record<string, unknown> = { ...acc };
    for (const [k, v] of Object.entries(layer)) out[k] = k in out ? merge(out[k], v) : v;
    return out;
  }, {});

/**
 * Resolve a run config from (in increasing priority) a base object, an optional file and flag
 * overrides, then validate it once, reporting every problem and naming the file or "flags".
 */
export const resolve = Effect.fn("ConfigFile.resolve")(function* (opts: {
  readonly base?: unknown;
  readonly file?: string;
  readonly overrides?: unknown;
}) {
  const fromFile = opts.file === undefined ? undefined : yield* readConfigFile(opts.file);
  const source = opts.file === undefined ? "flags" : `${opts.file} + flags`;
  const merged = merge(opts.base ?? {}, fromFile, opts.overrides ?? {});
  return yield* RunConfig.decode(source, merged);
});
