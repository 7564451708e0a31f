import fc from "fast-check";
import { learnMerges } from "../src/internal/bpeTrainer";
import { countWords } from "../src/internal/preTokenize";
import { book } from "./texts";

/**
 * The textbook algorithm (Sennrich et al. 2016), written for clarity: count every pair in every
 * word, merge the most frequent (ties: smallest left id, then right id), repeat. Same rule for a
 * merge that yields an existing token: it reuses that token's id and adds nothing.
 */
const naive = (words: ReadonlyMap<string, number>, newTokens: number, minFrequency: number) => {
  const tokens: Array<Array<number>> = Array.from({ length: 256 }, (_, b) => [b]);
  const ids = new Map(tokens.map((t, i) => [t.join(","), i]));
  const seqs = [...words].map(([w, c]) => ({ s: Array.from(new TextEncoder().encode(w)), c }));
  const merges: Array<[number, number]> = [];
  let created = 0;
  while (created < newTokens) {
    const counts = new Map<string, number>();
    for (const { s, c } of seqs) for (let i = 0; i + 1 < s.length; i++) counts.set(`${s[i]},${s[i + 1]}`, (counts.get(`${s[i]},${s[i + 1]}`) ?? 0) + c);
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [key, c] of counts) {
      const [a, b] = key.split(",").map(Number);
      if (c > bestCount || (c === bestCount && best !== undefined && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (best === undefined || bestCount < minFrequency) return { merges, tokens, exhausted: true };
    const bytes = [...tokens[best[0]], ...tokens[best[1]]];
    let id = ids.get(bytes.join(","));
    if (id === undefined) {
      id = tokens.length;
      tokens.push(bytes);
      ids.set(bytes.join(","), id);
      created++;
    }
    merges.push(best);
    for (const seq of seqs) {
      const out: Array<number> = [];
      for (let i = 0; i < seq.s.length; i++) {
        if (i + 1 < seq.s.length && seq.s[i] === best[0] && seq.s[i + 1] === best[1]) {
          out.push(id);
          i++;
        } else out.push(seq.s[i]);
      }
      seq.s = out;
    }
  }
  return { merges, tokens, exhausted: false };
};

const same = (words: ReadonlyMap<string, number>, n: number, minFrequency: number) => {
  const fast = learnMerges(words, n, minFrequency);
  const slow = naive(words, n, minFrequency);
  expect(fast.merges.map((m) => [...m])).toEqual(slow.merges);
  expect(fast.tokens.map((t) => Array.from(t))).toEqual(slow.tokens);
  expect(fast.exhausted).toBe(slow.exhausted);
};

describe("learnMerges", () => {
  it("learns the same merges as the textbook algorithm on real text", () => {
    const words = new Map<string, number>();
    countWords(book("blake-poems.txt"), words);
    same(words, 300, 2);
  });

  it("learns the same merges on random small alphabets, where ties abound", () => {
    const table = fc.array(fc.tuple(fc.string({ unit: fc.constantFrom("a", "b", "c", "é"), minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 6 })), {
      maxLength: 12,
    });
    fc.assert(
      fc.property(table, fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3 }), (entries, n, minFrequency) => {
        const words = new Map<string, number>();
        for (const [w, c] of entries) words.set(w, (words.get(w) ?? 0) + c);
        same(words, n, minFrequency);
      }),
      { numRuns: 300 },
    );
  });

  it("does not depend on the order of the word table", () => {
    const words = new Map<string, number>();
    countWords(book("blake-poems.txt"), words);
    const reversed = new Map([...words].reverse());
    expect(learnMerges(reversed, 500, 2).merges).toEqual(learnMerges(words, 500, 2).merges);
  });

  it("reports exhaustion when no pair is frequent enough", () => {
    const r = learnMerges(new Map([["ab", 1]]), 5, 2);
    expect(r.exhausted).toBe(true);
    expect(r.merges).toEqual([]);
  });
});
