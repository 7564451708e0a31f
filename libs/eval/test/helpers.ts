import type { Config } from "@patchlm/core";
import { Model, Presets } from "@patchlm/model";
import * as tf from "@tensorflow/tfjs";
import { Safetensors } from "@patchlm/checkpoint";
import { randomFloats } from "@patchlm/testing";

/** A model small enough for cpu tests over the byte tokenizer's 259 ids. */
export const tinyCfg: Config.ModelConfig = { ...Presets.tiny, vocabSize: 259, dModel: 16, nHeads: 2, nLayers: 1, ffnHidden: 32, contextLength: 16 };

/** The variables as safetensors F32 tensors (what a checkpoint stores). */
export const weightsOf = (params: Model.Weights): Safetensors.TensorMap =>
  Object.fromEntries(Object.entries(params).map(([name, v]) => [name, Safetensors.f32(v.shape, v.dataSync() as Float32Array)]));

/** Give norm gains random values around 1, so a reference check exercises them. */
export const randomizeNorms = (params: Model.Weights, seed: number): void => {
  Object.values(params).forEach((v, i) => {
    if (v.shape.length === 1) tf.tidy(() => v.assign(tf.tensor1d(randomFloats(v.shape[0], seed + i, 0.5, 1.5))));
  });
};
