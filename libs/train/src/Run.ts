/**
 * A training run's life around the loop (`Trainer.run`): where its directory is, its config, a
 * new run checked whole before its directory exists, the directory held by this process alone
 * (`RunLock`), a failed start tidied away, a resumed run's tokenizer checked, and afterwards the
 * loss figure and `summary.json`; and what `inspect` shows of a run. Both the trainer's
 * `train`/`resume` and a study's runs go through `train` here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Effect, Exit, Layer } from "effect";
import { Checkpoint, RunLock } from "@patchlm/checkpoint";
import { AtomicFile, ConfigError } from "@patchlm/core";
import { Documents } from "@patchlm/eval";
import { LossCurve, MetricRecord, MetricsSink, Progress } from "@patchlm/metrics";
import { type PatchStrategy, Registry, StrategyModule } from "@patchlm/patching";
import { type Tokenizer, TokenizerFiles } from "@patchlm/tokenization";
import * as ConfigFile from "./ConfigFile";
import type { RunConfig } from "./RunConfig";
import * as Setup from "./Setup";
import * as Trainer from "./Trainer";

/** The run directory of a run name (under `runsDir`) or of a run directory's path. */
export const dirOf = (run: string, runsDir: string): string =>
  fs.existsSync(path.join(run, Trainer.CONFIG_FILE)) ? path.resolve(run) : path.resolve(runsDir, run);

/** The config a run directory was made with (its `config.json`). */
export const readConfig = Effect.fn("Run.readConfig")(function* (runDir: string) {
  const file = path.join(runDir, Trainer.CONFIG_FILE);
  if (!fs.existsSync(file)) return yield* new ConfigError({ source: file, issues: ["not found: not a run directory (no config.json)"] });
  return yield* ConfigFile.resolve({ file });
});

/**
 * A resumed run's own tokenizer, the one the evaluator reads beside its checkpoints, must be the
 * data's (which the trainer checks the checkpoint against): training on past a replaced one would
 * leave checkpoints that every later evaluation decodes with the wrong vocabulary. A run without
 * one gets the data's back.
 */
