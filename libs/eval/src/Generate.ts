/**
 * Text generation with the model's KV cache: the prompt is prefilled in one pass, then each new
 * token is one `Model.step` over a single position. Output is a `Stream` of text pieces, pulled
 * one token at a time, so a terminal shows it as it comes.
 *
 * Sampling (Hugging Face `generate` order): logits / temperature, then top-k, then top-p (the
 * smallest set of most likely tokens whose probability reaches p; the most likely is always
 * kept), then one draw from a mulberry32 generator seeded by `seed`. `greedy` (or temperature 0)
 * takes the argmax (the first on ties): same prompt, same output, whatever the seed.
 *
 * Stopping: EOS, a stop string (the text is cut before it and it is never shown: text that could
 * be the start of a stop string is held back until it is not), `maxNewTokens`, or a full context.
 * Incomplete UTF-8 at the end of the decoded text (a character split across byte tokens) is held
 * back until it completes.
 *
 * A prompt that leaves no room for `maxNewTokens` in the context is truncated from the left, keeping
 * at least half the context of prompt, with a warning; an empty prompt starts from EOS (the
 * separator every training document follows).
 */
import * as tf from "@tensorflow/tfjs-core";
import { Effect, Either, Option, Schema, Stream } from "effect";
import { Config, type ConfigError, Numbers } from "@patchlm/core";
import { Model } from "@patchlm/model";
import type { Tokenizer } from "@patchlm/tokenization";
import { mulberry32, type Rng } from "./internal/Rng";

const { NonNegativeInt } = Numbers;
// Exact: a key is absent or in range, so an error names the range and not also "undefined".
const opt = <A, I>(s: Schema.Schema<A, I>) => Schema.optionalWith(s, { exact: true });

/**
 * Sampling options, each with the range its rule needs: a negative or NaN temperature would
 * invert or scramble the distribution (silently picking unlikely tokens), so they are refused
 * rather than sampled from.
 */
export const SamplingOptions = Schema.Struct({
  /** Default 64. */
  maxNewTokens: opt(NonNegativeInt),
  /** Default 1; 0 means greedy. Finite and ≥ 0. */
  temperature: opt(Numbers.NonNegativeNumber),
  /** Keep only the k most likely tokens; 0 (default) keeps all. */
  topK: opt(NonNegativeInt),
  /** Nucleus sampling threshold in (0, 1]; 1 (default) keeps all. */
  topP: opt(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1))),
  /** Seed of the sampler. Default 0. */
  seed: opt(Schema.Int),
  /** Argmax decoding. */
  greedy: opt(Schema.Boolean),
  /** Stop before the first occurrence of any of these strings. */
  stop: opt(Schema.Array(Schema.String)),
});
export type SamplingOptions = typeof SamplingOptions.Type;

/** The options if every one is in range, else a ConfigError naming each bad key (`source` names where they came from). */
export const checkOptions = (source: string, o: SamplingOptions): Either.Either<SamplingOptions, ConfigError> =>
  Config.decodeConfig(SamplingOptions)(source, o);

export type StopReason = "eos" | "stop" | "length" | "context";

export type Event =
  | { readonly _tag: "Text"; readonly text: string }
  | {
      readonly _tag: "Done";
      readonly reason: StopReason;
      /** Tokens generated. */
      readonly tokens: number;
      readonly promptTokens: number;
      /** Prompt tokens dropped from the left to fit the context. */
      readonly truncated: number;
    };

const argmax = (xs: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
};

/** The next token from one row of logits (see the module comment). */
export const sample = (logits: ArrayLike<number>, o: SamplingOptions, rng: Rng): number => {
  const temperature = o.temperature ?? 1;
  if (o.greedy === true || temperature === 0) return argmax(logits);
  const V = logits.length;
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK !== undefined && o.topK > 0) ids = ids.slice(0, o.topK);
  const max = logits[ids[0]];
  let probs = ids.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < ids.length && cum < topP * total) cum += probs[keep++];
    ids = ids.slice(0, Math.max(1, keep));
    probs = probs.slice(0, ids.length);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let u = rng() * total;
  for (let k = 0; k < ids.length; k++) {
    u -= probs[k];
    if (u < 0) return ids[k];
  }
  return ids[ids.length - 1];
};

