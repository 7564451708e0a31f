import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// The addon on aarch64, checked from this x86 machine: every C++ source must compile for it (with
// and without OpenBLAS), and our SGEMM's NEON kernel, which no Node here can load, is built as a
// static aarch64 program (test/cc/sgemm_check.cc) and run under qemu-user against a float64
// reference on every kernel path that CPU runs. Needs Debian's g++-aarch64-linux-gnu and
// qemu-user-static (.ci/run installs them); without them the tests say so in their names.

const cross = "aarch64-linux-gnu-g++";
const qemu = "qemu-aarch64-static";
const runs = (command: string) => spawnSync(command, ["--version"], { encoding: "utf8" }).status === 0;
const ready = runs(cross) && runs(qemu);
const describeArm = ready ? describe : describe.skip;

const lib = path.resolve(__dirname, "..");
const sources = fs.readdirSync(path.join(lib, "src", "cc")).filter((f) => f.endsWith(".cc")).map((f) => path.join(lib, "src", "cc", f));
// The flags of binding.gyp, which warns but does not fail; here a warning fails.
const flags = ["-std=gnu++20", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"];
const napiInclude = path.resolve(lib, "..", "..", "node_modules", "node-addon-api");
// Node's own headers, where node-gyp finds them for the build of this machine's addon.
const nodeInclude = path.resolve(process.execPath, "..", "..", "include", "node");
const blasIncludes = spawnSync(process.execPath, [path.join(lib, "scripts", "blas.cjs"), "include_dirs"], { encoding: "utf8" })
  .stdout.trim().split(/\s+/).filter((d) => d !== "");

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-aarch64-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const compile = (compiler: string, args: ReadonlyArray<string>) => {
  const r = spawnSync(compiler, [...flags, ...args], { encoding: "utf8" });
  return { ok: r.status === 0, output: (r.stderr + r.stdout).slice(-4000) };
};

describeArm(`the addon on aarch64${ready ? "" : ` (skipped: needs ${cross} and ${qemu}: apt-get install g++-aarch64-linux-gnu qemu-user-static)`}`, () => {
  it.each([
    ["without OpenBLAS", ["-DPATCHLM_NO_OPENBLAS"]],
    ["with OpenBLAS", blasIncludes.map((d) => `-I${d}`)],
  ])("every source compiles for aarch64 %s, warning-free", (_what, extra) => {
    const defines = ["-DNAPI_VERSION=8", "-DNAPI_DISABLE_CPP_EXCEPTIONS", `-I${napiInclude}`, `-I${nodeInclude}`, ...extra];
    for (const source of sources) {
      const r = compile(cross, ["-fsyntax-only", ...defines, source]);
      expect({ source: path.basename(source), ...r }).toEqual({ source: path.basename(source), ok: true, output: "" });
    }
  }, 120_000);

  it("runs the NEON and portable SGEMM kernels under qemu-user, equal to a float64 reference on every entry", () => {
    const program = path.join(dir, "sgemm_check");
    const built = compile(cross, ["-static", "-o", program, path.join(lib, "test", "cc", "sgemm_check.cc"), path.join(lib, "src", "cc", "sgemm.cc")]);
    expect(built).toEqual({ ok: true, output: "" });
    const r = spawnSync(qemu, [program], { encoding: "utf8" });
    expect(r.stdout).toMatch(/^ok - neon: 18 shapes × 4 transpose forms, 0 failed$/m);
    expect(r.stdout).toMatch(/^ok - portable: /m);
    expect(r.stdout).not.toMatch(/^not ok/m);
    expect(r.status).toBe(0);
  }, 120_000);
});

(runs("g++") ? it : it.skip)("the same check program passes natively on this machine's kernel paths", () => {
  const program = path.join(dir, "sgemm_check_native");
  const built = compile("g++", ["-o", program, path.join(lib, "test", "cc", "sgemm_check.cc"), path.join(lib, "src", "cc", "sgemm.cc")]);
  expect(built).toEqual({ ok: true, output: "" });
  const r = spawnSync(program, [], { encoding: "utf8" });
  expect(r.stdout).toMatch(/^ok - portable: /m);
  expect(r.stdout).not.toMatch(/^not ok/m);
  expect(r.status).toBe(0);
}, 120_000);
