/**
 * Windowed perplexity over long token streams (Hugging Face "perplexity of fixed-length models"
 * and lm-evaluation-harness `loglikelihood_rolling` semantics): every token after the first is
 * scored exactly once, each with as much preceding context as the window allows.
 *
 * A stream x_0..x_{n−1} has targets x_1..x_{n−1} (give it a prefix token, e.g. EOS, to have the
 * text's first token scored too). With window W (input positions per forward pass, ≤ the model's
 * context) and stride S (1 ≤ S ≤ W):
 * - the first window feeds x_0..x_{W−1} and scores its W targets x_1..x_W;
 * - each later window scores the next S targets, fed with the W tokens before its last target,
 *   so target t sees at least W − S + 1 tokens of context. S = W is lm-eval's disjoint rolling
 *   windows; smaller S buys context with more compute (W/S forward passes per scored window).
 *
 * Bits per byte, comparable across tokenizers: total NLL (nats) / ln 2 / UTF-8 bytes of the
 * scored text.
 *
 * `scoreStreams` / `scoreData` are the one validation perplexity (evaluator `ppl` and `compare`,
 * the study's final evaluation): loss, perplexity, bits per byte and a standard error over blocks
 * of consecutive windows.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Effect } from "effect";
import type { Config } from "@patchlm/core";
import type { Model } from "@patchlm/model";
import { Objective, PatchStrategy } from "@patchlm/patching";
import type { Tokenizer } from "@patchlm/tokenization";
import * as Documents from "./Documents";
import { EvalInputError } from "./Errors";
import * as Score from "./Score";

/** One forward pass: inputs x[start..start+length), targets x[start+1..start+length], the last `scored` of them counted. */
export interface Window {
  readonly start: number;
  readonly length: number;
  readonly scored: number;
}

/** The windows covering targets 1..n−1 of an n-token stream (see the module comment). */
export const windows = (n: number, window: number, stride: number): Array<Window> => {
  if (!Number.isInteger(window) || window < 1) throw new RangeError(`Perplexity.windows: window must be a positive integer, got ${window}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > window) {
    throw new RangeError(`Perplexity.windows: stride must be an integer in [1, window=${window}], got ${stride}`);
  }
  const out: Array<Window> = [];
  let next = 1; // first target not yet scored
  while (next <= n - 1) {
    const last = Math.min(next + (out.length === 0 ? window : stride) - 1, n - 1);
    const start = Math.max(0, last - window);
    out.push({ start, length: last - start, scored: last - next + 1 });
    next = last + 1;
  }
  return out;
};

export interface WindowOptions {
  /** Input positions per forward pass; default (and at most) the model's context length. */
  readonly window?: number;
  /** New targets per window after the first; default `window` (disjoint windows). */
  readonly stride?: number;
  /** Windows per forward pass. Default 8. */
  readonly batchSize?: number;
}

const resolveWindow = (cfg: Config.ModelConfig, o: WindowOptions) => {
  const window = o.window ?? cfg.contextLength;
  if (window > cfg.contextLength) throw new RangeError(`Perplexity: window ${window} exceeds the model's contextLength ${cfg.contextLength}`);
  return { window, stride: o.stride ?? window, batchSize: o.batchSize ?? 8 };
};

/** The NLL of each window of a stream, in stream order, and how many targets each scored. */
export interface PerWindow {
  readonly nll: Float64Array;
  readonly scored: Float64Array;
}

/**
 * NLL of every window of one token stream (see the module comment), scored in batches of
 * windows. `onBatch` is told the targets scored so far, for progress display.
 */
export const windowNll = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  tokens: ArrayLike<number>,
  options: WindowOptions = {},
  onBatch?: (scored: number) => void,
): PerWindow => {
  const { window, stride, batchSize } = resolveWindow(cfg, options);
  const plan = windows(tokens.length, window, stride);
  const nll = new Float64Array(plan.length);
  const scored = new Float64Array(plan.length);
  let scoredSoFar = 0;
  const slice = (from: number, to: number) => Array.prototype.slice.call(tokens, from, to) as Array<number>;
  for (let i = 0; i < plan.length; i += batchSize) {
    const group = plan.slice(i, i + batchSize);
    const scores = Score.scoreRows(
      params,
      cfg,
      group.map((w) => ({ input: slice(w.start, w.start + w.length), targets: slice(w.start + 1, w.start + w.length + 1) })),
    );
    group.forEach((w, j) => {
      const lp = scores[j].logprobs;
      let sum = 0;
      for (let k = w.length - w.scored; k < w.length; k++) sum -= lp[k];
      nll[i + j] = sum;
      scored[i + j] = w.scored;
      scoredSoFar += w.scored;
    });
    onBatch?.(scoredSoFar);
  }
  return { nll, scored };
};

