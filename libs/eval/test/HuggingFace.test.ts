/**
 * Export to a Hugging Face LLaMA directory, checked two ways: a byte-identical round trip, and an
 * independent float64 implementation of `transformers`' LlamaForCausalLM forward
 * (modeling_llama.py: LlamaRMSNorm, rotate_half RoPE with inv_freq = 1/θ^(2i/D), repeat_kv,
 * softmax(QKᵀ/√D + causal mask), SwiGLU MLP) that reads only config.json and the raw bytes of
 * model.safetensors, compared with our model's logits.
 *
 * `LlamaForCausalLM.from_pretrained` itself cannot run here (no PyPI); this is the substitute.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect, Layer, Logger } from "effect";
import type { Config } from "@patchlm/core";
import { Model, Presets } from "@patchlm/model";
import { expectClose, randomInts, runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Bpe } from "@patchlm/tokenization";
import { HuggingFace } from "../src";
import { randomizeNorms, tinyCfg, weightsOf } from "./helpers";

type Weights = Record<string, { shape: Array<number>; data: Float64Array }>;

/** Parse safetensors bytes by the spec: u64 LE header length, JSON header, F32 little-endian data. */
const readSafetensors = (file: string): Weights => {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: Array<number>; data_offsets: [number, number] }>;
  const out: Weights = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    expect(e.dtype).toBe("F32");
    const [a, b] = e.data_offsets;
    const data = new Float64Array((b - a) / 4);
    for (let i = 0; i < data.length; i++) data[i] = buf.readFloatLE(8 + n + a + 4 * i);
    out[name] = { shape: e.shape, data };
  }
  return out;
};

/** transformers' LlamaForCausalLM forward for one sequence, float64: logits (T·V). */
const hfLogits = (dir: string, ids: ReadonlyArray<number>): Float64Array => {
  const c = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const w = readSafetensors(path.join(dir, "model.safetensors"));
  const C: number = c.hidden_size;
  const H: number = c.num_attention_heads;
  const Hkv: number = c.num_key_value_heads;
  const D: number = c.head_dim ?? C / H;
  const F: number = c.intermediate_size;
  const V: number = c.vocab_size;
  const T = ids.length;
  const W = (name: string) => w[name].data;
  const linear = (x: Float64Array, wt: Float64Array, inDim: number, outDim: number) => {
    const y = new Float64Array(T * outDim);
    for (let t = 0; t < T; t++) for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[t * inDim + i] * wt[o * inDim + i];
      y[t * outDim + o] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, g: Float64Array) => {
    const y = new Float64Array(T * C);
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let i = 0; i < C; i++) ss += x[t * C + i] ** 2;
      const r = 1 / Math.sqrt(ss / C + c.rms_norm_eps);
      for (let i = 0; i < C; i++) y[t * C + i] = g[i] * (x[t * C + i] * r);
    }
    return y;
  };
  // LlamaRotaryEmbedding: inv_freq[i] = 1 / θ^(2i/D); emb = cat(freqs, freqs)
  const rope = (x: Float64Array, heads: number) => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let d = 0; d < D; d++) {
      const i = d % (D / 2);
      const angle = t / Math.pow(c.rope_theta, (2 * i) / D);
      const base = (t * heads + h) * D;
      const rotated = d < D / 2 ? -x[base + d + D / 2] : x[base + d - D / 2]; // rotate_half
      y[base + d] = x[base + d] * Math.cos(angle) + rotated * Math.sin(angle);
    }
    return y;
  };
  let x = new Float64Array(T * C);
  ids.forEach((id, t) => x.set(W("model.embed_tokens.weight").subarray(id * C, (id + 1) * C), t * C));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const hn = rms(x, W(`${p}.input_layernorm.weight`));
    const q = rope(linear(hn, W(`${p}.self_attn.q_proj.weight`), C, H * D), H);
    const k = rope(linear(hn, W(`${p}.self_attn.k_proj.weight`), C, Hkv * D), Hkv);
    const v = linear(hn, W(`${p}.self_attn.v_proj.weight`), C, Hkv * D);
    const att = new Float64Array(T * H * D);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv)); // repeat_kv
      for (let t = 0; t < T; t++) {
        const scores: Array<number> = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[(t * H + h) * D + d] * k[(s * Hkv + g) * D + d];
          scores.push(dot / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let s = 0; s <= t; s++) acc += (e[s] / z) * v[(s * Hkv + g) * D + d];
          att[(t * H + h) * D + d] = acc;
        }
      }
    }
    const o = linear(att, W(`${p}.self_attn.o_proj.weight`), H * D, C);
    x = x.map((a, i) => a + o[i]);
    const hn2 = rms(x, W(`${p}.post_attention_layernorm.weight`));
    const gate = linear(hn2, W(`${p}.mlp.gate_proj.weight`), C, F);
    const up = linear(hn2, W(`${p}.mlp.up_proj.weight`), C, F);
    const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]);
    const down = linear(act, W(`${p}.mlp.down_proj.weight`), F, C);
    x = x.map((a, i) => a + down[i]);
  }
  const head = c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
  return linear(rms(x, W("model.norm.weight")), head, C, V);
};

