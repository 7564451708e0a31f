/**
 * The one way patchlm's command-line apps run: parse with @effect/cli, provide the Node
 * platform, print an expected failure as one `error: ...` line (its message names the file, flag
 * or key) and exit 1; an interruption (Ctrl-C, SIGTERM) exits 0 after the program's finalizers
 * ran. `PATCHLM_LOG=debug` shows debug logs.
 */
import { Command } from "@effect/cli";
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Cause, Console, Effect, Logger, LogLevel } from "effect";

const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause);
  if (failure._tag === "Some") {
    const e = failure.value;
    if (e !== null && typeof e === "object" && "message" in e) return `error: ${(e as { message: string }).message}`;
  }
  return Cause.pretty(cause);
};

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
    Effect.provide(Logger.pretty),
    (e) => NodeRuntime.runMain(e, { disableErrorReporting: true }),
  );
};
