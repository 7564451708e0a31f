/**
 * What each trainer command does: compose the libs, provide their services, report.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Console, Effect, Exit, Layer, Option, Stream } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { Checkpoint, RunLock } from "@patchlm/checkpoint";
import { AtomicFile, ConfigError } from "@patchlm/core";
import { Corpus, CorpusError, Prepare, Split } from "@patchlm/data";
import { Documents } from "@patchlm/eval";
import { LossCurve, MetricRecord, MetricsSink, Progress } from "@patchlm/metrics";
import { Registry } from "@patchlm/patching";
import { TokenizerFiles } from "@patchlm/tokenization";
import { Bench, ConfigFile, RunConfig, Setup, Trainer } from "@patchlm/train";
import type * as Cli from "./Cli";
import * as Tokenizers from "./Tokenizers";
import { packageVersions } from "./Versions";

const get = Option.getOrUndefined;

// --- prepare ---------------------------------------------------------------------------------

export interface PrepareOptions {
  readonly corpus: string;
  readonly field: string;
  readonly latin1: boolean;
  readonly out: string;
  readonly tokenizer: string;
  readonly validationFraction: number;
  readonly seed: number;
}

export const sourceOf = (corpus: string, field: string, latin1: boolean): Corpus.Source => {
  if (corpus === "embedded") return Corpus.embedded;
  const isJsonl = corpus.endsWith(".jsonl") || (fs.existsSync(corpus) && fs.statSync(corpus).isDirectory() && hasJsonl(corpus));
  return isJsonl ? Corpus.jsonl(corpus, field) : Corpus.text(corpus, { encoding: latin1 ? "latin1" : "utf8" });
};

const hasJsonl = (dir: string): boolean =>
  fs.readdirSync(dir).some((f) => f.endsWith(".jsonl")) && !fs.readdirSync(dir).some((f) => f.endsWith(".txt"));

/**
 * Refuse, before anything is written, a split that would hold out no document: training evaluates
 * on the validation split and would otherwise fail only at its first evaluation. `Split` holds out
 * at least one document of every stratum with `validationCount(n) > 0`, so the scan stops at the
 * first stratum that gets one (within the first few documents of a real corpus); only a corpus
 * that has none is read to its end.
 */
const ensureValidationSplit = Effect.fn("trainer.ensureValidationSplit")(function* (corpus: string, source: Corpus.Source, fraction: number) {
  if (!(fraction > 0)) {
    return yield* new ConfigError({ source: "flags", issues: [`--val-fraction: ${fraction} holds out no document; training evaluates on the validation split, so give a fraction above 0`] });
  }
  const perStratum = new Map<string, number>();
  let documents = 0;
  const holdsOut = yield* Corpus.documents(source, { recordWords: Corpus.defaultRecordWords }).pipe(
    Stream.map((d) => {
      documents++;
      const stratum = Split.stratumOf(d.id);
      const n = (perStratum.get(stratum) ?? 0) + 1;
      perStratum.set(stratum, n);
      return Split.validationCount(n, fraction) > 0;
    }),
    Stream.takeUntil((found) => found),
    Stream.runLast,
  );
  if (Option.getOrElse(holdsOut, () => false)) return;
  return yield* new CorpusError({
    path: corpus,
    reason: "Empty",
    detail:
      `${documents} document${documents === 1 ? "" : "s"} in ${perStratum.size} folder${perStratum.size === 1 ? "" : "s"}, none with two: ` +
      `the validation split would be empty (each folder holds out a share of its own documents); add documents`,
  });
});

export const prepare = Effect.fn("trainer.prepare")(function* (o: PrepareOptions) {
  const choice = yield* Tokenizers.parse(o.tokenizer);
  const source = sourceOf(o.corpus, o.field, o.latin1);
  const split = { seed: o.seed, validationFraction: o.validationFraction };
  yield* ensureValidationSplit(o.corpus, source, o.validationFraction);
  // The tokenizer is made apart and becomes the output's only once the shards it made are
  // written: a prepare that fails leaves an existing data directory as it was.
  const summary = yield* Effect.scoped(
    Effect.gen(function* () {
      const staged = yield* Tokenizers.stage(o.out, choice, source, split);
      const summary = yield* Prepare.prepare({ source, outDir: o.out, ...split }).pipe(Effect.provide(TokenizerFiles.layer(staged.dir)));
      yield* Tokenizers.install(staged, o.out);
      return summary;
    }),
  );
  const s = summary.splits;
  yield* Effect.logInfo(
    summary.skipped
      ? `prepare: ${o.out} is up to date (${s.train.tokens.toLocaleString("en-US")} train tokens)`
      : `prepare: ${o.out}: train ${s.train.documents} docs / ${s.train.tokens.toLocaleString("en-US")} tokens in ${s.train.shards} shard(s), ` +
          `validation ${s.validation.documents} docs / ${s.validation.tokens.toLocaleString("en-US")} tokens, ${summary.dtype}, ${summary.seconds.toFixed(1)}s`,
  );
  return summary;
});

