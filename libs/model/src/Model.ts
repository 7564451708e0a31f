import * as tf from "@tensorflow/tfjs-core";
import { Config, type ParamSpec } from "@patchlm/core";
import { Fused } from "@patchlm/fused";
import { KvCache } from "./internal/KvCache";
import * as Rope from "./internal/Rope";
import { Names, headName, make as makeTable, type LayerNames } from "./ParameterTable";

/**
 * A LLaMA-style decoder (paper §3.1, docs/method.md §4): pre-norm RMSNorm, RoPE, multi-head causal
 * self-attention with optional grouped-query attention, SwiGLU MLP, no biases, no dropout,
 * untied or tied embeddings.
 *
 * One stack serves both kinds of input: `embed` turns token ids into (B,T,C), a patch strategy
 * turns K token embeddings into one (B,T,C) patch input; `hidden` runs either with positions
 * 0..T−1, which in patch mode are the patch indices (docs/method.md §1.3).
 *
 * Every matmul is 2-D (B·T,in)·(out,in)ᵀ or a plain 3-D batched product, all ops have gradients
 * on cpu and wasm (no Einsum, no StridedSlice), and each function is one tf.tidy.
 */

/** The model's variables keyed by parameter-table name. */
export type Weights = { readonly [name: string]: tf.Variable };

export { KvCache };

export interface HiddenOptions {
  /** Append the new positions' keys/values to this cache and attend over everything it holds. */
  readonly cache?: KvCache;
  /** Position of x's first row; defaults to the cache length, or 0 without a cache. */
  readonly positionOffset?: number;
}

// FNV-1a over the name, mixed with the seed: each parameter draws from its own stream, so adding
// a parameter (or tying embeddings) leaves every other parameter's init unchanged.
const streamSeed = (seed: number, name: string): number => {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
};

/** Variables for any parameter table (the model's, or a patch strategy's extra parameters). */
export const materialize = (table: ReadonlyArray<ParamSpec>, seed: number): Weights => {
  const out: Record<string, tf.Variable> = {};
  for (const spec of table) {
    if (out[spec.name] !== undefined) throw new Error(`duplicate parameter name ${spec.name}`);
    const shape = [...spec.shape];
    const initial =
      spec.init.kind === "normal"
        ? tf.randomNormal(shape, 0, spec.init.std, "float32", streamSeed(seed, spec.name))
        : spec.init.kind === "ones"
          ? tf.ones(shape)
          : tf.zeros(shape);
    // tf.variable shares the initial tensor's data; disposing the tensor drops only its reference.
    out[spec.name] = tf.variable(initial, true);
    initial.dispose();
  }
  return out;
};

/** Fresh parameters: N(0, initStd) for weights, ones for norm gains, deterministic in `seed`. */
export const init = (cfg: Config.ModelConfig, seed: number): Weights => materialize(makeTable(cfg), seed);

/** Free every variable. */
export const dispose = (params: Weights): void => {
  for (const v of Object.values(params)) v.dispose();
};

const param = (params: Weights, name: string): tf.Variable => {
  const p = params[name];
  if (p === undefined) throw new Error(`missing parameter ${name}`);
  return p;
};

/**
 * Embedding rows for flat ids, with a scatter-add gradient. tf.gather's own gradient is
 * UnsortedSegmentSum, which is O(V·N·C) on cpu and missing on wasm; ScatterNd sums duplicate
 * indices on both, in O(N·C).
 */
const lookup = (table: tf.Tensor2D, flatIds: tf.Tensor1D): tf.Tensor2D => {
  const N = flatIds.shape[0];
  const f = tf.customGrad((wIn, save) => {
    const w = wIn as tf.Tensor2D;
    const indices = tf.reshape(flatIds, [N, 1]);
    (save as tf.GradSaveFunc)([indices]);
    return {
      value: tf.gather(w, flatIds),
      // (V,C) <- rows of dy (N,C) added into the rows named by indices (N,1)
      gradFunc: (dy, saved) => tf.scatterND(saved[0], dy, w.shape),
    };
  });
  return f(table) as tf.Tensor2D;
};

