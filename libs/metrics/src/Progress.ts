import { SingleBar } from "cli-progress";
import { Context, Effect, Layer, type Scope } from "effect";
import type { Phase } from "./MetricRecord";
import { formatSI } from "./ConsoleLine";

/**
 * A progress bar for a terminal: phase, step/total, loss, tokens/s and ETA, redrawn in place by
 * `cli-progress`. When the output is not a TTY it draws nothing: the log lines already say the
 * same, and redraw codes would garble a log file.
 */

export interface ProgressState {
  readonly phase: Phase;
  /** Global steps completed. */
  readonly step: number;
  readonly loss?: number;
  readonly tokensPerSecond?: number;
}

export interface Service {
  readonly update: (state: ProgressState) => Effect.Effect<void>;
}

export class Progress extends Context.Tag("@patchlm/metrics/Progress")<Progress, Service>() {}

export interface ProgressOptions {
  readonly totalSteps: number;
  /** Where a resumed run starts (default 0), so the ETA counts only this session's speed. */
  readonly startStep?: number;
  /** Default process.stderr. */
  readonly stream?: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

const none: Service = { update: () => Effect.void };

const FORMAT = "{phase} |{bar}| {value}/{total} steps | loss {loss} | {tps} tok/s | ETA {eta_formatted}";

const payload = (s: Partial<ProgressState>) => ({
  phase: s.phase === undefined ? "     " : s.phase.padEnd(5),
  loss: s.loss === undefined ? "-" : s.loss.toFixed(4),
  tps: s.tokensPerSecond === undefined ? "-" : formatSI(s.tokensPerSecond),
});

/** A bar for the lifetime of the scope (stopped on close), or nothing off a TTY. */
export const make = (options: ProgressOptions): Effect.Effect<Service, never, Scope.Scope> => {
  const stream = options.stream ?? process.stderr;
  if (stream.isTTY !== true) return Effect.succeed(none);
  return Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const bar = new SingleBar({ format: FORMAT, stream, hideCursor: true, etaBuffer: 50, barsize: 30 });
        bar.start(options.totalSteps, options.startStep ?? 0, payload({}));
        return bar;
      }),
      (bar) => Effect.sync(() => bar.stop()),
    ),
    (bar): Service => ({ update: (s) => Effect.sync(() => bar.update(s.step, payload(s))) }),
  );
};

export const layer = (options: ProgressOptions): Layer.Layer<Progress> => Layer.scoped(Progress, make(options));

/** No progress output at all. */
export const layerNone: Layer.Layer<Progress> = Layer.succeed(Progress, none);