// --- train / resume --------------------------------------------------------------------------

/** The train command's parsed flags (declared once, in Cli.ts). */
export type TrainFlags = Cli.TrainFlags;

const defined = (o: Record<string, unknown>): Record<string, unknown> | undefined => {
  const entries = Object.entries(o).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? undefined : Object.fromEntries(entries);
};

/** The dedicated flags as a config overlay (only those given). */
export const flagOverrides = (f: TrainFlags): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  const top = defined({ name: get(f.name), runsDir: get(f.runsDir), data: get(f.data), seed: get(f.seed), backend: get(f.backend) });
  Object.assign(out, top ?? {});
  const model = defined({ preset: get(f.preset) });
  const patch = defined({ patchSize: get(f.patchSize), patchFraction: get(f.patchFraction), strategy: get(f.strategy), switchPolicy: get(f.switchPolicy) });
  const batch = defined({ tokens: get(f.tokens), batchTokens: get(f.batchTokens), seqLen: get(f.seqLen), microBatch: get(f.microBatch) });
  const optim = defined({ lr: get(f.lr), warmupSteps: get(f.warmup) });
  if (model) out.model = model;
  if (patch) out.patch = patch;
  if (batch) out.batch = batch;
  if (optim) out.optim = optim;
  return out;
};

export const resolveConfig = Effect.fn("trainer.resolveConfig")(function* (f: TrainFlags, base?: unknown) {
  const sets = yield* ConfigFile.parseOverrides(f.set);
  return yield* ConfigFile.resolve({ base, file: get(f.config), overrides: ConfigFile.merge(flagOverrides(f), sets) });
});

/**
 * A resumed run's own tokenizer, the one the evaluator reads beside its checkpoints, must be the
 * data's (which the trainer checks the checkpoint against): training on past a replaced one would
 * leave checkpoints that every later evaluation decodes with the wrong vocabulary. A run without
 * one gets the data's back.
 */
const checkRunTokenizer = Effect.fn("trainer.checkRunTokenizer")(function* (runDir: string, dataDir: string) {
  if (![TokenizerFiles.TOKENIZER_JSON, TokenizerFiles.TOKENIZER_SPEC].some((f) => fs.existsSync(path.join(runDir, f)))) {
    yield* TokenizerFiles.copy(dataDir, runDir);
    return yield* Effect.logWarning(`${runDir}: no tokenizer beside the run; restored the one of its data ${dataDir}`);
  }
  yield* Effect.scoped(
    Effect.gen(function* () {
      const data = yield* TokenizerFiles.load(dataDir);
      const own = yield* TokenizerFiles.load(runDir);
      yield* Documents.ensureTokenizer(runDir, { tokenizerHash: data.hash, vocabSize: data.vocabSize }, own);
    }),
  );
});

/**
 * `train` never starts a run over on its checkpoints (the new run's would be written beside them
 * and the old ones pruned): a run directory holding any, even one whose `latest` is lost, is
 * refused, and the app says to resume it.
 */
const ensureNoCheckpoints = Effect.fn("trainer.ensureNoCheckpoints")(function* (runDir: string, name: string) {
  const steps = yield* Checkpoint.list(runDir);
  const latest = yield* Checkpoint.latestName(runDir);
  if (steps.length === 0 && latest === undefined) return;
  const held = steps.length === 0 ? `latest names ${latest}` : steps.map((c) => c.name).join(", ") + (latest === undefined ? `, but no ${Checkpoint.LATEST_FILE}` : "");
  return yield* new Trainer.TrainError({
    reason: "RunExists",
    run: name,
    detail: `${runDir} already holds checkpoints (${held}); train would start the run over and discard them`,
  });
});

/** Make a new run's directory (and its parents): true when this call made it, false when it was there. */
const makeRunDirectory = (runDir: string) =>
  Effect.sync(() => {
    fs.mkdirSync(path.dirname(runDir), { recursive: true });
    try {
      fs.mkdirSync(runDir);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    }
  });

/**
 * A new run that failed (or was stopped) before its first step leaves nothing: the directory this
 * invocation made is removed when it holds no checkpoint and no metric record (the tokenizer copy,
 * config.json and empty logs it may hold are all this invocation's). One whose steps ran keeps its
 * metrics, which say what went wrong.
 */
