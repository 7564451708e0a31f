/**
 * The two-phase training run (docs/method.md §3): batches Stream -> patch transform (the phase
 * decides K) -> train step -> metrics, with periodic token-level validation, atomic checkpoints
 * and exact resume.
 *
 * Resume contract: a run resumed from the checkpoint at step s performs exactly the steps an
 * uninterrupted run would have performed after s — same batches (the data cursor is a pure
 * function of the phase step), same learning rates (the plan is a pure function of the global
 * step), same weights and AdamW moments (restored bit for bit) — so its loss curve is identical.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { FileSystem } from "@effect/platform";
import { Effect, Either, Option, Schema, Scope, Stream } from "effect";
import type { Config } from "@patchlm/core";
import { Checkpoint } from "@patchlm/checkpoint";
import { Batches, Shards } from "@patchlm/data";
import { Score } from "@patchlm/eval";
import { ParameterTable } from "@patchlm/model";
import { Registry } from "@patchlm/patching";
import { MetricRecord, MetricsSink, Progress } from "@patchlm/metrics";
import { Compute, PhasePlan } from "@patchlm/schedulers";
import { Tokenizer } from "@patchlm/tokenization";
import type { RunConfig } from "./RunConfig";
import * as Setup from "./Setup";
import * as State from "./State";
import { makeTrainStep } from "./Step";

/** A failure of the run itself (as opposed to bad config, data or checkpoints, which have their own errors). */
export class TrainError extends Schema.TaggedError<TrainError>()("TrainError", {
  reason: Schema.Literal("RunExists", "NothingToResume", "NonFiniteLoss", "BadCheckpoint", "Finished"),
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
  /** Which backend runs, and its peak FLOP/s if known (for MFU). */
  readonly backend: { readonly name: string; readonly peakFlops?: number };
  /** Polled between steps: true asks the run to checkpoint and stop (SIGINT/SIGTERM). */
  readonly stopRequested?: () => boolean;
  /** Recorded in checkpoint manifests. */
  readonly packageVersions?: { readonly [name: string]: string };
  /** Stop after this many steps in this invocation (tests and benchmarks); the run stays resumable. */
  readonly maxSteps?: number;
}

export interface Summary {
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
  /** Why this invocation ended. */
  readonly ended: "finished" | "stopped" | "maxSteps";
  /** The last token-level validation result. */
  readonly validation: { readonly loss: number; readonly ppl: number } | undefined;
  /** Training loss of every step this invocation ran (patch loss in the patch phase). */
  readonly losses: ReadonlyArray<{ readonly step: number; readonly phase: PhasePlan.Phase; readonly loss: number }>;
}

/** Where the data stream and the clock stand; stored in each checkpoint manifest. */
const SavedProgress = Schema.Struct({
  phase: Schema.Literal("patch", "token"),
  cursor: Batches.Cursor,
  wallSeconds: Schema.Number,
  /** Absent in checkpoints written before CPU time was recorded. */
  cpuSeconds: Schema.optional(Schema.Number),
});

export const CONFIG_FILE = "config.json";

const writeAtomic = (file: string, text: string) =>
  Effect.sync(() => {
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  });

/** Token-level validation: mean NLL over the first `batches` windows of T tokens (fixed, sequential). */
const validate = (c: RunConfig, state: State.State, batchSize: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stream = Batches.stream({
        dir: c.data,
        split: "validation",
        windowLength: Math.min(c.batch.seqLen, state.cfg.contextLength),
        batchSize,
        order: "sequential",
        epochs: 1,
        prefetch: 0,
      }).pipe(Stream.take(c.evalBatches));
      let sum = Score.emptyNll;
      yield* Stream.runForEach(stream, (b) =>
        Effect.sync(() => {
          sum = Score.addNll(sum, Score.windowNll(state.params, state.cfg, b.tokens, b.rows, b.windowLength));
        }),
      );
      return Score.summarize(sum);
    }),
  );

