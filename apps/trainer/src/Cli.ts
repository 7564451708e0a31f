/**
 * The trainer's commands and flags. Parsing only: each command hands a plain options object to
 * its handler in Handlers.ts.
 */
import { Args, Command, Options } from "@effect/cli";
import { defaultTo } from "@patchlm/cli";
import { backend, precision, trainOptions } from "./Flags";
import * as Handlers from "./Handlers";
import { withResumeHint } from "./ResumeHint";
import * as Study from "./Study";

// --- prepare ---------------------------------------------------------------------------------

const prepare = Command.make(
  "prepare",
  {
    corpus: Options.text("corpus").pipe(
      Options.withDescription('"embedded" (Gutenberg books + State of the Union addresses), a .txt file or folder, or a .jsonl file or folder'),
      defaultTo("embedded"),
    ),
    field: Options.text("jsonl-field").pipe(Options.withDescription("JSONL field holding the text"), defaultTo("text")),
    latin1: Options.boolean("latin1").pipe(Options.withDescription("decode text files as Latin-1 instead of strict UTF-8")),
    out: Options.directory("out").pipe(Options.withDescription("output directory for shards and tokenizer"), defaultTo("data/embedded")),
    tokenizer: Options.text("tokenizer").pipe(
      Options.withDescription("bpe:<vocab size> (trained on the corpus), bytes, gpt2, cl100k, or file:<tokenizer.json>"),
      defaultTo("bpe:4096"),
    ),
    validationFraction: Options.float("val-fraction").pipe(Options.withDescription("share of documents held out"), defaultTo(0.01)),
    seed: Options.integer("seed").pipe(Options.withDescription("seed of the document split"), defaultTo(0)),
  },
  (o) => Handlers.prepare(o),
).pipe(Command.withDescription("Tokenize a corpus once into binary shards (cached: re-running with the same inputs does nothing)."));

// --- train -----------------------------------------------------------------------------------

const train = Command.make("train", trainOptions, (o) => withResumeHint(Handlers.train(o))).pipe(
  Command.withDescription("Train: the patch phase on the first λ of the data, then the token phase on the rest."),
);

const resume = Command.make(
  "resume",
  {
    run: Args.text({ name: "run" }).pipe(Args.withDescription("run name or run directory")),
    runsDir: Options.text("runs-dir").pipe(defaultTo("runs")),
    backend,
    maxSteps: Options.integer("max-steps").pipe(Options.optional),
  },
  (o) => withResumeHint(Handlers.resume(o)),
).pipe(Command.withDescription("Continue a run from its latest checkpoint, exactly where it stopped."));

const bench = Command.make(
  "bench",
  {
    backend,
    precision,
    preset: Options.text("preset").pipe(defaultTo("reference")),
    mode: Options.choice("mode", ["token", "patch", "both"]).pipe(defaultTo("both")),
    patchSize: Options.integer("patch-size").pipe(defaultTo(4)),
    batch: Options.integer("batch").pipe(Options.withDescription("sequences per step (B)"), defaultTo(8)),
    seqLen: Options.integer("seq-len").pipe(
      Options.withDescription("positions T per sequence: T tokens in token mode, K·T tokens (T patches) in patch mode"),
      defaultTo(256),
    ),
    steps: Options.integer("steps").pipe(Options.withDescription("measured steps per mode"), defaultTo(5)),
  },
  (o) => Handlers.bench(o),
).pipe(Command.withDescription("Measure training-step speed (tokens/s, GFLOP/s, MFU); prints JSON."));

const inspect = Command.make(
  "inspect",
  {
    run: Args.text({ name: "run" }).pipe(Args.withDescription("run name or run directory")),
    runsDir: Options.text("runs-dir").pipe(defaultTo("runs")),
  },
  (o) => Handlers.inspect(o),
).pipe(Command.withDescription("Show a run's config, progress and checkpoints."));

const demo = Command.make(
  "demo",
  {
    backend,
    name: Options.text("name").pipe(defaultTo("demo")),
    runsDir: Options.text("runs-dir").pipe(defaultTo("runs")),
    fresh: Options.boolean("fresh").pipe(Options.withDescription("delete an existing demo run first")),
  },
  (o) => Study.demo(o),
).pipe(Command.withDescription("The main job: prepare the embedded corpus, train K=4 λ=2/3, evaluate, plot."));

const study = Command.make(
  "study",
  {
    file: Args.file({ name: "study.yaml" }).pipe(Args.withDescription("the study file (see libs/train/src/Study.ts)")),
    backend,
    reportOnly: Options.boolean("report-only").pipe(Options.withDescription("rebuild the report from the saved results; train nothing")),
    timeSteps: Options.boolean("time-steps").pipe(
      Options.withDescription("time every step shape of the study on this (quiet) machine, for load-free time ratios; then report"),
    ),
  },
  (o) => Study.study(o),
).pipe(
  Command.withDescription(
    "Run a study: a token-level baseline and patch-level variants over the same data, each run resumable, then a Table-1 style report with plots.",
  ),
);

export const command = Command.make("trainer").pipe(
  Command.withDescription("patchlm trainer: patch-level then token-level training of LLaMA-style models."),
  Command.withSubcommands([prepare, train, resume, bench, inspect, demo, study]),
);

