import * as tf from "@tensorflow/tfjs";
import { Option } from "effect";
import { paramCount } from "@patchlm/core";
import { expectNoTensorLeak } from "@patchlm/testing";
import { Model, ParameterTable, Presets } from "../src";

describe("ParameterTable", () => {
  it.each([
    ["370M", Presets.llama370M, 369_148_928, "369.1"],
    ["780M", Presets.llama780M, 781_395_456, "781.4"],
    ["1.3B", Presets.llama1_3B, 1_345_423_360, "1345.4"],
    ["2.7B", Presets.llama2_7B, 2_693_696_000, "2693.7"],
  ] as const)("counts the paper's %s shape as in method.md §4 (untied, vocab 32000)", (_, cfg, exact, millions) => {
    expect(ParameterTable.count(cfg)).toBe(exact);
    expect((ParameterTable.count(cfg) / 1e6).toFixed(1)).toBe(millions);
  });

  it("counts the reference config: 5.26M parameters, 4.21M of them in matmuls", () => {
    expect(ParameterTable.count(Presets.reference)).toBe(5_261_568);
    expect(ParameterTable.matmulCount(Presets.reference)).toBe(4_210_688);
  });

  it("counts tied embeddings once and drops lm_head from the table", () => {
    const tied = { ...Presets.reference, tieEmbeddings: true };
    const names = ParameterTable.make(tied).map((p) => p.name);
    expect(names).not.toContain("lm_head.weight");
    expect(ParameterTable.count(tied)).toBe(5_261_568 - 4096 * 256);
    // the tied head still multiplies every position
    expect(ParameterTable.matmulCount(tied)).toBe(4_210_688);
  });

  it("shrinks k/v projections under grouped-query attention", () => {
    const gqa = { ...Presets.reference, nKvHeads: 1 };
    const k = ParameterTable.make(gqa).find((p) => p.name === "model.layers.3.self_attn.k_proj.weight")!;
    expect(k.shape).toEqual([64, 256]);
    expect(ParameterTable.count(gqa)).toBe(5_261_568 - 4 * 2 * (256 - 64) * 256);
    // FLOPs read the same table: the smaller k/v projections multiply fewer weights per position
    expect(ParameterTable.matmulCount(gqa)).toBe(4_210_688 - 4 * 2 * (256 - 64) * 256);
  });

  it("uses Hugging Face LLaMA names and [out, in] shapes, in state-dict order", () => {
    const table = ParameterTable.make(Presets.reference);
    const shapes = Object.fromEntries(table.map((p) => [p.name, p.shape]));
    expect(table[0].name).toBe("model.embed_tokens.weight");
    expect(table[table.length - 1].name).toBe("lm_head.weight");
    expect(shapes["model.embed_tokens.weight"]).toEqual([4096, 256]);
    expect(shapes["model.layers.0.input_layernorm.weight"]).toEqual([256]);
    expect(shapes["model.layers.0.self_attn.q_proj.weight"]).toEqual([256, 256]);
    expect(shapes["model.layers.0.self_attn.o_proj.weight"]).toEqual([256, 256]);
    expect(shapes["model.layers.0.post_attention_layernorm.weight"]).toEqual([256]);
    expect(shapes["model.layers.0.mlp.gate_proj.weight"]).toEqual([688, 256]);
    expect(shapes["model.layers.0.mlp.up_proj.weight"]).toEqual([688, 256]);
    expect(shapes["model.layers.0.mlp.down_proj.weight"]).toEqual([256, 688]);
    expect(shapes["model.norm.weight"]).toEqual([256]);
    expect(shapes["lm_head.weight"]).toEqual([4096, 256]);
    expect(table.length).toBe(1 + 4 * 9 + 2);
  });

  it("decays 2-D weights (embeddings and lm_head included) and not norm gains", () => {
    const table = ParameterTable.make(Presets.tiny);
    const decay = table.filter((p) => p.decay).map((p) => p.name);
    const noDecay = table.filter((p) => !p.decay).map((p) => p.name);
    expect(decay).toContain("model.embed_tokens.weight");
    expect(decay).toContain("lm_head.weight");
    expect(noDecay).toEqual([
      "model.layers.0.input_layernorm.weight",
      "model.layers.0.post_attention_layernorm.weight",
      "model.layers.1.input_layernorm.weight",
      "model.layers.1.post_attention_layernorm.weight",
      "model.norm.weight",
    ]);
    for (const p of table) expect(p.decay).toBe(p.shape.length === 2);
    for (const p of table) expect(p.init).toEqual(p.decay ? { kind: "normal", std: 0.02 } : { kind: "ones" });
  });

  describe("FLOPs (nanoGPT estimate_mfu: 6N + 12·L·C·T per position)", () => {
    it("gives 28.4M per token for the reference config in token mode (T = 256)", () => {
      expect(ParameterTable.flopsPerPosition(Presets.reference, 256)).toBe(6 * 4_210_688 + 12 * 4 * 256 * 256);
      expect(ParameterTable.flopsPerToken(Presets.reference, 256)).toBe(28_409_856);
    });

    it("gives stack.md's 6.5M per token in patch mode K = 4 for 256-token sequences (64 patches), speed-up 4.36×", () => {
      const patch = ParameterTable.flopsPerToken(Presets.reference, 64, 4);
      expect(patch).toBe(6_512_640);
      expect((28_409_856 / patch).toFixed(2)).toBe("4.36");
    });

    it("gives 7.10M per token with 256 patches (1,024 tokens) per sequence", () => {
      expect(ParameterTable.flopsPerToken(Presets.reference, 256, 4)).toBe(7_102_464);
    });

    it("matches the 6N rule of thumb for the 370M model at T = 2048", () => {
      const f = ParameterTable.flopsPerPosition(Presets.llama370M, 2048);
      const n = ParameterTable.matmulCount(Presets.llama370M);
      expect(n).toBe(24 * (4 * 1024 * 1024 + 3 * 1024 * 2752) + 32000 * 1024);
      expect(f - 6 * n).toBe(12 * 24 * 1024 * 2048);
    });
  });
});

