import * as tf from "@tensorflow/tfjs";
import { Chunk, Effect, Either, Logger, Stream } from "effect";
import { Model } from "@patchlm/model";
import { Bytes } from "@patchlm/tokenization";
import { expectClose, expectNoTensorLeak, runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Choice, Generate } from "../src";
import { tinyCfg as cfg } from "./helpers";

const tokenizer = Bytes.make();

/** Full-forward logits of the last position (no cache). */
const lastLogits = (params: Model.Weights, ids: ReadonlyArray<number>): Float32Array =>
  tf.tidy(() => {
    const z = Model.forward(params, cfg, tf.tensor2d([...ids], [1, ids.length], "int32"));
    return tf.slice(z, [0, ids.length - 1, 0], [1, 1, cfg.vocabSize]).dataSync() as Float32Array;
  });

const collect = <E>(s: Stream.Stream<Generate.Event, E>) => runTest(Effect.map(Stream.runCollect(s), Chunk.toReadonlyArray));

describe("Choice.modelScorer", () => {
  beforeAll(() => useBackend("cpu"));

  it("sums the continuation's log-probs from direct forwards, in request order, across batches and truncation", async () => {
    const params = Model.init(cfg, 7);
    const requests = [
      { context: "The cat", continuation: " sat" },
      { context: "A much longer context than the window holds", continuation: " here" }, // truncated to 16 positions
      { context: "", continuation: "x" },
    ].map((r) => Choice.encodePair(tokenizer, r));
    const got = await expectNoTensorLeak(() => Choice.modelScorer(params, cfg, { batchSize: 2 })(requests));
    requests.forEach((e, i) => {
      const all = [...e.context, ...e.continuation];
      let want = 0;
      let greedy = true;
      // lm-eval: one window, (ctx + cont)[-(W+1):][:-1], serves every continuation token
      const start = Math.max(0, all.length - 1 - cfg.contextLength);
      for (let t = all.length - e.continuation.length; t < all.length; t++) {
        const ctx = all.slice(start, t);
        const z = lastLogits(params, ctx);
        const lse = Math.log(Array.from(z).reduce((a, v) => a + Math.exp(v), 0));
        want += z[all[t]] - lse;
        greedy = greedy && z.indexOf(Math.max(...z)) === all[t];
      }
      expectClose(got[i].logprob, want, { atol: 1e-4, label: `request ${i}` });
      expect(got[i].greedy).toBe(greedy);
      expect(got[i].tokens).toBe(e.continuation.length);
    });
    Model.dispose(params);
  });
});

