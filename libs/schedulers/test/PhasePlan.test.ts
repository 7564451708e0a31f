import { Either } from "effect";
import { expectClose } from "@patchlm/testing";
import { PhasePlan } from "../src";

/** The paper's main runs: N = 180,000 steps, 2M (2^21) tokens per step, T = 2048, K = 4, λ = 2/3. */
const paper = {
  patchSize: 4,
  patchFraction: 2 / 3,
  switchPolicy: "reset",
  budget: { steps: 180_000 },
  tokensPerStep: 2_097_152,
  seqLen: 2048,
  schedule: { kind: "cosine", peakLr: 3e-4, minLr: 0, warmupSteps: 2000 },
} as const;

const plan = (input: object): PhasePlan.PhasePlan =>
  Either.getOrThrowWith(PhasePlan.decode("test", input), (e) => new Error(e.message));
const issues = (input: object): string => {
  const r = PhasePlan.decode("run.yaml", input);
  if (Either.isRight(r)) throw new Error("expected a ConfigError");
  expect(r.left._tag).toBe("ConfigError");
  expect(r.left.source).toBe("run.yaml");
  return r.left.issues.join("\n");
};

describe("PhasePlan step arithmetic (TV11)", () => {
  it("splits N = 180,000 steps at λ = 2/3 into 120,000 patch + 60,000 token steps", () => {
    const p = plan(paper);
    expect([p.patch.steps, p.token.steps, p.totalSteps]).toEqual([120_000, 60_000, 180_000]);
    expect(p.switchStep).toBe(120_000);
    expect(p.phases.map((x) => x.phase)).toEqual(["patch", "token"]);
    expect(p.relativeCost).toBe(0.5);
  });

  it("reproduces the official example: 90,000 + 45,000 steps, 2,097,152 tokens per step in both phases", () => {
    const p = plan({ ...paper, budget: { steps: 135_000 } });
    expect([p.patch.steps, p.token.steps]).toEqual([90_000, 45_000]);
    expect([p.patch.tokens / p.patch.steps, p.token.tokens / p.token.steps]).toEqual([2_097_152, 2_097_152]);
    // patch positions per step 524,288 = 256 sequences of 8192 tokens (2048 patches) each
    expect(p.patch).toMatchObject({ K: 4, windowLength: 8192, positions: 2048, sequencesPerStep: 256, positionsPerStep: 524_288 });
    expect(p.token).toMatchObject({ K: 1, windowLength: 2048, positions: 2048, sequencesPerStep: 1024, positionsPerStep: 2_097_152 });
    expect(p.patch.tokens).toBe(90_000 * 2_097_152); // ≈ 188.7B tokens, the official patch stage
  });

  it("takes the first λ·D tokens at patch level for a token budget (fixed compute λ = 1/2: 45B tokens as 11.25B patches)", () => {
    const p = plan({ ...paper, patchFraction: 0.5, budget: { tokens: 90e9 }, tokensPerStep: 1_000_000, seqLen: 125 });
    expect([p.totalSteps, p.patch.steps, p.token.steps]).toEqual([90_000, 45_000, 45_000]);
    expect(p.patch.tokens).toBe(45e9);
    expect(p.patch.steps * p.patch.positionsPerStep).toBe(11.25e9);
    expect(p.token.tokens).toBe(45e9);
    expect(p.relativeCost).toBe(0.625);
  });

  it("reads the first λ·N epochs at patch level in the multi-epoch form", () => {
    const p = plan({ ...paper, budget: { epochs: 3, tokensPerEpoch: 8192 * 100 }, tokensPerStep: 8192, schedule: { kind: "constant", lr: 1 } });
    expect(p.epochs).toEqual({ patch: 2, token: 1 });
    expect([p.patch.steps, p.token.steps]).toEqual([200, 100]);
    expect(p.patch.tokens).toBe(2 * 8192 * 100);
  });
});

