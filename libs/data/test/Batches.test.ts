import { runTestFailure, runTestWith } from "@patchlm/testing";
import { Tiktoken, Tokenizer } from "@patchlm/tokenization";
import { Chunk, Effect, Layer, Logger, LogLevel, Stream } from "effect";
import { Batches, Corpus, Prepare } from "../src";
import { bytes, layerOf, wideBytes } from "./tokenizers";
import { type ExpectedSplit, expectedStreams, smallCorpus } from "./expected";
import { tempDir, writeFiles } from "./fixtures";

const tok = bytes;
const run = runTestWith(layerOf());

const corpus = writeFiles(tempDir("batches-corpus"), smallCorpus);
const source = Corpus.text(corpus);
const dir = tempDir("batches-out");
// Shards of 777 tokens so windows regularly straddle shard boundaries.
const prepared = { source, outDir: dir, validationFraction: 0.2, seed: 3, shardTokens: 777 };
let expected: Record<"train" | "validation", ExpectedSplit>;

beforeAll(async () => {
  await run(Prepare.prepare(prepared));
  expected = await expectedStreams(source, { seed: 3, validationFraction: 0.2, special: tok.special });
});

const take = (options: Batches.BatchOptionsInput, n?: number) =>
  run(
    Stream.runCollect(n === undefined ? Batches.stream(options) : Stream.take(Batches.stream(options), n)).pipe(
      Effect.map(Chunk.toReadonlyArray),
    ),
  );

const failure = (options: Batches.BatchOptionsInput, tokenizer = tok) =>
  runTestFailure(Effect.provide(Stream.runDrain(Stream.take(Batches.stream(options), 1)), layerOf(tokenizer))) as Promise<{
    _tag: string;
    reason: string;
    path: string;
    message: string;
  }>;

const rows = (b: Batches.Batch): Array<Array<number>> =>
  Array.from({ length: b.rows }, (_, r) => Array.from(b.tokens.subarray(r * b.windowLength, (r + 1) * b.windowLength)));

/** Text of a byte window with 0x1e as document separator: each piece decoded as UTF-8, joined by U+241E. */
const textOf = (bytes: Uint8Array): string =>
  Buffer.from(bytes)
    .toString("latin1")
    .split("\x1e")
    .map((s) => Buffer.from(s, "latin1").toString("utf8"))
    .join("\u241e");

