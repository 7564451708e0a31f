/**
 * What a run owns on the device between steps: the model's variables, the patch strategy's extra
 * variables (patch phase only) and the AdamW slots; and how they travel to and from a checkpoint.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Either } from "effect";
import type { Config, ParamSpec } from "@patchlm/core";
import { Safetensors } from "@patchlm/checkpoint";
import { Model, ParameterTable } from "@patchlm/model";
import { AdamW } from "@patchlm/optim";
import { PatchStrategy } from "@patchlm/patching";

export interface State {
  /** Which phase's shape the state has: the patch phase carries the strategy's parameters. */
  phase: "patch" | "token";
  readonly cfg: Config.ModelConfig;
  readonly table: ReadonlyArray<ParamSpec>;
  readonly params: Model.Weights;
  /** The strategy's extra parameters while in the patch phase; empty in the token phase. */
  strategyParams: Model.Weights;
  strategySpecs: ReadonlyArray<ParamSpec>;
  optimizer: AdamW.Optimizer;
}

export interface Init {
  readonly cfg: Config.ModelConfig;
  readonly seed: number;
  readonly optim: Partial<AdamW.Options>;
  /** The strategy whose parameters to create (patch phase), or undefined (token phase). */
  readonly strategy: PatchStrategy.PatchStrategy | undefined;
  readonly K: number;
}

/** Fresh weights (seeded) and a fresh optimizer. */
export const make = (o: Init): State => {
  const table = ParameterTable.make(o.cfg);
  const params = Model.init(o.cfg, o.seed);
  const strategySpecs = o.strategy === undefined || o.K === 1 ? [] : o.strategy.parameters(o.cfg.dModel, o.K);
  const strategyParams = Model.materialize(strategySpecs, o.seed);
  const optimizer = AdamW.make({ ...params, ...strategyParams }, [...table, ...strategySpecs], o.optim);
  return { phase: o.strategy === undefined || o.K === 1 ? "token" : "patch", cfg: o.cfg, table, params, strategyParams, strategySpecs, optimizer };
};

export const dispose = (s: State): void => {
  s.optimizer.dispose();
  Model.dispose(s.strategyParams);
  Model.dispose(s.params);
};

/**
 * The switch to token level: drop the strategy's parameters (the token model never calls a
 * strategy) and either reset the optimizer (paper) or continue it over the remaining parameters.
 */
export const switchToToken = (s: State, policy: Config.SwitchPolicy, optim: Partial<AdamW.Options>): void => {
  const kept =
    policy === "continue"
      ? (() => {
          const st = s.optimizer.exportState();
          const tensors = Object.fromEntries(Object.entries(st.tensors).filter(([n]) => !PatchStrategy.isStrategyParam(n)));
          return { step: st.step, tensors };
        })()
      : undefined;
  s.optimizer.dispose();
  Model.dispose(s.strategyParams);
  s.strategyParams = {};
  s.strategySpecs = [];
  s.optimizer = AdamW.make(s.params, s.table, optim);
  s.phase = "token";
  if (kept !== undefined) Either.getOrThrow(s.optimizer.importState(kept));
};

/** Every trainable variable (model + strategy) as checkpoint tensors. One host read per tensor. */
export const weights = (s: State): Safetensors.TensorMap =>
  Object.fromEntries(
    Object.entries({ ...s.params, ...s.strategyParams }).map(([name, v]) => [name, Safetensors.f32(v.shape, v.dataSync() as Float32Array)]),
  );

export const optimizerState = (s: State): { step: number; tensors: Safetensors.TensorMap } => {
  const st = s.optimizer.exportState();
  return { step: st.step, tensors: Safetensors.fromFloat32(st.tensors) };
};

/**
 * Overwrite the variables from checkpoint tensors. Every variable must be present with its shape,
 * and nothing else may be; the error lists each difference.
 */
export const restoreWeights = (s: State, saved: Safetensors.TensorMap, source: string): Either.Either<void, string> => {
  const tensors = withoutDroppedStrategy(s, saved);
  const vars: Record<string, tf.Variable> = { ...s.params, ...s.strategyParams };
  const problems: Array<string> = [];
  for (const [name, v] of Object.entries(vars)) {
    const t = tensors[name];
    if (t === undefined) problems.push(`${name}: missing`);
    else if (t.dtype !== "F32") problems.push(`${name}: dtype ${t.dtype}, expected F32`);
    else if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
      problems.push(`${name}: shape [${t.shape}] in the checkpoint, [${v.shape}] expected`);
    }
  }
  for (const name of Object.keys(tensors)) if (vars[name] === undefined) problems.push(`${name}: not a parameter of this model`);
  if (problems.length > 0) return Either.left(`${source}: weights do not fit the model:\n  - ${problems.join("\n  - ")}`);
  for (const [name, v] of Object.entries(vars)) {
    const t = tensors[name];
    tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, [...t.shape], "float32")));
  }
  return Either.right(undefined);
};

/** In the token phase, a patch-phase checkpoint's strategy entries are dropped (they were at the switch). */
const withoutDroppedStrategy = <T>(s: State, m: Readonly<Record<string, T>>): Readonly<Record<string, T>> =>
  s.phase === "patch" ? m : Object.fromEntries(Object.entries(m).filter(([n]) => !PatchStrategy.isStrategyParam(n)));

export const restoreOptimizer = (
  s: State,
  state: { step: number; tensors: Safetensors.TensorMap },
  source: string,
): Either.Either<void, string> =>
  Either.flatMap(
    Either.mapLeft(Safetensors.toFloat32(state.tensors, source), (e) => e.message),
    (tensors) =>
      Either.mapLeft(s.optimizer.importState({ step: state.step, tensors: withoutDroppedStrategy(s, tensors) }), (e) => `${source}: ${e.message}`),
  );
