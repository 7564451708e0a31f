/**
 * The run comparison report: validation loss against tokens and against FLOPs for every run, with
 * each run's patch → token switch marked, and a final table laid out like the paper's Table 1
 * (docs/method.md §5.1): run, K, λ, cost (λ/K + 1 − λ, and measured: FLOPs and wall time
 * relative to the token-only baseline among the runs, K = 1 or λ = 0), validation loss,
 * perplexity, bits per byte, task accuracies and their average.
 *
 * Reads what the trainer writes: `config.json` (the resolved run config), `metrics.jsonl`
 * (@patchlm/metrics `MetricRecord` lines) and, when present, `summary.json` (the totals of the
 * last invocation). The figures of each run come from `evaluateRun` (its latest checkpoint
 * evaluated) or, without evaluating, `loggedEval` (its last logged validation loss).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Effect, Either } from "effect";
import { AtomicFile } from "@patchlm/core";
import { Chart, MetricRecord } from "@patchlm/metrics";
import * as Checkpoints from "./Checkpoints";
import * as Choice from "./Choice";
import * as Cloze from "./Cloze";
import * as Documents from "./Documents";
import { EvalInputError } from "./Errors";
import * as Perplexity from "./Perplexity";
import * as Tasks from "./Tasks";

export interface Run {
  readonly name: string;
  readonly dir: string;
  readonly K: number;
  readonly lambda: number;
  /** The patch strategy (config.json `patch.strategy`; "mean" when unnamed); "–" for a token-only run. */
  readonly strategy: string;
  /** The prepared data directory the run trained on (config.json `data`). */
  readonly data: string | undefined;
  readonly records: ReadonlyArray<MetricRecord.MetricRecord>;
  /** Cumulative totals at the end of the run. */
  readonly tokens: number;
  readonly flops: number;
  readonly wallSeconds: number;
  /** Where the patch phase ended, when the run had one. */
  readonly switchAt: { readonly tokens: number; readonly flops: number } | undefined;
}

/** Token-only training: no patch phase. */
export const isTokenOnly = (r: Pick<Run, "K" | "lambda">): boolean => r.K === 1 || r.lambda === 0;

/** The paper's relative cost λ/K + 1 − λ (docs/method.md §3.2). */
export const theoreticalCost = (r: Pick<Run, "K" | "lambda">): number => (isTokenOnly(r) ? 1 : r.lambda / r.K + 1 - r.lambda);

type Json = Record<string, unknown>;

const readJson = (file: string): Either.Either<Json, EvalInputError> => {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return Either.left(new EvalInputError({ path: file, reason: code === "ENOENT" ? "NotFound" : "Unreadable", detail: (e as Error).message }));
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return Either.right(v as Json);
    return Either.left(new EvalInputError({ path: file, reason: "Malformed", detail: "expected a JSON object" }));
  } catch (e) {
    return Either.left(new EvalInputError({ path: file, reason: "Malformed", detail: `not JSON: ${(e as Error).message}` }));
  }
};

const num = (o: unknown, key: string): number | undefined => {
  const v = typeof o === "object" && o !== null ? (o as Json)[key] : undefined;
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
};

/** Where the patch phase ended: the last patch-phase record before the first token-phase one. */
export const switchPoint = (records: ReadonlyArray<MetricRecord.MetricRecord>): Run["switchAt"] => {
  const i = records.findIndex((r, k) => k > 0 && r.phase === "token" && records[k - 1].phase === "patch");
  return i < 0 ? undefined : { tokens: records[i - 1].totalTokens, flops: records[i - 1].totalFlops };
};

/** Read a run directory. */
export const loadRun = Effect.fn("Report.loadRun")(function* (dir: string) {
  if (!fs.existsSync(dir)) return yield* new EvalInputError({ path: dir, reason: "NotFound", detail: "no such run directory" });
  const config = yield* readJson(path.join(dir, "config.json"));
  const metricsPath = path.join(dir, "metrics.jsonl");
  const text = yield* Effect.try({
    try: () => fs.readFileSync(metricsPath, "utf8"),
    catch: (e) =>
      new EvalInputError({
        path: metricsPath,
        reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unreadable",
        detail: (e as Error).message,
      }),
  });
  const records = yield* Either.mapLeft(MetricRecord.parseJsonl(text, metricsPath), (e) => new EvalInputError({ path: metricsPath, reason: "Malformed", detail: e.issues.join("; ") }));
  const summary = Either.getOrUndefined(readJson(path.join(dir, "summary.json")));
  const last = records[records.length - 1];
  const patch = config.patch as Json | undefined;
  return {
    name: typeof config.name === "string" ? config.name : path.basename(dir),
    dir,
    K: num(patch, "patchSize") ?? 1,
    lambda: num(patch, "patchFraction") ?? 0,
    strategy: (num(patch, "patchSize") ?? 1) === 1 || (num(patch, "patchFraction") ?? 0) === 0 ? "–" : typeof patch?.strategy === "string" ? patch.strategy : "mean",
    data: typeof config.data === "string" ? config.data : undefined,
    records,
    tokens: num(summary, "tokens") ?? last?.totalTokens ?? 0,
    flops: num(summary, "flops") ?? last?.totalFlops ?? 0,
    wallSeconds: num(summary, "wallSeconds") ?? last?.elapsedSeconds ?? 0,
    switchAt: switchPoint(records),
  } satisfies Run;
});

