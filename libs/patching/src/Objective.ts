/**
 * The training objective: ids (B, K·T) -> scalar loss, for patch-level (K > 1) and token-level
 * (K = 1) training alike (paper §2; official code modeling_llama.py:879-890 and 1056-1064).
 *
 * Patch mode: embed all K·T tokens with the model's own table, aggregate each patch's K
 * embeddings with the strategy (the paper's plain mean by default), run the decoder over the T
 * patches at positions 0..T−1, and score the output at patch j against the K tokens of patch j+1
 * under one softmax (the bag loss). Token mode is the same path with K = 1 and no strategy.
 * Everything is fp32; the official code averages bf16 embeddings in training mode
 * (modeling_llama.py:881-882), which differs in the last bits only (docs/method.md §6, pitfall 5).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Config } from "@patchlm/core";
import { Loss } from "@patchlm/losses";
import { Model } from "@patchlm/model";
import * as Patches from "./Patches";
import * as PatchStrategy from "./PatchStrategy";

export interface Spec {
  readonly cfg: Config.ModelConfig;
  /** Patch size; 1 is ordinary token-level training. */
  readonly K: number;
  /** How K embeddings become one patch input; default the paper's `mean`. Unused when K = 1. */
  readonly strategy?: PatchStrategy.PatchStrategy;
  /** PaLM z-loss coefficient on the scored positions (e.g. 1e-4); 0 or absent: off. */
  readonly zLoss?: number;
}

/**
 * The loss of one batch: ids (B, K·T) int32, with T ≤ cfg.contextLength. Throws the PatchError
 * when K does not divide the sequence length. `strategyParams` holds the strategy's extra
 * parameters, if it declares any (`strategy.parameters(C, K)`).
 *
 * K = 1 is exactly the ordinary next-token loss, `logits[:, :-1]` against `ids[:, 1:]`: same
 * value and same gradients, bit for bit (the bag loss with one slot is the token loss, and no
 * strategy runs).
 */
export const lossFor = (
  spec: Spec,
  params: Model.Weights,
  ids: tf.Tensor2D,
  strategyParams: PatchStrategy.Weights = {},
): tf.Scalar => {
  const { cfg, K } = spec;
  const [B, L] = ids.shape;
  const C = cfg.dModel;
  return tf.tidy(() => {
    const targets = Patches.nextPatchTargets(ids, K); // (B,T−1,K); throws the PatchError when K ∤ L
    const T = L / K;
    if (T < 2) throw new Error(`Objective.lossFor: ${L} tokens make ${T} patch(es) of ${K}; a sequence needs at least 2 to score one`);
    const tokens = Model.embed(params, cfg, ids); // (B,K·T,C)
    const x =
      K === 1
        ? tokens // token mode never calls a strategy
        : (spec.strategy ?? PatchStrategy.mean).aggregate(tf.reshape(tokens, [B, T, K, C]), strategyParams); // (B,T,C) <- (B,T,K,C)
    const h = Model.hidden(params, cfg, x); // (B,T,C), positions 0..T−1
    // The last position has no next patch inside the window: drop it before the head, which
    // is the official code's logits[..., :-1, :] without computing the unused row.
    const scored = Model.logits(params, cfg, tf.slice(h, [0, 0, 0], [B, T - 1, C])); // (B,T−1,V)
    const loss = Loss.bagCrossEntropy(scored, targets);
    return spec.zLoss ? tf.add(loss, Loss.zLoss(scored, spec.zLoss)) : loss;
  });
};
