/**
 * Leak check over many training steps on one backend: the tfjs tensor count, the backend's data
 * buffers and the process RSS, sampled every `--every` steps, as JSON on stdout. The tensor and
 * buffer counts must stay flat and RSS must reach a plateau (the native backend keeps released
 * outputs for reuse, up to 1 GiB, so RSS grows at first and then stops).
 *
 *   npx tsx tools/bench-native-memory.ts [--backend native] [--steps 1000] [--every 100] [--preset tiny]
 *                                        [--precision fp32|bf16]
 */
import * as tf from "@tensorflow/tfjs";
import { ComputeBackend } from "@patchlm/backend";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { randomInts } from "@patchlm/testing";
import { Step } from "@patchlm/train";
import { Effect } from "effect";
import { openblasReport, printReport } from "./bench-native-env";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const backend = flag("backend", "native") as ComputeBackend.BackendName;
const steps = Number(flag("steps", "1000"));
const every = Number(flag("every", "100"));
const preset = flag("preset", "tiny");
const precision = flag("precision", "fp32") as ComputeBackend.Precision;
const cfg = Presets.byName[preset];

const main = Effect.gen(function* () {
  yield* ComputeBackend.make({ backend, precision });
  const B = 4;
  const T = Math.min(64, cfg.contextLength);
  const params = Model.init(cfg, 1);
  const optimizer = AdamW.make(params, ParameterTable.make(cfg));
  const samples: Array<{ step: number; tensors: number; dataBuffers: number; rssMiB: number }> = [];
  for (const [mode, K] of [["token", 1], ["patch", 4]] as const) {
    const step = Step.makeTrainStep({ cfg, K, params, optimizer });
    const ids = tf.tensor2d(randomInts(B * T * K, cfg.vocabSize, 3), [B, T * K], "int32");
    for (let i = 1; i <= steps / 2; i++) {
      const r = step(ids, 1e-3);
      // The host read each step is what a trainer does at its log interval; here it also paces the loop.
      r.loss.dataSync();
      tf.dispose([r.loss, r.gradNorm]);
      const at = mode === "token" ? i : steps / 2 + i;
      if (at % every === 0) {
        const m = tf.memory();
        samples.push({ step: at, tensors: m.numTensors, dataBuffers: m.numDataBuffers, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) });
      }
    }
    ids.dispose();
  }
  optimizer.dispose();
  Model.dispose(params);
  const halves = [samples.filter((s) => s.step <= steps / 2), samples.filter((s) => s.step > steps / 2)];
  return {
    benchmark: "memory over training steps (first half token mode, second half patch mode K=4)",
    backend,
    config: { preset, B, T, steps, precision },
    openblas: openblasReport(),
    // Each mode's step keeps the same tensors alive between steps.
    tensorsFlat: halves.every((h) => h.every((s) => s.tensors === h[0].tensors && s.dataBuffers === h[0].dataBuffers)),
    samples,
  };
});

printReport(main);