/** Evaluation figures of one run (any may be missing). */
export interface RunEval {
  readonly loss?: number;
  readonly ppl?: number;
  readonly bitsPerByte?: number;
  /** Task name → accuracy in [0, 1] (acc_norm for choice tasks, acc for last-word tasks). */
  readonly tasks?: Readonly<Record<string, number>>;
}

export interface EvaluateRunOptions {
  /** Task names for the table (files, `FORMAT:FILE`, or `cloze`; see `Cloze.loadTasks`). */
  readonly tasks: ReadonlyArray<string>;
  /** Validation tokens scored, at most. */
  readonly maxTokens: number;
  readonly batchSize: number;
  /** Items per cloze task (seed 0, so every run is asked the same items). */
  readonly clozeItems: number;
}

/**
 * A run's latest checkpoint evaluated: loss, perplexity and bits per byte on at most `maxTokens`
 * tokens of its own validation split (`Perplexity.scoreData`: windows of the model's context,
 * stride = window), when its data directory is a prepared one, and the headline accuracy of
 * each task.
 */
export const evaluateRun = Effect.fn("Report.evaluateRun")(function* (run: Run, o: EvaluateRunOptions) {
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const m = yield* Checkpoints.open(run.dir);
      const scored = run.data !== undefined && Documents.isPrepared(run.data) ? yield* Perplexity.scoreData(m, run.data, { maxTokens: o.maxTokens, batchSize: o.batchSize }) : undefined;
      const list = yield* Cloze.loadTasks(o.tasks, { skipBad: false, data: run.data, tokenizer: m.tokenizer, clozeItems: o.clozeItems, seed: 0 });
      const scorer = Choice.modelScorer(m.params, m.cfg, { batchSize: o.batchSize });
      const tasks: Record<string, number> = {};
      for (const t of list) tasks[t.name] = Tasks.headline(Tasks.evaluate(t, m.tokenizer, scorer)).value;
      const ppl = scored === undefined ? {} : { loss: scored.loss, ppl: scored.ppl, bitsPerByte: scored.bitsPerByte };
      return { ...ppl, tasks } satisfies RunEval;
    }),
  );
});

/** A run's figures without evaluating anything: its last logged validation loss stands in. */
export const loggedEval = (run: Run): RunEval => {
  const last = [...run.records].reverse().find((x) => x.values[MetricRecord.Keys.valLoss] !== undefined)?.values[MetricRecord.Keys.valLoss];
  return last === undefined ? {} : { loss: last, ppl: Math.exp(last) };
};

/** The token-only baseline: the first token-only run, if any. */
export const baseline = (runs: ReadonlyArray<Run>): Run | undefined => runs.find(isTokenOnly);

export interface Row {
  readonly run: string;
  readonly K: number;
  readonly lambda: number;
  readonly strategy: string;
  readonly theory: number;
  /** Relative to the baseline; undefined without one (or with a zero baseline). */
  readonly flopsRatio: number | undefined;
  readonly wallRatio: number | undefined;
  readonly eval: RunEval;
  /** Mean of the task accuracies present. */
  readonly average: number | undefined;
}

export const rows = (runs: ReadonlyArray<Run>, evals: ReadonlyArray<RunEval>): Array<Row> => {
  const base = baseline(runs);
  const ratio = (a: number, b: number | undefined) => (b === undefined || b <= 0 ? undefined : a / b);
  return runs.map((r, i) => {
    const ev = evals[i] ?? {};
    const accs = Object.values(ev.tasks ?? {});
    return {
      run: r.name,
      K: r.K,
      lambda: r.lambda,
      strategy: r.strategy,
      theory: theoreticalCost(r),
      flopsRatio: ratio(r.flops, base?.flops),
      wallRatio: ratio(r.wallSeconds, base?.wallSeconds),
      eval: ev,
      average: accs.length === 0 ? undefined : accs.reduce((a, b) => a + b, 0) / accs.length,
    };
  });
};

const fraction = (x: number): string => {
  for (const d of [2, 3, 4, 5, 6, 8, 10]) {
    const n = Math.round(x * d);
    if (n > 0 && n < d && Math.abs(n / d - x) < 1e-9) return `${n}/${d}`;
  }
  return String(Math.round(x * 1000) / 1000);
};

const fixed = (x: number | undefined, digits: number, suffix = ""): string => (x === undefined || !Number.isFinite(x) ? "–" : `${x.toFixed(digits)}${suffix}`);

