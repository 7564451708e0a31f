import * as tf from "@tensorflow/tfjs-core";

/**
 * Fused training ops: one kernel where tfjs would run several, each allocating its output.
 *
 * Each op runs its fused kernel when the active backend registers one (the `native` backend
 * does) and otherwise the plain tfjs ops it replaces, which are also the definition the kernels
 * are tested against. The ops carry gradients either way: the fused path through gradients
 * registered here, calling the backward kernels.
 *
 * This lib depends on nothing but @tensorflow/tfjs, so that the tensor libs (model, losses, optim)
 * use it without depending on a backend; the kernel names below are the contract a backend
 * implements (@patchlm/native registers them for `native`).
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
  /**
   * inputs {q (B,H,T,D), k, v (B,Hkv,T,D)}, or with attr seqMajor {q (B,T,H,D), k, v (B,T,Hkv,D)};
   * attrs {scale, seqMajor}; outputs [o (q's layout), lse (B,H,T)].
   */
  causalAttention: "PatchlmCausalAttention",
  /** inputs {dy, q, k, v, o, lse}; attrs {scale, seqMajor}; outputs [dq, dk, dv], each in its input's layout. */
  causalAttentionGrad: "PatchlmCausalAttentionGrad",
  /**
   * inputs {x (B,T,h,D), cos, sin (T,D)}; attrs {transpose}; output y (B,T,h,D): `rope` below, or
   * with transpose its adjoint (which is also its gradient).
   */
  rope: "PatchlmRope",
  /** inputs: an array of float32 tensors of any shapes; output Σ x² over all of them (scalar). Not differentiable. */
  sumOfSquares: "PatchlmSumOfSquares",
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
  if (tf.getGradient(KernelNames.rope) === undefined) {
    tf.registerGradient({
      kernelName: KernelNames.rope,
      inputsToSave: ["cos", "sin"],
      gradFunc: (dy, saved, attrs) => {
        const [cos, sin] = saved;
        const transpose = !(attrs as unknown as { transpose: boolean }).transpose;
        // The rotation is linear in x: its gradient is the adjoint rotation of dy. The tables
        // are constants (positions), never trained.
        return {
          x: () => run(KernelNames.rope, { x: dy as tf.Tensor, cos, sin }, { transpose }) as tf.Tensor,
          cos: () => tf.zerosLike(cos),
          sin: () => tf.zerosLike(sin),
        };
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
 * Σ x² over every element of every tensor, as one scalar (global gradient norms). One kernel
 * where the backend has it, instead of a square and a sum per tensor; not differentiable.
 */
export const sumOfSquares = (xs: ReadonlyArray<tf.Tensor>): tf.Scalar => {
  if (xs.length > 0 && xs.every((x) => x.dtype === "float32") && fusedHere(KernelNames.sumOfSquares)) {
    return run(KernelNames.sumOfSquares, xs as unknown as tf.NamedTensorMap) as tf.Scalar;
  }
  return tf.tidy(() => {
    const squares = xs.map((x) => tf.sum(tf.square(x)));
    if (squares.length === 0) return tf.scalar(0);
    return (squares.length === 1 ? squares[0] : tf.addN(squares)) as tf.Scalar;
  });
};

/** Memory order of attention's q, k, v and output: head-major (B,H,T,D) or sequence-major (B,T,H,D). */
export type HeadLayout = "bhtd" | "bthd";

/**
 * Causal self-attention: softmax(scale·Q·Kᵀ + causal mask)·V per head, q (B,H,T,D) against
 * k, v (B,Hkv,T,D) with Hkv dividing H (grouped-query attention: head h reads kv head
 * ⌊h/(H/Hkv)⌋). Query i sees keys 0..i. The fused kernel keeps only each row's logsumexp for the
 * backward, never a (B,H,T,T) tensor; the fallback is the plain masked-softmax formulation.
 * With layout "bthd", q and the output are (B,T,H,D) and k, v (B,T,Hkv,D): the layout the
 * projections produce, which the fused kernel reads in place (no transposes either way).
 */
export const causalAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, layout: HeadLayout = "bhtd"): tf.Tensor4D => {
  if (q.dtype === "float32" && fusedHere(KernelNames.causalAttention, KernelNames.causalAttentionGrad)) {
    ensureGradients();
    const [o, lse] = run(KernelNames.causalAttention, { q, k, v }, { scale, seqMajor: layout === "bthd" }) as Array<tf.Tensor>;
    lse.dispose();
    return o as tf.Tensor4D;
  }
  if (layout === "bthd") {
    return tf.tidy(() => {
      const headMajor = (x: tf.Tensor4D) => tf.transpose(x, [0, 2, 1, 3]) as tf.Tensor4D;
      return headMajor(referenceAttention(headMajor(q), headMajor(k), headMajor(v), scale));
    });
  }
  return referenceAttention(q, k, v, scale);
};

/**
 * Causal attention as its definition, head-major, for T queries that follow S − T earlier
 * positions: q (B,H,T,D) against S keys and values k, v (B,Hkv,S,D), query i seeing keys
 * 0..S−T+i, grouped-query heads as in `causalAttention`. `keysTransposed` takes the keys as
 * (B,Hkv,D,S), the layout a KV cache keeps so that Q·Kᵀ is a plain batched product. It is
 * `causalAttention`'s fallback (S = T) and the cached decoding path (S > T), which no kernel fuses.
 */
export const referenceAttention = (
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  options: { readonly keysTransposed?: boolean } = {},
): tf.Tensor4D =>
  tf.tidy(() => {
    const [B, H, T, D] = q.shape;
    const Hkv = k.shape[1];
    const S = v.shape[2];
    const R = H / Hkv;
    // GQA without repeating K/V: query heads h = g·R + r share kv head g, so (B,H,T,D) viewed as
    // (B·Hkv, R·T, D) lines every query of group g up against that group's keys.
    const qG = tf.reshape(q, [B * Hkv, R * T, D]);
    const kG = options.keysTransposed === true ? tf.reshape(k, [B * Hkv, D, S]) : tf.reshape(k, [B * Hkv, S, D]);
    // (B·H,T,S) <- (B·Hkv,R·T,D)·(B·Hkv,S,D)ᵀ; a scale of 1 (queries pre-scaled) costs nothing
    const raw = tf.reshape(tf.matMul(qG, kG, false, options.keysTransposed !== true), [B * H, T, S]);
    const scores = scale === 1 ? raw : tf.mul(raw, scale);
    const mask = causalMask(T, S);
    const probs = tf.reshape(tf.softmax(mask === undefined ? scores : tf.add(scores, mask)), [B * Hkv, R * T, S]);
    // (B·Hkv,R·T,D) <- (B·Hkv,R·T,S)·(B·Hkv,S,D)
    return tf.reshape(tf.matMul(probs, tf.reshape(v, [B * Hkv, S, D])), [B, H, T, D]) as tf.Tensor4D;
  });

/**
 * Rotary position embedding, "rotate half" convention (Hugging Face LLaMA), of x (B,T,h,D) at the
 * positions whose tables cos, sin (T,D) hold cos(p·θ_d), sin(p·θ_d):
 *   y = x·cos + rotateHalf(x)·sin,  rotateHalf(x) = concat(−x[D/2:], x[:D/2]).
 * `transpose` applies the adjoint map instead, x·cos + rotateHalfᵀ(x·sin) (the gradient). The
 * fused kernel is one pass; the fallback runs rotateHalf as a matMul by a signed D×D permutation
 * (on wasm 4-5x faster than Reverse, a per-element index kernel there, or slice+concat).
 */
export const rope = (x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, transpose = false): tf.Tensor4D => {
  if (x.dtype === "float32" && fusedHere(KernelNames.rope)) {
    ensureGradients();
    return run(KernelNames.rope, { x, cos, sin }, { transpose }) as tf.Tensor4D;
  }
  return tf.tidy(() => {
    const [B, T, h, D] = x.shape;
    const table = (t: tf.Tensor2D) => tf.reshape(t, [T, 1, D]);
    const rotate = (z: tf.Tensor) =>
      tf.reshape(tf.matMul(tf.reshape(z, [B * T * h, D]), tf.tensor2d(rotateHalfMatrix(D), [D, D]), false, transpose), [B, T, h, D]);
    return transpose
      ? (tf.add(tf.mul(x, table(cos)), rotate(tf.mul(x, table(sin)))) as tf.Tensor4D)
      : (tf.add(tf.mul(x, table(cos)), tf.mul(rotate(x), table(sin))) as tf.Tensor4D);
  });
};

const rotateHalfMatrices = new Map<number, Float32Array>();

/** R (D,D) with x·R = rotateHalf(x): column d < D/2 takes −x[d+D/2], column d ≥ D/2 takes x[d−D/2]. */
export const rotateHalfMatrix = (D: number): Float32Array => {
  const hit = rotateHalfMatrices.get(D);
  if (hit !== undefined) return hit;
  const half = D / 2;
  const r = new Float32Array(D * D);
  for (let d = 0; d < half; d++) {
    r[(d + half) * D + d] = -1;
    r[d * D + d + half] = 1;
  }
  rotateHalfMatrices.set(D, r);
  return r;
};

// Additive (T,S) mask for T queries after S − T earlier positions: query i sees keys 0..S−T+i,
// −1e9 beyond. Finite, so exp underflows to an exact 0 without ever forming inf − inf. Built on
// the host: one upload, no mask ops on the tape. None when no key is in any query's future.
const causalMask = (T: number, S: number): tf.Tensor2D | undefined => {
  if (T === 1) return undefined;
  const past = S - T;
  const m = new Float32Array(T * S);
  for (let i = 0; i < T - 1; i++) m.fill(-1e9, i * S + past + i + 1, (i + 1) * S);
  return tf.tensor2d(m, [T, S]);
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
  return tf.tidy(() => weightedBag(logits, targets, weights));
};

/**
 * The fallback, with an analytic gradient (`tf.customGrad`): one logsumexp per row and K gathers
 * forward, one division and a scatter-add of R·K weights backward; nothing of size R×K×V is built,
 * and no gather gradient (UnsortedSegmentSum: O(V·R·K) on cpu, missing on wasm) is needed.
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
    // (batchDims = 1) reads out of bounds in tfjs 4.22. Ignored targets are clamped into range
    // (their weight is 0).
    const inRange = tf.maximum(tf.minimum(t, tf.scalar(V - 1, "int32")), tf.scalar(0, "int32"));
    const offsets = tf.add(tf.reshape(tf.mul(tf.range(0, R, 1, "int32"), tf.scalar(V, "int32")), [R, 1]), inRange);
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
