/**
 * The `--tokenizer` choice of `trainer prepare`, and training a BPE on a corpus's train split
 * once (cached in the output directory beside the shards).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Effect, Either, Stream } from "effect";
import { ConfigError } from "@patchlm/core";
import { Corpus, Split } from "@patchlm/data";
import { RunFiles } from "@patchlm/train";
import { Bpe } from "@patchlm/tokenization";

export type Choice =
  | { readonly kind: "bpe"; readonly vocabSize: number }
  | { readonly kind: "bytes" }
  | { readonly kind: "tiktoken"; readonly encoding: "gpt2" | "cl100k_base" }
  | { readonly kind: "file"; readonly path: string };

/** Parse `--tokenizer`: bpe:<size>, bytes, gpt2, cl100k, file:<path>. */
export const parse = (text: string): Either.Either<Choice, ConfigError> => {
  const bad = (why: string) => Either.left(new ConfigError({ source: "flags", issues: [`--tokenizer ${text}: ${why}`] }));
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

/**
 * Make sure `outDir` holds the chosen tokenizer. A BPE is trained on the corpus's *train*
 * documents only (the same document split `prepare` makes), and reused while the corpus, the
 * split and the vocabulary size are unchanged.
 */
export const ensure = Effect.fn("Tokenizers.ensure")(function* (
  outDir: string,
  choice: Choice,
  source: Corpus.Source,
  split: { readonly seed: number; readonly validationFraction: number },
) {
  if (choice.kind !== "bpe") return yield* RunFiles.saveTokenizer(outDir, choice);
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
  const sourcePath = path.join(outDir, SOURCE_FILE);
  const cached =
    fs.existsSync(path.join(outDir, RunFiles.TOKENIZER_JSON)) &&
    fs.existsSync(sourcePath) &&
    fs.readFileSync(sourcePath, "utf8") === JSON.stringify(provenance, null, 2) + "\n";
  if (cached) {
    yield* Effect.logInfo(`tokenizer: reusing ${path.join(outDir, RunFiles.TOKENIZER_JSON)} (bpe:${choice.vocabSize}, same corpus)`);
    return;
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
  fs.mkdirSync(outDir, { recursive: true });
  yield* RunFiles.saveTokenizer(outDir, { kind: "bpe", model });
  const tmp = `${sourcePath}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(provenance, null, 2) + "\n");
  fs.renameSync(tmp, sourcePath);
  yield* Effect.logInfo(`tokenizer: trained bpe:${choice.vocabSize} on ${scored.length - plan.validationDocuments} train documents in ${((performance.now() - started) / 1000).toFixed(1)}s`);
});
