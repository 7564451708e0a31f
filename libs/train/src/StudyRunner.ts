/**
 * Running a study (see `Study` for the file): prepare its data, then train (or resume) every run
 * in order, evaluate each finished run once, keep its results, and write the report.
 *
 * - Each run is an ordinary run directory under the study's runsDir: `inspect`, `resume` and the
 *   evaluator work on it.
 * - Resumable: a finished run is not trained again, an interrupted one resumes from its newest
 *   checkpoint (Ctrl-C or kill -9 loses at most one checkpoint interval; a lost `latest` pointer
 *   is recovered from the step directories).
 * - Results: each finished and evaluated run gets `<results>/<run>/` (its config, metrics,
 *   summary and `result.json`; never checkpoints). Meant to be committed: a study started on a
 *   machine without the run directories reuses them and trains only what is missing. Results made
 *   with another config than the study now asks for are refused, never silently reused.
 * - A run that fails is reported by name and the others go on; the study then fails naming them.
 * - The caller picks the backend and makes it current (this lib only uses it) and says which it
 *   is, for the report.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { Effect, Either, Option, Schema } from "effect";
import { Checkpoint } from "@patchlm/checkpoint";
import { AtomicFile, ConfigError } from "@patchlm/core";
import { Corpus, Prepare, Tokenizers } from "@patchlm/data";
import { Checkpoints, Choice, Cloze, Documents, Perplexity, StudyReport, Tasks } from "@patchlm/eval";
import { Chart, MetricRecord } from "@patchlm/metrics";
import { TokenizerFiles } from "@patchlm/tokenization";
import * as Bench from "./Bench";
import * as Run from "./Run";
import * as Setup from "./Setup";
import * as Study from "./Study";
import type * as Trainer from "./Trainer";

export class StudyError extends Schema.TaggedError<StudyError>()("StudyError", {
  reason: Schema.Literal("RunsFailed", "StaleResults", "BadResults"),
  detail: Schema.String,
}) {
  override get message(): string {
    return this.detail;
  }
}

/** The backend the study trains and times on (made current by the caller). */
export type Backend = Trainer.Options["backend"] & {
  /** What the report says ran: name, threads, detail. */
  readonly description: string;
};

export interface Options {
  /** Names the study in errors (its file). */
  readonly file: string;
  /** The command that reproduces the study, recorded in the report. */
  readonly command: string;
  /** Only rebuild the report from the saved results; train nothing. */
  readonly reportOnly: boolean;
  /** Measure each run's step times (meant for a quiet machine) into step-times.json, then report. */
  readonly timeSteps?: boolean;
  /** Needed unless `reportOnly` (and no `timeSteps`). */
  readonly backend?: Backend;
  /** Recorded in checkpoint manifests. */
  readonly packageVersions?: Trainer.Options["packageVersions"];
}

const STEP_TIMES_FILE = "step-times.json";

/** Quiet per-step times of every distinct shape in the study, and each run's training time modeled from them. */
interface StepTimes {
  readonly measured: string;
  readonly machine: string;
  readonly backend: string;
  /** 1-minute load average before and after measuring, with the core count. */
  readonly load: { readonly before: number; readonly after: number; readonly cores: number };
  readonly shapes: ReadonlyArray<{ readonly key: string; readonly K: number; readonly batch: number; readonly positions: number; readonly msPerStep: number; readonly samples: ReadonlyArray<number> }>;
  /** Run name → Σ over phases of steps × msPerStep / 1000. */
  readonly runs: Readonly<Record<string, number>>;
}

const RESULT_FILE = "result.json";
const KEPT_FILES = ["config.json", "metrics.jsonl", "summary.json"] as const;

// Reports, step times and load records are written whole (core's AtomicFile: temp, fsync, rename).
const writeAtomic = AtomicFile.write;

