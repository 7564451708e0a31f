/**
 * The report of a study (see @patchlm/train `Study`): one row per study entry in the paper's
 * Table 1 layout (docs/method.md §5.1), with the spread over seeds, the difference from the
 * token-level baseline and its standard error, the study's criterion checked, and validation
 * loss plotted against tokens, FLOPs and elapsed time with every run on one figure.
 *
 * Pure: it reads `RunResult`s (what the study runner saves for each finished run) and returns
 * markdown, chart specs and a JSON-able object; the runner writes the files.
 */
import { Chart, MetricRecord } from "@patchlm/metrics";
import * as Perplexity from "./Perplexity";
import { theoreticalCost } from "./Report";

export interface Validation {
  readonly loss: number;
  readonly ppl: number;
  readonly bitsPerByte: number;
  readonly tokens: number;
  readonly bytes: number;
  readonly standardError: number;
  readonly blocks: Perplexity.Blocks;
}

export interface Estimate {
  readonly value: number;
  readonly stderr: number;
}

/** What the study keeps of one finished (or failed) run. */
export interface RunResult {
  readonly name: string;
  readonly entry: string;
  readonly seed: number;
  readonly baseline: boolean;
  /** The token-level entry this run's row is measured against. */
  readonly compareTo: string;
  readonly K: number;
  readonly lambda: number;
  readonly strategy: string;
  readonly status: "done" | "failed";
  readonly error?: string;
  readonly tokens: number;
  readonly flops: number;
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  /** Highest 1-minute load average seen while the run trained, and the machine's cores. */
  readonly load: { readonly max: number; readonly cores: number };
  readonly validation?: Validation;
  /** Cloze task name → accuracy. */
  readonly cloze: Readonly<Record<string, Estimate>>;
  readonly records: ReadonlyArray<MetricRecord.MetricRecord>;
  /** Training time modeled from quiet per-step times of the run's shapes (the study's --time-steps), if measured. */
  readonly stepSeconds?: number;
}

/** A run trained on a quiet machine: nothing beyond its own threads loaded the cores. */
export const quiet = (r: Pick<RunResult, "load">): boolean => r.load.max <= r.load.cores + 0.5;

const mean = (xs: ReadonlyArray<number>): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
const sd = (xs: ReadonlyArray<number>): number => {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};

export interface Row {
  readonly entry: string;
  readonly baseline: boolean;
  readonly compareTo: string;
  readonly runs: ReadonlyArray<string>;
  readonly K: number;
  readonly lambda: number;
  readonly strategy: string;
  readonly theory: number;
  readonly flopsRatio: number;
  readonly wallRatio: number;
  readonly cpuRatio: number;
  /** Modeled training time (quiet per-step times × steps) over the baseline's; NaN when not measured. */
  readonly stepRatio: number;
  /** Mean validation loss over the row's runs. */
  readonly loss: number;
  /** Standard deviation over seeds (NaN with one run). */
  readonly lossSd: number;
  /** Standard error of the validation loss of a single run (mean over runs): evaluation noise only. */
  readonly lossSe: number;
  /**
   * Mean loss minus the baseline's, relative (0.01 = 1% higher), with a standard error: over
   * seeds matched with the baseline's when there are several (training and evaluation noise),
   * else the paired block error of one pair (evaluation noise only).
   */
  readonly relative: Estimate | undefined;
  readonly ppl: number;
  readonly bitsPerByte: number;
  readonly cloze: Readonly<Record<string, number>>;
}