describe("Presets", () => {
  it("holds the paper's shapes and the CPU configs by name", () => {
    expect(Presets.names).toEqual(["370M", "780M", "1.3B", "2.7B", "reference", "small", "tiny"]);
    const c = Option.getOrThrow(Presets.lookup("2.7B"));
    expect([c.dModel, c.ffnHidden, c.nLayers, c.nHeads, c.vocabSize, c.contextLength]).toEqual([2560, 6880, 32, 32, 32000, 2048]);
    expect([c.ropeBase, c.normEps, c.tieEmbeddings, c.initStd]).toEqual([10000, 1e-6, false, 0.02]);
    expect(Option.isNone(Presets.lookup("toString"))).toBe(true);
    expect(ParameterTable.count(Presets.tiny)).toBe(133_440);
    expect(ParameterTable.count(Presets.small)).toBe(16_913_280);
  });
});

describe("Model.init", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu");
  });

  it("creates one variable per table entry with the table's shape, deterministic in the seed", async () => {
    const cfg = Presets.tiny;
    await expectNoTensorLeak(() => {
      const a = Model.init(cfg, 7);
      const b = Model.init(cfg, 7);
      const c = Model.init(cfg, 8);
      const table = ParameterTable.make(cfg);
      expect(Object.keys(a)).toEqual(table.map((p) => p.name));
      for (const p of table) expect(a[p.name].shape).toEqual(p.shape);
      const q = "model.layers.1.self_attn.q_proj.weight";
      expect(Array.from(a[q].dataSync())).toEqual(Array.from(b[q].dataSync()));
      expect(Array.from(a[q].dataSync())).not.toEqual(Array.from(c[q].dataSync()));
      // different parameters draw from different streams
      expect(a["model.layers.0.self_attn.q_proj.weight"].dataSync()[0]).not.toBe(a[q].dataSync()[0]);
      [a, b, c].forEach(Model.dispose);
    });
  });

  it("draws weights from N(0, 0.02) and sets norm gains to one", () => {
    const cfg = Presets.tiny;
    const params = Model.init(cfg, 1);
    const w = Array.from(params["model.embed_tokens.weight"].dataSync());
    const mean = w.reduce((s, v) => s + v, 0) / w.length;
    const std = Math.sqrt(w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length);
    // 16,384 draws: the sample std is within 2% of 0.02 with overwhelming probability
    expect(Math.abs(mean)).toBeLessThan(1e-3);
    expect(Math.abs(std - 0.02)).toBeLessThan(4e-4);
    expect(Array.from(params["model.norm.weight"].dataSync()).every((v) => v === 1)).toBe(true);
    expect(paramCount(ParameterTable.make(cfg))).toBe(Object.values(params).reduce((n, v) => n + v.size, 0));
    Model.dispose(params);
  });

  it("keeps every other parameter's init when embeddings are tied", () => {
    const untied = Model.init(Presets.tiny, 3);
    const tied = Model.init({ ...Presets.tiny, tieEmbeddings: true }, 3);
    expect(tied["lm_head.weight"]).toBeUndefined();
    for (const name of Object.keys(tied)) expect(Array.from(tied[name].dataSync())).toEqual(Array.from(untied[name].dataSync()));
    Model.dispose(untied);
    Model.dispose(tied);
  });
});