const made: Array<string> = [];
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-hf-"));
  made.push(dir);
  return dir;
};
// Some hold a FIFO or a 64 GiB sparse file: nothing to leave behind in the temp directory.
afterAll(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const cases: ReadonlyArray<[string, Config.ModelConfig]> = [
  ["GQA, untied", { ...Presets.tiny, vocabSize: 40, dModel: 16, nHeads: 4, nKvHeads: 2, nLayers: 2, ffnHidden: 24, contextLength: 16, initStd: 0.3 }],
  ["tied embeddings, RoPE base 500", { ...Presets.tiny, vocabSize: 40, dModel: 16, nHeads: 2, nLayers: 1, ffnHidden: 24, contextLength: 16, initStd: 0.3, tieEmbeddings: true, ropeBase: 500 }],
];

describe("HuggingFace", () => {
  beforeAll(() => useBackend("cpu"));

  it.each(cases)("exported files give our logits under an independent float64 HF forward (%s)", async (_name, cfg) => {
    const params = Model.init(cfg, 21);
    randomizeNorms(params, 5);
    const dir = tmp();
    await runTest(HuggingFace.exportTo({ cfg, tensors: weightsOf(params), special: { bos: 37, eos: 38, pad: 39 }, source: "test" }, dir));
    const ids = Array.from(randomInts(11, cfg.vocabSize, 3));
    const ours = tf.tidy(() => Model.forward(params, cfg, tf.tensor2d(ids, [1, ids.length], "int32")).dataSync());
    const report = expectClose(ours, hfLogits(dir, ids), { atol: 2e-4, label: "logits" });
    expect(report.maxAbsDiff).toBeLessThan(2e-4);
    const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    expect(config).toMatchObject({ architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_act: "silu", bos_token_id: 37, eos_token_id: 38, pad_token_id: 39, torch_dtype: "float32" });
    expect(Object.keys(readSafetensors(path.join(dir, "model.safetensors"))).includes("lm_head.weight")).toBe(!cfg.tieEmbeddings);
    Model.dispose(params);
  });

  it("export → read → export is byte-identical, tokenizer files included", async () => {
    const cfg = cases[0][1];
    const params = Model.init(cfg, 22);
    const tokDir = tmp();
    fs.writeFileSync(path.join(tokDir, "tokenizer.json"), '{"version":"1.0","model":{"type":"BPE"}}\n');
    fs.writeFileSync(path.join(tokDir, "tokenizer_config.json"), '{"eos_token":"<|eos|>"}\n');
    const a = tmp();
    const b = tmp();
    // A patch-phase checkpoint's strategy parameters are left out.
    const tensors = { ...weightsOf(params), "patch.weighted-mean.logits": weightsOf(params)["model.norm.weight"] };
    await runTest(HuggingFace.exportTo({ cfg, tensors, special: { bos: 1, eos: 2, pad: 3 }, tokenizerDir: tokDir, source: "test" }, a));
    const back = await runTest(HuggingFace.read(a));
    expect(back.cfg).toEqual(cfg);
    expect(back.special).toEqual({ bos: 1, eos: 2, pad: 3 });
    await runTest(HuggingFace.exportTo({ cfg: back.cfg, tensors: back.tensors, special: back.special, tokenizerDir: a, source: a }, b));
    const files = fs.readdirSync(a).sort();
    expect(files).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    for (const f of files) expect(Buffer.compare(fs.readFileSync(path.join(a, f)), fs.readFileSync(path.join(b, f)))).toBe(0);
    Model.dispose(params);
  });

  it("refuses configs and tensors the model cannot run, naming what differs", async () => {
    const cfg = cases[0][1];
    const dir = tmp();
    const params = Model.init(cfg, 23);
    await runTest(HuggingFace.exportTo({ cfg, tensors: weightsOf(params), special: undefined, source: "test" }, dir));
    const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, hidden_act: "gelu", rope_scaling: { type: "linear", factor: 2 } }));
    const e = await runTestFailure(HuggingFace.read(dir));
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Unsupported" });
    expect(e.message).toMatch(/hidden_act.*rope_scaling/s);
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, intermediate_size: 32 }));
    const shapes = await runTestFailure(HuggingFace.read(dir));
    expect(shapes.message).toMatch(/gate_proj.weight: shape \[24,16\], expected \[32,16\]/);
    const missing = await runTestFailure(Effect.suspend(() => HuggingFace.read(path.join(dir, "nope"))));
    expect(missing).toMatchObject({ reason: "NotFound" });
    Model.dispose(params);
  });
});

