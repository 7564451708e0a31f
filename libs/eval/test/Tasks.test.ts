import * as path from "node:path";
import { Bytes } from "@patchlm/tokenization";
import { expectClose, runTest, runTestFailure } from "@patchlm/testing";
import { Choice, Documents, Tasks } from "../src";

const tokenizer = Bytes.make();
const fixture = (name: string) => path.join(__dirname, "fixtures", name);

/**
 * A scorer whose log-likelihoods are set by hand: each (context, continuation) the task must
 * produce maps to a number. An unexpected request fails the test, so the table also pins the
 * exact prompts of each format.
 */
const stub =
  (table: Record<string, number | [number, boolean]>): Choice.Scorer =>
  (requests) =>
    requests.map((e) => {
      const key = `${tokenizer.decode(e.context)}|${tokenizer.decode(e.continuation)}`;
      const v = table[key];
      if (v === undefined) throw new Error(`unexpected request ${JSON.stringify(key)}`);
      const [logprob, greedy] = typeof v === "number" ? [v, false] : v;
      return { logprob, greedy, tokens: e.continuation.length };
    });

const evaluate = async (file: string, table: Record<string, number | [number, boolean]>) => {
  const task = await runTest(Tasks.load(fixture(file)));
  return Tasks.evaluate(task, tokenizer, stub(table));
};

describe("Tasks", () => {
  it("HellaSwag: lm-eval's preprocess and capitalize, acc and acc_norm by hand", async () => {
    const q1 = "Baking cookies: A woman puts flour in a bowl. She";
    const q2 = "Washing a car: A man sprays the car with water. The man";
    const r = await evaluate("hellaswag.jsonl", {
      // item 1 (gold 0): lp −30/24 B, −29/29 B, −12/6 B, −40/24 B → acc picks 2, acc_norm picks 1 (−1.0)
      [`${q1}| adds two eggs and stirs.`]: -30,
      [`${q1}| throws the bowl. at the wall.`]: -29,
      [`${q1}| sings.`]: -12,
      [`${q1}| reads a book about cars.`]: -40,
      // item 2 (gold 2): −20/11, −25/13, −22/31, −15/9 → acc picks 3, acc_norm picks 2 (−0.710)
      [`${q2}| flies away.`]: -20,
      [`${q2}| eats the car.`]: -25,
      [`${q2}| scrubs the doors with a sponge.`]: -22,
      [`${q2}| is a car.`]: -15,
    });
    expect(r.format).toBe("hellaswag");
    expect(r.perExample.map((e) => [e.pred, e.predNorm])).toEqual([[2, 1], [3, 2]]);
    expect(r.acc).toEqual({ value: 0, stderr: 0, n: 2 });
    // acc_norm [0, 1]: mean 0.5, sample sd √0.5, stderr √0.5/√2 = 0.5
    expectClose([r.accNorm!.value, r.accNorm!.stderr], [0.5, 0.5], { atol: 1e-12 });
  });

  it("PIQA: Question/Answer prompt, acc 0.5 ± 0.5 and acc_norm 1 ± 0", async () => {
    const p1 = "Question: How do you open a jar with a tight lid?\nAnswer:";
    const p2 = "Question: To dry wet shoes quickly,\nAnswer:";
    const r = await evaluate("piqa.jsonl", {
      // −50/43 = −1.163 vs −45/38 = −1.184: acc picks 1 (wrong), acc_norm picks 0 (right)
      [`${p1}| Run the lid under hot water, then twist it.`]: -50,
      [`${p1}| Put the jar in the freezer for a week.`]: -45,
      [`${p2}| stuff them with newspaper.`]: -20,
      [`${p2}| fill them with water.`]: -21,
    });
    expect(r.perExample.map((e) => [e.pred, e.predNorm])).toEqual([[1, 0], [0, 0]]);
    expectClose([r.acc.value, r.acc.stderr, r.accNorm!.value, r.accNorm!.stderr], [0.5, 0.5, 1, 0], { atol: 1e-12 });
  });

  it("ARC: Hugging Face and AI2 layouts, the answer key looked up among the labels", async () => {
    const p1 = "Question: Which of these is a source of light?\nAnswer:";
    const p2 = "Question: What do plants need to make food?\nAnswer:";
    const r = await evaluate("arc.jsonl", {
      // gold 1: −10/6, −11/7, −12/7, −13/8 → acc 0, acc_norm 1 (−1.571)
      [`${p1}| a rock`]: -10,
      [`${p1}| the Sun`]: -11,
      [`${p1}| a spoon`]: -12,
      [`${p1}| a shadow`]: -13,
      // gold 0: −9/8, −8/4, −12/7 → acc 1, acc_norm 0 (−1.125)
      [`${p2}| sunlight`]: -9,
      [`${p2}| sand`]: -8,
      [`${p2}| plastic`]: -12,
    });
    expect(r.perExample.map((e) => [e.pred, e.predNorm])).toEqual([[0, 1], [1, 0]]);
    expect([r.acc.value, r.accNorm!.value]).toEqual([0, 1]);
  });

  it("WinoGrande: partial scoring of the text after the blank given each option", async () => {
    const r = await evaluate("winogrande.jsonl", {
      ["The trophy does not fit in the suitcase because the trophy| is too big."]: -5,
      ["The trophy does not fit in the suitcase because the suitcase| is too big."]: -7,
      ["Sam thanked Alex because Sam| had helped with the move."]: -9,
      ["Sam thanked Alex because Alex| had helped with the move."]: -10,
    });
    expect(r.perExample.map((e) => [e.pred, e.correct])).toEqual([[0, true], [0, false]]);
    expectClose([r.acc.value, r.acc.stderr, r.accNorm!.value], [0.5, 0.5, 0.5], { atol: 1e-12 });
  });

  it("LAMBADA: last-word accuracy is greedy decoding, perplexity is exp(−mean log-likelihood)", async () => {
    const r = await evaluate("lambada.jsonl", {
      ["She opened the door and let the cat out into the| garden"]: [-2, true],
      ["He poured the milk into a tall| glass"]: [-4, false],
    });
    expect(r.accNorm).toBeUndefined();
    expectClose([r.acc.value, r.ppl!], [0.5, Math.exp(3)], { atol: 1e-9 });
  });

  it("detects formats from fields and accepts FORMAT:PATH", () => {
    expect(Tasks.detect({ goal: "", sol1: "" })).toBe("piqa");
    expect(Tasks.detect({ foo: 1 })).toBeUndefined();
    expect(Tasks.parseSpec("arc-challenge:/x/y.jsonl")).toEqual({ format: "arc", path: "/x/y.jsonl" });
    expect(Tasks.parseSpec("/x/piqa.jsonl")).toEqual({ format: undefined, path: "/x/piqa.jsonl" });
    expect(Tasks.capitalize("tHE Man")).toBe("The man");
    expect(Tasks.hellaswagPreprocess(" a [title] b [x]c  d ")).toBe("a. b c d");
  });

  it("names the file and line of a malformed line; --skip-bad skips and counts", async () => {
    const e = await runTestFailure(Tasks.load(fixture("bad.jsonl")));
    expect(e._tag).toBe("TaskError");
    expect(e).toMatchObject({ line: 2, reason: "MalformedJson" });
    expect(e.message).toContain("bad.jsonl:2");
    const t = await runTest(Tasks.load(fixture("bad.jsonl"), { skipBad: true }));
    expect(t.items.length).toBe(1);
    expect(t.skipped.map((s) => s.line)).toEqual([2, 3]);
    expect(t.skipped[1].detail).toContain(`missing field "sol2"`);
  });

  it("a missing field without --skip-bad names the line and the field", async () => {
    const e = await runTestFailure(Tasks.load(fixture("lambada.jsonl"), { format: "piqa" }));
    expect(e).toMatchObject({ line: 1, reason: "MissingField" });
    expect(e.message).toMatch(/lambada\.jsonl:1: MissingField: missing field "goal"/);
  });

  it("an empty or missing file is an error", async () => {
    expect(await runTestFailure(Tasks.load(fixture("empty.jsonl")))).toMatchObject({ reason: "Empty", line: 0 });
    expect(await runTestFailure(Tasks.load(fixture("nope.jsonl")))).toMatchObject({ reason: "NotFound" });
  });
});