describe("PhasePlan.phaseAt and the switch policy (TV12)", () => {
  it("under reset, restarts the schedule at the switch with a new warmup: LR = 3e-4·s/2000, LR 0 at the first token step", () => {
    const p = plan(paper);
    const first = PhasePlan.phaseAt(p, 120_000);
    expect(first).toEqual({ globalStep: 120_000, phase: "token", phaseStep: 0, lr: 0, K: 1, windowLength: 2048, positions: 2048, resetOptimizer: true });
    const s = [1, 250, 1000, 1999];
    expectClose(
      s.map((x) => PhasePlan.phaseAt(p, 120_000 + x).lr),
      s.map((x) => (3e-4 * x) / 2000),
      { atol: 1e-18, label: "token-phase warmup" },
    );
    expect(PhasePlan.phaseAt(p, 122_000).lr).toBe(3e-4);
    expect(PhasePlan.phaseAt(p, 120_001).resetOptimizer).toBe(false);
  });

  it("under reset, decays the patch phase to its minimum at the end of the patch phase (issue #4)", () => {
    const p = plan(paper);
    expect(PhasePlan.phaseAt(p, 0)).toMatchObject({ phase: "patch", phaseStep: 0, lr: 0, K: 4, windowLength: 8192, positions: 2048, resetOptimizer: false });
    const last = PhasePlan.phaseAt(p, 119_999);
    expect(last).toMatchObject({ phase: "patch", phaseStep: 119_999 });
    expectClose(last.lr, 3e-4 * 0.5 * (1 + Math.cos((Math.PI * 117_999) / 118_000)), { atol: 1e-20 });
    expect(last.lr).toBeLessThan(1e-13);
  });

  it("under continue, reads one schedule at the global step: no new warmup, no optimizer reset", () => {
    const p = plan({ ...paper, switchPolicy: "continue" });
    const at = PhasePlan.phaseAt(p, 120_000);
    expect(at).toMatchObject({ phase: "token", phaseStep: 0, resetOptimizer: false });
    expectClose(at.lr, 3e-4 * 0.5 * (1 + Math.cos((Math.PI * 118_000) / 178_000)), { atol: 1e-18 });
    expect(PhasePlan.phaseAt(p, 1000).lr).toBe(1.5e-4);
  });

  it("rejects steps outside the plan", () => {
    const p = plan(paper);
    expect(() => PhasePlan.phaseAt(p, 180_000)).toThrow(RangeError);
    expect(() => PhasePlan.phaseAt(p, -1)).toThrow(RangeError);
    expect(() => PhasePlan.phaseAt(p, 1.5)).toThrow(RangeError);
  });
});

describe("PhasePlan edge cases", () => {
  it("λ = 0 is token-only training", () => {
    const p = plan({ ...paper, patchFraction: 0 });
    expect([p.patch.steps, p.token.steps, p.switchStep]).toEqual([0, 180_000, undefined]);
    expect(PhasePlan.phaseAt(p, 0)).toMatchObject({ phase: "token", lr: 0, K: 1, resetOptimizer: false });
    expect(p.relativeCost).toBe(1);
  });

  it("λ = 1 is patch-only training", () => {
    const p = plan({ ...paper, patchFraction: 1 });
    expect([p.patch.steps, p.token.steps, p.switchStep]).toEqual([180_000, 0, undefined]);
    expect(PhasePlan.phaseAt(p, 179_999).phase).toBe("patch");
    expect(p.relativeCost).toBe(0.25);
  });

  it("K = 1 makes λ irrelevant: token-only", () => {
    const p = plan({ ...paper, patchSize: 1 });
    expect([p.patchFraction, p.patch.steps, p.token.steps]).toEqual([0, 0, 180_000]);
    expect(p.phases).toHaveLength(1);
  });

  it("only checks the warmup against phases that have steps", () => {
    // λ = 1 leaves 0 token steps; a 2000-step warmup must still fit the 5000 patch steps.
    expect(plan({ ...paper, patchFraction: 1, budget: { steps: 5000 } }).patch.steps).toBe(5000);
  });
});

describe("PhasePlan config errors name their keys", () => {
  it("rejects λ > 1, K = 0, a negative batch and unknown keys, all at once", () => {
    const text = issues({ ...paper, patchFraction: 1.5, patchSize: 0, tokensPerStep: -1, bogus: true });
    expect(text).toMatch(/patchFraction: .*between 0 and 1/);
    expect(text).toMatch(/patchSize: .*positive/);
    expect(text).toMatch(/tokensPerStep/);
    expect(text).toMatch(/bogus: is unexpected/);
  });

  it("rejects warmup longer than a phase under reset, and longer than the run under continue", () => {
    expect(issues({ ...paper, budget: { steps: 3000 } })).toMatch(
      /schedule\.warmupSteps: 2000 warmup steps exceed the 1000 steps of the token phase/,
    );
    expect(issues({ ...paper, switchPolicy: "continue", budget: { steps: 1500 } })).toMatch(
      /schedule\.warmupSteps: 2000 warmup steps exceed the 1500 steps of the run/,
    );
  });

  it("rejects a batch that does not hold whole K·T sequences", () => {
    expect(issues({ ...paper, tokensPerStep: 2048 * 6 })).toMatch(/tokensPerStep: 12288 is not a multiple of the patch phase's sequence length 8192/);
    expect(issues({ ...paper, patchFraction: 0, tokensPerStep: 3000 })).toMatch(/token phase's sequence length 2048/);
  });

  it("rejects a budget below one step, and budgets that are not exactly one of tokens/steps/epochs", () => {
    expect(issues({ ...paper, budget: { tokens: 1000 } })).toMatch(/budget\.tokens: the budget is less than one step/);
    expect(issues({ ...paper, budget: { tokens: 1e9, steps: 10 } })).toMatch(/budget: give exactly one of tokens, steps, epochs \(got tokens, steps\)/);
    expect(issues({ ...paper, budget: { epochs: 2 } })).toMatch(/budget\.tokensPerEpoch: tokensPerEpoch goes with epochs/);
  });

  it("rejects a minimum LR above the peak", () => {
    expect(issues({ ...paper, schedule: { kind: "cosine", peakLr: 1e-4, minLr: 1e-3 } })).toMatch(/schedule\.minLr/);
  });
});