describe("Batches.stream", () => {
  it("reads back, in order, windows that decode to the corresponding slice of the corpus text", async () => {
    const L = 64;
    const batches = await take({ dir, windowLength: L, batchSize: 4, order: "sequential", epochs: 1 });
    const stream = expected.train.tokens;
    const W = Math.floor(stream.length / L);
    expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(W);
    expect(batches.at(-1)!.rows).toBe(W % 4 === 0 ? 4 : W % 4);
    // The corpus text of the train split with EOS separators, as bytes: token offset = byte offset.
    const corpusBytes = Buffer.concat(expected.train.documents.map((d) => Buffer.concat([Buffer.from(d.text), Buffer.from([0x1e])])));
    let w = 0;
    for (const b of batches) {
      rows(b).forEach((row, r) => {
        expect(b.starts[r]).toBe(w * L);
        expect(row).toEqual(stream.slice(w * L, (w + 1) * L));
        const expectedText = textOf(corpusBytes.subarray(w * L, (w + 1) * L));
        expect(textOf(Uint8Array.from(row, (id) => (id === tok.special.eos ? 0x1e : id)))).toBe(expectedText);
        // Where the window holds whole characters, the tokenizer's own decode gives the text itself.
        if (!expectedText.includes("\uFFFD")) expect(tok.decode(row)).toBe(expectedText.replaceAll("\u241e", ""));
        w++;
      });
    }
  });

  it("visits every window once per epoch in a seeded shuffled order", async () => {
    const L = 32;
    const W = Math.floor(expected.train.tokens.length / L);
    const batches = await take({ dir, windowLength: L, batchSize: 8, seed: 1, epochs: 2 });
    const starts = batches.flatMap((b) => Array.from(b.starts));
    const epoch0 = starts.slice(0, W);
    const epoch1 = starts.slice(W);
    const all = Array.from({ length: W }, (_, i) => i * L);
    expect([...epoch0].sort((a, b) => a - b)).toEqual(all);
    expect([...epoch1].sort((a, b) => a - b)).toEqual(all);
    expect(epoch0).not.toEqual(all);
    expect(epoch1).not.toEqual(epoch0);
    for (const b of batches) {
      rows(b).forEach((row, r) => expect(row).toEqual(expected.train.tokens.slice(b.starts[r], b.starts[r] + L)));
    }
    const other = await take({ dir, windowLength: L, batchSize: 8, seed: 2 }, 3);
    expect(other.map((b) => Array.from(b.starts))).not.toEqual(batches.slice(0, 3).map((b) => Array.from(b.starts)));
  });

  it("gives the same batches for the same seed, and resuming from a cursor continues exactly", async () => {
    const options = { dir, windowLength: 48, batchSize: 5, seed: 11 };
    const full = await take(options, 60); // crosses several epoch ends
    const again = await take(options, 60);
    expect(again.map((b) => Array.from(b.tokens))).toEqual(full.map((b) => Array.from(b.tokens)));
    expect(full.at(-1)!.cursor.epoch).toBeGreaterThan(1);

    const resumed = await take({ ...options, cursor: JSON.parse(JSON.stringify(full[22].cursor)) }, 30);
    expect(resumed.map((b) => b.step)).toEqual(full.slice(23, 53).map((b) => b.step));
    expect(resumed.map((b) => Array.from(b.tokens))).toEqual(full.slice(23, 53).map((b) => Array.from(b.tokens)));

    const layout = await run(Batches.describe(options));
    expect(Batches.cursorAfter(layout, 5, 23)).toEqual(full[22].cursor);
  });

  it("reads the same batches with or without prefetch, with many or one open file", async () => {
    const options = { dir, windowLength: 40, batchSize: 6, seed: 5 };
    const a = await take({ ...options, prefetch: 0 }, 10);
    const b = await take({ ...options, prefetch: 8 }, 10);
    const c = await take({ ...options, maxOpenFiles: 1 }, 10);
    expect(b.map((x) => Array.from(x.tokens))).toEqual(a.map((x) => Array.from(x.tokens)));
    expect(c.map((x) => Array.from(x.tokens))).toEqual(a.map((x) => Array.from(x.tokens)));
  });

  it("keeps the patch phase and the token phase on disjoint token ranges", async () => {
    const n = expected.train.tokens.length;
    const patch = Batches.tokenRange(n, 0, 2 / 3);
    const token = Batches.tokenRange(n, 2 / 3, 1);
    expect(patch.endToken).toBe(token.startToken);
    const K = 4;
    const T = 16;
    const p = await take({ dir, windowLength: K * T, batchSize: 4, range: patch, epochs: 1 });
    const t = await take({ dir, windowLength: T, batchSize: 4, range: token, epochs: 1 });
    for (const b of p) for (const s of b.starts) expect(s >= patch.startToken && s + K * T <= patch.endToken).toBe(true);
    for (const b of t) for (const s of b.starts) expect(s >= token.startToken && s + T <= token.endToken).toBe(true);
    expect(p.reduce((k, b) => k + b.rows, 0)).toBe(Math.floor((patch.endToken - patch.startToken) / (K * T)));
    expect(t.reduce((k, b) => k + b.rows, 0)).toBe(Math.floor((token.endToken - token.startToken) / T));
  });

  it("reads the validation split", async () => {
    const L = 16;
    const batches = await take({ dir, split: "validation", windowLength: L, batchSize: 2, order: "sequential", epochs: 1 });
    const got = batches.flatMap((b) => Array.from(b.tokens));
    expect(got).toEqual(expected.validation.tokens.slice(0, got.length));
    expect(got.length).toBe(Math.floor(expected.validation.tokens.length / L) * L);
  });
});

