/**
 * `trainer study` as a user runs it: real processes, a real SIGKILL. A tiny study of three runs
 * (a baseline, a K=4 run, and one that fails with non-finite losses) over a byte-level corpus.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";

jest.setTimeout(300_000);

const repo = path.resolve(__dirname, "..", "..", "..");
const tsxDist = path.join(repo, "node_modules", "tsx", "dist");
const main = path.join(repo, "apps", "trainer", "src", "main.ts");
const node = (args: ReadonlyArray<string>) => [
  "--conditions=@patchlm/source",
  "--require", path.join(tsxDist, "preflight.cjs"),
  "--import", pathToFileURL(path.join(tsxDist, "loader.mjs")).href,
  main,
  ...args,
];
const env = { ...process.env, PATCHLM_BACKEND: "cpu", FORCE_COLOR: "0" };

let root: string;
const trainer = (args: ReadonlyArray<string>) => spawnSync(process.execPath, node(args), { cwd: root, env, encoding: "utf8" });
const start = (args: ReadonlyArray<string>): { child: ChildProcess; exit: Promise<number | null> } => {
  const child = spawn(process.execPath, node(args), { cwd: root, env, stdio: "ignore" });
  return { child, exit: new Promise((resolve) => child.on("exit", (code) => resolve(code))) };
};
const waitFor = async (predicate: () => boolean, what: string, ms = 180_000): Promise<void> => {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** The study file: `tag` picks its runs and results directories. */
const studyFile = (tag: string, o: { readonly lr?: number; readonly broken?: boolean } = {}): string => {
  const file = path.join(root, `${tag}.yaml`);
  const runs = [
    `  - { name: baseline, baseline: true, set: { patch: { patchSize: 1 } } }`,
    `  - { name: k4, set: { patch: { patchSize: 4, patchFraction: 0.5 } } }`,
    ...(o.broken === false ? [] : [`  - { name: broken, set: { optim: { lr: 1.0e+38, gradClip: 0, warmupSteps: 0 }, maxBadSteps: 1, checkpointEvery: 0 } }`]),
  ];
  fs.writeFileSync(
    file,
    [
      `name: tiny`,
      `data: { corpus: corpus, tokenizer: bytes, validationFraction: 0.25, out: data }`,
      `runsDir: ${tag}/runs`,
      `results: ${tag}/results`,
      `base:`,
      `  seed: 3`,
      `  model: { preset: tiny }`,
      `  batch: { tokens: 4096, batchTokens: 256, seqLen: 16 }`,
      `  optim: { lr: ${o.lr ?? 0.01}, warmupSteps: 2 }`,
      `  logEvery: 1`,
      `  evalEvery: 4`,
      `  evalBatches: 2`,
      `  checkpointEvery: 2`,
      `runs:`,
      ...runs,
      `criterion: { run: k4, lossWithin: 0.5, flopsAtMost: 0.7, timeAtMost: 5 }`,
      `evaluation: { clozeItems: 5, blockTokens: 256 }`,
    ].join("\n") + "\n",
  );
  return file;
};

