import * as tf from "@tensorflow/tfjs";
import { Model } from "@patchlm/model";
import { Loss } from "@patchlm/losses";
import { expectClose, expectNoTensorLeak, randomInts, useBackend } from "@patchlm/testing";
import { Perplexity, Score } from "../src";
import { tinyCfg as cfg } from "./helpers";

/** log p(tokens[t] | tokens[from..t−1]) by a direct forward over exactly that context. */
const directLogProb = (params: Model.Weights, tokens: Int32Array, from: number, t: number): number =>
  tf.tidy(() => {
    const n = t - from;
    const inputs = tf.tensor2d(tokens.slice(from, t), [1, n], "int32");
    const targets = tf.tensor2d(tokens.slice(from + 1, t + 1), [1, n], "int32");
    return Score.targetLogProbs(params, cfg, inputs, targets).logprobs.dataSync()[n - 1];
  });

describe("Perplexity", () => {
  beforeAll(() => useBackend("cpu"));

  it("windows score every target exactly once, each with at least W − S + 1 tokens of context", () => {
    for (const [n, W, S] of [[50, 8, 8], [50, 8, 3], [9, 8, 8], [5, 8, 2], [2, 4, 1], [33, 16, 5]]) {
      const seen = new Array(n).fill(0);
      for (const w of Perplexity.windows(n, W, S)) {
        expect(w.length).toBeLessThanOrEqual(W);
        for (let k = w.length - w.scored; k < w.length; k++) {
          const target = w.start + k + 1;
          seen[target]++;
          // context of the target: inputs w.start..target−1
          expect(target - w.start).toBeGreaterThanOrEqual(Math.min(target, W - S + 1));
        }
      }
      expect(seen).toEqual([0, ...new Array(n - 1).fill(1)]);
    }
    // Hand-checked: n = 10, W = 4, S = 2 → targets 1-4 from [0,4), 5-6 from [2,6), 7-8 from [4,8), 9 from [5,9).
    expect(Perplexity.windows(10, 4, 2)).toEqual([
      { start: 0, length: 4, scored: 4 },
      { start: 2, length: 4, scored: 2 },
      { start: 4, length: 4, scored: 2 },
      { start: 5, length: 4, scored: 1 },
    ]);
    expect(() => Perplexity.windows(10, 4, 5)).toThrow(/stride/);
  });

  it("streamNll equals the sum of per-token log-probs computed with each token's exact window context", async () => {
    const params = Model.init(cfg, 1);
    const tokens = randomInts(37, 259, 2);
    const W = 8;
    const S = 3;
    const got = await expectNoTensorLeak(() => Perplexity.streamNll(params, cfg, tokens, { window: W, stride: S, batchSize: 3 }));
    let want = 0;
    for (const w of Perplexity.windows(tokens.length, W, S)) {
      for (let k = w.length - w.scored; k < w.length; k++) want -= directLogProb(params, tokens, w.start, w.start + k + 1);
    }
    expect(got.tokens).toBe(36);
    expectClose(got.nll, want, { atol: 1e-4, label: "nll" });
    Model.dispose(params);
  });

  it("disjoint windows of the full context match the trainer's windowNll over the same rows plus the boundary tokens", () => {
    const params = Model.init(cfg, 3);
    const L = cfg.contextLength;
    // Stream of 1 + 2·L tokens: windows [0,L) scoring 1..L and [L,2L) scoring L+1..2L.
    const tokens = randomInts(1 + 2 * L, 259, 4);
    const got = Perplexity.streamNll(params, cfg, tokens);
    const rows = Score.windowNll(params, cfg, tokens.slice(0, 2 * L), 2, L); // targets 1..L−1 and L+1..2L−1
    const boundary = -directLogProb(params, tokens, 0, L) - directLogProb(params, tokens, L, 2 * L);
    expect(got.tokens).toBe(2 * L);
    expectClose(got.nll, rows.nll + boundary, { atol: 1e-4 });
    Model.dispose(params);
  });

  it("bits per byte is nats / ln 2 / bytes", () => {
    expectClose(Perplexity.bitsPerByte(Math.LN2 * 10, 5), 2, { atol: 1e-12 });
    const r = Perplexity.result({ nll: 6, tokens: 3 }, 4);
    expectClose([r.loss, r.ppl, r.bitsPerByte], [2, Math.exp(2), 6 / Math.LN2 / 4], { atol: 1e-12 });
  });

  it("patchLoss with K = 1 is the token loss of disjoint windows, and with K = 2 the bag loss of mean patches", async () => {
    const params = Model.init(cfg, 5);
    const T = 8;
    const tokens = randomInts(3 * T + 5, 259, 6); // 3 windows, a tail of 5 left out
    const k1 = Perplexity.patchLoss(params, cfg, tokens, 1, { positions: T, batchSize: 2 });
    const rows = Score.windowNll(params, cfg, tokens.slice(0, 3 * T), 3, T);
    expect(k1.windows).toBe(3);
    expectClose(k1.loss, rows.nll / rows.tokens, { atol: 1e-5, label: "K=1" });

    const k2 = await expectNoTensorLeak(() => Perplexity.patchLoss(params, cfg, tokens, 2, { positions: 4, batchSize: 2 }));
    const want = tf.tidy(() => {
      const ids = tf.tensor2d(tokens.slice(0, 3 * 8), [3, 8], "int32");
      const emb = Model.embed(params, cfg, ids); // (3,8,C)
      const patches = tf.mean(tf.reshape(emb, [3, 4, 2, cfg.dModel]), 2) as tf.Tensor3D;
      const z = Model.logits(params, cfg, Model.hidden(params, cfg, patches)); // (3,4,V)
      const scored = tf.slice(z, [0, 0, 0], [3, 3, cfg.vocabSize]);
      const targets = tf.reshape(tf.slice(ids, [0, 2], [3, 6]), [3, 3, 2]);
      return Loss.bagCrossEntropy(scored, targets).dataSync()[0];
    });
    expectClose(k2.loss, want, { atol: 1e-5, label: "K=2" });
    expect(k2.loss).toBeGreaterThan(Math.log(2) - 1e-6);
    Model.dispose(params);
  });
});

