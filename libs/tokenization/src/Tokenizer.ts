import { Context, Effect } from "effect";

/** Ids of the special tokens every tokenizer in patchlm provides. */
export interface SpecialTokens {
  /** Beginning of a document. */
  readonly bos: number;
  /** End of a document; also the separator between documents in token shards. */
  readonly eos: number;
  /** Padding; never a training target. */
  readonly pad: number;
}

/**
 * A tokenizer: text <-> token ids. Implementations: byte-level BPE (trained or loaded from a
 * Hugging Face tokenizer.json), GPT-2 / cl100k ranks, plain bytes.
 *
 * Invariant: `decode(encode(s)) === s` for every valid Unicode string.
 */
export interface Service {
  /** Human-readable kind and size, e.g. "bpe-4096", "bytes", "gpt2". */
  readonly name: string;
  readonly vocabSize: number;
  readonly special: SpecialTokens;
  /**
   * A content hash (hex sha256) identifying the exact vocabulary and rules. Token shards and
   * checkpoints record it so data made by one tokenizer is never read with another.
   */
  readonly hash: string;
  /** Encode one text (no BOS/EOS added). */
  readonly encode: (text: string) => Uint32Array;
  /** Encode many texts, using every core. Order of results matches the input. */
  readonly encodeBatch: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Uint32Array>>;
  /** Decode ids to text; special tokens decode to nothing. */
  readonly decode: (ids: ArrayLike<number>) => string;
}

export class Tokenizer extends Context.Tag("@patchlm/tokenization/Tokenizer")<Tokenizer, Service>() {}
