/**
 * Token-level scoring, shared by the trainer's periodic evaluation and the evaluator app: the
 * log-probability the model gives each next token. Patch-trained checkpoints are scored here at
 * token level (K = 1), which is the only comparable number (docs/method.md §2.3).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Config } from "@patchlm/core";
import { Model } from "@patchlm/model";

/** log p(ids[:, t+1] | ids[:, ..t]) for every t: (B,L−1) <- ids (B,L) int32. */
export const nextTokenLogProbs = (params: Model.Weights, cfg: Config.ModelConfig, ids: tf.Tensor2D): tf.Tensor2D =>
  tf.tidy(() => {
    const [B, L] = ids.shape;
    const V = cfg.vocabSize;
    const h = Model.hidden(params, cfg, Model.embed(params, cfg, ids)); // (B,L,C)
    // The last position predicts past the window: drop it before the head.
    const z = Model.logits(params, cfg, tf.slice(h, [0, 0, 0], [B, L - 1, cfg.dModel])); // (B,L−1,V)
    const logp = tf.logSoftmax(tf.reshape(z, [B * (L - 1), V])); // (N,V)
    const targets = tf.reshape(tf.slice(ids, [0, 1], [B, L - 1]), [B * (L - 1)]); // (N)
    // Flat gather of row r, column t[r]: one index per row instead of a one-hot (N,V) product.
    const flat = tf.add(tf.mul(tf.range(0, B * (L - 1), 1, "int32"), tf.scalar(V, "int32")), targets);
    return tf.reshape(tf.gather(tf.reshape(logp, [B * (L - 1) * V]), flat), [B, L - 1]) as tf.Tensor2D;
  });

/** A running sum of negative log-likelihood over scored tokens. */
export interface NllSum {
  readonly nll: number;
  readonly tokens: number;
}

export const emptyNll: NllSum = { nll: 0, tokens: 0 };

export const addNll = (a: NllSum, b: NllSum): NllSum => ({ nll: a.nll + b.nll, tokens: a.tokens + b.tokens });

/** Mean NLL (nats per token) and perplexity. */
export const summarize = (s: NllSum): { readonly loss: number; readonly ppl: number; readonly tokens: number } => {
  const loss = s.tokens === 0 ? NaN : s.nll / s.tokens;
  return { loss, ppl: Math.exp(loss), tokens: s.tokens };
};

/**
 * NLL of every next token of `rows` windows of length L (row-major Int32Array). One host read per
 * call: evaluation is not on the training hot path.
 */
export const windowNll = (params: Model.Weights, cfg: Config.ModelConfig, tokens: Int32Array, rows: number, L: number): NllSum => {
  const sum = tf.tidy(() => {
    const ids = tf.tensor2d(tokens, [rows, L], "int32");
    return tf.neg(tf.sum(nextTokenLogProbs(params, cfg, ids)));
  });
  const nll = sum.dataSync()[0];
  sum.dispose();
  return { nll, tokens: rows * (L - 1) };
};

/**
 * log p(targets[b,t] | inputs[b,..t]) and whether each target is the argmax ("greedy", ties included) of its
 * distribution: (B,T) float32 and (B,T) bool <- inputs, targets (B,T) int32. The general form of
 * `nextTokenLogProbs`: a window of T inputs scores T targets, so a full context of T positions
 * predicts T tokens (lm-eval's `inp = (ctx + cont)[-(max_length+1):][:-1]`).
 */
export const targetLogProbs = (
  params: Model.Weights,
  cfg: Config.ModelConfig,
  inputs: tf.Tensor2D,
  targets: tf.Tensor2D,
): { readonly logprobs: tf.Tensor2D; readonly greedy: tf.Tensor2D } =>
  tf.tidy(() => {
    const [B, T] = inputs.shape;
    const V = cfg.vocabSize;
    const z = tf.reshape(Model.forward(params, cfg, inputs), [B * T, V]); // (N,V)
    const t = tf.reshape(targets, [B * T]); // (N)
    const flat = tf.add(tf.mul(tf.range(0, B * T, 1, "int32"), tf.scalar(V, "int32")), t);
    const zt = tf.gather(tf.reshape(z, [B * T * V]), flat); // (N) target logits
    // log p = z_t − logsumexp(z): one (N,V) exp pass instead of materialising log-softmax, and
    // the row max it needs also answers "greedy" (z_t is the max; an exact tie counts).
    const m = tf.max(z, 1); // (N)
    const lse = tf.add(tf.log(tf.sum(tf.exp(tf.sub(z, tf.reshape(m, [B * T, 1]))), 1)), m); // (N)
    const logprobs = tf.reshape(tf.sub(zt, lse), [B, T]) as tf.Tensor2D;
    const greedy = tf.reshape(tf.greaterEqual(zt, m), [B, T]) as tf.Tensor2D;
    return { logprobs, greedy };
  });

/** One scoring row: `targets[i]` is predicted from `input[0..i]`; both have the same length. */
export interface Row {
  readonly input: ArrayLike<number>;
  readonly targets: ArrayLike<number>;
}

/** Per-position results of one row. */
export interface RowScore {
  readonly logprobs: Float32Array;
  /** 1 where the target is the model's argmax. */
  readonly greedy: Uint8Array;
}

/**
 * Score rows of possibly different lengths in one forward pass: each row is right-padded to the
 * longest (causal attention never lets a position see the padding after it), and the results are
 * cut back to each row's length. One host read per call.
 */
export const scoreRows = (params: Model.Weights, cfg: Config.ModelConfig, rows: ReadonlyArray<Row>): Array<RowScore> => {
  if (rows.length === 0) return [];
  const T = Math.max(...rows.map((r) => r.input.length));
  if (T === 0) return rows.map(() => ({ logprobs: new Float32Array(0), greedy: new Uint8Array(0) }));
  if (T > cfg.contextLength) throw new Error(`Score.scoreRows: a row of ${T} positions exceeds contextLength ${cfg.contextLength}`);
  const B = rows.length;
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  rows.forEach((r, b) => {
    if (r.targets.length !== r.input.length) throw new Error(`Score.scoreRows: row ${b} has ${r.input.length} inputs and ${r.targets.length} targets`);
    for (let i = 0; i < r.input.length; i++) {
      inputs[b * T + i] = r.input[i];
      targets[b * T + i] = r.targets[i];
    }
  });
  const [lp, gr] = tf.tidy(() => {
    const s = targetLogProbs(params, cfg, tf.tensor2d(inputs, [B, T], "int32"), tf.tensor2d(targets, [B, T], "int32"));
    return [s.logprobs, tf.cast(s.greedy, "int32")];
  });
  const logprobs = lp.dataSync() as Float32Array;
  const greedy = gr.dataSync() as Int32Array;
  tf.dispose([lp, gr]);
  return rows.map((r, b) => ({
    logprobs: logprobs.slice(b * T, b * T + r.input.length),
    greedy: Uint8Array.from(greedy.subarray(b * T, b * T + r.input.length)),
  }));
};