/** The saved result of a run, if its results directory has one. */
const savedResult = (dir: string): Option.Option<Omit<StudyReport.RunResult, "records"> & { readonly config: unknown }> => {
  const file = path.join(dir, RESULT_FILE);
  return fs.existsSync(file) ? Option.some(JSON.parse(fs.readFileSync(file, "utf8"))) : Option.none();
};

const sameConfig = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** What is wrong with a saved result directory, if anything (it may have been edited or half copied by hand). */
const resultProblem = (dir: string, name: string): string | undefined => {
  const file = path.join(dir, RESULT_FILE);
  if (!fs.existsSync(file)) return undefined;
  let u: unknown;
  try {
    u = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    return `${file}: not JSON (${(e as Error).message})`;
  }
  const o = (typeof u === "object" && u !== null ? u : {}) as Record<string, unknown>;
  const v = (typeof o.validation === "object" && o.validation !== null ? o.validation : {}) as Record<string, unknown>;
  const blocks = (typeof v.blocks === "object" && v.blocks !== null ? v.blocks : {}) as Record<string, unknown>;
  const missing = [
    o.name === name ? undefined : `name (expected "${name}")`,
    o.status === "done" ? undefined : `status "done"`,
    o.config === undefined ? "config" : undefined,
    ...["tokens", "flops", "wallSeconds", "cpuSeconds"].map((k) => (typeof o[k] === "number" ? undefined : k)),
    typeof v.loss === "number" ? undefined : "validation.loss",
    Array.isArray(blocks.nll) && Array.isArray(blocks.tokens) ? undefined : "validation.blocks",
  ].filter((x) => x !== undefined);
  if (missing.length > 0) return `${file}: expected ${missing.join(", ")}`;
  for (const f of KEPT_FILES) if (!fs.existsSync(path.join(dir, f))) return `${path.join(dir, f)}: missing`;
  return undefined;
};

/** Every problem with the study before anything runs: each run's plan, batch shapes and saved results. */
const check = Effect.fn("StudyRunner.check")(function* (s: Study.Study, source: string) {
  const issues: Array<string> = [];
  for (const r of s.runs) {
    const plan = Setup.phasePlan(r.config, `${source} (${r.name})`);
    if (Either.isLeft(plan)) {
      issues.push(...plan.left.issues.map((m) => `${r.name}: ${m}`));
      continue;
    }
    for (const p of plan.right.phases) {
      const a = Setup.accumulation(r.config, p);
      if (Either.isLeft(a)) issues.push(...a.left.issues.map((m) => `${r.name}: ${m}`));
    }
  }
  if (issues.length > 0) return yield* new ConfigError({ source, issues });
  const bad = s.runs.flatMap((r) => resultProblem(path.join(s.results, r.name), r.name) ?? []);
  if (bad.length > 0) {
    return yield* new StudyError({ reason: "BadResults", detail: `saved results that cannot be used: ${bad.join("; ")}. Move them away to train those runs again.` });
  }
  const stale = s.runs.filter((r) =>
    Option.match(savedResult(path.join(s.results, r.name)), { onNone: () => false, onSome: (saved) => !sameConfig(saved.config, Study.identity(r.config)) }),
  );
  if (stale.length > 0) {
    return yield* new StudyError({
      reason: "StaleResults",
      detail:
        `saved results were made with another config than ${source} now gives: ${stale.map((r) => path.join(s.results, r.name)).join(", ")}. ` +
        "Move them away to train those runs again, or restore the study file.",
    });
  }
});

/** Highest 1-minute load average while `effect` runs, sampled every 10 s. */
const withLoad = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    let max = os.loadavg()[0];
    const timer = yield* Effect.acquireRelease(
      Effect.sync(() => setInterval(() => (max = Math.max(max, os.loadavg()[0])), 10_000)),
      (t) => Effect.sync(() => clearInterval(t)),
    );
    const a = yield* effect;
    max = Math.max(max, os.loadavg()[0]);
    void timer;
    return [a, { max, cores: os.availableParallelism() }] as const;
  }).pipe(Effect.scoped);

