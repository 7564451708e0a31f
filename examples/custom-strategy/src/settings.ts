/**
 * One run's settings, shared by the library script and the CLI checks: the tiny preset, 20 steps
 * of 256 tokens, K = 4 for the first half.
 */
export const runSettings = {
  seed: 11,
  model: { preset: "tiny" },
  patch: { patchSize: 4, patchFraction: 0.5, strategy: "channel-weighted-mean" },
  batch: { tokens: 20 * 256, batchTokens: 256, seqLen: 16 },
  optim: { lr: 3e-3, warmupSteps: 2 },
  logEvery: 1,
  evalEvery: 0,
  checkpointEvery: 5,
  keepCheckpoints: 10,
} as const;

/** The same settings as trainer flags. */
// prettier-ignore
export const cliFlags = [
  "--seed", "11",
  "--preset", "tiny",
  "--patch-size", "4",
  "--patch-fraction", "0.5",
  "--strategy", "channel-weighted-mean",
  "--tokens", String(20 * 256),
  "--batch-tokens", "256",
  "--seq-len", "16",
  "--lr", "3e-3",
  "--warmup", "2",
  "--set", "logEvery=1",
  "--set", "evalEvery=0",
  "--set", "checkpointEvery=5",
  "--set", "keepCheckpoints=10",
  // The library script runs on cpu too: the same backend gives the same losses, bit for bit.
  "--backend", "cpu",
];
