/**
 * Zero-shot multiple-choice tasks with lm-evaluation-harness (v0.4) semantics, read from local
 * JSONL files in the datasets' public formats:
 *
 * | format | fields | request(s) | metrics |
 * |---|---|---|---|
 * | `hellaswag` | activity_label?, ctx_a, ctx_b, endings[4], label | ctx: `preprocess(activity_label + ": " + ctx_a + " " + capitalize(ctx_b))`, cont: " " + `preprocess(ending)` | acc, acc_norm |
 * | `piqa` | goal, sol1, sol2, label | ctx: "Question: {goal}\nAnswer:", cont: " " + sol | acc, acc_norm |
 * | `arc` | question, choices{text[],label[]}, answerKey (or AI2's question{stem,choices[{text,label}]}) | ctx: "Question: {question}\nAnswer:", cont: " " + text | acc, acc_norm |
 * | `winogrande` | sentence (with one "_"), option1, option2, answer "1"/"2" | partial scoring: ctx: sentence before "_" + option, cont: " " + the rest after "_" (stripped) | acc (= acc_norm) |
 * | `lambada` | text | ctx: text before the last space, cont: " " + last word | acc (greedy), ppl of the last word |
 *
 * acc = argmax of the summed log-likelihoods equals the gold index; acc_norm divides each by the
 * UTF-8 byte length of its choice text (lm-eval divides by `len(choice)` in characters: the same
 * for ASCII). Standard errors are the sample standard error of the mean. LAMBADA's perplexity is
 * exp(−mean over examples of the last word's summed log-likelihood), lm-eval's `perplexity`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Effect } from "effect";
import type { Tokenizer } from "@patchlm/tokenization";
import * as Choice from "./Choice";
import { TaskError } from "./Errors";

export const formats = ["hellaswag", "piqa", "arc", "winogrande", "lambada", "cloze-lastword", "cloze-nextsentence"] as const;
export type Format = (typeof formats)[number];

/** Several requests, one of which (`gold`) is right. */
export interface ChoiceItem {
  readonly _tag: "Choice";
  /** 1-based line of the JSONL file (or index + 1 for generated items). */
  readonly line: number;
  readonly requests: ReadonlyArray<Choice.Request>;
  readonly gold: number;
  /** UTF-8 bytes of each choice's text, for acc_norm. */
  readonly normBytes: ReadonlyArray<number>;
}

/** One continuation to predict (last-word tasks): accuracy means every token is the argmax. */
export interface TargetItem {
  readonly _tag: "Target";
  readonly line: number;
  readonly request: Choice.Request;
}

export type Item = ChoiceItem | TargetItem;

export interface Task {
  readonly name: string;
  readonly format: Format;
  /** Where the items came from (a file, or a description of a generated suite). */
  readonly source: string;
  readonly items: ReadonlyArray<Item>;
  /** Lines skipped under `skipBad`, with why. */
  readonly skipped: ReadonlyArray<{ readonly line: number; readonly detail: string }>;
}

// ---------------------------------------------------------------------------------------------
// Field access with precise messages

class FieldProblem {
  constructor(
    readonly reason: "MissingField" | "BadField",
    readonly detail: string,
  ) {}
}

type Doc = Readonly<Record<string, unknown>>;

const field = (doc: Doc, key: string): unknown => {
  if (!(key in doc) || doc[key] === null || doc[key] === undefined) throw new FieldProblem("MissingField", `missing field "${key}"`);
  return doc[key];
};

const str = (doc: Doc, key: string): string => {
  const v = field(doc, key);
  if (typeof v !== "string") throw new FieldProblem("BadField", `field "${key}" must be a string, got ${JSON.stringify(v)}`);
  return v;
};

const strArray = (doc: Doc, key: string, where = key): ReadonlyArray<string> => {
  const v = field(doc, key);
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) {
    throw new FieldProblem("BadField", `field "${where}" must be a non-empty array of strings, got ${JSON.stringify(v)}`);
  }
  return v as ReadonlyArray<string>;
};

