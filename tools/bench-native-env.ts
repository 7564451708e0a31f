/** What the kernel and step benchmarks share: the OpenBLAS environment record and JSON output. */
import { NativeBackend } from "@patchlm/native";
import { Effect, Logger, LogLevel } from "effect";

/**
 * The OpenBLAS variables as this process saw them, and the kernel set OpenBLAS chose. The
 * benchmarks never change them; a command may unset them (env -u), which shows here as null.
 */
export const openblasReport = () => {
  const native = NativeBackend.register();
  return {
    OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null,
    OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE ?? null,
    OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? null,
    note: "as this process saw them; null means unset in the command (env -u) or never set",
    core: native._tag === "Registered" ? native.info.blasCore : null,
    // OpenBLAS 0.3.21's own pick when the addon repaired a misdetection (PATCHLM_BLAS_REDETECT=0 keeps it)
    coreDetectedByOpenblas: native._tag === "Registered" ? (native.info.blasCoreDetected ?? native.info.blasCore) : null,
  };
};

/** Run a benchmark with logging off (stdout carries only the JSON) and print its report. */
export const printReport = <A, E>(main: Effect.Effect<A, E>): void => {
  Effect.runPromise(main.pipe(Logger.withMinimumLogLevel(LogLevel.None))).then(
    (report) => console.log(JSON.stringify(report, null, 2)),
    (e) => {
      console.error(String(e));
      process.exit(1);
    },
  );
};
