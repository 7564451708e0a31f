/**
 * Evaluation text from a prepared data directory or from plain files.
 *
 * A prepared directory's validation split is one token stream, `[BOS]? tokens EOS` per document
 * (see @patchlm/data `Prepare`). It is scored as it was trained on: one stream, windows crossing
 * document boundaries. Its documents are recovered by splitting on EOS and decoding, for bytes
 * counts and for the cloze suite.
 */
import * as fs from "node:fs";
import { Effect, Stream } from "effect";
import { Corpus, Shards } from "@patchlm/data";
import type { Tokenizer } from "@patchlm/tokenization";
import { EvalInputError, TokenizerMismatch } from "./Errors";

/** A token stream to score, and the UTF-8 bytes of the text its targets spell. */
export interface TokenStream {
  /** Names it in output: a file, or `<dir> (validation)`. */
  readonly name: string;
  readonly tokens: Int32Array;
  readonly bytes: number;
}

const utf8 = new TextEncoder();

/** Token ids of one split's stream split into documents at EOS (BOS dropped). */
export const splitDocuments = (tokens: ArrayLike<number>, special: Tokenizer.SpecialTokens): Array<Int32Array> => {
  const docs: Array<Int32Array> = [];
  let current: Array<number> = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === special.eos) {
      docs.push(Int32Array.from(current));
      current = [];
    } else if (t !== special.bos) current.push(t);
  }
  if (current.length > 0) docs.push(Int32Array.from(current));
  return docs;
};

/** Tokens of a split, at most `maxTokens` of them (from the start). Needs a Scope (open shard files). */
export const splitTokens = Effect.fn("Documents.splitTokens")(function* (
  dir: string,
  tokenizer: Tokenizer.Service,
  split: "train" | "validation" = "validation",
  maxTokens = Infinity,
) {
  const data = yield* Shards.open(dir, split, tokenizer);
  if (data.tokens === 0) return yield* new EvalInputError({ path: dir, reason: "Empty", detail: `the ${split} split holds no tokens` });
  return yield* data.read(0, Math.min(data.tokens, maxTokens));
});

/**
 * The validation stream of a prepared directory, prefixed with EOS so that its first token is
 * scored too (every other document follows an EOS already). Bytes: the decoded documents.
 */
export const validationStream = (dir: string, tokenizer: Tokenizer.Service, maxTokens = Infinity) =>
  Effect.scoped(
    Effect.map(splitTokens(dir, tokenizer, "validation", maxTokens), (tokens): TokenStream => {
      const withPrefix = new Int32Array(tokens.length + 1);
      withPrefix[0] = tokenizer.special.eos;
      withPrefix.set(tokens, 1);
      const bytes = splitDocuments(tokens, tokenizer.special).reduce((n, d) => n + utf8.encode(tokenizer.decode(d)).length, 0);
      return { name: `${dir} (validation)`, tokens: withPrefix, bytes };
    }),
  );

/** The validation documents of a prepared directory, decoded, in stream order. */
export const validationDocuments = (dir: string, tokenizer: Tokenizer.Service) =>
  Effect.scoped(Effect.map(splitTokens(dir, tokenizer), (tokens) => splitDocuments(tokens, tokenizer.special).map((d) => tokenizer.decode(d)).filter((t) => t.trim() !== "")));

/** A text as a stream: `prefix` then its tokens; bytes are the text's. */
export const textStream = (name: string, text: string, tokenizer: Tokenizer.Service, prefix = tokenizer.special.eos): TokenStream => {
  const ids = tokenizer.encode(text);
  const tokens = new Int32Array(ids.length + 1);
  tokens[0] = prefix;
  tokens.set(ids, 1);
  return { name, tokens, bytes: utf8.encode(text).length };
};

/**
 * The UTF-8 text files of a file or folder (`.txt` below a folder, recursively, sorted), each a
 * document of its own. Strict UTF-8: a bad byte fails naming the file and offset.
 */
