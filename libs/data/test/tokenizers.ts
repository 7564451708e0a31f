import { Bytes, Tokenizer } from "@patchlm/tokenization";
import { Layer, Logger, LogLevel } from "effect";
import { createHash } from "node:crypto";

/** The plain byte tokenizer of libs/tokenization: ids 0..255 are UTF-8 bytes, then BOS, EOS, PAD. */
export const bytes: Tokenizer.Service = Bytes.make();

/**
 * The byte tokenizer with a larger vocabulary and its specials moved to the top ids, so shards
 * need uint32 (and a different hash, for mismatch tests).
 */
export const wideBytes = (vocabSize: number): Tokenizer.Service => ({
  ...bytes,
  name: `bytes-${vocabSize}`,
  vocabSize,
  special: { bos: vocabSize - 3, eos: vocabSize - 2, pad: vocabSize - 1 },
  hash: createHash("sha256").update(`test-wide-bytes\0${vocabSize}`).digest("hex"),
});

/** A tokenizer as the `Tokenizer` service, with logging off so test output stays readable. */
export const layerOf = (t: Tokenizer.Service = bytes): Layer.Layer<Tokenizer.Tokenizer> =>
  Layer.merge(Layer.succeed(Tokenizer.Tokenizer, t), Logger.minimumLogLevel(LogLevel.None));
