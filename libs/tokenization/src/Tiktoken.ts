import { Effect, Layer } from "effect";
import * as SpecialTokenNames from "gpt-tokenizer/specialTokens";
import gptTokenizerPackage from "gpt-tokenizer/package.json";
import { descriptionHash } from "./internal/canonical";
import * as EncodePool from "./internal/encodePool";
import { loadTiktoken, tiktokenEncoder, type TiktokenEncoding } from "./internal/encoders";
import { resolveSpecials } from "./internal/specials";
import { makeDecoder } from "./internal/tokenBytes";
import * as Tokenizer from "./Tokenizer";

/** The encodings offered: GPT-2's (r50k) and GPT-3.5/4's (cl100k), by their tiktoken names. */
export type Encoding = TiktokenEncoding;

/**
 * OpenAI's tokenizers from the `gpt-tokenizer` package, which ships their rank tables (no
 * download) and gives the same ids as tiktoken.
 *
 * - Special-token strings inside a text are encoded as ordinary text, so every text round-trips;
 *   special ids are only ever inserted by patchlm.
 * - BOS = EOS = `<|endoftext|>` (50256 for gpt2, 100257 for cl100k), the GPT-2 convention. Neither
 *   vocabulary has a padding token, so PAD is one new id after the vocabulary (50257 / 100277)
 *   and `vocabSize` counts it (50258 / 100278). See `resolveSpecials`.
 * - `decode` is ours, from the rank table's bytes: gpt-tokenizer's own decoder shares one
 *   streaming UTF-8 decoder across calls, so a call ending inside a character leaks bytes into
 *   the next call.
 * - `encodeBatch` runs on worker threads (gpt-tokenizer is JavaScript and single-threaded).
 * - `hash` covers the encoding name, the package version and the special-token ids.
 */
export const make = Effect.fn("Tiktoken.make")(function* (encoding: Encoding) {
  const api = yield* Effect.promise(() => loadTiktoken(encoding));
  const ranks = yield* Effect.promise(() => loadRanks(encoding));
  const encoder = new TextEncoder();
  const tokenBytes: Array<Uint8Array | undefined> = ranks.map((token) =>
    typeof token === "string" ? encoder.encode(token) : Uint8Array.from(token),
  );

  const specialIds = new Map<string, number>();
  for (const name of Object.values(SpecialTokenNames)) {
    if (typeof name !== "string") continue;
    const ids = specialIdOf(api, name);
    if (ids !== undefined && ids >= ranks.length) specialIds.set(name, ids);
  }
  const baseSize = Math.max(ranks.length, ...[...specialIds.values()].map((id) => id + 1));
  const { special, vocabSize } = resolveSpecials((name) => specialIds.get(name), baseSize, {});

  const encode = tiktokenEncoder(api);
  const pool = yield* EncodePool.make({ kind: "tiktoken", encoding }, encode);
  const service: Tokenizer.Service = {
    name: encoding === "gpt2" ? "gpt2" : "cl100k",
    vocabSize,
    special,
    hash: descriptionHash({
      kind: "tiktoken",
      encoding,
      package: `gpt-tokenizer@${gptTokenizerPackage.version}`,
      special,
      vocabSize,
    }),
    encode,
    encodeBatch: pool.encodeBatch,
    decode: makeDecoder(tokenBytes),
  };
  return service;
});

export const layer = (encoding: Encoding): Layer.Layer<Tokenizer.Tokenizer> =>
  Layer.scoped(Tokenizer.Tokenizer, make(encoding));

/** GPT-2's tokenizer (r50k_base). */
export const layerGpt2: Layer.Layer<Tokenizer.Tokenizer> = layer("gpt2");

/** GPT-3.5/4's tokenizer (cl100k_base). */
export const layerCl100k: Layer.Layer<Tokenizer.Tokenizer> = layer("cl100k_base");

/** Rank table: index = token id, value = the token's text, or its bytes when not valid UTF-8. */
const loadRanks = async (encoding: Encoding): Promise<ReadonlyArray<string | ReadonlyArray<number>>> => {
  const module = encoding === "gpt2" ? await import("gpt-tokenizer/bpeRanks/r50k_base") : await import("gpt-tokenizer/bpeRanks/cl100k_base");
  return module.default;
};

const specialIdOf = (api: { encode: (text: string, options: { allowedSpecial: Set<string> }) => Array<number> }, name: string): number | undefined => {
  const ids = api.encode(name, { allowedSpecial: new Set([name]) });
  return ids.length === 1 ? ids[0] : undefined;
};
