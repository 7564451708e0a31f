/**
 * A training script on the libraries alone, as a user writes one (typechecked with the workspace;
 * run it with `npx tsx tools/examples/train.ts` after `npm run prepare-data`).
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Effect } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { ConfigFile, Run } from "@patchlm/train";

const program = Effect.gen(function* () {
  const backend = yield* ComputeBackend.make({ backend: "auto" }); // picks and registers the best available
  // Config: defaults < file < overrides, validated once; every problem reported by key.
  const config = yield* ConfigFile.resolve({
    overrides: { name: "k4", data: "data/embedded", model: { preset: "tiny" }, batch: { tokens: 262144, batchTokens: 8192, seqLen: 64 } },
  });
  // The whole run: checked before its directory exists, locked, tokenizer copied, metrics and
  // progress, checkpoints, the switch from patch to token level, then loss.png and summary.json.
  const summary = yield* Run.train(config, { resume: false, backend: { name: backend.name }, maxSteps: 4 });
  yield* Effect.log(`ended ${summary.ended} at step ${summary.step}`);
});
// runMain: Ctrl-C interrupts the program, so the run checkpoints the step in flight and stops.
NodeRuntime.runMain(program.pipe(Effect.provide(NodeContext.layer)));