/** Rows in entry order; only finished runs count. */
export const rows = (results: ReadonlyArray<RunResult>): Array<Row> => {
  const done = results.filter((r) => r.status === "done" && r.validation !== undefined);
  const entries = [...new Set(results.map((r) => r.entry))];
  return entries.flatMap((entry): Array<Row> => {
    const rs = done.filter((r) => r.entry === entry);
    if (rs.length === 0) return [];
    const first = rs[0];
    const base = done.filter((r) => r.entry === first.compareTo);
    const baseMean = (f: (r: RunResult) => number) => mean(base.map(f));
    const baseLoss = baseMean((r) => r.validation!.loss);
    const losses = rs.map((r) => r.validation!.loss);
    const loss = mean(losses);
    // Relative difference against the baseline, seed by seed where both have the seed.
    const pairs = rs.flatMap((r) => {
      const b = base.find((x) => x.seed === r.seed);
      return b === undefined ? [] : [{ r, b }];
    });
    let relative: Estimate | undefined;
    if (first.entry !== first.compareTo && base.length > 0) {
      if (pairs.length >= 2) {
        const diffs = pairs.map(({ r, b }) => (r.validation!.loss - b.validation!.loss) / baseLoss);
        relative = { value: mean(diffs), stderr: sd(diffs) / Math.sqrt(diffs.length) };
      } else {
        const b = pairs[0]?.b ?? base[0];
        const d = Perplexity.pairedDifference(first.validation!.blocks, b.validation!.blocks);
        relative = { value: (loss - baseLoss) / baseLoss, stderr: d.standardError / baseLoss };
      }
    }
    const clozeNames = [...new Set(rs.flatMap((r) => Object.keys(r.cloze)))];
    return [
      {
        entry,
        baseline: first.baseline,
        compareTo: first.compareTo,
        runs: rs.map((r) => r.name),
        K: first.K,
        lambda: first.lambda,
        strategy: first.strategy,
        theory: theoreticalCost(first),
        flopsRatio: mean(rs.map((r) => r.flops)) / baseMean((r) => r.flops),
        wallRatio: mean(rs.map((r) => r.wallSeconds)) / baseMean((r) => r.wallSeconds),
        cpuRatio: mean(rs.map((r) => r.cpuSeconds)) / baseMean((r) => r.cpuSeconds),
        stepRatio: mean(rs.map((r) => r.stepSeconds ?? NaN)) / baseMean((r) => r.stepSeconds ?? NaN),
        loss,
        lossSd: sd(losses),
        lossSe: mean(rs.map((r) => r.validation!.standardError)),
        relative,
        ppl: Math.exp(loss),
        bitsPerByte: mean(rs.map((r) => r.validation!.bitsPerByte)),
        cloze: Object.fromEntries(clozeNames.map((n) => [n, mean(rs.flatMap((r) => (r.cloze[n] === undefined ? [] : [r.cloze[n].value])))])),
      },
    ];
  });
};

export type TimeBasis = "wall" | "steps" | "cpu";

/**
 * Which measured time the criterion uses: wall time if every run trained on a quiet machine; else
 * training time modeled from quiet per-step times when they were measured; else CPU time.
 */
export const timeBasis = (results: ReadonlyArray<RunResult>): TimeBasis => {
  const done = results.filter((r) => r.status === "done");
  if (done.every(quiet)) return "wall";
  return done.every((r) => r.stepSeconds !== undefined) ? "steps" : "cpu";
};

const basisName: Record<TimeBasis, string> = { wall: "wall time", steps: "step time", cpu: "CPU time" };

export interface Criterion {
  readonly run: string;
  readonly lossWithin: number;
  readonly flopsAtMost: number;
  readonly timeAtMost: number;
}

export interface Verdict {
  readonly criterion: Criterion;
  /** Undefined when the row or the baseline has no finished run yet. */
  readonly holds: boolean | undefined;
  readonly checks: ReadonlyArray<{ readonly what: string; readonly value: number; readonly bound: number; readonly ok: boolean }>;
}