const removeUnstarted = (runDir: string) =>
  Effect.gen(function* () {
    const metrics = path.join(runDir, "metrics.jsonl");
    if ((yield* Checkpoint.list(runDir)).length > 0 || (yield* Checkpoint.latestName(runDir)) !== undefined) return;
    if (fs.existsSync(metrics) && fs.statSync(metrics).size > 0) return;
    fs.rmSync(runDir, { recursive: true, force: true });
    yield* Effect.logInfo(`removed ${runDir}: the run failed before its first step`);
  }).pipe(Effect.catchAll((e) => Effect.logWarning(`could not tidy ${runDir} after the failed start: ${e.message}`)));

/** A run that lost `latest` resumes from its newest step directory that verifies, and says so. */
const recoverLatest = Effect.fn("trainer.recoverLatest")(function* (runDir: string) {
  const recovered = yield* Checkpoint.recoverLatest(runDir);
  if (recovered === undefined) return;
  const passed = recovered.passedOver.length === 0 ? "" : `; passed over ${recovered.passedOver.map((p) => p.reason).join("; ")}`;
  yield* Effect.logWarning(`${runDir}: ${Checkpoint.LATEST_FILE} was missing; resuming from ${recovered.name}, the newest step directory that verifies${passed}`);
});

/**
 * Run (or resume) training with the run's sinks, progress bar and backend; then plot. The run
 * directory is this process's from start to end (RunLock): a second train or resume of it fails
 * naming this one.
 */
export const runTraining = Effect.fn("trainer.runTraining")(function* (
  config: RunConfig.RunConfig,
  opts: {
    readonly resume: boolean;
    readonly maxSteps?: number;
    readonly backend?: RunConfig.RunConfig["backend"];
    /** The run directory, when it is not `<runsDir>/<name>` (a run resumed by its path). */
    readonly runDir?: string;
  },
) {
  const backend = yield* ComputeBackend.make({ backend: opts.backend ?? config.backend });
  const runDir = path.resolve(opts.runDir ?? path.join(config.runsDir, config.name));
  const plan = yield* Setup.phasePlan(config);
  const peakFlops = backend.peakGflops === undefined ? undefined : backend.peakGflops * 1e9;
  const options: Trainer.Options = {
    config,
    resume: opts.resume,
    runDir,
    backend: { name: backend.name, peakFlops },
    packageVersions: packageVersions(),
    maxSteps: opts.maxSteps,
  };
  // A new run is checked whole (data, tokenizer, model, plan, batches) before its directory exists.
  if (!opts.resume) yield* Trainer.setup(options).pipe(Effect.provide(Layer.merge(TokenizerFiles.layer(config.data), Registry.layer)));
  const created = !opts.resume && (yield* makeRunDirectory(runDir));
  yield* RunLock.acquire(runDir);
  // Added after the lock, so it runs before the lock is released.
  if (created) yield* Effect.addFinalizer((exit) => (Exit.isSuccess(exit) ? Effect.void : removeUnstarted(runDir)));
  if (opts.resume) {
    yield* recoverLatest(runDir);
    yield* checkRunTokenizer(runDir, config.data);
  } else {
    yield* ensureNoCheckpoints(runDir, config.name);
    yield* TokenizerFiles.copy(config.data, runDir);
  }
  // Only the step, for the progress bar: the listing reads no tensors (the trainer loads them).
  const startStep = opts.resume ? ((yield* Checkpoint.list(runDir)).find((c) => c.isLatest)?.step ?? 0) : 0;
  const services = Layer.mergeAll(
    TokenizerFiles.layer(config.data),
    MetricsSink.layer({ runDir, logLines: { totalSteps: plan.totalSteps, peakFlopsPerSecond: peakFlops } }),
    Progress.layer({ totalSteps: plan.totalSteps, startStep }),
    Registry.layer,
  );
  const summary = yield* Trainer.run(options).pipe(Effect.provide(services));
  yield* finishRun(runDir, config, summary);
  return summary;
}, Effect.scoped);

/** After a run (or a part of one): the loss figure and a summary file. */
const finishRun = Effect.fn("trainer.finishRun")(function* (runDir: string, config: RunConfig.RunConfig, summary: Trainer.Summary) {
  const records = yield* MetricRecord.readJsonl(path.join(runDir, "metrics.jsonl"));
  if (records.length > 0) {
    yield* LossCurve.write(path.join(runDir, "loss.png"), records, { title: config.name, patchSize: config.patch.patchSize });
  }
  const { losses: _losses, ...rest } = summary;
  yield* AtomicFile.write(path.join(runDir, "summary.json"), JSON.stringify({ ...rest, config }, null, 2) + "\n");
  if (summary.ended === "finished") {
    yield* Effect.logInfo(
      `finished ${summary.totalSteps} steps` +
        (summary.validation ? `: validation loss ${summary.validation.loss.toFixed(4)}, perplexity ${summary.validation.ppl.toFixed(2)}` : "") +
        `; plot ${path.join(runDir, "loss.png")}`,
    );
  }
});