export const textFiles = Effect.fn("Documents.textFiles")(function* (p: string) {
  if (!fs.existsSync(p)) return yield* new EvalInputError({ path: p, reason: "NotFound", detail: "no such file or directory" });
  const source = Corpus.text(p);
  const inputs = yield* Corpus.files(source);
  if (inputs.length === 0) return yield* new EvalInputError({ path: p, reason: "Empty", detail: "no .txt files" });
  const docs = yield* Stream.runCollect(Corpus.documentsOf(inputs, Corpus.rootOf(source), { recordWords: 0 }));
  return Array.from(docs);
});

/** Is `p` a prepared data directory (it has a shard manifest)? */
export const isPrepared = (p: string): boolean => fs.existsSync(`${p}/${Shards.manifestFile}`);

/**
 * The token streams of a data argument: a prepared directory's validation stream (at most
 * `maxTokens` tokens), or one stream per text file of a file or folder, files taken in order
 * until about `maxTokens` targets (a file is never cut).
 */
export const streams = Effect.fn("Documents.streams")(function* (data: string, tokenizer: Tokenizer.Service, maxTokens = Infinity) {
  if (isPrepared(data)) return [yield* validationStream(data, tokenizer, maxTokens)];
  const docs = yield* textFiles(data);
  const out: Array<TokenStream> = [];
  let total = 0;
  for (const d of docs) {
    if (total >= maxTokens) break;
    const s = textStream(d.id, d.text, tokenizer);
    out.push(s);
    total += s.tokens.length - 1;
  }
  return out;
});

/**
 * Ids a tokenizer can put in front of a model: all of its vocabulary but a PAD id added past the
 * end (a Hugging Face vocabulary without one gets it there), which no text encodes to and nothing
 * feeds the model.
 */
export const idsFed = (tokenizer: Pick<Tokenizer.Service, "vocabSize" | "special">): number =>
  tokenizer.special.pad === tokenizer.vocabSize - 1 ? tokenizer.vocabSize - 1 : tokenizer.vocabSize;

/**
 * Every way `tokenizer` differs from the one a checkpoint was made with: its hash, and whether its
 * ids fit the model's vocabulary. An empty recorded hash (unknown, e.g. an imported model without
 * tokenizer.json) is not compared. The fit is checked even when the hashes agree: an import
 * records the hash of whatever tokenizer.json came with the model, which proves nothing about
 * its size.
 */
export const tokenizerDifferences = (
  recorded: { readonly tokenizerHash: string; readonly vocabSize: number },
  tokenizer: Pick<Tokenizer.Service, "name" | "hash" | "vocabSize" | "special">,
): Array<string> => {
  const out: Array<string> = [];
  if (recorded.tokenizerHash !== "" && recorded.tokenizerHash !== tokenizer.hash) {
    out.push(`tokenizer hash: the checkpoint was trained with ${recorded.tokenizerHash}, the tokenizer "${tokenizer.name}" has ${tokenizer.hash}`);
  }
  if (idsFed(tokenizer) > recorded.vocabSize) {
    out.push(`vocabulary: the tokenizer "${tokenizer.name}" has ${tokenizer.vocabSize} ids, the model only ${recorded.vocabSize}`);
  } else if (out.length > 0 && tokenizer.vocabSize !== recorded.vocabSize) {
    out.push(`vocabulary: the tokenizer "${tokenizer.name}" has ${tokenizer.vocabSize} ids, the model ${recorded.vocabSize}`);
  }
  return out;
};

/** Fail with `TokenizerMismatch` (naming `path`) when `tokenizerDifferences` finds any. */
export const ensureTokenizer = (
  path: string,
  recorded: { readonly tokenizerHash: string; readonly vocabSize: number },
  tokenizer: Pick<Tokenizer.Service, "name" | "hash" | "vocabSize" | "special">,
): Effect.Effect<void, TokenizerMismatch> => {
  const differences = tokenizerDifferences(recorded, tokenizer);
  return differences.length === 0 ? Effect.void : Effect.fail(new TokenizerMismatch({ path, differences }));
};
