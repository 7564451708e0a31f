/**
 * What each evaluator command does: open a checkpoint, call the eval libs, print the results.
 * Every handler also returns its results (tests and scripts use them).
 */
import { Console, Effect, Either, Option, Stream } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { ConfigError } from "@patchlm/core";
import { Checkpoints, Choice, Cloze, EvalInputError, Generate, HuggingFace, Perplexity, Report, Tasks } from "@patchlm/eval";

const get = Option.getOrUndefined;

const useBackend = (backend: ComputeBackend.Choice) => ComputeBackend.make({ backend });

const fmt = (x: number | undefined, digits = 4): string => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));

/** What every command that runs a checkpoint's model is given. */
interface ModelOptions {
  readonly checkpoint: string;
  readonly tokenizer: Option.Option<string>;
  readonly backend: ComputeBackend.Choice;
}

/** `use` the checkpoint's model and tokenizer on the chosen backend; the model is freed after. */
const withModel = <A, E, R>(o: ModelOptions, use: (m: Checkpoints.Opened) => Effect.Effect<A, E, R>) =>
  Effect.zipRight(useBackend(o.backend), Effect.scoped(Effect.flatMap(Checkpoints.open(o.checkpoint, get(o.tokenizer)), use)));

export interface PplOptions extends ModelOptions {
  readonly data: Option.Option<string>;
  readonly window: Option.Option<number>;
  readonly stride: Option.Option<number>;
  readonly batchSize: number;
  readonly maxTokens: Option.Option<number>;
  readonly patchSize: Option.Option<number>;
  readonly json: boolean;
}

export const ppl = Effect.fn("evaluator.ppl")((o: PplOptions) =>
  withModel(o, (m) =>
    Effect.gen(function* () {
      const data = get(o.data) ?? Checkpoints.runDataDir(m.runDir);
      if (data === undefined) return yield* new EvalInputError({ path: m.runDir, reason: "NotFound", detail: "no --data given and the run has no config.json naming its data directory" });
      const started = performance.now();
      // The patch loss scores with the run's own strategy (its module loaded again, checked unchanged).
      const strategy = get(o.patchSize) === undefined ? undefined : yield* Checkpoints.runStrategy(m.runDir);
      const r = yield* Perplexity.scoreData(m, data, {
        window: get(o.window),
        stride: get(o.stride),
        batchSize: o.batchSize,
        maxTokens: get(o.maxTokens),
        patchSize: get(o.patchSize),
        strategy,
        strategyParams: m.strategyParams,
      });
      const seconds = (performance.now() - started) / 1000;
      if (o.json) {
        const { blocks: _blocks, ...shown } = r;
        yield* Console.log(JSON.stringify(shown));
      } else {
        const se = Number.isFinite(r.standardError) ? ` ± ${fmt(r.standardError)}` : "";
        yield* Console.log(`data: ${data}  (window ${r.window}, stride ${r.stride}; ${r.streams} stream(s), ${r.tokens} tokens, ${r.bytes} bytes, ${seconds.toFixed(1)} s)`);
        yield* Console.log(`token loss ${fmt(r.loss)}${se} nats  perplexity ${fmt(r.ppl, 3)}  bits/byte ${fmt(r.bitsPerByte)}`);
        const { K, windows, loss, strategy: used } = r.patch ?? {};
        if (K !== undefined) yield* Console.log(`patch loss (K=${K}, ${used} patches, ${windows} windows): ${fmt(loss)} — NOT comparable with token loss (its floor is ln K = ${Math.log(K).toFixed(3)})`);
      }
      return r;
    }),
  ),
);

export interface TasksOptions extends ModelOptions {
  /** Task files (`FORMAT:PATH` or `PATH`), or `cloze` for the built-in suite. */
  readonly tasks: ReadonlyArray<string>;
  readonly data: Option.Option<string>;
  readonly skipBad: boolean;
  readonly batchSize: number;
  readonly clozeItems: number;
  readonly seed: number;
  readonly json: boolean;
}

const pct = (e: Choice.Estimate | undefined) => (e === undefined ? "–" : `${(e.value * 100).toFixed(1)} ± ${(e.stderr * 100).toFixed(1)}`);

