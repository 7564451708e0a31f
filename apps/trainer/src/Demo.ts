/**
 * The main job's settings: the embedded corpus, a byte-level BPE of 4096, and the `tiny` LLaMA
 * (d 64, 2 layers, 4 heads; 0.63 M parameters with this vocabulary) trained with the paper's
 * recipe (K = 4, λ = 2/3, mean patches, optimizer and schedule reset at the switch) on 2 M tokens:
 * 171 patch steps then 85 token steps of 8,192 tokens, sized to finish in minutes on two CPU
 * cores. Larger runs: `trainer train --preset reference ...` (see the README).
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
  model: { preset: "tiny" },
  patch: { patchSize: 4, patchFraction: 2 / 3, strategy: "mean", switchPolicy: "reset" },
  batch: { tokens: 2_097_152, batchTokens: 8_192, seqLen: 128, microBatch: 16 },
  optim: { lr: 2e-3, minLr: 2e-4, warmupSteps: 20 },
  logEvery: 10,
  evalEvery: 40,
  evalBatches: 16,
  checkpointEvery: 40,
  keepCheckpoints: 2,
};