/** Token-level loss over the whole validation split with block standard errors, and the cloze suite. */
export const evaluate = Effect.fn("StudyRunner.evaluate")(function* (runDir: string, data: string, e: Study.StudySpec["evaluation"], microBatch: number) {
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const model = yield* Checkpoints.open(runDir);
      const tokenizer = model.tokenizer;
      const stream = yield* Documents.validationStream(data, tokenizer);
      // The evaluator's scoring, every window at the model's context; `nll` is not a result field.
      const { nll: _nll, ...validation } = Perplexity.scoreStream(model.params, model.cfg, stream, { batchSize: microBatch, blockTokens: e.blockTokens });
      const docs = yield* Documents.validationDocuments(data, tokenizer);
      const scorer = Choice.modelScorer(model.params, model.cfg, { batchSize: microBatch });
      const cloze: Record<string, StudyReport.Estimate> = {};
      for (const task of [Cloze.lastWord(docs, { items: e.clozeItems, seed: 0 }), Cloze.nextSentence(docs, { items: e.clozeItems, seed: 0 })]) {
        if (task.items.length === 0) continue;
        const h = Tasks.headline(Tasks.evaluate(task, tokenizer, scorer));
        cloze[task.name] = { value: h.value, stderr: h.stderr };
      }
      return { validation: validation satisfies StudyReport.Validation, cloze };
    }),
  );
});

/** What a result says about the run itself, from the study's expansion. */
const describeRun = (r: Study.StudyRun) => ({
  name: r.name,
  entry: r.entry,
  seed: r.seed,
  baseline: r.baseline,
  compareTo: r.compareTo,
  K: r.config.patch.patchSize,
  lambda: r.config.patch.patchSize === 1 ? 0 : r.config.patch.patchFraction,
  strategy: r.config.patch.strategy,
});

/** The shapes a run's phases step with: model, K, sequences per step and positions. */
const shapesOf = Effect.fn("StudyRunner.shapesOf")(function* (r: Study.StudyRun, vocabSize: number) {
  const plan = yield* Setup.phasePlan(r.config);
  const model = yield* Setup.modelConfig(r.config, vocabSize);
  return plan.phases.map((p) => {
    const shape = { model, K: p.K, batch: p.sequencesPerStep, positions: r.config.batch.seqLen };
    return { key: JSON.stringify(shape), shape, steps: p.steps };
  });
});

/**
 * Time every distinct step shape of the study with `Bench.trainStep` (forward, backward, clipping,
 * AdamW on a whole step), in rounds that alternate the shapes so that drift hits them alike, and
 * keep the median. A run's modeled training time is then Σ steps × time per step: free of
 * whatever else ran beside the study, but only as good as the machine was quiet while measuring.
 */
