/**
 * The evaluator's commands and flags. Parsing only: each command hands a plain options object to
 * its handler in Handlers.ts.
 */
import { Args, Command, Options } from "@effect/cli";
import { defaultTo } from "@patchlm/cli";
import { Backend } from "@patchlm/core";
import * as Handlers from "./Handlers";

const backend = Options.choice("backend", Backend.Choice.literals).pipe(
  Options.withDescription("compute backend (default: PATCHLM_BACKEND, then the best available)"),
  defaultTo("auto" as const),
);
const checkpoint = Args.text({ name: "checkpoint" }).pipe(Args.withDescription("a run directory (its latest checkpoint) or a step-XXXXXXXX directory"));
const tokenizer = Options.directory("tokenizer").pipe(
  Options.withDescription("directory holding the tokenizer (default: the run directory, then the run's data directory)"),
  Options.optional,
);
const batchSize = Options.integer("batch-size").pipe(Options.withDescription("sequences per forward pass"), defaultTo(8));
const json = Options.boolean("json").pipe(Options.withDescription("print results as JSON lines"));

const ppl = Command.make(
  "ppl",
  {
    checkpoint,
    data: Options.text("data").pipe(
      Options.withDescription("a prepared data directory (its validation split), or a UTF-8 .txt file or folder (default: the run's data)"),
      Options.optional,
    ),
    tokenizer,
    window: Options.integer("window").pipe(Options.withDescription("positions per forward pass (default: the model's context)"), Options.optional),
    stride: Options.integer("stride").pipe(Options.withDescription("new tokens scored per window (default: the window; smaller gives more context)"), Options.optional),
    batchSize,
    maxTokens: Options.integer("max-tokens").pipe(Options.withDescription("score at most about this many tokens"), Options.optional),
    patchSize: Options.integer("patch-size").pipe(Options.withDescription("also report the patch (bag) loss with K-token patches (not comparable)"), Options.optional),
    backend,
    json,
  },
  (o) => Handlers.ppl(o),
).pipe(Command.withDescription("Token-level loss, perplexity and bits per byte with sliding windows."));

const tasks = Command.make(
  "tasks",
  {
    checkpoint,
    tasks: Options.text("task").pipe(
      Options.withDescription("a JSONL task file, FORMAT:FILE (hellaswag, piqa, arc, winogrande, lambada), or cloze (the built-in suite); repeatable"),
      Options.repeated,
      defaultTo([] as ReadonlyArray<string>),
    ),
    data: Options.text("data").pipe(Options.withDescription("prepared data directory for --task cloze (default: the run's data)"), Options.optional),
    tokenizer,
    skipBad: Options.boolean("skip-bad").pipe(Options.withDescription("skip malformed lines and lines missing fields, and count them")),
    batchSize: Options.integer("batch-size").pipe(Options.withDescription("requests per forward pass"), defaultTo(16)),
    clozeItems: Options.integer("cloze-items").pipe(Options.withDescription("items per cloze task"), defaultTo(200)),
    seed: Options.integer("seed").pipe(Options.withDescription("seed of the cloze suite"), defaultTo(0)),
    backend,
    json,
  },
  (o) => Handlers.tasks(o),
).pipe(Command.withDescription("Zero-shot multiple choice by log-likelihood (lm-evaluation-harness semantics): acc and acc_norm with standard errors."));

const generate = Command.make(
  "generate",
  {
    checkpoint,
    prompt: Options.text("prompt").pipe(defaultTo("", "empty")),
    tokenizer,
    maxNewTokens: Options.integer("max-new-tokens").pipe(defaultTo(64)),
    temperature: Options.float("temperature").pipe(defaultTo(1)),
    topK: Options.integer("top-k").pipe(Options.withDescription("0 keeps every token"), defaultTo(0)),
    topP: Options.float("top-p").pipe(Options.withDescription("nucleus threshold; 1 keeps every token"), defaultTo(1)),
    seed: Options.integer("seed").pipe(defaultTo(0)),
    greedy: Options.boolean("greedy").pipe(Options.withDescription("argmax decoding: deterministic")),
    stop: Options.text("stop").pipe(Options.withDescription("stop before this string; repeatable"), Options.repeated, defaultTo([] as ReadonlyArray<string>)),
    backend,
  },
  (o) => Handlers.generate(o),
).pipe(Command.withDescription("Generate text with the KV cache, streamed token by token."));

const compare = Command.make(
  "compare",
  {
    runs: Args.text({ name: "run" }).pipe(Args.withDescription("run directories"), Args.repeated),
    out: Options.text("out").pipe(defaultTo("report")),
    tasks: Options.text("task").pipe(Options.withDescription("tasks for the table (files, FORMAT:FILE, or cloze); repeatable"), Options.repeated, defaultTo([] as ReadonlyArray<string>)),
    maxTokens: Options.integer("max-tokens").pipe(Options.withDescription("validation tokens scored per run"), defaultTo(32768)),
    batchSize,
    clozeItems: Options.integer("cloze-items").pipe(defaultTo(200)),
    noEval: Options.boolean("no-eval").pipe(Options.withDescription("only read the runs' metrics; evaluate nothing")),
    backend,
  },
  ({ noEval, ...o }) => Handlers.compare({ ...o, evaluate: !noEval }),
).pipe(Command.withDescription("One report over runs: loss plots (PNG) and a Table 1 style summary (markdown)."));

const exportCommand = Command.make(
  "export",
  { checkpoint, hf: Options.text("hf").pipe(Options.withDescription("output directory")), tokenizer },
  (o) => Handlers.exportHf(o),
).pipe(Command.withDescription("Write a Hugging Face LLaMA directory: config.json, model.safetensors, tokenizer.json, generation_config.json."));

const importCommand = Command.make(
  "import",
  {
    hfDir: Args.directory({ name: "hf-dir" }).pipe(Args.withDescription("a Hugging Face LLaMA directory")),
    out: Options.text("out").pipe(Options.withDescription("run directory to write the checkpoint into")),
    step: Options.integer("step").pipe(Options.withDescription("step number of the checkpoint"), defaultTo(0)),
  },
  (o) => Handlers.importHf(o),
).pipe(Command.withDescription("Read a Hugging Face LLaMA directory back into a patchlm checkpoint."));

export const command = Command.make("evaluator").pipe(
  Command.withDescription("patchlm evaluator: perplexity, zero-shot tasks, generation, run comparison, Hugging Face export/import."),
  Command.withSubcommands([ppl, tasks, generate, compare, exportCommand, importCommand]),
);
