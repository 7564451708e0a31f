import * as path from "node:path";
import { Effect, Layer, Option, Schema, Stream } from "effect";
import { AtomicFile } from "@patchlm/core";
import { learnMerges, type MergeTable } from "./internal/bpeTrainer";
import { byteToUnicode, bytesToSymbols } from "./internal/byteLevel";
import type { EncoderTable } from "./internal/byteLevelBpe";
import { ByteLevelBpeEncoder } from "./internal/byteLevelBpe";
import { descriptionHash } from "./internal/canonical";
import * as EncodePool from "./internal/encodePool";
import { countWords } from "./internal/preTokenize";
import { configuredSpecials, isRecord } from "./internal/json";
import { resolveSpecials } from "./internal/specials";
import { makeDecoder } from "./internal/tokenBytes";
import * as Tokenizer from "./Tokenizer";

/**
 * Byte-level BPE (GPT-2 style): trained here, saved as a Hugging Face `tokenizer.json` that loads
 * with the same ids in `tokenizers` (Rust/Python/Node), tokenizers.js and transformers.js.
 *
 * Why our own trainer rather than the `tokenizers` binding's `train`: the Node binding only runs
 * the default trainer (vocab 30000, no options, files only), so sizes above ~30k (32000 is a common
 * choice) are out of reach and the 256 byte symbols are not all guaranteed; the incremental
 * algorithm is short, deterministic by construction, and trains the 22 MB embedded corpus to 32000
 * tokens in a few seconds on one core (tools/bench-tokenizer.ts measures it).
 *
 * Layout of the ids: 0..255 are the single bytes in byte order (the same ids as the `Bytes`
 * tokenizer), 256..258 are BOS, EOS, PAD, then the learned tokens in the order they were learned.
 */

/** Names of the special tokens written into the vocabulary. */
export interface SpecialTokenNames {
  readonly bos: string;
  readonly eos: string;
  readonly pad: string;
}

export const defaultSpecialTokens: SpecialTokenNames = { bos: "<|bos|>", eos: "<|eos|>", pad: "<|pad|>" };

export interface TrainOptions {
  /** Total vocabulary size: 256 bytes + 3 specials + learned tokens. At least 259. */
  readonly vocabSize: number;
  /** A pair seen fewer times than this is never merged. Default 2. */
  readonly minFrequency?: number;
  readonly specialTokens?: SpecialTokenNames;
}