export const train = Effect.fn("trainer.train")(function* (f: TrainFlags) {
  const config = yield* resolveConfig(f);
  return yield* runTraining(config, { resume: false, maxSteps: get(f.maxSteps) });
});

/** The run directory of a run name or path. */
const runDirOf = (run: string, runsDir: string): string =>
  fs.existsSync(path.join(run, RunConfigFile)) ? path.resolve(run) : path.resolve(runsDir, run);
const RunConfigFile = Trainer.CONFIG_FILE;

const readRunConfig = Effect.fn("trainer.readRunConfig")(function* (runDir: string) {
  const file = path.join(runDir, RunConfigFile);
  if (!fs.existsSync(file)) return yield* new ConfigError({ source: file, issues: ["not found: not a run directory (no config.json)"] });
  return yield* ConfigFile.resolve({ file });
});

export interface ResumeOptions {
  readonly run: string;
  readonly runsDir: string;
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  readonly maxSteps: Option.Option<number>;
}

/** Resume the run directory given (by name under `--runs-dir`, or by path), wherever its config says it was made. */
export const resume = Effect.fn("trainer.resume")(function* (o: ResumeOptions) {
  const runDir = runDirOf(o.run, o.runsDir);
  const config = yield* readRunConfig(runDir);
  return yield* runTraining(config, { resume: true, runDir, maxSteps: get(o.maxSteps), backend: get(o.backend) });
});

// --- bench -----------------------------------------------------------------------------------

export interface BenchOptions {
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  readonly preset: string;
  readonly mode: "token" | "patch" | "both";
  readonly patchSize: number;
  readonly batch: number;
  readonly seqLen: number;
  readonly steps: number;
}

export const bench = Effect.fn("trainer.bench")(function* (o: BenchOptions) {
  const backend = yield* ComputeBackend.make({ backend: get(o.backend) ?? "auto" });
  const modes = o.mode === "both" ? (["token", "patch"] as const) : ([o.mode] as const);
  const results = [];
  for (const mode of modes) {
    results.push(
      yield* Bench.trainStep({
        preset: o.preset,
        K: mode === "patch" ? o.patchSize : 1,
        batch: o.batch,
        seqLen: o.seqLen,
        steps: o.steps,
        peakFlops: backend.peakGflops === undefined ? undefined : backend.peakGflops * 1e9,
      }),
    );
  }
  yield* Console.log(JSON.stringify({ backend: backend.name, threads: backend.threads, detail: backend.detail, env: Bench.environment(), results }, null, 2));
});

// --- inspect ---------------------------------------------------------------------------------

export const inspect = Effect.fn("trainer.inspect")(function* (o: { readonly run: string; readonly runsDir: string }) {
  const runDir = runDirOf(o.run, o.runsDir);
  const config = yield* readRunConfig(runDir);
  const plan = yield* Setup.phasePlan(config);
  const checkpoints = yield* Checkpoint.list(runDir);
  const metricsFile = path.join(runDir, "metrics.jsonl");
  const records = fs.existsSync(metricsFile) ? yield* MetricRecord.readJsonl(metricsFile) : [];
  const lastTrain = [...records].reverse().find((r) => r.values[MetricRecord.Keys.loss] !== undefined);
  const lastEval = [...records].reverse().find((r) => r.values[MetricRecord.Keys.valLoss] !== undefined);
  const latest = checkpoints.find((c) => c.isLatest);
  yield* Console.log(
    JSON.stringify(
      {
        runDir,
        config,
        plan: {
          totalSteps: plan.totalSteps,
          patchSteps: plan.patch.steps,
          tokenSteps: plan.token.steps,
          switchStep: plan.switchStep,
          tokensPerStep: plan.tokensPerStep,
          relativeCost: plan.relativeCost,
        },
        progress: {
          step: latest?.step ?? 0,
          done: (latest?.step ?? 0) >= plan.totalSteps,
          lastTrain: lastTrain && { step: lastTrain.step, phase: lastTrain.phase, loss: lastTrain.values[MetricRecord.Keys.loss] },
          lastEval: lastEval && { step: lastEval.step, valLoss: lastEval.values[MetricRecord.Keys.valLoss], valPpl: lastEval.values[MetricRecord.Keys.valPerplexity] },
          elapsedSeconds: records.at(-1)?.elapsedSeconds,
        },
        checkpoints: checkpoints.map((c) => ({ name: c.name, step: c.step, latest: c.isLatest })),
      },
      null,
      2,
    ),
  );
});
