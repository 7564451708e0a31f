/**
 * What each trainer command does: compose the libs, provide their services, report.
 */
import { Console, Effect, Option } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { ConfigError } from "@patchlm/core";
import { Corpus, Prepare, Tokenizers } from "@patchlm/data";
import { Bench, ConfigFile, Run, RunConfig } from "@patchlm/train";
import type { TrainFlags } from "./Flags";
import { packageVersions } from "./Versions";

const get = Option.getOrUndefined;

// --- prepare ---------------------------------------------------------------------------------

export interface PrepareOptions {
  readonly corpus: string;
  readonly field: string;
  readonly latin1: boolean;
  readonly out: string;
  readonly tokenizer: string;
  readonly validationFraction: number;
  readonly seed: number;
}

export const prepare = Effect.fn("trainer.prepare")(function* (o: PrepareOptions) {
  const tokenizer = yield* Tokenizers.parse(o.tokenizer, "--tokenizer");
  if (!(o.validationFraction > 0)) {
    return yield* new ConfigError({
      source: "flags",
      issues: [`--val-fraction: ${o.validationFraction} holds out no document; training evaluates on the validation split, so give a fraction above 0`],
    });
  }
  const source = Corpus.detect(o.corpus, { jsonlField: o.field, encoding: o.latin1 ? "latin1" : "utf8" });
  const summary = yield* Prepare.run({ source, outDir: o.out, tokenizer, seed: o.seed, validationFraction: o.validationFraction });
  const s = summary.splits;
  yield* Effect.logInfo(
    summary.skipped
      ? `prepare: ${o.out} is up to date (${s.train.tokens.toLocaleString("en-US")} train tokens)`
      : `prepare: ${o.out}: train ${s.train.documents} docs / ${s.train.tokens.toLocaleString("en-US")} tokens in ${s.train.shards} shard(s), ` +
          `validation ${s.validation.documents} docs / ${s.validation.tokens.toLocaleString("en-US")} tokens, ${summary.dtype}, ${summary.seconds.toFixed(1)}s`,
  );
  return summary;
});

// --- train / resume --------------------------------------------------------------------------


const defined = (o: Record<string, unknown>): Record<string, unknown> | undefined => {
  const entries = Object.entries(o).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? undefined : Object.fromEntries(entries);
};

/** The dedicated flags as a config overlay (only those given). */
export const flagOverrides = (f: TrainFlags): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  const top = defined({ name: get(f.name), runsDir: get(f.runsDir), data: get(f.data), seed: get(f.seed), backend: get(f.backend), precision: get(f.precision) });
  Object.assign(out, top ?? {});
  const model = defined({ preset: get(f.preset) });
  const patch = defined({ patchSize: get(f.patchSize), patchFraction: get(f.patchFraction), strategy: get(f.strategy), strategyModule: get(f.strategyModule), switchPolicy: get(f.switchPolicy) });
  const batch = defined({ tokens: get(f.tokens), batchTokens: get(f.batchTokens), seqLen: get(f.seqLen), microBatch: get(f.microBatch) });
  const optim = defined({ lr: get(f.lr), warmupSteps: get(f.warmup) });
  if (model) out.model = model;
  if (patch) out.patch = patch;
  if (batch) out.batch = batch;
  if (optim) out.optim = optim;
  return out;
};

export const resolveConfig = Effect.fn("trainer.resolveConfig")(function* (f: TrainFlags, base?: unknown) {
  const sets = yield* ConfigFile.parseOverrides(f.set);
  return yield* ConfigFile.resolve({ base, file: get(f.config), overrides: ConfigFile.merge(flagOverrides(f), sets) });
});

/**
 * Train or resume on the chosen backend (made current here: the libs only use it), recording
 * what produced the weights.
 */
export const runTraining = Effect.fn("trainer.runTraining")(function* (
  config: RunConfig.RunConfig,
  opts: { readonly resume: boolean; readonly maxSteps?: number; readonly backend?: RunConfig.RunConfig["backend"]; readonly runDir?: string },
) {
  const backend = yield* ComputeBackend.make({ backend: opts.backend ?? config.backend, precision: config.precision });
  const peakFlops = backend.peakGflops === undefined ? undefined : backend.peakGflops * 1e9;
  return yield* Run.train(config, {
    resume: opts.resume,
    runDir: opts.runDir,
    maxSteps: opts.maxSteps,
    backend: { name: backend.name, peakFlops, precision: backend.precision },
    packageVersions: packageVersions(),
  });
});

export const train = Effect.fn("trainer.train")(function* (f: TrainFlags) {
  const config = yield* resolveConfig(f);
  return yield* runTraining(config, { resume: false, maxSteps: get(f.maxSteps) });
});

export interface ResumeOptions {
  readonly run: string;
  readonly runsDir: string;
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  readonly maxSteps: Option.Option<number>;
}

/** Resume the run directory given (by name under `--runs-dir`, or by path), wherever its config says it was made. */
export const resume = Effect.fn("trainer.resume")(function* (o: ResumeOptions) {
  const runDir = Run.dirOf(o.run, o.runsDir);
  const config = yield* Run.readConfig(runDir);
  return yield* runTraining(config, { resume: true, runDir, maxSteps: get(o.maxSteps), backend: get(o.backend) });
});

// --- bench -----------------------------------------------------------------------------------

export interface BenchOptions {
  readonly backend: Option.Option<RunConfig.RunConfig["backend"]>;
  readonly precision: Option.Option<RunConfig.RunConfig["precision"]>;
  readonly preset: string;
  readonly mode: "token" | "patch" | "both";
  readonly patchSize: number;
  readonly batch: number;
  readonly seqLen: number;
  readonly steps: number;
}

export const bench = Effect.fn("trainer.bench")(function* (o: BenchOptions) {
  const backend = yield* ComputeBackend.make({ backend: get(o.backend) ?? "auto", precision: get(o.precision) ?? "fp32" });
  const modes = o.mode === "both" ? (["token", "patch"] as const) : ([o.mode] as const);
  const results = [];
  for (const mode of modes) {
    results.push(
      yield* Bench.trainStep({
        preset: o.preset,
        K: mode === "patch" ? o.patchSize : 1,
        batch: o.batch,
        seqLen: o.seqLen,
        steps: o.steps,
        peakFlops: backend.peakGflops === undefined ? undefined : backend.peakGflops * 1e9,
      }),
    );
  }
  yield* Console.log(JSON.stringify({ backend: backend.name, precision: backend.precision, threads: backend.threads, detail: backend.detail, env: Bench.environment(), results }, null, 2));
});

// --- inspect ---------------------------------------------------------------------------------

export const inspect = Effect.fn("trainer.inspect")(function* (o: { readonly run: string; readonly runsDir: string }) {
  yield* Console.log(JSON.stringify(yield* Run.inspect(Run.dirOf(o.run, o.runsDir)), null, 2));
});