describe("Batches errors", () => {
  it("refuses shards made by another tokenizer, naming both hashes", async () => {
    const other = wideBytes(300);
    const e = await failure({ dir, windowLength: 8, batchSize: 1 }, other);
    expect([e._tag, e.reason]).toEqual(["ShardError", "TokenizerMismatch"]);
    expect(e.path).toMatch(/manifest\.json$/);
    expect(e.message).toContain(tok.hash);
    expect(e.message).toContain(other.hash);
  });

  it("names a window longer than the data, an empty range and a foreign cursor", async () => {
    const long = await failure({ dir, windowLength: 1_000_000, batchSize: 1 });
    expect([long._tag, long.reason]).toEqual(["BatchError", "TooFewTokens"]);
    expect(long.message).toMatch(/1000000/);
    const range = await failure({ dir, windowLength: 8, batchSize: 1, range: { startToken: 50, endToken: 50 } });
    expect(range.reason).toBe("BadRange");
    const layout = await run(Batches.describe({ dir, windowLength: 8, batchSize: 1 }));
    const cursor = Batches.cursorAfter(layout, 1, 3);
    const bad = await failure({ dir, windowLength: 16, batchSize: 1, cursor });
    expect([bad.reason, bad.path]).toEqual(["BadCursor", dir]);
  });

  it("names an empty split", async () => {
    const none = tempDir("no-validation");
    await run(Prepare.prepare({ ...prepared, outDir: none, validationFraction: 0 }));
    const e = await failure({ dir: none, split: "validation", windowLength: 8, batchSize: 1 });
    expect([e.reason, e.path]).toEqual(["EmptySplit", none]);
  });

  it("names a directory without a manifest", async () => {
    const empty = tempDir("no-manifest");
    const e = await failure({ dir: empty, windowLength: 8, batchSize: 1 });
    expect([e._tag, e.reason]).toEqual(["ShardError", "NoManifest"]);
    expect(e.path).toMatch(/manifest\.json$/);
  });

  it("rejects bad options before opening anything", async () => {
    const e = await runTestFailure(
      Effect.provide(Stream.runDrain(Batches.stream({ dir, windowLength: 0, batchSize: 2.5 })), layerOf()),
    );
    expect((e as { _tag: string })._tag).toBe("ConfigError");
    expect(String((e as Error).message)).toMatch(/windowLength[\s\S]*batchSize|batchSize[\s\S]*windowLength/);
  });

  it("computes cursors from step counts across epoch ends", () => {
    const layout = { startToken: 0, endToken: 100, windowLength: 10, windows: 10 };
    expect(Batches.cursorAfter(layout, 4, 0)).toEqual({ step: 0, epoch: 0, position: 0, windows: 10, windowLength: 10 });
    expect(Batches.cursorAfter(layout, 4, 3)).toEqual({ step: 3, epoch: 1, position: 2, windows: 10, windowLength: 10 });
  });
});

describe("Batches.stream with a subword tokenizer (GPT-2)", () => {
  it("windows read in order decode, document by document, to the corpus text", async () => {
    const gpt2Layer = Layer.merge(Tiktoken.layerGpt2, Logger.minimumLogLevel(LogLevel.None));
    const out = tempDir("gpt2-out");
    const L = 50;
    const { batches, gpt2 } = await runTestWith(gpt2Layer)(
      Effect.gen(function* () {
        yield* Prepare.prepare({ source, outDir: out, validationFraction: 0.2, seed: 3, shardTokens: 500 });
        const all = yield* Stream.runCollect(Batches.stream({ dir: out, windowLength: L, batchSize: 3, order: "sequential", epochs: 1 }));
        return { batches: Chunk.toReadonlyArray(all), gpt2: yield* Tokenizer.Tokenizer };
      }),
    );
    expect(gpt2.vocabSize).toBeGreaterThan(50_000);
    // The windows tile the split's stream; cut at EOS, each complete piece is one document.
    const ids = batches.flatMap((b) => Array.from(b.tokens));
    const pieces: Array<Array<number>> = [[]];
    for (const id of ids) {
      if (id === gpt2.special.eos) pieces.push([]);
      else pieces[pieces.length - 1].push(id);
    }
    const complete = pieces.slice(0, -1);
    expect(complete.length).toBeGreaterThan(3);
    expect(complete.map((p) => gpt2.decode(p))).toEqual(expected.train.documents.slice(0, complete.length).map((d) => d.text));
    // The words of the last, partial document begin its text.
    const partial = gpt2.decode(pieces[pieces.length - 1].slice(0, -1));
    expect(expected.train.documents[complete.length].text.startsWith(partial)).toBe(true);
  });
});