/** The prompt's ids after left truncation (see the module comment). */
export const fitPrompt = (ids: ArrayLike<number>, contextLength: number, maxNewTokens: number): { ids: Int32Array; truncated: number } => {
  // n new tokens need n − 1 more positions: the first comes from the prefill's last logits.
  const room = Math.max(contextLength - Math.max(0, maxNewTokens - 1), Math.ceil(contextLength / 2));
  const keep = Math.min(ids.length, room);
  return { ids: Int32Array.from(Array.prototype.slice.call(ids, ids.length - keep) as Array<number>), truncated: ids.length - keep };
};

/** Last row of logits (1,T,V) as host floats. */
const lastRow = (z: tf.Tensor3D): Float32Array => {
  const [, T, V] = z.shape;
  const row = tf.tidy(() => tf.slice(z, [0, T - 1, 0], [1, 1, V]));
  const data = row.dataSync() as Float32Array;
  tf.dispose([row, z]);
  return data;
};

/**
 * Generation as events: text pieces, then one `Done`. The KV cache is freed when the stream ends.
 * Options out of range fail the stream with a ConfigError before anything runs.
 */
export const events = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  tokenizer: Tokenizer.Service,
  prompt: string,
  given: SamplingOptions = {},
): Stream.Stream<Event, ConfigError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const options = yield* checkOptions("sampling options", given);
      const maxNew = options.maxNewTokens ?? 64;
      const encoded = tokenizer.encode(prompt);
      const { ids, truncated } = fitPrompt(encoded.length === 0 ? [tokenizer.special.eos] : encoded, cfg.contextLength, maxNew);
      if (truncated > 0) {
        yield* Effect.logWarning(
          `prompt of ${encoded.length} tokens does not leave room for ${maxNew} new tokens in the context of ${cfg.contextLength}: ` +
            `dropped the first ${truncated} tokens`,
        );
      }
      const cache = yield* Effect.acquireRelease(
        Effect.sync(() => Model.makeCache(cfg, 1)),
        (c) => Effect.sync(() => c.dispose()),
      );
      const rng = mulberry32(options.seed ?? 0);
      const stops = (options.stop ?? []).filter((s) => s !== "");
      const hold = Math.max(0, ...stops.map((s) => s.length - 1));

      function* run(): Generator<Event> {
        const promptIds = tf.tensor2d(ids, [1, ids.length], "int32");
        let logits = lastRow(Model.step(params, cfg, promptIds, cache));
        promptIds.dispose();
        const generated: Array<number> = [];
        let emitted = 0;
        let reason: StopReason = "length";
        while (generated.length < maxNew) {
          const next = sample(logits, options, rng);
          if (next === tokenizer.special.eos) {
            reason = "eos";
            break;
          }
          generated.push(next);
          const text = tokenizer.decode(generated);
          const hit = stops.map((s) => text.indexOf(s, Math.max(0, emitted - s.length))).filter((i) => i >= 0);
          if (hit.length > 0) {
            const cut = Math.min(...hit);
            if (cut > emitted) yield { _tag: "Text", text: text.slice(emitted, cut) };
            emitted = cut;
            reason = "stop";
            break;
          }
          let safe = text.length - hold;
          while (safe > emitted && text.charCodeAt(safe - 1) === 0xfffd) safe--;
          if (safe > emitted) {
            yield { _tag: "Text", text: text.slice(emitted, safe) };
            emitted = safe;
          }
          if (generated.length >= maxNew) break;
          if (cache.length >= cache.capacity) {
            reason = "context";
            break;
          }
          const input = tf.tensor2d([next], [1, 1], "int32");
          logits = lastRow(Model.step(params, cfg, input, cache));
          input.dispose();
        }
        if (reason !== "stop") {
          const text = tokenizer.decode(generated);
          if (text.length > emitted) yield { _tag: "Text", text: text.slice(emitted) };
        }
        yield { _tag: "Done", reason, tokens: generated.length, promptTokens: ids.length, truncated };
      }
      return Stream.fromIteratorSucceed(run(), 1);
    }),
  );

/** Only the text pieces. */
export const textStream = (...args: Parameters<typeof events>): Stream.Stream<string, ConfigError> =>
  Stream.filterMap(events(...args), (e) => (e._tag === "Text" ? Option.some(e.text) : Option.none()));