export const verdict = (criterion: Criterion, rs: ReadonlyArray<Row>, basis: TimeBasis): Verdict => {
  const row = rs.find((r) => r.entry === criterion.run);
  const base = rs.find((r) => r.entry === row?.compareTo);
  if (row === undefined || base === undefined) return { criterion, holds: undefined, checks: [] };
  const time = basis === "wall" ? row.wallRatio : basis === "steps" ? row.stepRatio : row.cpuRatio;
  const checks = [
    { what: "validation loss ÷ baseline's", value: row.loss / base.loss, bound: 1 + criterion.lossWithin },
    { what: "FLOPs ÷ baseline's", value: row.flopsRatio, bound: criterion.flopsAtMost },
    { what: `${basisName[basis]} ÷ baseline's`, value: time, bound: criterion.timeAtMost },
  ].map((c) => ({ ...c, ok: c.value <= c.bound }));
  return { criterion, holds: checks.every((c) => c.ok), checks };
};

const fixed = (x: number | undefined, digits: number, suffix = ""): string => (x === undefined || !Number.isFinite(x) ? "–" : `${x.toFixed(digits)}${suffix}`);

const fraction = (x: number): string => {
  if (x === 0) return "0";
  for (const d of [2, 3, 4, 5, 6, 8, 10]) {
    const n = Math.round(x * d);
    if (n > 0 && n < d && Math.abs(n / d - x) < 1e-3) return `${n}/${d}`;
  }
  return String(Math.round(x * 1000) / 1000);
};

/** The Table 1 style markdown table of the rows. */
export const table = (rs: ReadonlyArray<Row>): string => {
  const tasks = [...new Set(rs.flatMap((r) => Object.keys(r.cloze)))];
  const head = ["row", "vs", "runs", "K", "λ", "strategy", "cost (λ/K+1−λ)", "cost × FLOPs", "cost × wall", "cost × CPU", "cost × step time", "val loss", "± (seeds sd / eval se)", "vs baseline", "ppl", "bits/byte", ...tasks.map((t) => `${t} %`)];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`];
  for (const r of rs) {
    const spread = Number.isFinite(r.lossSd) ? `${r.lossSd.toFixed(4)} sd` : `${r.lossSe.toFixed(4)} se`;
    const rel = r.relative === undefined ? "–" : `${r.relative.value >= 0 ? "+" : ""}${(r.relative.value * 100).toFixed(2)}% ± ${(r.relative.stderr * 100).toFixed(2)}`;
    lines.push(
      `| ${[
        r.baseline ? `**${r.entry}** (baseline)` : r.entry,
        r.entry === r.compareTo ? "–" : r.compareTo,
        String(r.runs.length),
        String(r.K),
        r.K === 1 ? "–" : fraction(r.lambda),
        r.strategy,
        fixed(r.theory, 3, "×"),
        fixed(r.flopsRatio, 3, "×"),
        fixed(r.wallRatio, 3, "×"),
        fixed(r.cpuRatio, 3, "×"),
        fixed(r.stepRatio, 3, "×"),
        fixed(r.loss, 4),
        spread,
        rel,
        fixed(r.ppl, 2),
        fixed(r.bitsPerByte, 4),
        ...tasks.map((t) => fixed(r.cloze[t] === undefined ? undefined : r.cloze[t] * 100, 1)),
      ].join(" | ")} |`,
    );
  }
  return lines.join("\n");
};

/** One line per run: what each seed gave. */
export const runTable = (results: ReadonlyArray<RunResult>): string => {
  const head = ["run", "status", "seed", "tokens", "FLOPs", "wall s", "CPU s", "max load / cores", "val loss", "eval se", "bits/byte"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i <= 1 ? "---" : "---:")).join("|")}|`];
  for (const r of results) {
    const v = r.validation;
    lines.push(
      `| ${[
        r.name,
        r.status === "done" ? "done" : `failed: ${(r.error ?? "").split("\n")[0].slice(0, 80)}`,
        String(r.seed),
        r.tokens.toLocaleString("en-US"),
        r.flops.toExponential(3),
        r.wallSeconds.toFixed(0),
        r.cpuSeconds.toFixed(0),
        `${r.load.max.toFixed(1)} / ${r.load.cores}`,
        fixed(v?.loss, 4),
        fixed(v?.standardError, 4),
        fixed(v?.bitsPerByte, 4),
      ].join(" | ")} |`,
    );
  }
  return lines.join("\n");
};

