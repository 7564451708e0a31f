/**
 * How K token embeddings become one patch input: the `PatchStrategy` interface and the built-in
 * strategies. The paper's is `mean` (Eq. 1; official code modeling_llama.py:879-885): the plain
 * mean of the K embeddings, no scaling, no parameters, so the patch model and the token model are
 * the same network and every weight transfers. The others exist for ablations (docs/method.md §7).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { ParamSpec } from "@patchlm/core";

/** A strategy's own tensors, keyed by their `ParamSpec` names. */
export type Weights = Readonly<Record<string, tf.Tensor>>;

/**
 * A patch strategy. Implement this in your own code and add it with `Registry.register`.
 *
 * Extra parameters: a strategy may declare parameters of its own (`parameters`), named
 * `patch.<strategy name>.*`. They are trained with the model during the patch phase only and are
 * **dropped at the switch to token level**: the token-level model reads plain token embeddings
 * and never calls a strategy, so nothing the strategy learned survives except through the shared
 * weights (embedding table and decoder). They are not part of the model's parameter table and are
 * not exported with the model; `isStrategyParam` tells them apart by name. K = 1 (token mode)
 * never calls a strategy either.
 */
export interface PatchStrategy {
  /** Registry key, as written in configs (`patch.strategy`), e.g. "mean". */
  readonly name: string;
  /** One line for logs and `--help`. */
  readonly description: string;
  /** The extra parameters for width C and patch size K; empty for parameter-free strategies. */
  readonly parameters: (C: number, K: number) => ReadonlyArray<ParamSpec>;
  /**
   * (B,T,C) <- (B,T,K,C): the patch inputs from the token embeddings of each patch. `params`
   * holds a tensor for every spec of `parameters(C, K)`. Differentiable in both arguments.
   */
  readonly aggregate: (tokenEmbeds: tf.Tensor4D, params: Weights) => tf.Tensor3D;
}

/** Every strategy parameter's name starts with this. */
export const PARAM_PREFIX = "patch.";

/** The name of a strategy's parameter: `patch.<strategy>.<local>`. */
export const paramName = (strategy: string, local: string): string => `${PARAM_PREFIX}${strategy}.${local}`;

/** A strategy parameter, as opposed to a model weight: dropped at the switch to token level. */
export const isStrategyParam = (name: string): boolean => name.startsWith(PARAM_PREFIX);

/** The tensor for `spec` in `params`, checked against its declared shape (a mismatch is a bug). */
export const param = (strategy: string, params: Weights, spec: ParamSpec): tf.Tensor => {
  const t = params[spec.name];
  if (t === undefined) throw new Error(`patch strategy "${strategy}" needs parameter ${spec.name}`);
  if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
    throw new Error(`patch strategy "${strategy}": ${spec.name} has shape [${t.shape}], expected [${spec.shape}]`);
  }
  return t;
};

const checkRank = (strategy: string, x: tf.Tensor): void => {
  if (x.rank !== 4) throw new Error(`patch strategy "${strategy}": token embeddings must be (B,T,K,C), got [${x.shape}]`);
};

const parameterFree = (name: string, description: string, pool: (x: tf.Tensor4D) => tf.Tensor3D): PatchStrategy => ({
  name,
  description,
  parameters: () => [],
  aggregate: (x) => {
    checkRank(name, x);
    return tf.tidy(() => pool(x));
  },
});

/** The token at offset k of every patch: (B,T,C) <- (B,T,K,C). */
const pick = (x: tf.Tensor4D, k: number): tf.Tensor3D => {
  const [B, T, , C] = x.shape;
  return tf.reshape(tf.slice(x, [0, 0, k, 0], [B, T, 1, C]), [B, T, C]);
};

/**
 * (B,T,C) <- the mean over K of (B,T,K,C). The gradient puts dy/K in each of the K slots with
 * one concat: tf.mean's own gradient multiplies dy by a ones tensor of x's shape and then
 * divides, three passes over (B,T,K,C) (the fill in JavaScript) that made a patch step slower
 * than a token step of the same positions. The same values: (dy·1)/K = dy/K.
 */
