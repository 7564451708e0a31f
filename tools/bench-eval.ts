/**
 * Scoring throughput of the eval libs, as JSON on stdout: windowed perplexity (tokens scored per
 * second, by batch size) and multiple-choice log-likelihood requests (requests and tokens per
 * second), on a freshly initialised model of a preset (the numbers do not depend on the weights).
 *
 *   npx tsx tools/bench-eval.ts [--backend native|wasm|cpu|auto] [--preset reference] [--tokens 16384] [--batch 1,8,16]
 *
 * Does not touch OPENBLAS_* variables; the JSON records them as this process saw them.
 */
import { Effect } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { Choice, Perplexity } from "@patchlm/eval";
import { Model, Presets } from "@patchlm/model";
import { randomInts } from "@patchlm/testing";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};

const backendChoice = arg("backend", "auto") as ComputeBackend.Choice;
const presetName = arg("preset", "reference");
const tokens = Number(arg("tokens", "16384"));
const batches = arg("batch", "1,8,16").split(",").map(Number);

const ids = (n: number, V: number, seed: number): Int32Array => randomInts(n, V, seed);

const time = <A>(f: () => A): { result: A; seconds: number } => {
  const t0 = performance.now();
  const result = f();
  return { result, seconds: (performance.now() - t0) / 1000 };
};

const program = Effect.gen(function* () {
  const backend = yield* ComputeBackend.make({ backend: backendChoice });
  const cfg = Presets.lookup(presetName).pipe((o) => (o._tag === "Some" ? o.value : Presets.reference));
  const params = Model.init(cfg, 1);
  const stream = ids(tokens + 1, cfg.vocabSize, 7);
  // Warm-up: first calls compile kernels and allocate.
  Perplexity.streamNll(params, cfg, stream.subarray(0, 2 * cfg.contextLength + 1), { batchSize: 2 });

  const perplexity = batches.map((batchSize) => {
    const { result, seconds } = time(() => Perplexity.streamNll(params, cfg, stream, { batchSize }));
    return { batchSize, window: cfg.contextLength, tokens: result.tokens, seconds, tokensPerSecond: result.tokens / seconds };
  });

  // HellaSwag-sized requests: ~48-token contexts, ~24-token continuations, 4 per example.
  const requests: Array<Choice.Encoded> = Array.from({ length: 256 }, (_, i) => ({
    context: ids(40 + (i % 16), cfg.vocabSize, 100 + i),
    continuation: ids(16 + (i % 16), cfg.vocabSize, 1000 + i),
  }));
  const requestTokens = requests.reduce((n, r) => n + r.context.length + r.continuation.length - 1, 0);
  const choice = batches.map((batchSize) => {
    const { seconds } = time(() => Choice.modelScorer(params, cfg, { batchSize })(requests));
    return { batchSize, requests: requests.length, seconds, requestsPerSecond: requests.length / seconds, tokensPerSecond: requestTokens / seconds };
  });
  Model.dispose(params);

  return {
    backend: backend.name,
    threads: backend.threads,
    preset: presetName,
    model: { vocab: cfg.vocabSize, dModel: cfg.dModel, layers: cfg.nLayers, heads: cfg.nHeads, contextLength: cfg.contextLength },
    env: { OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null, OPENBLAS_L2_SIZE: process.env.OPENBLAS_L2_SIZE ?? null },
    perplexity,
    multipleChoice: choice,
  };
});

Effect.runPromise(program.pipe(Effect.orDie)).then(
  (r) => console.log(JSON.stringify(r, null, 2)),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