describe("Choice", () => {
  it("encodes pairs as lm-eval: trailing context spaces move to the continuation; an empty context is the prefix token", () => {
    const e = Choice.encodePair(tokenizer, { context: "Answer: ", continuation: "yes" });
    expect(tokenizer.decode(e.context)).toBe("Answer:");
    expect(tokenizer.decode(e.continuation)).toBe(" yes");
    const empty = Choice.encodePair(tokenizer, { context: "", continuation: "hi" });
    expect(Array.from(empty.context)).toEqual([tokenizer.special.eos]);
  });

  it("sample standard error of the mean", () => {
    // [1,0,0,1,1]: mean .6, sample variance (3·.16 + 2·.36)/4 = .3, stderr √(.3/5)
    const s = Choice.meanWithStderr([1, 0, 0, 1, 1]);
    expectClose([s.value, s.stderr], [0.6, Math.sqrt(0.3 / 5)], { atol: 1e-12 });
    expect(Choice.argmax([1, 3, 3])).toBe(1);
  });
});

describe("Documents.tokenizerDifferences", () => {
  it("names the hash and the vocabulary that differ; a PAD id past the model's vocabulary is never fed to it", () => {
    const tok = { name: "bpe-300", hash: "b".repeat(64), vocabSize: 300, special: { bos: 297, eos: 298, pad: 299 } };
    expect(Documents.tokenizerDifferences({ tokenizerHash: "b".repeat(64), vocabSize: 299 }, tok)).toEqual([]);
    expect(Documents.tokenizerDifferences({ tokenizerHash: "", vocabSize: 300 }, tok)).toEqual([]);
    expect(Documents.tokenizerDifferences({ tokenizerHash: "a".repeat(64), vocabSize: 259 }, tok)).toEqual([
      `tokenizer hash: the checkpoint was trained with ${"a".repeat(64)}, the tokenizer "bpe-300" has ${"b".repeat(64)}`,
      `vocabulary: the tokenizer "bpe-300" has 300 ids, the model only 259`,
    ]);
    expect(Documents.tokenizerDifferences({ tokenizerHash: "", vocabSize: 259 }, tok)).toEqual([`vocabulary: the tokenizer "bpe-300" has 300 ids, the model only 259`]);
  });

  // reliability D10: an import records its own tokenizer's hash, so a 4096-id tokenizer beside a
  // 300-id model matched by hash and generate crashed in GatherV2.
  it("the recorded tokenizer too must fit the model's vocabulary", () => {
    const big = { name: "bpe-4096", hash: "c".repeat(64), vocabSize: 4096, special: { bos: 0, eos: 1, pad: 2 } };
    expect(Documents.tokenizerDifferences({ tokenizerHash: "c".repeat(64), vocabSize: 300 }, big)).toEqual([
      `vocabulary: the tokenizer "bpe-4096" has 4096 ids, the model only 300`,
    ]);
    expect(Documents.tokenizerDifferences({ tokenizerHash: "c".repeat(64), vocabSize: 4096 }, big)).toEqual([]);
  });
});
