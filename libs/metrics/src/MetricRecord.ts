import { FileSystem } from "@effect/platform";
import { Effect, Either, Schema } from "effect";
import * as M from "fp-ts/Monoid";
import * as N from "fp-ts/number";
import * as R from "fp-ts/Record";
import { Config, ConfigError } from "@patchlm/core";
import { fileError } from "./internal/Io";

export type Phase = "patch" | "token";

/**
 * One logged point of a run: a training log interval (one or more steps) or an evaluation.
 * `tokens`, `flops` and `wallSeconds` are the amounts *in the steps this record covers* (0 for an
 * evaluation); the `total*`/`elapsedSeconds` fields are cumulative since the run started, at the
 * end of the record (resume-aware: the trainer restores them from the checkpoint).
 */
export interface MetricRecord {
  /** Global optimizer steps completed at the end of this record. */
  readonly step: number;
  readonly phase: Phase;
  readonly tokens: number;
  readonly flops: number;
  readonly wallSeconds: number;
  readonly totalTokens: number;
  readonly totalFlops: number;
  readonly elapsedSeconds: number;
  /** Named values, e.g. `Keys.loss`, `Keys.lr`, `Keys.valLoss`. */
  readonly values: Readonly<Record<string, number>>;
}

/**
 * The value names the project's trainer, sinks and plots agree on. Slashes group tags in
 * TensorBoard. `loss` is the training objective of the phase: the patch (bag) loss in the patch
 * phase, whose floor is ln K, and token cross-entropy in the token phase (docs/method.md §2.3).
 */
export const Keys = {
  loss: "train/loss",
  lr: "train/lr",
  gradNorm: "train/grad_norm",
  /** Token-level validation loss, comparable across phases and runs. */
  valLoss: "val/loss",
  valPerplexity: "val/ppl",
  tokensPerSecond: "perf/tokens_per_s",
  flopsPerSecond: "perf/flops_per_s",
  mfu: "perf/mfu",
} as const;

/** Summary statistics of one value over the records merged so far. */
export interface Stat {
  readonly count: number;
  readonly sum: number;
  readonly min: number;
  readonly max: number;
  /** The value of the latest record that had it. */
  readonly last: number | undefined;
}

/** Records merged over a log interval, before reduction back to one record. */
export interface Accumulated extends Omit<MetricRecord, "phase" | "values"> {
  /** How many records were merged. */
  readonly records: number;
  readonly phase: Phase | undefined;
  readonly values: Readonly<Record<string, Stat>>;
}

/** Right-biased: the later defined value wins. Associative, with `undefined` as identity. */
const lastDefined = <A>(): M.Monoid<A | undefined> => ({ concat: (x, y) => (y === undefined ? x : y), empty: undefined });

const StatMonoid: M.Monoid<Stat> = M.struct({
  count: N.MonoidSum,
  sum: N.MonoidSum,
  min: M.min(N.Bounded),
  max: M.max(N.Bounded),
  last: lastDefined<number>(),
});

/**
 * Merging in time order: amounts add up, cumulative totals and the step take the maximum (they
 * only grow), the phase is the latest, and each value keeps count/sum/min/max/last.
 */
export const AccumulatedMonoid: M.Monoid<Accumulated> = M.struct({
  records: N.MonoidSum,
  step: M.max(N.Bounded),
  phase: lastDefined<Phase>(),
  tokens: N.MonoidSum,
  flops: N.MonoidSum,
  wallSeconds: N.MonoidSum,
  totalTokens: M.max(N.Bounded),
  totalFlops: M.max(N.Bounded),
  elapsedSeconds: M.max(N.Bounded),
  values: R.getMonoid(StatMonoid),
});

export const accumulate = (r: MetricRecord): Accumulated => ({
  records: 1,
  step: r.step,
  phase: r.phase,
  tokens: r.tokens,
  flops: r.flops,
  wallSeconds: r.wallSeconds,
  totalTokens: r.totalTokens,
  totalFlops: r.totalFlops,
  elapsedSeconds: r.elapsedSeconds,
  values: R.map((v: number): Stat => ({ count: 1, sum: v, min: v, max: v, last: v }))(r.values),
});