describe("Generate", () => {
  beforeAll(() => useBackend("cpu"));

  it("greedy decoding with the KV cache equals argmax over full forwards, and is deterministic", async () => {
    const params = Model.init(cfg, 11);
    const prompt = "Hello";
    const events = await expectNoTensorLeak(() => collect(Generate.events(params, cfg, tokenizer, prompt, { greedy: true, maxNewTokens: 6, seed: 1 })));
    const done = events[events.length - 1];
    expect(done).toMatchObject({ _tag: "Done", promptTokens: 5, truncated: 0 });
    // Reference: recompute each step from scratch.
    const ids = Array.from(tokenizer.encode(prompt));
    const want: Array<number> = [];
    for (let i = 0; i < 6; i++) {
      const z = lastLogits(params, ids);
      const next = z.indexOf(Math.max(...z));
      if (next === tokenizer.special.eos) break;
      want.push(next);
      ids.push(next);
    }
    const text = events.flatMap((e) => (e._tag === "Text" ? [e.text] : [])).join("");
    expect(text).toBe(tokenizer.decode(want));
    const again = await collect(Generate.events(params, cfg, tokenizer, prompt, { greedy: true, maxNewTokens: 6, seed: 99 }));
    expect(again).toEqual(events);
    Model.dispose(params);
  });

  it("sampling is reproducible by seed; top-k 1 is greedy", async () => {
    const params = Model.init(cfg, 12);
    const run = (o: Generate.SamplingOptions) => collect(Generate.events(params, cfg, tokenizer, "ab", { maxNewTokens: 8, ...o }));
    expect(await run({ seed: 5, temperature: 1.5 })).toEqual(await run({ seed: 5, temperature: 1.5 }));
    expect(await run({ seed: 5, topK: 1 })).toEqual(await run({ greedy: true }));
    Model.dispose(params);
  });

  it("samples by hand-checked rules: top-k, top-p and temperature", () => {
    const logits = [Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4)];
    const at = (u: number) => () => u;
    // sorted by probability: 3 (.4), 2 (.3), 1 (.2), 0 (.1)
    expect(Generate.sample(logits, {}, at(0.35))).toBe(3);
    expect(Generate.sample(logits, {}, at(0.45))).toBe(2);
    expect(Generate.sample(logits, {}, at(0.95))).toBe(0);
    // top-p 0.6 keeps {3, 2} (0.7 ≥ 0.6): u = 0.95 → 0.665 of 0.7 → token 2
    expect(Generate.sample(logits, { topP: 0.6 }, at(0.95))).toBe(2);
    // top-k 1 keeps only the argmax
    expect(Generate.sample(logits, { topK: 1 }, at(0.99))).toBe(3);
    // temperature → 0 makes the argmax certain
    expect(Generate.sample(logits, { temperature: 0 }, at(0.99))).toBe(3);
  });

  // reliability D11: temperature -1 or NaN silently picked the least likely token; negative
  // maxNewTokens and topK were accepted.
  it("refuses sampling options outside their range, naming each, before any forward pass", async () => {
    const params = Model.init(cfg, 15);
    const bad: ReadonlyArray<[Generate.SamplingOptions, RegExp]> = [
      [{ temperature: -1 }, /^temperature: .*-1/],
      [{ temperature: NaN }, /^temperature: .*NaN/],
      [{ temperature: Infinity }, /^temperature: /],
      [{ maxNewTokens: -5 }, /^maxNewTokens: .*-5/],
      [{ maxNewTokens: 1.5 }, /^maxNewTokens: /],
      [{ topK: -3 }, /^topK: .*-3/],
      [{ topP: 0 }, /^topP: /],
      [{ topP: 1.5 }, /^topP: /],
    ];
    for (const [o, want] of bad) {
      const e = await runTestFailure(Stream.runDrain(Generate.events(params, cfg, tokenizer, "ab", o)));
      expect(e).toMatchObject({ _tag: "ConfigError" });
      expect(e.issues.join("\n")).toMatch(want);
    }
    expect(Either.isRight(Generate.checkOptions("code", { temperature: 0, topK: 0, topP: 1, maxNewTokens: 0 }))).toBe(true);
    Model.dispose(params);
  });

  it("stops before a stop string and never shows any of it", async () => {
    const params = Model.init(cfg, 13);
    const full = await collect(Generate.events(params, cfg, tokenizer, "xy", { greedy: true, maxNewTokens: 10 }));
    const text = full.flatMap((e) => (e._tag === "Text" ? [e.text] : [])).join("");
    const stop = text.slice(3, 5);
    const cut = await collect(Generate.events(params, cfg, tokenizer, "xy", { greedy: true, maxNewTokens: 10, stop: [stop] }));
    const shown = cut.flatMap((e) => (e._tag === "Text" ? [e.text] : [])).join("");
    expect(shown).toBe(text.slice(0, text.indexOf(stop)));
    expect(cut[cut.length - 1]).toMatchObject({ _tag: "Done", reason: "stop" });
    Model.dispose(params);
  });

  it("truncates a prompt longer than the context from the left, with a warning", async () => {
    const params = Model.init(cfg, 14);
    const logs: Array<string> = [];
    const logger = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logs.push(String(message))));
    const events = await runTest(
      Stream.runCollect(Generate.events(params, cfg, tokenizer, "z".repeat(40), { greedy: true, maxNewTokens: 4 })).pipe(Effect.provide(logger)),
    );
    const done = Chunk.toReadonlyArray(events).at(-1)!;
    // room = max(16 − 3, 8) = 13 prompt tokens
    expect(done).toMatchObject({ _tag: "Done", promptTokens: 13, truncated: 27 });
    expect(logs.join("\n")).toMatch(/dropped the first 27 tokens/);
    Model.dispose(params);
  });
});
