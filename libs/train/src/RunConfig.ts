import { Either, Schema } from "effect";
import { Backend, Config, type ConfigError, Numbers } from "@patchlm/core";

const { NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, UnitInterval } = Numbers;
const opt = <A, I>(s: Schema.Schema<A, I>, d: NoInfer<A>) => Schema.optionalWith(s, { default: () => d });
/** A nested section whose every field has a default: omitting it means "all defaults". */
const section = <A, I>(s: Schema.Schema<A, I>) =>
  Schema.optionalWith(s, { default: () => Schema.decodeUnknownSync(s)({}) });

/** The model: a named preset, optionally with fields overridden. */
export const ModelSection = Schema.Struct({
  preset: opt(Schema.String, "reference"),
  vocabSize: Schema.optional(PositiveInt),
  dModel: Schema.optional(PositiveInt),
  nLayers: Schema.optional(PositiveInt),
  nHeads: Schema.optional(PositiveInt),
  nKvHeads: Schema.optional(PositiveInt),
  ffnHidden: Schema.optional(PositiveInt),
  contextLength: Schema.optional(PositiveInt),
  tieEmbeddings: Schema.optional(Schema.Boolean),
});
export type ModelSection = typeof ModelSection.Type;

/** The patch plan (docs/method.md §3): K, λ, strategy and what happens at the switch. */
export const PatchSection = Schema.Struct({
  patchSize: opt(PositiveInt, 4),
  patchFraction: opt(UnitInterval, 2 / 3),
  strategy: opt(Schema.String, "mean"),
  /**
   * A module exporting patch strategies of your own (see @patchlm/patching `StrategyModule`),
   * relative to the working directory; `strategy` may then name one of them. A run records the
   * file's sha256 and refuses to resume or be evaluated with a changed one.
   */
  strategyModule: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  switchPolicy: opt(Config.SwitchPolicy, "reset"),
});

/** How much data each step sees and in what shape. */
export const BatchSection = Schema.Struct({
  /** Total token budget D over both phases. */
  tokens: PositiveInt,
  /** Tokens per optimizer step (the global batch), the same in both phases. */
  batchTokens: PositiveInt,
  /** Positions T per sequence (patches in the patch phase, tokens in the token phase). */
  seqLen: PositiveInt,
  /**
   * Sequences per micro-batch, to bound memory: a step accumulates gradients over
   * sequencesPerStep / microBatch micro-batches, which must be whole in both phases. Default: the
   * whole step in one micro-batch, in each phase.
   */
  microBatch: Schema.optional(PositiveInt),
  /**
   * Unique data: train on the first U tokens of the (shuffled) train split only. A budget larger
   * than U repeats them for tokens/U epochs (the paper's multi-epoch form, docs/method.md §3.2).
   * Default: the whole split.
   */
  uniqueTokens: Schema.optional(PositiveInt),
});

export const OptimSection = Schema.Struct({
  lr: opt(PositiveNumber, 3e-4),
  minLr: opt(NonNegativeNumber, 0),
  /**
   * Linear warmup steps (per phase under the reset policy). Default: 2% of the steps the schedule
   * spans (each phase's under reset, the run's under continue), at most 2,000 (the paper's), so
   * a short run gets a short warmup instead of being refused.
   */
  warmupSteps: Schema.optional(NonNegativeInt),
  schedule: opt(Schema.Literal("cosine", "constant", "wsd"), "cosine"),
  /** WSD only: fraction of the phase spent decaying. */
  decayFraction: opt(UnitInterval, 0.2),
  weightDecay: opt(NonNegativeNumber, 0.1),
  beta1: opt(UnitInterval, 0.9),
  beta2: opt(UnitInterval, 0.95),
  eps: opt(PositiveNumber, 1e-8),
  gradClip: opt(NonNegativeNumber, 1.0),
});

export const RunConfig = Schema.Struct({
  /**
   * Run name: the directory under runsDir. One plain name: no separator, and no leading '.' (`.`
   * and `..` would put the run in runsDir itself or its parent, over files the user owns).
   */
  name: Schema.String.pipe(
    Schema.pattern(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/, {
      message: (issue) =>
        `${JSON.stringify(issue.actual)} is not one directory name under runsDir: 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'`,
    }),
  ),
  runsDir: opt(Schema.String, "runs"),
  /** A prepared data directory (the output of `trainer prepare`). */
  data: Schema.String,
  seed: opt(NonNegativeInt, 1234),
  backend: opt(Backend.Choice, "auto"),
  /**
   * Matmul precision: fp32, or bf16 mixed precision (bf16 operands, fp32 sums, everything else
   * fp32) on the native backend where the CPU has AVX512_BF16. Recorded with the run: a resume
   * runs at the run's precision.
   */
  precision: opt(Backend.Precision, "fp32"),
  model: section(ModelSection),
  patch: section(PatchSection),
  batch: BatchSection,
  optim: section(OptimSection),
  /** Steps between log lines / metric records. */
  logEvery: opt(PositiveInt, 10),
  /** Steps between validation evaluations (0 = only at phase ends). */
  evalEvery: opt(NonNegativeInt, 200),
  /** Validation batches per evaluation. */
  evalBatches: opt(PositiveInt, 8),
  /** Steps between checkpoints (0 = only at phase ends and on stop). */
  checkpointEvery: opt(NonNegativeInt, 500),
  keepCheckpoints: opt(PositiveInt, 3),
  /** Consecutive non-finite losses that stop the run. */
  maxBadSteps: opt(PositiveInt, 5),
});
export type RunConfig = typeof RunConfig.Type;
export type RunConfigInput = typeof RunConfig.Encoded;

export const decode = (source: string, input: unknown): Either.Either<RunConfig, ConfigError> =>
  Config.decodeConfig(RunConfig)(source, input);
