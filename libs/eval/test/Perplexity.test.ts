import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { NodeContext } from "@effect/platform-node";
import { Effect } from "effect";
import { Model } from "@patchlm/model";
import { PatchStrategy } from "@patchlm/patching";
import { Loss } from "@patchlm/losses";
import { expectClose, expectNoTensorLeak, randomInts, runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Bytes } from "@patchlm/tokenization";
import { Documents, Perplexity, Score } from "../src";
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

describe("Perplexity.scoreStream: the one validation perplexity", () => {
  beforeAll(() => useBackend("cpu"));
  const stream = (name: string, n: number, seed: number, bytes: number): Documents.TokenStream => ({ name, tokens: randomInts(n, 259, seed), bytes });

  it("gives the study's numbers for window = context, stride = window: streamNll's loss, meanWithError(blocks(windowNll)) by hand", () => {
    const params = Model.init(cfg, 7);
    const s = stream("a", 301, 8, 512);
    const got = Perplexity.scoreStream(params, cfg, s, { batchSize: 3, blockTokens: 64 });
    // The study's final evaluation, as apps/trainer computes it today.
    const perWindow = Perplexity.windowNll(params, cfg, s.tokens, { batchSize: 3 });
    const blocks = Perplexity.blocks(perWindow, 64);
    const stats = Perplexity.meanWithError(blocks);
    const total = blocks.nll.reduce((a, b) => a + b, 0);
    expect(got.blocks).toEqual(blocks);
    expect([got.loss, got.standardError, got.ppl, got.bitsPerByte]).toEqual([stats.loss, stats.standardError, Math.exp(stats.loss), Perplexity.bitsPerByte(total, 512)]);
    expect([got.tokens, got.bytes, got.nll]).toEqual([300, 512, total]);
    // 300 targets in windows of 16, 4 windows a block; the tail of 44 is over half a block and stands alone.
    expect(blocks.tokens).toEqual([64, 64, 64, 64, 44]);
    // Its per-window sum is streamNll's.
    const plain = Perplexity.streamNll(params, cfg, s.tokens, { batchSize: 3 });
    expect(got.tokens).toBe(plain.tokens);
    expectClose(got.loss, plain.nll / plain.tokens, { rtol: 1e-12, label: "loss" });
    // The default block is the study's default, 4096 targets: one block here, so no standard error.
    const oneBlock = Perplexity.scoreStream(params, cfg, s, { batchSize: 3 });
    expect(Perplexity.DEFAULT_BLOCK_TOKENS).toBe(4096);
    expect(oneBlock.blocks.tokens).toEqual([300]);
    expect(oneBlock.standardError).toBeNaN();
    Model.dispose(params);
  });

  it("several streams: every target of each scored once, windows blocked as one sequence; window and stride as given", () => {
    const params = Model.init(cfg, 9);
    const streams = [stream("a", 40, 1, 30), stream("b", 25, 2, 20)];
    const o = { window: 8, stride: 3, batchSize: 4, blockTokens: 16 };
    const got = Perplexity.scoreStreams(params, cfg, streams, o);
    const parts = streams.map((s) => Perplexity.windowNll(params, cfg, s.tokens, o));
    const joined = { nll: Float64Array.from([...parts[0].nll, ...parts[1].nll]), scored: Float64Array.from([...parts[0].scored, ...parts[1].scored]) };
    const want = Perplexity.meanWithError(Perplexity.blocks(joined, 16));
    expect([got.tokens, got.bytes]).toEqual([39 + 24, 50]);
    expect([got.loss, got.standardError]).toEqual([want.loss, want.standardError]);
    const sums = streams.map((s) => Perplexity.streamNll(params, cfg, s.tokens, o));
    expectClose(got.nll, sums[0].nll + sums[1].nll, { rtol: 1e-12 });
    Model.dispose(params);
  });
});

