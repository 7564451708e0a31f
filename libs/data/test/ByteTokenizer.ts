import { Tokenizer } from "@patchlm/tokenization";
import { Effect, Layer, Logger, LogLevel } from "effect";
import { createHash } from "node:crypto";

/**
 * A stand-in byte tokenizer for these tests: ids 0..255 are UTF-8 bytes, then BOS, EOS, PAD.
 * `vocabSize` can be raised (specials move to the top) to exercise the uint32 shard path.
 */
export const makeByteTokenizer = (vocabSize = 259): Tokenizer.Service => {
  const special = { bos: vocabSize - 3, eos: vocabSize - 2, pad: vocabSize - 1 };
  const encode = (text: string): Uint32Array => Uint32Array.from(Buffer.from(text, "utf8"));
  return {
    name: `test-bytes-${vocabSize}`,
    vocabSize,
    special,
    hash: createHash("sha256").update(`test-bytes\0${vocabSize}`).digest("hex"),
    encode,
    encodeBatch: (texts) => Effect.sync(() => texts.map(encode)),
    decode: (ids) => Buffer.from(Array.from(ids).filter((i) => i < 256)).toString("utf8"),
  };
};

/** The byte tokenizer as the `Tokenizer` service, with logging off so test output stays readable. */
export const byteTokenizerLayer = (vocabSize = 259): Layer.Layer<Tokenizer.Tokenizer> =>
  Layer.merge(Layer.succeed(Tokenizer.Tokenizer, makeByteTokenizer(vocabSize)), Logger.minimumLogLevel(LogLevel.None));
