import * as tf from "@tensorflow/tfjs";

/**
 * Fused training ops: one kernel where tfjs would run several, each allocating its output.
 *
 * Each op runs its fused kernel when the active backend registers one (the `native` backend
 * does) and otherwise the plain tfjs ops it replaces, which are also the definition the kernels
 * are tested against. The ops carry gradients either way: the fused path through gradients
 * registered here, calling the backward kernels.
 *
 * This module depends on nothing but @tensorflow/tfjs, so that the tensor libs (model, losses,
 * optim) can use it without depending on a backend; see the kernel names below for the contract
 * a backend implements.
 */

/** Kernel names, inputs, attributes and outputs: the contract a backend implements. */
export const KernelNames = {
  /** inputs {param, m, v, grad, scale?}; attrs AdamWAttrs; outputs [param, m, v]. */
  adamw: "PatchlmAdamW",
  /** inputs {x, gain}; attrs {eps}; output y, same shape as x; rows over the last axis. */
  rmsNorm: "PatchlmRmsNorm",
  /** inputs {dy, x, gain}; attrs {eps}; outputs [dx, dgain]. */
  rmsNormGrad: "PatchlmRmsNormGrad",
  /** inputs {gate, up}; output silu(gate)·up. */
  swiglu: "PatchlmSwiGLU",
  /** inputs {dy, gate, up}; outputs [dgate, dup]. */
  swigluGrad: "PatchlmSwiGLUGrad",
  /** inputs {logits (R,V), targets (R,K) int32, weights (R,K)}; outputs [loss (scalar), lse (R)]. */
  weightedCrossEntropy: "PatchlmWeightedCE",
  /** inputs {dy (scalar), logits, targets, weights, lse}; output dlogits (R,V). */
  weightedCrossEntropyGrad: "PatchlmWeightedCEGrad",
  /** inputs {q (B,H,T,D), k, v (B,Hkv,T,D)}; attrs {scale}; outputs [o (B,H,T,D), lse (B,H,T)]. */
  causalAttention: "PatchlmCausalAttention",
  /** inputs {dy, q, k, v, o, lse}; attrs {scale}; outputs [dq, dk, dv]. */
  causalAttentionGrad: "PatchlmCausalAttentionGrad",
} as const;

const fusedHere = (...names: ReadonlyArray<string>): boolean => {
  const backend = tf.getBackend();
  return names.every((name) => tf.getKernel(name, backend) !== undefined);
};

const run = (name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = {}) =>
  tf.engine().runKernel(name, inputs, attrs) as tf.Tensor | Array<tf.Tensor>;

/**
 * A gradient whose backward kernel yields every input's gradient at once. It runs eagerly: tfjs
 * calls each input's gradient thunk inside its own tidy, which would dispose the other outputs.
 */
const registerOnce = (forward: string, backward: string, inputs: ReadonlyArray<string>) => {
  if (tf.getGradient(forward) !== undefined) return;
  tf.registerGradient({
    kernelName: forward,
    inputsToSave: [...inputs],
    gradFunc: (dy, saved, attrs) => {
      const grads = run(backward, { dy: dy as tf.Tensor, ...Object.fromEntries(inputs.map((n, i) => [n, saved[i]])) }, attrs) as Array<tf.Tensor>;
      return Object.fromEntries(inputs.map((n, i) => [n, () => grads[i]]));
    },
  });
};

