import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { Effect, Layer, Option, type Scope } from "effect";
import { Tokenizer as NativeTokenizer } from "tokenizers";
import { FileError } from "@patchlm/core";
import * as Bpe from "./Bpe";
import { describe, readFileBytes } from "./internal/files";
import { configuredSpecials, isRecord } from "./internal/json";
import { resolveSpecials } from "./internal/specials";
import * as Tokenizer from "./Tokenizer";

/**
 * Load any Hugging Face `tokenizer.json` (a file, or a directory holding one). A
 * `tokenizer_config.json` next to it, when present, names the special tokens.
 *
 * Two paths:
 * - Byte-level BPE in GPT-2's layout (ours, GPT-2, many others; see `Bpe.fromJson`): our encoder,
 *   which gives the ids of Hugging Face's and runs several times faster here than the Rust binding
 *   (the binding also builds offsets and token strings for every token), on worker threads.
 * - Anything else (WordPiece, Unigram, Metaspace BPE, normalizers, ...): `encodeBatch` uses the
 *   `tokenizers` native binding (Rust, multithreaded over the batch); `encode` and `decode` use
 *   tokenizers.js, because the binding only has asynchronous encode and decode and the service's
 *   are synchronous. Tests check that both give the same ids.
 *
 * On both paths special-token strings in a text are encoded as ordinary text (the loaded
 * document's special added tokens are not matched), so a text quoting "</s>" round-trips; special
 * ids are inserted by patchlm only. BOS, EOS and PAD are mapped by the rule of `resolveSpecials`:
 * the config's `bos_token`/`eos_token`/`pad_token`, else well-known names (`<|bos|>`, `<s>`,
 * `<|endoftext|>`, `</s>`, `<pad>`, `[PAD]`, ...), BOS falling back to EOS, and a new id after the
 * vocabulary for a missing EOS or PAD (PAD never equals EOS).
 *
 * Failures name the file: `NotFound`, `Unreadable`, `NotUtf8`, or `Malformed` (not JSON, or a
 * document neither library can load).
 */
export const fromFile = Effect.fn("HuggingFace.fromFile")(function* (file: string) {
  const isDir = yield* Effect.promise(() => fs.stat(file).then((s) => s.isDirectory(), () => false));
  const jsonPath = isDir ? path.join(file, "tokenizer.json") : file;
  const json = yield* readJson(jsonPath);
  const configPath = path.join(path.dirname(jsonPath), "tokenizer_config.json");
  const config = yield* readJson(configPath).pipe(
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  );
  return yield* fromJson(json, config, jsonPath);
});

/** `fromFile` for a document already in memory; `source` names it in errors. */
export const fromJson = (
  json: unknown,
  config: unknown,
  source: string,
): Effect.Effect<Tokenizer.Service, FileError, Scope.Scope> =>
  Option.match(Bpe.fromJson(json, config), {
    onSome: (model) => Bpe.make(model),
    onNone: () => generic(json, config, source),
  });

export const layer = (file: string): Layer.Layer<Tokenizer.Tokenizer, FileError> =>
  Layer.scoped(Tokenizer.Tokenizer, fromFile(file));

const readJson = (file: string): Effect.Effect<unknown, FileError> =>
  Effect.gen(function* () {
    const bytes = yield* readFileBytes(file);
    const text = yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => new FileError({ path: file, reason: "NotUtf8", detail: "a tokenizer JSON file must be UTF-8" }),
    });
    return yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) => new FileError({ path: file, reason: "Malformed", detail: `not JSON: ${describe(error)}` }),
    });
  });

const generic = Effect.fn("HuggingFace.generic")(function* (json: unknown, config: unknown, source: string) {
  const malformed = (detail: string) => new FileError({ path: source, reason: "Malformed", detail });
  if (!isRecord(json)) return yield* Effect.fail(malformed("not a tokenizer.json document (expected a JSON object)"));
  const original = yield* Effect.try({
    try: () => NativeTokenizer.fromString(JSON.stringify(json)),
    catch: (error) => malformed(`the tokenizers library cannot load it: ${describe(error)}`),
  });
  const vocab = original.getVocab(true);
  let baseSize = 0;
  for (const id of Object.values(vocab)) baseSize = Math.max(baseSize, id + 1);
  const cfg = isRecord(config) ? config : {};
  const { special, vocabSize, added } = resolveSpecials((token) => vocab[token], baseSize, configuredSpecials(cfg));

  // Encode with a copy that has no special added tokens (special strings in a text stay text),
  // no truncation and no padding.
  const addedTokens = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  const specialAdded = addedTokens.filter((a) => isRecord(a) && a.special === true);
  const textOnly = {
    ...json,
    added_tokens: addedTokens.filter((a) => !specialAdded.includes(a)),
    truncation: null,
    padding: null,
  };
  const native = NativeTokenizer.fromString(JSON.stringify(textOnly));
  const js = yield* Effect.try({
    try: () => new JsTokenizer(textOnly, { ...cfg, clean_up_tokenization_spaces: false }),
    catch: (error) => malformed(`tokenizers.js (needed for synchronous encode) cannot load it: ${describe(error)}`),
  });

  const silent = new Set<number>([special.bos, special.eos, special.pad, ...added]);
  for (const a of specialAdded) if (isRecord(a) && typeof a.id === "number") silent.add(a.id);
  const known = new Set(Object.values(vocab));
  const model = isRecord(json.model) && typeof json.model.type === "string" ? json.model.type.toLowerCase() : "model";

  const service: Tokenizer.Service = {
    name: `${model}-${vocabSize}`,
    vocabSize,
    special,
    hash: Bpe.jsonTokenizerHash(json, special, vocabSize),
    encode: (text) => Uint32Array.from(js.encode(text, { add_special_tokens: false }).ids),
    encodeBatch: (texts) =>
      Effect.promise(() => native.encodeBatch([...texts], { addSpecialTokens: false })).pipe(
        Effect.map((encodings) => encodings.map((e) => Uint32Array.from(e.getIds()))),
        Effect.withSpan("HuggingFace.encodeBatch"),
      ),
    decode: (ids) =>
      js.decode(
        Array.from(ids).filter((id) => known.has(id) && !silent.has(id)),
        { skip_special_tokens: false, clean_up_tokenization_spaces: false },
      ),
  };
  return service;
});