export type Axis = "tokens" | "flops" | "seconds";

/** Validation loss against tokens, FLOPs or elapsed seconds: every run on one figure, each row one colour. */
export const chart = (results: ReadonlyArray<RunResult>, x: Axis): Chart.ChartSpec => {
  const entries = [...new Set(results.map((r) => r.entry))];
  const label = { tokens: "tokens seen", flops: "training FLOPs", seconds: "elapsed seconds (wall)" }[x];
  return {
    title: `Validation loss (token-level) vs ${label}`,
    xLabel: label,
    yLabel: "validation loss (nats/token)",
    series: results
      .filter((r) => r.status === "done")
      .map((r) => ({
        name: r.name,
        points: r.records
          .filter((m) => m.values[MetricRecord.Keys.valLoss] !== undefined)
          .map((m) => [x === "tokens" ? m.totalTokens : x === "flops" ? m.totalFlops : m.elapsedSeconds, m.values[MetricRecord.Keys.valLoss]] as const),
        color: Chart.palette[entries.indexOf(r.entry) % Chart.palette.length],
        dashed: r.entry === r.compareTo,
        dots: false,
      })),
  };
};

export interface Meta {
  readonly name: string;
  readonly description?: string;
  /** The command that regenerates the report. */
  readonly command: string;
  readonly commit: string;
  readonly machine: string;
  readonly backend: string;
  readonly generated: string;
}

export const PLOTS: Readonly<Record<Axis, string>> = { tokens: "loss-vs-tokens.png", flops: "loss-vs-flops.png", seconds: "loss-vs-time.png" };

const verdictText = (v: Verdict, basis: TimeBasis): string => {
  const c = v.criterion;
  const claim = `\`${c.run}\`: mean validation loss ≤ baseline × ${1 + c.lossWithin}, FLOPs ≤ ${c.flopsAtMost}× and ${basisName[basis]} ≤ ${c.timeAtMost}× the baseline's.`;
  if (v.holds === undefined) return `**Criterion** (fixed before the runs): ${claim} Not decided yet: the row or the baseline has no finished run.`;
  const lines = v.checks.map((k) => `- ${k.what}: ${k.value.toFixed(4)} (bound ${k.bound.toFixed(4)}) ${k.ok ? "✓" : "✗"}`);
  return [`**Criterion** (fixed before the runs): ${claim} **${v.holds ? "Holds" : "Does not hold"}.**`, "", ...lines].join("\n");
};

