/**
 * The main job's settings: the embedded corpus, a byte-level BPE of 4096, and a small LLaMA
 * trained with the paper's recipe (K = 4, λ = 2/3, mean patches, optimizer and schedule reset at
 * the switch), sized to finish in minutes on two CPU cores.
 */
export const prepareOptions = {
  corpus: "embedded",
  field: "text",
  latin1: false,
  out: "data/embedded",
  tokenizer: "bpe:4096",
  validationFraction: 0.01,
  seed: 0,
} as const;

export const config = {
  data: prepareOptions.out,
  seed: 1234,
  model: { preset: "reference" },
  patch: { patchSize: 4, patchFraction: 2 / 3, strategy: "mean", switchPolicy: "reset" },
  batch: { tokens: 3_145_728, batchTokens: 16_384, seqLen: 128, microBatch: 16 },
  optim: { lr: 1e-3, minLr: 1e-4, warmupSteps: 20 },
  logEvery: 10,
  evalEvery: 50,
  evalBatches: 16,
  checkpointEvery: 50,
  keepCheckpoints: 2,
};
