/**
 * A tiny prepared corpus and run config for trainer tests: byte tokenizer, a few KB of text with
 * learnable structure, the `tiny` preset.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NodeContext } from "@effect/platform-node";
import { Effect, Either, Layer } from "effect";
import { Corpus, Prepare } from "@patchlm/data";
import { MetricsSink, Progress } from "@patchlm/metrics";
import { Registry } from "@patchlm/patching";
import { runTest, useBackend } from "@patchlm/testing";
import { TokenizerFiles } from "@patchlm/tokenization";
import { RunConfig, Trainer } from "../src";

const sentence = (i: number): string =>
  `The ${["red", "blue", "green", "gold"][i % 4]} ${["cat", "dog", "bird"][i % 3]} number ${i % 17} sat on the ${["mat", "rug"][i % 2]}.`;

/** A corpus directory with `docs` small documents, prepared with the byte tokenizer. */
export const prepareCorpus = async (root: string, docs = 12): Promise<string> => {
  const corpus = path.join(root, "corpus");
  fs.mkdirSync(corpus, { recursive: true });
  for (let d = 0; d < docs; d++) {
    const lines = Array.from({ length: 40 }, (_, i) => sentence(d * 40 + i));
    fs.writeFileSync(path.join(corpus, `doc-${String(d).padStart(2, "0")}.txt`), lines.join("\n") + "\n");
  }
  const data = path.join(root, "data");
  await runTest(TokenizerFiles.save(data, { kind: "bytes" }));
  await runTest(
    Prepare.prepare({ source: Corpus.text(corpus), outDir: data, validationFraction: 0.2, seed: 0 }).pipe(
      Effect.provide(TokenizerFiles.layer(data)),
    ),
  );
  return data;
};

export const tempRoot = (): string => fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-trainer-"));

/**
 * A test file's corpus: before its tests, the cpu backend and a temporary root holding the
 * prepared corpus (`root`, `data` are set then); removed after them.
 */
export const corpusForFile = (): { root: string; data: string } => {
  const corpus = { root: "", data: "" };
  beforeAll(async () => {
    await useBackend("cpu");
    corpus.root = tempRoot();
    corpus.data = await prepareCorpus(corpus.root);
  });
  afterAll(() => fs.rmSync(corpus.root, { recursive: true, force: true }));
  return corpus;
};

/**
 * 12 steps of 256 tokens: 8 patch steps (K = 4, sequences of 64 tokens = 16 patches) and 4 token
 * steps (sequences of 16 tokens, 4 micro-batches of 4 each).
 */
export const config = (data: string, runsDir: string, overrides: Record<string, unknown> = {}): RunConfig.RunConfig =>
  Either.getOrThrow(
    RunConfig.decode("test", {
      name: "r",
      runsDir,
      data,
      seed: 7,
      model: { preset: "tiny" },
      patch: { patchSize: 4, patchFraction: 2 / 3 },
      batch: { tokens: 3072, batchTokens: 256, seqLen: 16, microBatch: 4 },
      optim: { lr: 1e-2, warmupSteps: 2 },
      logEvery: 1,
      evalEvery: 4,
      evalBatches: 2,
      checkpointEvery: 3,
      keepCheckpoints: 2,
      ...overrides,
    }),
  );

/** Run the trainer with in-memory metrics; returns the summary and every record written. */
export const train = (c: RunConfig.RunConfig, options: Partial<Trainer.Options> = {}) =>
  Effect.gen(function* () {
    const sink = yield* MetricsSink.memory();
    const summary = yield* Trainer.run({ config: c, resume: false, backend: { name: "cpu" }, ...options }).pipe(
      Effect.provide(
        Layer.mergeAll(TokenizerFiles.layer(c.data), Layer.succeed(MetricsSink.MetricsSink, sink), Progress.layerNone, Registry.layer),
      ),
    );
    return { summary, records: yield* sink.records };
  }).pipe(Effect.provide(NodeContext.layer));
