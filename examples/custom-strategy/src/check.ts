/**
 * What CI runs in this example (`npm test`): the strategy trained through the library, then
 * through the installed trainer command with `--strategy-module`, interrupted and resumed, then
 * evaluated. Each check prints `ok - …` or `not ok - …`; any failure exits 1.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { cliFlags } from "./settings.js";

const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const work = fs.mkdtempSync(path.join(here, ".work-"));
let failures = 0;

const check = (name: string, ok: boolean, detail = ""): void => {
  console.log(`${ok ? "ok" : "not ok"} - ${name}${detail === "" ? "" : ` (${detail})`}`);
  if (!ok) failures++;
};

/** Run a command in the work folder; its output is shown only when it fails. */
const run = (command: string, args: ReadonlyArray<string>): string => {
  const r = spawnSync(command, args, { cwd: work, encoding: "utf8" });
  if (r.status !== 0) {
    console.log(`# ${command} ${args.join(" ")} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
    throw new Error(`${command} ${args[0]} failed`);
  }
  return r.stdout;
};
const npx = (bin: string, args: ReadonlyArray<string>) => run("npx", ["--no-install", bin, ...args]);

/** train/loss of every step, from a run's metrics.jsonl. */
const losses = (run: string): Array<number> =>
  fs
    .readFileSync(path.join(work, "runs", run, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { values: Record<string, number> })
    .map((r) => r.values["train/loss"])
    .filter((v): v is number => v !== undefined);

/** One float32 tensor of a safetensors file (8-byte header length, JSON header, data). */
const readTensor = (file: string, name: string): Float32Array => {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, { data_offsets: [number, number] }>;
  const entry = header[name];
  if (entry === undefined) throw new Error(`${file} holds no ${name}`);
  const [from, to] = entry.data_offsets;
  const data = bytes.subarray(8 + headerLength + from, 8 + headerLength + to);
  return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
};

try {
  // A small corpus of our own: six documents of plain text.
  fs.mkdirSync(path.join(work, "corpus"));
  for (let d = 0; d < 6; d++) {
    const lines = Array.from({ length: 80 }, (_, i) => `Line ${i} of document ${d}: a patch is the mean of its ${d + 2} tokens.`);
    fs.writeFileSync(path.join(work, "corpus", `d${d}.txt`), lines.join("\n"));
  }
  npx("patchlm-trainer", ["prepare", "--corpus", "corpus", "--out", "data", "--tokenizer", "bytes", "--val-fraction", "0.2"]);
  check("patchlm-trainer prepare wrote the data", fs.existsSync(path.join(work, "data", "manifest.json")));

  // 1. The library entry.
  const summary = JSON.parse(run(process.execPath, [path.join(here, "dist", "train.js"), "data", "runs"]).trim().split("\n").at(-1)!) as {
    ended: string;
    step: number;
    losses: ReadonlyArray<{ phase: string; loss: number }>;
  };
  check("library: 20 steps, finished", summary.ended === "finished" && summary.step === 20, `${summary.ended} at ${summary.step}`);
  check(
    "library: 10 patch steps then 10 token steps",
    summary.losses.map((l) => l.phase).join(",") === [...Array(10).fill("patch"), ...Array(10).fill("token")].join(","),
  );
  check("library: every loss finite", summary.losses.every((l) => Number.isFinite(l.loss)));
  const learned = readTensor(path.join(work, "runs", "library", "step-00000010", "model.safetensors"), "patch.channel-weighted-mean.logits");
  const moved = learned.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  check("library: the strategy's own logits trained away from zero", moved > 0, `max |logit| ${moved.toExponential(2)}`);

  // 2. The trainer command with the strategy module: uninterrupted, and stopped then resumed.
  const module = path.join(here, "dist", "strategy.js");
  npx("patchlm-trainer", ["train", "--name", "cli", "--data", "data", "--strategy-module", module, ...cliFlags]);
  npx("patchlm-trainer", ["train", "--name", "cli-resumed", "--data", "data", "--strategy-module", module, ...cliFlags, "--max-steps", "7"]);
  check("cli: stopped at step 7", losses("cli-resumed").length === 7);
  npx("patchlm-trainer", ["resume", "cli-resumed"]);
  const full = losses("cli");
  const resumed = losses("cli-resumed");
  check("cli: 20 finite losses", full.length === 20 && full.every(Number.isFinite));
  check("cli: resumed run equals the uninterrupted one at every step", JSON.stringify(resumed) === JSON.stringify(full));
  check(
    "cli: the same losses as the library run",
    JSON.stringify(full) === JSON.stringify(summary.losses.map((l) => l.loss)),
    `first ${full[0]?.toFixed(4)} vs ${summary.losses[0]?.loss.toFixed(4)}`,
  );
  const record = JSON.parse(fs.readFileSync(path.join(work, "runs", "cli", "strategy-module.json"), "utf8")) as { strategies: Array<string> };
  check("cli: the run recorded the strategy module", record.strategies.includes("channel-weighted-mean"));
  const inspect = npx("patchlm-trainer", ["inspect", "cli"]);
  check("cli: inspect shows the module unchanged", /channel-weighted-mean/.test(inspect) && /unchanged/.test(inspect));

  // A TypeScript strategy module: the installed trainer is compiled JavaScript, so it loads the
  // file through this project's tsx (a devDependency); without tsx it says how to fix that.
  npx("patchlm-trainer", ["train", "--name", "cli-ts", "--data", "data", "--strategy-module", path.join(here, "src", "strategy.ts"), ...cliFlags, "--max-steps", "3"]);
  check("cli: a TypeScript strategy module trains through the project's tsx", losses("cli-ts").length === 3);
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-no-tsx-"));
  fs.copyFileSync(path.join(here, "src", "strategy.ts"), path.join(outside, "strategy.ts"));
  const noTsx = spawnSync(process.execPath, [path.join(here, "node_modules", "@patchlm", "trainer", "dist", "main.js"), "train", "--name", "no-tsx", "--data", path.join(work, "data"), "--runs-dir", path.join(work, "runs"), "--strategy-module", path.join(outside, "strategy.ts"), ...cliFlags], { cwd: outside, encoding: "utf8" });
  fs.rmSync(outside, { recursive: true, force: true });
  check(
    "cli: without tsx in reach, a TypeScript module is one clear error",
    noTsx.status === 1 && /is TypeScript and this process runs none: add tsx to your project/.test(noTsx.stderr),
    noTsx.stderr.trim().split("\n").at(-1),
  );

  // 3. The evaluator: token perplexity of the finished run, patch loss of a patch-phase checkpoint.
  const ppl = JSON.parse(npx("patchlm-evaluator", ["ppl", "runs/cli", "--json"]).trim().split("\n").at(-1)!) as { loss: number; ppl: number; tokens: number };
  check("evaluator: token loss and perplexity", Number.isFinite(ppl.loss) && ppl.ppl > 1 && ppl.tokens > 0, `loss ${ppl.loss.toFixed(4)}, ppl ${ppl.ppl.toFixed(2)}`);
  const patch = JSON.parse(
    npx("patchlm-evaluator", ["ppl", "runs/cli/step-00000010", "--patch-size", "4", "--json"]).trim().split("\n").at(-1)!,
  ) as { patch?: { K: number; loss: number; strategy: string } };
  check(
    "evaluator: patch loss with the run's strategy",
    patch.patch?.strategy === "channel-weighted-mean" && patch.patch.K === 4 && Number.isFinite(patch.patch.loss),
    JSON.stringify(patch.patch),
  );
  // The run's context is 16 tokens (bytes here): a 4-byte prompt leaves room for 8 new ones.
  const generated = npx("patchlm-evaluator", ["generate", "runs/cli", "--prompt", "Line", "--max-new-tokens", "8", "--greedy"]);
  check("evaluator: generate continues a prompt from the run", Buffer.byteLength(generated.replace(/\n$/, "")) >= 1, JSON.stringify(generated));
  const compared = npx("patchlm-evaluator", ["compare", "runs/cli", "runs/library", "--no-eval", "--out", "report"]);
  check("evaluator: compare shows each run's strategy", (compared.match(/channel-weighted-mean/g) ?? []).length >= 2);
} catch (e) {
  check("the example ran to its end", false, (e as Error).message);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(failures === 0 ? "# all checks passed" : `# ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