export class BpeTrainError extends Schema.TaggedError<BpeTrainError>()("BpeTrainError", {
  reason: Schema.Literal("InvalidOptions", "CorpusTooSmall"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `BPE training: ${this.reason}: ${this.detail}`;
  }
}

/**
 * A byte-level BPE vocabulary, trained or loaded: the `tokenizer.json` document plus the tables
 * the encoder and decoder use. Plain data; `make` turns it into a `Tokenizer.Service`.
 */
export interface Model {
  /** The Hugging Face `tokenizer.json` document. */
  readonly json: Readonly<Record<string, unknown>>;
  /** The `tokenizer_config.json` document saved next to it (names the special tokens). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly name: string;
  readonly vocabSize: number;
  readonly special: Tokenizer.SpecialTokens;
  /** `Tokenizer.Service.hash`: sha256 of the canonical JSON of the document and the special ids. */
  readonly hash: string;
  readonly table: EncoderTable;
  /** Bytes of each id; undefined for special tokens and unused ids, which decode to nothing. */
  readonly tokenBytes: ReadonlyArray<Uint8Array | undefined>;
}

/**
 * Train on texts. Each text is pre-tokenized with GPT-2's pattern and counted; the merges are
 * learned from the word counts (see `learnMerges`). Deterministic: the result depends only on the
 * multiset of words, not on the order of texts. Fails with `CorpusTooSmall` when the corpus runs
 * out of pairs seen `minFrequency` times before reaching `vocabSize`.
 */
export const train = Effect.fn("Bpe.train")(function* (texts: Iterable<string>, options: TrainOptions) {
  yield* validate(options);
  const words = new Map<string, number>();
  for (const text of texts) countWords(text, words);
  return yield* fromWordCounts(words, options);
});

/** `train` over a stream of texts: only the word counts are kept, not the texts. */
export const trainStream = <E, R>(
  texts: Stream.Stream<string, E, R>,
  options: TrainOptions,
): Effect.Effect<Model, E | BpeTrainError, R> =>
  Effect.gen(function* () {
    yield* validate(options);
    const words = new Map<string, number>();
    yield* Stream.runForEach(texts, (text) => Effect.sync(() => countWords(text, words)));
    return yield* fromWordCounts(words, options);
  }).pipe(Effect.withSpan("Bpe.trainStream"));

/** Maximum vocabulary: symbol ids are packed in 21 bits in the trainer and encoder. */
const MAX_VOCAB = 2 ** 21 - 1;

const validate = (options: TrainOptions): Effect.Effect<void, BpeTrainError> => {
  const problems: Array<string> = [];
  const { vocabSize, minFrequency = 2, specialTokens = defaultSpecialTokens } = options;
  if (!Number.isInteger(vocabSize) || vocabSize < 259 || vocabSize > MAX_VOCAB)
    problems.push(`vocabSize must be an integer from 259 (256 bytes + 3 specials) to ${MAX_VOCAB}, got ${vocabSize}`);
  if (!Number.isInteger(minFrequency) || minFrequency < 1)
    problems.push(`minFrequency must be an integer >= 1, got ${minFrequency}`);
  const names = [specialTokens.bos, specialTokens.eos, specialTokens.pad];
  if (names.some((n) => n.length === 0) || new Set(names).size !== 3)
    problems.push(`special token names must be distinct and non-empty, got ${JSON.stringify(names)}`);
  return problems.length === 0
    ? Effect.void
    : Effect.fail(new BpeTrainError({ reason: "InvalidOptions", detail: problems.join("; ") }));
};

const fromWordCounts = (words: ReadonlyMap<string, number>, options: TrainOptions): Effect.Effect<Model, BpeTrainError> =>
  Effect.gen(function* () {
    const { vocabSize, minFrequency = 2, specialTokens = defaultSpecialTokens } = options;
    const table = learnMerges(words, vocabSize - 259, minFrequency);
    if (table.exhausted)
      return yield* Effect.fail(
        new BpeTrainError({
          reason: "CorpusTooSmall",
          detail:
            `the corpus (${words.size} distinct words) yields only ${table.tokens.length + 3} tokens from pairs ` +
            `seen at least ${minFrequency} times; requested vocabSize ${vocabSize}`,
        }),
      );
    yield* Effect.logDebug("BPE merges learned").pipe(
      Effect.annotateLogs({ words: words.size, merges: table.merges.length, vocabSize }),
    );
    const json = yield* trainedJson(table, specialTokens);
    const config = {
      tokenizer_class: "PreTrainedTokenizerFast",
      bos_token: specialTokens.bos,
      eos_token: specialTokens.eos,
      pad_token: specialTokens.pad,
      // transformers.js and transformers default to "cleaning up" spaces before punctuation on
      // decode, which would break the lossless round trip.
      clean_up_tokenization_spaces: false,
    };
    const model = fromJson(json, config);
    // Our own document always has the supported shape.
    if (Option.isNone(model)) return yield* Effect.die(new Error("trained tokenizer.json was not recognised"));
    return model.value;
  });

/** The `tokenizer.json` document of a trained table, in the layout `tokenizers` 0.23 saves. */
const trainedJson = (
  table: MergeTable,
  names: SpecialTokenNames,
): Effect.Effect<Record<string, unknown>, BpeTrainError> => {
  const text = (symbol: number): string => bytesToSymbols(table.tokens[symbol]);
  // Symbols 0..255 keep their ids; learned symbols move up by 3 to make room for the specials.
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[byteToUnicode[b]] = b;
  const specials = [names.bos, names.eos, names.pad];
  specials.forEach((name, i) => (vocab[name] = 256 + i));
  for (let symbol = 256; symbol < table.tokens.length; symbol++) {
    const key = text(symbol);
    if (key in vocab)
      return Effect.fail(
        new BpeTrainError({ reason: "InvalidOptions", detail: `special token name ${JSON.stringify(key)} is also a learned token` }),
      );
    vocab[key] = symbol + 3;
  }
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return Effect.succeed({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => ({
      id: 256 + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    // add_prefix_space false: a leading space would not round-trip.
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: table.merges.map(([left, right]) => [text(left), text(right)]),
    },
  });
};

/**
 * Read a `tokenizer.json` document as a byte-level BPE, if it is one this encoder reproduces
 * exactly: a BPE model (no dropout, no subword prefix/suffix, no byte fallback, no
 * `ignore_merges`) with every byte symbol, no normalizer, the ByteLevel pre-tokenizer with its
 * regex and without prefix space, the ByteLevel decoder, and only special added tokens. That is
 * GPT-2's layout and ours. Anything else is `None` (`HuggingFace.fromFile` then uses the generic
 * Rust path). `config` is the `tokenizer_config.json` document, used to name the specials.
 */
export const fromJson = (json: unknown, config?: unknown): Option.Option<Model> => {
  if (!isRecord(json) || !isRecord(json.model)) return Option.none();
  const m = json.model;
  const plainBpe =
    (m.type === undefined || m.type === "BPE") &&
    (m.dropout == null || m.dropout === 0) &&
    !m.continuing_subword_prefix &&
    !m.end_of_word_suffix &&
    !m.byte_fallback &&
    !m.ignore_merges &&
    isRecord(m.vocab) &&
    Array.isArray(m.merges);
  const pre = json.pre_tokenizer;
  const byteLevelPre =
    isRecord(pre) && pre.type === "ByteLevel" && pre.add_prefix_space === false && pre.use_regex !== false;
  const byteLevelDecoder = isRecord(json.decoder) && json.decoder.type === "ByteLevel";
  const added = json.added_tokens ?? [];
  if (!plainBpe || json.normalizer != null || !byteLevelPre || !byteLevelDecoder || !Array.isArray(added))
    return Option.none();
  const addedTokens: Array<{ id: number; content: string }> = [];
  for (const a of added) {
    if (!isRecord(a) || a.special !== true || !isId(a.id) || typeof a.content !== "string") return Option.none();
    addedTokens.push({ id: a.id, content: a.content });
  }

  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(m.vocab as Record<string, unknown>)) {
    if (!isId(id)) return Option.none();
    vocab.set(token, id);
  }
  const byteIds = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    const id = vocab.get(byteToUnicode[b]);
    if (id === undefined) return Option.none();
    byteIds[b] = id;
  }
  const merges = new Int32Array(3 * (m.merges as Array<unknown>).length);
  let k = 0;
  for (const merge of m.merges as Array<unknown>) {
    // Both serializations: "a b" (before tokenizers 0.20) and ["a", "b"].
    const parts = typeof merge === "string" ? merge.split(" ") : merge;
    if (!Array.isArray(parts) || parts.length !== 2 || typeof parts[0] !== "string" || typeof parts[1] !== "string")
      return Option.none();
    const left = vocab.get(parts[0]);
    const right = vocab.get(parts[1]);
    const merged = vocab.get(parts[0] + parts[1]);
    if (left === undefined || right === undefined || merged === undefined) return Option.none();
    merges[k++] = left;
    merges[k++] = right;
    merges[k++] = merged;
  }

  const addedIds = new Map(addedTokens.map((a) => [a.content, a.id]));
  let baseSize = 0;
  for (const id of vocab.values()) baseSize = Math.max(baseSize, id + 1);
  for (const a of addedTokens) baseSize = Math.max(baseSize, a.id + 1);
  const cfg = isRecord(config) ? config : {};
  const { special, vocabSize } = resolveSpecials((token) => addedIds.get(token) ?? vocab.get(token), baseSize, configuredSpecials(cfg));

  const unicodeToByte = new Map(byteToUnicode.map((c, b) => [c, b]));
  const tokenBytes = new Array<Uint8Array | undefined>(vocabSize).fill(undefined);
  const silent = new Set([...addedIds.values(), special.bos, special.eos, special.pad]);
  for (const [token, id] of vocab) {
    if (silent.has(id)) continue;
    const bytes = new Uint8Array(token.length);
    for (let i = 0; i < token.length; i++) {
      const b = unicodeToByte.get(token[i]);
      // A token outside the byte alphabet cannot come from this encoder; the generic path decodes it.
      if (b === undefined) return Option.none();
      bytes[i] = b;
    }
    tokenBytes[id] = bytes;
  }

  return Option.some({
    json,
    config: cfg,
    name: `bpe-${vocabSize}`,
    vocabSize,
    special,
    hash: jsonTokenizerHash(json, special, vocabSize),
    table: { byteIds, merges },
    tokenBytes,
  });
};

