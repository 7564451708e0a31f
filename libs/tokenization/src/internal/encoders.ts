import { ByteLevelBpeEncoder, type EncoderTable } from "./byteLevelBpe";

/** The tiktoken encodings patchlm offers, by their tiktoken names. */
export type TiktokenEncoding = "gpt2" | "cl100k_base";

/** What a worker thread needs to build an encoder: plain data only (it is structured-cloned). */
export type EncoderSpec =
  | { readonly kind: "bpe"; readonly table: EncoderTable }
  | { readonly kind: "tiktoken"; readonly encoding: TiktokenEncoding };

/**
 * Load a gpt-tokenizer encoding. Dynamic import: each rank table is megabytes of JavaScript, so
 * only the encoding in use is parsed, and importing this lib costs nothing.
 */
export const loadTiktoken = async (encoding: TiktokenEncoding) => {
  const module = encoding === "gpt2" ? await import("gpt-tokenizer/encoding/gpt2") : await import("gpt-tokenizer/encoding/cl100k_base");
  return module.default;
};

/**
 * A loaded encoding. Named from the import above rather than from "gpt-tokenizer/GptEncoding",
 * which a compiled CommonJS build would resolve to the package's other (CommonJS) copy of the type.
 */
export type GptEncoding = Awaited<ReturnType<typeof loadTiktoken>>;

// Special-token strings in the text are ordinary text: patchlm inserts special ids itself, and a
// document that quotes "<|endoftext|>" must round-trip (gpt-tokenizer would otherwise throw).
const asPlainText = { disallowedSpecial: new Set<string>() };

export const tiktokenEncoder =
  (api: GptEncoding) =>
  (text: string): Uint32Array =>
    Uint32Array.from(api.encode(text, asPlainText));

export const makeEncoder = async (spec: EncoderSpec): Promise<(text: string) => Uint32Array> => {
  if (spec.kind === "bpe") {
    const encoder = new ByteLevelBpeEncoder(spec.table);
    return (text) => encoder.encode(text);
  }
  return tiktokenEncoder(await loadTiktoken(spec.encoding));
};
