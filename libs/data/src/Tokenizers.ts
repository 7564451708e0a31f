/**
 * Which tokenizer a prepared data directory is made with (`bpe:<size>`, `bytes`, `gpt2`, `cl100k`,
 * `file:<path>`), and training a BPE on a corpus's *train* split once (cached in the output
 * directory beside the shards). The tokenizer is made in a staging directory and installed in the
 * output only once the shards are written (see `Prepare.run`).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect, Either, Stream } from "effect";
import { AtomicFile, ConfigError, FileError } from "@patchlm/core";
import { Bpe, TokenizerFiles } from "@patchlm/tokenization";
import * as Corpus from "./Corpus";
import * as Split from "./Split";

export type Choice =
  | { readonly kind: "bpe"; readonly vocabSize: number }
  | { readonly kind: "bytes" }
  | { readonly kind: "tiktoken"; readonly encoding: "gpt2" | "cl100k_base" }
  | { readonly kind: "file"; readonly path: string };

/**
 * Parse a tokenizer choice: bpe:<size>, bytes, gpt2, cl100k, file:<path>. An error names `key`
 * (the flag or config key it came from) and the text.
 */
export const parse = (text: string, key = "tokenizer", source = "flags"): Either.Either<Choice, ConfigError> => {
  const bad = (why: string) => Either.left(new ConfigError({ source, issues: [`${key} ${text}: ${why}`] }));
  if (text === "bytes") return Either.right({ kind: "bytes" });
  if (text === "gpt2") return Either.right({ kind: "tiktoken", encoding: "gpt2" });
  if (text === "cl100k") return Either.right({ kind: "tiktoken", encoding: "cl100k_base" });
  if (text.startsWith("file:")) return Either.right({ kind: "file", path: text.slice(5) });
  const m = /^bpe:(\d+)$/.exec(text);
  if (m !== null) {
    const vocabSize = Number(m[1]);
    return vocabSize >= 259 ? Either.right({ kind: "bpe", vocabSize }) : bad("a BPE vocabulary needs at least 259 entries (256 bytes + 3 specials)");
  }
  return bad("expected bpe:<vocab size>, bytes, gpt2, cl100k or file:<tokenizer.json>");
};

const SOURCE_FILE = "tokenizer.source.json";

interface Provenance {
  readonly tokenizer: string;
  readonly inputsHash: string;
  readonly seed: number;
  readonly validationFraction: number;
  readonly splitRule: "stratified";
  readonly recordWords: number;
}

/** A tokenizer made for `prepare` in a directory of its own, not yet the output's. */
export interface Staged {
  /** Holds the tokenizer's files; removed when the scope closes. */
  readonly dir: string;
  /** tokenizer.source.json's text for a BPE (why it may be reused), none for the others. */
  readonly provenance: string | undefined;
}

/**
 * Make the chosen tokenizer in a staging directory, not in `outDir`: `prepare` encodes with it
 * there, and `install` makes it the output's only after the shards are written, so a prepare that
 * fails (a corpus that turns out unreadable, a missing tokenizer file) never replaces the
 * tokenizer an existing data directory's shards were made with. A BPE is trained on the corpus's
 * *train* documents only (the same document split `prepare` makes), and `outDir`'s is reused while
 * the corpus, the split and the vocabulary size are unchanged.
 */
export const stage = Effect.fn("Tokenizers.stage")(function* (
  outDir: string,
  choice: Choice,
  source: Corpus.Source,
  split: { readonly seed: number; readonly validationFraction: number },
) {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-tokenizer-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true })),
  );
  if (choice.kind !== "bpe") {
    yield* TokenizerFiles.save(dir, choice);
    return { dir, provenance: undefined } satisfies Staged;
  }
  const recordWords = Corpus.defaultRecordWords;
  const inputs = yield* Corpus.files(source);
  const provenance: Provenance = {
    tokenizer: `bpe:${choice.vocabSize}`,
    inputsHash: yield* Corpus.contentHash(inputs),
    ...split,
    // The split rule: documents held out per folder of the source (Split's strata).
    splitRule: "stratified",
    recordWords,
  };
  const text = JSON.stringify(provenance, null, 2) + "\n";
  const sourcePath = path.join(outDir, SOURCE_FILE);
  const cached =
    fs.existsSync(path.join(outDir, TokenizerFiles.TOKENIZER_JSON)) && fs.existsSync(sourcePath) && fs.readFileSync(sourcePath, "utf8") === text;
  if (cached) {
    yield* Effect.logInfo(`tokenizer: reusing ${path.join(outDir, TokenizerFiles.TOKENIZER_JSON)} (bpe:${choice.vocabSize}, same corpus)`);
    yield* TokenizerFiles.copy(outDir, dir);
    return { dir, provenance: text } satisfies Staged;
  }
  const started = performance.now();
  const docs = Corpus.documents(source, { recordWords });
  // Two passes: the split needs every document's score before it can say which are train.
  const scored: Array<Split.Scored> = [];
  yield* Stream.runForEach(docs, (d) => Effect.sync(() => void scored.push(Split.scored(split.seed, d.id))));
  const plan = Split.plan(split.seed, scored, split.validationFraction);
  const trainTexts = docs.pipe(
    Stream.filter((d) => Split.assign(plan, d.id) === "train"),
    Stream.map((d) => d.text),
  );
  const model = yield* Bpe.trainStream(trainTexts, { vocabSize: choice.vocabSize });
  yield* TokenizerFiles.save(dir, { kind: "bpe", model });
  yield* Effect.logInfo(`tokenizer: trained bpe:${choice.vocabSize} on ${scored.length - plan.validationDocuments} train documents in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  return { dir, provenance: text } satisfies Staged;
});

/**
 * Make a staged tokenizer `outDir`'s (after `prepare` wrote the shards it made): its files, then
 * its provenance, or none (a stale tokenizer.source.json would let a later BPE run reuse another
 * kind's tokenizer.json).
 */
export const install = Effect.fn("Tokenizers.install")(function* (staged: Staged, outDir: string) {
  yield* TokenizerFiles.copy(staged.dir, outDir);
  const sourcePath = path.join(outDir, SOURCE_FILE);
  if (staged.provenance !== undefined) return yield* AtomicFile.write(sourcePath, staged.provenance);
  yield* Effect.try({
    try: () => fs.rmSync(sourcePath, { force: true }),
    catch: (e) => new FileError({ path: sourcePath, reason: "Unwritable", detail: (e as Error).message }),
  });
});
