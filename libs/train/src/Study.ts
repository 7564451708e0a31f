/**
 * A study: a named set of runs over the same prepared data, compared against a token-level
 * baseline (docs/method.md §5.1, the paper's Table 1). This module is the pure part: the study
 * file's Schema, its expansion into one RunConfig per run and seed, and the pass/fail criterion.
 * Running it (prepare, train or resume each run, evaluate, report) is the trainer app's `study`.
 *
 * A study file:
 *
 *     name: paper-table1
 *     data: { corpus: embedded, tokenizer: "bpe:4096", validationFraction: 0.05, out: data/study }
 *     base: { model: { ... }, batch: { ... }, optim: { ... } }   # a partial RunConfig for every run
 *     runs:
 *       - { name: baseline, baseline: true, seeds: [1, 2, 3], set: { patch: { patchSize: 1 } } }
 *       - { name: k4-l2_3, seeds: [1, 2, 3], set: { patch: { patchSize: 4, patchFraction: 0.6667 } } }
 *     criterion: { run: k4-l2_3, lossWithin: 0.01, flopsAtMost: 0.55, timeAtMost: 0.6 }
 *
 * Each entry with `seeds` becomes one run per seed, named `<name>-s<seed>`; they form one row of
 * the report (mean and spread over seeds).
 */
import { Either, Schema } from "effect";
import { Config, ConfigError, Numbers } from "@patchlm/core";
import * as ConfigFile from "./ConfigFile";
import * as RunConfig from "./RunConfig";

const RunName = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, { message: () => "letters, digits, '.', '_' or '-' only, not starting with '.'" }));
const { PositiveInt, NonNegativeInt, UnitInterval: Fraction, NonNegativeNumber, PositiveNumber } = Numbers;
const Overlay = Schema.Record({ key: Schema.String, value: Schema.Unknown });

/** How to prepare the study's data (the trainer's `prepare` flags). */
export const DataSection = Schema.Struct({
  corpus: Schema.String,
  tokenizer: Schema.String,
  /** Share of documents held out, per folder of the corpus. Default 0.05. */
  validationFraction: Schema.optionalWith(Fraction, { default: () => 0.05 }),
  seed: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** The prepared data directory. */
  out: Schema.String,
});

export const RunEntry = Schema.Struct({
  name: RunName,
  /** The token-level baseline the others are measured against (exactly one entry). */
  baseline: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** One run per seed; default one run with the base config's seed. */
  seeds: Schema.optional(Schema.NonEmptyArray(NonNegativeInt)),
  /** A partial RunConfig over `base`. */
  set: Schema.optionalWith(Overlay, { default: () => ({}) }),
  /**
   * The token-level entry this row is measured against (its cost ratios and loss difference);
   * default the study's baseline. For variants with their own baseline, such as a multi-epoch pair.
   */
  compareTo: Schema.optional(RunName),
  /** One line for the report: what this row asks. */
  note: Schema.optional(Schema.String),
});
export type RunEntry = typeof RunEntry.Type;

/** The study's claim, fixed before any run: the row, and the bounds it must meet against the baseline. */
export const Criterion = Schema.Struct({
  run: RunName,
  /** Mean validation loss at most (1 + lossWithin) × the baseline's. */
  lossWithin: NonNegativeNumber,
  /** Training FLOPs at most this × the baseline's. */
  flopsAtMost: PositiveNumber,
  /** Measured time (wall on a quiet machine, else CPU) at most this × the baseline's. */
  timeAtMost: PositiveNumber,
});
export type Criterion = typeof Criterion.Type;

export const StudySpec = Schema.Struct({
  name: RunName,
  description: Schema.optional(Schema.String),
  data: DataSection,
  /** Where run directories go; default runs/studies/<name>. */
  runsDir: Schema.optional(Schema.String),
  /** Where each finished run's results and the report go (meant to be committed); default docs/results/<name>. */
  results: Schema.optional(Schema.String),
  base: Schema.optionalWith(Overlay, { default: () => ({}) }),
  runs: Schema.NonEmptyArray(RunEntry),
  criterion: Schema.optional(Criterion),
  /** Final evaluation of each run. */
  evaluation: Schema.optionalWith(
    Schema.Struct({
      /** Items per cloze task (the built-in suite from the validation documents). */
      clozeItems: Schema.optionalWith(PositiveInt, { default: () => 200 }),
      /** Scored tokens per block for standard errors (see Perplexity.blocks). */
      blockTokens: Schema.optionalWith(PositiveInt, { default: () => 4096 }),
    }),
    { default: () => ({ clozeItems: 200, blockTokens: 4096 }) },
  ),
});
export type StudySpec = typeof StudySpec.Type;

