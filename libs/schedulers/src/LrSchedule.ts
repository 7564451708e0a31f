import { Either, Schema } from "effect";
import { Config, ConfigError, Numbers } from "@patchlm/core";

/**
 * Learning-rate schedules as pure functions of the optimizer step, with Hugging Face semantics:
 * during warmup the LR at step s is peak·s/warmup, so the very first optimizer step (s = 0) runs
 * at LR 0 (docs/method.md §8 TV12; HF `get_cosine_schedule_with_warmup`, which the official
 * scripts use).
 * After warmup every schedule starts from its peak; `minLr` is where the decay ends (HF's cosine
 * decays to 0, the paper's author says "falls to the min lr at the end", issue #4).
 */

const Lr = Numbers.NonNegativeNumber;
const PeakLr = Numbers.PositiveNumber;
const Steps = Numbers.NonNegativeInt;

/** Linear warmup from 0 to `peakLr`, then half a cosine down to `minLr` at the last step. */
export const Cosine = Schema.Struct({
  kind: Schema.Literal("cosine"),
  peakLr: PeakLr,
  minLr: Schema.optionalWith(Lr, { default: () => 0 }),
  warmupSteps: Schema.optionalWith(Steps, { default: () => 0 }),
});
export type Cosine = typeof Cosine.Type;

/** Linear warmup from 0 to `lr`, then constant ("constant lr afterwards also works", issue #4). */
export const Constant = Schema.Struct({
  kind: Schema.Literal("constant"),
  lr: PeakLr,
  warmupSteps: Schema.optionalWith(Steps, { default: () => 0 }),
});
export type Constant = typeof Constant.Type;

/**
 * Warmup-stable-decay: linear warmup, `peakLr` held, then the last `decayFraction` of the steps
 * decay to `minLr`, linearly or along half a cosine (HF `get_wsd_schedule`).
 */
export const WarmupStableDecay = Schema.Struct({
  kind: Schema.Literal("wsd"),
  peakLr: PeakLr,
  minLr: Schema.optionalWith(Lr, { default: () => 0 }),
  warmupSteps: Schema.optionalWith(Steps, { default: () => 0 }),
  decayFraction: Schema.optionalWith(Numbers.UnitInterval, { default: () => 0.2 }),
  decayShape: Schema.optionalWith(Schema.Literal("linear", "cosine"), { default: () => "linear" as const }),
});
export type WarmupStableDecay = typeof WarmupStableDecay.Type;

/** Any schedule, chosen by `kind`. The length in steps is not part of it: the phase plan supplies it. */
export const LrScheduleConfig = Schema.Union(Cosine, Constant, WarmupStableDecay).pipe(
  Schema.filter((c) =>
    c.kind !== "constant" && c.minLr > c.peakLr
      ? { path: ["minLr"], message: `minLr (${c.minLr}) must not exceed peakLr (${c.peakLr})` }
      : undefined,
  ),
);
export type LrScheduleConfig = typeof LrScheduleConfig.Type;
export type LrScheduleConfigInput = typeof LrScheduleConfig.Encoded;

/** The LR at an optimizer step (0-based, counted from the schedule's own start). */
export type Schedule = (step: number) => number;

/** The LR reached after warmup. */
export const peakOf = (c: LrScheduleConfig): number => (c.kind === "constant" ? c.lr : c.peakLr);

/** Steps in the decay tail of a WSD schedule over `totalSteps`. */
export const decayStepsOf = (c: WarmupStableDecay, totalSteps: number): number => Math.round(c.decayFraction * totalSteps);

/**
 * Problems with running `c` for `totalSteps` steps, each naming its key under `prefix`
 * (e.g. "schedule."). Empty when it fits. A schedule of 0 steps is never evaluated, so it always fits.
 */
export const check = (c: LrScheduleConfig, totalSteps: number, prefix = "", what = "the schedule"): Array<string> => {
  if (totalSteps === 0) return [];
  const issues: Array<string> = [];
  if (c.warmupSteps > totalSteps) {
    issues.push(`${prefix}warmupSteps: ${c.warmupSteps} warmup steps exceed the ${totalSteps} steps of ${what}`);
  } else if (c.kind === "wsd" && c.warmupSteps + decayStepsOf(c, totalSteps) > totalSteps) {
    issues.push(
      `${prefix}decayFraction: warmup (${c.warmupSteps}) plus decay (${decayStepsOf(c, totalSteps)}) steps ` +
        `exceed the ${totalSteps} steps of ${what}`,
    );
  }
  return issues;
};

/** `s` in [0,1], the fraction of a segment of `length` steps done at offset `s` (HF: max(1, length)). */
const progress = (s: number, length: number): number => Math.min(1, Math.max(0, s / Math.max(1, length)));

const halfCosine = (p: number): number => 0.5 * (1 + Math.cos(Math.PI * p));

/**
 * The schedule `c` over `totalSteps` steps. Steps past the end stay at the final LR. Throws a
 * RangeError for a schedule that does not fit (call `check` or `decode` first for a ConfigError).
 */
export const make = (c: LrScheduleConfig, totalSteps: number): Schedule => {
  const issues = check(c, totalSteps);
  if (issues.length > 0) throw new RangeError(issues.join("; "));
  const peak = peakOf(c);
  const W = c.warmupSteps;
  const warm = (s: number): number | undefined => (s < W ? (peak * s) / W : undefined);
  switch (c.kind) {
    case "constant":
      return (s) => warm(s) ?? peak;
    case "cosine":
      // HF: progress = (s − W)/max(1, total − W); LR reaches minLr at s = totalSteps.
      return (s) => warm(s) ?? c.minLr + (peak - c.minLr) * halfCosine(progress(s - W, totalSteps - W));
    case "wsd": {
      const decay = decayStepsOf(c, totalSteps);
      const decayStart = totalSteps - decay;
      const shape = c.decayShape === "cosine" ? halfCosine : (p: number) => 1 - p;
      return (s) => warm(s) ?? (s < decayStart ? peak : c.minLr + (peak - c.minLr) * shape(progress(s - decayStart, decay)));
    }
  }
};

/**
 * Decode a schedule config from unknown input (parsed JSON/YAML) and build it for `totalSteps`,
 * reporting every problem at once as a ConfigError from `source`.
 */
export const decode = (source: string, input: unknown, totalSteps: number): Either.Either<Schedule, ConfigError> =>
  Either.flatMap(Config.decodeConfig(LrScheduleConfig)(source, input), (c) => {
    const issues = check(c, totalSteps);
    return issues.length > 0 ? Either.left(new ConfigError({ source, issues })) : Either.right(make(c, totalSteps));
  });
