import { Config, paramCount, type ParamSpec } from "@patchlm/core";

/**
 * The decoder's parameters, derived from the config (llm.c `ParameterTensors`, nanoGPT
 * `configure_optimizers`). One table drives init, the parameter count, FLOPs, the weight-decay
 * groups and the checkpoint tensor names.
 *
 * Names and shapes are Hugging Face `LlamaForCausalLM`'s, so export is a rename-free copy:
 * a linear weight is stored [out, in] like `torch.nn.Linear`, and the model computes
 * `y = x · Wᵀ` (`tf.matMul(x, W, false, true)`) instead of storing a transposed copy.
 * The embedding is [V, C]; `lm_head.weight` is [V, C] and absent when embeddings are tied
 * (Hugging Face then reuses `model.embed_tokens.weight` as the head).
 */

/** The checkpoint names of one decoder layer. */
export interface LayerNames {
  readonly inputNorm: string;
  readonly q: string;
  readonly k: string;
  readonly v: string;
  readonly o: string;
  readonly postNorm: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

export const Names = {
  embedTokens: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
  layer: (i: number): LayerNames => {
    const p = `model.layers.${i}`;
    return {
      inputNorm: `${p}.input_layernorm.weight`,
      q: `${p}.self_attn.q_proj.weight`,
      k: `${p}.self_attn.k_proj.weight`,
      v: `${p}.self_attn.v_proj.weight`,
      o: `${p}.self_attn.o_proj.weight`,
      postNorm: `${p}.post_attention_layernorm.weight`,
      gate: `${p}.mlp.gate_proj.weight`,
      up: `${p}.mlp.up_proj.weight`,
      down: `${p}.mlp.down_proj.weight`,
    };
  },
} as const;

/** The name of the tensor that multiplies the final hidden state: lm_head, or the embedding when tied. */
export const headName = (cfg: Config.ModelConfig): string => (cfg.tieEmbeddings ? Names.embedTokens : Names.lmHead);

const weight = (name: string, shape: ReadonlyArray<number>, std: number): ParamSpec => ({
  name,
  shape,
  init: { kind: "normal", std },
  // Every 2-D weight decays, embeddings and lm_head included (Hugging Face Trainer semantics).
  decay: true,
});

// RMSNorm gains start at one and are never decayed (HF registers LlamaRMSNorm in ALL_LAYERNORM_LAYERS).
const norm = (name: string, size: number): ParamSpec => ({ name, shape: [size], init: { kind: "ones" }, decay: false });

/** The parameter table, in Hugging Face state-dict order. */
export const make = (cfg: Config.ModelConfig): ReadonlyArray<ParamSpec> => {
  const C = cfg.dModel;
  const D = Config.headDim(cfg);
  const qOut = cfg.nHeads * D;
  const kvOut = Config.kvHeads(cfg) * D;
  const std = cfg.initStd;
  const table: Array<ParamSpec> = [weight(Names.embedTokens, [cfg.vocabSize, C], std)];
  for (let i = 0; i < cfg.nLayers; i++) {
    const n = Names.layer(i);
    table.push(
      norm(n.inputNorm, C),
      weight(n.q, [qOut, C], std),
      weight(n.k, [kvOut, C], std),
      weight(n.v, [kvOut, C], std),
      weight(n.o, [C, qOut], std),
      norm(n.postNorm, C),
      weight(n.gate, [cfg.ffnHidden, C], std),
      weight(n.up, [cfg.ffnHidden, C], std),
      weight(n.down, [C, cfg.ffnHidden], std),
    );
  }
  table.push(norm(Names.finalNorm, C));
  if (!cfg.tieEmbeddings) table.push(weight(Names.lmHead, [cfg.vocabSize, C], std));
  return table;
};

/** Total number of scalars (tied embeddings counted once). */
export const count = (cfg: Config.ModelConfig): number => paramCount(make(cfg));

/**
 * Weights that take part in a matrix multiply per position, read off the table: every 2-D weight
 * but the input embedding (a lookup), which counts only as the output head when tied. Norm gains
 * are excluded, as in nanoGPT/PaLM FLOP accounting.
 */
export const matmulCount = (cfg: Config.ModelConfig): number => {
  const head = headName(cfg);
  return paramCount(make(cfg).filter((p) => p.shape.length === 2 && (p.name !== Names.embedTokens || p.name === head)));
};

/**
 * Training FLOPs (forward + backward) per position for a sequence of T positions, nanoGPT
 * `estimate_mfu` style: `6·N + 12·L·C·T` with N = `matmulCount(cfg)` and C = H·head dim.
 * - 6·N: 2 FLOPs per multiply-add in the forward pass, twice that in the backward pass.
 * - 12·L·C·T: the two attention products (QKᵀ and PV), 2·2·C·T forward per layer, times 3; the
 *   full T×T square is counted (not the causal half), as nanoGPT and PaLM do. Under GQA the
 *   products still run once per query head, so the term does not depend on nKvHeads.
 * - Not counted: norms, RoPE, softmax, SwiGLU's elementwise product, the embedding gather, the loss.
 *
 * Reference config (vocab 4096, C 256, 4 layers, 4 heads, FFN 688): N = 4,210,688 and, at T = 256,
 * 28,409,856 FLOPs per position = per token in token mode.
 */
export const flopsPerPosition = (cfg: Config.ModelConfig, T: number): number =>
  6 * matmulCount(cfg) + 12 * cfg.nLayers * cfg.dModel * T;

/**
 * Training FLOPs per *token* when each position is a patch of K tokens and a sequence has T
 * positions (K·T tokens): `flopsPerPosition(cfg, T) / K`. Forming a patch by averaging K embeddings
 * costs K·C adds per position, under 0.01% here, so it is left out. K = 1 is token mode.
 *
 * The reference config with 256-token sequences gives 28.4M in token mode (T = 256) and 6.51M in
 * patch mode with K = 4 (T = 64 patches), the figures in stack.md (ideal speed-up 4.36×); with
 * 256 patches (1,024 tokens) per sequence it is 7.10M.
 */
export const flopsPerToken = (cfg: Config.ModelConfig, T: number, K = 1): number => flopsPerPosition(cfg, T) / K;
