import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MetricRecord } from "@patchlm/metrics";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Report } from "../src";

const record = (step: number, phase: "patch" | "token", totalTokens: number, totalFlops: number, elapsed: number, values: Record<string, number>): MetricRecord.MetricRecord => ({
  step,
  phase,
  tokens: 0,
  flops: 0,
  wallSeconds: 0,
  totalTokens,
  totalFlops,
  elapsedSeconds: elapsed,
  values,
});

const makeRun = (root: string, name: string, patch: { patchSize: number; patchFraction: number; strategy?: string }, records: ReadonlyArray<MetricRecord.MetricRecord>) => {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ name, data: "runs/data/x", patch }));
  fs.writeFileSync(path.join(dir, "metrics.jsonl"), records.map(MetricRecord.toJsonLine).join(""));
  return dir;
};

const V = MetricRecord.Keys.valLoss;

describe("Report", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-report-"));
  const base = makeRun(root, "token", { patchSize: 4, patchFraction: 0 }, [
    record(10, "token", 1000, 8e9, 10, { [V]: 5 }),
    record(20, "token", 2000, 16e9, 20, { [V]: 4 }),
  ]);
  const patched = makeRun(root, "patch", { patchSize: 4, patchFraction: 2 / 3, strategy: "weighted-mean" }, [
    record(10, "patch", 1000, 2e9, 3, { [V]: 6 }),
    record(13, "patch", 1333, 2.666e9, 4, { "train/loss": 2 }),
    record(20, "token", 2000, 8e9, 12, { [V]: 3.9 }),
  ]);

  it("reads runs: K, λ, strategy, totals from the last record, the switch point", async () => {
    const r = await runTest(Report.loadRun(patched));
    expect([r.name, r.K, r.lambda, r.strategy, r.tokens, r.flops, r.wallSeconds]).toEqual(["patch", 4, 2 / 3, "weighted-mean", 2000, 8e9, 12]);
    expect(r.switchAt).toEqual({ tokens: 1333, flops: 2.666e9 });
    expect(Report.theoreticalCost(r)).toBeCloseTo(0.5, 12);
  });

  it("lays the table out like Table 1, costs relative to the token-only baseline", async () => {
    const runs = [await runTest(Report.loadRun(base)), await runTest(Report.loadRun(patched))];
    const md = Report.table(runs, [
      { loss: 4, ppl: Math.exp(4), bitsPerByte: 1.5, tasks: { piqa: 0.6, arc: 0.4 } },
      { loss: 3.9, ppl: Math.exp(3.9), bitsPerByte: 1.45, tasks: { piqa: 0.62, arc: 0.41 } },
    ]);
    const lines = md.split("\n");
    expect(lines[0]).toBe("| run | K | λ | strategy | cost (λ/K+1−λ) | cost × FLOPs | cost × wall | val loss | ppl | bits/byte | piqa | arc | avg |");
    // token: everything 1×; patch: FLOPs 8e9/16e9 = 0.5, wall 12/20 = 0.6, avg (62 + 41)/2 = 51.5
    expect(lines[2]).toBe("| token | 4 | 0 | – | 1.000× | 1.000× | 1.000× | 4.0000 | 54.60 | 1.5000 | 60.0 | 40.0 | 50.0 |");
    expect(lines[3]).toBe("| patch | 4 | 2/3 | weighted-mean | 0.500× | 0.500× | 0.600× | 3.9000 | 49.40 | 1.4500 | 62.0 | 41.0 | 51.5 |");
  });

  it("draws one validation-loss line per run and marks the switch, and writes the report with PNGs", async () => {
    const runs = [await runTest(Report.loadRun(base)), await runTest(Report.loadRun(patched))];
    const [byTokens, byFlops] = Report.charts(runs);
    expect(byTokens.series.map((s) => s.points)).toEqual([[[1000, 5], [2000, 4]], [[1000, 6], [2000, 3.9]]]);
    expect(byFlops.markers).toEqual([{ x: 2.666e9, label: "patch: patch → token" }]);
    const out = path.join(root, "report");
    const files = await runTest(Report.write(out, runs, [{}, {}]));
    expect(files.map((f) => path.basename(f))).toEqual(["loss-vs-tokens.png", "loss-vs-flops.png", "report.md"]);
    const png = fs.readFileSync(path.join(out, "loss-vs-tokens.png"));
    expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(fs.readFileSync(path.join(out, "report.md"), "utf8")).toContain("relative to the token-only baseline `token`");
  });

  it("without evaluating, a run's last logged validation loss stands in", async () => {
    const runs = [await runTest(Report.loadRun(base)), await runTest(Report.loadRun(patched))];
    expect(runs.map(Report.loggedEval)).toEqual([
      { loss: 4, ppl: Math.exp(4) },
      { loss: 3.9, ppl: Math.exp(3.9) },
    ]);
    expect(Report.loggedEval({ ...runs[0], records: [] })).toEqual({});
  });

  it("a directory without metrics is a clear error", async () => {
    const empty = path.join(root, "empty");
    fs.mkdirSync(empty);
    fs.writeFileSync(path.join(empty, "config.json"), "{}");
    const e = await runTestFailure(Report.loadRun(empty));
    expect(e).toMatchObject({ _tag: "EvalInputError", reason: "NotFound" });
    expect(e.path).toContain("metrics.jsonl");
  });
});