const record = (doc: Doc, key: string): Doc => {
  const v = field(doc, key);
  if (typeof v !== "object" || Array.isArray(v)) throw new FieldProblem("BadField", `field "${key}" must be an object, got ${JSON.stringify(v)}`);
  return v as Doc;
};

/** An integer label given as a number or a numeric string, checked against the number of choices. */
const index = (doc: Doc, key: string, choices: number, base = 0): number => {
  const v = field(doc, key);
  const n = typeof v === "number" ? v : typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
  const i = n - base;
  if (!Number.isInteger(i) || i < 0 || i >= choices) {
    throw new FieldProblem("BadField", `field "${key}" must be one of ${Array.from({ length: choices }, (_, k) => k + base).join(", ")}, got ${JSON.stringify(v)}`);
  }
  return i;
};

const choiceItem = (line: number, context: string, choices: ReadonlyArray<string>, gold: number): ChoiceItem => ({
  _tag: "Choice",
  line,
  requests: choices.map((c) => ({ context, continuation: ` ${c}` })),
  gold,
  normBytes: choices.map(Choice.byteLength),
});

// ---------------------------------------------------------------------------------------------
// The formats

/** Python's `str.capitalize`: first character upper case, the rest lower case. */
export const capitalize = (s: string): string => {
  const [first, ...rest] = Array.from(s);
  return first === undefined ? s : first.toUpperCase() + rest.join("").toLowerCase();
};

/** lm-eval's HellaSwag `preprocess`. */
export const hellaswagPreprocess = (text: string): string =>
  text.trim().split(" [title]").join(". ").replace(/\[.*?\]/g, "").split("  ").join(" ");

const hellaswag = (doc: Doc, line: number): Item => {
  const ctx = `${str(doc, "ctx_a")} ${capitalize(str(doc, "ctx_b"))}`;
  const label = typeof doc.activity_label === "string" ? `${doc.activity_label}: ` : "";
  const endings = strArray(doc, "endings");
  return choiceItem(line, hellaswagPreprocess(label + ctx), endings.map(hellaswagPreprocess), index(doc, "label", endings.length));
};

const piqa = (doc: Doc, line: number): Item =>
  choiceItem(line, `Question: ${str(doc, "goal")}\nAnswer:`, [str(doc, "sol1"), str(doc, "sol2")], index(doc, "label", 2));

const arc = (doc: Doc, line: number): Item => {
  const q = field(doc, "question");
  let question: string;
  let texts: ReadonlyArray<string>;
  let labels: ReadonlyArray<string>;
  if (typeof q === "string") {
    // Hugging Face layout: choices {text: [...], label: [...]}.
    const choices = record(doc, "choices");
    question = q;
    texts = strArray(choices, "text", "choices.text");
    labels = strArray(choices, "label", "choices.label");
  } else {
    // AI2's original layout: question {stem, choices: [{text, label}]}.
    const nested = record(doc, "question");
    question = str(nested, "stem");
    const list = field(nested, "choices");
    if (!Array.isArray(list) || list.length === 0) throw new FieldProblem("BadField", `field "question.choices" must be a non-empty array`);
    texts = list.map((c: Doc) => str(c ?? {}, "text"));
    labels = list.map((c: Doc) => str(c ?? {}, "label"));
  }
  if (texts.length !== labels.length) throw new FieldProblem("BadField", `${texts.length} choice texts but ${labels.length} labels`);
  const key = field(doc, "answerKey");
  const gold = labels.indexOf(String(key));
  if (gold < 0) throw new FieldProblem("BadField", `answerKey ${JSON.stringify(key)} is not one of the labels ${JSON.stringify(labels)}`);
  return choiceItem(line, `Question: ${question}\nAnswer:`, texts, gold);
};

const winogrande = (doc: Doc, line: number): Item => {
  const sentence = str(doc, "sentence");
  const blank = sentence.indexOf("_");
  if (blank < 0) throw new FieldProblem("BadField", `field "sentence" has no "_" blank`);
  const options = [str(doc, "option1"), str(doc, "option2")];
  const gold = index(doc, "answer", 2, 1);
  const target = ` ${sentence.slice(blank + 1).trim()}`;
  const requests = options.map((o) => ({ context: sentence.slice(0, blank) + o, continuation: target }));
  // Every choice scores the same continuation, so normalising by its length changes nothing.
  return { _tag: "Choice", line, requests, gold, normBytes: options.map(() => Choice.byteLength(target)) };
};

