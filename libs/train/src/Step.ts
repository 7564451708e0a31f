/**
 * One training step: forward, backward, clip at the global gradient norm, AdamW update
 * (docs/method.md §4: clipping 1.0, AdamW β = (0.9, 0.95), ε 1e-8, weight decay 0.1 on 2-D
 * weights).
 *
 * Everything runs inside one tf.tidy and nothing is read back to the host, so steps queue up
 * without waiting for the device; the loss and gradient norm come back as scalar tensors for the
 * caller to read at its log interval. The single exception is `skipNonFinite`, below.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Config } from "@patchlm/core";
import type { Model } from "@patchlm/model";
import { AdamW, Gradients } from "@patchlm/optim";
import { Objective, type PatchStrategy } from "@patchlm/patching";

export interface Options {
  readonly cfg: Config.ModelConfig;
  /** Patch size; 1 is token-level training. */
  readonly K: number;
  /** Default the paper's `mean`; never called when K = 1. */
  readonly strategy?: PatchStrategy.PatchStrategy;
  /** The model's variables. */
  readonly params: Model.Weights;
  /**
   * The strategy's extra parameters as variables (`Model.materialize(strategy.parameters(C, K), seed)`),
   * trained with the model. None when K = 1: they are dropped at the switch to token level.
   */
  readonly strategyParams?: Readonly<Record<string, tf.Variable>>;
  /** An AdamW over exactly `params` and `strategyParams`. */
  readonly optimizer: AdamW.Optimizer;
  /** Clip gradients to this global norm (torch clip_grad_norm_); default 1.0, the paper's; Infinity: no clipping. */
  readonly maxGradNorm?: number;
  /** PaLM z-loss coefficient; default off. */
  readonly zLoss?: number;
  /**
   * Read the loss and gradient norm back every step (one scalar sync: isFinite(loss + norm)) and
   * skip the optimizer update when either is NaN or ±Inf, so one bad batch cannot poison the
   * weights or the Adam moments. Costs a device round trip per step (the step can no longer
   * overlap with the next batch's host work); default off, in which case the caller should check
   * the returned loss at its log interval and stop on a non-finite value.
   */
  readonly skipNonFinite?: boolean;
}

export interface Result {
  /** The batch loss before the update, the mean over micro-batches (the caller disposes it). */
  readonly loss: tf.Scalar;
  /** The global norm of the (micro-batch mean) gradient before clipping (the caller disposes it). */
  readonly gradNorm: tf.Scalar;
  /** True when `skipNonFinite` found a non-finite loss or gradient and left the weights alone. */
  readonly skipped: boolean;
}

/**
 * One optimizer step on ids (B, K·T) int32, or on several micro-batches of that shape whose
 * gradients are accumulated (averaged) before the single update, at this step's learning rate.
 */
export type TrainStep = (batch: tf.Tensor2D | ReadonlyArray<tf.Tensor2D>, lr: number) => Result;

export const makeTrainStep = (opts: Options): TrainStep => {
  const { cfg, K, params, optimizer } = opts;
  const strategyParams = opts.strategyParams ?? {};
  if (K === 1 && Object.keys(strategyParams).length > 0) {
    throw new Error(
      `makeTrainStep: K = 1 runs no patch strategy, so its parameters [${Object.keys(strategyParams).join(", ")}] ` +
        `would get no gradient; drop them at the switch to token level`,
    );
  }
  const maxGradNorm = opts.maxGradNorm ?? 1.0;
  const spec: Objective.Spec = { cfg, K, strategy: opts.strategy, zLoss: opts.zLoss };
  const trainable = { ...params, ...strategyParams };
  const valueAndGrads = (ids: tf.Tensor2D) => Gradients.valueAndGrads(trainable, () => Objective.lossFor(spec, params, ids, strategyParams));

  return (batch, lr) => {
    const micro: ReadonlyArray<tf.Tensor2D> = Array.isArray(batch) ? batch : [batch as tf.Tensor2D];
    if (micro.length === 0) throw new Error("TrainStep: no micro-batch");
    const M = micro.length;
    return tf.tidy(() => {
      // Sum the micro-batches' losses and gradients; each backward pass frees its activations
      // before the next forward starts, so memory holds one graph plus one gradient sum.
      let { value: lossSum, grads: gradSum } = valueAndGrads(micro[0]);
      for (const ids of micro.slice(1)) {
        const next = valueAndGrads(ids);
        const summed = tf.tidy(() => ({
          loss: tf.add(lossSum, next.value) as tf.Scalar,
          grads: Object.fromEntries(Object.entries(gradSum).map(([name, g]) => [name, tf.add(g, next.grads[name])])),
        }));
        tf.dispose([lossSum, next.value, ...Object.values(gradSum), ...Object.values(next.grads)]);
        lossSum = summed.loss;
        gradSum = summed.grads;
      }
      // Equal-sized micro-batches: the batch loss and gradient are the means, so the norm of the
      // mean gradient is ‖Σg‖/M and the 1/M folds into the update's gradient scale.
      const loss = M === 1 ? lossSum : (tf.div(lossSum, M) as tf.Scalar);
      const gradNorm = M === 1 ? Gradients.globalNorm(gradSum) : (tf.div(Gradients.globalNorm(gradSum), M) as tf.Scalar);
      // Deliberate host sync, only when asked: one scalar says whether both are finite.
      const skipped = opts.skipNonFinite === true && tf.isFinite(tf.add(loss, gradNorm)).dataSync()[0] === 0;
      if (!skipped) {
        // Clipping folds into AdamW's moment update as a scale factor: no clipped copy of the gradients.
        const clip = Number.isFinite(maxGradNorm) ? Gradients.clipCoefficient(gradNorm, maxGradNorm) : undefined;
        const scale = M === 1 ? clip : tf.div(clip ?? 1, M) as tf.Scalar;
        optimizer.apply(gradSum, lr, scale === undefined ? {} : { gradScale: scale });
      }
      return { loss, gradNorm, skipped };
    });
  };
};
