/**
 * A built-in cloze suite, generated deterministically from documents (the validation documents of
 * a prepared data directory), so a fresh clone can run a zero-shot task with no download.
 *
 * Sentences: whitespace runs become one space, then a sentence is the shortest run of text ending
 * in `.`, `!` or `?` (plus closing quotes or brackets) before a space or the end. Crude around
 * abbreviations ("Mr."), which only makes some items easier or harder, never ill-defined.
 * A sentence is *usable* as a target when it has 5 to 40 words and starts with a letter or quote.
 *
 * - `cloze-lastword` (LAMBADA-like): up to `contextSentences` sentences, then a usable sentence
 *   whose last word (before its final punctuation) is at least 3 ASCII letters. The item is
 *   that passage without its final punctuation; the model must produce " word" greedily
 *   (acc) and its likelihood gives the last-word perplexity.
 * - `cloze-nextsentence`: up to `contextSentences` sentences, then 4 choices for the next one:
 *   the true sentence and 3 usable sentences drawn from *other* documents (from far away in the
 *   same document when there is only one), the true one at a random position. acc / acc_norm.
 *
 * Determinism: candidates are listed in document and sentence order, shuffled with mulberry32
 * seeded by `seed`, and the first `items` taken; distractors and positions come from the same
 * generator. Same documents + same options = same items.
 *
 * `suite` draws both tasks from a prepared directory's validation documents; `loadTasks` resolves
 * the evaluator's task names (task files and `cloze`).
 */
import { Effect } from "effect";
import type { Tokenizer } from "@patchlm/tokenization";
import * as Choice from "./Choice";
import * as Documents from "./Documents";
import { EvalInputError } from "./Errors";
import { int, mulberry32, shuffle } from "./internal/Rng";
import * as Tasks from "./Tasks";
import type { ChoiceItem, Task, TargetItem } from "./Tasks";

export interface ClozeOptions {
  /** Seed of the item selection and of the distractors. Default 0. */
  readonly seed?: number;
  /** Items per task (fewer when the documents do not have that many). Default 200. */
  readonly items?: number;
  /** Sentences of context before the target sentence. Default 3. */
  readonly contextSentences?: number;
  /** Choices per next-sentence item. Default 4. */
  readonly choices?: number;
}

