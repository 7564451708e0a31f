import { Either, Schema } from "effect";
import { Config, ConfigError, Numbers } from "@patchlm/core";
import * as LrSchedule from "./LrSchedule";

/**
 * The patch -> token phase plan (docs/method.md §3): the patch phase reads the first λ of the data
 * in sequences of K·T raw tokens (T patch positions each), the token phase reads the rest in
 * sequences of T tokens. Tokens per optimizer step are the same in both phases (paper §3.1: 2M
 * tokens per step in both stages), so a patch step has 1/K of the positions of a token step.
 *
 * Step counts are rounded to the nearest whole step: total = round(D / tokensPerStep),
 * patch = round(λ·D / tokensPerStep) (or round(λ·N) for a step budget), token = total − patch.
 */

const PositiveNumber = Numbers.PositiveNumber;

/**
 * How much data: raw tokens D, optimizer steps N, or N epochs over a corpus of `tokensPerEpoch`
 * tokens (paper §2 multi-epoch form: the first λ·N epochs at patch level). Exactly one of
 * `tokens`, `steps`, `epochs`.
 */
export const Budget = Schema.Struct({
  tokens: Schema.optional(PositiveNumber),
  steps: Schema.optional(Numbers.PositiveInt),
  epochs: Schema.optional(PositiveNumber),
  tokensPerEpoch: Schema.optional(PositiveNumber),
}).pipe(
  Schema.filter((b) => {
    const given = (["tokens", "steps", "epochs"] as const).filter((k) => b[k] !== undefined);
    if (given.length !== 1) return `give exactly one of tokens, steps, epochs (got ${given.length === 0 ? "none" : given.join(", ")})`;
    if ((b.epochs === undefined) !== (b.tokensPerEpoch === undefined)) {
      return { path: ["tokensPerEpoch"], message: "tokensPerEpoch goes with epochs, and only with epochs" };
    }
    return undefined;
  }),
);
export type Budget = typeof Budget.Type;

export const PhasePlanConfig = Schema.Struct({
  /** K. K = 1 is token-only training whatever λ says. */
  patchSize: Config.PatchConfig.fields.patchSize,
  /** λ, the fraction of the data read at patch level. */
  patchFraction: Config.PatchConfig.fields.patchFraction,
  /** At the switch: `reset` (paper) restarts optimizer and schedule; `continue` keeps both going. */
  switchPolicy: Config.PatchConfig.fields.switchPolicy,
  budget: Budget,
  /** Global batch in raw tokens, the same in both phases. */
  tokensPerStep: Numbers.PositiveInt,
  /** T: model positions per sequence (patches in the patch phase, tokens in the token phase). */
  seqLen: Numbers.PositiveInt,
  schedule: LrSchedule.LrScheduleConfig,
});
export type PhasePlanConfig = typeof PhasePlanConfig.Type;
export type PhasePlanConfigInput = typeof PhasePlanConfig.Encoded;

export type Phase = "patch" | "token";

export interface PhaseSpec {
  readonly phase: Phase;
  /** Patch size in effect: K in the patch phase, 1 in the token phase. */
  readonly K: number;
  /** Raw tokens per training window: K·T in the patch phase, T in the token phase. */
  readonly windowLength: number;
  /** Model positions per sequence: T in both phases. */
  readonly positions: number;
  readonly steps: number;
  /** Global step of this phase's first step. */
  readonly startStep: number;
  /** Raw tokens this phase reads: steps · tokensPerStep. */
  readonly tokens: number;
  readonly sequencesPerStep: number;
  /** Model positions per optimizer step: tokensPerStep / K. */
  readonly positionsPerStep: number;
}

export interface PhasePlan {
  readonly config: PhasePlanConfig;
  /** λ in effect: 0 when K = 1. */
  readonly patchFraction: number;
  readonly totalSteps: number;
  readonly tokensPerStep: number;
  readonly totalTokens: number;
  readonly patch: PhaseSpec;
  readonly token: PhaseSpec;
  /** The phases that have steps, in training order. */
  readonly phases: ReadonlyArray<PhaseSpec>;
  /** Global step at which the token phase starts, when both phases have steps. */
  readonly switchStep: number | undefined;
  /** For an epoch budget: epochs read at patch level and at token level. */
  readonly epochs: { readonly patch: number; readonly token: number } | undefined;
  /** Positions processed relative to token-only training of the same steps (≈ λ/K + 1 − λ). */
  readonly relativeCost: number;
  /**
   * The LR schedules the switch policy uses: one per phase, each over that phase's steps (`reset`),
   * or one over the whole run (`continue`).
   */
  readonly schedules:
    | { readonly kind: "reset"; readonly patch: LrSchedule.Schedule; readonly token: LrSchedule.Schedule }
    | { readonly kind: "continue"; readonly run: LrSchedule.Schedule };
}

/** Everything the trainer needs to run (or resume at) one global step. */
export interface PhaseState {
  readonly globalStep: number;
  readonly phase: Phase;
  /** Step counted from the start of this phase. */
  readonly phaseStep: number;
  readonly lr: number;
  readonly K: number;
  /** Raw tokens per training window (K·T or T). */
  readonly windowLength: number;
  /** Model positions per sequence (T). */
  readonly positions: number;
  /** True at the first token-phase step under `reset`: build a fresh optimizer before this step. */
  readonly resetOptimizer: boolean;
}

