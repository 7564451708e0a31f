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
 * Invariant: `decode(encode(s)) === s` for every valid Unicode string (lone UTF-16 surrogates
 * are not valid Unicode; they come back as U+FFFD). Special-token strings inside a text (say a
 * document that quotes "<|endoftext|>") are encoded as ordinary text: special ids are only ever
 * inserted by patchlm itself, so no text can forge a document boundary.
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
  /** Encode one text (no BOS/EOS added), on the calling thread. */
  readonly encode: (text: string) => Uint32Array;
  /** Encode many texts, using every core. Order of results matches the input. */
  readonly encodeBatch: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Uint32Array>>;
  /**
   * Decode ids to text; special tokens, and ids that name no token (outside the vocabulary, or
   * unused), decode to nothing. Byte sequences that are not UTF-8 (only possible for ids no text
   * encodes to, e.g. sampled by a model) decode to U+FFFD.
   */
  readonly decode: (ids: ArrayLike<number>) => string;
}

export class Tokenizer extends Context.Tag("@patchlm/tokenization/Tokenizer")<Tokenizer, Service>() {}
