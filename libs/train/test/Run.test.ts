import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect, Either, Layer } from "effect";
import { MetricRecord, MetricsSink, Progress } from "@patchlm/metrics";
import { type PatchStrategy, Registry } from "@patchlm/patching";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Run } from "../src";
import { config, corpusForFile } from "./fixture";

jest.setTimeout(120_000);

const corpus = corpusForFile();

/** A strategy defined in the test program: the first token of each patch; counts its calls. */
const firstToken = (): PatchStrategy.PatchStrategy & { calls: number } => {
  const s = {
    calls: 0,
    name: "first-token",
    description: "the first token embedding of each patch",
    parameters: () => [],
    aggregate: (x: tf.Tensor4D) => {
      s.calls++;
      return tf.tidy(() => tf.squeeze(tf.slice(x, [0, 0, 0, 0], [-1, -1, 1, -1]), [2]) as tf.Tensor3D);
    },
  };
  return s;
};

describe("Run.train", () => {
  it("trains with a strategy from the calling program and replaced metrics and progress services", async () => {
    const strategy = firstToken();
    const c = config(corpus.data, path.join(corpus.root, "in-code"), { patch: { patchSize: 4, patchFraction: 2 / 3, strategy: "first-token" } });
    const { summary, records } = await runTest(
      Effect.gen(function* () {
        const sink = yield* MetricsSink.memory();
        const summary = yield* Run.train(c, {
          resume: false,
          backend: { name: "cpu" },
          strategies: [strategy],
          services: { metrics: Layer.succeed(MetricsSink.MetricsSink, sink), progress: Progress.layerNone },
        });
        return { summary, records: yield* sink.records };
      }).pipe(Effect.provide(NodeContext.layer)),
    );
    expect(summary.ended).toBe("finished");
    expect(summary.step).toBe(12);
    // 8 patch steps, each calling the strategy at least once (plus validation at steps 4 and 8).
    expect(strategy.calls).toBeGreaterThanOrEqual(8);
    // The replacement sink got the records; the default sink's file was never written.
    expect(records.filter((r) => r.values[MetricRecord.Keys.loss] !== undefined).map((r) => r.step)).toEqual(
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    const runDir = path.join(corpus.root, "in-code", "r");
    expect(fs.existsSync(path.join(runDir, "metrics.jsonl"))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(runDir, "summary.json"), "utf8")).config.patch.strategy).toBe("first-token");
  });

  it("refuses a strategy it was not given, before creating the run directory", async () => {
    const c = config(corpus.data, path.join(corpus.root, "unknown"), { patch: { patchSize: 4, patchFraction: 2 / 3, strategy: "first-token" } });
    const error = await runTestFailure(Run.train(c, { resume: false, backend: { name: "cpu" } }).pipe(Effect.provide(NodeContext.layer)));
    expect(String(error)).toMatch(/first-token/);
    expect(fs.existsSync(path.join(corpus.root, "unknown", "r"))).toBe(false);
  });

  it("uses a replaced strategy registry instead of the built-ins", async () => {
    // A registry whose "mean" is the first token: a run configured with the default strategy
    // must call it, which only happens if the replacement was used.
    const impostor = { ...firstToken(), name: "mean" };
    const counted = { ...impostor, aggregate: (x: tf.Tensor4D, p: PatchStrategy.Weights) => (counted.calls++, impostor.aggregate(x, p)), calls: 0 };
    const registry = Either.getOrThrow(Registry.make([counted]));
    const c = config(corpus.data, path.join(corpus.root, "registry"));
    const summary = await runTest(
      Run.train(c, {
        resume: false,
        backend: { name: "cpu" },
        maxSteps: 2,
        services: { strategies: Layer.succeed(Registry.PatchStrategies, registry), progress: Progress.layerNone },
      }).pipe(Effect.provide(NodeContext.layer)),
    );
    expect(summary.step).toBe(2);
    expect(counted.calls).toBeGreaterThanOrEqual(2);
  });
});
