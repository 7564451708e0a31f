/**
 * Turning a validated RunConfig plus facts about the data into the concrete pieces a run needs:
 * the model config, the phase plan, each phase's data range and the gradient accumulation.
 * Pure functions; every problem is a ConfigError naming the config key.
 */
import { Either, Option } from "effect";
import { Config, ConfigError } from "@patchlm/core";
import { Presets } from "@patchlm/model";
import { PhasePlan } from "@patchlm/schedulers";
import type { RunConfig } from "./RunConfig";

/** The model config: a preset with overrides; the vocabulary always comes from the tokenizer. */
export const modelConfig = (c: RunConfig, vocabSize: number, source = "run config"): Either.Either<Config.ModelConfig, ConfigError> => {
  const preset = Presets.lookup(c.model.preset);
  if (Option.isNone(preset)) {
    return Either.left(new ConfigError({ source, issues: [`model.preset: unknown preset "${c.model.preset}"; known: ${Presets.names.join(", ")}`] }));
  }
  if (c.model.vocabSize !== undefined && c.model.vocabSize !== vocabSize) {
    return Either.left(
      new ConfigError({ source, issues: [`model.vocabSize: ${c.model.vocabSize} differs from the data's tokenizer vocabulary (${vocabSize}); omit it`] }),
    );
  }
  const { preset: _preset, ...overrides } = c.model;
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  // RoPE needs no table beyond the positions used, so the context defaults to the run's T.
  const merged = { ...preset.value, contextLength: c.batch.seqLen, ...defined, vocabSize };
  return Either.flatMap(Config.decodeConfig(Config.ModelConfig)(source, merged), (m) =>
    m.contextLength < c.batch.seqLen
      ? Either.left(new ConfigError({ source, issues: [`batch.seqLen: ${c.batch.seqLen} positions exceed model.contextLength ${m.contextLength}`] }))
      : Either.right(m),
  );
};

/** The paper's warmup, 2,000 steps, or 2% of the shortest span one schedule covers if that is less. */
export const defaultWarmup = (plan: Pick<PhasePlan.PhasePlan, "phases" | "totalSteps">, switchPolicy: "reset" | "continue"): number => {
  const spans = switchPolicy === "continue" ? [plan.totalSteps] : plan.phases.filter((p) => p.steps > 0).map((p) => p.steps);
  return Math.min(2000, Math.floor(0.02 * Math.min(...spans)));
};

// PhasePlan names its own keys; a RunConfig user knows them by the config's names.
const configKeys: ReadonlyArray<readonly [RegExp, string]> = [
  [/^schedule\./, "optim."],
  [/^budget\.tokens/, "batch.tokens"],
  [/^tokensPerStep/, "batch.batchTokens"],
  [/^seqLen/, "batch.seqLen"],
  [/^patchSize/, "patch.patchSize"],
  [/^patchFraction/, "patch.patchFraction"],
];
const renameKeys = (e: ConfigError): ConfigError =>
  new ConfigError({ source: e.source, issues: e.issues.map((m) => configKeys.reduce((acc, [from, to]) => acc.replace(from, to), m)) });

/** The phase plan from the run config (λ split, steps per phase, LR schedules). */
export const phasePlan = (c: RunConfig, source = "run config"): Either.Either<PhasePlan.PhasePlan, ConfigError> => {
  const o = c.optim;
  const decode = (warmupSteps: number) => {
    const schedule =
      o.schedule === "constant"
        ? { kind: "constant" as const, lr: o.lr, warmupSteps }
        : o.schedule === "wsd"
          ? { kind: "wsd" as const, peakLr: o.lr, minLr: o.minLr, warmupSteps, decayFraction: o.decayFraction }
          : { kind: "cosine" as const, peakLr: o.lr, minLr: o.minLr, warmupSteps };
    return Either.mapLeft(
      PhasePlan.decode(source, {
        patchSize: c.patch.patchSize,
        patchFraction: c.patch.patchFraction,
        switchPolicy: c.patch.switchPolicy,
        budget: { tokens: c.batch.tokens },
        tokensPerStep: c.batch.batchTokens,
        seqLen: c.batch.seqLen,
        schedule,
      }),
      renameKeys,
    );
  };
  if (o.warmupSteps !== undefined) return decode(o.warmupSteps);
  // The default depends on the plan's steps: plan once without warmup to count them.
  return Either.flatMap(decode(0), (plan) => decode(defaultWarmup(plan, c.patch.switchPolicy)));
};

/** Sequences per micro-batch in a phase: `batch.microBatch`, by default the whole step. */
export const microBatch = (c: RunConfig, phase: Pick<PhasePlan.PhaseSpec, "sequencesPerStep">): number => c.batch.microBatch ?? phase.sequencesPerStep;

/** Sequences per forward pass when evaluating: `batch.microBatch`, by default the token phase's whole step. */
export const evalBatch = (c: RunConfig, plan: PhasePlan.PhasePlan): number => c.batch.microBatch ?? plan.token.sequencesPerStep;

/** Micro-batches per optimizer step in a phase: sequencesPerStep / microBatch, which must be whole. */
export const accumulation = (c: RunConfig, phase: PhasePlan.PhaseSpec, source = "run config"): Either.Either<number, ConfigError> => {
  const n = phase.sequencesPerStep / microBatch(c, phase);
  return Number.isInteger(n) && n >= 1
    ? Either.right(n)
    : Either.left(
        new ConfigError({
          source,
          issues: [
            `batch.microBatch: ${c.batch.microBatch} sequences does not divide the ${phase.phase} phase's ${phase.sequencesPerStep} ` +
              `sequences of ${phase.windowLength} tokens per step (batch.batchTokens ${c.batch.batchTokens})`,
          ],
        }),
      );
};

/** Token range [start, end) of the train split. */
export interface Range {
  readonly startToken: number;
  readonly endToken: number;
}

/**
 * The data each phase reads (paper §2: the patch phase the first λ of the data, the token phase
 * the rest), out of the first `unique` tokens of the train split (default all of it). When the
 * budget fits, the phases get disjoint, adjacent ranges [0, λ·D) and [λ·D, D): one pass, no
 * token seen twice. When the budget exceeds the data (the multi-epoch form), both phases cycle
 * over all of it, the patch phase for the first λ of the epochs.
 */
export const dataRanges = (
  plan: PhasePlan.PhasePlan,
  trainTokens: number,
  unique: number | undefined = undefined,
  source = "run config",
): Either.Either<{ patch: Range; token: Range }, ConfigError> => {
  if (unique !== undefined && unique > trainTokens) {
    return Either.left(
      new ConfigError({ source, issues: [`batch.uniqueTokens: ${unique} exceeds the ${trainTokens} tokens of the train split`] }),
    );
  }
  const available = unique ?? trainTokens;
  const whole = { startToken: 0, endToken: available };
  if (plan.totalTokens > available) return Either.right({ patch: whole, token: whole });
  const cut = plan.patch.tokens;
  return Either.right({ patch: { startToken: 0, endToken: cut }, token: { startToken: cut, endToken: plan.totalTokens } });
};