const lambada = (doc: Doc, line: number): Item => {
  const text = str(doc, "text");
  const cut = text.lastIndexOf(" ");
  if (cut <= 0 || cut === text.length - 1) throw new FieldProblem("BadField", `field "text" must end with a word after a space`);
  return { _tag: "Target", line, request: { context: text.slice(0, cut), continuation: ` ${text.slice(cut + 1)}` } };
};

const readers: Readonly<Record<Exclude<Format, "cloze-lastword" | "cloze-nextsentence">, (doc: Doc, line: number) => Item>> = {
  hellaswag,
  piqa,
  arc,
  winogrande,
  lambada,
};

export type FileFormat = keyof typeof readers;
export const fileFormats = Object.keys(readers) as ReadonlyArray<FileFormat>;

/** The format a JSON record looks like, from its fields. */
export const detect = (doc: Doc): FileFormat | undefined => {
  if ("ctx_a" in doc && "endings" in doc) return "hellaswag";
  if ("goal" in doc && "sol1" in doc) return "piqa";
  if ("question" in doc && "answerKey" in doc) return "arc";
  if ("sentence" in doc && "option1" in doc) return "winogrande";
  if ("text" in doc) return "lambada";
  return undefined;
};

const aliases: Readonly<Record<string, FileFormat>> = { "arc-easy": "arc", "arc-challenge": "arc", arc_easy: "arc", arc_challenge: "arc", lambada_openai: "lambada" };

/** `FORMAT:PATH` or `PATH` (format detected from the first record). */
export const parseSpec = (spec: string): { readonly format: FileFormat | undefined; readonly path: string } => {
  const m = /^([A-Za-z_-]+):(.+)$/.exec(spec);
  if (m !== null) {
    const name = m[1].toLowerCase();
    const format = (readers as Record<string, unknown>)[name] !== undefined ? (name as FileFormat) : aliases[name];
    if (format !== undefined) return { format, path: m[2] };
  }
  return { format: undefined, path: spec };
};

export interface LoadOptions {
  readonly format?: FileFormat;
  /** Skip malformed lines and lines with missing or bad fields, and count them. Default false. */
  readonly skipBad?: boolean;
  /** Task name in results; default the file name without extension. */
  readonly name?: string;
}

/** Read a JSONL task file. Every problem names the file and, for a line, its 1-based number. */
export const load = Effect.fn("Tasks.load")(function* (file: string, options: LoadOptions = {}) {
  const fail = (line: number, reason: TaskError["reason"], detail: string) => new TaskError({ path: file, line, reason, detail });
  const bytes = yield* Effect.try({
    try: () => fs.readFileSync(file),
    catch: (e) =>
      (e as NodeJS.ErrnoException).code === "ENOENT"
        ? fail(0, "NotFound", "no such file")
        : fail(0, "Unreadable", (e as Error).message),
  });
  const text = yield* Effect.try({
    try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
    catch: () => fail(0, "NotUtf8", "a task file must be UTF-8 JSON Lines"),
  });
  let format = options.format;
  const items: Array<Item> = [];
  const skipped: Array<{ line: number; detail: string }> = [];
  const lines = text.split(/\r?\n/);
  let nonBlank = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    if (lines[i].trim() === "") continue;
    nonBlank++;
    let doc: unknown;
    try {
      doc = JSON.parse(lines[i]);
    } catch (e) {
      const detail = `not valid JSON (${(e as Error).message})`;
      if (options.skipBad) skipped.push({ line, detail });
      else return yield* fail(line, "MalformedJson", detail);
      continue;
    }
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
      const detail = "expected a JSON object";
      if (options.skipBad) skipped.push({ line, detail });
      else return yield* fail(line, "MalformedJson", detail);
      continue;
    }
    if (format === undefined) {
      format = detect(doc as Doc);
      if (format === undefined) {
        return yield* fail(
          line,
          "UnknownFormat",
          `cannot tell the format from the fields ${JSON.stringify(Object.keys(doc))}; name it as FORMAT:${file} with FORMAT one of ${fileFormats.join(", ")}`,
        );
      }
    }
    try {
      items.push(readers[format](doc as Doc, line));
    } catch (e) {
      if (!(e instanceof FieldProblem)) throw e;
      const detail = `${e.detail} (${format} format)`;
      if (options.skipBad) skipped.push({ line, detail });
      else return yield* fail(line, e.reason, detail);
    }
  }
  if (nonBlank === 0) return yield* fail(0, "Empty", "the file holds no JSON lines");
  if (items.length === 0) return yield* fail(0, "Empty", `no usable example: all ${skipped.length} lines were skipped`);
  const name = options.name ?? path.basename(file).replace(/\.(jsonl|json)$/i, "");
  return { name, format: format!, source: file, items, skipped } satisfies Task;
});

