import * as tf from "@tensorflow/tfjs";
import { NativeBackend } from "@patchlm/native";
import { runTest, runTestFailure } from "@patchlm/testing";
import { ConfigProvider, Effect, HashMap, List, Logger, LogLevel } from "effect";
import * as fs from "node:fs";
import * as os from "node:os";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { ComputeBackend } from "../src";
import { flopsPerCycle, machineKey, peakCacheFile } from "../src/internal/peak";

// The peak cache of these tests: a temporary folder, never the user's ~/.cache.
const cacheHome = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-peak-"));
afterAll(() => fs.rmSync(cacheHome, { recursive: true, force: true }));

/** Run `make` with a fixed environment (never the real one) and capture the log lines. */
const make = (options: ComputeBackend.Options, given: Record<string, string> = {}) => {
  const env = { XDG_CACHE_HOME: cacheHome, ...given };
  const lines: Array<{ level: string; message: string; annotations: Record<string, unknown> }> = [];
  const logger = Logger.make(({ logLevel, message, annotations }) => {
    lines.push({
      level: logLevel.label,
      message: List.toArray(List.fromIterable(Array.isArray(message) ? message : [message])).join(" "),
      annotations: Object.fromEntries(HashMap.toEntries(annotations)),
    });
  });
  const effect = ComputeBackend.make(options).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
    Logger.withMinimumLogLevel(LogLevel.Debug),
  );
  return { effect, lines };
};

const nativeHere = NativeBackend.availability().available;