/** The Table 1 style markdown table. Task columns are the union of task names, in first-seen order. */
export const table = (runs: ReadonlyArray<Run>, evals: ReadonlyArray<RunEval>): string => {
  const rs = rows(runs, evals);
  const tasks = [...new Set(evals.flatMap((e) => Object.keys(e.tasks ?? {})))];
  const head = ["run", "K", "λ", "strategy", "cost (λ/K+1−λ)", "cost × FLOPs", "cost × wall", "val loss", "ppl", "bits/byte", ...tasks, "avg"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`];
  for (const r of rs) {
    const cells = [
      r.run,
      String(r.K),
      r.lambda === 0 ? "0" : fraction(r.lambda),
      r.strategy,
      fixed(r.theory, 3, "×"),
      fixed(r.flopsRatio, 3, "×"),
      fixed(r.wallRatio, 3, "×"),
      fixed(r.eval.loss, 4),
      fixed(r.eval.ppl, 2),
      fixed(r.eval.bitsPerByte, 4),
      ...tasks.map((t) => fixed(r.eval.tasks?.[t] === undefined ? undefined : r.eval.tasks[t] * 100, 1)),
      fixed(r.average === undefined ? undefined : r.average * 100, 1),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
};

/** The two charts: validation loss against tokens and against FLOPs, one line per run, switches marked. */
export const charts = (runs: ReadonlyArray<Run>): [Chart.ChartSpec, Chart.ChartSpec] => {
  const make = (x: "tokens" | "flops"): Chart.ChartSpec => ({
    title: `Validation loss (token-level) vs ${x === "tokens" ? "tokens" : "training FLOPs"}`,
    xLabel: x === "tokens" ? "tokens seen" : "training FLOPs",
    yLabel: "validation loss (nats/token)",
    series: runs.map((r, i) => ({
      name: `${r.name} (K=${r.K}, λ=${r.lambda === 0 ? "0" : fraction(r.lambda)})`,
      points: r.records
        .filter((m) => m.values[MetricRecord.Keys.valLoss] !== undefined)
        .map((m) => [x === "tokens" ? m.totalTokens : m.totalFlops, m.values[MetricRecord.Keys.valLoss]] as const),
      color: Chart.palette[i % Chart.palette.length],
    })),
    markers: runs.flatMap((r) => (r.switchAt === undefined ? [] : [{ x: r.switchAt[x], label: `${r.name}: patch → token` }])),
  });
  return [make("tokens"), make("flops")];
};

export const PLOT_TOKENS = "loss-vs-tokens.png";
export const PLOT_FLOPS = "loss-vs-flops.png";
export const REPORT_FILE = "report.md";

/** The markdown document (plots referenced by file name). */
export const markdown = (runs: ReadonlyArray<Run>, evals: ReadonlyArray<RunEval>, notes: ReadonlyArray<string> = []): string => {
  const base = baseline(runs);
  return [
    "# Run comparison",
    "",
    `Runs: ${runs.map((r) => `\`${r.name}\` (${r.dir})`).join(", ")}.`,
    "",
    "## Validation loss",
    "",
    "Token-level validation loss in both phases (the patch phase's training loss is a bag loss with floor ln K and is not drawn). Dashed lines mark each run's switch from patch to token level.",
    "",
    `![validation loss vs tokens](${PLOT_TOKENS})`,
    "",
    `![validation loss vs FLOPs](${PLOT_FLOPS})`,
    "",
    "## Summary (paper Table 1 layout)",
    "",
    table(runs, evals),
    "",
    base === undefined
      ? "No token-only run (K = 1 or λ = 0) among these runs: measured cost ratios are left out; the theoretical cost is λ/K + 1 − λ."
      : `Cost × is relative to the token-only baseline \`${base.name}\`: total training FLOPs and wall-clock seconds.`,
    "Perplexity is per token of each run's own tokenizer; bits per byte is comparable across tokenizers. Task columns are accuracy in % (acc_norm for multiple choice, acc for last-word tasks); avg is their mean.",
    ...notes.map((n) => `\n${n}`),
    "",
  ].join("\n");
};

/** Write report.md and the two PNG plots into `outDir`. Returns the files written. */
export const write = Effect.fn("Report.write")(function* (outDir: string, runs: ReadonlyArray<Run>, evals: ReadonlyArray<RunEval>, notes: ReadonlyArray<string> = []) {
  const [byTokens, byFlops] = charts(runs);
  const files: Array<[string, string | Uint8Array]> = [
    [PLOT_TOKENS, Chart.svgToPng(Chart.renderLineChart(byTokens))],
    [PLOT_FLOPS, Chart.svgToPng(Chart.renderLineChart(byFlops))],
    [REPORT_FILE, markdown(runs, evals, notes)],
  ];
  // Each file whole or not at all: a report is read by people and scripts while runs go on.
  for (const [name, data] of files) yield* AtomicFile.write(path.join(outDir, name), data);
  return files.map(([name]) => path.join(outDir, name));
});