/** The hash of any tokenizer built from a `tokenizer.json` document (shared with `HuggingFace`). */
export const jsonTokenizerHash = (json: unknown, special: Tokenizer.SpecialTokens, vocabSize: number): string =>
  descriptionHash({ kind: "tokenizer.json", tokenizer: json, special, vocabSize });

/**
 * Save as a Hugging Face tokenizer directory: `tokenizer.json` and `tokenizer_config.json`, each
 * written atomically. `HuggingFace.fromFile(dir)` loads it back with the same hash.
 */
export const save = Effect.fn("Bpe.save")(function* (model: Model, dir: string) {
  yield* AtomicFile.write(path.join(dir, "tokenizer.json"), JSON.stringify(model.json, null, 2) + "\n");
  yield* AtomicFile.write(path.join(dir, "tokenizer_config.json"), JSON.stringify(model.config, null, 2) + "\n");
});

/** The tokenizer service of a model; its worker threads live as long as the scope. */
export const make = Effect.fn("Bpe.make")(function* (model: Model) {
  const encoder = new ByteLevelBpeEncoder(model.table);
  const encode = (text: string): Uint32Array => encoder.encode(text);
  const pool = yield* EncodePool.make({ kind: "bpe", table: model.table }, encode);
  const service: Tokenizer.Service = {
    name: model.name,
    vocabSize: model.vocabSize,
    special: model.special,
    hash: model.hash,
    encode,
    encodeBatch: pool.encodeBatch,
    decode: makeDecoder(model.tokenBytes),
  };
  return service;
});

export const layer = (model: Model): Layer.Layer<Tokenizer.Tokenizer> => Layer.scoped(Tokenizer.Tokenizer, make(model));

// Ids beyond MAX_VOCAB would not fit the encoder's packed pair keys; such files take the generic path.
const isId = (value: unknown): value is number =>
  Number.isInteger(value) && (value as number) >= 0 && (value as number) < MAX_VOCAB;