const totalStepsOf = (c: PhasePlanConfig): { total: number; patch: number; epochs: PhasePlan["epochs"] } => {
  const lambda = c.patchSize === 1 ? 0 : c.patchFraction;
  const b = c.budget;
  if (b.steps !== undefined) return { total: b.steps, patch: Math.round(lambda * b.steps), epochs: undefined };
  const tokens = b.tokens ?? b.epochs! * b.tokensPerEpoch!;
  return {
    total: Math.round(tokens / c.tokensPerStep),
    patch: Math.round((lambda * tokens) / c.tokensPerStep),
    epochs: b.epochs !== undefined ? { patch: lambda * b.epochs, token: (1 - lambda) * b.epochs } : undefined,
  };
};

const spec = (c: PhasePlanConfig, phase: Phase, K: number, steps: number, startStep: number): PhaseSpec => ({
  phase,
  K,
  windowLength: K * c.seqLen,
  positions: c.seqLen,
  steps,
  startStep,
  tokens: steps * c.tokensPerStep,
  sequencesPerStep: c.tokensPerStep / (K * c.seqLen),
  positionsPerStep: c.tokensPerStep / K,
});

const issuesOf = (c: PhasePlanConfig, patch: PhaseSpec, token: PhaseSpec, total: number): Array<string> => {
  const issues: Array<string> = [];
  const budgetKey = `budget.${c.budget.steps !== undefined ? "steps" : c.budget.tokens !== undefined ? "tokens" : "epochs"}`;
  if (total < 1) issues.push(`${budgetKey}: the budget is less than one step of ${c.tokensPerStep} tokens`);
  for (const p of [patch, token]) {
    if (p.steps > 0 && !Number.isInteger(p.sequencesPerStep)) {
      issues.push(
        `tokensPerStep: ${c.tokensPerStep} is not a multiple of the ${p.phase} phase's sequence length ` +
          `${p.windowLength} (${p.K === 1 ? "seqLen" : "patchSize·seqLen"}), so a step would not hold whole sequences`,
      );
    }
  }
  if (c.switchPolicy === "continue") issues.push(...LrSchedule.check(c.schedule, total, "schedule.", "the run"));
  else {
    for (const p of [patch, token]) {
      issues.push(...LrSchedule.check(c.schedule, p.steps, "schedule.", `the ${p.phase} phase (the schedule restarts at the switch)`));
    }
  }
  return issues;
};

/** Build the plan from a decoded config; a ConfigError (source `source`) lists every problem. */
export const make = (c: PhasePlanConfig, source = "code"): Either.Either<PhasePlan, ConfigError> => {
  const { total, patch: patchSteps, epochs } = totalStepsOf(c);
  const patch = spec(c, "patch", c.patchSize, patchSteps, 0);
  const token = spec(c, "token", 1, Math.max(0, total - patchSteps), patchSteps);
  const issues = issuesOf(c, patch, token, total);
  if (issues.length > 0) return Either.left(new ConfigError({ source, issues }));
  const phases = [patch, token].filter((p) => p.steps > 0);
  return Either.right({
    config: c,
    patchFraction: c.patchSize === 1 ? 0 : c.patchFraction,
    totalSteps: total,
    tokensPerStep: c.tokensPerStep,
    totalTokens: total * c.tokensPerStep,
    patch,
    token,
    phases,
    switchStep: phases.length === 2 ? token.startStep : undefined,
    epochs,
    relativeCost: (patch.steps / patch.K + token.steps) / total,
    schedules:
      c.switchPolicy === "reset"
        ? { kind: "reset", patch: LrSchedule.make(c.schedule, patch.steps), token: LrSchedule.make(c.schedule, token.steps) }
        : { kind: "continue", run: LrSchedule.make(c.schedule, total) },
  });
};

/** Decode unknown input (parsed JSON/YAML) and build the plan, reporting every problem at once. */
export const decode = (source: string, input: unknown): Either.Either<PhasePlan, ConfigError> =>
  Either.flatMap(Config.decodeConfig(PhasePlanConfig)(source, input), (c) => make(c, source));

/**
 * The phase, the step within it, the LR and the sequence shape at a global step
 * (0 ≤ globalStep < totalSteps), so a trainer can start or resume anywhere. Under `reset` the LR
 * schedule restarts at the switch, warmup included (docs/method.md §8 TV12); under `continue` one
 * schedule spans the run and is read at the global step.
 */
export const phaseAt = (plan: PhasePlan, globalStep: number): PhaseState => {
  if (!Number.isInteger(globalStep) || globalStep < 0 || globalStep >= plan.totalSteps) {
    throw new RangeError(`global step ${globalStep} is outside the plan's steps 0..${plan.totalSteps - 1}`);
  }
  const p = globalStep < plan.token.startStep ? plan.patch : plan.token;
  const phaseStep = globalStep - p.startStep;
  const reset = plan.config.switchPolicy === "reset";
  return {
    globalStep,
    phase: p.phase,
    phaseStep,
    lr: plan.schedules.kind === "reset" ? plan.schedules[p.phase](phaseStep) : plan.schedules.run(globalStep),
    K: p.K,
    windowLength: p.windowLength,
    positions: p.positions,
    resetOptimizer: reset && p.phase === "token" && phaseStep === 0 && plan.patch.steps > 0,
  };
};
