import { PassThrough } from "node:stream";
import { Effect } from "effect";
import { expectClose, runTest } from "@patchlm/testing";
import { ConsoleLine, MetricRecord, Progress, Throughput } from "../src";

const { Keys } = MetricRecord;

const record = (values: Record<string, number>, over: Partial<MetricRecord.MetricRecord> = {}): MetricRecord.MetricRecord => ({
  step: 1200,
  phase: "patch",
  tokens: 40_960,
  flops: 40_960 / 4 * 28.4e6,
  wallSeconds: 3,
  totalTokens: 1200 * 4096,
  totalFlops: 1200 * 1024 * 28.4e6,
  elapsedSeconds: 83.4,
  values,
  ...over,
});

describe("Throughput", () => {
  it("computes tokens/s, FLOP/s and MFU against a peak", () => {
    const r = Throughput.ratesOf(record({}), 537.6e9);
    expectClose([r.tokensPerSecond, r.flopsPerSecond, r.mfu!], [13653.333333, 96.938667e9, 0.18031746], { rtol: 1e-7 });
    expect(Throughput.ratesOf(record({})).mfu).toBeUndefined();
    expect(Throughput.tokensPerSecond(10, 0)).toBeNaN();
    expect(Throughput.mfu(268.8e9, 537.6e9)).toBe(0.5);
  });
});

describe("ConsoleLine", () => {
  it("formats SI numbers with 3 significant digits", () => {
    expect([2130, 13653.3, 1.23e10, 999, 0.5, 0, NaN].map((x) => ConsoleLine.formatSI(x))).toEqual(["2.13k", "13.7k", "12.3G", "999", "0.5", "0", "NaN"]);
    expect(ConsoleLine.formatSI(96.9387e9, "FLOP/s")).toBe("96.9 GFLOP/s");
  });

  it("formats durations", () => {
    expect([12.34, 83.4, 3725, 36000].map(ConsoleLine.formatDuration)).toEqual(["12.3s", "1m23s", "1h02m05s", "10h00m00s"]);
  });

  it("writes one line with step, phase, loss, lr, tokens/s, FLOP/s, MFU and elapsed time", () => {
    const line = ConsoleLine.formatLine(record({ [Keys.loss]: 3.41234, [Keys.lr]: 3e-4 }), { totalSteps: 3000, peakFlopsPerSecond: 537.6e9 });
    expect(line).toBe("step 1200/3000 patch | loss 3.4123 | lr 3.00e-4 | 13.7k tok/s | 96.9 GFLOP/s 18.0% MFU | 1m23s");
  });

  it("shows validation loss and perplexity, and no rates for an evaluation record", () => {
    const line = ConsoleLine.formatLine(record({ [Keys.valLoss]: 2.392 }, { tokens: 0, flops: 0, wallSeconds: 0, phase: "token" }));
    expect(line).toBe("step 1200 token | val loss 2.3920 ppl 10.94 | 1m23s");
  });
});

describe("Progress", () => {
  const fakeStream = (isTTY: boolean) => {
    const s = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
    s.isTTY = isTTY;
    s.columns = 200;
    const chunks: Array<string> = [];
    s.on("data", (c: Buffer) => chunks.push(c.toString()));
    return { stream: s, output: () => chunks.join("") };
  };

  it("draws phase, step/total, loss, tokens/s and ETA on a TTY, and stops with the scope", async () => {
    const { stream, output } = fakeStream(true);
    await runTest(
      Effect.scoped(
        Effect.gen(function* () {
          const p = yield* Progress.make({ totalSteps: 3000, startStep: 100, stream });
          yield* p.update({ phase: "patch", step: 120, loss: 3.41234, tokensPerSecond: 13653 });
        }),
      ),
    );
    const text = output();
    expect(text).toMatch(/patch \|.*\| 120\/3000 steps \| loss 3\.4123 \| 13\.7k tok\/s \| ETA /);
  });

  it("draws nothing off a TTY", async () => {
    const { stream, output } = fakeStream(false);
    await runTest(
      Effect.scoped(Effect.flatMap(Progress.make({ totalSteps: 10, stream }), (p) => p.update({ phase: "token", step: 5, loss: 1 }))),
    );
    expect(output()).toBe("");
  });
});
