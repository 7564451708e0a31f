/**
 * A patch strategy with parameters of its own: a learned softmax-weighted mean with one weight per
 * offset *and channel*. The logits start at zero, so training starts from the paper's plain mean;
 * the softmax over the K offsets keeps every channel's weights positive and summing to one.
 *
 * The trainer loads this file with `--strategy-module dist/strategy.js`; a program passes the
 * object itself to `Run.train(config, { strategies: [channelWeightedMean] })`.
 */
import * as tf from "@tensorflow/tfjs-core";
import { PatchStrategy } from "@patchlm/patching";

const NAME = "channel-weighted-mean";

/** (K, C) logits: one per offset and channel, zero at the start. */
const logits = (C: number, K: number) =>
  ({ name: PatchStrategy.paramName(NAME, "logits"), shape: [K, C], init: { kind: "zeros" }, decay: false }) as const;

export const channelWeightedMean: PatchStrategy.PatchStrategy = {
  name: NAME,
  description: "learned softmax weights over the K offsets, one set per channel; starts as the plain mean",
  parameters: (C, K) => [logits(C, K)],
  aggregate: (x, params) => {
    const [, , K, C] = x.shape;
    const a = PatchStrategy.param(NAME, params, logits(C, K)); // (K,C)
    return tf.tidy(() => {
      const w = tf.transpose(tf.softmax(tf.transpose(a))); // (K,C): softmax over K in each channel
      return tf.sum(tf.mul(x, tf.reshape(w, [1, 1, K, C])), 2) as tf.Tensor3D; // (B,T,C) <- Σ_k w_kc·x_kc
    });
  },
};

export default channelWeightedMean;