const ensureGradients = () => {
  registerOnce(KernelNames.rmsNorm, KernelNames.rmsNormGrad, ["x", "gain"]);
  registerOnce(KernelNames.swiglu, KernelNames.swigluGrad, ["gate", "up"]);
  if (tf.getGradient(KernelNames.causalAttention) === undefined) {
    tf.registerGradient({
      kernelName: KernelNames.causalAttention,
      inputsToSave: ["q", "k", "v"],
      outputsToSave: [true, true],
      gradFunc: (dy, saved, attrs) => {
        const [q, k, v, o, lse] = saved;
        // Only the output o is used downstream; lse is saved for this pass.
        const dO = Array.isArray(dy) ? dy[0] : dy;
        const [dq, dk, dv] = run(KernelNames.causalAttentionGrad, { dy: dO, q, k, v, o, lse }, attrs) as Array<tf.Tensor>;
        return { q: () => dq, k: () => dk, v: () => dv };
      },
    });
  }
  if (tf.getGradient(KernelNames.weightedCrossEntropy) === undefined) {
    tf.registerGradient({
      kernelName: KernelNames.weightedCrossEntropy,
      inputsToSave: ["logits", "targets", "weights"],
      outputsToSave: [false, true],
      gradFunc: (dy, saved) => {
        const [logits, targets, weights, lse] = saved;
        // Only the loss output is ever used downstream; lse is saved for this pass.
        const dLoss = Array.isArray(dy) ? dy[0] : dy;
        const dz = run(KernelNames.weightedCrossEntropyGrad, { dy: dLoss, logits, targets, weights, lse }) as tf.Tensor;
        return { logits: () => dz, targets: () => tf.zerosLike(targets), weights: () => tf.zerosLike(weights) };
      },
    });
  }
};

/** RMSNorm over the last axis: x·rsqrt(mean(x²) + eps)·gain, with gain of the last axis' size. */
export const rmsNorm = <T extends tf.Tensor>(x: T, gain: tf.Tensor, eps: number): T => {
  if (x.dtype === "float32" && fusedHere(KernelNames.rmsNorm, KernelNames.rmsNormGrad)) {
    ensureGradients();
    return run(KernelNames.rmsNorm, { x, gain }, { eps }) as T;
  }
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), gain)) as T;
};

/** SwiGLU's gating: silu(gate)·up = gate·σ(gate)·up, elementwise. */
export const swiglu = <T extends tf.Tensor>(gate: T, up: T): T => {
  if (gate.dtype === "float32" && fusedHere(KernelNames.swiglu, KernelNames.swigluGrad)) {
    ensureGradients();
    return run(KernelNames.swiglu, { gate, up }) as T;
  }
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up)) as T;
};

/**
 * Causal self-attention: softmax(scale·Q·Kᵀ + causal mask)·V per head, q (B,H,T,D) against
 * k, v (B,Hkv,T,D) with Hkv dividing H (grouped-query attention: head h reads kv head
 * ⌊h/(H/Hkv)⌋). Query i sees keys 0..i. The fused kernel keeps only each row's logsumexp for the
 * backward, never a (B,H,T,T) tensor; the fallback is the plain masked-softmax formulation.
 */
export const causalAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number): tf.Tensor4D => {
  if (q.dtype === "float32" && fusedHere(KernelNames.causalAttention, KernelNames.causalAttentionGrad)) {
    ensureGradients();
    const [o, lse] = run(KernelNames.causalAttention, { q, k, v }, { scale }) as Array<tf.Tensor>;
    lse.dispose();
    return o as tf.Tensor4D;
  }
  return tf.tidy(() => {
    const [B, H, T, D] = q.shape;
    const Hkv = k.shape[1];
    const R = H / Hkv;
    // (B·Hkv, R·T, D): the R query heads of a group, one after another, against its keys
    const qG = tf.reshape(q, [B * Hkv, R * T, D]);
    const scores = tf.mul(tf.matMul(qG, tf.reshape(k, [B * Hkv, T, D]), false, true), scale); // (B·Hkv,R·T,T)
    const future = tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)); // 1 above the diagonal
    const mask = tf.tile(tf.mul(future, -1e9), [R, 1]); // (R·T,T)
    const probs = tf.softmax(tf.add(scores, mask));
    return tf.reshape(tf.matMul(probs, tf.reshape(v, [B * Hkv, T, D])), [B, H, T, D]) as tf.Tensor4D;
  });
};

