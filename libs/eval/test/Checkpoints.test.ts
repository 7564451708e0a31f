import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect } from "effect";
import { Checkpoint, Safetensors } from "@patchlm/checkpoint";
import { Model, Presets } from "@patchlm/model";
import { runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Checkpoints } from "../src";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-checkpoints-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeAll(() => useBackend("cpu"));

describe("Checkpoints.loadModel", () => {
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
    const loaded = await runTest(Checkpoints.loadModel(runDir).pipe(Effect.provide(NodeContext.layer)));
    expect(loaded.cfg).toEqual(cfg);
    for (const [n, v] of Object.entries(params)) {
      expect(Array.from(loaded.params[n].dataSync())).toEqual(Array.from(v.dataSync()));
    }
    // Kept apart from the model's weights, for a patch loss with the run's strategy.
    expect(Object.keys(loaded.strategyParams)).toEqual(["patch.concat-linear.proj"]);
    expect(loaded.strategyParams["patch.concat-linear.proj"].shape).toEqual([2, 2]);
    const before = tf.memory().numTensors;
    Checkpoints.dispose(loaded);
    expect(tf.memory().numTensors).toBe(before - Object.keys(params).length - 1);
    Model.dispose(params);
  });

  it("says which tensors do not fit the manifest's config", async () => {
    const params = Model.init(cfg, 1);
    const tensors = Object.fromEntries(Object.entries(params).map(([n, v]) => [n, Safetensors.f32(v.shape, v.dataSync() as Float32Array)]));
    const runDir = path.join(dir, "bad");
    await runTest(save(runDir, tensors, { ...cfg, dModel: 32 }));
    const before = tf.memory().numTensors;
    const e = await runTestFailure(Checkpoints.loadModel(runDir).pipe(Effect.provide(NodeContext.layer)));
    expect(e.message).toMatch(/model\.embed_tokens\.weight: F32 \[40,64\], expected F32 \[40,32\]/);
    expect(tf.memory().numTensors).toBe(before);
    Model.dispose(params);
  });
});