const measureStepTimes = Effect.fn("StudyRunner.measureStepTimes")(function* (s: Study.Study, backend: string, rounds = 3, steps = 5) {
  const tokenizer = yield* Effect.scoped(TokenizerFiles.load(s.spec.data.out));
  const perRun = yield* Effect.forEach(s.runs, (r) => Effect.map(shapesOf(r, tokenizer.vocabSize), (phases) => [r.name, phases] as const));
  const shapes = new Map(perRun.flatMap(([, phases]) => phases.map((p) => [p.key, p.shape] as const)));
  const before = os.loadavg()[0];
  const samples = new Map<string, Array<number>>();
  for (let round = 0; round < rounds; round++) {
    for (const [key, shape] of shapes) {
      yield* Effect.logInfo(`study: timing K=${shape.K} B=${shape.batch} T=${shape.positions} d=${shape.model.dModel} (round ${round + 1}/${rounds})`);
      const r = yield* Bench.trainStep({ preset: "study", model: shape.model, K: shape.K, batch: shape.batch, seqLen: shape.positions, steps });
      samples.set(key, [...(samples.get(key) ?? []), r.msPerStep]);
    }
  }
  const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ms = new Map([...samples].map(([k, xs]) => [k, median(xs)] as const));
  const times: StepTimes = {
    measured: new Date().toISOString(),
    machine: machine(),
    backend,
    load: { before, after: os.loadavg()[0], cores: os.availableParallelism() },
    shapes: [...shapes].map(([key, sh]) => ({ key, K: sh.K, batch: sh.batch, positions: sh.positions, msPerStep: ms.get(key)!, samples: samples.get(key)! })),
    runs: Object.fromEntries(perRun.map(([name, phases]) => [name, phases.reduce((a, p) => a + (p.steps * ms.get(p.key)!) / 1000, 0)])),
  };
  if (times.load.before > times.load.cores + 0.5 || times.load.after > times.load.cores + 0.5) {
    yield* Effect.logWarning(`study: the machine was not quiet while timing (load ${before.toFixed(1)} → ${times.load.after.toFixed(1)} on ${times.load.cores} cores); the step times are suspect`);
  }
  fs.mkdirSync(s.results, { recursive: true });
  yield* writeAtomic(path.join(s.results, STEP_TIMES_FILE), JSON.stringify(times, null, 1) + "\n");
  return times;
});

const readStepTimes = (s: Study.Study): StepTimes | undefined => {
  const file = path.join(s.results, STEP_TIMES_FILE);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as StepTimes) : undefined;
};

const readSummary = (runDir: string) => JSON.parse(fs.readFileSync(path.join(runDir, "summary.json"), "utf8")) as Record<string, unknown>;

/** Train (or resume, or skip when finished) one run, evaluate it and save its results. */
const trainAndSave = Effect.fn("StudyRunner.trainAndSave")(function* (s: Study.Study, r: Study.StudyRun, o: Options, backend: Backend) {
  const runDir = path.resolve(r.config.runsDir, r.name);
  const plan = yield* Setup.phasePlan(r.config);
  // Any step directory means the run started: it resumes (Run.train recovers a lost `latest`).
  const checkpoints = fs.existsSync(runDir) ? yield* Checkpoint.list(runDir) : [];
  const started = checkpoints.length > 0 || (fs.existsSync(runDir) && (yield* Checkpoint.latestName(runDir)) !== undefined);
  const newest = checkpoints.at(-1)?.step ?? 0;
  const finished = started && newest >= plan.totalSteps && fs.existsSync(path.join(runDir, "summary.json"));
  let load = { max: 0, cores: os.availableParallelism() };
  if (!finished) {
    if (started) yield* Effect.logInfo(`study: ${r.name}: resuming at step ${newest}/${plan.totalSteps}`);
    const [, seen] = yield* withLoad(Run.train(r.config, { resume: started, backend: { name: backend.name, peakFlops: backend.peakFlops }, packageVersions: o.packageVersions }));
    load = seen;
  }
  // Load across invocations: the highest seen by any invocation that trained this run.
  const loadFile = path.join(runDir, "study-load.json");
  const previous = fs.existsSync(loadFile) ? (JSON.parse(fs.readFileSync(loadFile, "utf8")) as { max: number; cores: number }) : undefined;
  if (previous !== undefined) load = { max: Math.max(previous.max, load.max), cores: load.cores };
  yield* writeAtomic(loadFile, JSON.stringify(load) + "\n");

  yield* Effect.logInfo(`study: ${r.name}: evaluating (validation split with standard errors, cloze suite)`);
  const ev = yield* evaluate(runDir, r.config.data, s.spec.evaluation, Setup.evalBatch(r.config, plan));
  const summary = readSummary(runDir);
  const num = (k: string) => (typeof summary[k] === "number" ? (summary[k] as number) : NaN);
  const result: Omit<StudyReport.RunResult, "records"> & { readonly config: unknown } = {
    ...describeRun(r),
    status: "done",
    tokens: num("tokens"),
    flops: num("flops"),
    wallSeconds: num("wallSeconds"),
    cpuSeconds: num("cpuSeconds"),
    load,
    validation: ev.validation,
    cloze: ev.cloze,
    config: Study.identity(r.config),
  };
  // Results land whole: a temp directory renamed into place.
  const out = path.join(s.results, r.name);
  const tmp = `${out}.tmp-${process.pid}`;
  yield* Effect.sync(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    for (const f of KEPT_FILES) fs.copyFileSync(path.join(runDir, f), path.join(tmp, f));
    fs.writeFileSync(path.join(tmp, RESULT_FILE), JSON.stringify(result, null, 1) + "\n");
    fs.rmSync(out, { recursive: true, force: true });
    fs.renameSync(tmp, out);
  });
  yield* Effect.logInfo(
    `study: ${r.name}: validation loss ${ev.validation.loss.toFixed(4)} ± ${ev.validation.standardError.toFixed(4)}; results in ${out}`,
  );
});

