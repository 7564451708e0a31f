import * as tf from "@tensorflow/tfjs-core";
import { Fused } from "@patchlm/fused";

/** Trainable variables keyed by parameter-table name (the same shape as @patchlm/model's Weights). */
export type Variables = { readonly [name: string]: tf.Variable };

/** Gradients keyed by parameter name. */
export type Grads = { readonly [name: string]: tf.Tensor };

/**
 * The value of `loss` and its gradients with respect to `params`, keyed by parameter name
 * (tf.variableGrads keys them by the engine's variable names). Parameters `loss` does not touch
 * get no entry. The caller owns the returned tensors.
 */
export const valueAndGrads = (params: Variables, loss: () => tf.Scalar): { value: tf.Scalar; grads: Grads } => {
  const byVariable = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));
  const { value, grads } = tf.variableGrads(loss, Object.values(params));
  const named: Record<string, tf.Tensor> = {};
  for (const [variableName, g] of Object.entries(grads)) named[byVariable.get(variableName)!] = g;
  return { value, grads: named };
};

/** √(Σ‖g‖²) over every gradient, as a scalar tensor (no host sync). */
export const globalNorm = (grads: Grads): tf.Scalar => tf.tidy(() => tf.sqrt(Fused.sumOfSquares(Object.values(grads))) as tf.Scalar);

/**
 * The factor torch.nn.utils.clip_grad_norm_ multiplies every gradient by:
 * min(1, maxNorm / (norm + 1e-6)). A tensor, so clipping never waits for the host; pass it to
 * `AdamW.Optimizer.apply` as `gradScale`, which folds it into the moment update (no clipped copies).
 */
export const clipCoefficient = (norm: tf.Scalar, maxNorm: number): tf.Scalar => {
  if (!(maxNorm > 0)) throw new Error(`clip: maxNorm must be > 0, got ${maxNorm}`);
  return tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1) as tf.Scalar);
};
