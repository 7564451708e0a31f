/**
 * Single libraries on their own, in a CommonJS program: no trainer, no backend lib. Tokenize with
 * GPT-2 and with a BPE trained here, score our own logits with the patch (bag) loss, and run the
 * model forward on the cpu backend this program registers itself. Each check prints `ok - …` or
 * `not ok - …`; any failure exits 1.
 */
import "@tensorflow/tfjs-backend-cpu"; // the program picks the backend; the libs register none
import * as tf from "@tensorflow/tfjs-core";
import { Effect, Either } from "effect";
import { Config } from "@patchlm/core";
import { Loss } from "@patchlm/losses";
import { Model } from "@patchlm/model";
import { Bpe, Tiktoken } from "@patchlm/tokenization";

let failures = 0;
const check = (name: string, ok: boolean, detail = ""): void => {
  console.log(`${ok ? "ok" : "not ok"} - ${name}${detail === "" ? "" : ` (${detail})`}`);
  if (!ok) failures++;
};

/** −log softmax(row)[target], in float64. */
const nll = (row: ReadonlyArray<number>, target: number): number => {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, z) => s + Math.exp(z - m), 0));
  return lse - row[target]!;
};

const tokenizers = Effect.gen(function* () {
  // GPT-2's ranks ship with the package: nothing is downloaded.
  const gpt2 = yield* Tiktoken.make("gpt2");
  const ids = Array.from(gpt2.encode("Hello world"));
  check("gpt2: 'Hello world' is [15496, 995]", JSON.stringify(ids) === "[15496,995]", JSON.stringify(ids));
  const text = "Patch-level training reads K tokens at a time. ✓";
  check("gpt2: decode(encode(s)) === s", gpt2.decode(gpt2.encode(text)) === text);
  // Batches go to worker threads (the package's compiled worker entry): the same ids, in order.
  const docs = Array.from({ length: 64 }, (_, i) => `document ${i}: ${"patch ".repeat(i % 7)}tokens`);
  const batch = yield* gpt2.encodeBatch(docs);
  check(
    "gpt2: encodeBatch on workers equals encode, in order",
    batch.length === docs.length && batch.every((ids, i) => JSON.stringify(Array.from(ids)) === JSON.stringify(Array.from(gpt2.encode(docs[i]!)))),
  );

  const corpus = Array.from({ length: 50 }, (_, i) => `the patch model reads patches of tokens, line ${i}; the token model reads tokens.`);
  const model = yield* Bpe.train(corpus, { vocabSize: 280 });
  const bpe = yield* Bpe.make(model);
  check("bpe: trained to 280 entries", bpe.vocabSize === 280, String(bpe.vocabSize));
  const line = "the patch model reads tokens";
  const encoded = bpe.encode(line);
  check("bpe: a seen phrase takes fewer ids than bytes", encoded.length < Buffer.byteLength(line), `${encoded.length} ids for ${Buffer.byteLength(line)} bytes`);
  check("bpe: decode(encode(s)) === s", bpe.decode(encoded) === line);
});

const losses = () => {
  // Our own logits: B=1, 2 rows, V=5; each row scored against the K=3 tokens of the next patch.
  const rows = [
    [2.0, -1.0, 0.5, 0.0, 1.5],
    [-0.5, 0.25, 3.0, -2.0, 0.0],
  ];
  const targets = [
    [0, 4, 4],
    [2, 1, 3],
  ];
  const bag = tf.tidy(() => Loss.bagCrossEntropy(tf.tensor3d([rows]), tf.tensor3d([targets], undefined, "int32")).dataSync()[0]!);
  // Eq. 2: the mean over rows and slots of −log p(target), one softmax per row, each slot equal.
  const reference = rows.flatMap((row, r) => targets[r]!.map((t) => nll(row, t))).reduce((a, b) => a + b) / 6;
  check("losses: bag loss matches −mean log p over rows and slots", Math.abs(bag - reference) < 1e-5, `${bag.toFixed(6)} vs ${reference.toFixed(6)}`);
  const token = tf.tidy(() => Loss.tokenCrossEntropy(tf.tensor3d([rows]), tf.tensor2d([[4, 2]], undefined, "int32")).dataSync()[0]!);
  const tokenReference = (nll(rows[0]!, 4) + nll(rows[1]!, 2)) / 2;
  check("losses: token loss is the one-slot case", Math.abs(token - tokenReference) < 1e-5, `${token.toFixed(6)} vs ${tokenReference.toFixed(6)}`);
};

const forward = () => {
  const cfg = Either.getOrThrow(
    Config.decodeConfig(Config.ModelConfig)("example", { vocabSize: 50, dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, contextLength: 8 }),
  );
  const params = Model.init(cfg, 1);
  const before = tf.memory().numTensors;
  const ids = [3, 1, 4, 1, 5, 9, 2, 6];
  const changedLast = [...ids.slice(0, 7), 7];
  const [shape, finite, causal] = tf.tidy(() => {
    const logits = Model.forward(params, cfg, tf.tensor2d([ids, changedLast], undefined, "int32")); // (B,T,V) = (2,8,50)
    const values = logits.dataSync();
    // Causal: the two sequences differ only in their last token, so every earlier position agrees.
    const V = cfg.vocabSize;
    let maxDiff = 0;
    for (let i = 0; i < 7 * V; i++) maxDiff = Math.max(maxDiff, Math.abs(values[i]! - values[8 * V + i]!));
    return [logits.shape, values.every(Number.isFinite), maxDiff] as const;
  });
  check("model: logits are (B,T,V) = (2,8,50)", JSON.stringify(shape) === "[2,8,50]", JSON.stringify(shape));
  check("model: every logit finite", finite);
  check("model: causal (earlier positions ignore a changed last token)", causal < 1e-6, `max diff ${causal.toExponential(2)}`);
  check("model: no tensor leaked by the forward pass", tf.memory().numTensors === before);
  Model.dispose(params);
};

Effect.runPromise(Effect.scoped(tokenizers))
  .then(() => tf.setBackend("cpu"))
  .then(() => {
    losses();
    forward();
  })
  .catch((e: unknown) => check("the example ran to its end", false, String(e)))
  .finally(() => {
    console.log(failures === 0 ? "# all checks passed" : `# ${failures} check(s) failed`);
    process.exit(failures === 0 ? 0 : 1);
  });
