#!/usr/bin/env node
/** evaluator: wiring only — commands in Cli.ts, what they do in Handlers.ts. */
import { runCli } from "@patchlm/cli";
import * as Cli from "./Cli";

runCli(Cli.command, { name: "evaluator", version: "0.1.0" });
