/**
 * Our native training step against tuned PyTorch, interleaved in one invocation. Prints JSON.
 *
 *   npx tsx tools/bench-peer.ts [--rounds 3] [--steps 5] [--no-torch] [--no-bf16]
 *
 * Each round runs, one after another, each a fresh process timing token and patch steps
 * (tools/bench-step.ts, tools/bench-torch.py; the reference config, fp32):
 *   1. native, the machine's environment as set (OPENBLAS_CORETYPE=Haswell on the reference VMs);
 *   2. native with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (OpenBLAS picks its own kernels);
 *   3. PyTorch "tuned" (when /usr/bin/python3 has torch): OpenBLAS variables unset (AVX-512
 *      kernels), OMP_WAIT_POLICY=PASSIVE, tcmalloc preloaded (page faults are costly on these VMs).
 * Where the CPU has AVX512_BF16 (unless --no-bf16), two more setups: native with `--precision bf16`
 * (our VDPBF16PS GEMM; it reads no OpenBLAS variable, so it runs in the environment as set) and
 * PyTorch tuned under CPU autocast bf16.
 * Rounds interleave the setups, so a slowdown of the machine hits all alike; the report gives each
 * setup's median over rounds and the ratios between them. This script changes the OpenBLAS
 * variables only in the environments of the processes it starts, and says so in the JSON.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const argv = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const i = argv.indexOf(`--${name}`);
  const n = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got ${argv[i + 1]}`);
  return n;
};
const rounds = option("rounds", 3);
const steps = option("steps", 5);
const repo = path.resolve(__dirname, "..");
const python = "/usr/bin/python3";
const tcmalloc = ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"].find((f) => fs.existsSync(f));
const bf16 =
  !argv.includes("--no-bf16") &&
  spawnSync(process.execPath, ["--conditions=@patchlm/source", "--import", "tsx", "-e",
    "const r = require('@patchlm/native').NativeBackend.register(); process.stdout.write(String(r._tag === 'Registered' && r.info.bf16Supported))"],
    { cwd: path.resolve(__dirname, ".."), encoding: "utf8" }).stdout === "true";
const withTorch = !argv.includes("--no-torch") && spawnSync(python, ["-c", "import torch"]).status === 0;

const unsetBlas = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => {
  const out = { ...env };
  delete out.OPENBLAS_CORETYPE;
  delete out.OPENBLAS_L2_SIZE;
  return out;
};

interface Setup {
  readonly name: string;
  readonly command: string;
  readonly args: ReadonlyArray<string>;
  readonly env: NodeJS.ProcessEnv;
  readonly envNote: string;
}

const benchStep = ["--conditions=@patchlm/source", "--import", "tsx", path.join(repo, "tools", "bench-step.ts"), "--backend", "native", "--steps", String(steps)];
const asSet = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(unset)"}`;
const torchSetup = (name: string, extra: ReadonlyArray<string>): Setup => ({
  name,
  command: python,
  args: [path.join(repo, "tools", "bench-torch.py"), "--steps", String(steps), "--threads", String(os.availableParallelism()), ...extra],
  env: { ...unsetBlas(process.env), OMP_WAIT_POLICY: "PASSIVE", ...(tcmalloc === undefined ? {} : { LD_PRELOAD: tcmalloc }) },
  envNote: `OpenBLAS variables unset, OMP_WAIT_POLICY=PASSIVE, ${tcmalloc === undefined ? "no tcmalloc found" : `LD_PRELOAD=${tcmalloc}`}`,
});
const setups: ReadonlyArray<Setup> = [
  { name: "native, environment as set", command: process.execPath, args: benchStep, env: process.env, envNote: asSet },
  { name: "native, OpenBLAS variables unset", command: process.execPath, args: benchStep, env: unsetBlas(process.env), envNote: "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" },
  ...(bf16 ? [{ name: "native bf16", command: process.execPath, args: [...benchStep, "--precision", "bf16"], env: process.env, envNote: asSet }] : []),
  ...(withTorch ? [torchSetup("PyTorch tuned", [])] : []),
  ...(withTorch && bf16 ? [torchSetup("PyTorch tuned, autocast bf16", ["--precision", "bf16"])] : []),
];

interface ModeResult {
  readonly mode: string;
  readonly tokensPerSec: number;
  readonly msPerStep: number;
}
const samples = new Map<string, Array<{ token: number; patch: number; peakRssMiB: number; detail: string }>>();
for (let round = 0; round < rounds; round++) {
  for (const s of setups) {
    const r = spawnSync(s.command, s.args, { cwd: repo, env: s.env, encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`${s.name} failed (exit ${r.status}):\n${r.stderr.slice(-2000)}`);
    const report = JSON.parse(r.stdout) as { results: ReadonlyArray<ModeResult>; backend?: { detail: string }; openblas?: unknown; peakRssMiB: number };
    const by = (mode: string) => report.results.find((x) => x.mode === mode)!.tokensPerSec;
    const list = samples.get(s.name) ?? [];
    list.push({ token: by("token"), patch: by("patch"), peakRssMiB: report.peakRssMiB, detail: report.backend?.detail ?? JSON.stringify(report.openblas ?? null) });
    samples.set(s.name, list);
  }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const summary = setups.map((s) => {
  const list = samples.get(s.name)!;
  return {
    setup: s.name,
    environment: s.envNote,
    tokenTokensPerSec: { median: median(list.map((x) => x.token)), all: list.map((x) => x.token) },
    patchTokensPerSec: { median: median(list.map((x) => x.patch)), all: list.map((x) => x.patch) },
    peakRssMiB: { median: median(list.map((x) => x.peakRssMiB)), all: list.map((x) => x.peakRssMiB) },
    detail: list[0]!.detail,
  };
});
const torch = summary.find((x) => x.setup === "PyTorch tuned");
const torchBf16 = summary.find((x) => x.setup === "PyTorch tuned, autocast bf16");
const fp32 = summary.find((x) => x.setup === "native, environment as set")!;
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
console.log(
  JSON.stringify(
    {
      benchmark: "training step, reference config (B=8, T=256, AdamW; fp32, and bf16 matmuls where the CPU has them): native vs tuned PyTorch, interleaved",
      rounds,
      stepsPerRound: steps,
      note: "OpenBLAS variables were changed only in the environments of the started processes, as each setup says",
      cpu: os.cpus()[0]?.model,
      summary,
      ratios: Object.fromEntries(
        summary
          .filter((x) => x.setup.startsWith("native"))
          .map((x) => [
            x.setup,
            {
              patchOverOwnToken: ratio(x.patchTokensPerSec.median, x.tokenTokensPerSec.median),
              ...(torch === undefined
                ? {}
                : { tokenOverTorch: ratio(x.tokenTokensPerSec.median, torch.tokenTokensPerSec.median), patchOverTorch: ratio(x.patchTokensPerSec.median, torch.patchTokensPerSec.median) }),
              ...(x.setup !== "native bf16"
                ? {}
                : {
                    tokenOverOwnFp32: ratio(x.tokenTokensPerSec.median, fp32.tokenTokensPerSec.median),
                    patchOverOwnFp32: ratio(x.patchTokensPerSec.median, fp32.patchTokensPerSec.median),
                    ...(torchBf16 === undefined
                      ? {}
                      : {
                          tokenOverTorchBf16: ratio(x.tokenTokensPerSec.median, torchBf16.tokenTokensPerSec.median),
                          patchOverTorchBf16: ratio(x.patchTokensPerSec.median, torchBf16.patchTokensPerSec.median),
                        }),
                  }),
            },
          ]),
      ),
      loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    },
    null,
    2,
  ),
);
