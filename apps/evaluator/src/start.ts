/** evaluator: wiring only — commands in Cli.ts, what they do in Handlers.ts. */
import { runCli } from "@patchlm/cli";
import * as Cli from "./Cli";
import { version } from "./Versions";

runCli(Cli.command, { name: "evaluator", version });