/**
 * Weighted cross-entropy: logits (R,V), targets int32 (R,K), weights (R,K) ->
 *   Σ_rk w_rk·(LSE(z_r) − z_r[t_rk]),  ∂/∂z_r = (Σ_k w_rk)·softmax(z_r) − Σ_k w_rk·onehot(t_rk).
 * Token cross-entropy is K = 1 with weights 1/N; the paper's patch bag loss is weights 1/(K·R).
 * A target outside [0, V) must have weight 0 (an ignored slot). The gradient flows to the logits
 * only. The fused kernel reads the logits once forward and once backward and never builds a
 * second (R,V) array forward.
 */
export const weightedCrossEntropy = (logits: tf.Tensor2D, targets: tf.Tensor2D, weights: tf.Tensor2D): tf.Scalar => {
  if (logits.dtype === "float32" && fusedHere(KernelNames.weightedCrossEntropy, KernelNames.weightedCrossEntropyGrad)) {
    ensureGradients();
    const [loss, lse] = run(KernelNames.weightedCrossEntropy, { logits, targets, weights }) as Array<tf.Tensor>;
    lse.dispose();
    return loss as tf.Scalar;
  }
  return tf.tidy(() => {
    const [R, V] = logits.shape;
    const lse = tf.logSumExp(logits, 1, true); // (R,1)
    // z_r[t_rk] through flat offsets r·V + t_rk, ignored targets clamped into range (weight 0)
    const inRange = tf.maximum(tf.minimum(targets, tf.scalar(V - 1, "int32")), tf.scalar(0, "int32"));
    const offsets = tf.add(tf.reshape(tf.mul(tf.range(0, R, 1, "int32"), tf.scalar(V, "int32")), [R, 1]), inRange);
    const picked = tf.gather(tf.reshape(logits, [R * V]), offsets); // (R,K)
    return tf.sum(tf.mul(weights, tf.sub(lse, picked))) as tf.Scalar;
  });
};

/**
 * One AdamW step's arithmetic for one parameter (torch.optim.AdamW; bias corrections and the
 * learning rate folded into host scalars by the caller):
 *   c1 = (1−β1)·s, c2 = (1−β2)·s² with s the gradient scale (clipping), 1 if absent;
 *   m' = β1·m + c1·g,  v' = β2·v + c2·g²,
 *   p' = p·shrink − m'/(√v'·invSqrtBc2 + eps)·stepSize,
 * with shrink = 1 − lr·wd for decayed parameters (1 otherwise), invSqrtBc2 = 1/√(1−β2ᵗ) and
 * stepSize = lr/(1−β1ᵗ).
 */
export interface AdamWAttrs {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly invSqrtBc2: number;
  readonly shrink: number;
  readonly stepSize: number;
}

/** The new parameter, m and v (fresh tensors; the caller assigns them to its variables). */
export const adamw = (
  param: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  grad: tf.Tensor,
  attrs: AdamWAttrs,
  gradScale?: tf.Scalar,
): { param: tf.Tensor; m: tf.Tensor; v: tf.Tensor } => {
  if (fusedHere(KernelNames.adamw)) {
    const inputs: tf.NamedTensorMap = gradScale === undefined ? { param, m, v, grad } : { param, m, v, grad, scale: gradScale };
    const [p2, m2, v2] = run(KernelNames.adamw, inputs, { ...attrs }) as Array<tf.Tensor>;
    return { param: p2, m: m2, v: v2 };
  }
  return tf.tidy(() => {
    const s = gradScale ?? tf.scalar(1);
    const c1 = tf.mul(tf.scalar(1 - attrs.beta1), s);
    const c2 = tf.mul(tf.scalar(1 - attrs.beta2), tf.square(s));
    const m2 = tf.add(tf.mul(m, attrs.beta1), tf.mul(grad, c1));
    const v2 = tf.add(tf.mul(v, attrs.beta2), tf.mul(tf.square(grad), c2));
    const denom = tf.add(tf.mul(tf.sqrt(v2), attrs.invSqrtBc2), attrs.eps);
    const p2 = tf.sub(tf.mul(param, attrs.shrink), tf.mul(tf.div(m2, denom), attrs.stepSize));
    return { param: p2, m: m2, v: v2 };
  });
};