/** Token embeddings: (B,T,C) <- ids (B,T) int32. */
export const embed = (params: Weights, cfg: Config.ModelConfig, ids: tf.Tensor2D): tf.Tensor3D => {
  if (ids.dtype !== "int32") throw new Error(`Model.embed: ids must be int32, got ${ids.dtype}`);
  const [B, T] = ids.shape;
  return tf.tidy(() => {
    const table = param(params, Names.embedTokens) as tf.Tensor as tf.Tensor2D;
    return tf.reshape(lookup(table, tf.reshape(ids, [B * T])), [B, T, cfg.dModel]);
  });
};

// y = x · Wᵀ with W stored [out, in] as in Hugging Face: (N,out) <- (N,in)
const linear = (x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D => tf.matMul(x, w as tf.Tensor2D, false, true);

// RMSNorm over the last axis (x's rows): x · rsqrt(mean(x²) + eps) · g, one kernel where the
// backend has it
const rmsNorm = (x: tf.Tensor2D, gain: tf.Tensor, eps: number): tf.Tensor2D => Fused.rmsNorm(x, gain, eps);

/** Per-call constants shared by every layer. */
interface StackContext {
  readonly B: number;
  readonly T: number;
  /** RoPE tables for keys. */
  readonly rope: Rope.RopeTensors;
  /** RoPE tables for queries, pre-multiplied by 1/√D so the scores need no separate scaling. */
  readonly ropeQ: Rope.RopeTensors;
}

const attention = (
  x: tf.Tensor2D,
  n: LayerNames,
  params: Weights,
  cfg: Config.ModelConfig,
  ctx: StackContext,
  l: number,
  cache: KvCache | undefined,
): tf.Tensor2D => {
  const { B, T } = ctx;
  const H = cfg.nHeads;
  const Hkv = Config.kvHeads(cfg);
  const D = Config.headDim(cfg);
  // (B,T,H,D) and (B,T,Hkv,D) <- projections of (B·T,C)
  const q = Rope.apply(tf.reshape(linear(x, param(params, n.q)), [B, T, H, D]), ctx.ropeQ);
  const k = Rope.apply(tf.reshape(linear(x, param(params, n.k)), [B, T, Hkv, D]), ctx.rope);
  const v = tf.reshape(linear(x, param(params, n.v)), [B, T, Hkv, D]) as tf.Tensor4D;
  // Training and full-sequence passes: one fused causal attention that reads the projections'
  // (B,T,H,D) layout in place (queries already carry 1/√D). (B,T,H,D)
  const headMajor = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D;
  const out =
    cache === undefined
      ? Fused.causalAttention(q, k, v, 1, "bthd")
      : headMajor(cachedAttention(headMajor(q), k, headMajor(v), l, cache));
  // (B·T,C) <- (B,T,H,D)
  return linear(tf.reshape(out, [B * T, H * D]) as tf.Tensor2D, param(params, n.o));
};

/**
 * Attention of T new queries qH (B,H,T,D) over the cached keys and values plus the new ones
 * k (B,T,Hkv,D), vH (B,Hkv,T,D), which are appended to layer l's cache: (B,H,T,D).
 */
const cachedAttention = (qH: tf.Tensor4D, k: tf.Tensor4D, vH: tf.Tensor4D, l: number, cache: KvCache): tf.Tensor4D => {
  // (B,Hkv,D,T): keys pre-transposed, the cache's layout
  const all = cache.append(l, tf.transpose(k, [0, 2, 3, 1]) as tf.Tensor4D, vH);
  return Fused.referenceAttention(qH, all.keys, all.values, 1, { keysTransposed: true });
};

// SwiGLU: down(silu(gate(x)) ⊙ up(x)), silu(g) = g·σ(g)
const mlp = (x: tf.Tensor2D, n: LayerNames, params: Weights): tf.Tensor2D => {
  const g = linear(x, param(params, n.gate));
  const u = linear(x, param(params, n.up));
  return linear(Fused.swiglu(g, u), param(params, n.down));
};

/**
 * The decoder stack over inputs x (B,T,C): token embeddings or patch inputs. Positions run
 * offset..offset+T−1 (0..T−1 without a cache). Returns the final-norm hidden states (B,T,C).
 * With a cache, the new positions' keys and values are appended and the cache advances by T.
 */
export const hidden = (
  params: Weights,
  cfg: Config.ModelConfig,
  x: tf.Tensor3D,
  opts: HiddenOptions = {},
): tf.Tensor3D => {
  const [B, T, C] = x.shape;
  const cache = opts.cache;
  // Keys already cached, attended to before the new ones; without a cache an offset only moves RoPE.
  const past = cache?.length ?? 0;
  const offset = opts.positionOffset ?? past;
  if (C !== cfg.dModel) throw new Error(`Model.hidden: input width ${C} != dModel ${cfg.dModel}`);
  if (cache !== undefined) {
    if (offset !== cache.length) throw new Error(`Model.hidden: positionOffset ${offset} != cache length ${cache.length}`);
    if (cache.batch !== B) throw new Error(`Model.hidden: batch ${B} != cache batch ${cache.batch}`);
    if (cache.layers !== cfg.nLayers) throw new Error(`Model.hidden: cache has ${cache.layers} layers, config ${cfg.nLayers}`);
    if (offset + T > cache.capacity) throw new Error(`Model.hidden: ${offset + T} positions exceed cache capacity ${cache.capacity}`);
  }
  if (offset + T > cfg.contextLength) {
    throw new Error(`Model.hidden: positions up to ${offset + T} exceed contextLength ${cfg.contextLength}`);
  }
  const out = tf.tidy(() => {
    const D = Config.headDim(cfg);
    const ctx: StackContext = {
      B,
      T,
      rope: Rope.tensors(D, cfg.ropeBase, cfg.contextLength, offset, T),
      ropeQ: Rope.tensors(D, cfg.ropeBase, cfg.contextLength, offset, T, 1 / Math.sqrt(D)),
    };
    // (B·T,C): the residual stream stays 2-D between layers
    let h = tf.reshape(x, [B * T, C]) as tf.Tensor2D;
    for (let l = 0; l < cfg.nLayers; l++) {
      const n = Names.layer(l);
      h = tf.add(h, attention(rmsNorm(h, param(params, n.inputNorm), cfg.normEps), n, params, cfg, ctx, l, cache));
      h = tf.add(h, mlp(rmsNorm(h, param(params, n.postNorm), cfg.normEps), n, params));
    }
    return tf.reshape(rmsNorm(h, param(params, Names.finalNorm), cfg.normEps), [B, T, C]) as tf.Tensor3D;
  });
  cache?.advance(T);
  return out;
};

/** Output logits (B,T,V) <- h (B,T,C), through lm_head or, when tied, the embedding matrix. */
export const logits = (params: Weights, cfg: Config.ModelConfig, h: tf.Tensor3D): tf.Tensor3D => {
  const [B, T, C] = h.shape;
  return tf.tidy(() =>
    tf.reshape(linear(tf.reshape(h, [B * T, C]), param(params, headName(cfg))), [B, T, cfg.vocabSize]),
  );
};

/** Token-mode forward: logits (B,T,V) <- ids (B,T) int32, positions 0..T−1. */
export const forward = (params: Weights, cfg: Config.ModelConfig, ids: tf.Tensor2D): tf.Tensor3D =>
  tf.tidy(() => logits(params, cfg, hidden(params, cfg, embed(params, cfg, ids))));

/** An empty KV cache for B sequences of up to maxT positions (default: the context length). */
export const makeCache = (cfg: Config.ModelConfig, B: number, maxT: number = cfg.contextLength): KvCache => {
  if (maxT > cfg.contextLength) throw new Error(`Model.makeCache: maxT ${maxT} > contextLength ${cfg.contextLength}`);
  return new KvCache(B, maxT, cfg.nLayers);
};

/**
 * Incremental decoding: logits (B,T,V) for ids (B,T) at positions cache.length.., attending to
 * everything cached; the cache then holds these positions too. T may be a whole prompt (prefill)
 * or 1 (one decode step).
 */
export const step = (params: Weights, cfg: Config.ModelConfig, ids: tf.Tensor2D, cache: KvCache): tf.Tensor3D =>
  tf.tidy(() => logits(params, cfg, hidden(params, cfg, embed(params, cfg, ids), { cache })));
