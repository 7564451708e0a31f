/**
 * `trainer study <study.yaml>` and `trainer demo`: the backend chosen and made current here, the
 * study run by `StudyRunner` (libs/train), the outcome printed.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Console, Effect, Option } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { StudyReport } from "@patchlm/eval";
import { ConfigFile, type RunConfig, Study, StudyRunner } from "@patchlm/train";
import * as Demo from "./Demo";
import { packageVersions } from "./Versions";

export interface StudyOptions {
  readonly file: string;
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  /** Only rebuild the report from the saved results; train nothing. */
  readonly reportOnly: boolean;
  /** Measure each run's step times (meant for a quiet machine) into step-times.json, then report. */
  readonly timeSteps: boolean;
}

/** The chosen backend, made current, as the study runner records it. */
const backendFor = Effect.fn("trainer.studyBackend")(function* (choice: Option.Option<RunConfig.RunConfig["backend"]>) {
  const b = yield* ComputeBackend.make({ backend: Option.getOrElse(choice, () => "auto" as const) });
  const backend: StudyRunner.Backend = {
    name: b.name,
    peakFlops: b.peakGflops === undefined ? undefined : b.peakGflops * 1e9,
    description: `${b.name} (${b.threads} threads; ${b.detail})`,
  };
  return { backend, packageVersions: packageVersions() };
});

export const study = Effect.fn("trainer.study")(function* (o: StudyOptions) {
  const raw = yield* ConfigFile.readConfigFile(o.file);
  const s = yield* Study.expand(o.file, raw);
  const command = `npm run trainer -- study ${path.relative(process.cwd(), path.resolve(o.file)) || o.file}`;
  // A report rebuilt from saved results needs no backend.
  const backend = o.reportOnly && !o.timeSteps ? {} : yield* backendFor(o.backend);
  return yield* StudyRunner.run(s, { file: o.file, command, reportOnly: o.reportOnly, timeSteps: o.timeSteps, ...backend });
});

// --- demo ------------------------------------------------------------------------------------

/**
 * The main job: the demo study (Demo.ts) under `<runsDir>/<name>/`, then both runs side by side.
 * Re-running it finishes what is missing and prints the same comparison.
 */
export const demo = Effect.fn("trainer.demo")(function* (o: {
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  readonly name: string;
  readonly runsDir: string;
  readonly fresh: boolean;
}) {
  const started = performance.now();
  const dir = path.join(o.runsDir, o.name);
  if (o.fresh) fs.rmSync(dir, { recursive: true, force: true });
  const spec = { ...Demo.study, runsDir: dir, results: path.join(dir, "results") };
  const s = yield* Study.expand("demo study (apps/trainer/src/Demo.ts)", spec);
  const { report, results } = yield* StudyRunner.run(s, { file: "demo", command: "npm run demo", reportOnly: false, ...(yield* backendFor(o.backend)) });
  const rows = StudyReport.rows(results);
  yield* Console.log(["", StudyReport.sideBySide(rows, results), ""].join("\n"));
  yield* Effect.logInfo(`demo: done in ${((performance.now() - started) / 1000).toFixed(1)}s; report ${report}`);
  return rows;
});