const result = (tag: string, run: string) =>
  JSON.parse(fs.readFileSync(path.join(root, tag, "results", run, "result.json"), "utf8")) as {
    status: string;
    tokens: number;
    flops: number;
    validation: { loss: number; standardError: number; blocks: { nll: Array<number> } };
  };

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-study-"));
  const corpus = path.join(root, "corpus");
  fs.mkdirSync(corpus);
  for (let d = 0; d < 8; d++) {
    const lines = Array.from({ length: 50 }, (_, i) => `Line ${i} of document ${d}: the ${["red", "blue"][i % 2]} fox jumps over the dog.`);
    fs.writeFileSync(path.join(corpus, `d${d}.txt`), lines.join("\n") + "\n");
  }
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("trainer study", () => {
  let reference: ReturnType<typeof trainer>;
  beforeAll(() => {
    reference = trainer(["study", studyFile("ref")]);
  });

  it("reports a failed run by name, finishes the others, and exits 1", () => {
    expect(reference.status).toBe(1);
    expect(reference.stderr + reference.stdout).toMatch(/run broken failed: .*NonFiniteLoss/);
    expect(reference.stderr + reference.stdout).toMatch(/1 run\(s\) failed: broken/);
    expect(result("ref", "baseline").status).toBe("done");
    expect(result("ref", "k4").status).toBe("done");
    expect(fs.existsSync(path.join(root, "ref", "results", "broken"))).toBe(false);
    // Results keep what a report needs, never checkpoints.
    expect(fs.readdirSync(path.join(root, "ref", "results", "k4")).sort()).toEqual(["config.json", "metrics.jsonl", "result.json", "summary.json"]);
  });

  it("writes a Table-1 style report and a JSON with every run, the criterion and the commands", () => {
    const md = fs.readFileSync(path.join(root, "ref", "results", "report.md"), "utf8");
    expect(md).toMatch(/\| row \| vs \| runs \| K \| λ \| strategy \| cost \(λ\/K\+1−λ\) \| cost × FLOPs \| cost × wall \| cost × CPU \| cost × step time \| val loss/);
    expect(md).toMatch(/\| \*\*baseline\*\* \(baseline\) \| – \| 1 \| 1 \| – \| mean \| 1\.000× \| 1\.000× \|/);
    // K=4, λ=1/2: λ/K + 1 − λ = 0.625 in theory; measured FLOPs a little lower (attention is cheaper over T patches).
    expect(md).toMatch(/\| k4 \| baseline \| 1 \| 4 \| 1\/2 \| mean \| 0\.625× \| 0\.6\d\d× \|/);
    expect(md).toMatch(/\| broken \| failed: /);
    expect(md).toMatch(/Regenerate: `npm run trainer -- study /);
    for (const png of ["loss-vs-tokens.png", "loss-vs-flops.png", "loss-vs-time.png"]) {
      expect(fs.readFileSync(path.join(root, "ref", "results", png)).subarray(1, 4).toString()).toBe("PNG");
    }
    const json = JSON.parse(fs.readFileSync(path.join(root, "ref", "results", "report.json"), "utf8")) as {
      meta: { command: string; commit: string; machine: string };
      rows: Array<{ entry: string; flopsRatio: number; loss: number; relative?: { value: number; stderr: number } }>;
      verdict: { holds: boolean; checks: Array<{ what: string; value: number; ok: boolean }> };
      runs: Array<{ name: string; status: string }>;
    };
    expect(json.meta.command).toMatch(/study ref\.yaml$/);
    expect(json.rows.map((r) => r.entry)).toEqual(["baseline", "k4"]);
    const k4 = json.rows[1];
    const base = json.rows[0];
    expect(k4.flopsRatio).toBeCloseTo(result("ref", "k4").flops / result("ref", "baseline").flops, 12);
    expect(k4.relative!.value).toBeCloseTo((k4.loss - base.loss) / base.loss, 12);
    expect(k4.relative!.stderr).toBeGreaterThan(0);
    expect(json.verdict.checks.map((c) => c.what)).toEqual(["validation loss ÷ baseline's", "FLOPs ÷ baseline's", expect.stringMatching(/time ÷ baseline's/)]);
    expect(json.verdict.checks[1]).toMatchObject({ value: k4.flopsRatio, ok: true });
    expect(json.runs.map((r) => [r.name, r.status])).toEqual([["baseline", "done"], ["k4", "done"], ["broken", "failed"]]);
  });

  it("--time-steps times each step shape once and models every run's training time from it", () => {
    const r = trainer(["study", studyFile("ref"), "--report-only", "--time-steps"]);
    expect(r.stderr + r.stdout).toMatch(/step times of 2 shapes/);
    const times = JSON.parse(fs.readFileSync(path.join(root, "ref", "results", "step-times.json"), "utf8")) as {
      shapes: Array<{ K: number; msPerStep: number; samples: Array<number> }>;
      runs: Record<string, number>;
    };
    expect(times.shapes.map((x) => x.K).sort()).toEqual([1, 4]);
    for (const x of times.shapes) expect(x.samples).toHaveLength(3);
    const ms = (K: number) => times.shapes.find((x) => x.K === K)!.msPerStep;
    // 16 steps: the baseline all token-level; k4 at λ = 1/2, 8 patch steps then 8 token steps.
    expect(times.runs.baseline).toBeCloseTo((16 * ms(1)) / 1000, 9);
    expect(times.runs.k4).toBeCloseTo((8 * ms(4) + 8 * ms(1)) / 1000, 9);
    const json = JSON.parse(fs.readFileSync(path.join(root, "ref", "results", "report.json"), "utf8")) as { rows: Array<{ stepRatio: number }> };
    expect(json.rows[1].stepRatio).toBeCloseTo(times.runs.k4 / times.runs.baseline, 9);
  });

  it("after kill -9 (and a lost latest pointer), a second invocation keeps finished runs, resumes the interrupted one, and matches the uninterrupted study", async () => {
    const file = studyFile("killed", { broken: false });
    const run = start(["study", file]);
    // Kill once the baseline's results are saved and the K=4 run has a checkpoint.
    const k4Latest = path.join(root, "killed", "runs", "k4", "latest");
    await waitFor(() => fs.existsSync(path.join(root, "killed", "results", "baseline", "result.json")) && fs.existsSync(k4Latest), "a K=4 checkpoint");
    run.child.kill("SIGKILL");
    await run.exit;
    expect(fs.existsSync(path.join(root, "killed", "results", "k4"))).toBe(false);
    // A run whose `latest` is lost still resumes (from its newest step directory that verifies).
    fs.rmSync(k4Latest);
    const again = trainer(["study", file]);
    expect(again.status).toBe(0);
    expect(again.stderr + again.stdout).toMatch(/2 runs, 1 with saved results, 1 to train or finish/);
    expect(again.stderr + again.stdout).toMatch(/study: k4: resuming at step \d+\/16/);
    expect(again.stderr + again.stdout).toMatch(/latest was missing; resuming from step-\d+/);
    // Bit-identical to the uninterrupted study's run: same validation loss and per-block NLLs.
    for (const r of ["baseline", "k4"]) expect(result("killed", r).validation).toEqual(result("ref", r).validation);
  });

  it("on a machine without the run directories, reuses the saved results and trains nothing", () => {
    fs.rmSync(path.join(root, "killed", "runs"), { recursive: true, force: true });
    const again = trainer(["study", studyFile("killed", { broken: false })]);
    expect(again.status).toBe(0);
    expect(again.stderr + again.stdout).toMatch(/2 runs, 2 with saved results, 0 to train or finish/);
    expect(fs.existsSync(path.join(root, "killed", "runs", "k4"))).toBe(false);
    expect(fs.readFileSync(path.join(root, "killed", "results", "report.md"), "utf8")).toMatch(/\| k4 \| baseline \|/);
  });

  it("refuses saved results made with another config, naming them, before training anything", () => {
    const r = trainer(["study", studyFile("killed", { lr: 0.02, broken: false })]);
    expect(r.status).toBe(1);
    expect(r.stderr + r.stdout).toMatch(/saved results were made with another config .*killed\/results\/baseline/);
  });

  it("refuses a damaged saved result, naming the file and what it lacks", () => {
    const file = path.join(root, "killed", "results", "k4", "result.json");
    const good = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, good.replace(/"loss": [0-9.e+-]+/, '"loss": "x"'));
    const r = trainer(["study", studyFile("killed", { broken: false }), "--report-only"]);
    fs.writeFileSync(file, good);
    expect(r.status).toBe(1);
    expect(r.stderr + r.stdout).toMatch(/saved results that cannot be used: .*killed\/results\/k4\/result\.json: expected validation\.loss/);
  });

  it("checks every run's config before anything runs, naming the run and key", () => {
    const file = path.join(root, "bad.yaml");
    fs.writeFileSync(
      file,
      [
        `name: bad`,
        `data: { corpus: corpus, tokenizer: bytes, out: data-bad }`,
        `base: { batch: { tokens: 4096, batchTokens: 256, seqLen: 16 } }`,
        `runs:`,
        `  - { name: base, baseline: true, set: { patch: { patchSize: 1 } } }`,
        `  - { name: k4, set: { patch: { patchFraction: 3 } } }`,
      ].join("\n"),
    );
    const r = trainer(["study", file]);
    expect(r.status).toBe(1);
    expect(r.stderr + r.stdout).toMatch(/runs\[1\] \(k4\): patch\.patchFraction/);
    expect(fs.existsSync(path.join(root, "data-bad"))).toBe(false);
  });
});