describe("Perplexity standard errors", () => {
  const perWindow = (nll: Array<number>, scored: Array<number>): Perplexity.PerWindow => ({ nll: Float64Array.from(nll), scored: Float64Array.from(scored) });

  it("groups consecutive windows into blocks of at least blockTokens, folding a short tail into the last block", () => {
    const w = perWindow([1, 2, 3, 4, 5, 6, 7], [10, 10, 10, 10, 10, 10, 2]);
    expect(Perplexity.blocks(w, 20)).toEqual({ nll: [3, 7, 11 + 7], tokens: [20, 20, 22] });
    // A tail of at least half a block stands alone.
    expect(Perplexity.blocks(perWindow([1, 2, 3], [10, 10, 10]), 20)).toEqual({ nll: [3, 3], tokens: [20, 10] });
  });

  it("the ratio estimator's standard error matches a hand computation, and is the plain SE of the mean for equal blocks", () => {
    // Equal blocks of 10 tokens with per-token means 1, 2, 3, 4: mean 2.5, sd 1.2910, SE = sd/√4.
    const equal = Perplexity.meanWithError({ nll: [10, 20, 30, 40], tokens: [10, 10, 10, 10] });
    expect(equal.loss).toBe(2.5);
    expect(equal.standardError).toBeCloseTo(Math.sqrt(((1.5 ** 2 + 0.5 ** 2) * 2) / 3) / 2, 12);
    // Unequal blocks: loss = 60/40; residuals (nll − loss·t)/t̄ with t̄ = 20: (10−15)/20, (50−45)/20.
    const unequal = Perplexity.meanWithError({ nll: [10, 50], tokens: [10, 30] });
    expect(unequal.loss).toBe(1.5);
    expect(unequal.standardError).toBeCloseTo(Math.sqrt((0.0625 + 0.0625) / 2), 12);
    expect(Perplexity.meanWithError({ nll: [1], tokens: [1] }).standardError).toBeNaN();
  });

  it("a paired difference cancels the text's own difficulty", () => {
    // Hard and easy blocks alike for both models; b is 0.1 nats/token better everywhere.
    const a = { nll: [50, 10, 40, 20], tokens: [10, 10, 10, 10] };
    const b = { nll: [49, 9, 39, 19], tokens: [10, 10, 10, 10] };
    const d = Perplexity.pairedDifference(a, b);
    expect(d.difference).toBeCloseTo(0.1, 12);
    expect(d.standardError).toBeCloseTo(0, 12);
    expect(Perplexity.meanWithError(a).standardError).toBeGreaterThan(0.5);
    expect(() => Perplexity.pairedDifference(a, { nll: [1], tokens: [10] })).toThrow(/same blocks/);
  });
});
