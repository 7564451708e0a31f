/**
 * `@patchlm/model/testing`: weights for tests of code built on the model (strategies, losses,
 * optimizers), not for training.
 *
 * `Model.init` draws N(0, 0.02), which makes every logit nearly equal: a test comparing against a
 * reference would then pass even with positions or tokens misaligned. These weights have O(1)
 * spread instead (matrices uniform in ±0.3, norm gains in [0.6, 1.4]) and are deterministic in
 * the seed.
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Config, uniformFloats } from "@patchlm/core";
import * as Model from "./Model";
import * as ParameterTable from "./ParameterTable";

/** Model weights with O(1) spread; parameter i of the table is seeded with `seed * 100 + i`. */
export const spreadWeights = (cfg: Config.ModelConfig, seed: number): Model.Weights => {
  const params = Model.init(cfg, seed);
  ParameterTable.make(cfg).forEach((spec, i) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const values = spec.decay ? uniformFloats(n, seed * 100 + i, -0.3, 0.3) : uniformFloats(n, seed * 100 + i, 0.6, 1.4);
    tf.tidy(() => params[spec.name].assign(tf.tensor(values, [...spec.shape])));
  });
  return params;
};
