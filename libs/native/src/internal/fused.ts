import * as tf from "@tensorflow/tfjs-core";
import { Fused } from "@patchlm/fused";
import type { Addon } from "./addon";
import { allocateF32, f32, i32, type KernelArgs, output } from "./kernelUtil";

/** The native implementations of the kernels named in @patchlm/fused's Fused.KernelNames (all float32). */
export const fusedKernels = (addon: Addon): ReadonlyArray<{ kernelName: string; kernelFunc: tf.KernelFunc }> => {
  const adamw = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { param, m, v, grad } = args.inputs;
    const scaleInfo = args.inputs.scale as tf.TensorInfo | undefined;
    const a = args.attrs as unknown as { beta1: number; beta2: number; eps: number; invSqrtBc2: number; shrink: number; stepSize: number };
    const s = scaleInfo === undefined ? 1 : f32(backend, scaleInfo)[0];
    // As the fallback: c1 = (1−β1)·s and c2 = (1−β2)·s², each rounded to float32.
    const c1 = Math.fround(Math.fround(1 - a.beta1) * s);
    const c2 = Math.fround(Math.fround(1 - a.beta2) * Math.fround(s * s));
    const n = tf.util.sizeFromShape(param.shape);
    const [p2, m2, v2] = [0, 1, 2].map(() => allocateF32(backend, n));
    const h = Float32Array.of(a.beta1, a.beta2, c1, c2, a.eps, a.invSqrtBc2, a.shrink, a.stepSize);
    if (n > 0) addon.adamw(f32(backend, param), f32(backend, m), f32(backend, v), f32(backend, grad), p2, m2, v2, h);
    return [p2, m2, v2].map((values) => output(backend, param.shape, "float32", values));
  };
  const rows = (shape: ReadonlyArray<number>) => {
    const cols = shape[shape.length - 1] ?? 1;
    return { cols, rows: cols === 0 ? 0 : tf.util.sizeFromShape(shape as Array<number>) / cols };
  };
  const rmsNorm = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { x, gain } = args.inputs;
    const { eps } = args.attrs as { eps: number };
    const { rows: r, cols } = rows(x.shape);
    const y = allocateF32(backend, r * cols);
    if (y.length > 0) addon.rmsNorm(f32(backend, x), f32(backend, gain), y, r, cols, eps);
    return output(backend, x.shape, "float32", y);
  };
  const rmsNormGrad = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { dy, x, gain } = args.inputs;
    const { eps } = args.attrs as { eps: number };
    const { rows: r, cols } = rows(x.shape);
    const dx = allocateF32(backend, r * cols);
    const dgain = allocateF32(backend, cols, true);
    if (dx.length > 0) addon.rmsNormGrad(f32(backend, dy), f32(backend, x), f32(backend, gain), dx, dgain, r, cols, eps);
    return [output(backend, x.shape, "float32", dx), output(backend, gain.shape, "float32", dgain)];
  };
  const swiglu = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { gate, up } = args.inputs;
    const y = allocateF32(backend, tf.util.sizeFromShape(gate.shape));
    if (y.length > 0) addon.swiglu(f32(backend, gate), f32(backend, up), y);
    return output(backend, gate.shape, "float32", y);
  };
  const swigluGrad = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { dy, gate, up } = args.inputs;
    const n = tf.util.sizeFromShape(gate.shape);
    const [dgate, dup] = [allocateF32(backend, n), allocateF32(backend, n)];
    if (n > 0) addon.swigluGrad(f32(backend, dy), f32(backend, gate), f32(backend, up), dgate, dup);
    return [output(backend, gate.shape, "float32", dgate), output(backend, up.shape, "float32", dup)];
  };
  const weightedCrossEntropy = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { logits, targets, weights } = args.inputs;
    const [R, V] = logits.shape;
    const K = targets.shape[1];
    const lse = allocateF32(backend, R);
    const loss = R * V === 0 ? 0 : addon.weightedCrossEntropy(f32(backend, logits), i32(backend, targets), f32(backend, weights), lse, R, V, K);
    return [output(backend, [], "float32", Float32Array.of(loss)), output(backend, [R], "float32", lse)];
  };
  const weightedCrossEntropyGrad = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { dy, logits, targets, weights, lse } = args.inputs;
    const [R, V] = logits.shape;
    const dz = allocateF32(backend, R * V);
    if (dz.length > 0) {
      addon.weightedCrossEntropyGrad(f32(backend, dy)[0], f32(backend, logits), i32(backend, targets), f32(backend, weights), f32(backend, lse), dz, R, V, targets.shape[1]);
    }
    return output(backend, logits.shape, "float32", dz);
  };
  // [B, H, Hkv, T, D] from q (B,H,T,D) and k (B,Hkv,T,D), or sequence-major (B,T,H,D), (B,T,Hkv,D)
  const dims = (q: tf.TensorInfo, k: tf.TensorInfo, seqMajor: boolean) => {
    const [B, H, T, D] = seqMajor ? [q.shape[0], q.shape[2], q.shape[1], q.shape[3]] : q.shape;
    return Int32Array.of(B, H, k.shape[seqMajor ? 2 : 1], T, D);
  };
  const attentionAttrs = (attrs: unknown) => {
    const a = attrs as { scale: number; seqMajor?: boolean };
    return { scale: a.scale, seqMajor: a.seqMajor === true };
  };
  const causalAttention = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { q, k, v } = args.inputs;
    const { scale, seqMajor } = attentionAttrs(args.attrs);
    const d = dims(q, k, seqMajor);
    const [B, H, T] = [d[0], d[1], d[3]];
    const o = allocateF32(backend, tf.util.sizeFromShape(q.shape));
    const lse = allocateF32(backend, B * H * T);
    if (o.length > 0) addon.causalAttention(f32(backend, q), f32(backend, k), f32(backend, v), o, lse, d, scale, seqMajor);
    return [output(backend, q.shape, "float32", o), output(backend, [B, H, T], "float32", lse)];
  };
  const causalAttentionGrad = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { dy, q, k, v, o, lse } = args.inputs;
    const { scale, seqMajor } = attentionAttrs(args.attrs);
    const dq = allocateF32(backend, tf.util.sizeFromShape(q.shape));
    const dk = allocateF32(backend, tf.util.sizeFromShape(k.shape));
    const dv = allocateF32(backend, tf.util.sizeFromShape(v.shape));
    if (dq.length > 0) {
      addon.causalAttentionGrad(f32(backend, dy), f32(backend, q), f32(backend, k), f32(backend, v), f32(backend, o), f32(backend, lse), dq, dk, dv, dims(q, k, seqMajor), scale, seqMajor);
    }
    return [output(backend, q.shape, "float32", dq), output(backend, k.shape, "float32", dk), output(backend, v.shape, "float32", dv)];
  };
  const rope = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    const { x, cos, sin } = args.inputs;
    const { transpose } = args.attrs as { transpose: boolean };
    const [B, T, h, D] = x.shape;
    const y = allocateF32(backend, tf.util.sizeFromShape(x.shape));
    if (y.length > 0) addon.rope(f32(backend, x), f32(backend, cos), f32(backend, sin), y, Int32Array.of(B, T, h, D), transpose === true);
    return output(backend, x.shape, "float32", y);
  };
  const sumOfSquares = (args: KernelArgs) => {
    const backend = args.backend as Parameters<typeof f32>[0];
    let total = 0;
    for (const x of Object.values(args.inputs)) total += addon.sumOfSquares(f32(backend, x));
    return output(backend, [], "float32", Float32Array.of(total));
  };
  return [
    { kernelName: Fused.KernelNames.sumOfSquares, kernelFunc: sumOfSquares as tf.KernelFunc },
    { kernelName: Fused.KernelNames.rope, kernelFunc: rope as tf.KernelFunc },
    { kernelName: Fused.KernelNames.causalAttention, kernelFunc: causalAttention as tf.KernelFunc },
    { kernelName: Fused.KernelNames.causalAttentionGrad, kernelFunc: causalAttentionGrad as tf.KernelFunc },
    { kernelName: Fused.KernelNames.weightedCrossEntropy, kernelFunc: weightedCrossEntropy as tf.KernelFunc },
    { kernelName: Fused.KernelNames.weightedCrossEntropyGrad, kernelFunc: weightedCrossEntropyGrad as tf.KernelFunc },
    { kernelName: Fused.KernelNames.adamw, kernelFunc: adamw as tf.KernelFunc },
    { kernelName: Fused.KernelNames.rmsNorm, kernelFunc: rmsNorm as tf.KernelFunc },
    { kernelName: Fused.KernelNames.rmsNormGrad, kernelFunc: rmsNormGrad as tf.KernelFunc },
    { kernelName: Fused.KernelNames.swiglu, kernelFunc: swiglu as tf.KernelFunc },
    { kernelName: Fused.KernelNames.swigluGrad, kernelFunc: swigluGrad as tf.KernelFunc },
  ];
};
