import { ParameterTable, Presets } from "@patchlm/model";
import { expectNoTensorLeak, runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Bench } from "../src";

describe("Bench.trainStep", () => {
  beforeAll(() => useBackend("cpu"));

  it("runs both modes at the same positions T: token mode T tokens, patch mode K·T tokens per sequence", async () => {
    for (const K of [1, 4]) {
      const r = await runTest(Bench.trainStep({ preset: "tiny", K, batch: 2, seqLen: 16, steps: 1, peakFlops: 1e12 }));
      expect(r).toMatchObject({ mode: K === 1 ? "token" : "patch", K, B: 2, positions: 16, tokensPerSequence: 16 * K, stepsMeasured: 1 });
      expect(r.parameters).toBe(ParameterTable.count(Presets.tiny));
      expect(r.flopsPerToken).toBe(ParameterTable.flopsPerToken(Presets.tiny, 16, K));
      expect(r.tokensPerSec).toBeCloseTo((2 * 16 * K) / (r.msPerStep / 1000), 6);
      expect(r.gflops).toBeCloseTo((r.tokensPerSec * r.flopsPerToken) / 1e9, 9);
      expect(r.mfu).toBeCloseTo((r.gflops * 1e9) / 1e12, 12);
      // a loss near ln V at initialisation, not NaN
      expect(Math.abs(r.finalLoss - Math.log(Presets.tiny.vocabSize))).toBeLessThan(0.5);
    }
  }, 60_000);

  it("leaves no tensor behind", async () => {
    await expectNoTensorLeak(async () => {
      await runTest(Bench.trainStep({ preset: "tiny", K: 2, batch: 1, seqLen: 8, steps: 1 }));
    });
  });

  it("names the flag of an unknown preset", async () => {
    const e = await runTestFailure(Bench.trainStep({ preset: "huge", K: 1, batch: 1, seqLen: 8, steps: 1 }));
    expect(e.message).toContain("--preset");
    expect(e.message).toContain("tiny");
  });
});