const SENTENCE = /[^.!?]*[.!?]+["'’”)\]]*(?=\s|$)/g;

/** The sentences of a text (see the module comment). */
export const sentences = (text: string): Array<string> =>
  Array.from(text.replace(/\s+/g, " ").matchAll(SENTENCE), (m) => m[0].trim()).filter((s) => s !== "");

const words = (s: string): number => s.split(" ").filter((w) => w !== "").length;

/** Usable as a target or distractor (see the module comment). */
export const usable = (s: string): boolean => {
  const n = words(s);
  return n >= 5 && n <= 40 && /^["'‘“(]?[A-Za-z]/.test(s);
};

interface Candidate {
  readonly doc: number;
  readonly index: number;
  readonly context: string;
  readonly sentence: string;
}

const candidates = (docs: ReadonlyArray<ReadonlyArray<string>>, contextSentences: number): Array<Candidate> => {
  const out: Array<Candidate> = [];
  docs.forEach((s, doc) => {
    for (let i = 1; i < s.length; i++) {
      if (!usable(s[i])) continue;
      out.push({ doc, index: i, context: s.slice(Math.max(0, i - contextSentences), i).join(" "), sentence: s[i] });
    }
  });
  return out;
};

const LAST_WORD = /^(.*) ([A-Za-z]{3,})[.!?]+["'’”)\]]*$/;

/** The last-word task of the suite. */
export const lastWord = (documents: ReadonlyArray<string>, options: ClozeOptions = {}): Task => {
  const rng = mulberry32(options.seed ?? 0);
  const docs = documents.map(sentences);
  const pool = candidates(docs, options.contextSentences ?? 3).filter((c) => LAST_WORD.test(c.sentence));
  const items = shuffle(rng, pool)
    .slice(0, options.items ?? 200)
    .map((c, k): TargetItem => {
      const [, head, word] = LAST_WORD.exec(c.sentence)!;
      return { _tag: "Target", line: k + 1, request: { context: `${c.context} ${head}`, continuation: ` ${word}` } };
    });
  return { name: "cloze-lastword", format: "cloze-lastword", source: `built-in cloze (seed ${options.seed ?? 0})`, items, skipped: [] };
};

/** The next-sentence task of the suite. */
export const nextSentence = (documents: ReadonlyArray<string>, options: ClozeOptions = {}): Task => {
  const rng = mulberry32(options.seed ?? 0);
  const docs = documents.map(sentences);
  const nChoices = options.choices ?? 4;
  const pool = candidates(docs, options.contextSentences ?? 3);
  const usableSentences = docs.flatMap((s, doc) => s.flatMap((text, index) => (usable(text) ? [{ doc, index, text }] : [])));
  const items: Array<ChoiceItem> = [];
  for (const c of shuffle(rng, pool)) {
    if (items.length >= (options.items ?? 200) || usableSentences.length === 0) break;
    // Distractors from other documents; from far away in the same one when there is no other.
    const eligible = (d: { doc: number; index: number; text: string }) =>
      d.text !== c.sentence && (docs.length > 1 ? d.doc !== c.doc : Math.abs(d.index - c.index) > 5);
    const picked = new Set<string>();
    // Rejection sampling, bounded: a candidate without enough distinct distractors is skipped.
    for (let attempt = 0; attempt < 64 * nChoices && picked.size < nChoices - 1; attempt++) {
      const d = usableSentences[int(rng, usableSentences.length)];
      if (eligible(d)) picked.add(d.text);
    }
    if (picked.size < nChoices - 1) continue;
    const gold = int(rng, nChoices);
    const choices = [...picked];
    choices.splice(gold, 0, c.sentence);
    items.push({
      _tag: "Choice",
      line: items.length + 1,
      requests: choices.map((s) => ({ context: c.context, continuation: ` ${s}` })),
      gold,
      normBytes: choices.map(Choice.byteLength),
    });
  }
  return { name: "cloze-nextsentence", format: "cloze-nextsentence", source: `built-in cloze (seed ${options.seed ?? 0})`, items, skipped: [] };
};

/**
 * The built-in suite (`lastWord` and `nextSentence`) from a prepared directory's validation
 * documents. A task without a single item is an error: a suite that silently shrinks would make
 * a report's average mean something else.
 */
export const suite = Effect.fn("Cloze.suite")(function* (dataDir: string, tokenizer: Tokenizer.Service, options: Pick<ClozeOptions, "items" | "seed"> = {}) {
  const docs = yield* Documents.validationDocuments(dataDir, tokenizer);
  const tasks = [lastWord(docs, options), nextSentence(docs, options)];
  for (const t of tasks) {
    if (t.items.length === 0) return yield* new EvalInputError({ path: dataDir, reason: "Empty", detail: `the validation documents yield no ${t.name} item` });
  }
  return tasks;
});

export interface LoadTasksOptions {
  /** Skip malformed lines of task files (and count them) instead of failing. */
  readonly skipBad: boolean;
  /** The prepared directory the `cloze` suite is drawn from; needed only when it is named. */
  readonly data: string | undefined;
  readonly tokenizer: Tokenizer.Service;
  readonly clozeItems: number;
  readonly seed: number;
}

/**
 * The tasks named by `specs`: task files (`FORMAT:PATH` or `PATH`, see `Tasks.parseSpec`) and
 * `cloze`, the built-in suite. Here rather than in Tasks so that Tasks (formats, scoring) needs
 * no data directory and imports nothing of this module.
 */
export const loadTasks = Effect.fn("Cloze.loadTasks")(function* (specs: ReadonlyArray<string>, o: LoadTasksOptions) {
  const out: Array<Task> = [];
  for (const spec of specs) {
    if (spec === "cloze") {
      if (o.data === undefined) return yield* new EvalInputError({ path: "--task cloze", reason: "NotFound", detail: "the cloze suite needs a prepared data directory: pass --data" });
      out.push(...(yield* suite(o.data, o.tokenizer, { items: o.clozeItems, seed: o.seed })));
    } else {
      const { format, path: file } = Tasks.parseSpec(spec);
      const task = yield* Tasks.load(file, { format, skipBad: o.skipBad });
      if (task.skipped.length > 0) yield* Effect.logWarning(`${file}: skipped ${task.skipped.length} bad line(s): ${task.skipped.map((s) => s.line).join(", ")}`);
      out.push(task);
    }
  }
  return out;
});
