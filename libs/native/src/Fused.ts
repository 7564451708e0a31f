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
