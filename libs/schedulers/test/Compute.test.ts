import { Either } from "effect";
import { expectClose } from "@patchlm/testing";
import { Compute, PhasePlan } from "../src";

describe("Compute.relativeCost (TV11: λ/K + 1 − λ)", () => {
  it.each([
    [4, 1 / 2, 0.625],
    [4, 2 / 3, 0.5],
    [4, 4 / 5, 0.4],
    [4, 1 / 4, 0.8125],
    [4, 3 / 4, 0.4375],
    [16, 1 / 2, 0.53125],
  ])("K = %p, λ = %p costs %p", (K, lambda, cost) => {
    expectClose(Compute.relativeCost(K, lambda), cost, { atol: 1e-15 });
  });
  it("K = 8, λ = 2/3 costs 0.41667 (to the printed digits)", () => {
    expectClose(Compute.relativeCost(8, 2 / 3), 0.41667, { atol: 5e-6 });
  });
  it("K = 1 and λ = 0 cost 1", () => {
    expect(Compute.relativeCost(1, 0.7)).toBe(1);
    expect(Compute.relativeCost(4, 0)).toBe(1);
  });
});

describe("Compute.relativeCost at a fixed compute (TV11: C = 56.25B, K = 4, D = C / cost)", () => {
  it.each([
    [0, 56.25e9],
    [1 / 2, 90e9],
    [2 / 3, 112.5e9],
  ])("λ = %p reads D = %p tokens", (lambda, D) => {
    expectClose(56.25e9 / Compute.relativeCost(4, lambda), D, { rtol: 1e-12, atol: 0 });
  });
});

describe("Compute FLOPs accounting", () => {
  const plan = Either.getOrThrow(
    PhasePlan.decode("test", {
      patchSize: 4,
      patchFraction: 0.5,
      budget: { steps: 10 },
      tokensPerStep: 64,
      seqLen: 8,
      schedule: { kind: "constant", lr: 1 },
    }),
  );

  it("counts patch positions (tokens/K) in the patch phase and tokens in the token phase", () => {
    expect(Compute.flopsPerStep(plan, "patch", 100)).toBe(16 * 100);
    expect(Compute.flopsPerStep(plan, "token", 100)).toBe(64 * 100);
    expect(Compute.flopsPerStep(plan, "patch", { patch: 90, token: 100 })).toBe(16 * 90);
  });

  it("accumulates FLOPs up to a global step", () => {
    expect([0, 1, 5, 6, 10].map((s) => Compute.flopsBefore(plan, s, 100))).toEqual([0, 1600, 8000, 14400, 40000]);
    expect(Compute.flopsBefore(plan, 10, { patch: 90, token: 100 })).toBe(5 * 16 * 90 + 5 * 64 * 100);
    // realized cost of the plan: FLOPs against token-only training of the same tokens
    expect(Compute.flopsBefore(plan, 10, 1) / (10 * 64)).toBe(Compute.relativeCost(4, 0.5));
    expect(plan.relativeCost).toBe(Compute.relativeCost(4, 0.5));
  });

  it("rejects step counts outside the plan", () => {
    expect(() => Compute.flopsBefore(plan, 11, 1)).toThrow(RangeError);
    expect(() => Compute.flopsBefore(plan, -1, 1)).toThrow(RangeError);
  });
});
