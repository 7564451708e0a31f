import * as tf from "@tensorflow/tfjs";
import { Config } from "@patchlm/core";
import { Model, ParameterTable } from "@patchlm/model";
import { NativeBackend } from "@patchlm/native";
import { AdamW } from "@patchlm/optim";
import { expectClose, expectNoTensorLeak, randomInts, runTest } from "@patchlm/testing";
import { Step } from "@patchlm/train";
import { Either, Logger, LogLevel } from "effect";
import { ComputeBackend } from "../src";

// Training on the native and wasm backends follows the pure-JS cpu backend's loss curve: every
// kernel those backends replace takes part in a real step (matmuls in all forms, softmax,
// gather and its scatter-add gradient, reductions, AdamW's elementwise arithmetic).
const cfg = Either.getOrThrow(
  Config.decodeConfig(Config.ModelConfig)("test", { vocabSize: 61, dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, contextLength: 8 }),
);

const lossCurve = async (backend: ComputeBackend.BackendName, K: number, steps: number): Promise<Array<number>> => {
  await runTest(ComputeBackend.make({ backend }).pipe(Logger.withMinimumLogLevel(LogLevel.None)));
  const params = Model.init(cfg, 5);
  const optimizer = AdamW.make(params, ParameterTable.make(cfg));
  const step = Step.makeTrainStep({ cfg, K, params, optimizer });
  const ids = tf.tensor2d(randomInts(2 * 8 * K, cfg.vocabSize, 6), [2, 8 * K], "int32");
  const losses: Array<number> = [];
  try {
    for (let i = 0; i < steps; i++) {
      const r = step(ids, 3e-3);
      losses.push(r.loss.dataSync()[0]);
      tf.dispose([r.loss, r.gradNorm]);
    }
  } finally {
    tf.dispose(ids);
    optimizer.dispose();
    Model.dispose(params);
  }
  return losses;
};

const backends: Array<ComputeBackend.BackendName> = NativeBackend.availability().available ? ["native", "wasm"] : ["wasm"];

describe("training steps on the fast backends", () => {
  // The pure-JS cpu reference costs most of this test's time, hence the small config.
  for (const [mode, K, steps] of [["token", 1, 100], ["patch", 4, 100]] as const) {
    it(`follow cpu's loss curve over ${steps} ${mode}-mode steps (${backends.join(", ")})`, async () => {
      const reference = await lossCurve("cpu", K, steps);
      expect(reference[steps - 1]).toBeLessThan(reference[0] - 1);
      for (const backend of backends) {
        const curve = await lossCurve(backend, K, steps);
        // float32 rounding differs per kernel (summation order, exp); Adam amplifies it slowly.
        expectClose(curve, reference, { atol: 2e-3, rtol: 2e-3, label: `${backend} ${mode}` });
      }
    }, 120_000);
  }

  it("keeps the tensor count flat across training steps on each fast backend", async () => {
    for (const backend of backends) {
      await runTest(ComputeBackend.make({ backend }).pipe(Logger.withMinimumLogLevel(LogLevel.None)));
      const params = Model.init(cfg, 7);
      const optimizer = AdamW.make(params, ParameterTable.make(cfg));
      const step = Step.makeTrainStep({ cfg, K: 2, params, optimizer });
      const ids = tf.tensor2d(randomInts(2 * 16, cfg.vocabSize, 8), [2, 16], "int32");
      const once = () => {
        const r = step(ids, 1e-3);
        r.loss.dataSync();
        tf.dispose([r.loss, r.gradNorm]);
      };
      once();
      const buffers = tf.memory().numDataBuffers;
      await expectNoTensorLeak(() => {
        for (let i = 0; i < 10; i++) once();
      }, backend);
      expect(tf.memory().numDataBuffers).toBe(buffers);
      tf.dispose(ids);
      optimizer.dispose();
      Model.dispose(params);
    }
  }, 30_000);
});
