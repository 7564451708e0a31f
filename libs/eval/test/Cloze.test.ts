import * as path from "node:path";
import { NodeContext } from "@effect/platform-node";
import { Effect, Logger } from "effect";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Bytes } from "@patchlm/tokenization";
import { Cloze } from "../src";
import type { Tasks } from "../src";

const docs = [
  "The river ran cold through the valley. Farmers watched the water rise each spring. " +
    "They built walls of stone along the banks. The walls held for many years. One spring the rain did not stop. " +
    "The water climbed over the old stones. Everyone moved their animals to the hills.",
  "A small shop stood at the corner of the square. The baker opened it before dawn every day. " +
    "People came early for warm bread and rolls. He never raised his prices in winter. Children waited outside for the sweet buns.",
  "The ship left the harbour at noon. Its sails filled with a strong western wind. " +
    "The captain studied his charts in silence. Nobody on board had seen these waters before.",
];

const text = (it: Tasks.Item) => (it._tag === "Target" ? it.request : it.requests[it.gold]);

describe("Cloze", () => {
  it("splits sentences at terminal punctuation and keeps only usable targets", () => {
    expect(Cloze.sentences('He said "Stop!" and  left.\nThen rain. Ok')).toEqual(['He said "Stop!"', "and left.", "Then rain."]);
    expect(Cloze.usable("The walls held for many years.")).toBe(true);
    expect(Cloze.usable("Too short.")).toBe(false);
  });

  it("last-word items: the passage without its final punctuation, the word as the continuation", () => {
    const t = Cloze.lastWord(docs, { seed: 1, items: 50 });
    expect(t.items.length).toBeGreaterThan(5);
    for (const it of t.items) {
      if (it._tag !== "Target") throw new Error("expected target items");
      expect(it.request.continuation).toMatch(/^ [A-Za-z]{3,}$/);
      const passage = it.request.context + it.request.continuation;
      // The passage is text of one document, up to the target sentence's final punctuation.
      expect(docs.some((d) => d.replace(/\s+/g, " ").includes(passage))).toBe(true);
    }
  });

  it("next-sentence items: the true next sentence among 4, distractors from other documents", () => {
    const t = Cloze.nextSentence(docs, { seed: 3, items: 12 });
    expect(t.items.length).toBe(12);
    for (const it of t.items) {
      if (it._tag !== "Choice") throw new Error("expected choice items");
      expect(it.requests.length).toBe(4);
      const context = it.requests[0].context;
      const home = docs.findIndex((d) => d.includes(context));
      expect(home).toBeGreaterThanOrEqual(0);
      // gold continues the context in its document; no distractor comes from that document
      expect(docs[home].replace(/\s+/g, " ").includes(`${context}${it.requests[it.gold].continuation}`)).toBe(true);
      it.requests.forEach((r, i) => {
        if (i !== it.gold) expect(docs[home].includes(r.continuation.trim())).toBe(false);
      });
      expect(new Set(it.requests.map((r) => r.continuation)).size).toBe(4);
    }
  });

  it("is deterministic in its seed", () => {
    const a = Cloze.nextSentence(docs, { seed: 7, items: 8 });
    expect(Cloze.nextSentence(docs, { seed: 7, items: 8 })).toEqual(a);
    const b = Cloze.nextSentence(docs, { seed: 8, items: 8 });
    expect(b.items.map(text)).not.toEqual(a.items.map(text));
    expect(Cloze.lastWord(docs, { seed: 2 })).toEqual(Cloze.lastWord(docs, { seed: 2 }));
  });
});

describe("Cloze.loadTasks", () => {
  const fixture = (name: string) => path.join(__dirname, "fixtures", name);
  const options = { skipBad: false, data: undefined, tokenizer: Bytes.make(), clozeItems: 4, seed: 0 };
  const quiet = <A, E>(e: Effect.Effect<A, E, NodeContext.NodeContext>) => Effect.provide(e, NodeContext.layer).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)));

  it("loads task files in order, a FORMAT: prefix naming the format, --skip-bad counting what it skipped", async () => {
    const tasks = await runTest(quiet(Cloze.loadTasks([`piqa:${fixture("piqa.jsonl")}`, fixture("arc.jsonl")], options)));
    expect(tasks.map((t) => [t.name, t.format])).toEqual([["piqa", "piqa"], ["arc", "arc"]]);
    const e = await runTestFailure(quiet(Cloze.loadTasks([fixture("bad.jsonl")], options)));
    expect(e).toMatchObject({ _tag: "TaskError", line: 2, reason: "MalformedJson" });
    const [skipped] = await runTest(quiet(Cloze.loadTasks([fixture("bad.jsonl")], { ...options, skipBad: true })));
    expect([skipped.items.length, skipped.skipped.length]).toEqual([1, 2]);
  });

  it("the cloze suite needs a prepared data directory, and says so naming --data", async () => {
    const e = await runTestFailure(quiet(Cloze.loadTasks(["cloze"], options)));
    expect(e).toMatchObject({ _tag: "EvalInputError", path: "--task cloze", reason: "NotFound" });
    expect((e as Error).message).toMatch(/pass --data/);
  });
});
