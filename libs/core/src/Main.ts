/**
 * The one way patchlm's command-line apps run: parse with @effect/cli, provide the Node
 * platform, print an expected failure as one `error: ...` line (its message names the file, flag
 * or key) and exit 1; logs go to stderr; an interruption (Ctrl-C, SIGTERM) exits 0 after the program's finalizers
 * ran. `PATCHLM_LOG=debug` shows debug logs.
 */
import { Command } from "@effect/cli";
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Cause, Console, Effect, HashMap, Inspectable, Logger, LogLevel } from "effect";

const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause);
  if (failure._tag === "Some") {
    const e = failure.value;
    if (e !== null && typeof e === "object" && "message" in e) return `error: ${(e as { message: string }).message}`;
  }
  return Cause.pretty(cause);
};

/**
 * One line per log record on stderr — `[12:00:01.234] INFO message key=value` — so a command's
 * stdout (bench and inspect JSON) stays machine-readable.
 */
export const stderrLogger = Logger.make(({ logLevel, message, date, annotations, cause }) => {
  const parts = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : Inspectable.format(m)));
  const extra = [...HashMap.toEntries(annotations)].map(([k, v]) => `${k}=${typeof v === "string" ? v : Inspectable.format(v)}`);
  const time = date.toISOString().slice(11, 23);
  process.stderr.write(`[${time}] ${logLevel.label} ${[...parts, ...extra].join(" ")}\n`);
  if (!Cause.isEmpty(cause)) process.stderr.write(`${Cause.pretty(cause)}\n`);
});

export const runCli = <Name extends string, E, A>(
  command: Command.Command<Name, NodeContext.NodeContext, E, A>,
  app: { readonly name: string; readonly version: string },
): void => {
  const run = Command.run(command, app);
  const logLevel = process.env.PATCHLM_LOG === "debug" ? LogLevel.Debug : LogLevel.Info;
  run(process.argv).pipe(
    Effect.tapErrorCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(describe(cause)))),
    Effect.provide(NodeContext.layer),
    Logger.withMinimumLogLevel(logLevel),
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger)),
    (e) => NodeRuntime.runMain(e, { disableErrorReporting: true, disablePrettyLogger: true }),
  );
};