/** A directory exported from a small model, for the untrusted-input cases. */
const exported = async (): Promise<{ dir: string; config: Record<string, unknown> }> => {
  const cfg = cases[0][1];
  const dir = tmp();
  const params = Model.init(cfg, 24);
  await runTest(HuggingFace.exportTo({ cfg, tensors: weightsOf(params), special: undefined, source: "test" }, dir));
  Model.dispose(params);
  return { dir, config: JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) };
};

/** `HuggingFace.read`'s failure, and how long it took. */
const refusal = async (dir: string) => {
  const started = performance.now();
  const e = await runTestFailure(Effect.suspend(() => HuggingFace.read(dir)));
  return { e, seconds: (performance.now() - started) / 1000 };
};

// reliability D3: `num_hidden_layers: 1000000` took 1.5 GB and 8 s, 100000 printed a 50 MB error;
// model.safetensors as a symlink to /dev/zero was read without bound, and as a FIFO it hung.
describe("HuggingFace.read refuses untrusted input before trusting it", () => {
  it.each([
    ["num_hidden_layers", 1_000_000],
    ["num_hidden_layers", 100_000],
    ["hidden_size", 2 ** 40],
    ["vocab_size", 1e12],
    ["intermediate_size", 1e9],
    ["num_attention_heads", 1e7],
    ["max_position_embeddings", 2 ** 53],
  ])("%s: %d is out of range: a short error, at once", async (key, value) => {
    const { dir, config } = await exported();
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, [key]: value }));
    const { e, seconds } = await refusal(dir);
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Malformed" });
    expect(e.message).toContain(`${key}: ${value} is out of range`);
    expect(e.message.length).toBeLessThan(500);
    expect(seconds).toBeLessThan(2);
  });

  it("a config in range that does not fit model.safetensors's size is refused before reading it, and tensor problems are listed briefly", async () => {
    const { dir, config } = await exported();
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 1000 }));
    const { e } = await refusal(dir);
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Malformed" });
    expect(e.message).toMatch(/model\.safetensors.*bytes.*parameters/);
    expect(e.message.length).toBeLessThan(500);
    // Five layers fit the file's size at two bytes a parameter; of their missing tensors a few are listed.
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 5 }));
    const { e: shapes } = await refusal(dir);
    expect(shapes.message).toMatch(/model\.layers\.2\..*: missing/);
    expect(shapes.message).toMatch(/and \d+ more/);
    expect(shapes.message.split("\n").length).toBeLessThan(25);
  });

  it("a huge config value is not echoed whole", async () => {
    const { dir, config } = await exported();
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, model_type: "x".repeat(1_000_000) }));
    const { e } = await refusal(dir);
    expect(e).toMatchObject({ reason: "Unsupported" });
    expect(e.message.length).toBeLessThan(500);
  });

  const special: ReadonlyArray<[string, (file: string) => void]> = [
    ["a symlink to /dev/zero", (f) => fs.symlinkSync("/dev/zero", f)],
    ["a FIFO", (f) => expect(spawnSync("mkfifo", [f]).status).toBe(0)],
    ["a directory", (f) => fs.mkdirSync(f)],
  ];

  it.each(special)("model.safetensors as %s: refused at once, no hang, no read", async (_what, make) => {
    const { dir } = await exported();
    fs.rmSync(path.join(dir, "model.safetensors"));
    make(path.join(dir, "model.safetensors"));
    const { e, seconds } = await refusal(dir);
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Unsupported" });
    expect(e.message).toMatch(/model\.safetensors: Unsupported: .*not a regular file/);
    expect(seconds).toBeLessThan(2);
  });

  it.each(special)("config.json and tokenizer.json as %s: refused at once", async (_what, make) => {
    for (const file of ["config.json", "tokenizer.json"]) {
      const { dir } = await exported();
      fs.rmSync(path.join(dir, file), { force: true });
      make(path.join(dir, file));
      const { e, seconds } = await refusal(dir);
      expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Unsupported" });
      expect(e.message).toContain(`${file}: Unsupported`);
      expect(seconds).toBeLessThan(2);
    }
  });

  it("files larger than any the config can explain are refused before reading", async () => {
    const { dir } = await exported();
    fs.truncateSync(path.join(dir, "config.json"), 2 * 1024 * 1024);
    expect((await refusal(dir)).e.message).toMatch(/config\.json: Malformed: .*bytes.*at most/);
    const again = await exported();
    fs.truncateSync(path.join(again.dir, "model.safetensors"), 64 * 1024 * 1024 * 1024); // sparse: no disk used
    const { e, seconds } = await refusal(again.dir);
    expect(e.message).toMatch(/model\.safetensors: Malformed: .*bytes.*parameters/);
    expect(seconds).toBeLessThan(2);
  });
});