/** Summed NLL of every target of one token stream (see `windowNll`). */
export const streamNll = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  tokens: ArrayLike<number>,
  options: WindowOptions = {},
  onBatch?: (scored: number) => void,
): Score.NllSum => {
  const w = windowNll(params, cfg, tokens, options, onBatch);
  let nll = 0;
  let scored = 0;
  for (let i = 0; i < w.nll.length; i++) {
    nll += w.nll[i];
    scored += w.scored[i];
  }
  return { nll, tokens: scored };
};

/**
 * Consecutive windows grouped into blocks of at least `blockTokens` scored targets (the last
 * block takes the remainder when it would be short): the units of the standard errors below.
 * Neighbouring windows of one document are correlated, so a block of several windows is a far
 * more independent sample than a single window (the batch-means method).
 */
export interface Blocks {
  readonly nll: ReadonlyArray<number>;
  readonly tokens: ReadonlyArray<number>;
}

export const blocks = (w: PerWindow, blockTokens: number): Blocks => {
  const nll: Array<number> = [];
  const tokens: Array<number> = [];
  let n = 0;
  let t = 0;
  for (let i = 0; i < w.nll.length; i++) {
    n += w.nll[i];
    t += w.scored[i];
    if (t >= blockTokens) {
      nll.push(n);
      tokens.push(t);
      n = 0;
      t = 0;
    }
  }
  if (t > 0) {
    if (tokens.length > 0 && t < blockTokens / 2) {
      nll[nll.length - 1] += n;
      tokens[tokens.length - 1] += t;
    } else {
      nll.push(n);
      tokens.push(t);
    }
  }
  return { nll, tokens };
};

/**
 * Mean NLL per token (Σ nll / Σ tokens) and its standard error over blocks, by the ratio
 * estimator's linearisation: SE² = Σ_b (nll_b − loss·tokens_b)² / (n (n−1) t̄²), t̄ the mean
 * block size. NaN with fewer than 2 blocks.
 */
export const meanWithError = (b: Blocks): { readonly loss: number; readonly standardError: number; readonly blocks: number } => {
  const n = b.nll.length;
  const totalNll = b.nll.reduce((x, y) => x + y, 0);
  const totalTokens = b.tokens.reduce((x, y) => x + y, 0);
  const loss = totalNll / totalTokens;
  if (n < 2) return { loss, standardError: NaN, blocks: n };
  const mean = totalTokens / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += ((b.nll[i] - loss * b.tokens[i]) / mean) ** 2;
  return { loss, standardError: Math.sqrt(ss / (n * (n - 1))), blocks: n };
};

/**
 * Loss of `a` minus loss of `b` on the same blocks (two models scored on one validation stream)
 * and the standard error of that difference. Pairing removes the text's own difficulty, which
 * dominates each loss's standard error, so a difference far smaller than either SE can be real.
 */
export const pairedDifference = (a: Blocks, b: Blocks): { readonly difference: number; readonly standardError: number } => {
  if (a.tokens.length !== b.tokens.length || a.tokens.some((t, i) => t !== b.tokens[i])) {
    throw new RangeError("Perplexity.pairedDifference: the two results were not scored on the same blocks");
  }
  const r = meanWithError({ nll: a.nll.map((x, i) => x - b.nll[i]), tokens: a.tokens });
  return { difference: r.loss, standardError: r.standardError };
};

/** Bits per UTF-8 byte: nats / ln 2 / bytes. */
export const bitsPerByte = (nllNats: number, bytes: number): number => (bytes === 0 ? NaN : nllNats / Math.LN2 / bytes);

/** A token-level result over some text. */
export interface Result {
  /** Scored tokens. */
  readonly tokens: number;
  /** UTF-8 bytes of the scored text. */
  readonly bytes: number;
  readonly nll: number;
  /** Mean NLL per token (nats). */
  readonly loss: number;
  readonly ppl: number;
  readonly bitsPerByte: number;
}

export const result = (s: Score.NllSum, bytes: number): Result => {
  const { loss, ppl } = Score.summarize(s);
  return { tokens: s.tokens, bytes, nll: s.nll, loss, ppl, bitsPerByte: bitsPerByte(s.nll, bytes) };
};

/** Scored targets per standard-error block unless told otherwise: the study's `evaluation.blockTokens` default. */
export const DEFAULT_BLOCK_TOKENS = 4096;

export interface ScoreOptions extends WindowOptions {
  /** Scored targets per standard-error block (see `blocks`). Default `DEFAULT_BLOCK_TOKENS`. */
  readonly blockTokens?: number;
}