const runScoped = Effect.fn("Trainer.run")(function* (o: Options) {
  const c = o.config;
  const tokenizer = yield* Tokenizer.Tokenizer;
  const runDir = path.resolve(c.runsDir, c.name);
  const data = yield* Shards.readManifest(c.data);
  const cfg: Config.ModelConfig = yield* Setup.modelConfig(c, tokenizer.vocabSize);
  const plan = yield* Setup.phasePlan(c);
  const ranges = yield* Setup.dataRanges(plan, data.splits.train.tokens, c.batch.uniqueTokens);
  const strategy = yield* Registry.lookup(c.patch.strategy);
  const accum = { patch: 1, token: 1 };
  for (const p of plan.phases) accum[p.phase] = yield* Setup.accumulation(c, p);
  const flopsPerPosition = {
    patch: ParameterTable.flopsPerPosition(cfg, plan.patch.positions),
    token: ParameterTable.flopsPerPosition(cfg, plan.token.positions),
  };
  const optimOptions = { beta1: c.optim.beta1, beta2: c.optim.beta2, eps: c.optim.eps, weightDecay: c.optim.weightDecay };
  const trainConfigForCheck = { ...c, backend: undefined, runsDir: undefined, data: undefined };

  // --- state: fresh or from the latest checkpoint -----------------------------------------------
  const latest = yield* Checkpoint.latestName(runDir);
  if (!o.resume && latest !== undefined) {
    return yield* new TrainError({
      reason: "RunExists",
      detail: `${runDir} already holds checkpoints (latest ${latest}); resume it with \`trainer resume ${c.name}\` or pick another --name`,
    });
  }
  if (o.resume && latest === undefined) {
    return yield* new TrainError({ reason: "NothingToResume", detail: `${runDir} has no checkpoint to resume from` });
  }
  const loaded = o.resume ? yield* Checkpoint.load(runDir) : undefined;
  let globalStep = loaded?.manifest.step ?? 0;
  if (globalStep >= plan.totalSteps) {
    return yield* new TrainError({ reason: "Finished", detail: `${runDir} already completed all ${plan.totalSteps} steps` });
  }
  const startPhase = PhasePlan.phaseAt(plan, globalStep);
  const state = yield* Effect.acquireRelease(
    Effect.sync(() =>
      State.make({
        cfg,
        seed: c.seed,
        optim: optimOptions,
        strategy: startPhase.phase === "patch" ? strategy : undefined,
        K: startPhase.K,
      }),
    ),
    (s) => Effect.sync(() => State.dispose(s)),
  );
  let tokensSeen = loaded?.manifest.tokensSeen ?? 0;
  let wallBase = 0;
  let cpuBase = 0;
  let lastCursor: Batches.Cursor | undefined;
  if (loaded !== undefined) {
    yield* Checkpoint.ensureCompatible(loaded, { modelConfig: cfg, trainConfig: trainConfigForCheck, tokenizerHash: tokenizer.hash });
    const progress = yield* Schema.decodeUnknown(SavedProgress)(loaded.manifest.dataCursor).pipe(
      Effect.mapError((e) => new TrainError({ reason: "BadCheckpoint", detail: `${loaded.dir}: dataCursor: ${e.message}` })),
    );
    wallBase = progress.wallSeconds;
    cpuBase = progress.cpuSeconds ?? 0;
    const bad = (detail: string) => new TrainError({ reason: "BadCheckpoint", detail });
    // A checkpoint written at the end of the patch phase holds the patch-phase state: the
    // strategy's parameters are dropped and the optimizer is reset (nothing to restore) or
    // continued without them, exactly as the uninterrupted run's switch does.
    const atSwitch = startPhase.phase === "token" && progress.phase === "patch";
    yield* Either.mapLeft(State.restoreWeights(state, loaded.tensors, loaded.dir), bad);
    if (loaded.optimizer !== undefined && !(atSwitch && c.patch.switchPolicy === "reset")) {
      yield* Either.mapLeft(State.restoreOptimizer(state, loaded.optimizer, loaded.dir), bad);
    }
    lastCursor = progress.cursor;
    yield* Effect.logInfo(`resumed ${runDir} at step ${globalStep}/${plan.totalSteps} (${startPhase.phase} phase)`);
  } else {
    fs.mkdirSync(runDir, { recursive: true });
    yield* writeAtomic(path.join(runDir, CONFIG_FILE), JSON.stringify(c, null, 2) + "\n");
    yield* Effect.logInfo(
      `run ${runDir}: ${plan.totalSteps} steps (${plan.patch.steps} patch K=${plan.patch.K}, ${plan.token.steps} token), ` +
        `${ParameterTable.count(cfg).toLocaleString("en-US")} parameters, relative cost ${plan.relativeCost.toFixed(3)}`,
    );
  }

  const started = performance.now();
  const wall = () => wallBase + (performance.now() - started) / 1000;
  const cpuStart = process.cpuUsage();
  const cpu = () => {
    const used = process.cpuUsage(cpuStart);
    return cpuBase + (used.user + used.system) / 1e6;
  };
  const flopsAt = (step: number) => Compute.flopsBefore(plan, step, flopsPerPosition);
  const sink = yield* MetricsSink.MetricsSink;
  const progress = yield* Progress.Progress;
  const Keys = MetricRecord.Keys;
  const losses: Array<{ step: number; phase: PhasePlan.Phase; loss: number }> = [];
  let validation: { loss: number; ppl: number } | undefined;
  let lastPhase: PhasePlan.Phase = startPhase.phase;

  const evaluate = Effect.gen(function* () {
    const v = yield* validate(c, state, Setup.evalBatch(c, plan));
    validation = { loss: v.loss, ppl: v.ppl };
    yield* sink.write({
      step: globalStep,
      phase: lastPhase,
      tokens: 0,
      flops: 0,
      wallSeconds: 0,
      totalTokens: tokensSeen,
      totalFlops: flopsAt(globalStep),
      elapsedSeconds: wall(),
      values: { [Keys.valLoss]: v.loss, [Keys.valPerplexity]: v.ppl },
    });
  });

  let savedStep = loaded?.manifest.step ?? -1;
  const checkpoint = Effect.gen(function* () {
    if (lastCursor === undefined || savedStep === globalStep) return;
    const saved = yield* Checkpoint.save(
      runDir,
      {
        step: globalStep,
        tensors: State.weights(state),
        optimizer: State.optimizerState(state),
        manifest: {
          phase: lastPhase,
          tokensSeen,
          modelConfig: cfg,
          trainConfig: trainConfigForCheck,
          dataCursor: { phase: lastPhase, cursor: lastCursor, wallSeconds: wall(), cpuSeconds: cpu() },
          rng: { seed: c.seed, note: "init and data order derive from the seed; the data cursor holds the position" },
          tokenizerHash: tokenizer.hash,
          packageVersions: o.packageVersions ?? {},
        },
      },
      { keepLast: c.keepCheckpoints },
    );
    savedStep = globalStep;
    yield* Effect.logInfo(`step ${globalStep} | checkpoint ${saved.dir}`);
  }).pipe(Effect.uninterruptible);

  let ended: Summary["ended"] = "finished";
  let ranThisInvocation = 0;
  // Interrupted (Ctrl-C through the runtime): the step in flight completes (steps are synchronous),
  // then the latest state is checkpointed before the fiber ends.
  const training = Effect.gen(function* () {
    for (const phase of plan.phases) {
      if (globalStep >= phase.startStep + phase.steps) continue;
      let phaseStep = globalStep - phase.startStep;
      lastPhase = phase.phase;
      if (phase.phase === "token" && state.phase === "patch") {
        State.switchToToken(state, c.patch.switchPolicy, optimOptions);
        yield* Effect.logInfo(`step ${globalStep} | switch to token level (${c.patch.switchPolicy} optimizer and schedule)`);
      }
      const micro = accum[phase.phase];
      const range = phase.phase === "patch" ? ranges.patch : ranges.token;
      const layout = yield* Batches.layout(c.data, "train", data.splits.train.tokens, phase.seqLen, range);
      const step = makeTrainStep({
        cfg,
        K: phase.K,
        strategy: phase.K === 1 ? undefined : strategy,
        params: state.params,
        strategyParams: phase.K === 1 ? {} : state.strategyParams,
        optimizer: state.optimizer,
        maxGradNorm: c.optim.gradClip > 0 ? c.optim.gradClip : Infinity,
        skipNonFinite: true,
      });
      const pull = yield* Stream.toPull(
        Batches.stream({
          dir: c.data,
          split: "train",
          windowLength: phase.seqLen,
          batchSize: Setup.microBatch(c, phase),
          seed: c.seed,
          range,
          cursor: Batches.cursorAfter(layout, Setup.microBatch(c, phase), phaseStep * micro),
        }).pipe(Stream.rechunk(1)),
      );
      const next = pull.pipe(
        Effect.map((chunk) => Option.getOrThrow(Option.fromNullable([...chunk][0]))),
        // A pull fails with None at the stream's end (a bug: the plan never reads past it) and with
        // Some(error) for a data error, which must reach the user as the data lib reported it.
        Effect.catchAll((e) => Option.match(e, { onNone: () => Effect.dieMessage("batch stream ended early"), onSome: Effect.fail })),
      );

      let interval = { loss: 0, gradNorm: 0, steps: 0, tokens: 0, started: performance.now() };
      let badInARow = 0;
      while (phaseStep < phase.steps) {
        if (o.stopRequested?.() === true) {
          ended = "stopped";
          return;
        }
        if (o.maxSteps !== undefined && ranThisInvocation >= o.maxSteps) {
          ended = "maxSteps";
          return;
        }
        const batches: Array<Batches.Batch> = [];
        for (let m = 0; m < micro; m++) batches.push(yield* next);
        const lr = PhasePlan.phaseAt(plan, globalStep).lr;
        const ids = batches.map((b) => tf.tensor2d(b.tokens, [b.rows, b.windowLength], "int32"));
        const result = step(ids, lr);
        tf.dispose(ids);
        // One host read per step for both scalars (the step's non-finite check already synced).
        const both = tf.tidy(() => tf.stack([result.loss, result.gradNorm]));
        const [loss, gradNorm] = both.dataSync();
        tf.dispose([both, result.loss, result.gradNorm]);

        globalStep += 1;
        phaseStep += 1;
        ranThisInvocation += 1;
        tokensSeen += plan.tokensPerStep;
        lastCursor = batches[batches.length - 1].cursor;
        losses.push({ step: globalStep, phase: phase.phase, loss });

        if (result.skipped) {
          badInARow += 1;
          yield* Effect.logWarning(`step ${globalStep} | non-finite loss ${loss} or grad norm ${gradNorm}: update skipped (${badInARow} in a row)`);
          if (badInARow >= c.maxBadSteps) {
            return yield* new TrainError({
              reason: "NonFiniteLoss",
              detail: `${badInARow} consecutive non-finite losses at step ${globalStep}; stopping (the last checkpoint holds finite weights). Lower optim.lr or check the data.`,
            });
          }
        } else {
          badInARow = 0;
          interval.loss += loss;
          interval.gradNorm += gradNorm;
          interval.steps += 1;
        }
        interval.tokens += plan.tokensPerStep;

        const phaseDone = phaseStep === phase.steps;
        if (globalStep % c.logEvery === 0 || phaseDone) {
          const seconds = (performance.now() - interval.started) / 1000;
          const flops = (interval.tokens / plan.tokensPerStep) * Compute.flopsPerStep(plan, phase.phase, flopsPerPosition);
          const mean = interval.steps > 0 ? interval.loss / interval.steps : NaN;
          const values: { [k: string]: number } = {
            [Keys.loss]: mean,
            [Keys.lr]: lr,
            [Keys.gradNorm]: interval.steps > 0 ? interval.gradNorm / interval.steps : NaN,
            [Keys.tokensPerSecond]: interval.tokens / seconds,
            [Keys.flopsPerSecond]: flops / seconds,
          };
          if (o.backend.peakFlops !== undefined) values[Keys.mfu] = flops / seconds / o.backend.peakFlops;
          yield* sink.write({
            step: globalStep,
            phase: phase.phase,
            tokens: interval.tokens,
            flops,
            wallSeconds: seconds,
            totalTokens: tokensSeen,
            totalFlops: flopsAt(globalStep),
            elapsedSeconds: wall(),
            values,
          });
          yield* progress.update({ phase: phase.phase, step: globalStep, loss: mean, tokensPerSecond: interval.tokens / seconds });
          interval = { loss: 0, gradNorm: 0, steps: 0, tokens: 0, started: performance.now() };
        }
        if ((c.evalEvery > 0 && globalStep % c.evalEvery === 0) || phaseDone) yield* evaluate;
        if ((c.checkpointEvery > 0 && globalStep % c.checkpointEvery === 0) || phaseDone) yield* checkpoint;
      }
    }
  });

  yield* Effect.scoped(training as Effect.Effect<void, Effect.Effect.Error<typeof training>, Scope.Scope | FileSystem.FileSystem | Tokenizer.Tokenizer>).pipe(
    Effect.onInterrupt(() =>
      Effect.gen(function* () {
        yield* Effect.logWarning(`interrupted at step ${globalStep}: checkpointing the last completed step`);
        yield* checkpoint;
      }).pipe(Effect.orDie),
    ),
  );
  if (ended !== "finished") {
    yield* checkpoint;
    yield* Effect.logInfo(`stopped at step ${globalStep}/${plan.totalSteps}; continue with \`trainer resume ${c.name}\``);
  }
  return {
    runDir,
    step: globalStep,
    totalSteps: plan.totalSteps,
    tokens: tokensSeen,
    flops: flopsAt(globalStep),
    wallSeconds: wall(),
    cpuSeconds: cpu(),
    ended,
    validation,
    losses,
  } satisfies Summary;
});

/**
 * Train (or resume) a run; see the module comment. Needs the data's Tokenizer, a MetricsSink, a
 * Progress display, the PatchStrategies registry and a FileSystem.
 */
export const run = (o: Options) => Effect.scoped(runScoped(o));