const meanOverK = (x: tf.Tensor4D): tf.Tensor3D => {
  const K = x.shape[2];
  const f = tf.customGrad((xIn) => ({
    value: tf.mean(xIn as tf.Tensor4D, 2) as tf.Tensor3D,
    gradFunc: (dy) => {
      const share = tf.expandDims(tf.div(dy, K), 2); // (B,T,1,C)
      return tf.concat(Array.from({ length: K }, () => share), 2); // (B,T,K,C)
    },
  }));
  return f(x) as tf.Tensor3D;
};

/** The paper's: the plain mean of the K token embeddings. Identity for K = 1. */
export const mean: PatchStrategy = parameterFree(
  "mean",
  "plain mean of the K token embeddings, no parameters (the paper's, Eq. 1)",
  meanOverK,
);

/** The first token's embedding stands for the patch. */
export const first: PatchStrategy = parameterFree("first", "the first token's embedding, no parameters", (x) => pick(x, 0));

/** The last token's embedding stands for the patch. */
export const last: PatchStrategy = parameterFree("last", "the last token's embedding, no parameters", (x) =>
  pick(x, x.shape[2] - 1),
);

const weightedMeanLogits = (K: number): ParamSpec => ({
  name: paramName("weighted-mean", "logits"),
  shape: [K],
  init: { kind: "zeros" },
  decay: false,
});

/**
 * A learned position-weighted mean: Σ_k softmax(a)_k · x_k with one logit a_k per offset. The
 * logits start at zero, so training starts from the plain mean; the softmax keeps the weights
 * positive and summing to one, so the patch input stays on the scale of a token embedding.
 */
export const weightedMean: PatchStrategy = {
  name: "weighted-mean",
  description: "learned softmax weights over the K offsets, starting as the plain mean",
  parameters: (_C, K) => [weightedMeanLogits(K)],
  aggregate: (x, params) => {
    checkRank("weighted-mean", x);
    const K = x.shape[2];
    const a = param("weighted-mean", params, weightedMeanLogits(K));
    return tf.tidy(() => {
      const w = tf.reshape(tf.softmax(a), [1, 1, K, 1]); // (1,1,K,1)
      return tf.sum(tf.mul(x, w), 2) as tf.Tensor3D; // (B,T,C) <- Σ_k w_k·x_k
    });
  },
};

const concatWeight = (C: number, K: number): ParamSpec => ({
  name: paramName("concat-linear", "weight"),
  shape: [K * C, C],
  init: { kind: "zeros" },
  decay: true,
});

/**
 * Concatenation plus a linear projection back to C (MegaByte, Block Transformer;
 * docs/method.md §7): y = [x_0 ‖ … ‖ x_{K−1}] · (P + W), where P stacks K blocks of I/K (so
 * [x]·P is the plain mean) and W (K·C, C) is learned. W starts at zero, so training starts
 * exactly from the paper's mean and the projection learns only a correction; W is a 2-D weight
 * and decays. It is computed as mean(x) + [x]·W, which never materialises P.
 */
export const concatLinear: PatchStrategy = {
  name: "concat-linear",
  description: "concatenated K·C embeddings projected to C; starts as the plain mean (extra K·C² parameters)",
  parameters: (C, K) => [concatWeight(C, K)],
  aggregate: (x, params) => {
    checkRank("concat-linear", x);
    const [B, T, K, C] = x.shape;
    const W = param("concat-linear", params, concatWeight(C, K)) as tf.Tensor2D;
    return tf.tidy(() => {
      const concat = tf.reshape(x, [B * T, K * C]); // (B·T, K·C): patch tokens side by side
      const correction = tf.reshape(tf.matMul(concat, W), [B, T, C]); // (B,T,C)
      return tf.add(tf.mean(x, 2), correction) as tf.Tensor3D;
    });
  },
};

/** The built-in strategies; `mean` is the default. */
export const builtins: ReadonlyArray<PatchStrategy> = [mean, weightedMean, concatLinear, first, last];

/** The default strategy's name. */
export const DEFAULT = mean.name;
