import * as tf from "@tensorflow/tfjs";
import { getThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import { AtomicFile, Backend } from "@patchlm/core";
import { NativeBackend } from "@patchlm/native";
import { Config, Context, Effect, Layer, Option, Schema } from "effect";
import { availableParallelism } from "node:os";
import { BackendError } from "./Errors";
import { idleCores, readCpuTimes, threadsFor } from "./internal/idle";
import { defaultClockGhz, estimatePeakGflops, isUsablePeak, machineKey, peakCacheFile, readPeakCache } from "./internal/peak";
import { probeTensorflow, tensorflowPackages } from "./internal/tensorflow";
import * as WasmKernels from "./internal/wasmKernels";
import * as WasmThreads from "./internal/wasmThreads";

/** The compute backends, best first (the list lives in `@patchlm/core`'s `Backend`). */
export const BackendName = Backend.Name;
export type BackendName = Backend.Name;
export const preference: ReadonlyArray<BackendName> = BackendName.literals;

/** What a config file, flag or `PATCHLM_BACKEND` may ask for; `auto` means the best available. */
export const Choice = Backend.Choice;
export type Choice = Backend.Choice;

/** Environment variables read when the options leave a setting open. */
export const env = {
  backend: "PATCHLM_BACKEND",
  threads: "PATCHLM_THREADS",
  peakGflops: "PATCHLM_PEAK_GFLOPS",
  clockGhz: "PATCHLM_CPU_GHZ",
} as const;

export interface Options {
  /** From the run config or a flag; `auto` or absent defers to `PATCHLM_BACKEND`, then the best available. */
  readonly backend?: Choice;
  /**
   * Threads for the native backend (BLAS and its own pool; absent: `PATCHLM_THREADS`, then
   * `OPENBLAS_NUM_THREADS`, then every core) and for wasm (XNNPACK's pool, at most 8; absent:
   * `PATCHLM_THREADS`, then the cores idle at start). The other backends choose their own.
   */
  readonly threads?: number;
  /**
   * The machine's FP32 peak for MFU. Absent: `PATCHLM_PEAK_GFLOPS`; then, with `PATCHLM_CPU_GHZ`,
   * an estimate at that clock; then a measurement (FMA chains on every core, needs the native
   * addon, about 0.3 s once per process); then an estimate at the reference machines' clock.
   */
  readonly peakGflops?: number;
  /**
   * Matmul precision (default fp32). `bf16` needs the native backend on a CPU with AVX512_BF16:
   * under `auto` only native qualifies, and where it cannot run bf16 the choice fails saying why.
   */
  readonly precision?: Precision;
}

/** The matmul precisions (`@patchlm/core`'s `Backend.Precision`). */
export const Precision = Backend.Precision;
export type Precision = Backend.Precision;

export interface Service {
  /** The backend that runs (also the tfjs backend name). */
  readonly name: BackendName;
  /** Where the choice came from. */
  readonly chosenBy: "options" | "env" | "auto";
  /** Threads the backend computes with. */
  readonly threads: number;
  /** The matmuls' precision. */
  readonly precision: Precision;
  /** FP32 peak of the machine in GFLOP/s, for MFU; undefined when unknown. */
  readonly peakGflops: number | undefined;
  readonly peakSource: "options" | "env" | "measured" | "estimate" | "unknown";
  /** For a measured peak: when ("on 2026-12-07" from the cache, or "now") and the cache file that keeps it. */
  readonly peakDetail?: string;
  /** Implementation details for logs and bench output (package, BLAS build, kernel fixes). */
  readonly detail: string;
  /** Why better backends were passed over, one entry each (auto only). */
  readonly skipped: ReadonlyArray<{ readonly backend: BackendName; readonly reason: string }>;
}

export class ComputeBackend extends Context.Tag("@patchlm/backend/ComputeBackend")<ComputeBackend, Service>() {}

/** How to enable each backend, quoted in errors and in the fallback log line. */
export const howToEnable: Record<BackendName, string> = {
  tensorflow:
    `npm install ${tensorflowPackages.join(" or ")} (optional peer dependencies; their install script ` +
    `downloads libtensorflow, so it needs internet access beyond the npm registry)`,
  native: NativeBackend.howToEnable,
  wasm: "npm ci (the @tensorflow/tfjs-backend-wasm dependency ships its .wasm files)",
  cpu: "always available",
};

interface Activated {
  readonly threads: number;
  readonly detail: string;
}

type Probe =
  | { readonly _tag: "Ready"; readonly activated: Activated }
  // `fix`: what to change instead of installing the backend (a setting it cannot run).
  | { readonly _tag: "Unavailable"; readonly reason: string; readonly fix?: string };

const useFp32 = "use precision fp32 here";

const setBackend = (name: BackendName): Effect.Effect<void, BackendError> =>
  Effect.tryPromise({
    try: async () => {
      const ok = await tf.setBackend(name);
      await tf.ready();
      return ok;
    },
    catch: (e) => new BackendError({ backend: name, reason: "InitFailed", detail: String(e) }),
  }).pipe(
    Effect.filterOrFail(
      (ok) => ok && tf.getBackend() === name,
      () => new BackendError({ backend: name, reason: "InitFailed", detail: `tf.setBackend("${name}") failed` }),
    ),
    Effect.asVoid,
  );

/**
 * wasm's default thread count: the cores idle over a short sample at start (./internal/idle: its
 * pool spins while it waits, so a thread on a busy core slows every matmul), every core where
 * there is no /proc/stat.
 */
const idleThreads = Effect.gen(function* () {
  const cores = availableParallelism();
  const before = readCpuTimes();
  const [wall0, own0] = [performance.now(), process.cpuUsage()];
  yield* Effect.sleep("200 millis");
  const after = readCpuTimes();
  const own = process.cpuUsage(own0);
  const wallMs = performance.now() - wall0;
  const idle = before === undefined || after === undefined ? undefined : idleCores(before, after, cores, (own.user + own.system) / 1000, wallMs);
  if (idle === undefined) return { count: cores, why: `one per core (${cores}; no /proc/stat to see which are idle)` };
  return { count: threadsFor(idle, cores), why: `for the idle cores (${idle.toFixed(1)} of ${cores} at start; ${env.threads} sets the count)` };
});

/** Make one backend usable and switch tfjs to it, or say why it is unavailable here. */
const probe = (name: BackendName, threads: number | undefined, precision: Precision): Effect.Effect<Probe, BackendError> => {
  if (precision === "bf16" && name !== "native") {
    return Effect.succeed({ _tag: "Unavailable", reason: "bf16 matmuls run on the native backend only (precision bf16)", fix: useFp32 });
  }
  switch (name) {
    case "tensorflow": {
      const found = probeTensorflow();
      if (found._tag === "Missing") return Effect.succeed({ _tag: "Unavailable", reason: found.reason });
      return setBackend(name).pipe(Effect.map(() => ready({ threads: availableParallelism(), detail: found.packageName })));
    }
    case "native": {
      const registration = NativeBackend.register({ precision, ...(threads === undefined ? {} : { threads }) });
      if (registration._tag === "Unavailable") {
        return Effect.succeed({
          _tag: "Unavailable",
          reason: registration.reason,
          ...(precision === "bf16" && registration.reason === NativeBackend.bf16Unsupported ? { fix: useFp32 } : {}),
        });
      }
      const info = registration.info;
      return setBackend(name).pipe(
        Effect.map(() =>
          ready({
            threads: Math.max(info.blasThreads, info.poolThreads),
            detail: [
              info.blas,
              `core ${info.blasCore} (OPENBLAS_CORETYPE=${info.coretype ?? "unset"}` +
                (info.blasCoreDetected === undefined
                  ? ")"
                  : `; OpenBLAS 0.3.21 misdetected this CPU as ${info.blasCoreDetected}, core chosen by CPU features as upstream OpenBLAS does; PATCHLM_BLAS_REDETECT=0 keeps OpenBLAS's pick)`),
              info.precision === "bf16"
                ? "matmuls bf16 (our AVX512_BF16 GEMM: operands rounded to bf16, fp32 sums; MFU stays against the FP32 peak)"
                : `GEMM ${info.gemm} (${info.gemmReason}; PATCHLM_GEMM=own|openblas chooses)`,
              `${info.kernels.length} native kernels`,
              ...[NativeBackend.advice(info)].filter((a) => a !== undefined),
            ].join("; "),
          }),
        ),
      );
    }
    case "wasm":
      return Effect.gen(function* () {
        WasmKernels.install();
        const earlier = WasmThreads.registeredThreads();
        const wanted =
          earlier !== undefined
            ? { count: earlier, why: "as first set in this process" }
            : threads === undefined
              ? yield* idleThreads
              : { count: threads, why: "as set" };
        const build = yield* Effect.promise(() => WasmThreads.register(wanted.count));
        yield* setBackend(name);
        return ready({
          threads: getThreadsCount(),
          detail: [
            build._tag === "Threaded" ? "threaded-SIMD build" : `single-threaded SIMD build (${build.reason})`,
            `threads ${wanted.why}`,
            `kernel fixes: ${WasmKernels.fixedKernels.join(", ")}`,
          ].join("; "),
        });
      });
    case "cpu":
      return setBackend(name).pipe(Effect.map(() => ready({ threads: 1, detail: "pure JavaScript" })));
  }
};

const ready = (activated: Activated): Probe => ({ _tag: "Ready", activated });

const optionalEnv = <A>(config: Config.Config<A>) =>
  Config.option(config).pipe(Effect.map(Option.getOrUndefined));

const badSetting = (name: string) => (e: unknown) =>
  new BackendError({ backend: "(settings)", reason: "BadSetting", detail: `${name}: ${String(e)}` });

const positive = (name: string) => (value: number | undefined) =>
  value === undefined || (Number.isFinite(value) && value > 0)
    ? Effect.succeed(value)
    : Effect.fail(badSetting(name)(`expected a positive number, got ${value}`));

/** Resolve the requested backend: options first, then `PATCHLM_BACKEND`. */
const resolveChoice = (options: Options) =>
  Effect.gen(function* () {
    if (options.backend !== undefined && options.backend !== "auto") return { choice: options.backend, chosenBy: "options" as const };
    const fromEnv = yield* optionalEnv(Config.string(env.backend)).pipe(Effect.mapError(badSetting(env.backend)));
    if (fromEnv === undefined || fromEnv === "" || fromEnv === "auto") return { choice: "auto" as const, chosenBy: "auto" as const };
    if (!Schema.is(BackendName)(fromEnv)) {
      return yield* new BackendError({
        backend: fromEnv,
        reason: "UnknownBackend",
        detail: `${env.backend}=${fromEnv}: expected one of auto, ${preference.join(", ")}`,
      });
    }
    return { choice: fromEnv, chosenBy: "env" as const };
  });

const resolvePeak = (options: Options, threads: number | undefined) =>
  Effect.gen(function* () {
    if (options.peakGflops !== undefined) {
      return { peakGflops: yield* positive("peakGflops")(options.peakGflops), peakSource: "options" as const };
    }
    const fromEnv = yield* optionalEnv(Config.number(env.peakGflops)).pipe(
      Effect.mapError(badSetting(env.peakGflops)),
      Effect.flatMap(positive(env.peakGflops)),
    );
    if (fromEnv !== undefined) return { peakGflops: fromEnv, peakSource: "env" as const };
    const clock = yield* optionalEnv(Config.number(env.clockGhz)).pipe(
      Effect.mapError(badSetting(env.clockGhz)),
      Effect.flatMap(positive(env.clockGhz)),
    );
    // Virtual machines report a nominal clock, so without a user's figure the peak is measured,
    // once per machine: the cache keeps it, so MFU figures of one machine stay comparable.
    if (clock === undefined) {
      const peak = yield* machinePeak(threads ?? availableParallelism());
      if (peak !== undefined) {
        const where = peak.writeError === undefined ? `cached in ${peak.file}` : `not cached: ${peak.writeError}`;
        const detail = `${peak.cached ? `on ${peak.measuredAt}` : `now (${peak.measuredAt})`}, ${where}; delete it to measure again`;
        return { peakGflops: peak.gflops, peakSource: "measured" as const, peakDetail: detail };
      }
    }
    const estimate = estimatePeakGflops(clock ?? defaultClockGhz);
    return estimate === undefined
      ? { peakGflops: undefined, peakSource: "unknown" as const }
      : { peakGflops: estimate, peakSource: "estimate" as const };
  });

/**
 * This machine's FP32 peak for `threads` threads, as MFU uses it: measured once per machine
 * (CPU model, vector ISA, thread count) and then read from `<XDG_CACHE_HOME or ~/.cache>/patchlm/
 * peak-gflops.json`, so the same machine always reports the same peak (a fresh measurement swings
 * with whatever else runs on the cores). A cache that cannot be written leaves the measurement
 * uncached and says why. Undefined without the native addon, which measures it.
 */
export const machinePeak = (threads: number) =>
  Effect.gen(function* () {
    const file = peakCacheFile(yield* optionalEnv(Config.string("XDG_CACHE_HOME")).pipe(Effect.orElseSucceed(() => undefined)));
    const key = machineKey(threads);
    const machines = readPeakCache(file);
    const hit = machines[key];
    if (isUsablePeak(hit)) return { ...hit, file, cached: true, writeError: undefined };
    const gflops = NativeBackend.measurePeakGflops(threads);
    if (gflops === undefined) return undefined;
    const entry = { gflops, measuredAt: new Date().toISOString().slice(0, 10) };
    const writeError = yield* AtomicFile.write(file, JSON.stringify({ machines: { ...machines, [key]: entry } }, null, 2) + "\n").pipe(
      Effect.as(undefined),
      Effect.catchAll((e) => Effect.succeed(e.message)),
    );
    return { ...entry, file, cached: false, writeError };
  });

const resolveThreads = (options: Options) =>
  options.threads !== undefined
    ? positive("threads")(options.threads)
    : optionalEnv(Config.integer(env.threads)).pipe(Effect.mapError(badSetting(env.threads)), Effect.flatMap(positive(env.threads)));

/**
 * Choose, initialise and switch tfjs to a backend; log the choice once. An explicitly requested
 * backend that is unavailable fails with `BackendError` (reason `Unavailable`) saying how to enable it.
 */
export const make = Effect.fn("ComputeBackend.make")(function* (options: Options = {}) {
  const { choice, chosenBy } = yield* resolveChoice(options);
  const threads = yield* resolveThreads(options);
  const precision = options.precision ?? "fp32";
  const peak = yield* resolvePeak(options, threads);
  const candidates = choice === "auto" ? preference : [choice];
  const skipped: Array<{ backend: BackendName; reason: string; fix?: string }> = [];
  // A setting the backend cannot run (bf16) names the setting to change, not an install.
  const advice = (name: BackendName, fix: string | undefined) => (fix !== undefined ? `; ${fix}` : `. To enable it: ${howToEnable[name]}`);
  for (const name of candidates) {
    const probed = yield* choice === "auto"
      ? probe(name, threads, precision).pipe(Effect.catchAll((e) => Effect.succeed<Probe>({ _tag: "Unavailable", reason: e.detail })))
      : probe(name, threads, precision);
    if (probed._tag === "Unavailable") {
      if (choice !== "auto") {
        return yield* new BackendError({
          backend: name,
          reason: "Unavailable",
          detail: `${probed.reason}${advice(name, probed.fix)}`,
        });
      }
      skipped.push({ backend: name, reason: probed.reason, ...(probed.fix === undefined ? {} : { fix: probed.fix }) });
      continue;
    }
    const service: Service = { name, chosenBy, precision, ...probed.activated, ...peak, skipped };
    yield* logChoice(service);
    return service;
  }
  if (precision === "bf16") {
    const native = skipped.find((x) => x.backend === "native");
    return yield* new BackendError({
      backend: "native",
      reason: "Unavailable",
      detail: `precision bf16 needs the native backend, and it cannot run here: ${native?.reason ?? "unavailable"}${advice("native", native?.fix)}`,
    });
  }
  // cpu never reports Unavailable at fp32, so auto always returns above.
  return yield* Effect.dieMessage("no compute backend could be initialised, not even cpu");
});

/**
 * The one line that reports the choice. When auto mode passed over `native` (the backend a user
 * of this project can enable locally), it says why and how to enable it, at warning level. A
 * missing tensorflow package is the normal case and is left to the debug line.
 */
export const describe = (s: Service): { readonly level: "Info" | "Warning"; readonly line: string } => {
  const peak = s.peakGflops === undefined ? "unknown" : `${s.peakGflops} GFLOP/s (${s.peakSource}${s.peakDetail === undefined ? "" : ` ${s.peakDetail}`})`;
  const line = `compute backend: ${s.name} (${s.chosenBy}), ${s.threads} thread(s), FP32 peak ${peak}; ${s.detail}`;
  const native = s.skipped.find((x) => x.backend === "native");
  return native === undefined
    ? { level: "Info", line }
    : {
        level: "Warning",
        // The addon's build script already wrote the specific fix into its reason when it knew it.
        line: `${line}. native unavailable: ${native.reason}` + (native.reason.includes("To enable") ? "" : `. To enable it: ${howToEnable.native}`),
      };
};

const logChoice = (s: Service) => {
  const { level, line } = describe(s);
  const others = s.skipped.filter((x) => x.backend !== "native").map((x) => `${x.backend} unavailable: ${x.reason}`);
  return Effect.zipRight(
    others.length === 0 ? Effect.void : Effect.logDebug(others.join("; ")),
    level === "Info" ? Effect.logInfo(line) : Effect.logWarning(line),
  ).pipe(Effect.annotateLogs({ backend: s.name }));
};

/** The service, chosen by `options`, `PATCHLM_BACKEND` or availability. */
export const layer = (options: Options = {}): Layer.Layer<ComputeBackend, BackendError> => Layer.effect(ComputeBackend, make(options));

/** A fixed backend, for tests and benchmarks; fails if it is unavailable. */
export const layerFor = (name: BackendName, options: Omit<Options, "backend"> = {}): Layer.Layer<ComputeBackend, BackendError> =>
  layer({ ...options, backend: name });
