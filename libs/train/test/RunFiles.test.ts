import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect } from "effect";
import { Checkpoint, Safetensors } from "@patchlm/checkpoint";
import { Model, Presets } from "@patchlm/model";
import { Bpe } from "@patchlm/tokenization";
import { runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { RunFiles } from "../src";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-runfiles-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeAll(() => useBackend("cpu"));

const roundTrip = (d: string, text: string) =>
  Effect.scoped(Effect.map(RunFiles.loadTokenizer(d), (t) => ({ ids: t.encode(text), back: t.decode(t.encode(text)), hash: t.hash })));

describe("RunFiles tokenizer storage", () => {
  it("stores built-in tokenizers as a spec and loads them back", async () => {
    const d = path.join(dir, "bytes");
    await runTest(RunFiles.saveTokenizer(d, { kind: "bytes" }));
    const r = await runTest(roundTrip(d, "héllo"));
    expect(r.back).toBe("héllo");
    expect(Array.from(r.ids)).toEqual([104, 195, 169, 108, 108, 111]);
    const g = path.join(dir, "gpt2");
    await runTest(RunFiles.saveTokenizer(g, { kind: "tiktoken", encoding: "gpt2" }));
    expect(Array.from((await runTest(roundTrip(g, "Hello world"))).ids)).toEqual([15496, 995]);
  });

  it("stores a trained BPE as tokenizer.json with the same hash, and copies it", async () => {
    const text = "the cat sat on the mat. the cat ate the rat. ".repeat(50);
    const model = await runTest(Bpe.train([text], { vocabSize: 270 }));
    const d = path.join(dir, "bpe");
    await runTest(RunFiles.saveTokenizer(d, { kind: "bpe", model }));
    expect(fs.existsSync(path.join(d, RunFiles.TOKENIZER_JSON))).toBe(true);
    const r = await runTest(roundTrip(d, "the cat"));
    expect(r.hash).toBe(model.hash);
    const run = path.join(dir, "run");
    fs.mkdirSync(run);
    await runTest(RunFiles.copyTokenizer(d, run));
    expect((await runTest(roundTrip(run, "the cat"))).hash).toBe(model.hash);
  });

  // reliability D2: saveTokenizer deleted the directory's tokenizer before it knew the new one could
  // be written (a missing file: left no tokenizer at all).
  it("replaces a stored tokenizer only once the new one is written; a failed save keeps the old", async () => {
    const d = path.join(dir, "replace");
    await runTest(RunFiles.saveTokenizer(d, { kind: "bytes" }));
    const before = (await runTest(roundTrip(d, "x"))).hash;
    const e = await runTestFailure(RunFiles.saveTokenizer(d, { kind: "file", path: path.join(dir, "no-such-tokenizer.json") }));
    expect(e).toMatchObject({ _tag: "FileError", reason: "NotFound" });
    expect(fs.readdirSync(d)).toEqual([RunFiles.TOKENIZER_SPEC]);
    expect((await runTest(roundTrip(d, "x"))).hash).toBe(before);
    // A kind replacing another leaves only the new kind's files.
    const model = await runTest(Bpe.train(["the cat sat on the mat. ".repeat(20)], { vocabSize: 262 }));
    await runTest(RunFiles.saveTokenizer(d, { kind: "bpe", model }));
    expect(fs.readdirSync(d).sort()).toEqual([RunFiles.TOKENIZER_JSON, RunFiles.TOKENIZER_CONFIG]);
    await runTest(RunFiles.saveTokenizer(d, { kind: "tiktoken", encoding: "gpt2" }));
    expect(fs.readdirSync(d)).toEqual([RunFiles.TOKENIZER_SPEC]);
    // copyTokenizer makes the target's tokenizer the source's, stale files of another kind removed.
    await runTest(RunFiles.copyTokenizer(path.join(dir, "bytes"), d));
    expect(fs.readdirSync(d)).toEqual([RunFiles.TOKENIZER_SPEC]);
    expect((await runTest(roundTrip(d, "x"))).hash).toBe(before);
  });

  it("names the directory when no tokenizer is stored", async () => {
    const e = await runTestFailure(Effect.scoped(RunFiles.loadTokenizer(path.join(dir, "nothing"))));
    expect(e.message).toMatch(/nothing.*tokenizer\.json or tokenizer\.spec\.json/s);
  });
});

describe("RunFiles.loadModel", () => {
  const cfg = { ...Presets.tiny, vocabSize: 40, contextLength: 16 };

  const save = (runDir: string, tensors: Safetensors.TensorMap, modelConfig: unknown) =>
    Checkpoint.save(runDir, {
      step: 3,
      tensors,
      manifest: {
        phase: "patch",
        tokensSeen: 0,
        modelConfig,
        trainConfig: {},
        dataCursor: null,
        rng: null,
        tokenizerHash: "x",
        packageVersions: {},
      },
    }).pipe(Effect.provide(NodeContext.layer));

  it("loads the weights of a checkpoint, ignoring patch-strategy parameters", async () => {
    const params = Model.init(cfg, 9);
    const tensors: Record<string, Safetensors.Tensor> = Object.fromEntries(
      Object.entries(params).map(([n, v]) => [n, Safetensors.f32(v.shape, v.dataSync() as Float32Array)]),
    );
    tensors["patch.concat-linear.proj"] = Safetensors.f32([2, 2], new Float32Array(4));
    const runDir = path.join(dir, "ckpt");
    await runTest(save(runDir, tensors, cfg));
    const loaded = await runTest(RunFiles.loadModel(runDir).pipe(Effect.provide(NodeContext.layer)));
    expect(loaded.cfg).toEqual(cfg);
    for (const [n, v] of Object.entries(params)) {
      expect(Array.from(loaded.params[n].dataSync())).toEqual(Array.from(v.dataSync()));
    }
    Model.dispose(loaded.params);
    Model.dispose(params);
  });

  it("says which tensors do not fit the manifest's config", async () => {
    const params = Model.init(cfg, 1);
    const tensors = Object.fromEntries(Object.entries(params).map(([n, v]) => [n, Safetensors.f32(v.shape, v.dataSync() as Float32Array)]));
    const runDir = path.join(dir, "bad");
    await runTest(save(runDir, tensors, { ...cfg, dModel: 32 }));
    const before = tf.memory().numTensors;
    const e = await runTestFailure(RunFiles.loadModel(runDir).pipe(Effect.provide(NodeContext.layer)));
    expect(e.message).toMatch(/model\.embed_tokens\.weight: F32 \[40,64\], expected F32 \[40,32\]/);
    expect(tf.memory().numTensors).toBe(before);
    Model.dispose(params);
  });
});

