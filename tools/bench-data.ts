/**
 * Data path throughput as JSON on stdout: `prepare` of the embedded corpus (22.5 MB) and
 * reading training batches back from its shards.
 *
 *   npx tsx tools/bench-data.ts [--out DIR] [--window 1024] [--batch 8] [--batches 2000]
 *
 * `prepare` uses the plain byte tokenizer, so its figure is the data lib's own cost (reading,
 * decoding, record cutting, split, shard writes with fsync), not a tokenizer's; tokenizer speed
 * has its own benchmark. The run is done twice: the second must be skipped (up to date).
 * Batches are read in shuffled order (the training case), with the default prefetch.
 */
import { Batches, Corpus, Prepare } from "@patchlm/data";
import { Bytes } from "@patchlm/tokenization";
import { Effect, Layer, Logger, LogLevel, Stream } from "effect";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const flag = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};

const keepOut = process.argv.includes("--out");
const outDir = path.resolve(flag("out", fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-bench-data-"))));
const windowLength = Number(flag("window", "1024"));
const batchSize = Number(flag("batch", "8"));
const batches = Number(flag("batches", "2000"));

const layer = Layer.merge(Bytes.layer, Logger.minimumLogLevel(LogLevel.Warning));

const program = Effect.gen(function* () {
  const first = yield* Prepare.prepare({ source: Corpus.embedded, outDir });
  const second = yield* Prepare.prepare({ source: Corpus.embedded, outDir });
  const manifest = JSON.parse(fs.readFileSync(first.manifestPath, "utf8")) as { source: { bytes: number } };
  const t0 = performance.now();
  const n = yield* Stream.runCount(Stream.take(Batches.stream({ dir: outDir, windowLength, batchSize, seed: 1 }), batches));
  const readSeconds = (performance.now() - t0) / 1000;
  return {
    corpus: "embedded",
    inputBytes: manifest.source.bytes,
    tokenizer: first.tokenizer,
    prepare: {
      seconds: Number(first.seconds.toFixed(3)),
      megabytesPerSecond: Number((manifest.source.bytes / 1e6 / first.seconds).toFixed(2)),
      splits: first.splits,
    },
    rerun: { skipped: second.skipped, seconds: Number(second.seconds.toFixed(3)) },
    batches: {
      windowLength,
      batchSize,
      order: "shuffled",
      batches: n,
      seconds: Number(readSeconds.toFixed(3)),
      batchesPerSecond: Math.round(n / readSeconds),
      tokensPerSecond: Math.round((n * batchSize * windowLength) / readSeconds),
    },
    rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    node: process.version,
  };
});

Effect.runPromise(Effect.provide(program, layer))
  .then((r) => console.log(JSON.stringify(r, null, 2)))
  .finally(() => {
    if (!keepOut) fs.rmSync(outDir, { recursive: true, force: true });
  });