/** The results of every run of the study: saved ones, failed ones, none for the rest. */
const collect = Effect.fn("StudyRunner.collect")(function* (s: Study.Study, failures: ReadonlyMap<string, string>) {
  const out: Array<StudyReport.RunResult> = [];
  const stepTimes = readStepTimes(s);
  for (const r of s.runs) {
    const dir = path.join(s.results, r.name);
    const saved = savedResult(dir);
    if (Option.isSome(saved)) {
      const records = yield* MetricRecord.readJsonl(path.join(dir, "metrics.jsonl"));
      const { config: _config, ...rest } = saved.value;
      out.push({ ...rest, records, stepSeconds: stepTimes?.runs[r.name] });
    } else if (failures.has(r.name)) {
      out.push({
        ...describeRun(r),
        status: "failed",
        error: failures.get(r.name),
        tokens: 0,
        flops: 0,
        wallSeconds: 0,
        cpuSeconds: 0,
        load: { max: 0, cores: os.availableParallelism() },
        cloze: {},
        records: [],
      });
    }
  }
  return out;
});

const commit = (): string => {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return dirty === "" ? head : `${head} (with uncommitted changes)`;
  } catch {
    return "unknown (not a git checkout)";
  }
};

const machine = (): string => {
  const cpus = os.cpus();
  const blas = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"].map((k) => `${k}=${process.env[k] ?? "(unset)"}`).join(" ");
  return `${cpus[0]?.model ?? "unknown CPU"}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${blas}`;
};

/** Write report.md, report.json and the three plots into the results directory. */
const writeReport = Effect.fn("StudyRunner.writeReport")(function* (s: Study.Study, results: ReadonlyArray<StudyReport.RunResult>, backend: string, command: string) {
  const findingsFile = path.join(s.results, "findings.md");
  const meta: StudyReport.Meta = {
    name: s.spec.name,
    description: s.spec.description,
    command,
    commit: commit(),
    machine: machine(),
    backend,
    generated: new Date().toISOString(),
  };
  const findings = fs.existsSync(findingsFile) ? fs.readFileSync(findingsFile, "utf8") : undefined;
  fs.mkdirSync(s.results, { recursive: true });
  for (const axis of ["tokens", "flops", "seconds"] as const) {
    if (!results.some((r) => r.status === "done")) break;
    yield* writeAtomic(path.join(s.results, StudyReport.PLOTS[axis]), Chart.svgToPng(Chart.renderLineChart(StudyReport.chart(results, axis))));
  }
  yield* writeAtomic(path.join(s.results, "report.md"), StudyReport.markdown(meta, results, s.spec.criterion, findings));
  yield* writeAtomic(path.join(s.results, "report.json"), JSON.stringify(StudyReport.json(meta, results, s.spec.criterion), null, 1) + "\n");
  return path.join(s.results, "report.md");
});

