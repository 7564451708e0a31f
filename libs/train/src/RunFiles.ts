/**
 * The files that tie a prepared data directory, a run directory and a checkpoint together:
 * which tokenizer made the data (stored beside it, so nothing is re-downloaded or re-trained),
 * and how to load a checkpoint's model for evaluation or export.
 *
 * A directory's tokenizer is either a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`),
 * for trained BPE and user files, or `tokenizer.spec.json` naming a built-in one
 * (`{"kind":"bytes"}`, `{"kind":"tiktoken","encoding":"gpt2"}`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { Effect, Layer, Schema, type Scope } from "effect";
import { AtomicFile, Config, FileError } from "@patchlm/core";
import { Checkpoint } from "@patchlm/checkpoint";
import { Model } from "@patchlm/model";
import { PatchStrategy } from "@patchlm/patching";
import { Bpe, Bytes, HuggingFace, Tiktoken, Tokenizer } from "@patchlm/tokenization";

export const TOKENIZER_JSON = "tokenizer.json";
export const TOKENIZER_CONFIG = "tokenizer_config.json";
export const TOKENIZER_SPEC = "tokenizer.spec.json";

const BuiltinSpec = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("bytes") }),
  Schema.Struct({ kind: Schema.Literal("tiktoken"), encoding: Schema.Literal("gpt2", "cl100k_base") }),
);
type BuiltinSpec = typeof BuiltinSpec.Type;

/** What to store: a built-in tokenizer, a trained BPE, or a user's tokenizer.json file or directory. */
export type Stored =
  | BuiltinSpec
  | { readonly kind: "bpe"; readonly model: Bpe.Model }
  | { readonly kind: "file"; readonly path: string };

const fileError = (p: string, reason: FileError["reason"], detail: string) => new FileError({ path: p, reason, detail });

const TOKENIZER_FILES = [TOKENIZER_JSON, TOKENIZER_CONFIG, TOKENIZER_SPEC] as const;

const removeFiles = (dir: string, names: ReadonlyArray<string>) =>
  Effect.try({
    try: () => {
      for (const f of names) fs.rmSync(path.join(dir, f), { force: true });
    },
    catch: (e) => fileError(dir, "Unwritable", (e as Error).message),
  });

