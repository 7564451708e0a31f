/**
 * Token-level scoring, shared by the trainer's periodic evaluation and the evaluator app: the
 * log-probability the model gives each next token. Patch-trained checkpoints are scored here at
 * token level (K = 1), which is the only comparable number (method.md §2.3).
 */
import * as tf from "@tensorflow/tfjs";
import type { Config } from "@patchlm/core";
import { Model } from "@patchlm/model";

/** log p(ids[:, t+1] | ids[:, ..t]) for every t: (B,L−1) <- ids (B,L) int32. */
export const nextTokenLogProbs = (params: Model.Params, cfg: Config.ModelConfig, ids: tf.Tensor2D): tf.Tensor2D =>
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
export const windowNll = (params: Model.Params, cfg: Config.ModelConfig, tokens: Int32Array, rows: number, L: number): NllSum => {
  const sum = tf.tidy(() => {
    const ids = tf.tensor2d(tokens, [rows, L], "int32");
    return tf.neg(tf.sum(nextTokenLogProbs(params, cfg, ids)));
  });
  const nll = sum.dataSync()[0];
  sum.dispose();
  return { nll, tokens: rows * (L - 1) };
};
