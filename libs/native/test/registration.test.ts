import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describeNative, registration } from "./support";
import { NativeBackend } from "../src";

const sseOnly = new Set(["Prescott", "Core2", "Penryn", "Nehalem"]);
const cpuHasAvx = existsSync("/proc/cpuinfo") && /^flags\s*:.*\bavx\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));

describeNative("native backend registration", () => {
  const info = registration._tag === "Registered" ? registration.info : undefined;

  it("leaves OPENBLAS_CORETYPE as the environment had it", () => {
    // jest workers inherit the environment of the CI run; registration must not change it.
    expect(info?.coretype).toBe(process.env.OPENBLAS_CORETYPE);
  });

  it("honours a user's OPENBLAS_CORETYPE and otherwise never keeps a misdetected SSE core on an AVX CPU", () => {
    if (info === undefined) throw new Error("unreachable: describeNative skips when unregistered");
    if (process.env.OPENBLAS_CORETYPE !== undefined) {
      expect(info.blasCoreDetected).toBeUndefined();
      return;
    }
    if (info.blasCoreDetected !== undefined) {
      // Repaired: the replacement is a vector core, and the advice line no longer fires.
      expect(sseOnly.has(info.blasCoreDetected)).toBe(true);
      expect(sseOnly.has(info.blasCore)).toBe(false);
      expect(NativeBackend.advice(info)).toBeUndefined();
    }
    if (cpuHasAvx) expect(sseOnly.has(info.blasCore)).toBe(false);
  });

  it("registers again idempotently, keeping the core it chose", () => {
    const again = NativeBackend.register({ threads: 2 });
    expect(again._tag).toBe("Registered");
    if (again._tag === "Registered" && info !== undefined) {
      expect(again.info.blasCore).toBe(info.blasCore);
      expect(again.info.blasCoreDetected).toBe(info.blasCoreDetected);
    }
  });
});

describeNative("the addon's thread pool", () => {
  // A resize right after a resize stopped the pool while a new worker had not yet read the
  // generation it starts from; it then waited for a change that never came, and the resize waited
  // to join it forever (seen in jest as a silent hang). In a child process, so a hang fails here.
  it("survives 20,000 resizes back and forth between one and two threads", () => {
    const r = spawnSync(
      process.execPath,
      ["--conditions=@patchlm/source", "--import", "tsx", "-e",
        "const { NativeBackend } = require('@patchlm/native'); for (let i = 0; i < 20000; i++) NativeBackend.register({ threads: 1 + (i % 2) }); console.log('done')"],
      { cwd: path.resolve(__dirname, "..", "..", ".."), encoding: "utf8", timeout: 60_000 },
    );
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim() }).toEqual({ status: 0, signal: null, stdout: "done" });
  }, 90_000);
});

describeNative("NativeBackend.measurePeakGflops", () => {
  it("measures a positive FP32 peak once per process, within what the ISA allows at up to 6 GHz", () => {
    const peak = NativeBackend.measurePeakGflops(2);
    expect(peak).toBeGreaterThan(1);
    // 2 threads × 6 GHz × 64 FLOP/cycle (two AVX-512 FMA pipes) bounds any current x86 core.
    expect(peak).toBeLessThan(2 * 6 * 64);
    expect(NativeBackend.measurePeakGflops(2)).toBe(peak);
  });
});
