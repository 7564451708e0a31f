/**
 * A checkpoint opened for use: its model's weights (the token-level network) and the tokenizer
 * it was trained with, checked against each other. Both apps open checkpoints this way: the
 * evaluator for every command, the trainer for a study's final evaluation.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { Effect } from "effect";
import { Checkpoint } from "@patchlm/checkpoint";
import { Config, FileError } from "@patchlm/core";
import { Model } from "@patchlm/model";
import { PatchStrategy, Registry, StrategyModule } from "@patchlm/patching";
import { type Tokenizer, TokenizerFiles } from "@patchlm/tokenization";
import * as Documents from "./Documents";

export interface LoadedModel {
  readonly cfg: Config.ModelConfig;
  /** The model's variables; the caller disposes them (`Model.dispose`). */
  readonly params: Model.Weights;
  /**
   * The patch strategy's own parameters, when the checkpoint has any (a patch-phase checkpoint of a
   * strategy with parameters; the switch to token level drops them). Disposed with `params` by
   * `dispose`.
   */
  readonly strategyParams: PatchStrategy.Weights;
  readonly manifest: Checkpoint.Manifest;
  /** The step directory. */
  readonly dir: string;
}

/**
 * The model of a checkpoint (a step directory, or a run directory through `latest`), as
 * variables. Patch-strategy parameters of a patch-phase checkpoint are left out: the evaluated
 * model is always the token-level network.
 */
export const loadModel = Effect.fn("Checkpoints.loadModel")(function* (checkpointPath: string) {
  const loaded = yield* Checkpoint.load(checkpointPath);
  const cfg = yield* Config.decodeConfig(Config.ModelConfig)(`${loaded.dir}/manifest.json modelConfig`, loaded.manifest.modelConfig);
  const params = Model.init(cfg, 0);
  const problems: Array<string> = [];
  for (const [name, v] of Object.entries(params)) {
    const t = loaded.tensors[name];
    if (t === undefined) problems.push(`${name}: missing`);
    else if (t.dtype !== "F32" || t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
      problems.push(`${name}: ${t.dtype} [${t.shape}], expected F32 [${v.shape}]`);
    } else tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, [...t.shape], "float32")));
  }
  for (const name of Object.keys(loaded.tensors)) {
    if (params[name] === undefined && !PatchStrategy.isStrategyParam(name)) problems.push(`${name}: not a parameter of the model`);
  }
  if (problems.length > 0) {
    Model.dispose(params);
    return yield* new Checkpoint.CheckpointError({
      path: loaded.dir,
      reason: "ConfigMismatch",
      detail: `model.safetensors does not fit its manifest's modelConfig:\n  - ${problems.join("\n  - ")}`,
    });
  }
  const strategyParams = Object.fromEntries(
    Object.entries(loaded.tensors)
      .filter(([name, t]) => PatchStrategy.isStrategyParam(name) && t.dtype === "F32")
      .map(([name, t]) => [name, tf.tensor(t.data as Float32Array, [...t.shape], "float32")] as const),
  );
  return { cfg, params, strategyParams, manifest: loaded.manifest, dir: loaded.dir } satisfies LoadedModel;
});

/** The run directory of a checkpoint path: the path itself (through `latest`) or a step directory's parent. */
export const runDirOf = (checkpoint: string, stepDir: string): string =>
  path.resolve(stepDir) === path.resolve(checkpoint) ? path.dirname(path.resolve(stepDir)) : path.resolve(checkpoint);

/** `data` of a run's config.json, if any. */
export const runDataDir = (runDir: string): string | undefined => {
  const data = runConfig(runDir)?.data;
  return typeof data === "string" ? data : undefined;
};

/**
 * A run's config.json as plain JSON, or undefined when there is none or it does not parse: the
 * evaluator also reads checkpoints imported without a run config, and falls back to defaults.
 */
const runConfig = (runDir: string): { readonly data?: unknown; readonly patch?: { readonly strategy?: unknown } } | undefined => {
  try {
    return JSON.parse(fs.readFileSync(path.join(runDir, "config.json"), "utf8")) as { data?: unknown; patch?: { strategy?: unknown } };
  } catch {
    return undefined;
  }
};

/** Where a run's tokenizer is: `override`, else the run directory, else the run's data directory. */
export const tokenizerDirFor = (runDir: string, override: string | undefined): Effect.Effect<string, FileError> => {
  if (override !== undefined) return Effect.succeed(override);
  if (TokenizerFiles.has(runDir)) return Effect.succeed(runDir);
  const data = runDataDir(runDir);
  if (data !== undefined && TokenizerFiles.has(data)) return Effect.succeed(data);
  return Effect.fail(
    new FileError({
      path: runDir,
      reason: "NotFound",
      detail:
        `no tokenizer beside the run (${TokenizerFiles.TOKENIZER_JSON} or ${TokenizerFiles.TOKENIZER_SPEC})` +
        `${data === undefined ? "" : ` nor in its data directory ${data}`}; name the directory that holds it`,
    }),
  );
};

export interface Opened extends LoadedModel {
  readonly runDir: string;
  readonly tokenizer: Tokenizer.Service;
}

/**
 * A checkpoint's model (freed when the scope closes) and its tokenizer (from `tokenizerDir`, else
 * beside the run, else its data directory), checked against each other: a tokenizer other than
 * the one the checkpoint was trained with is an error naming what differs.
 */
export const open = Effect.fn("Checkpoints.open")(function* (checkpoint: string, tokenizerDir?: string) {
  const loaded = yield* Effect.acquireRelease(loadModel(checkpoint), (m) => Effect.sync(() => dispose(m)));
  const runDir = runDirOf(checkpoint, loaded.dir);
  const tokenizer = yield* TokenizerFiles.load(yield* tokenizerDirFor(runDir, tokenizerDir));
  yield* Documents.ensureTokenizer(loaded.dir, { tokenizerHash: loaded.manifest.tokenizerHash, vocabSize: loaded.cfg.vocabSize }, tokenizer);
  return { ...loaded, runDir, tokenizer } satisfies Opened;
});

/** Free a loaded model's tensors (its weights and any strategy parameters). */
export const dispose = (m: Pick<LoadedModel, "params" | "strategyParams">): void => {
  Model.dispose(m.params);
  for (const t of Object.values(m.strategyParams)) t.dispose();
};

/** `patch.strategy` of a run's config.json ("mean" when it names none). */
const runStrategyName = (runDir: string): string => {
  const strategy = runConfig(runDir)?.patch?.strategy;
  return typeof strategy === "string" ? strategy : "mean";
};

/**
 * The patch strategy a run trained with: its config's `patch.strategy`, looked up among the
 * built-ins and the run's recorded strategy module (loaded again, and refused if it changed).
 */
export const runStrategy = Effect.fn("Checkpoints.runStrategy")(function* (runDir: string) {
  const recorded = yield* StrategyModule.readRecord(runDir);
  const modules = recorded === undefined ? [] : [yield* StrategyModule.load(recorded.path, recorded)];
  const registry = yield* Registry.make([...Registry.builtins.strategies.values(), ...modules.flatMap((m) => m.loaded)]);
  return yield* Registry.get(registry, runStrategyName(runDir));
});
