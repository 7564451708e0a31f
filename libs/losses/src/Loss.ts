/**
 * Cross-entropy losses for token-level and patch-level training.
 *
 * The patch ("bag") loss is the paper's Eq. 2 as the official code computes it
 * (modeling_llama.py:1056-1064): one softmax per scored position, scored against all K tokens of
 * the next patch with equal weight, averaged over the (row, slot) pairs. See method.md §2.
 */
import * as tf from "@tensorflow/tfjs";

/** PyTorch's default `ignore_index`, which the official code inherits from `nll_loss`. */
export const DEFAULT_IGNORE_INDEX = -100;

/**
 * How targets equal to `ignoreIndex` change the mean (method.md §2.2, TV7). Without ignored
 * targets both give the mean over all R·K (row, slot) pairs.
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
 * (a duplicate target counts twice). The gradient is analytic (`tf.customGrad`): one logsumexp
 * per row and K gathers forward, one softmax and a scatter-add of R·K weights backward; nothing of
 * size R×K×V is ever built.
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
    return weightedBag(z, safeT, weights);
  });
};

/**
 * Token cross-entropy, the mean over the valid targets: logits (N,V) with targets int32 (N), or
 * (B,T,V) with (B,T). It is the bag loss with one slot, so K = 1 patch training and token
 * training share one code path and agree bit for bit (method.md §2.2: "the same K=1 code is the
 * ordinary next-token cross-entropy").
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

/**
 * L = Σ_rk w_rk·(LSE(z_r) − z_r[t_rk]); ∂L/∂z_r = (Σ_k w_rk)·p_r − Σ_k w_rk·onehot(t_rk).
 * With w = 1/(K·R) this is (K·p − c)/(K·R) (method.md §2.3).
 */
const weightedBag = (z: tf.Tensor2D, t: tf.Tensor2D, w: tf.Tensor2D): tf.Scalar => {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const logits = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    const [R, V] = logits.shape;
    // logsumexp by hand, keeping exp(z − max) and its row sums: backward's softmax is then one
    // division instead of a second pass of exp over R×V, the costliest elementwise op here.
    const rowMax = tf.max(logits, 1, true); // (R,1)
    const shifted = tf.exp(tf.sub(logits, rowMax)); // (R,V) exp(z − max)
    const rowSum = tf.sum(shifted, 1, true); // (R,1)
    const lse = tf.add(rowMax, tf.log(rowSum)); // (R,1)
    // (R,K) <- z_r[t_rk], through flat offsets r·V + t_rk: the wasm backend's batched gather
    // (batchDims = 1) reads out of bounds in tfjs 4.22.
    const offsets = tf.add(tf.reshape(tf.mul(tf.range(0, R, 1, "int32"), tf.scalar(V, "int32")), [R, 1]), t);
    const picked = tf.gather(tf.reshape(logits, [R * V]), offsets);
    const value = tf.sum(tf.mul(w, tf.sub(lse, picked))) as tf.Scalar;
    // The forward runs inside the tape's own tidy: anything backward needs must be saved.
    save([shifted, rowSum, offsets, w]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: Array<tf.Tensor>) => {
        const [e, s, at, w2] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const K = at.shape[1];
        const wdy = tf.mul(w2, dy); // (R,K) upstream scale folded into the weights
        // (R,1) Σ_k w_rk·dy / Σ_v exp(z − max): scales exp(z − max) straight to (Σ_k w_rk)·dy·p_r
        const rowScale = tf.div(tf.sum(wdy, 1, true), s);
        // (R,V) <- each weight added at its flat offset r·V + t_rk; duplicates add up
        const counts = tf.reshape(tf.scatterND(tf.reshape(at, [R * K, 1]), tf.reshape(wdy, [R * K]), [R * V]), [R, V]);
        return tf.sub(tf.mul(e, rowScale), counts);
      },
    };
  });
  return op(z) as tf.Scalar;
};