const readSource = (file: string) =>
  Effect.try({
    try: () => fs.readFileSync(file, "utf8"),
    catch: (e) => fileError(file, (e as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unreadable", (e as Error).message),
  });

/**
 * Store a tokenizer in `dir`, replacing whatever tokenizer was there. The new files are read and
 * written (each atomically) first; only then are the old kind's files removed, so a save that
 * fails (a missing or unreadable source) leaves the directory's tokenizer as it was. Until the
 * removal, `loadTokenizer` still prefers an old tokenizer.json over a new spec.
 */
export const saveTokenizer = Effect.fn("RunFiles.saveTokenizer")(function* (dir: string, stored: Stored) {
  yield* Effect.try({ try: () => fs.mkdirSync(dir, { recursive: true }), catch: (e) => fileError(dir, "Unwritable", (e as Error).message) });
  switch (stored.kind) {
    case "bytes":
    case "tiktoken":
      yield* AtomicFile.write(path.join(dir, TOKENIZER_SPEC), JSON.stringify(stored) + "\n");
      return yield* removeFiles(dir, [TOKENIZER_JSON, TOKENIZER_CONFIG]);
    case "bpe":
      yield* Bpe.save(stored.model, dir);
      return yield* removeFiles(dir, [TOKENIZER_SPEC]);
    case "file": {
      const isDir = fs.existsSync(stored.path) && fs.statSync(stored.path).isDirectory();
      const json = isDir ? path.join(stored.path, TOKENIZER_JSON) : stored.path;
      const configPath = path.join(path.dirname(json), TOKENIZER_CONFIG);
      if (!fs.existsSync(json)) return yield* fileError(json, "NotFound", "expected a Hugging Face tokenizer.json");
      const text = yield* readSource(json);
      const config = fs.existsSync(configPath) ? yield* readSource(configPath) : undefined;
      yield* AtomicFile.write(path.join(dir, TOKENIZER_JSON), text);
      if (config !== undefined) yield* AtomicFile.write(path.join(dir, TOKENIZER_CONFIG), config);
      return yield* removeFiles(dir, config === undefined ? [TOKENIZER_CONFIG, TOKENIZER_SPEC] : [TOKENIZER_SPEC]);
    }
  }
});

/**
 * Make `to`'s tokenizer the one stored in `from` (a prepared data dir, or a staging directory):
 * its files copied, each atomically, then the tokenizer files `from` does not have removed from `to`.
 */
export const copyTokenizer = Effect.fn("RunFiles.copyTokenizer")(function* (from: string, to: string) {
  const present = TOKENIZER_FILES.filter((f) => fs.existsSync(path.join(from, f)));
  if (present.length === 0) return yield* fileError(from, "NotFound", `no ${TOKENIZER_JSON} or ${TOKENIZER_SPEC}; was it made by \`trainer prepare\`?`);
  const texts = yield* Effect.forEach(present, (f) => readSource(path.join(from, f)));
  for (const [i, f] of present.entries()) yield* AtomicFile.write(path.join(to, f), texts[i]);
  yield* removeFiles(
    to,
    TOKENIZER_FILES.filter((f) => !present.includes(f)),
  );
});

/** The tokenizer service stored in `dir` (a prepared data dir or a run dir). */
export const loadTokenizer = (dir: string): Effect.Effect<Tokenizer.Service, FileError, Scope.Scope> =>
  Effect.gen(function* () {
    if (fs.existsSync(path.join(dir, TOKENIZER_JSON))) return yield* HuggingFace.fromFile(dir);
    const specPath = path.join(dir, TOKENIZER_SPEC);
    if (!fs.existsSync(specPath)) {
      return yield* fileError(dir, "NotFound", `no ${TOKENIZER_JSON} or ${TOKENIZER_SPEC}; was it made by \`trainer prepare\`?`);
    }
    const spec = yield* Effect.try({
      try: () => JSON.parse(fs.readFileSync(specPath, "utf8")) as unknown,
      catch: (e) => fileError(specPath, "Malformed", `not JSON: ${(e as Error).message}`),
    }).pipe(
      Effect.flatMap((u) =>
        Schema.decodeUnknown(BuiltinSpec)(u).pipe(
          Effect.mapError((e) => fileError(specPath, "Malformed", `expected {"kind":"bytes"} or {"kind":"tiktoken","encoding":"gpt2"|"cl100k_base"}: ${e.message}`)),
        ),
      ),
    );
    return spec.kind === "bytes" ? Bytes.make() : yield* Tiktoken.make(spec.encoding);
  });

export const tokenizerLayer = (dir: string): Layer.Layer<Tokenizer.Tokenizer, FileError> =>
  Layer.scoped(Tokenizer.Tokenizer, loadTokenizer(dir));

export interface LoadedModel {
  readonly cfg: Config.ModelConfig;
  /** The model's variables; the caller disposes them (`Model.dispose`). */
  readonly params: Model.Weights;
  readonly manifest: Checkpoint.Manifest;
  /** The step directory. */
  readonly dir: string;
}

/**
 * The model of a checkpoint (a step directory, or a run directory through `latest`), as
 * variables. Patch-strategy parameters of a patch-phase checkpoint are left out: the evaluated
 * model is always the token-level network.
 */
export const loadModel = Effect.fn("RunFiles.loadModel")(function* (checkpointPath: string) {
  const loaded = yield* Checkpoint.load(checkpointPath);
  const cfg = yield* Config.decodeConfig(Config.ModelConfig)(`${loaded.dir}/manifest.json modelConfig`, loaded.manifest.modelConfig);
  const params = Model.init(cfg, 0);
  const problems: Array<string> = [];
  for (const [name, v] of Object.entries(params)) {
    const t = loaded.tensors[name];
    if (t === undefined) problems.push(`${name}: missing`);
    else if (t.dtype !== "F32" || t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
      problems.push(`${name}: ${t.dtype} [${t.shape}], expected F32 [${v.shape}]`);
    } else tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, [...t.shape], "float32")));
  }
  for (const name of Object.keys(loaded.tensors)) {
    if (params[name] === undefined && !PatchStrategy.isStrategyParam(name)) problems.push(`${name}: not a parameter of the model`);
  }
  if (problems.length > 0) {
    Model.dispose(params);
    return yield* new Checkpoint.CheckpointError({
      path: loaded.dir,
      reason: "ConfigMismatch",
      detail: `model.safetensors does not fit its manifest's modelConfig:\n  - ${problems.join("\n  - ")}`,
    });
  }
  return { cfg, params, manifest: loaded.manifest, dir: loaded.dir } satisfies LoadedModel;
});