/** A token-level result with the standard error of its loss. */
export interface Scored extends Result {
  /** Standard error of `loss` over `blocks` (see `meanWithError`); NaN with fewer than 2 blocks. */
  readonly standardError: number;
  /** The per-block sums, kept for paired differences between models (`pairedDifference`). */
  readonly blocks: Blocks;
}

/**
 * Validation perplexity of token streams: loss, perplexity, bits per byte and the loss's block
 * standard error, every target scored once with sliding windows (`windowNll`). Several streams are
 * scored in order and their windows grouped into blocks as one sequence.
 *
 * Every figure is taken from the blocks (loss = Σ block NLL / Σ block tokens), so for one stream
 * with the window of the model's context and stride = window this gives exactly the numbers of
 * the study's final evaluation; its loss is `streamNll`'s nll / tokens. Throws RangeError for a
 * window or stride out of range (see `windows`; `scoreData` checks them first).
 */
export const scoreStreams = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  streams: ReadonlyArray<Documents.TokenStream>,
  options: ScoreOptions = {},
  onBatch?: (scored: number) => void,
): Scored => {
  const perStream: Array<PerWindow> = [];
  let scoredBefore = 0;
  for (const s of streams) {
    const w = windowNll(params, cfg, s.tokens, options, onBatch === undefined ? undefined : (n) => onBatch(scoredBefore + n));
    perStream.push(w);
    scoredBefore += w.scored.reduce((a, b) => a + b, 0);
  }
  // One entry per window, not per token: copying them is cheap.
  const joined: PerWindow =
    perStream.length === 1
      ? perStream[0]
      : { nll: Float64Array.from(perStream.flatMap((w) => Array.from(w.nll))), scored: Float64Array.from(perStream.flatMap((w) => Array.from(w.scored))) };
  const b = blocks(joined, options.blockTokens ?? DEFAULT_BLOCK_TOKENS);
  const stats = meanWithError(b);
  const nll = b.nll.reduce((x, y) => x + y, 0);
  const tokens = b.tokens.reduce((x, y) => x + y, 0);
  const bytes = streams.reduce((n, s) => n + s.bytes, 0);
  return { tokens, bytes, nll, loss: stats.loss, ppl: Math.exp(stats.loss), bitsPerByte: bitsPerByte(nll, bytes), standardError: stats.standardError, blocks: b };
};

/** `scoreStreams` of one stream: a prepared directory's validation stream, say. */
export const scoreStream = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  stream: Documents.TokenStream,
  options: ScoreOptions = {},
  onBatch?: (scored: number) => void,
): Scored => scoreStreams(params, cfg, [stream], options, onBatch);

/**
 * The patch (bag) loss of K-token patches over a stream, as the patch phase trains (the same
 * `Objective.lossFor`): disjoint windows of K·T tokens (T = `positions`, default the context length), each patch the plain mean
 * of its K token embeddings (or another parameter-free strategy), the output at patch j scored
 * against the K tokens of patch j+1. The tail that does not fill a window is left out. Its floor
 * is ln K, not 0, so it is **not comparable** with token-level loss (docs/method.md §2.3).
 */
export const patchLoss = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  tokens: ArrayLike<number>,
  K: number,
  options: {
    readonly positions?: number;
    readonly batchSize?: number;
    readonly strategy?: PatchStrategy.PatchStrategy;
    /** The strategy's own parameters (a patch-phase checkpoint's), when it declares any. */
    readonly strategyParams?: PatchStrategy.Weights;
  } = {},
): { readonly loss: number; readonly windows: number; readonly targets: number } => {
  const T = options.positions ?? cfg.contextLength;
  const strategy = options.strategy ?? PatchStrategy.mean;
  const strategyParams = options.strategyParams ?? {};
  const missing = strategy.parameters(cfg.dModel, K).filter((p) => strategyParams[p.name] === undefined);
  if (missing.length > 0) {
    throw new Error(`Perplexity.patchLoss: strategy ${strategy.name} needs ${missing.map((p) => p.name).join(", ")}, which only a patch-phase checkpoint holds`);
  }
  if (T < 2 || T > cfg.contextLength) throw new RangeError(`Perplexity.patchLoss: positions ${T} must lie in [2, contextLength=${cfg.contextLength}]`);
  const L = K * T;
  const n = Math.floor(tokens.length / L);
  const batchSize = options.batchSize ?? 4;
  let weighted = 0;
  for (let i = 0; i < n; i += batchSize) {
    const B = Math.min(batchSize, n - i);
    const ids = Int32Array.from(Array.prototype.slice.call(tokens, i * L, (i + B) * L) as Array<number>);
    const loss = tf.tidy(() => Objective.lossFor({ cfg, K, strategy }, params, tf.tensor2d(ids, [B, L], "int32"), strategyParams));
    weighted += loss.dataSync()[0] * B;
    loss.dispose();
  }
  return { loss: n === 0 ? NaN : weighted / n, windows: n, targets: n * (T - 1) * K };
};

