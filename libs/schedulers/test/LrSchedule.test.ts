import { Either } from "effect";
import { expectClose } from "@patchlm/testing";
import { LrSchedule } from "../src";

const issuesOf = (r: Either.Either<unknown, { issues: ReadonlyArray<string> }>): string =>
  Either.isLeft(r) ? r.left.issues.join("\n") : "(no error)";

describe("LrSchedule cosine", () => {
  const c = { kind: "cosine", peakLr: 3e-4, minLr: 0, warmupSteps: 2000 } as const;
  const lr = LrSchedule.make(c, 180_000);

  it("warms up linearly from LR 0 at step 0 (HF semantics, TV12: 3e-4·s/2000)", () => {
    const steps = [0, 1, 2, 500, 1000, 1999];
    expectClose(steps.map(lr), steps.map((s) => (3e-4 * s) / 2000), { atol: 1e-18, label: "warmup" });
    expect(lr(0)).toBe(0);
  });

  it("is at the peak right after warmup, halfway at mid-decay and at minLr at the end", () => {
    expect(lr(2000)).toBe(3e-4);
    expectClose(lr(2000 + 89_000), 1.5e-4, { atol: 1e-15 });
    expectClose(lr(180_000), 0, { atol: 1e-18 });
    expectClose(lr(250_000), 0, { atol: 1e-18, label: "past the end stays at the minimum" });
  });

  it("follows half a cosine between warmup and the end", () => {
    const f = LrSchedule.make({ kind: "cosine", peakLr: 1, minLr: 0.1, warmupSteps: 10 }, 110);
    // progress 1/4: 0.1 + 0.9·(1 + cos(π/4))/2
    expectClose(f(35), 0.1 + 0.9 * 0.853553390593, { atol: 1e-12 });
    for (let s = 10; s < 110; s++) expect(f(s + 1)).toBeLessThan(f(s));
    expect(f(110)).toBeCloseTo(0.1, 15);
  });

  it("without warmup starts at the peak", () => {
    expect(LrSchedule.make({ kind: "cosine", peakLr: 2, minLr: 0, warmupSteps: 0 }, 10)(0)).toBe(2);
  });
});

describe("LrSchedule constant", () => {
  it("warms up then holds", () => {
    const f = LrSchedule.make({ kind: "constant", lr: 1e-3, warmupSteps: 4 }, 100);
    expectClose([0, 1, 2, 3, 4, 50, 99, 1000].map(f), [0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3], { atol: 1e-18 });
  });
});

describe("LrSchedule warmup-stable-decay", () => {
  const base = { kind: "wsd", peakLr: 1, minLr: 0, warmupSteps: 10, decayFraction: 0.2 } as const;
  it("holds the peak until the last 20% of steps, then decays linearly", () => {
    const f = LrSchedule.make({ ...base, decayShape: "linear" }, 100);
    expectClose([5, 10, 79, 80, 85, 90, 100].map(f), [0.5, 1, 1, 1, 0.75, 0.5, 0], { atol: 1e-15 });
  });
  it("or along half a cosine, to minLr", () => {
    const f = LrSchedule.make({ ...base, minLr: 0.2, decayShape: "cosine" }, 100);
    expectClose([80, 85, 90, 100].map(f), [1, 0.2 + 0.8 * 0.853553390593, 0.6, 0.2], { atol: 1e-12 });
  });
});

describe("LrSchedule.decode", () => {
  it("fills defaults (minLr 0, no warmup, linear WSD tail over 20%)", () => {
    const f = Either.getOrThrow(LrSchedule.decode("code", { kind: "wsd", peakLr: 1 }, 10));
    expectClose([0, 7, 8, 9].map(f), [1, 1, 1, 0.5], { atol: 1e-15 });
  });
  it("rejects warmup longer than the schedule, naming the key", () => {
    expect(issuesOf(LrSchedule.decode("run.json", { kind: "cosine", peakLr: 1, warmupSteps: 50 }, 40))).toMatch(
      /warmupSteps: 50 warmup steps exceed the 40 steps/,
    );
    expect(() => LrSchedule.make({ kind: "constant", lr: 1, warmupSteps: 5 }, 4)).toThrow(RangeError);
  });
  it("rejects warmup plus WSD decay longer than the schedule", () => {
    expect(issuesOf(LrSchedule.decode("code", { kind: "wsd", peakLr: 1, warmupSteps: 9, decayFraction: 0.5 }, 10))).toMatch(
      /decayFraction: warmup \(9\) plus decay \(5\) steps exceed the 10 steps/,
    );
  });
  it("rejects minLr above peakLr, negative LRs, unknown kinds and unknown keys", () => {
    expect(issuesOf(LrSchedule.decode("code", { kind: "cosine", peakLr: 1, minLr: 2 }, 10))).toMatch(/minLr.*must not exceed peakLr/);
    expect(issuesOf(LrSchedule.decode("code", { kind: "cosine", peakLr: -1 }, 10))).toMatch(/peakLr/);
    expect(issuesOf(LrSchedule.decode("code", { kind: "linear", peakLr: 1 }, 10))).toMatch(/kind/);
    expect(issuesOf(LrSchedule.decode("code", { kind: "constant", lr: 1, warmup: 3 }, 10))).toMatch(/warmup/);
  });
});
