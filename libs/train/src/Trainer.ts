/**
 * The two-phase training run (docs/method.md §3): batches Stream -> patch transform (the phase
 * decides K) -> train step -> metrics, with periodic token-level validation, atomic checkpoints
 * and exact resume.
 *
 * It reads top to bottom like nanoGPT's train.py: `setup` derives the run's fixed facts, `open`
 * starts fresh or restores the latest checkpoint, `runPhase` folds one phase's batch Stream into
 * steps, `logInterval`, `evaluate` and `checkpoint` run at their intervals, and `runPhases` walks
 * the plan, switching to token level between the phases. Where the run stands travels as a value
 * (`Position`) from step to step and phase to phase.
 *
 * Resume contract: a run resumed from the checkpoint at step s performs exactly the steps an
 * uninterrupted run would have performed after s — same batches (the data cursor is a pure
 * function of the phase step), same learning rates (the plan is a pure function of the global
 * step), same weights and AdamW moments (restored bit for bit) — so its loss curve is identical.
 */
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { FileSystem } from "@effect/platform";
import { Chunk, Effect, Either, Ref, Schema, Stream } from "effect";
import { AtomicFile, type Backend, fileErrorFrom } from "@patchlm/core";
import { Checkpoint } from "@patchlm/checkpoint";
import { Batches, Shards } from "@patchlm/data";
import { Score } from "@patchlm/eval";
import { ParameterTable } from "@patchlm/model";
import { type PatchStrategy, Registry } from "@patchlm/patching";
import { MetricRecord, MetricsSink, Progress, Throughput } from "@patchlm/metrics";
import { Compute, PhasePlan } from "@patchlm/schedulers";
import { Tokenizer } from "@patchlm/tokenization";
import type { RunConfig } from "./RunConfig";
import * as Setup from "./Setup";
import * as State from "./State";
import { makeTrainStep, type TrainStep } from "./Step";

