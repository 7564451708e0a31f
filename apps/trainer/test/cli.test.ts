/**
 * The trainer as a user runs it: real processes, real signals. SIGTERM finishes the step in
 * flight, checkpoints and exits 0; SIGKILL loses at most the steps since the last checkpoint and
 * never leaves a checkpoint that fails to load; `resume` continues either way.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { prepareSmallData } from "./smallData";

jest.setTimeout(240_000);

const repo = path.resolve(__dirname, "..", "..", "..");
// `node --import tsx` runs the trainer in this one process (the tsx CLI would add a parent that
// relays SIGTERM but cannot relay SIGKILL).
const tsxDist = path.join(repo, "node_modules", "tsx", "dist");
const node = (args: ReadonlyArray<string>) => [
  "--conditions=@patchlm/source",
  "--require", path.join(tsxDist, "preflight.cjs"),
  "--import", pathToFileURL(path.join(tsxDist, "loader.mjs")).href,
  main,
  ...args,
];
const main = path.join(repo, "apps", "trainer", "src", "main.ts");
// Tests pin the backend so they do not depend on what this machine can build.
const env = { ...process.env, PATCHLM_BACKEND: "cpu", FORCE_COLOR: "0" };

let root: string;

const trainer = (args: ReadonlyArray<string>) => spawnSync(process.execPath, node(args), { cwd: root, env, encoding: "utf8" });

const start = (args: ReadonlyArray<string>): { child: ChildProcess; output: () => string; exit: Promise<number | null> } => {
  const child = spawn(process.execPath, node(args), { cwd: root, env });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => out, exit };
};

const waitFor = async (predicate: () => boolean, what: string, ms = 120_000): Promise<void> => {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const latest = (run: string): string | undefined => {
  const f = path.join(root, "runs", run, "latest");
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim() : undefined;
};

const trainArgs = (name: string) => [
  "train",
  "--name", name,
  "--data", "data",
  "--preset", "tiny",
  "--patch-size", "4",
  "--tokens", "1048576",
  "--batch-tokens", "256",
  "--seq-len", "16",
  "--micro-batch", "4",
  "--warmup", "2",
  "--set", "checkpointEvery=2",
  "--set", "evalEvery=0",
  "--set", "logEvery=1",
];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-cli-"));
  const r = prepareSmallData(root, trainer);
  expect(r.stderr + r.stdout).toMatch(/prepare: data: train 5 docs/);
  expect(r.status).toBe(0);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("trainer CLI", () => {
  it("--version prints the app's version before anything loads Effect's CLI (main.ts's early exit)", () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(repo, "apps", "trainer", "package.json"), "utf8")) as { version: string };
    // A preload that says, at exit, whether the effect package was ever loaded in the process.
    const probe = path.join(root, "effect-probe.cjs");
    fs.writeFileSync(probe, `process.on("exit", () => process.stderr.write(Object.keys(require.cache).some((k) => k.includes("/node_modules/effect/")) ? "effect loaded" : "effect not loaded"));`);
    const run = (entry: string, args: ReadonlyArray<string>) =>
      spawnSync(process.execPath, ["--require", probe, ...node(args).map((a) => (a === main ? entry : a))], { cwd: root, env, encoding: "utf8" });
    for (const app of ["trainer", "evaluator"]) {
      const r = run(path.join(repo, "apps", app, "src", "main.ts"), ["--version"]);
      expect({ app, status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ app, status: 0, stdout: `${version}\n`, stderr: "effect not loaded" });
    }
    // Anything beyond the lone flag starts the CLI (and the probe sees effect load).
    const full = run(main, ["--version", "--log-level", "info"]);
    expect(full.stdout).toContain(version);
    expect(full.stderr).toContain("effect loaded");
  });

  it("reports bad flags and config problems with a clear message and exit code 1", () => {
    const r = trainer(["train", "--name", "bad", "--data", "data", "--tokens", "1000", "--batch-tokens", "256", "--seq-len", "16", "--micro-batch", "4", "--patch-fraction", "2"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/patch\.patchFraction/);
    const missing = trainer(["train", "--name", "bad2", "--data", "nowhere", "--tokens", "4096", "--batch-tokens", "256", "--seq-len", "16", "--micro-batch", "4", "--warmup", "0"]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/nowhere/);
  });

  // reliability D12: raw errors — a JSON dump without the flag's name, `--set k`, ENAMETOOLONG with
  // a stack trace. Each is one `error:` line naming the flag or file.
  it("every bad flag or path is one error line naming it, without a stack trace", () => {
    const train = ["train", "--name", "flags", "--data", "data", "--tokens", "4096", "--batch-tokens", "256", "--seq-len", "16", "--micro-batch", "4"];
    const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
      [[...train, "--max-steps", "abc"], /^error: --max-steps: 'abc' is not a/],
      [[...train, "--backend", "gpu"], /^error: --backend: 'gpu' is not one of auto, tensorflow, native, wasm, cpu$/],
      [[...train, "--precision", "fp16"], /^error: --precision: 'fp16' is not one of fp32, bf16$/],
      // PATCHLM_BACKEND=cpu here: bf16 is refused with the setting to change, not an install hint.
      [[...train, "--precision", "bf16"], /^error: .*bf16 matmuls run on the native backend only \(precision bf16\); use precision fp32 here/],
      [[...train, "--set", "k"], /^error: invalid config \(flags\):\n\s+- --set k: expected key\.path=value$/],
      [["prepare", "--corpus", "corpus", "--tokenizer", "bytes", "--out", "o".repeat(300)], /^error: .*o{300}: ENAMETOOLONG: name too long$/],
    ];
    for (const [args, want] of cases) {
      const r = trainer(args);
      expect(r.stderr).toMatch(new RegExp(want.source, "m"));
      expect(r.stderr).not.toMatch(/^\s+at |_tag/m);
      expect(r.stderr.split("\n").filter((l) => l.startsWith("error:"))).toHaveLength(1);
      expect(r.status).toBe(1);
    }
  });

  // reliability D2: a failed prepare had already replaced (or deleted) the data directory's tokenizer.
  it("a failed prepare leaves an existing data directory exactly as it was", () => {
    const snapshot = () => fs.readdirSync(path.join(root, "data")).sort().map((f) => [f, fs.readFileSync(path.join(root, "data", f), "hex")]);
    const before = snapshot();
    // A corpus whose bad file comes after a few good ones: the failure comes from prepare's read.
    const bad = path.join(root, "bad-corpus");
    fs.mkdirSync(bad);
    for (const d of ["a", "b", "c"]) fs.writeFileSync(path.join(bad, `${d}.txt`), `Document ${d}, good text.\n`);
    fs.writeFileSync(path.join(bad, "z.txt"), Buffer.from([0x61, 0xff, 0xfe, 0x62]));
    for (const tokenizer of ["gpt2", "cl100k", "bpe:300"]) {
      const r = trainer(["prepare", "--corpus", "bad-corpus", "--out", "data", "--tokenizer", tokenizer]);
      expect(r.stderr).toMatch(/^error: .*z\.txt/m);
      expect(r.status).toBe(1);
      expect(snapshot()).toEqual(before);
    }
    const missing = trainer(["prepare", "--corpus", "corpus", "--out", "data", "--tokenizer", "file:no-such-tokenizer.json"]);
    expect(missing.stderr).toMatch(/^error: .*no-such-tokenizer\.json/m);
    expect(missing.status).toBe(1);
    expect(snapshot()).toEqual(before);
  });

  // reliability D14: a one-document corpus prepared an empty validation split; training then failed
  // at its first evaluation, with no checkpoint.
  it("prepare refuses a corpus or fraction that leaves the validation split empty, writing nothing", () => {
    const one = path.join(root, "one-doc");
    fs.mkdirSync(one);
    fs.writeFileSync(path.join(one, "only.txt"), "The only document of this corpus.\n");
    const r = trainer(["prepare", "--corpus", "one-doc", "--out", "data-one", "--tokenizer", "bytes", "--val-fraction", "0.5"]);
    expect(r.stderr).toMatch(/^error: .*one-doc: .*1 document.*validation split would be empty/m);
    expect(r.status).toBe(1);
    expect(fs.existsSync(path.join(root, "data-one"))).toBe(false);
    const none = trainer(["prepare", "--corpus", "corpus", "--out", "data-none", "--tokenizer", "bytes", "--val-fraction", "0"]);
    expect(none.stderr).toMatch(/^error: invalid config \(flags\):\n\s+- --val-fraction: 0 holds out no document/m);
    expect(none.status).toBe(1);
    expect(fs.existsSync(path.join(root, "data-none"))).toBe(false);
  });

  // reliability D15: resume read the data's tokenizer only; a run whose own tokenizer (the one the
  // evaluator reads) had been replaced trained on.
  it("resume refuses a run whose own tokenizer is not its data's, and trains nothing", () => {
    const first = trainer([...trainArgs("tok"), "--max-steps", "2"]);
    expect(first.status).toBe(0);
    const at = latest("tok");
    expect(at).toBe("step-00000002");
    fs.writeFileSync(path.join(root, "runs", "tok", "tokenizer.spec.json"), JSON.stringify({ kind: "tiktoken", encoding: "gpt2" }) + "\n");
    const resumed = trainer(["resume", "tok", "--max-steps", "2"]);
    expect(resumed.stderr).toMatch(/^error: .*runs\/tok: the tokenizer does not match/m);
    expect(resumed.stderr).toMatch(/tokenizer hash: .*"gpt2"/);
    expect(resumed.status).toBe(1);
    expect(latest("tok")).toBe(at);
  });

  it("--precision bf16 trains on native (where the CPU has AVX512_BF16) close to fp32, is recorded, and resumes bit for bit", () => {
    const probe = spawnSync(process.execPath, ["--conditions=@patchlm/source", "--import", "tsx", "-e",
      "const { NativeBackend } = require('@patchlm/native'); const r = NativeBackend.register(); console.log(r._tag === 'Registered' && r.info.bf16Supported)"], { cwd: repo, env, encoding: "utf8" });
    const native = ["--backend", "native", "--set", "checkpointEvery=0"];
    if (probe.stdout.trim() !== "true") {
      const refused = trainer([...trainArgs("bf16-refused"), ...native, "--precision", "bf16"]);
      expect(refused.stderr).toMatch(/^error: .*(AVX512_BF16|native)/m);
      expect(refused.status).toBe(1);
      return;
    }
    const losses = (run: string) =>
      fs.readFileSync(path.join(root, "runs", run, "metrics.jsonl"), "utf8").trim().split("\n")
        .map((l) => (JSON.parse(l) as { values: Record<string, number> }).values["train/loss"])
        .filter((loss) => loss !== undefined);
    const steps = ["--max-steps", "6"];
    const fp32 = trainer([...trainArgs("fp32"), ...native, ...steps]);
    expect(fp32.status).toBe(0);
    const bf16 = trainer([...trainArgs("bf16"), ...native, ...steps, "--precision", "bf16"]);
    expect(bf16.stderr + bf16.stdout).toContain("matmuls bf16");
    expect(bf16.status).toBe(0);
    const [a, b] = [losses("fp32"), losses("bf16")];
    expect(b).toHaveLength(6);
    // bf16 rounding changes every loss a little, and none by much.
    b.forEach((x, i) => {
      expect(x).not.toBe(a[i]);
      expect(Math.abs(x - a[i]) / a[i]).toBeLessThan(0.01);
    });
    // Recorded with the run: inspect shows it, and resume runs at it without being told.
    expect((JSON.parse(trainer(["inspect", "bf16"]).stdout) as { config: { precision: string } }).config.precision).toBe("bf16");
    expect(trainer([...trainArgs("bf16-split"), ...native, "--max-steps", "3", "--precision", "bf16"]).status).toBe(0);
    const resumed = trainer(["resume", "bf16-split", "--max-steps", "3"]);
    expect(resumed.status).toBe(0);
    expect(losses("bf16-split")).toEqual(b);
  });

  it("SIGTERM checkpoints the last completed step and exits 0; resume continues from it", async () => {
    const run = start(trainArgs("term"));
    await waitFor(() => latest("term") !== undefined, "a first checkpoint");
    run.child.kill("SIGTERM");
    const code = await run.exit;
    expect(run.output()).toMatch(/interrupted at step (\d+)/);
    expect(code).toBe(0);
    const stoppedAt = Number(/interrupted at step (\d+)/.exec(run.output())![1]);
    expect(latest("term")).toBe(`step-${String(stoppedAt).padStart(8, "0")}`);
    const resumed = trainer(["resume", "term", "--max-steps", "2"]);
    expect(resumed.status).toBe(0);
    expect(resumed.stderr + resumed.stdout).toMatch(new RegExp(`resumed .* at step ${stoppedAt}/`));
    expect(latest("term")).toBe(`step-${String(stoppedAt + 2).padStart(8, "0")}`);
  });

  it("SIGKILL never leaves a checkpoint that fails to load; resume continues from the last one", async () => {
    const run = start(trainArgs("kill"));
    await waitFor(() => latest("kill") !== undefined && latest("kill") !== "step-00000002", "a few checkpoints");
    run.child.kill("SIGKILL");
    await run.exit;
    const at = latest("kill")!;
    const inspect = trainer(["inspect", "kill"]);
    expect(inspect.status).toBe(0);
    const info = JSON.parse(inspect.stdout) as { progress: { step: number } };
    expect(`step-${String(info.progress.step).padStart(8, "0")}`).toBe(at);
    const resumed = trainer(["resume", "kill", "--max-steps", "1"]);
    expect(resumed.stderr + resumed.stdout).toMatch(new RegExp(`resumed .* at step ${info.progress.step}/`));
    expect(resumed.status).toBe(0);
  });
});
