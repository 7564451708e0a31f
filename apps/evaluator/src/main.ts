#!/usr/bin/env node
/**
 * evaluator: wiring only. Parses the command line (Cli.ts), runs the handler (Handlers.ts) with
 * the Node platform, and turns expected failures into one clear line and exit code 1.
 */
import { Command } from "@effect/cli";
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Cause, Console, Effect, Logger, LogLevel } from "effect";
import * as Cli from "./Cli";

const run = Command.run(Cli.command, { name: "evaluator", version: "0.1.0" });

const logLevel = process.env.PATCHLM_LOG === "debug" ? LogLevel.Debug : LogLevel.Info;

run(process.argv).pipe(
  Effect.tapErrorCause((cause) =>
    Cause.isInterruptedOnly(cause)
      ? Effect.void
      : Console.error(
          Cause.failureOption(cause).pipe((f) =>
            f._tag === "Some" && f.value !== null && typeof f.value === "object" && "message" in f.value
              ? `error: ${(f.value as { message: string }).message}`
              : Cause.pretty(cause),
          ),
        ),
  ),
  Effect.provide(NodeContext.layer),
  Logger.withMinimumLogLevel(logLevel),
  Effect.provide(Logger.pretty),
  (e) => NodeRuntime.runMain(e, { disableErrorReporting: true }),
);
