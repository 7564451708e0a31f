/**
 * A patch strategy of the user's own, plugged into the trainer without forking it
 * (`--strategy-module`, issue 15 item 2): real trainer processes load a JavaScript and a
 * TypeScript module from outside the repository, record it, resume with it, show it, and refuse a
 * changed, empty or missing one.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Processes } from "@patchlm/testing";
import { prepareSmallData } from "./smallData";

jest.setTimeout(240_000);

const main = Processes.appMain("trainer");
const env = { ...process.env, PATCHLM_BACKEND: "cpu", FORCE_COLOR: "0" };
let root: string;
const trainer = (args: ReadonlyArray<string>) => Processes.runTs(main, args, { cwd: root, env });
const evaluator = (args: ReadonlyArray<string>) => Processes.runTs(Processes.appMain("evaluator"), args, { cwd: root, env });
const errorLines = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("error:"));

/** A learned softmax-weighted mean under a name of its own, zero-initialised: it starts as the plain mean. */
const softmaxMean = `import * as tf from "@tensorflow/tfjs";
const logits = (K) => ({ name: "patch.softmax-mean.logits", shape: [K], init: { kind: "zeros" }, decay: false });
export const softmaxMean = {
  name: "softmax-mean",
  description: "softmax-weighted mean of the K embeddings (a user's strategy)",
  parameters: (_C, K) => [logits(K)],
  aggregate: (x, params) =>
    tf.tidy(() => tf.sum(tf.mul(x, tf.reshape(tf.softmax(params["patch.softmax-mean.logits"]), [1, 1, x.shape[2], 1])), 2)),
};
`;

/** A parameter-free strategy in TypeScript: the mean of the patch's last two embeddings. */
const lastTwo = `import * as tf from "@tensorflow/tfjs";
import type { PatchStrategy } from "@patchlm/patching";
const lastTwo: PatchStrategy = {
  name: "last-two",
  description: "mean of the last two token embeddings of each patch",
  parameters: () => [],
  aggregate: (x: tf.Tensor4D) => tf.tidy(() => tf.mean(tf.slice(x, [0, 0, x.shape[2] - 2, 0], [-1, -1, 2, -1]), 2) as tf.Tensor3D),
};
export default [lastTwo];
`;

/** 64 tokens a step, K = 4 at λ = 1/2: 64 patch steps, then 64 token steps. */
const trainArgs = (name: string, extra: ReadonlyArray<string>) => [
  "train",
  "--name", name,
  "--data", "data",
  "--runs-dir", "runs",
  "--preset", "tiny",
  "--patch-size", "4",
  "--patch-fraction", "0.5",
  "--tokens", "8192",
  "--batch-tokens", "64",
  "--seq-len", "8",
  "--warmup", "2",
  "--set", "checkpointEvery=2",
  "--set", "evalEvery=0",
  "--set", "logEvery=1",
  ...extra,
];