/** One run of a study. */
export interface StudyRun {
  /** Run name: `<entry>-s<seed>` for entries with seeds, else the entry's name. */
  readonly name: string;
  /** The entry (report row) it belongs to. */
  readonly entry: string;
  readonly seed: number;
  readonly baseline: boolean;
  /** The entry it is compared against (itself for a baseline). */
  readonly compareTo: string;
  readonly config: RunConfig.RunConfig;
}

export interface Study {
  readonly spec: StudySpec;
  readonly runsDir: string;
  readonly results: string;
  readonly runs: ReadonlyArray<StudyRun>;
}

/**
 * Decode a study file's contents and expand it into runs, reporting every problem at once: the
 * file's own keys, and each run's config as the trainer would see it (by run name).
 */
export const expand = (source: string, input: unknown): Either.Either<Study, ConfigError> =>
  Either.flatMap(Config.decodeConfig(StudySpec)(source, input), (spec) => {
    const runsDir = spec.runsDir ?? `runs/studies/${spec.name}`;
    const results = spec.results ?? `docs/results/${spec.name}`;
    const issues: Array<string> = [];
    const runs: Array<StudyRun> = [];
    const names = new Set<string>();
    const baselines = spec.runs.filter((r) => r.baseline);
    if (baselines.length !== 1) issues.push(`runs: exactly one entry needs baseline: true (found ${baselines.length})`);
    spec.runs.forEach((entry, i) => {
      const seeds = entry.seeds ?? [undefined];
      for (const seed of seeds) {
        const name = seed === undefined ? entry.name : `${entry.name}-s${seed}`;
        if (names.has(name)) issues.push(`runs[${i}]: run name "${name}" appears twice`);
        names.add(name);
        const merged = ConfigFile.merge(spec.base, entry.set, { name, runsDir, data: spec.data.out }, seed === undefined ? {} : { seed });
        const decoded = RunConfig.decode(`${source}: runs[${i}] (${name})`, merged);
        if (Either.isLeft(decoded)) {
          issues.push(...decoded.left.issues.map((m) => `runs[${i}] (${name}): ${m}`));
          continue;
        }
        const compareTo = entry.baseline ? entry.name : (entry.compareTo ?? baselines[0]?.name ?? entry.name);
        runs.push({ name, entry: entry.name, seed: decoded.right.seed, baseline: entry.baseline, compareTo, config: decoded.right });
      }
    });
    const baseline = baselines[0];
    if (baseline !== undefined) {
      for (const r of runs.filter((x) => x.baseline)) {
        if (r.config.patch.patchSize !== 1 && r.config.patch.patchFraction !== 0) {
          issues.push(`runs (${r.name}): the baseline must be token-level (patch.patchSize 1 or patch.patchFraction 0)`);
        }
      }
    }
    for (const entry of spec.runs) {
      if (entry.compareTo === undefined) continue;
      const target = spec.runs.find((e) => e.name === entry.compareTo);
      if (target === undefined) issues.push(`runs (${entry.name}): compareTo names no entry ("${entry.compareTo}")`);
      else {
        const tokenLevel = runs.filter((r) => r.entry === target.name).every((r) => r.config.patch.patchSize === 1 || r.config.patch.patchFraction === 0);
        if (!tokenLevel) issues.push(`runs (${entry.name}): compareTo "${entry.compareTo}" must be a token-level entry (patch.patchSize 1)`);
      }
    }
    if (spec.criterion !== undefined && !spec.runs.some((r) => r.name === spec.criterion!.run)) {
      issues.push(`criterion.run: no entry named "${spec.criterion.run}"`);
    }
    return issues.length > 0 ? Either.left(new ConfigError({ source, issues })) : Either.right({ spec, runsDir, results, runs });
  });

/**
 * The order to train in: the first seed of every entry, then the second seeds, and so on, so that
 * a partly finished study already has every row.
 */
export const trainingOrder = (runs: ReadonlyArray<StudyRun>): Array<StudyRun> => {
  const rank = new Map<string, number>();
  const seen = new Map<string, number>();
  for (const r of runs) {
    const k = seen.get(r.entry) ?? 0;
    rank.set(r.name, k);
    seen.set(r.entry, k + 1);
  }
  return runs.map((r, i) => ({ r, i })).sort((a, b) => rank.get(a.r.name)! - rank.get(b.r.name)! || a.i - b.i).map((x) => x.r);
};

/** The config that identifies a run's results: everything but where it ran and on which backend. */
export const identity = (c: RunConfig.RunConfig): unknown => {
  const { runsDir: _r, backend: _b, ...rest } = c;
  return rest;
};
