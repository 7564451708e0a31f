/**
 * Training through the library entry: 20 steps (10 at patch level with the strategy of
 * strategy.ts, then 10 at token level) on a data directory `patchlm-trainer prepare` made.
 *
 *   node dist/train.js <data dir> <runs dir>
 *
 * Prints the run's summary as one JSON line.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Effect } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { ConfigFile, Run } from "@patchlm/train";
import { channelWeightedMean } from "./strategy.js";
import { runSettings } from "./settings.js";

const [data = "data", runsDir = "runs"] = process.argv.slice(2);

const program = Effect.gen(function* () {
  const backend = yield* ComputeBackend.make({ backend: "cpu" });
  const config = yield* ConfigFile.resolve({ overrides: { ...runSettings, name: "library", data, runsDir } });
  const summary = yield* Run.train(config, { resume: false, backend: { name: backend.name }, strategies: [channelWeightedMean] });
  console.log(JSON.stringify({ ended: summary.ended, step: summary.step, losses: summary.losses, validation: summary.validation }));
});

// runMain: Ctrl-C interrupts the program, and the run checkpoints the step in flight.
NodeRuntime.runMain(program.pipe(Effect.provide(NodeContext.layer)));
