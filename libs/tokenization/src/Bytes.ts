import { Effect, Layer } from "effect";
import { descriptionHash } from "./internal/canonical";
import * as Tokenizer from "./Tokenizer";

/** Ids of the special tokens: right after the 256 byte values. */
export const special: Tokenizer.SpecialTokens = { bos: 256, eos: 257, pad: 258 };

/**
 * The plain byte tokenizer: id = UTF-8 byte (0..255), then BOS, EOS, PAD. Lossless for every
 * valid Unicode string by construction. Used by tests and byte-level experiments.
 *
 * `encodeBatch` stays on the calling thread: UTF-8 encoding runs at hundreds of MB/s on one core,
 * so shipping texts to worker threads would cost more than it saves.
 */
export const make = (): Tokenizer.Service => {
  const encoder = new TextEncoder();
  // ignoreBOM: a leading U+FEFF is text like any other and must survive the round trip.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const encode = (text: string): Uint32Array => Uint32Array.from(encoder.encode(text));
  return {
    name: "bytes",
    vocabSize: 259,
    special,
    hash: descriptionHash({ kind: "bytes", version: 1, special }),
    encode,
    encodeBatch: (texts) => Effect.sync(() => texts.map(encode)),
    decode: (ids) => {
      const bytes = new Uint8Array(ids.length);
      let n = 0;
      // Specials (and ids past the vocabulary) decode to nothing.
      for (let i = 0; i < ids.length; i++) if (ids[i] >= 0 && ids[i] < 256) bytes[n++] = ids[i];
      return decoder.decode(bytes.subarray(0, n));
    },
  };
};

export const layer: Layer.Layer<Tokenizer.Tokenizer> = Layer.sync(Tokenizer.Tokenizer, make);