const checkRunTokenizer = Effect.fn("Run.checkRunTokenizer")(function* (runDir: string, dataDir: string) {
  if (!TokenizerFiles.has(runDir)) {
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
 * refused, and the error says so.
 */
const ensureNoCheckpoints = Effect.fn("Run.ensureNoCheckpoints")(function* (runDir: string, name: string) {
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
const recoverLatest = Effect.fn("Run.recoverLatest")(function* (runDir: string) {
  const recovered = yield* Checkpoint.recoverLatest(runDir);
  if (recovered === undefined) return;
  const passed = recovered.passedOver.length === 0 ? "" : `; passed over ${recovered.passedOver.map((p) => p.reason).join("; ")}`;
  yield* Effect.logWarning(`${runDir}: ${Checkpoint.LATEST_FILE} was missing; resuming from ${recovered.name}, the newest step directory that verifies${passed}`);
});

/**
 * The strategies a run trains or is read with: the built-ins, its strategy module's and those
 * given in code. A run that recorded a module loads that file and refuses it changed; a new run
 * records it.
 */
export const strategies = Effect.fn("Run.strategies")(function* (
  config: RunConfig,
  recorded: StrategyModule.Record | undefined,
  inCode: ReadonlyArray<PatchStrategy.PatchStrategy> = [],
) {
  const modulePath = config.patch.strategyModule;
  if (modulePath === undefined && recorded === undefined) return { layer: StrategyModule.registryLayer([], inCode), module: undefined };
  const loaded = yield* StrategyModule.load(recorded?.path ?? modulePath!, recorded);
  return { layer: StrategyModule.registryLayer([loaded], inCode), module: loaded };
});

/**
 * Services `Run.train` builds by default, each replaceable. A replacement is a finished layer
 * (no error, no requirement): build anything fallible first, then pass `Layer.succeed(Tag, value)`.
 */
export interface Services {
  /** Default: the tokenizer stored with the data (`TokenizerFiles.layer(config.data)`). */
  readonly tokenizer?: Layer.Layer<Tokenizer.Tokenizer>;
  /** Default: metrics.jsonl, TensorBoard events and log lines in the run directory. */
  readonly metrics?: Layer.Layer<MetricsSink.MetricsSink>;
  /** Default: a progress bar on a terminal, nothing otherwise. */
  readonly progress?: Layer.Layer<Progress.Progress>;
  /** Default: the built-ins, the run's strategy module's and `TrainOptions.strategies`. */
  readonly strategies?: Layer.Layer<Registry.PatchStrategies>;
}

export interface TrainOptions {
  /** Continue from the run directory's latest checkpoint (else start a new run). */
  readonly resume: boolean;
  /** Which backend runs (the caller made it current), and its peak FLOP/s if known (for MFU). */
  readonly backend: Trainer.Options["backend"];
  /** The run directory, when it is not `<runsDir>/<name>` (a run resumed by its path). */
  readonly runDir?: string;
  readonly maxSteps?: number;
  /** Recorded in checkpoint manifests. */
  readonly packageVersions?: Trainer.Options["packageVersions"];
  /**
   * Strategies defined in the calling program, added to the built-ins (the library's counterpart
   * of a strategy module). The run does not record them: resume it from a program that passes
   * them again (the CLI cannot).
   */
  readonly strategies?: ReadonlyArray<PatchStrategy.PatchStrategy>;
  /** Replacements for the services `train` builds by default. */
  readonly services?: Services;
}

/**
 * Train (or resume) a run with its metrics sink, progress bar and the data's tokenizer; then plot
 * and summarize. The run directory is this process's from start to end (`RunLock`): a second
 * train or resume of it fails naming this one.
 */
export const train = Effect.fn("Run.train")(function* (given: RunConfig, opts: TrainOptions) {
  // A strategy module is recorded by its absolute path: a resume from elsewhere finds it.
  const config: RunConfig =
    given.patch.strategyModule === undefined ? given : { ...given, patch: { ...given.patch, strategyModule: path.resolve(given.patch.strategyModule) } };
  const runDir = path.resolve(opts.runDir ?? path.join(config.runsDir, config.name));
  const built = yield* strategies(config, opts.resume ? yield* StrategyModule.readRecord(runDir) : undefined, opts.strategies);
  const module = built.module;
  const registry = opts.services?.strategies ?? built.layer;
  const tokenizer = opts.services?.tokenizer ?? TokenizerFiles.layer(config.data);
  const plan = yield* Setup.phasePlan(config);
  const options: Trainer.Options = {
    config,
    resume: opts.resume,
    runDir,
    backend: opts.backend,
    packageVersions: opts.packageVersions,
    maxSteps: opts.maxSteps,
  };
  // A new run is checked whole (data, tokenizer, model, plan, batches) before its directory exists.
  if (!opts.resume) yield* Trainer.setup(options).pipe(Effect.provide(Layer.merge(tokenizer, registry)));
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
    if (module !== undefined) {
      yield* AtomicFile.write(path.join(runDir, StrategyModule.RECORD_FILE), JSON.stringify(StrategyModule.toRecord(module), null, 2) + "\n");
    }
  }
  // Only the step, for the progress bar: the listing reads no tensors (the trainer loads them).
  const startStep = opts.resume ? ((yield* Checkpoint.list(runDir)).find((c) => c.isLatest)?.step ?? 0) : 0;
  const services = Layer.mergeAll(
    tokenizer,
    opts.services?.metrics ?? MetricsSink.layer({ runDir, logLines: { totalSteps: plan.totalSteps, peakFlopsPerSecond: opts.backend.peakFlops } }),
    opts.services?.progress ?? Progress.layer({ totalSteps: plan.totalSteps, startStep }),
    registry,
  );
  const summary = yield* Trainer.run(options).pipe(Effect.provide(services));
  yield* finish(runDir, config, summary);
  return summary;
}, Effect.scoped);

/** After a run (or a part of one): the loss figure, `summary.json` and a line saying how it ended. */
export const finish = Effect.fn("Run.finish")(function* (runDir: string, config: RunConfig, summary: Trainer.Summary) {
  // A replaced metrics sink may write no metrics.jsonl: then there is nothing to plot.
  const metricsFile = path.join(runDir, "metrics.jsonl");
  const records = fs.existsSync(metricsFile) ? yield* MetricRecord.readJsonl(metricsFile) : [];
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

/** What a run directory holds: its config, phase plan, progress and checkpoints (JSON-ready). */
export const inspect = Effect.fn("Run.inspect")(function* (runDir: string) {
  const config = yield* readConfig(runDir);
  const plan = yield* Setup.phasePlan(config);
  const checkpoints = yield* Checkpoint.list(runDir);
  const metricsFile = path.join(runDir, "metrics.jsonl");
  const records = fs.existsSync(metricsFile) ? yield* MetricRecord.readJsonl(metricsFile) : [];
  const lastTrain = [...records].reverse().find((r) => r.values[MetricRecord.Keys.loss] !== undefined);
  const lastEval = [...records].reverse().find((r) => r.values[MetricRecord.Keys.valLoss] !== undefined);
  const latest = checkpoints.find((c) => c.isLatest);
  return {
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
    strategyModule: yield* Effect.map(StrategyModule.readRecord(runDir), (m) => (m === undefined ? null : { ...m, now: StrategyModule.status(m) })),
    checkpoints: checkpoints.map((c) => ({ name: c.name, step: c.step, latest: c.isLatest })),
  };
});