describe("ComputeBackend", () => {
  it("runs cpu when asked, switches tfjs to it and logs the choice once at info level", async () => {
    const { effect, lines } = make({ backend: "cpu", peakGflops: 100 });
    const s = await runTest(effect);
    expect(s).toMatchObject({ name: "cpu", chosenBy: "options", threads: 1, peakGflops: 100, peakSource: "options", skipped: [] });
    expect(tf.getBackend()).toBe("cpu");
    const info = lines.filter((l) => l.level !== "DEBUG");
    expect(info).toHaveLength(1);
    expect(info[0].level).toBe("INFO");
    expect(info[0].message).toContain("compute backend: cpu (options), 1 thread(s), FP32 peak 100 GFLOP/s (options)");
    expect(info[0].annotations).toEqual({ backend: "cpu" });
  });

  it("runs wasm with its kernel fixes installed, on the threads asked for (the threaded build)", async () => {
    const s = await runTest(make({ backend: "wasm", threads: 2 }).effect);
    expect(s.name).toBe("wasm");
    expect(tf.getBackend()).toBe("wasm");
    expect(s.threads).toBe(2);
    expect(s.detail).toContain("threaded-SIMD build; threads as set");
    expect(s.detail).toContain("UnsortedSegmentSum");
    // The module holds its pool for the process: a later request reports the count in use.
    const again = await runTest(make({ backend: "wasm", threads: 1 }).effect);
    expect(again.threads).toBe(2);
    expect(again.detail).toContain("threads as first set in this process");
    expect(tf.getKernel("UnsortedSegmentSum", "wasm")).toBeDefined();
  });

  it("takes the backend from PATCHLM_BACKEND when the options say auto, and options win over it", async () => {
    expect(await runTest(make({ backend: "auto" }, { PATCHLM_BACKEND: "cpu" }).effect)).toMatchObject({ name: "cpu", chosenBy: "env" });
    expect(await runTest(make({}, { PATCHLM_BACKEND: "cpu" }).effect)).toMatchObject({ name: "cpu", chosenBy: "env" });
    expect(await runTest(make({ backend: "wasm" }, { PATCHLM_BACKEND: "cpu" }).effect)).toMatchObject({ name: "wasm", chosenBy: "options" });
  });

  it("rejects an unknown PATCHLM_BACKEND, naming the variable and the choices", async () => {
    const e = await runTestFailure(make({}, { PATCHLM_BACKEND: "gpu" }).effect);
    expect(e).toMatchObject({ _tag: "BackendError", reason: "UnknownBackend", backend: "gpu" });
    expect(e.message).toContain("PATCHLM_BACKEND=gpu: expected one of auto, tensorflow, native, wasm, cpu");
  });

  it("fails an explicit request for tensorflow here, saying why and how to enable it", async () => {
    const e = await runTestFailure(make({ backend: "tensorflow" }).effect);
    expect(e).toMatchObject({ _tag: "BackendError", reason: "Unavailable", backend: "tensorflow" });
    expect(e.message).toContain("@tensorflow/tfjs-node-gpu");
    expect(e.message).toContain("npm install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node");
  });

  it("picks the best available backend in auto mode: native when the addon loads, else wasm", async () => {
    const { effect, lines } = make({});
    const s = await runTest(effect);
    expect(s.chosenBy).toBe("auto");
    expect(s.name).toBe(nativeHere ? "native" : "wasm");
    expect(tf.getBackend()).toBe(s.name);
    expect(s.skipped.map((x) => x.backend)).toEqual(nativeHere ? ["tensorflow"] : ["tensorflow", "native"]);
    const visible = lines.filter((l) => l.level !== "DEBUG");
    expect(visible).toHaveLength(1);
    expect(visible[0].level).toBe(nativeHere ? "INFO" : "WARN");
    expect(lines.find((l) => l.level === "DEBUG")?.message).toContain("tensorflow unavailable");
  });

  it("fails an explicit native request with the build advice when the addon is missing, else runs it", async () => {
    if (nativeHere) {
      const s = await runTest(make({ backend: "native", threads: 1 }).effect);
      expect(s).toMatchObject({ name: "native", threads: 1 });
      expect(s.detail).toMatch(/\d+ native kernels/);
    } else {
      const e = await runTestFailure(make({ backend: "native" }).effect);
      expect(e.message).toContain("apt-get install libopenblas-dev");
    }
  });

  const registered = () => {
    const r = NativeBackend.register();
    return r._tag === "Registered" ? r.info : undefined;
  };

  it("runs bf16 matmuls on native only: refused on cpu and wasm with the precision to change, picked by auto", async () => {
    const onCpu = await runTestFailure(make({ backend: "cpu", precision: "bf16", peakGflops: 100 }).effect);
    expect(onCpu.message).toContain("bf16 matmuls run on the native backend only");
    expect(onCpu.message).toContain("use precision fp32 here");
    expect(onCpu.message).not.toContain("To enable it");
    if (registered()?.bf16Supported === true) {
      const s = await runTest(make({ precision: "bf16", peakGflops: 100 }).effect);
      expect(s).toMatchObject({ name: "native", precision: "bf16" });
      expect(s.detail).toContain("matmuls bf16");
      // The next choice at fp32 turns bf16 off again in the shared addon.
      const back = await runTest(make({ backend: "native", peakGflops: 100 }).effect);
      expect(back.precision).toBe("fp32");
      expect(registered()?.precision).toBe("fp32");
    } else {
      const e = await runTestFailure(make({ precision: "bf16", peakGflops: 100 }).effect);
      expect(e.message).toContain("precision bf16 needs the native backend");
    }
  });

  it("says how to enable native, in one warning line, when auto mode fell back", () => {
    const s: ComputeBackend.Service = {
      name: "wasm",
      chosenBy: "auto",
      threads: 1,
      precision: "fp32",
      peakGflops: 537.6,
      peakSource: "estimate",
      detail: "kernel fixes",
      skipped: [
        { backend: "tensorflow", reason: "not installed" },
        { backend: "native", reason: "no OpenBLAS (libopenblas-dev)" },
      ],
    };
    expect(ComputeBackend.describe(s)).toEqual({
      level: "Warning",
      line:
        "compute backend: wasm (auto), 1 thread(s), FP32 peak 537.6 GFLOP/s (estimate); kernel fixes. " +
        "native unavailable: no OpenBLAS (libopenblas-dev). To enable it: " +
        "apt-get install libopenblas-dev pkg-config, then npm rebuild @patchlm/native",
    });
  });

  it("reads threads and peak from the environment and rejects invalid values", async () => {
    const s = await runTest(make({ backend: "cpu" }, { PATCHLM_PEAK_GFLOPS: "250.5", PATCHLM_THREADS: "1" }).effect);
    expect(s).toMatchObject({ peakGflops: 250.5, peakSource: "env" });
    const bad = await runTestFailure(make({ backend: "cpu" }, { PATCHLM_THREADS: "0" }).effect);
    expect(bad).toMatchObject({ reason: "BadSetting" });
    expect(bad.message).toContain("PATCHLM_THREADS");
    const notNumber = await runTestFailure(make({ backend: "cpu" }, { PATCHLM_PEAK_GFLOPS: "fast" }).effect);
    expect(notNumber.message).toContain("PATCHLM_PEAK_GFLOPS");
  });

  it("estimates the peak as cores x clock x FP32 FLOPs per cycle (537.6 on the 2-core AVX-512 reference machines)", async () => {
    expect(flopsPerCycle(new Set(["avx2", "fma", "avx512f"]))).toBe(64);
    expect(flopsPerCycle(new Set(["avx2", "fma"]))).toBe(32);
    expect(flopsPerCycle(new Set(["sse2"]))).toBe(8);
    const s = await runTest(make({ backend: "cpu" }, { PATCHLM_CPU_GHZ: "4.2" }).effect);
    expect(s.peakSource).toBe("estimate");
    expect([availableParallelism() * 4.2 * 64, availableParallelism() * 4.2 * 32]).toContainEqual(s.peakGflops);
  });

  it("measures the peak with the native addon when no figure or clock is given", async () => {
    const s = await runTest(make({ backend: "cpu" }, {}).effect);
    if (nativeHere) {
      expect(s.peakSource).toBe("measured");
      // every core × at most 6 GHz × 64 FLOP/cycle (two AVX-512 FMA pipes)
      expect(s.peakGflops).toBeGreaterThan(1);
      expect(s.peakGflops).toBeLessThan(availableParallelism() * 6 * 64);
    } else {
      expect(s.peakSource).toBe("estimate");
    }
  });

  (nativeHere ? it : it.skip)("measures the peak once per machine, then reads it from the cache: the same machine reports the same peak", async () => {
    const home = fs.mkdtempSync(path.join(cacheHome, "once-"));
    const file = peakCacheFile(home);
    const first = await runTest(make({ backend: "cpu", threads: 2 }, { XDG_CACHE_HOME: home }).effect);
    expect(first.peakDetail).toMatch(/^now \(\d{4}-\d{2}-\d{2}\), cached in /);
    const stored = JSON.parse(fs.readFileSync(file, "utf8")) as { machines: Record<string, { gflops: number }> };
    expect(stored.machines[machineKey(2)]!.gflops).toBe(first.peakGflops);
    // What the cache says wins over a new measurement: a planted figure comes back as it is.
    fs.writeFileSync(file, JSON.stringify({ machines: { [machineKey(2)]: { gflops: 123.4, measuredAt: "2026-01-02" } } }));
    const again = await runTest(make({ backend: "cpu", threads: 2 }, { XDG_CACHE_HOME: home }).effect);
    expect(again).toMatchObject({ peakGflops: 123.4, peakSource: "measured" });
    expect(again.peakDetail).toBe(`on 2026-01-02, cached in ${file}; delete it to measure again`);
    expect(ComputeBackend.describe(again).line).toContain("FP32 peak 123.4 GFLOP/s (measured on 2026-01-02, cached in");
    // A damaged cache is measured over and rewritten, not an error.
    fs.writeFileSync(file, "{ not json");
    const repaired = await runTest(make({ backend: "cpu", threads: 2 }, { XDG_CACHE_HOME: home }).effect);
    expect(repaired.peakDetail).toMatch(/^now \(/);
    expect(JSON.parse(fs.readFileSync(file, "utf8")).machines[machineKey(2)].gflops).toBe(repaired.peakGflops);
  });

  it("provides the service through layerFor", async () => {
    const name = await runTest(
      Effect.provide(
        Effect.map(ComputeBackend.ComputeBackend, (s) => s.name),
        ComputeBackend.layerFor("cpu"),
      ).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
    );
    expect(name).toBe("cpu");
  });
});