/** The model `scoreData` scores with (a `Checkpoints.Opened` is one). */
export interface ScoringModel {
  readonly params: Model.Weights;
  readonly cfg: Config.ModelConfig;
  readonly tokenizer: Tokenizer.Service;
}

export interface DataOptions extends ScoreOptions {
  /** Score at most about this many tokens (see `Documents.streams`). Default: all. */
  readonly maxTokens?: number;
  /** Also the patch loss with patches of this many tokens (`patchLoss`; not comparable). */
  readonly patchSize?: number;
  /** The patch loss's strategy (default `mean`) and its parameters, e.g. the run's (`Checkpoints.runStrategy`). */
  readonly strategy?: PatchStrategy.PatchStrategy;
  readonly strategyParams?: PatchStrategy.Weights;
}

export interface DataScore extends Scored {
  readonly data: string;
  readonly window: number;
  readonly stride: number;
  /** How many streams were scored: 1 for a prepared directory, else one per text file. */
  readonly streams: number;
  readonly patch?: { readonly K: number; readonly strategy: string; readonly loss: number; readonly windows: number; readonly comparable: false };
}

/**
 * The window and stride `scoreData` uses: `window` defaults to the model's context, `stride` to
 * the window. Errors name the evaluator's flags, the only place these come from a user.
 */
export const checkWindow = (cfg: Config.ModelConfig, window = cfg.contextLength, stride = window) =>
  Number.isInteger(window) && Number.isInteger(stride) && 1 <= stride && stride <= window && window <= cfg.contextLength
    ? Effect.succeed({ window, stride })
    : Effect.fail(
        new EvalInputError({
          path: "--window/--stride",
          reason: "Malformed",
          detail: `need 1 ≤ stride (${stride}) ≤ window (${window}) ≤ the model's context length (${cfg.contextLength})`,
        }),
      );

const checkPositive = (flag: string, value: number | undefined) =>
  value === undefined || value === Infinity || (Number.isInteger(value) && value >= 1)
    ? Effect.void
    : Effect.fail(new EvalInputError({ path: flag, reason: "Malformed", detail: `need a positive integer, got ${value}` }));

/**
 * `scoreStreams` over a data argument: a prepared directory's validation split or UTF-8 text files
 * (`Documents.streams`), with the optional patch loss over all streams' tokens end to end. Bad
 * options fail before any text is read, naming the flags (--window/--stride, --max-tokens,
 * --patch-size).
 */
export const scoreData = Effect.fn("Perplexity.scoreData")(function* (model: ScoringModel, data: string, options: DataOptions = {}) {
  const { window, stride } = yield* checkWindow(model.cfg, options.window, options.stride);
  yield* checkPositive("--max-tokens", options.maxTokens);
  yield* checkPositive("--patch-size", options.patchSize);
  const streams = yield* Documents.streams(data, model.tokenizer, options.maxTokens);
  const scored = scoreStreams(model.params, model.cfg, streams, { ...options, window, stride });
  const out: DataScore = { ...scored, data, window, stride, streams: streams.length };
  const K = options.patchSize;
  if (K === undefined) return out;
  const all = streams.flatMap((s) => Array.from(s.tokens));
  const positions = Math.min(model.cfg.contextLength, Math.max(2, Math.floor(all.length / K)));
  const strategy = options.strategy ?? PatchStrategy.mean;
  const missing = strategy.parameters(model.cfg.dModel, K).filter((p) => options.strategyParams?.[p.name] === undefined);
  if (missing.length > 0) {
    return yield* new EvalInputError({
      path: "--patch-size",
      reason: "Malformed",
      detail: `the run's patch strategy ${strategy.name} has parameters (${missing.map((p) => p.name).join(", ")}) that this checkpoint does not hold (the switch to token level drops them); give a patch-phase checkpoint (a step-XXXXXXXX directory)`,
    });
  }
  const p = patchLoss(model.params, model.cfg, all, K, { positions, batchSize: options.batchSize, strategy, strategyParams: options.strategyParams });
  return { ...out, patch: { K, strategy: strategy.name, loss: p.loss, windows: p.windows, comparable: false as const } } satisfies DataScore;
});