export type Reduction = "mean" | "sum" | "min" | "max" | "last";

/** How each value reduces over an interval when not told otherwise: the LR is read at the end, the rest averaged. */
export const defaultReductions: Readonly<Record<string, Reduction>> = { [Keys.lr]: "last" };

const reduce = (s: Stat, how: Reduction): number => (how === "mean" ? s.sum / s.count : how === "last" ? s.last! : s[how]);

/** One record from an accumulation; undefined when nothing was accumulated. */
export const summarize = (
  a: Accumulated,
  reductions: Readonly<Record<string, Reduction>> = defaultReductions,
  fallback: Reduction = "mean",
): MetricRecord | undefined =>
  a.records === 0 || a.phase === undefined
    ? undefined
    : {
        step: a.step,
        phase: a.phase,
        tokens: a.tokens,
        flops: a.flops,
        wallSeconds: a.wallSeconds,
        totalTokens: a.totalTokens,
        totalFlops: a.totalFlops,
        elapsedSeconds: a.elapsedSeconds,
        values: Object.fromEntries(Object.entries(a.values).map(([k, s]) => [k, reduce(s, reductions[k] ?? fallback)])),
      };

/** Merge records (in time order) into one: e.g. every step of a log interval into the logged line. */
export const aggregate = (
  records: ReadonlyArray<MetricRecord>,
  reductions: Readonly<Record<string, Reduction>> = defaultReductions,
): MetricRecord | undefined => summarize(M.concatAll(AccumulatedMonoid)(records.map(accumulate)), reductions);

// JSON has no NaN or Infinity; a NaN loss is worth keeping, so they travel as the strings "NaN",
// "Infinity" and "-Infinity".
const JsonNumber = Schema.Union(Schema.Number, Schema.NumberFromString);

const RecordSchema = Schema.Struct({
  step: Schema.Number,
  phase: Schema.Literal("patch", "token"),
  tokens: JsonNumber,
  flops: JsonNumber,
  wallSeconds: JsonNumber,
  totalTokens: JsonNumber,
  totalFlops: JsonNumber,
  elapsedSeconds: JsonNumber,
  values: Schema.Record({ key: Schema.String, value: JsonNumber }),
});

/** One JSONL line (with its newline). */
export const toJsonLine = (r: MetricRecord): string =>
  JSON.stringify(r, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)) + "\n";

/**
 * Records from `metrics.jsonl` text. A resumed run appends the steps after its checkpoint again;
 * a record whose step goes back supersedes the earlier records from that step on, so the result is
 * the history of the run as it finally happened.
 */
export const parseJsonl = (text: string, path = "metrics.jsonl"): Either.Either<Array<MetricRecord>, ConfigError> => {
  const out: Array<MetricRecord> = [];
  const issues: Array<string> = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      issues.push(`line ${i + 1}: not valid JSON`);
      return;
    }
    const r = Config.decodeConfig(RecordSchema)(`${path}:${i + 1}`, json);
    if (Either.isLeft(r)) issues.push(...r.left.issues.map((m) => `line ${i + 1}: ${m}`));
    else supersede(out, r.right);
  });
  return issues.length > 0 ? Either.left(new ConfigError({ source: path, issues })) : Either.right(out);
};

const supersede = (out: Array<MetricRecord>, r: MetricRecord): void => {
  const last = out.length > 0 ? out[out.length - 1].step : -Infinity;
  if (r.step < last) {
    let keep = out.length;
    while (keep > 0 && out[keep - 1].step >= r.step) keep--;
    out.length = keep;
  }
  out.push(r);
};

/** Read a `metrics.jsonl` file (see `parseJsonl`). */
export const readJsonl = Effect.fn("MetricRecord.readJsonl")(function* (path: string) {
  const fs = yield* FileSystem.FileSystem;
  const text = yield* fs.readFileString(path).pipe(Effect.mapError(fileError(path, "read")));
  return yield* parseJsonl(text, path);
});
