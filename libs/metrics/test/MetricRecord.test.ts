import { Either } from "effect";
import fc from "fast-check";
import * as M from "fp-ts/Monoid";
import { expectClose } from "@patchlm/testing";
import { MetricRecord } from "../src";

const { Keys } = MetricRecord;

const rec = (step: number, phase: "patch" | "token", loss: number, lr: number, extra: Record<string, number> = {}): MetricRecord.MetricRecord => ({
  step,
  phase,
  tokens: 4096,
  flops: 1e9,
  wallSeconds: 0.5,
  totalTokens: 4096 * step,
  totalFlops: 1e9 * step,
  elapsedSeconds: 0.5 * step,
  values: { [Keys.loss]: loss, [Keys.lr]: lr, ...extra },
});

describe("MetricRecord.aggregate", () => {
  it("averages the loss, reads the LR at the end, sums amounts and keeps the latest totals", () => {
    const r = MetricRecord.aggregate([rec(1, "patch", 4, 1e-4), rec(2, "patch", 3, 2e-4, { [Keys.gradNorm]: 5 }), rec(3, "token", 2, 3e-4, { [Keys.gradNorm]: 1 })])!;
    expect(r).toMatchObject({ step: 3, phase: "token", tokens: 3 * 4096, flops: 3e9, wallSeconds: 1.5, totalTokens: 3 * 4096, totalFlops: 3e9, elapsedSeconds: 1.5 });
    expectClose([r.values[Keys.loss], r.values[Keys.lr], r.values[Keys.gradNorm]], [3, 3e-4, 3], { atol: 1e-15 });
  });

  it("reduces each value as asked: sum, min, max, last", () => {
    const rs = [rec(1, "patch", 4, 1), rec(2, "patch", 1, 2), rec(3, "patch", 2, 3)];
    const sum = MetricRecord.aggregate(rs, { [Keys.loss]: "sum", [Keys.lr]: "min" })!;
    expect([sum.values[Keys.loss], sum.values[Keys.lr]]).toEqual([7, 1]);
    const max = MetricRecord.aggregate(rs, { [Keys.loss]: "max", [Keys.lr]: "last" })!;
    expect([max.values[Keys.loss], max.values[Keys.lr]]).toEqual([4, 3]);
  });

  it("gives nothing for no records", () => {
    expect(MetricRecord.aggregate([])).toBeUndefined();
  });

  it("is a monoid: associative, with an identity", () => {
    const arb = fc
      .tuple(fc.integer({ min: 0, max: 1000 }), fc.constantFrom("patch" as const, "token" as const), fc.integer({ min: -50, max: 50 }), fc.boolean())
      .map(([step, phase, v, withGrad]) => MetricRecord.accumulate(rec(step, phase, v, v * 2, withGrad ? { [Keys.gradNorm]: v } : {})));
    const S = MetricRecord.AccumulatedMonoid;
    fc.assert(
      fc.property(arb, arb, arb, (a, b, c) => {
        expect(S.concat(S.concat(a, b), c)).toEqual(S.concat(a, S.concat(b, c)));
        expect(S.concat(S.empty, a)).toEqual(a);
        expect(S.concat(a, S.empty)).toEqual(a);
      }),
      { numRuns: 200 },
    );
    expect(M.concatAll(S)([])).toEqual(S.empty);
  });
});

describe("MetricRecord JSONL", () => {
  it("keeps NaN and infinities through a round trip", () => {
    const r = rec(5, "token", Number.NaN, Number.POSITIVE_INFINITY, { x: Number.NEGATIVE_INFINITY });
    const line = MetricRecord.toJsonLine(r);
    expect(line).toMatch(/"train\/loss":"NaN"/);
    expect(line.endsWith("}\n")).toBe(true);
    const [back] = Either.getOrThrow(MetricRecord.parseJsonl(line));
    expect(back.values[Keys.loss]).toBeNaN();
    expect([back.values[Keys.lr], back.values.x]).toEqual([Infinity, -Infinity]);
    expect({ ...back, values: {} }).toEqual({ ...r, values: {} });
  });

  it("lets a resumed run's records supersede the ones it re-ran", () => {
    const steps = [10, 20, 30, 30, 40, /* resumed from step 20: */ 30, 40, 50];
    const text = steps.map((s, i) => MetricRecord.toJsonLine(rec(s, "patch", i, 0))).join("");
    const back = Either.getOrThrow(MetricRecord.parseJsonl(text));
    expect(back.map((r) => [r.step, r.values[Keys.loss]])).toEqual([[10, 0], [20, 1], [30, 5], [40, 6], [50, 7]]);
  });

  it("reports bad lines by number", () => {
    const good = MetricRecord.toJsonLine(rec(1, "patch", 1, 1));
    const r = MetricRecord.parseJsonl(`${good}{oops\n${good.replace('"patch"', '"bag"')}`, "runs/x/metrics.jsonl");
    expect(Either.isLeft(r)).toBe(true);
    const e = Either.isLeft(r) ? r.left : undefined;
    expect(e?.source).toBe("runs/x/metrics.jsonl");
    expect(e?.issues[0]).toBe("line 2: not valid JSON");
    expect(e?.issues[1]).toMatch(/^line 3: phase/);
  });
});
