import { Either, Option } from "effect";
import { Config } from "@patchlm/core";

const decode = (name: string, input: Config.ModelConfigInput): Config.ModelConfig =>
  Either.getOrThrowWith(Config.decodeConfig(Config.ModelConfig)(`preset ${name}`, input), (e) => e);

// The paper's shapes (docs/method.md §4): vocab 32000 (LLaMA-2 tokenizer), context 2048 (HF
// max_position_embeddings), plain multi-head attention, untied embeddings.
const paper = (name: string, dModel: number, ffnHidden: number, nLayers: number, nHeads: number) =>
  decode(name, { vocabSize: 32000, dModel, nLayers, nHeads, ffnHidden, contextLength: 2048 });

/** Transformer-370M: 369.1M parameters. */
export const llama370M = paper("370M", 1024, 2752, 24, 16);
/** Transformer-780M: 781.4M parameters. */
export const llama780M = paper("780M", 1536, 4128, 24, 16);
/** Transformer-1.3B: 1345.4M parameters. */
export const llama1_3B = paper("1.3B", 2048, 5504, 24, 16);
/** Transformer-2.7B: 2693.7M parameters. */
export const llama2_7B = paper("2.7B", 2560, 6880, 32, 32);

/**
 * The CPU reference config (stack.md): 5.26M parameters untied, 4.21M of them in matmuls.
 * SwiGLU hidden 688 = 8/3·256 rounded up to a multiple of 16, the LLaMA rule.
 */
export const reference = decode("reference", {
  vocabSize: 4096,
  dModel: 256,
  nLayers: 4,
  nHeads: 4,
  ffnHidden: 688,
  contextLength: 256,
});

/** A bigger CPU config: 6 layers of width 384 over an 8K vocabulary (16.9M parameters). */
export const small = decode("small", {
  vocabSize: 8192,
  dModel: 384,
  nLayers: 6,
  nHeads: 6,
  ffnHidden: 1024,
  contextLength: 512,
});

/** A config for tests and smoke runs: byte-sized vocabulary, 2 layers of width 64 (0.13M parameters). */
export const tiny = decode("tiny", {
  vocabSize: 256,
  dModel: 64,
  nLayers: 2,
  nHeads: 4,
  ffnHidden: 176,
  contextLength: 128,
});

export const byName: Readonly<Record<string, Config.ModelConfig>> = {
  "370M": llama370M,
  "780M": llama780M,
  "1.3B": llama1_3B,
  "2.7B": llama2_7B,
  reference,
  small,
  tiny,
};

export const names: ReadonlyArray<string> = Object.keys(byName);

/** The preset of that name, if there is one. */
export const lookup = (name: string): Option.Option<Config.ModelConfig> =>
  Object.prototype.hasOwnProperty.call(byName, name) ? Option.some(byName[name]) : Option.none();
