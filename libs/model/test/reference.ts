/**
 * A naive float64 LLaMA forward in plain TypeScript loops (llm.c `test_gpt2.c` style), written
 * straight from Hugging Face `modeling_llama.py` semantics: rotate_half RoPE, repeat_kv for GQA,
 * per-head softmax attention with an explicit causal loop. Slow and obvious on purpose; the
 * tfjs model is checked against it.
 */
import { Config } from "@patchlm/core";
import { Names, headName } from "../src/ParameterTable";

export type RefParams = Readonly<Record<string, Float64Array>>;

// (N,out) <- (N,in)·Wᵀ, W stored [out,in]
const linear = (x: Float64Array, N: number, inDim: number, w: Float64Array, outDim: number): Float64Array => {
  const y = new Float64Array(N * outDim);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[n * inDim + i] * w[o * inDim + i];
      y[n * outDim + o] = s;
    }
  return y;
};

const rmsNorm = (x: Float64Array, N: number, C: number, g: Float64Array, eps: number): Float64Array => {
  const y = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c] ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * r * g[c];
  }
  return y;
};

/** HF apply_rotary_pos_emb on one head vector at position pos: x·cos + rotate_half(x)·sin. */
export const ropeRef = (x: ArrayLike<number>, pos: number, base: number): Float64Array => {
  const D = x.length;
  const half = D / 2;
  const y = new Float64Array(D);
  for (let d = 0; d < D; d++) {
    const theta = pos / Math.pow(base, (2 * (d % half)) / D);
    const rot = d < half ? -x[d + half] : x[d - half];
    y[d] = x[d] * Math.cos(theta) + rot * Math.sin(theta);
  }
  return y;
};

/** Final-norm hidden states (B·T·C) for inputs x (B·T·C) at positions offset..offset+T−1. */
export const hiddenRef = (
  p: RefParams,
  cfg: Config.ModelConfig,
  x: Float64Array,
  B: number,
  T: number,
  offset = 0,
): Float64Array => {
  const C = cfg.dModel;
  const H = cfg.nHeads;
  const Hkv = Config.kvHeads(cfg);
  const D = Config.headDim(cfg);
  const F = cfg.ffnHidden;
  const out = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    const h = x.slice(b * T * C, (b + 1) * T * C);
    for (let l = 0; l < cfg.nLayers; l++) {
      const n = Names.layer(l);
      const xn = rmsNorm(h, T, C, p[n.inputNorm], cfg.normEps);
      const q = linear(xn, T, C, p[n.q], H * D);
      const k = linear(xn, T, C, p[n.k], Hkv * D);
      const v = linear(xn, T, C, p[n.v], Hkv * D);
      for (let t = 0; t < T; t++) {
        for (let hh = 0; hh < H; hh++) q.set(ropeRef(q.subarray((t * H + hh) * D, (t * H + hh + 1) * D), offset + t, cfg.ropeBase), (t * H + hh) * D);
        for (let g = 0; g < Hkv; g++) k.set(ropeRef(k.subarray((t * Hkv + g) * D, (t * Hkv + g + 1) * D), offset + t, cfg.ropeBase), (t * Hkv + g) * D);
      }
      const att = new Float64Array(T * H * D);
      for (let hh = 0; hh < H; hh++) {
        const g = Math.floor(hh / (H / Hkv)); // repeat_kv: query head hh reads kv head hh // n_rep
        for (let t = 0; t < T; t++) {
          const scores = new Float64Array(t + 1);
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[(t * H + hh) * D + d] * k[(s * Hkv + g) * D + d];
            scores[s] = dot / Math.sqrt(D);
            max = Math.max(max, scores[s]);
          }
          let z = 0;
          for (let s = 0; s <= t; s++) z += (scores[s] = Math.exp(scores[s] - max));
          for (let s = 0; s <= t; s++)
            for (let d = 0; d < D; d++) att[(t * H + hh) * D + d] += (scores[s] / z) * v[(s * Hkv + g) * D + d];
        }
      }
      const o = linear(att, T, H * D, p[n.o], C);
      for (let i = 0; i < T * C; i++) h[i] += o[i];
      const xn2 = rmsNorm(h, T, C, p[n.postNorm], cfg.normEps);
      const gate = linear(xn2, T, C, p[n.gate], F);
      const up = linear(xn2, T, C, p[n.up], F);
      const act = new Float64Array(T * F);
      for (let i = 0; i < T * F; i++) act[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
      const m = linear(act, T, F, p[n.down], C);
      for (let i = 0; i < T * C; i++) h[i] += m[i];
    }
    out.set(rmsNorm(h, T, C, p[Names.finalNorm], cfg.normEps), b * T * C);
  }
  return out;
};

/** Token embeddings (B·T·C) for ids (B·T). */
export const embedRef = (p: RefParams, cfg: Config.ModelConfig, ids: ArrayLike<number>): Float64Array => {
  const C = cfg.dModel;
  const x = new Float64Array(ids.length * C);
  for (let i = 0; i < ids.length; i++) x.set(p[Names.embedTokens].subarray(ids[i] * C, (ids[i] + 1) * C), i * C);
  return x;
};

/** Logits (B·T·V) <- hidden (B·T·C). */
export const logitsRef = (p: RefParams, cfg: Config.ModelConfig, h: Float64Array): Float64Array =>
  linear(h, h.length / cfg.dModel, cfg.dModel, p[headName(cfg)], cfg.vocabSize);

export const forwardRef = (p: RefParams, cfg: Config.ModelConfig, ids: ArrayLike<number>, B: number, T: number): Float64Array =>
  logitsRef(p, cfg, hiddenRef(p, cfg, embedRef(p, cfg, ids), B, T));

/** Mean next-token cross-entropy of logits (N·V) against targets (N). */
export const meanCrossEntropyRef = (logits: Float64Array, targets: ArrayLike<number>, V: number): number => {
  let total = 0;
  for (let n = 0; n < targets.length; n++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[n * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[n * V + v] - max);
    total += max + Math.log(z) - logits[n * V + targets[n]];
  }
  return total / targets.length;
};