describe("HuggingFace.importRun", () => {
  beforeAll(() => useBackend("cpu"));
  const quiet = Logger.replace(Logger.defaultLogger, Logger.none);
  const run = <A, E>(e: Effect.Effect<A, E, NodeContext.NodeContext>) => runTest(Effect.provide(e, Layer.merge(NodeContext.layer, quiet)));
  const fail = <A, E>(e: Effect.Effect<A, E, NodeContext.NodeContext>) => runTestFailure(Effect.provide(e, Layer.merge(NodeContext.layer, quiet)));
  const docs = [
    "The river ran cold through the valley. Farmers watched the water rise each spring. They built walls of stone along the banks. The walls held for many years. One spring the rain did not stop.",
    "A small shop stood at the corner of the square. The baker opened it before dawn every day. People came early for warm bread and rolls. He never raised his prices in the winter.",
    "The ship left the harbour at noon. Its sails filled with a strong western wind. The captain studied his charts in silence. Nobody on board had seen these waters before.",
  ];
  /** A Hugging Face directory of the byte-tokenizer-sized model, without tokenizer.json. */
  const hfDir = async (name = "hf") => {
    const dir = path.join(tmp(), name);
    const params = Model.init(tinyCfg, 3);
    await runTest(HuggingFace.exportTo({ cfg: tinyCfg, tensors: weightsOf(params), special: { bos: 256, eos: 257, pad: 258 }, source: "test" }, dir));
    Model.dispose(params);
    return dir;
  };

  // reliability D10: a tokenizer with more ids than the model was imported; generate then crashed in GatherV2.
  it("refuses a tokenizer.json with more ids than the model's vocabulary, writing nothing", async () => {
    const big = await hfDir("hf-big-tokenizer");
    await runTest(Bpe.save(await runTest(Bpe.train(docs, { vocabSize: 300, minFrequency: 1 })), big));
    const out = path.join(tmp(), "imported-big-tokenizer");
    const e = await fail(HuggingFace.importRun(big, out));
    expect(e).toMatchObject({ _tag: "TokenizerMismatch" });
    expect((e as Error).message).toMatch(/hf-big-tokenizer.*\n.*vocabulary: the tokenizer "bpe-300" has 300 ids, the model only 259/);
    expect(fs.existsSync(out)).toBe(false);
  });

  // reliability D4: `import --out <an existing run>` repointed `latest` to the imported step 0 and
  // pruned a training checkpoint; a failed import had already overwritten the run's tokenizer.
  it("refuses an --out that holds anything, and a failed import leaves nothing behind", async () => {
    const hf = await hfDir();
    const snapshot = (dir: string) =>
      fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort().map((f) => {
        const p = path.join(dir, f);
        return [f, fs.statSync(p).isFile() ? fs.readFileSync(p, "hex") : "dir"];
      });
    const existing = path.join(tmp(), "existing-run");
    fs.mkdirSync(path.join(existing, "step-00000005"), { recursive: true });
    fs.writeFileSync(path.join(existing, "latest"), "step-00000005\n");
    fs.writeFileSync(path.join(existing, "step-00000005", "model.safetensors"), "weights");
    const before = snapshot(existing);
    const e = await fail(HuggingFace.importRun(hf, existing));
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "Exists" });
    expect((e as Error).message).toMatch(/existing-run: Exists: .*latest.*step-00000005/);
    expect(snapshot(existing)).toEqual(before);

    // A failed import (its tokenizer does not fit the model) into a new directory or an empty one.
    const bad = tmp();
    fs.cpSync(hf, bad, { recursive: true });
    await runTest(Bpe.save(await runTest(Bpe.train(docs, { vocabSize: 300, minFrequency: 1 })), bad));
    const parent = path.join(tmp(), "imports");
    const empty = path.join(parent, "empty");
    fs.mkdirSync(empty, { recursive: true });
    for (const out of [path.join(parent, "new"), empty]) expect(await fail(HuggingFace.importRun(bad, out))).toMatchObject({ _tag: "TokenizerMismatch" });
    expect(fs.readdirSync(parent)).toEqual(["empty"]);
    expect(fs.readdirSync(empty)).toEqual([]);

    // An --out that cannot be a directory name is named once, with the reason.
    const tooLong = await fail(HuggingFace.importRun(hf, path.join(parent, "n".repeat(300))));
    expect(tooLong).toMatchObject({ _tag: "EvalInputError", reason: "Unwritable", detail: "ENAMETOOLONG: name too long" });

    // An empty directory is a fine --out.
    const saved = await run(HuggingFace.importRun(hf, empty, { step: 3 }));
    expect(saved.dir).toBe(path.join(empty, "step-00000003"));
    expect(fs.readFileSync(path.join(empty, "latest"), "utf8").trim()).toBe("step-00000003");
    expect(fs.readdirSync(parent)).toEqual(["empty"]);
  });

  // reliability D13: a killed import left its `<out>.tmp-import-*` staging directory behind for good.
  it("removes the staging directory a killed import to the same --out left, and no other", async () => {
    const hf = await hfDir();
    const parent = tmp();
    // A process killed with SIGKILL, as an import killed mid-way: its pid is provably gone.
    const killed = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    await new Promise((r) => killed.once("spawn", r));
    killed.kill("SIGKILL");
    await new Promise((r) => killed.once("exit", r));
    const host = os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");
    const left = (owner: string, pid: number) => {
      const dir = path.join(parent, `model.tmp-import-${owner}-${pid}-a1B2c3`);
      fs.mkdirSync(path.join(dir, "step-00000000"), { recursive: true });
      fs.writeFileSync(path.join(dir, "step-00000000", "model.safetensors"), new Uint8Array(4096));
      return path.basename(dir);
    };
    const stale = left(host, killed.pid!);
    const inProgress = left(host, process.pid);
    const elsewhere = left("other-host.example", killed.pid!);
    const otherOut = `other.tmp-import-${host}-${killed.pid}-a1B2c3`;
    fs.mkdirSync(path.join(parent, otherOut));
    await run(HuggingFace.importRun(hf, path.join(parent, "model")));
    expect(fs.readdirSync(parent).sort()).toEqual(["model", elsewhere, inProgress, otherOut].sort());
    expect(fs.existsSync(path.join(parent, stale))).toBe(false);
  });
});
