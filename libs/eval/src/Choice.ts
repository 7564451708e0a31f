/**
 * Log-likelihood requests with lm-evaluation-harness (v0.4, `HFLM`) semantics, and the metrics
 * built on them.
 *
 * Tokenization of a (context, continuation) pair, `_encode_pair`: trailing spaces of the context
 * move to the front of the continuation (so " word" is encoded as one unit, the leading-space
 * convention of byte-level BPE), then `whole = encode(context + continuation)`,
 * `ctx = encode(context)`, and the continuation's tokens are `whole[len(ctx):]`. An empty context
 * becomes the prefix token alone (lm-eval's `prefix_token_id`; here the tokenizer's EOS, the
 * separator every document follows in patchlm's token shards).
 *
 * Scoring: input `(ctx + cont)[-(W+1):][:-1]` for a window of W positions; the continuation's
 * log-likelihood is the sum of the log-probabilities of its tokens, `greedy` says whether each was
 * the argmax. Requests are sorted by length and batched, then put back in order.
 */
import type { Config } from "@patchlm/core";
import type { Model } from "@patchlm/model";
import type { Tokenizer } from "@patchlm/tokenization";
import * as Score from "./Score";

export interface Request {
  readonly context: string;
  readonly continuation: string;
}

export interface Encoded {
  readonly context: Int32Array;
  readonly continuation: Int32Array;
}

export interface Loglikelihood {
  /** Sum of log p over the continuation's tokens (nats). */
  readonly logprob: number;
  /** Every continuation token was the argmax of its distribution. */
  readonly greedy: boolean;
  /** Continuation tokens scored. */
  readonly tokens: number;
}

const toInt32 = (ids: ArrayLike<number>): Int32Array => Int32Array.from(ids as ArrayLike<number>);

/** lm-eval's `_encode_pair` (see the module comment). */
export const encodePair = (tokenizer: Tokenizer.Service, r: Request, prefixToken = tokenizer.special.eos): Encoded => {
  if (r.context === "") return { context: Int32Array.of(prefixToken), continuation: toInt32(tokenizer.encode(r.continuation)) };
  const trimmed = r.context.replace(/\s+$/u, "");
  const spaces = r.context.length - trimmed.length;
  const context = spaces > 0 ? trimmed : r.context;
  const continuation = spaces > 0 ? r.context.slice(trimmed.length) + r.continuation : r.continuation;
  const whole = tokenizer.encode(context + continuation);
  const ctx = tokenizer.encode(context);
  return { context: toInt32(ctx), continuation: toInt32(whole.subarray(ctx.length)) };
};

/** Scores encoded requests: one log-likelihood per request, in order. */
export type Scorer = (requests: ReadonlyArray<Encoded>) => ReadonlyArray<Loglikelihood>;

/** The scoring row of one request in a window of `window` positions; `scored` continuation tokens end it. */
export const rowOf = (e: Encoded, window: number): { readonly row: Score.Row; readonly scored: number } => {
  const all = new Int32Array(e.context.length + e.continuation.length);
  all.set(e.context);
  all.set(e.continuation, e.context.length);
  const cut = all.subarray(Math.max(0, all.length - (window + 1)));
  const row = { input: cut.subarray(0, cut.length - 1), targets: cut.subarray(1) };
  return { row, scored: Math.min(e.continuation.length, row.input.length) };
};

export interface ModelScorerOptions {
  /** Requests per forward pass. Default 16. */
  readonly batchSize?: number;
  /** Window of positions; default the model's context length. */
  readonly window?: number;
  /** Called after each batch with the number of requests done. */
  readonly onBatch?: (done: number, total: number) => void;
}

/** A scorer that runs the model: requests sorted longest first, batched, padded per batch. */
export const modelScorer =
  (params: Model.Weights, cfg: Config.ModelConfig, options: ModelScorerOptions = {}): Scorer =>
  (requests) => {
    const window = options.window ?? cfg.contextLength;
    const batchSize = options.batchSize ?? 16;
    const rows = requests.map((e) => rowOf(e, window));
    const order = rows.map((_, i) => i).sort((a, b) => rows[b].row.input.length - rows[a].row.input.length || a - b);
    const out = new Array<Loglikelihood>(requests.length);
    for (let i = 0; i < order.length; i += batchSize) {
      const idx = order.slice(i, i + batchSize);
      const scores = Score.scoreRows(params, cfg, idx.map((k) => rows[k].row));
      idx.forEach((k, j) => {
        const { row, scored } = rows[k];
        const s = scores[j];
        let logprob = 0;
        let greedy = true;
        for (let t = row.input.length - scored; t < row.input.length; t++) {
          logprob += s.logprobs[t];
          greedy = greedy && s.greedy[t] === 1;
        }
        out[k] = { logprob, greedy, tokens: scored };
      });
      options.onBatch?.(Math.min(i + batchSize, order.length), order.length);
    }
    return out;
  };

/** Index of the first maximum (numpy `argmax`). */
export const argmax = (xs: ReadonlyArray<number>): number => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
};

/** A mean with its standard error: sample standard deviation (n − 1) / √n, lm-eval's `mean_stderr`. */
export interface Estimate {
  readonly value: number;
  readonly stderr: number;
  readonly n: number;
}

export const meanWithStderr = (xs: ReadonlyArray<number>): Estimate => {
  const n = xs.length;
  if (n === 0) return { value: NaN, stderr: NaN, n };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { value: mean, stderr: NaN, n };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { value: mean, stderr: Math.sqrt(variance / n), n };
};

const utf8 = new TextEncoder();

/** UTF-8 bytes of a string. */
export const byteLength = (s: string): number => utf8.encode(s).length;
