import { join } from "node:path";
import { FileSystem } from "@effect/platform";
import { Context, Effect, Layer, Ref, Scope } from "effect";
import type { FileError } from "@patchlm/core";
import { fileError } from "./internal/Io";
import { type MetricRecord, toJsonLine } from "./MetricRecord";
import * as TensorBoard from "./TensorBoard";
import { formatLine, type LineOptions } from "./ConsoleLine";

/**
 * Where metric records go. The trainer writes one record per log interval and per evaluation;
 * the app chooses the sinks. File sinks write each record straight to the OS (nothing is buffered
 * in the process), so a crash loses no written record; `flush` also fsyncs.
 */
export interface Service {
  readonly write: (record: MetricRecord) => Effect.Effect<void, FileError>;
  readonly flush: Effect.Effect<void, FileError>;
}

export class MetricsSink extends Context.Tag("@patchlm/metrics/MetricsSink")<MetricsSink, Service>() {}

/** Open `path` for appending for the lifetime of the scope; fsync on close. */
const appendFile = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    const file = yield* Effect.mapError(fs.open(path, { flag: "a" }), fileError(path, "write"));
    yield* Effect.addFinalizer(() => Effect.ignore(file.sync));
    const append = (bytes: Uint8Array) => Effect.mapError(file.writeAll(bytes), fileError(path, "write"));
    const flush = Effect.mapError(file.sync, fileError(path, "write"));
    return { append, flush };
  });

const utf8 = new TextEncoder();

/** Appends one JSON line per record to `path` (conventionally `<runDir>/metrics.jsonl`). */
export const jsonl = (path: string): Effect.Effect<Service, FileError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.map(appendFile(path), ({ append, flush }) => ({ write: (r) => append(utf8.encode(toJsonLine(r))), flush }));

/**
 * Writes a TensorBoard event file into `dir` (created if needed); each record's values become
 * scalars at its step. A resumed run starts a new file, as TensorBoard expects.
 */
export const tensorBoard = (dir: string, now: () => number = () => Date.now() / 1000): Effect.Effect<Service, FileError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    yield* Effect.mapError(fs.makeDirectory(dir, { recursive: true }), fileError(dir, "write"));
    const { append, flush } = yield* appendFile(join(dir, TensorBoard.eventFileName(now())));
    yield* append(TensorBoard.frame(TensorBoard.fileVersionEvent(now())));
    return { write: (r) => append(TensorBoard.frame(TensorBoard.scalarsEvent(now(), r.step, r.values))), flush } satisfies Service;
  });

/**
 * Logs one formatted line per record through Effect's logger (annotated with step and phase); the
 * app's logger decides where it goes.
 */
export const logLines = (options: LineOptions = {}): Service => ({
  write: (r) => Effect.logInfo(formatLine(r, options)).pipe(Effect.annotateLogs({ step: r.step, phase: r.phase })),
  flush: Effect.void,
});

/** Keeps records in memory; `records` reads them back (tests, in-process consumers). */
export const memory = (): Effect.Effect<Service & { readonly records: Effect.Effect<ReadonlyArray<MetricRecord>> }> =>
  Effect.map(Ref.make<ReadonlyArray<MetricRecord>>([]), (ref) => ({
    write: (r) => Ref.update(ref, (rs) => [...rs, r]),
    flush: Effect.void,
    records: Ref.get(ref),
  }));

/** Sends every record to each sink in turn. */
export const fanout = (sinks: ReadonlyArray<Service>): Service => ({
  write: (r) => Effect.forEach(sinks, (s) => s.write(r), { discard: true }),
  flush: Effect.forEach(sinks, (s) => s.flush, { discard: true }),
});

export interface RunSinkOptions {
  /** Run directory: `metrics.jsonl` and `tensorboard/` go here. */
  readonly runDir: string;
  /** Write a TensorBoard event file (default true). */
  readonly tensorBoard?: boolean;
  /** Also log a line per record (default true), formatted with these options. */
  readonly logLines?: LineOptions | false;
}

/** The run's sinks: `metrics.jsonl`, a TensorBoard file under `tensorboard/`, and log lines. */
export const layer = (options: RunSinkOptions): Layer.Layer<MetricsSink, FileError, FileSystem.FileSystem> =>
  Layer.scoped(
    MetricsSink,
    Effect.gen(function* () {
      const sinks: Array<Service> = [yield* jsonl(join(options.runDir, "metrics.jsonl"))];
      if (options.tensorBoard !== false) sinks.push(yield* tensorBoard(join(options.runDir, "tensorboard")));
      if (options.logLines !== false) sinks.push(logLines(options.logLines ?? {}));
      return fanout(sinks);
    }),
  );