const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const losses = (name: string) =>
  fs
    .readFileSync(path.join(root, "runs", name, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { step: number; values: Record<string, number> })
    .filter((r) => r.values["train/loss"] !== undefined);

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-strategy-module-"));
  // A user's project: its own folder, with the packages it uses installed (here: linked).
  fs.symlinkSync(path.join(Processes.repo, "node_modules"), path.join(root, "node_modules"), "dir");
  fs.writeFileSync(path.join(root, "softmax-mean.mjs"), softmaxMean);
  fs.writeFileSync(path.join(root, "last-two.ts"), lastTwo);
  fs.writeFileSync(path.join(root, "nothing.mjs"), "export const answer = 42;\n");
  const r = prepareSmallData(root, trainer);
  expect(r.status).toBe(0);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe("trainer --strategy-module", () => {
  it("trains with a JavaScript module's strategy, records the module, resumes with it and shows it", () => {
    const module = path.join(root, "softmax-mean.mjs");
    const r = trainer(trainArgs("js", ["--strategy-module", "softmax-mean.mjs", "--strategy", "softmax-mean", "--max-steps", "3"]));
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.status).toBe(0);
    const recorded = JSON.parse(fs.readFileSync(path.join(root, "runs", "js", "strategy-module.json"), "utf8"));
    expect(recorded).toEqual({ path: module, sha256: sha256(module), strategies: ["softmax-mean"] });
    const config = JSON.parse(fs.readFileSync(path.join(root, "runs", "js", "config.json"), "utf8"));
    expect(config.patch).toMatchObject({ strategy: "softmax-mean", strategyModule: module });
    // The strategy's own parameter is trained and checkpointed with the patch phase.
    const step = fs.readFileSync(path.join(root, "runs", "js", "latest"), "utf8").trim();
    expect(fs.readFileSync(path.join(root, "runs", "js", step, "model.safetensors")).subarray(0, 4096).toString("latin1")).toContain("patch.softmax-mean.logits");

    const again = trainer(["resume", "js", "--runs-dir", "runs", "--max-steps", "2"]);
    expect(errorLines(again.stderr)).toEqual([]);
    expect(again.status).toBe(0);
    const seen = losses("js");
    expect(seen.map((x) => x.step)).toEqual([1, 2, 3, 4, 5]);
    for (const x of seen) expect(Number.isFinite(x.values["train/loss"])).toBe(true);

    const shown = trainer(["inspect", "js", "--runs-dir", "runs"]);
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout).strategyModule).toEqual({ ...recorded, now: "unchanged" });
  });

  it("refuses to resume with a module whose content changed, naming it, and inspect says so", () => {
    const module = path.join(root, "softmax-mean.mjs");
    fs.appendFileSync(module, "// edited after the run started\n");
    const r = trainer(["resume", "js", "--runs-dir", "runs", "--max-steps", "1"]);
    expect(r.status).toBe(1);
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/^error: patch strategy module .*softmax-mean\.mjs: its content changed since the run recorded it/)]);
    expect(JSON.parse(trainer(["inspect", "js", "--runs-dir", "runs"]).stdout).strategyModule.now).toBe("changed");
    fs.writeFileSync(module, softmaxMean);
    expect(trainer(["resume", "js", "--runs-dir", "runs", "--max-steps", "1"]).status).toBe(0);
  });

  it("the evaluator's patch loss uses the run's module strategy and the checkpoint's parameters of it", () => {
    const r = evaluator(["ppl", "runs/js", "--patch-size", "4", "--max-tokens", "400", "--json"]);
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(out.patch).toMatchObject({ K: 4, strategy: "softmax-mean", comparable: false });
    expect(Number.isFinite(out.patch.loss)).toBe(true);
    fs.appendFileSync(path.join(root, "softmax-mean.mjs"), "// edited\n");
    const changed = evaluator(["ppl", "runs/js", "--patch-size", "4", "--max-tokens", "400"]);
    expect(changed.status).toBe(1);
    expect(errorLines(changed.stderr)).toEqual([expect.stringMatching(/softmax-mean\.mjs: its content changed since the run recorded it/)]);
    fs.writeFileSync(path.join(root, "softmax-mean.mjs"), softmaxMean);
  });

  it("loads a TypeScript module whose default export is an array of strategies", () => {
    const r = trainer(trainArgs("ts", ["--strategy-module", "last-two.ts", "--strategy", "last-two", "--max-steps", "2"]));
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.status).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(root, "runs", "ts", "strategy-module.json"), "utf8")).strategies).toEqual(["last-two"]);
  });

  it("refuses a module without strategies, a missing module and an unknown name, leaving no run behind", () => {
    const none = trainer(trainArgs("none", ["--strategy-module", "nothing.mjs", "--strategy", "mean", "--max-steps", "1"]));
    expect(none.status).toBe(1);
    expect(errorLines(none.stderr)).toEqual([expect.stringMatching(/nothing\.mjs: exports no patch strategy \(exports: answer\)/)]);
    const missing = trainer(trainArgs("missing", ["--strategy-module", "no-such.mjs", "--max-steps", "1"]));
    expect(missing.status).toBe(1);
    expect(errorLines(missing.stderr)).toEqual([expect.stringMatching(/no-such\.mjs: no such file/)]);
    const unknown = trainer(trainArgs("unknown", ["--strategy-module", "softmax-mean.mjs", "--strategy", "softmax-men", "--max-steps", "1"]));
    expect(unknown.status).toBe(1);
    expect(errorLines(unknown.stderr)).toEqual([expect.stringMatching(/unknown patch strategy "softmax-men"; known strategies: mean, .*softmax-mean/)]);
    for (const name of ["none", "missing", "unknown"]) expect(fs.existsSync(path.join(root, "runs", name))).toBe(false);
  });
});