/** Run an expanded study (from a file, or built in code as the demo does); returns its results and report path. */
export const run = Effect.fn("StudyRunner.run")(function* (s: Study.Study, o: Options) {
  yield* check(s, o.file);
  const failures = new Map<string, string>();
  const needsBackend = (): Effect.Effect<Backend, ConfigError> =>
    o.backend === undefined ? Effect.fail(new ConfigError({ source: o.file, issues: ["training or timing a study needs a backend"] })) : Effect.succeed(o.backend);
  const backendName = o.reportOnly && o.timeSteps !== true ? "not run in this invocation" : (o.backend?.description ?? "unknown");

  if (!o.reportOnly) {
    const d = s.spec.data;
    const backend = yield* needsBackend();
    const tokenizer = yield* Tokenizers.parse(d.tokenizer, "data.tokenizer", o.file);
    const prepared = yield* Prepare.run({ source: Corpus.detect(d.corpus), outDir: d.out, tokenizer, seed: d.seed, validationFraction: d.validationFraction });
    yield* Effect.logInfo(`study: data ${d.out}: ${prepared.splits.train.tokens.toLocaleString("en-US")} train tokens${prepared.skipped ? " (up to date)" : ""}`);
    const todo = Study.trainingOrder(s.runs).filter((r) => Option.isNone(savedResult(path.join(s.results, r.name))));
    yield* Effect.logInfo(`study ${s.spec.name}: ${s.runs.length} runs, ${s.runs.length - todo.length} with saved results, ${todo.length} to train or finish`);
    const started = performance.now();
    let flopsDone = 0;
    // Progress in units of relative cost × budget: proportional to each run's compute.
    const flopsOf = (r: Study.StudyRun) => {
      const p = Either.getOrThrow(Setup.phasePlan(r.config));
      return p.relativeCost * p.totalTokens;
    };
    const remaining = () => todo.filter((r) => Option.isNone(savedResult(path.join(s.results, r.name))) && !failures.has(r.name));
    for (const [i, r] of todo.entries()) {
      const left = remaining();
      const rate = flopsDone / ((performance.now() - started) / 1000);
      const eta = flopsDone > 0 ? ` — about ${Math.round(left.reduce((a, x) => a + flopsOf(x), 0) / rate / 60)} min left for the study` : "";
      yield* Effect.logInfo(`study ${s.spec.name}: run ${i + 1}/${todo.length}: ${r.name}${eta}`);
      const outcome = yield* Effect.either(trainAndSave(s, r, o, backend));
      if (Either.isLeft(outcome)) {
        const e = outcome.left as { message?: string };
        failures.set(r.name, e.message ?? String(outcome.left));
        yield* Effect.logError(`study ${s.spec.name}: run ${r.name} failed: ${e.message ?? String(outcome.left)}; going on with the others`);
      } else {
        flopsDone += flopsOf(r);
        // The report stays current as results land, so a study stopped part-way still has one.
        yield* writeReport(s, yield* collect(s, failures), backendName, o.command);
      }
    }
  }

  if (o.timeSteps === true) {
    const times = yield* measureStepTimes(s, (yield* needsBackend()).description);
    yield* Effect.logInfo(`study: step times of ${times.shapes.length} shapes in ${path.join(s.results, STEP_TIMES_FILE)}`);
  }
  const results = yield* collect(s, failures);
  const report = yield* writeReport(s, results, backendName, o.command);
  yield* Effect.logInfo(`study ${s.spec.name}: report ${report}`);
  if (failures.size > 0) {
    return yield* new StudyError({
      reason: "RunsFailed",
      detail: `${failures.size} run(s) failed: ${[...failures.entries()].map(([n, m]) => `${n} (${m.split("\n")[0]})`).join("; ")}`,
    });
  }
  return { report, results };
});