/** The whole markdown report. `findings` are the authors' words, kept apart from the generated numbers. */
export const markdown = (
  meta: Meta,
  results: ReadonlyArray<RunResult>,
  criterion: Criterion | undefined,
  findings: string | undefined,
): string => {
  const rs = rows(results);
  const basis = timeBasis(results);
  const pending = results.filter((r) => r.status !== "done");
  return [
    `# Study: ${meta.name}`,
    "",
    meta.description ?? "",
    "",
    `Regenerate: \`${meta.command}\` (commit ${meta.commit}). Backend: ${meta.backend}. Machine: ${meta.machine}. Generated ${meta.generated}.`,
    "",
    ...(findings === undefined ? [] : ["## Findings", "", findings.trim(), ""]),
    "## Results (paper Table 1 layout)",
    "",
    table(rs),
    "",
    criterion === undefined ? "" : verdictText(verdict(criterion, rs, basis), basis),
    "",
    "How to read it:",
    "- *cost (λ/K+1−λ)* is the paper's compute formula; *cost × FLOPs* is the measured training FLOPs (forward + backward, both phases) over the baseline's; *cost × wall* and *cost × CPU* are measured time over the baseline's.",
    `- Time basis for the criterion: **${
      basis === "wall"
        ? "wall time (every run trained on a quiet machine)"
        : basis === "steps"
          ? "step time: each run's steps × the per-step time of its shapes, measured on a quiet machine (`--time-steps`; some runs shared the machine with other work while training, which makes their wall time unfair)"
          : "CPU time of the training process (some runs shared the machine with other work, which makes wall time unfair)"
    }**. A run counts as quiet when the 1-minute load average stayed within the core count + 0.5 while it trained. *cost × step time* covers training steps only (no evaluation or checkpoints).`,
    "- *val loss* is token-level, over the whole validation split (every token scored once, windows of the model's context). *±* is the standard deviation over seeds for rows with several, else the standard error of the evaluation (blocks of consecutive windows).",
    "- *vs baseline* is the relative difference of the mean validation loss from the baseline's; its ± is the standard error over seed-matched pairs for rows with several seeds, else the paired block standard error of the evaluation alone (it does not include training noise).",
    "- Cloze columns are accuracy on the built-in cloze suite drawn from the validation documents.",
    "",
    `![validation loss vs tokens](${PLOTS.tokens})`,
    "",
    `![validation loss vs FLOPs](${PLOTS.flops})`,
    "",
    `![validation loss vs time](${PLOTS.seconds})`,
    "",
    "## Every run",
    "",
    runTable(results),
    "",
    pending.length === 0 ? "" : `Not finished: ${pending.map((r) => `\`${r.name}\``).join(", ")}.`,
    "",
  ].join("\n");
};

/** Everything, for machines: meta, rows, verdict and each run without its metric records. */
export const json = (meta: Meta, results: ReadonlyArray<RunResult>, criterion: Criterion | undefined) => {
  const rs = rows(results);
  const basis = timeBasis(results);
  return {
    meta,
    timeBasis: basis,
    rows: rs,
    verdict: criterion === undefined ? undefined : verdict(criterion, rs, basis),
    runs: results.map(({ records: _records, validation, ...r }) => ({
      ...r,
      validation: validation === undefined ? undefined : { ...validation, blocks: { count: validation.blocks.nll.length } },
    })),
  };
};

/** A compact plain-text comparison for the terminal: one column per row, one line per measure. */
export const sideBySide = (rs: ReadonlyArray<Row>, results: ReadonlyArray<RunResult>): string => {
  const secs = (entry: string, key: "wallSeconds" | "cpuSeconds") =>
    mean(results.filter((r) => r.entry === entry && r.status === "done").map((r) => r[key]));
  const heads = rs.map((r) => (r.K === 1 ? `${r.entry} (token-level)` : `${r.entry} (K=${r.K}, λ=${fraction(r.lambda)})`));
  const lines: Array<[string, ...Array<string>]> = [
    ["", ...heads],
    ["cost, paper's formula", ...rs.map((r) => fixed(r.theory, 3, "×"))],
    ["cost, training FLOPs", ...rs.map((r) => fixed(r.flopsRatio, 3, "×"))],
    ["wall time", ...rs.map((r) => `${fixed(secs(r.entry, "wallSeconds"), 1, " s")}${r.entry === r.compareTo ? "" : ` (${fixed(r.wallRatio, 2, "×")})`}`)],
    ["CPU time", ...rs.map((r) => `${fixed(secs(r.entry, "cpuSeconds"), 1, " s")}${r.entry === r.compareTo ? "" : ` (${fixed(r.cpuRatio, 2, "×")})`}`)],
    [
      "validation loss",
      ...rs.map(
        (r) =>
          `${fixed(r.loss, 4)}${r.relative === undefined ? "" : ` (${r.relative.value >= 0 ? "+" : ""}${(r.relative.value * 100).toFixed(2)}% ± ${(r.relative.stderr * 100).toFixed(2)})`}`,
      ),
    ],
    ["perplexity", ...rs.map((r) => fixed(r.ppl, 2))],
    ["bits per byte", ...rs.map((r) => fixed(r.bitsPerByte, 4))],
  ];
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  return lines.map((l) => l.map((cell, c) => cell.padEnd(widths[c])).join("   ").trimEnd()).join("\n");
};
