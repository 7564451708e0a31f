/**
 * The main job, as a two-run study: the embedded corpus, a byte-level BPE of 4096, and the `tiny`
 * LLaMA (d 64, 2 layers, 4 heads; 0.63 M parameters with this vocabulary) trained twice on the
 * same 2 M tokens — once token-level, once with the paper's recipe (K = 4, λ = 2/3, mean patches,
 * optimizer and schedule reset at the switch) — then compared side by side: relative cost,
 * time and validation loss. Sized to finish in a few minutes on two CPU cores; the committed
 * study (studies/paper-table1.yaml) is the larger version.
 */
export const study = {
  name: "demo",
  description: "The main job: token-level training against patch-level training (K=4, λ=2/3) on the same 2M tokens of the embedded corpus.",
  data: { corpus: "embedded", tokenizer: "bpe:4096", validationFraction: 0.05, seed: 0, out: "data/embedded" },
  base: {
    seed: 1234,
    model: { preset: "tiny" },
    patch: { strategy: "mean", switchPolicy: "reset" },
    batch: { tokens: 2_097_152, batchTokens: 8_192, seqLen: 128 },
    optim: { lr: 2e-3, minLr: 2e-4, warmupSteps: 20 },
    logEvery: 10,
    evalEvery: 40,
    evalBatches: 4,
    checkpointEvery: 40,
    keepCheckpoints: 2,
  },
  runs: [
    { name: "token-baseline", baseline: true, set: { patch: { patchSize: 1 } } },
    { name: "patch-k4", set: { patch: { patchSize: 4, patchFraction: 2 / 3 } } },
  ],
  evaluation: { clozeItems: 100, blockTokens: 4096 },
};