// ---------------------------------------------------------------------------------------------
// Evaluation

export interface ExampleResult {
  readonly line: number;
  /** Summed log-likelihood of each request. */
  readonly logprobs: ReadonlyArray<number>;
  /** Predicted index by acc and by acc_norm (choice tasks); for target tasks both are 0. */
  readonly pred: number;
  readonly predNorm: number;
  readonly correct: boolean;
  readonly correctNorm: boolean;
}

export interface TaskResult {
  readonly name: string;
  readonly format: Format;
  readonly source: string;
  readonly examples: number;
  readonly skipped: number;
  readonly acc: Choice.Estimate;
  /** Choice tasks only. */
  readonly accNorm: Choice.Estimate | undefined;
  /** Target (last-word) tasks only: exp(−mean log-likelihood of the target). */
  readonly ppl: number | undefined;
  readonly perExample: ReadonlyArray<ExampleResult>;
}

export interface EvaluateOptions {
  /** Token used as the whole context when a context is empty. Default the tokenizer's EOS. */
  readonly prefixToken?: number;
}

/** Score every item of a task with `scorer`. */
export const evaluate = (task: Task, tokenizer: Tokenizer.Service, scorer: Choice.Scorer, options: EvaluateOptions = {}): TaskResult => {
  const requests = task.items.flatMap((it) => (it._tag === "Choice" ? it.requests : [it.request]));
  const lls = scorer(requests.map((r) => Choice.encodePair(tokenizer, r, options.prefixToken)));
  let at = 0;
  const perExample = task.items.map((it): ExampleResult => {
    if (it._tag === "Target") {
      const ll = lls[at++];
      return { line: it.line, logprobs: [ll.logprob], pred: 0, predNorm: 0, correct: ll.greedy, correctNorm: ll.greedy };
    }
    const logprobs = lls.slice(at, at + it.requests.length).map((l) => l.logprob);
    at += it.requests.length;
    const pred = Choice.argmax(logprobs);
    const predNorm = Choice.argmax(logprobs.map((l, i) => l / it.normBytes[i]));
    return { line: it.line, logprobs, pred, predNorm, correct: pred === it.gold, correctNorm: predNorm === it.gold };
  });
  const isChoice = task.items[0]?._tag === "Choice";
  const rate = (f: (e: ExampleResult) => boolean) => Choice.meanWithStderr(perExample.map((e) => (f(e) ? 1 : 0)));
  const meanLl = perExample.reduce((a, e) => a + e.logprobs[0], 0) / Math.max(1, perExample.length);
  return {
    name: task.name,
    format: task.format,
    source: task.source,
    examples: perExample.length,
    skipped: task.skipped.length,
    acc: rate((e) => e.correct),
    accNorm: isChoice ? rate((e) => e.correctNorm) : undefined,
    ppl: isChoice ? undefined : Math.exp(-meanLl),
    perExample,
  };
};

/** The number a summary table shows: acc_norm for choice tasks (the paper's), acc otherwise. */
export const headline = (r: TaskResult): Choice.Estimate => r.accNorm ?? r.acc;