/** A failure of the run itself (as opposed to bad config, data or checkpoints, which have their own errors). */
export class TrainError extends Schema.TaggedError<TrainError>()("TrainError", {
  reason: Schema.Literal("RunExists", "NothingToResume", "NonFiniteLoss", "BadCheckpoint", "Finished", "BackendMismatch"),
  /** The run's name, so that an app can say how to continue it. */
  run: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.reason}: ${this.detail}`;
  }
}

export interface Options {
  readonly config: RunConfig;
  /** Continue from the run directory's `latest` checkpoint. */
  readonly resume: boolean;
  /** The run directory, when it is not `<runsDir>/<name>` (`resume <dir>` trains the directory it was given). */
  readonly runDir?: string;
  /**
   * Which backend runs, its peak FLOP/s if known (for MFU), and the precision of its matmuls
   * (absent: fp32), which must be the config's.
   */
  readonly backend: { readonly name: string; readonly peakFlops?: number; readonly precision?: Backend.Precision };
  /** Polled between steps: true asks the run to checkpoint and stop (SIGINT/SIGTERM). */
  readonly stopRequested?: () => boolean;
  /** Recorded in checkpoint manifests. */
  readonly packageVersions?: { readonly [name: string]: string };
  /** Stop after this many steps in this invocation (tests and benchmarks); the run stays resumable. */
  readonly maxSteps?: number;
}

/** A token-level validation result. */
export interface Validation {
  readonly loss: number;
  readonly ppl: number;
}

/** The training loss of one step (patch loss in the patch phase). */
export interface StepLoss {
  readonly step: number;
  readonly phase: PhasePlan.Phase;
  readonly loss: number;
}

export interface Summary {
  /** The run's name: its directory under `runsDir`. */
  readonly name: string;
  readonly runDir: string;
  readonly step: number;
  readonly totalSteps: number;
  readonly tokens: number;
  readonly flops: number;
  readonly wallSeconds: number;
  /**
   * CPU seconds of this process (all its threads) spent on the run, over every invocation: a
   * cost measure that holds up better than wall time when other work shares the machine.
   */
  readonly cpuSeconds: number;
  /** Why this invocation ended; the run can be resumed unless "finished". */
  readonly ended: "finished" | Stop;
  /** The last token-level validation result. */
  readonly validation: Validation | undefined;
  /** Training loss of every step this invocation ran. */
  readonly losses: ReadonlyArray<StepLoss>;
}

/** Why an invocation ends before the plan does. */
export type Stop = "stopped" | "maxSteps";

/** Where the data stream and the clock stand; stored in each checkpoint manifest. */
const SavedProgress = Schema.Struct({
  phase: Schema.Literal("patch", "token"),
  cursor: Batches.Cursor,
  wallSeconds: Schema.Number,
  /** Absent in checkpoints written before CPU time was recorded. */
  cpuSeconds: Schema.optional(Schema.Number),
});

export const CONFIG_FILE = "config.json";

// --- setup: the run's fixed facts ------------------------------------------------------------

/**
 * What stays fixed for the whole run, derived once from the config, the data and the tokenizer.
 * Reads only, so an app can run it first to check a run before it creates anything.
 */
export const setup = Effect.fn("Trainer.setup")(function* (options: Options) {
  const c = options.config;
  const precision = options.backend.precision ?? "fp32";
  if (precision !== c.precision) {
    return yield* new TrainError({
      reason: "BackendMismatch",
      run: c.name,
      detail: `the config asks for precision ${c.precision} but the ${options.backend.name} backend runs ${precision} matmuls ` +
        `(make the backend with ComputeBackend.make({ precision: config.precision }))`,
    });
  }
  const tokenizer = yield* Tokenizer.Tokenizer;
  const data = yield* Shards.readManifest(c.data);
  const cfg = yield* Setup.modelConfig(c, tokenizer.vocabSize);
  const plan = yield* Setup.phasePlan(c);
  const ranges = yield* Setup.dataRanges(plan, data.splits.train.tokens, c.batch.uniqueTokens);
  const strategy: PatchStrategy.PatchStrategy = yield* Registry.lookup(c.patch.strategy);
  const accumulation = { patch: 1, token: 1 };
  for (const p of plan.phases) accumulation[p.phase] = yield* Setup.accumulation(c, p);
  return {
    options,
    c,
    runDir: path.resolve(options.runDir ?? path.join(c.runsDir, c.name)),
    cfg,
    plan,
    trainTokens: data.splits.train.tokens,
    ranges,
    strategy,
    /** Micro-batches per optimizer step in each phase. */
    accumulation,
    flopsPerPosition: {
      patch: ParameterTable.flopsPerPosition(cfg, plan.patch.positions),
      token: ParameterTable.flopsPerPosition(cfg, plan.token.positions),
    },
    optim: { beta1: c.optim.beta1, beta2: c.optim.beta2, eps: c.optim.eps, weightDecay: c.optim.weightDecay },
    /** The config as checkpoints record and compare it: machine-local paths and the backend left out. */
    trainConfig: { ...c, backend: undefined, runsDir: undefined, data: undefined },
    tokenizerHash: tokenizer.hash,
  };
});
type Setting = Effect.Effect.Success<ReturnType<typeof setup>>;

// --- open: fresh, or restored from the latest checkpoint -------------------------------------

/** Where the run stands after its last completed step: what a checkpoint records. */
interface Position {
  /** Global optimizer steps completed. */
  readonly step: number;
  /** The phase of the last step (before any: the phase the run starts in). */
  readonly phase: PhasePlan.Phase;
  readonly tokens: number;
  /** The data cursor after the last step; undefined before a fresh run's first (nothing to save). */
  readonly cursor: Batches.Cursor | undefined;
}

/** Wall and CPU seconds spent on the run over every invocation (the bases come from the checkpoint). */
interface Clock {
  readonly wall: () => number;
  readonly cpu: () => number;
}

const startClock = (wallBase: number, cpuBase: number): Clock => {
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  return {
    wall: () => wallBase + (performance.now() - started) / 1000,
    cpu: () => {
      const used = process.cpuUsage(cpuStart);
      return cpuBase + (used.user + used.system) / 1e6;
    },
  };
};

/** The run once open: its setting, the device state it owns, and its clock. */
interface Run extends Setting {
  readonly state: State.State;
  readonly clock: Clock;
  /** Where this invocation started (`maxSteps` counts from here). */
  readonly start: Position;
  /**
   * The last completed step, published with each update (see `step`) for the one reader that
   * cannot be handed it: the interrupt handler's checkpoint.
   */
  readonly completed: Ref.Ref<Position>;
}

const open = Effect.fn("Trainer.open")(function* (s: Setting) {
  const fail = (reason: TrainError["reason"], detail: string) => new TrainError({ reason, run: s.c.name, detail });
  const latest = yield* Checkpoint.latestName(s.runDir);
  if (!s.options.resume && latest !== undefined) return yield* fail("RunExists", `${s.runDir} already holds checkpoints (latest ${latest})`);
  if (s.options.resume && latest === undefined) return yield* fail("NothingToResume", `${s.runDir} has no checkpoint to resume from`);
  const loaded = s.options.resume ? yield* Checkpoint.load(s.runDir) : undefined;
  const step = loaded?.manifest.step ?? 0;
  if (step >= s.plan.totalSteps) return yield* fail("Finished", `${s.runDir} already completed all ${s.plan.totalSteps} steps`);
  const start = PhasePlan.phaseAt(s.plan, step);
  const state = yield* Effect.acquireRelease(
    Effect.sync(() =>
      State.make({ cfg: s.cfg, seed: s.c.seed, optim: s.optim, strategy: start.phase === "patch" ? s.strategy : undefined, K: start.K }),
    ),
    (st) => Effect.sync(() => State.dispose(st)),
  );
  const saved = loaded === undefined ? yield* create(s) : yield* restore(s, state, loaded, start.phase);
  const position: Position = { step, phase: start.phase, tokens: loaded?.manifest.tokensSeen ?? 0, cursor: saved.cursor };
  const run: Run = { ...s, state, clock: startClock(saved.wallSeconds, saved.cpuSeconds), start: position, completed: yield* Ref.make(position) };
  return run;
});

/** A fresh run: its directory and config file. */
const create = Effect.fn("Trainer.create")(function* (s: Setting) {
  const fs = yield* FileSystem.FileSystem;
  yield* fs.makeDirectory(s.runDir, { recursive: true }).pipe(Effect.mapError(fileErrorFrom(s.runDir, "write")));
  yield* AtomicFile.write(path.join(s.runDir, CONFIG_FILE), JSON.stringify(s.c, null, 2) + "\n");
  yield* Effect.logInfo(
    `run ${s.runDir}: ${s.plan.totalSteps} steps (${s.plan.patch.steps} patch K=${s.plan.patch.K}, ${s.plan.token.steps} token), ` +
      `${ParameterTable.count(s.cfg).toLocaleString("en-US")} parameters, relative cost ${s.plan.relativeCost.toFixed(3)}`,
  );
  return { cursor: undefined, wallSeconds: 0, cpuSeconds: 0 };
});

/** Weights, AdamW moments, data cursor and clock from a checkpoint that matches the run. */
const restore = Effect.fn("Trainer.restore")(function* (s: Setting, state: State.State, loaded: Checkpoint.Loaded, phase: PhasePlan.Phase) {
  yield* Checkpoint.ensureCompatible(loaded, { modelConfig: s.cfg, trainConfig: s.trainConfig, tokenizerHash: s.tokenizerHash });
  const bad = (detail: string) => new TrainError({ reason: "BadCheckpoint", run: s.c.name, detail });
  const saved = yield* Schema.decodeUnknown(SavedProgress)(loaded.manifest.dataCursor).pipe(
    Effect.mapError((e) => bad(`${loaded.dir}: dataCursor: ${e.message}`)),
  );
  // A checkpoint written at the end of the patch phase holds the patch-phase state: the
  // strategy's parameters are dropped and the optimizer is reset (nothing to restore) or
  // continued without them, exactly as the uninterrupted run's switch does.
  const atSwitch = phase === "token" && saved.phase === "patch";
  yield* Either.mapLeft(State.restoreWeights(state, loaded.tensors, loaded.dir), bad);
  if (loaded.optimizer !== undefined && !(atSwitch && s.c.patch.switchPolicy === "reset")) {
    yield* Either.mapLeft(State.restoreOptimizer(state, loaded.optimizer, loaded.dir), bad);
  }
  yield* Effect.logInfo(`resumed ${s.runDir} at step ${loaded.manifest.step}/${s.plan.totalSteps} (${phase} phase)`);
  return { cursor: saved.cursor, wallSeconds: saved.wallSeconds, cpuSeconds: saved.cpuSeconds ?? 0 };
});

// --- one phase: a fold over its batch Stream -------------------------------------------------

/** What a phase's loop carries from one step to the next. */
interface Loop {
  readonly at: Position;
  /** The steps since the last logged line, merged with `MetricRecord.AccumulatedMonoid`. */
  readonly interval: MetricRecord.Accumulated;
  /** When the last step finished (performance.now()): a step's wall time runs from there. */
  readonly mark: number;
  readonly badInARow: number;
  readonly validation: Validation | undefined;
  readonly losses: Chunk.Chunk<StepLoss>;
  /** Set when the next step must not run. */
  readonly stop: Stop | undefined;
}

/** Polled once before each step: a stop request, or this invocation's `maxSteps` used up. */
const stopBefore = (r: Run, at: Position): Stop | undefined =>
  r.options.stopRequested?.() === true
    ? "stopped"
    : r.options.maxSteps !== undefined && at.step - r.start.step >= r.options.maxSteps
      ? "maxSteps"
      : undefined;

/**
 * One phase from `start` to its end (or a stop): each group of `accumulation` micro-batches is
 * one optimizer step, followed by what is due at that step.
 */
const runPhase = (r: Run, phase: PhasePlan.PhaseSpec, start: Position) =>
  Effect.gen(function* () {
    const end = phase.startStep + phase.steps;
    const train = trainStepFor(r, phase);
    const first: Loop = {
      at: start,
      interval: MetricRecord.AccumulatedMonoid.empty,
      mark: performance.now(),
      badInARow: 0,
      validation: undefined,
      losses: Chunk.empty(),
      stop: stopBefore(r, start),
    };
    const last = yield* trainBatches(r, phase, start).pipe(
      Stream.grouped(r.accumulation[phase.phase]),
      Stream.take(end - start.step),
      Stream.runFoldWhileEffect(first, (l) => l.stop === undefined, (l, group) => stepAndReport(r, phase, train, end, l, group)),
    );
    // The plan never reads past the data's end: a stream that ends first is a bug, not a data error.
    if (last.stop === undefined && last.at.step < end) return yield* Effect.dieMessage("batch stream ended early");
    return last;
  });

/** The phase's train batches from the step it stands at (the cursor is a pure function of the phase step). */
const trainBatches = (r: Run, phase: PhasePlan.PhaseSpec, at: Position) =>
  Stream.unwrap(
    Effect.gen(function* () {
      const micro = Setup.microBatch(r.c, phase);
      const range = r.ranges[phase.phase];
      const grid = yield* Batches.windowGrid(r.c.data, "train", r.trainTokens, phase.windowLength, range);
      const stepsDone = at.step - phase.startStep;
      return Batches.stream({
        dir: r.c.data,
        split: "train",
        windowLength: phase.windowLength,
        batchSize: micro,
        seed: r.c.seed,
        range,
        cursor: Batches.cursorAfter(grid, micro, stepsDone * r.accumulation[phase.phase]),
      });
    }),
  );

const trainStepFor = (r: Run, phase: PhasePlan.PhaseSpec): TrainStep =>
  makeTrainStep({
    cfg: r.cfg,
    K: phase.K,
    strategy: phase.K === 1 ? undefined : r.strategy,
    params: r.state.params,
    strategyParams: phase.K === 1 ? {} : r.state.strategyParams,
    optimizer: r.state.optimizer,
    maxGradNorm: r.c.optim.gradClip > 0 ? r.c.optim.gradClip : Infinity,
    skipNonFinite: true,
  });

/** One step, then what is due after it: the logged line, validation, a checkpoint (each also at the phase end). */
const stepAndReport = (r: Run, phase: PhasePlan.PhaseSpec, train: TrainStep, end: number, l: Loop, group: Chunk.Chunk<Batches.Batch>) =>
  Effect.gen(function* () {
    const done = yield* step(r, phase, train, l.at, group);
    const at = done.at;
    const badInARow = done.skipped ? l.badInARow + 1 : 0;
    if (done.skipped) yield* skipped(r, done, badInARow);
    const interval = MetricRecord.AccumulatedMonoid.concat(l.interval, MetricRecord.accumulate(stepRecord(r, done, l.mark)));
    const phaseDone = at.step === end;
    const due = (every: number) => (every > 0 && at.step % every === 0) || phaseDone;
    if (due(r.c.logEvery)) yield* logInterval(r, interval);
    const validation = due(r.c.evalEvery) ? yield* evaluate(r, at) : l.validation;
    if (due(r.c.checkpointEvery)) yield* checkpoint(r, at);
    return {
      at,
      interval: due(r.c.logEvery) ? MetricRecord.AccumulatedMonoid.empty : interval,
      mark: done.finished,
      badInARow,
      validation,
      losses: Chunk.append(l.losses, { step: at.step, phase: phase.phase, loss: done.loss }),
      stop: phaseDone ? undefined : stopBefore(r, at),
    } satisfies Loop;
  });

/**
 * One optimizer step at the plan's learning rate. The update and the published position happen
 * together, uninterruptibly, so that an interrupt checkpoint never pairs new weights with an old
 * step.
 */
const step = (r: Run, phase: PhasePlan.PhaseSpec, train: TrainStep, at: Position, group: Chunk.Chunk<Batches.Batch>) =>
  Effect.uninterruptible(
    Effect.gen(function* () {
      const batches = Chunk.toReadonlyArray(group);
      const lr = PhasePlan.phaseAt(r.plan, at.step).lr;
      const ids = batches.map((b) => tf.tensor2d(b.tokens, [b.rows, b.windowLength], "int32"));
      const result = train(ids, lr);
      tf.dispose(ids);
      // One host read per step for both scalars (the step's non-finite check already synced).
      const both = tf.tidy(() => tf.stack([result.loss, result.gradNorm]));
      const [loss, gradNorm] = both.dataSync();
      tf.dispose([both, result.loss, result.gradNorm]);
      const next: Position = {
        step: at.step + 1,
        phase: phase.phase,
        tokens: at.tokens + r.plan.tokensPerStep,
        cursor: batches[batches.length - 1].cursor,
      };
      yield* Ref.set(r.completed, next);
      return { at: next, lr, loss, gradNorm, skipped: result.skipped, finished: performance.now() };
    }),
  );
type Stepped = Effect.Effect.Success<ReturnType<typeof step>>;

/** A non-finite loss or gradient norm skipped the update; `maxBadSteps` of them in a row end the run. */
const skipped = (r: Run, done: Stepped, badInARow: number) =>
  Effect.gen(function* () {
    const at = done.at.step;
    yield* Effect.logWarning(`step ${at} | non-finite loss ${done.loss} or grad norm ${done.gradNorm}: update skipped (${badInARow} in a row)`);
    if (badInARow < r.c.maxBadSteps) return;
    return yield* new TrainError({
      reason: "NonFiniteLoss",
      run: r.c.name,
      detail: `${badInARow} consecutive non-finite losses at step ${at}; stopping (the last checkpoint holds finite weights). Lower optim.lr or check the data.`,
    });
  });

// --- interval metrics: a Monoid fold over step records ---------------------------------------

const Keys = MetricRecord.Keys;

const flopsAt = (r: Setting, step: number): number => Compute.flopsBefore(r.plan, step, r.flopsPerPosition);

/**
 * One step as a metric record: its tokens, FLOPs and wall seconds (since the previous step
 * finished), and its loss and gradient norm unless the update was skipped, so that a skipped
 * step counts towards throughput but not towards the interval's means.
 */
const stepRecord = (r: Run, done: Stepped, mark: number): MetricRecord.MetricRecord => ({
  step: done.at.step,
  phase: done.at.phase,
  tokens: r.plan.tokensPerStep,
  flops: Compute.flopsPerStep(r.plan, done.at.phase, r.flopsPerPosition),
  wallSeconds: (done.finished - mark) / 1000,
  totalTokens: done.at.tokens,
  totalFlops: flopsAt(r, done.at.step),
  elapsedSeconds: r.clock.wall(),
  values: done.skipped ? { [Keys.lr]: done.lr } : { [Keys.loss]: done.loss, [Keys.lr]: done.lr, [Keys.gradNorm]: done.gradNorm },
});

/** The logged line of an interval: the mean loss and gradient norm, the last LR, and the rates. */
const logInterval = (r: Run, interval: MetricRecord.Accumulated) =>
  Effect.gen(function* () {
    const merged = MetricRecord.summarize(interval);
    if (merged === undefined) return;
    const rates = Throughput.ratesOf(merged, r.options.backend.peakFlops);
    const loss = merged.values[Keys.loss] ?? NaN;
    const values: { [k: string]: number } = {
      [Keys.loss]: loss,
      [Keys.lr]: merged.values[Keys.lr],
      [Keys.gradNorm]: merged.values[Keys.gradNorm] ?? NaN,
      [Keys.tokensPerSecond]: rates.tokensPerSecond,
      [Keys.flopsPerSecond]: rates.flopsPerSecond,
    };
    if (rates.mfu !== undefined) values[Keys.mfu] = rates.mfu;
    const sink = yield* MetricsSink.MetricsSink;
    const progress = yield* Progress.Progress;
    yield* sink.write({ ...merged, values });
    yield* progress.update({ phase: merged.phase, step: merged.step, loss, tokensPerSecond: rates.tokensPerSecond });
  });

// --- validation and checkpoints --------------------------------------------------------------

/** Token-level validation: mean NLL over the first `evalBatches` windows of T tokens (fixed, sequential), logged. */
const evaluate = (r: Run, at: Position) =>
  Effect.gen(function* () {
    const batches = Batches.stream({
      dir: r.c.data,
      split: "validation",
      windowLength: Math.min(r.c.batch.seqLen, r.cfg.contextLength),
      batchSize: Setup.evalBatch(r.c, r.plan),
      order: "sequential",
      epochs: 1,
      prefetch: 0,
    }).pipe(Stream.take(r.c.evalBatches));
    const nll = yield* Stream.runFold(batches, Score.emptyNll, (sum, b) =>
      Score.addNll(sum, Score.windowNll(r.state.params, r.cfg, b.tokens, b.rows, b.windowLength)),
    );
    const v = Score.summarize(nll);
    const sink = yield* MetricsSink.MetricsSink;
    yield* sink.write({
      step: at.step,
      phase: at.phase,
      tokens: 0,
      flops: 0,
      wallSeconds: 0,
      totalTokens: at.tokens,
      totalFlops: flopsAt(r, at.step),
      elapsedSeconds: r.clock.wall(),
      values: { [Keys.valLoss]: v.loss, [Keys.valPerplexity]: v.ppl },
    });
    return { loss: v.loss, ppl: v.ppl } satisfies Validation;
  });

/** Save the state at `at`, unless no step ran yet or `latest` already holds it. Uninterruptible. */
const checkpoint = (r: Run, at: Position) =>
  Effect.gen(function* () {
    const cursor = at.cursor;
    if (cursor === undefined || (yield* Checkpoint.latestName(r.runDir)) === Checkpoint.stepDirName(at.step)) return;
    const saved = yield* Checkpoint.save(
      r.runDir,
      {
        step: at.step,
        tensors: State.weights(r.state),
        optimizer: State.optimizerState(r.state),
        manifest: {
          phase: at.phase,
          tokensSeen: at.tokens,
          modelConfig: r.cfg,
          trainConfig: r.trainConfig,
          dataCursor: { phase: at.phase, cursor, wallSeconds: r.clock.wall(), cpuSeconds: r.clock.cpu() },
          rng: { seed: r.c.seed, note: "init and data order derive from the seed; the data cursor holds the position" },
          tokenizerHash: r.tokenizerHash,
          packageVersions: r.options.packageVersions ?? {},
        },
      },
      { keepLast: r.c.keepCheckpoints },
    );
    yield* Effect.logInfo(`step ${at.step} | checkpoint ${saved.dir}`);
  }).pipe(Effect.uninterruptible);

// --- the phases and the switch between them --------------------------------------------------

/** Walk the plan's phases from where the run stands, switching the state to token level between them. */
const runPhases = (r: Run, start: Position) =>
  Effect.gen(function* () {
    let at = start;
    let validation: Validation | undefined;
    let losses = Chunk.empty<StepLoss>();
    for (const phase of r.plan.phases) {
      if (at.step >= phase.startStep + phase.steps) continue;
      if (phase.phase === "token" && r.state.phase === "patch") {
        State.switchToToken(r.state, r.c.patch.switchPolicy, r.optim);
        yield* Effect.logInfo(`step ${at.step} | switch to token level (${r.c.patch.switchPolicy} optimizer and schedule)`);
      }
      const ran = yield* runPhase(r, phase, at);
      at = ran.at;
      validation = ran.validation ?? validation;
      losses = Chunk.appendAll(losses, ran.losses);
      if (ran.stop !== undefined) return { at, ended: ran.stop, validation, losses };
    }
    return { at, ended: "finished" as const, validation, losses };
  });

/** Ctrl-C through the runtime: the step in flight completes, then the last completed step is checkpointed. */
const checkpointOnInterrupt = (r: Run) =>
  Effect.gen(function* () {
    const at = yield* Ref.get(r.completed);
    yield* Effect.logWarning(`interrupted at step ${at.step}: checkpointing the last completed step`);
    yield* checkpoint(r, at);
  }).pipe(Effect.orDie);

/**
 * Train (or resume) a run; see the module comment. Needs the data's Tokenizer, a MetricsSink, a
 * Progress display, the PatchStrategies registry and a FileSystem.
 */
export const run = Effect.fn("Trainer.run")(function* (options: Options) {
  const r = yield* open(yield* setup(options));
  const walked = yield* runPhases(r, r.start).pipe(Effect.onInterrupt(() => checkpointOnInterrupt(r)));
  if (walked.ended !== "finished") {
    yield* checkpoint(r, walked.at);
    yield* Effect.logInfo(`stopped at step ${walked.at.step}/${r.plan.totalSteps}`);
  }
  const summary: Summary = {
    name: r.c.name,
    runDir: r.runDir,
    step: walked.at.step,
    totalSteps: r.plan.totalSteps,
    tokens: walked.at.tokens,
    flops: flopsAt(r, walked.at.step),
    wallSeconds: r.clock.wall(),
    cpuSeconds: r.clock.cpu(),
    ended: walked.ended,
    validation: walked.validation,
    losses: Chunk.toReadonlyArray(walked.losses),
  };
  return summary;
}, Effect.scoped);
