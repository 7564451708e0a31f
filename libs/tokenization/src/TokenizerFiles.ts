/**
 * A directory's tokenizer, stored beside what it made (a prepared data directory, a run, a
 * checkpoint import), so nothing is re-downloaded or re-trained and every reader decodes with the
 * vocabulary the data was made with.
 *
 * A directory's tokenizer is either a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`),
 * for trained BPE and user files, or `tokenizer.spec.json` naming a built-in one
 * (`{"kind":"bytes"}`, `{"kind":"tiktoken","encoding":"gpt2"}`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Effect, Layer, Schema, type Scope } from "effect";
import { AtomicFile, FileError } from "@patchlm/core";
import * as Bpe from "./Bpe";
import * as Bytes from "./Bytes";
import * as HuggingFace from "./HuggingFace";
import * as Tiktoken from "./Tiktoken";
import * as Tokenizer from "./Tokenizer";

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
export const save = Effect.fn("TokenizerFiles.save")(function* (dir: string, stored: Stored) {
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
export const copy = Effect.fn("TokenizerFiles.copy")(function* (from: string, to: string) {
  const present = TOKENIZER_FILES.filter((f) => fs.existsSync(path.join(from, f)));
  if (present.length === 0) return yield* fileError(from, "NotFound", `no ${TOKENIZER_JSON} or ${TOKENIZER_SPEC}; not a prepared data directory or a run directory`);
  const texts = yield* Effect.forEach(present, (f) => readSource(path.join(from, f)));
  for (const [i, f] of present.entries()) yield* AtomicFile.write(path.join(to, f), texts[i]);
  yield* removeFiles(
    to,
    TOKENIZER_FILES.filter((f) => !present.includes(f)),
  );
});

/** The tokenizer service stored in `dir` (a prepared data dir or a run dir). */
export const load = (dir: string): Effect.Effect<Tokenizer.Service, FileError, Scope.Scope> =>
  Effect.gen(function* () {
    if (fs.existsSync(path.join(dir, TOKENIZER_JSON))) return yield* HuggingFace.fromFile(dir);
    const specPath = path.join(dir, TOKENIZER_SPEC);
    if (!fs.existsSync(specPath)) {
      return yield* fileError(dir, "NotFound", `no ${TOKENIZER_JSON} or ${TOKENIZER_SPEC}; not a prepared data directory or a run directory`);
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

export const layer = (dir: string): Layer.Layer<Tokenizer.Tokenizer, FileError> => Layer.scoped(Tokenizer.Tokenizer, load(dir));

/** Whether `dir` holds a stored tokenizer. */
export const has = (dir: string): boolean => [TOKENIZER_JSON, TOKENIZER_SPEC].some((f) => fs.existsSync(path.join(dir, f)));
