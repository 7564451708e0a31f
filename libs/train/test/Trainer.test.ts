import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect, Fiber } from "effect";
import { Checkpoint } from "@patchlm/checkpoint";
import { MetricRecord } from "@patchlm/metrics";
import { runTest, runTestFailure } from "@patchlm/testing";
import { config, corpusForFile, train } from "./fixture";

jest.setTimeout(120_000);

const corpus = corpusForFile();

const runsDir = (name: string) => path.join(corpus.root, name);

describe("Trainer.run", () => {
  let full: Awaited<ReturnType<typeof runTest<Effect.Effect.Success<ReturnType<typeof train>>, unknown>>>;

  beforeAll(async () => {
    full = await runTest(train(config(corpus.data, runsDir("full"))));
  });

  it("runs the patch phase, switches, runs the token phase, and learns", () => {
    const { summary, records } = full;
    expect(summary.ended).toBe("finished");
    expect(summary.step).toBe(12);
    expect(summary.losses.map((l) => l.phase)).toEqual([...Array(8).fill("patch"), ...Array(4).fill("token")]);
    expect(summary.tokens).toBe(12 * 256);
    const evals = records.filter((r) => r.values[MetricRecord.Keys.valLoss] !== undefined);
    // every 4 steps, plus the end of each phase (step 8 coincides)
    expect(evals.map((r) => r.step)).toEqual([4, 8, 12]);
    // Token-level validation loss falls well below the uniform ln V.
    expect(summary.validation!.loss).toBeLessThan(Math.log(259) - 1);
    // Compute accounting: a patch step costs about 1/K of a token step.
    const trains = records.filter((r) => r.values[MetricRecord.Keys.loss] !== undefined);
    const patchFlops = trains.find((r) => r.phase === "patch")!.flops;
    const tokenFlops = trains.find((r) => r.phase === "token")!.flops;
    expect(tokenFlops / patchFlops).toBeGreaterThan(3);
    expect(trains.at(-1)!.totalFlops).toBeCloseTo(summary.flops, 0);
  });

  it("logs each interval's mean loss and gradient norm, its last LR, and closes an interval at the phase end", async () => {
    const { summary, records } = await runTest(train(config(corpus.data, runsDir("intervals"), { logEvery: 3 })));
    const trains = records.filter((r) => r.values[MetricRecord.Keys.loss] !== undefined);
    // every 3 steps, plus the end of the patch phase (step 8)
    expect(trains.map((r) => r.step)).toEqual([3, 6, 8, 9, 12]);
    let from = 0;
    for (const r of trains) {
      const steps = summary.losses.filter((l) => l.step > from && l.step <= r.step).map((l) => l.loss);
      expect(r.values[MetricRecord.Keys.loss]).toBe(steps.reduce((a, b) => a + b) / steps.length);
      expect(r.tokens).toBe(steps.length * 256);
      // the LR of the interval's last step, as the every-step run logged it
      const sameStep = full.records.find((x) => x.step === r.step && x.values[MetricRecord.Keys.lr] !== undefined)!;
      expect(r.values[MetricRecord.Keys.lr]).toBe(sameStep.values[MetricRecord.Keys.lr]);
      expect(r.values[MetricRecord.Keys.tokensPerSecond]).toBeGreaterThan(0);
      from = r.step;
    }
    expect(summary.losses).toEqual(full.summary.losses);
  });

  it("keeps the last checkpoints and points latest at the final step", async () => {
    const dir = path.join(runsDir("full"), "r");
    const listed = await runTest(Checkpoint.list(dir).pipe(Effect.provide(NodeContext.layer)));
    expect(listed.map((c) => c.step).sort((a, b) => a - b)).toEqual([9, 12]);
    expect(listed.find((c) => c.isLatest)!.step).toBe(12);
    expect(fs.existsSync(path.join(dir, "config.json"))).toBe(true);
  });

  it.each([
    ["mid patch phase", 5],
    ["exactly at the switch", 8],
    ["mid token phase", 10],
  ])("a run resumed %s repeats the uninterrupted loss curve step for step", async (_label, stopAt) => {
    const c = config(corpus.data, runsDir(`split-${stopAt}`));
    const first = await runTest(train(c, { maxSteps: stopAt }));
    expect(first.summary.ended).toBe("maxSteps");
    expect(first.summary.step).toBe(stopAt);
    const second = await runTest(train(c, { resume: true }));
    expect(second.summary.ended).toBe("finished");
    const stitched = [...first.summary.losses, ...second.summary.losses];
    expect(stitched.map((l) => l.step)).toEqual(full.summary.losses.map((l) => l.step));
    // Bit-identical: same batches, same learning rates, same restored weights and moments.
    expect(stitched.map((l) => l.loss)).toEqual(full.summary.losses.map((l) => l.loss));
    expect(second.summary.validation!.loss).toBe(full.summary.validation!.loss);
  });

  it("refuses to start over an existing run, and to resume a run that has nothing", async () => {
    const c = config(corpus.data, runsDir("full"));
    const e = await runTestFailure(train(c));
    expect(e).toMatchObject({ _tag: "TrainError", reason: "RunExists" });
    const none = await runTestFailure(train(config(corpus.data, runsDir("empty")), { resume: true }));
    expect(none).toMatchObject({ _tag: "TrainError", reason: "NothingToResume" });
    const done = await runTestFailure(train(c, { resume: true }));
    expect(done).toMatchObject({ _tag: "TrainError", reason: "Finished" });
  });

  it("a stop request checkpoints the last completed step", async () => {
    const c = config(corpus.data, runsDir("stop"));
    let polls = 0;
    const r = await runTest(train(c, { stopRequested: () => ++polls > 4 }));
    expect(r.summary.ended).toBe("stopped");
    expect(r.summary.step).toBe(4);
    const latest = await runTest(Checkpoint.load(path.join(runsDir("stop"), "r")).pipe(Effect.provide(NodeContext.layer)));
    expect(latest.manifest.step).toBe(4);
  });

  it("an interrupted run writes a checkpoint of its last completed step", async () => {
    const c = config(corpus.data, runsDir("interrupt"), { checkpointEvery: 0 });
    const dir = path.join(runsDir("interrupt"), "r");
    // The loop polls stopRequested once before each step: 3 polls means 2 steps are done.
    let polls = 0;
    const program = Effect.gen(function* () {
      const fiber = yield* Effect.fork(train(c, { stopRequested: () => (++polls, false) }));
      while (polls < 3) yield* Effect.sleep("10 millis");
      yield* Fiber.interrupt(fiber);
    });
    await runTest(program);
    const latest = await runTest(Checkpoint.load(dir).pipe(Effect.provide(NodeContext.layer)));
    expect(latest.manifest.step).toBeGreaterThan(0);
    expect(latest.manifest.step).toBeLessThan(12);
    // And the run continues from there to the same final result.
    const resumed = await runTest(train(c, { resume: true }));
    expect(resumed.summary.validation!.loss).toBe(full.summary.validation!.loss);
  });

  it("stops on repeated non-finite losses without checkpointing non-finite weights", async () => {
    // An absurd learning rate blows the weights up after the first update; the following losses
    // are non-finite and skipped until maxBadSteps stops the run before the phase-end checkpoint.
    const c = config(corpus.data, runsDir("nan"), { optim: { lr: 1e38, warmupSteps: 0, gradClip: 0 }, maxBadSteps: 2, checkpointEvery: 0 });
    const e = await runTestFailure(train(c));
    expect(e).toMatchObject({ _tag: "TrainError", reason: "NonFiniteLoss" });
    const dir = path.join(runsDir("nan"), "r");
    const listed = await runTest(Checkpoint.list(dir).pipe(Effect.provide(NodeContext.layer)));
    for (const ck of listed) {
      const loaded = await runTest(Checkpoint.load(ck.dir).pipe(Effect.provide(NodeContext.layer)));
      for (const t of Object.values(loaded.tensors)) expect((t.data as Float32Array).every(Number.isFinite)).toBe(true);
    }
  });

  it("reports a data error as the data lib names it (a truncated shard), not as a stream that ended early", async () => {
    // Regression (issue 16 D1): the stream's Some(error) was taken for its end.
    const copy = path.join(corpus.root, "data-truncated");
    fs.cpSync(corpus.data, copy, { recursive: true });
    const shard = fs.readdirSync(copy).find((f) => f.startsWith("train-") && f.endsWith(".bin"))!;
    fs.truncateSync(path.join(copy, shard), fs.statSync(path.join(copy, shard)).size - 5);
    const e = (await runTestFailure(train(config(copy, runsDir("truncated"))))) as { _tag: string; message: string };
    expect(e._tag).toBe("ShardError");
    expect(e.message).toContain(shard);
  });

  it("records CPU seconds and carries them across a resume", async () => {
    const c = config(corpus.data, runsDir("cpu"));
    const first = await runTest(train(c, { maxSteps: 6 }));
    expect(first.summary.cpuSeconds).toBeGreaterThan(0);
    const second = await runTest(train(c, { resume: true }));
    expect(second.summary.cpuSeconds).toBeGreaterThan(first.summary.cpuSeconds);
  });

  it("with batch.uniqueTokens, repeats the first U tokens for several epochs (multi-epoch form)", async () => {
    // 3072 tokens of budget over U = 1024: three epochs, the patch phase for the first two.
    const c = config(corpus.data, runsDir("epochs"), { batch: { tokens: 3072, batchTokens: 256, seqLen: 16, microBatch: 4, uniqueTokens: 1024 } });
    const r = await runTest(train(c));
    expect(r.summary.ended).toBe("finished");
    expect(r.summary.step).toBe(12);
    const tooMany = config(corpus.data, runsDir("epochs-bad"), { batch: { tokens: 3072, batchTokens: 256, seqLen: 16, microBatch: 4, uniqueTokens: 10 ** 9 } });
    const e = (await runTestFailure(train(tooMany))) as { _tag: string; message: string };
    expect(e._tag).toBe("ConfigError");
    expect(e.message).toMatch(/batch\.uniqueTokens: 1000000000 exceeds the \d+ tokens of the train split/);
  });

  it("leaves no tensors behind", async () => {
    const before = tf.memory().numTensors;
    await runTest(train(config(corpus.data, runsDir("leak")), { maxSteps: 3 }));
    expect(tf.memory().numTensors).toBe(before);
  });
});
