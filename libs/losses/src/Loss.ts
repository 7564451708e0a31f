/**
 * Cross-entropy losses for token-level and patch-level training.
 *
 * The patch ("bag") loss is the paper's Eq. 2 as the official code computes it
 * (modeling_llama.py:1056-1064): one softmax per scored position, scored against all K tokens of
 * the next patch with equal weight, averaged over the (row, slot) pairs. See docs/method.md §2.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Fused } from "@patchlm/fused";

/** PyTorch's default `ignore_index`, which the official code inherits from `nll_loss`. */
export const DEFAULT_IGNORE_INDEX = -100;

/**
 * How targets equal to `ignoreIndex` change the mean (docs/method.md §2.2, §8 TV7). Without
 * ignored targets both give the mean over all R·K (row, slot) pairs.
 * - `"per-slot"` (default, the official code): for each slot k, the mean over the rows whose k-th
 *   target is valid; then the mean over the slots. Where the official code returns NaN (a slot
 *   with every target ignored), this averages over the slots that have at least one valid target.
 * - `"pooled"`: the mean over all valid (row, slot) pairs (what the Cut-Cross-Entropy port does).
 * With no valid target at all the loss is 0 and so is its gradient: there is nothing to learn.
 */
export type IgnoreReduction = "per-slot" | "pooled";

export interface BagOptions {
  /** Targets equal to this are not scored. Default -100. Other targets must lie in [0, V). */
  readonly ignoreIndex?: number;
  /** Default "per-slot", the official code's semantics. */
  readonly reduction?: IgnoreReduction;
}

export interface TokenOptions {
  /** Targets equal to this are not scored; the mean runs over the valid ones. Default -100. */
  readonly ignoreIndex?: number;
}

/**
 * The patch "bag" cross-entropy: logits (R,V) with targets int32 (R,K), or logits (B,T,V) with
 * targets (B,T,K). Row r is scored against each of its K targets under one softmax.
 *
 * Without ignored targets: L = Σ_r (K·LSE(z_r) − Σ_k z_r[t_rk]) / (K·R), and
 * ∂L/∂z_r = (K·p_r − c_r)/(K·R), where c_r counts each vocabulary entry among the row's targets
 * (a duplicate target counts twice). It is `Fused.weightedCrossEntropy` with w_rk = 1/(K·R) (or the
 * ignore-index weights below): one fused kernel where the backend has it, else an analytic
 * gradient (one logsumexp per row and K gathers forward, one softmax and a scatter-add of R·K
 * weights backward); nothing of size R×K×V is ever built.
 */
export const bagCrossEntropy = (logits: tf.Tensor, targets: tf.Tensor, opts: BagOptions = {}): tf.Scalar => {
  const [R, V, K] = bagShape(logits, targets);
  return tf.tidy(() => {
    const z = tf.reshape(logits, [R, V]) as tf.Tensor2D; // (R,V)
    const t = tf.reshape(targets, [R, K]) as tf.Tensor2D; // (R,K)
    const ignoreIndex = opts.ignoreIndex ?? DEFAULT_IGNORE_INDEX;
    const valid = tf.notEqual(t, tf.scalar(ignoreIndex, "int32")) as tf.Tensor2D; // (R,K) bool
    const safeT = tf.where(valid, t, tf.zerosLike(t)) as tf.Tensor2D; // ignored slots point at entry 0 with weight 0
    const weights = slotWeights(tf.cast(valid, "float32"), opts.reduction ?? "per-slot"); // (R,K)
    return Fused.weightedCrossEntropy(z, safeT, weights);
  });
};

/**
 * Token cross-entropy, the mean over the valid targets: logits (N,V) with targets int32 (N), or
 * (B,T,V) with (B,T). It is the bag loss with one slot, so K = 1 patch training and token
 * training share one code path and agree bit for bit (docs/method.md §2.2: "With K = 1 the same
 * lines are ordinary next-token cross-entropy").
 */
export const tokenCrossEntropy = (logits: tf.Tensor, targets: tf.Tensor, opts: TokenOptions = {}): tf.Scalar => {
  if (logits.rank !== targets.rank + 1) {
    throw new Error(
      `tokenCrossEntropy: logits ${fmt(logits.shape)} need targets of rank ${logits.rank - 1}, got ${fmt(targets.shape)}`,
    );
  }
  return tf.tidy(() =>
    bagCrossEntropy(logits, tf.expandDims(targets, -1), {
      ignoreIndex: opts.ignoreIndex ?? DEFAULT_IGNORE_INDEX,
      reduction: "pooled",
    }),
  );
};

/**
 * PaLM's auxiliary z-loss, coef · mean over rows of LSE(z_r)²: keeps the softmax normaliser near 1
 * so logits do not drift (PaLM §5 uses coef 1e-4). Logits (…,V); every row counts, so pass only
 * the scored positions. Gradient by autodiff.
 */
export const zLoss = (logits: tf.Tensor, coef: number): tf.Scalar =>
  tf.tidy(() => tf.mul(tf.mean(tf.square(tf.logSumExp(logits, -1))), coef) as tf.Scalar);

// ---------------------------------------------------------------------------------------------

const fmt = (shape: ReadonlyArray<number>): string => `[${shape.join(",")}]`;

/** [R, V, K] after checking that logits and targets line up; mismatches are programmer bugs. */
const bagShape = (logits: tf.Tensor, targets: tf.Tensor): [number, number, number] => {
  const fail = (why: string): never => {
    throw new Error(`bagCrossEntropy: ${why} (logits ${fmt(logits.shape)}, targets ${fmt(targets.shape)})`);
  };
  if (targets.dtype !== "int32") fail(`targets must be int32, got ${targets.dtype}`);
  if (logits.dtype !== "float32") fail(`logits must be float32, got ${logits.dtype}`);
  if (logits.rank !== 2 && logits.rank !== 3) fail("logits must be (R,V) or (B,T,V)");
  if (targets.rank !== logits.rank) fail("targets must be (R,K) for (R,V) logits, (B,T,K) for (B,T,V)");
  const lead = logits.shape.slice(0, -1);
  if (lead.some((d, i) => d !== targets.shape[i])) fail("leading dimensions differ");
  const R = lead.reduce((a, b) => a * b, 1);
  const V = logits.shape[logits.rank - 1];
  const K = targets.shape[targets.rank - 1];
  if (K < 1) fail("need at least one target per row");
  // Targets are addressed by int32 flat offsets r·V + t.
  if (R * V > 2 ** 31 - 1) fail(`R·V = ${R * V} logits exceed int32 offsets; use smaller micro-batches`);
  return [R, V, K];
};

/** (R,K) weights w_rk of each (row, slot) term, summing to 1 over the valid terms. */
const slotWeights = (valid: tf.Tensor2D, reduction: IgnoreReduction): tf.Tensor2D => {
  if (reduction === "pooled") {
    // valid / max(#valid, 1): the count is exact in float32 below 2^24 terms.
    return tf.div(valid, tf.maximum(tf.sum(valid), 1));
  }
  const perSlot = tf.sum(valid, 0); // (K) valid rows per slot
  const slotsUsed = tf.sum(tf.cast(tf.greater(perSlot, 0), "float32")); // slots with a valid row
  // valid_rk / (n_k · S); with nothing ignored this is 1/(R·K) for every term.
  return tf.div(valid, tf.mul(tf.maximum(perSlot, 1), tf.maximum(slotsUsed, 1)));
};