describe("Perplexity.scoreData", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-perplexity-"));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  beforeAll(() => useBackend("cpu"));
  const tokenizer = Bytes.make();
  const run = <A, E>(e: Effect.Effect<A, E, NodeContext.NodeContext>) => runTest(Effect.provide(e, NodeContext.layer));
  const fail = <A, E>(e: Effect.Effect<A, E, NodeContext.NodeContext>) => runTestFailure(Effect.provide(e, NodeContext.layer));

  it("scores text files as one stream each (EOS-prefixed, UTF-8 bytes), with the patch loss apart", async () => {
    const params = Model.init(cfg, 4);
    const texts = ["Ünïcode text, scored with windows.\n", "A second file, a little longer than the first one is.\n"];
    texts.forEach((t, i) => fs.writeFileSync(path.join(root, `f${i}.txt`), t));
    const got = await run(Perplexity.scoreData({ params, cfg, tokenizer }, root, { stride: 5, batchSize: 4, patchSize: 2 }));
    const streams = texts.map((t, i) => Documents.textStream(`f${i}`, t, tokenizer));
    const want = Perplexity.scoreStreams(params, cfg, streams, { window: cfg.contextLength, stride: 5, batchSize: 4 });
    expect([got.window, got.stride, got.streams, got.data]).toEqual([cfg.contextLength, 5, 2, root]);
    expect([got.tokens, got.bytes]).toEqual([want.tokens, Buffer.byteLength(texts.join(""))]);
    expect([got.loss, got.standardError, got.bitsPerByte]).toEqual([want.loss, want.standardError, want.bitsPerByte]);
    expect(got.patch).toMatchObject({ K: 2, comparable: false });
    expect(got.patch!.loss).toBeGreaterThan(Math.log(2));
    // --max-tokens: files are taken whole until about that many targets.
    expect((await run(Perplexity.scoreData({ params, cfg, tokenizer }, root, { maxTokens: 10 }))).streams).toBe(1);
    Model.dispose(params);
  });

  it("the patch loss uses the given strategy and its parameters, and refuses a strategy whose parameters the checkpoint lacks", async () => {
    const params = Model.init(cfg, 4);
    const text = "Patch loss with the run's own strategy, over a few windows of bytes.\n".repeat(3);
    fs.writeFileSync(path.join(root, "strategy.txt"), text);
    const file = path.join(root, "strategy.txt");
    const mean = await run(Perplexity.scoreData({ params, cfg, tokenizer }, file, { patchSize: 4 }));
    expect(mean.patch).toMatchObject({ K: 4, strategy: "mean" });
    // Zero logits: the weighted mean starts as the plain mean.
    const logits = { "patch.weighted-mean.logits": tf.zeros([4]) };
    const weighted = await run(Perplexity.scoreData({ params, cfg, tokenizer }, file, { patchSize: 4, strategy: PatchStrategy.weightedMean, strategyParams: logits }));
    expect(weighted.patch).toMatchObject({ K: 4, strategy: "weighted-mean", windows: mean.patch!.windows });
    expectClose(weighted.patch!.loss, mean.patch!.loss, { rtol: 1e-5 });
    // Other logits weigh the offsets unevenly: another loss.
    const skewed = { "patch.weighted-mean.logits": tf.tensor1d([3, 0, 0, 0]) };
    const other = await run(Perplexity.scoreData({ params, cfg, tokenizer }, file, { patchSize: 4, strategy: PatchStrategy.weightedMean, strategyParams: skewed }));
    expect(Math.abs(other.patch!.loss - mean.patch!.loss)).toBeGreaterThan(1e-4);
    const e = await fail(Perplexity.scoreData({ params, cfg, tokenizer }, file, { patchSize: 4, strategy: PatchStrategy.weightedMean }));
    expect(e.message).toMatch(/--patch-size.*strategy weighted-mean has parameters \(patch\.weighted-mean\.logits\) that this checkpoint does not hold.*patch-phase checkpoint/);
    for (const t of [...Object.values(logits), ...Object.values(skewed)]) t.dispose();
    Model.dispose(params);
  });

  it("a bad window, stride, --max-tokens or --patch-size fails naming the flag, before reading any text", async () => {
    const params = Model.init(cfg, 4);
    const missing = path.join(root, "no-such-data");
    const cases: ReadonlyArray<[Perplexity.DataOptions, string, RegExp]> = [
      [{ window: cfg.contextLength + 1 }, "--window/--stride", /stride \(17\) ≤ window \(17\) ≤ the model's context length \(16\)/],
      [{ window: 8, stride: 9 }, "--window/--stride", /need 1 ≤ stride \(9\) ≤ window \(8\)/],
      [{ stride: 0 }, "--window/--stride", /stride \(0\)/],
      [{ window: 2.5 }, "--window/--stride", /window \(2\.5\)/],
      [{ maxTokens: 0 }, "--max-tokens", /need a positive integer, got 0/],
      [{ patchSize: -2 }, "--patch-size", /need a positive integer, got -2/],
    ];
    for (const [options, flag, detail] of cases) {
      const e = await fail(Perplexity.scoreData({ params, cfg, tokenizer }, missing, options));
      expect(e).toMatchObject({ _tag: "EvalInputError", path: flag, reason: "Malformed" });
      expect((e as Error).message).toMatch(detail);
    }
    expect(await fail(Perplexity.scoreData({ params, cfg, tokenizer }, missing))).toMatchObject({ _tag: "EvalInputError", path: missing, reason: "NotFound" });
    Model.dispose(params);
  });
});