export const tasks = Effect.fn("evaluator.tasks")(function* (o: TasksOptions) {
  if (o.tasks.length === 0) return yield* new EvalInputError({ path: "--task", reason: "NotFound", detail: "give at least one --task FILE (or --task cloze)" });
  return yield* withModel(o, (m) =>
    Effect.gen(function* () {
      const list = yield* Cloze.loadTasks(o.tasks, { ...o, data: get(o.data) ?? Checkpoints.runDataDir(m.runDir), tokenizer: m.tokenizer });
      const scorer = Choice.modelScorer(m.params, m.cfg, { batchSize: o.batchSize });
      const results: Array<Omit<Tasks.TaskResult, "perExample">> = [];
      for (const t of list) {
        const { perExample: _per, ...r } = Tasks.evaluate(t, m.tokenizer, scorer);
        results.push(r);
        if (o.json) yield* Console.log(JSON.stringify(r));
        else {
          yield* Console.log(
            `${r.name.padEnd(20)} ${r.format.padEnd(18)} n=${String(r.examples).padEnd(5)} acc ${pct(r.acc)}  acc_norm ${pct(r.accNorm)}` +
              (r.ppl === undefined ? "" : `  ppl ${fmt(r.ppl, 2)}`) +
              (r.skipped > 0 ? `  (skipped ${r.skipped})` : ""),
          );
        }
      }
      return results;
    }),
  );
});

export interface GenerateOptions extends ModelOptions {
  readonly prompt: string;
  readonly maxNewTokens: number;
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  readonly greedy: boolean;
  readonly stop: ReadonlyArray<string>;
}

/** The generate flag of each sampling option, so a range error names what the user typed. */
const samplingFlags: Readonly<Record<string, string>> = { maxNewTokens: "--max-new-tokens", temperature: "--temperature", topK: "--top-k", topP: "--top-p", seed: "--seed", stop: "--stop" };

export const generate = Effect.fn("evaluator.generate")(function* (o: GenerateOptions, write: (text: string) => Effect.Effect<void> = (t) => Effect.sync(() => void process.stdout.write(t))) {
  // Checked before the checkpoint is loaded: a bad flag costs nothing.
  const { maxNewTokens, temperature, topK, topP, seed, greedy, stop } = o;
  const options = yield* Either.mapLeft(
    Generate.checkOptions("flags", { maxNewTokens, temperature, topK, topP, seed, greedy, stop }),
    (e) => new ConfigError({ source: e.source, issues: e.issues.map((i) => i.replace(/^(\w+):/, (key, name: string) => (samplingFlags[name] === undefined ? key : `${samplingFlags[name]}:`))) }),
  );
  return yield* withModel(o, (m) =>
    Effect.gen(function* () {
      let text = "";
      let done: Generate.Event | undefined;
      yield* Stream.runForEach(Generate.events(m.params, m.cfg, m.tokenizer, o.prompt, options), (e) => {
        if (e._tag === "Done") {
          done = e;
          return write("\n");
        }
        text += e.text;
        return write(e.text);
      });
      if (done?._tag === "Done") yield* Effect.logInfo(`generated ${done.tokens} tokens (stopped: ${done.reason})`);
      return { text, done };
    }),
  );
});

export interface CompareOptions {
  readonly runs: ReadonlyArray<string>;
  readonly out: string;
  readonly tasks: ReadonlyArray<string>;
  readonly maxTokens: number;
  readonly batchSize: number;
  readonly clozeItems: number;
  readonly evaluate: boolean;
  readonly backend: ComputeBackend.Choice;
}

export const compare = Effect.fn("evaluator.compare")(function* (o: CompareOptions) {
  if (o.runs.length === 0) return yield* new EvalInputError({ path: "compare", reason: "NotFound", detail: "give at least one run directory" });
  const runs = yield* Effect.forEach(o.runs, (r) => Report.loadRun(r));
  const evals: ReadonlyArray<Report.RunEval> = o.evaluate
    ? yield* Effect.zipRight(useBackend(o.backend), Effect.forEach(runs, (r) => Effect.zipRight(Effect.logInfo(`evaluating ${r.name}`), Report.evaluateRun(r, o))))
    : runs.map(Report.loggedEval);
  const notes = o.evaluate
    ? [`Evaluated on at most ${o.maxTokens} validation tokens per run (windows of the model's context, stride = window).`]
    : ["Not re-evaluated (--no-eval): val loss and ppl are each run's last logged validation figures."];
  const files = yield* Report.write(o.out, runs, evals, notes);
  yield* Console.log(Report.table(runs, evals));
  yield* Console.log(`\nwrote ${files.join(", ")}`);
  return { runs, evals, files };
});

export interface ExportOptions {
  readonly checkpoint: string;
  readonly hf: string;
  readonly tokenizer: Option.Option<string>;
}

export const exportHf = Effect.fn("evaluator.export")(function* (o: ExportOptions) {
  const { source, files } = yield* HuggingFace.exportRun(o.checkpoint, o.hf, { tokenizerDir: get(o.tokenizer) });
  yield* Console.log(`exported ${source} to ${o.hf}: ${files.join(", ")}`);
  return files;
});

export interface ImportOptions {
  readonly hfDir: string;
  readonly out: string;
  readonly step: number;
}

export const importHf = Effect.fn("evaluator.import")(function* (o: ImportOptions) {
  const saved = yield* HuggingFace.importRun(o.hfDir, o.out, { step: o.step });
  yield* Console.log(`imported ${o.hfDir} into ${saved.dir}`);
  return saved;
});
