import { runTestFailure, runTestWith } from "@patchlm/testing";
import { Effect } from "effect";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Batches, Corpus, Prepare, Shards } from "../src";
import { bytes, layerOf, wideBytes } from "./tokenizers";
import { expectedStreams, smallCorpus } from "./expected";
import { tempDir, writeFiles } from "./fixtures";

const tok = bytes;
const run = runTestWith(layerOf());
type Failure = { _tag: string; reason?: string; path?: string; message: string };
const prepareFailure = (o: Prepare.PrepareOptionsInput) => runTestFailure(Effect.provide(Prepare.prepare(o), layerOf())) as Promise<Failure>;

/** Every token of a split, read straight from the shard files the manifest lists. */
const shardTokens = (dir: string, m: Shards.Manifest, split: "train" | "validation"): Array<number> => {
  const out: Array<number> = [];
  for (const s of m.splits[split].shards) {
    const bytes = fs.readFileSync(path.join(dir, s.file));
    const header = Shards.decodeHeader(s.file, bytes, bytes.length);
    if (header._tag === "Left") throw new Error(header.left.message);
    const payload = bytes.subarray(Shards.headerBytes);
    const ids = header.right.dtype === "uint16" ? new Uint16Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length)) : new Uint32Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length));
    expect(createHash("sha256").update(payload).digest("hex")).toBe(s.payloadSha256);
    out.push(...ids);
  }
  return out;
};

const readManifest = (dir: string): Shards.Manifest => JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));

describe("Prepare.prepare", () => {
  const corpus = writeFiles(tempDir("corpus"), smallCorpus);
  const source = Corpus.text(corpus);
  const options = { source, validationFraction: 0.2, seed: 7, shardTokens: 1000 };

  it("writes each split's documents as UTF-8 byte ids followed by EOS, in shards of the configured size", async () => {
    const outDir = tempDir("out");
    const summary = await run(Prepare.prepare({ ...options, outDir }));
    const expected = await expectedStreams(source, { seed: 7, validationFraction: 0.2, special: tok.special });
    const m = readManifest(outDir);

    expect(summary.skipped).toBe(false);
    expect(summary.dtype).toBe("uint16");
    // Stratified by folder: round(0.2 · 8) at the top, round(0.2 · 4) in sub/.
    expect(summary.splits.validation.documents).toBe(3);
    for (const split of ["train", "validation"] as const) {
      const got = shardTokens(outDir, m, split);
      expect(got).toEqual(expected[split].tokens);
      expect(summary.splits[split].tokens).toBe(expected[split].tokens.length);
      expect(summary.splits[split].documents).toBe(expected[split].documents.length);
      const sizes = m.splits[split].shards.map((s) => s.tokens);
      expect(sizes.length).toBe(Math.ceil(got.length / 1000));
      expect(sizes.slice(0, -1).every((n) => n === 1000)).toBe(true);
    }
    expect(m.tokenizer).toEqual({ name: tok.name, hash: tok.hash, vocabSize: 259, special: tok.special });
    expect(m.source.files).toBe(12);
    expect(m.layout).toEqual({ bos: false, recordWords: 10000, validationFraction: 0.2, seed: 7, shardTokens: 1000, order: "shuffled", split: "stratified" });
    // Only the manifest and its shards are left in the directory.
    const listed = [...m.splits.train.shards, ...m.splits.validation.shards].map((s) => s.file);
    expect(fs.readdirSync(outDir).sort()).toEqual(["manifest.json", ...listed].sort());
  });

  it("does nothing when run again with the same inputs, tokenizer and options", async () => {
    const outDir = tempDir("again");
    const first = await run(Prepare.prepare({ ...options, outDir }));
    const stamp = () => fs.readdirSync(outDir).map((f) => [f, fs.statSync(path.join(outDir, f)).mtimeMs]);
    const before = stamp();
    const second = await run(Prepare.prepare({ ...options, outDir }));
    expect(second.skipped).toBe(true);
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(second.splits).toEqual(first.splits);
    expect(stamp()).toEqual(before);
  });

  it("prepares again when an input changes, replacing the old shards", async () => {
    const src = writeFiles(tempDir("changing"), smallCorpus);
    const outDir = tempDir("changed-out");
    const first = await run(Prepare.prepare({ ...options, source: Corpus.text(src), outDir }));
    const oldShards = readManifest(outDir).splits.train.shards.map((s) => s.file);
    fs.appendFileSync(path.join(src, "doc-01.txt"), "one more line\n");
    const second = await run(Prepare.prepare({ ...options, source: Corpus.text(src), outDir }));
    expect(second.skipped).toBe(false);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(second.splits.train.tokens + second.splits.validation.tokens).toBe(
      first.splits.train.tokens + first.splits.validation.tokens + "one more line\n".length,
    );
    for (const f of oldShards) expect(fs.existsSync(path.join(outDir, f))).toBe(false);
    // A different option is a different preparation too.
    const third = await run(Prepare.prepare({ ...options, source: Corpus.text(src), outDir, seed: 8 }));
    expect(third.skipped).toBe(false);
  });

  it("never trusts leftovers of an interrupted run, and cleans them up", async () => {
    const outDir = tempDir("interrupted");
    await run(Prepare.prepare({ ...options, outDir }));
    const m = readManifest(outDir);
    const trusted = shardTokens(outDir, m, "train");
    // A crash mid-shard leaves a temp file; a crash before the manifest leaves unlisted shards.
    const temp = path.join(outDir, "train-0123456789ab-00000.bin.tmp-4242-deadbeef");
    const stray = path.join(outDir, "train-0123456789ab-00000.bin");
    fs.writeFileSync(temp, "half a shard");
    fs.copyFileSync(path.join(outDir, m.splits.validation.shards[0].file), stray);
    const again = await run(Prepare.prepare({ ...options, outDir }));
    expect(again.skipped).toBe(true);
    expect(fs.existsSync(temp)).toBe(false);
    expect(fs.existsSync(stray)).toBe(false);
    expect(shardTokens(outDir, readManifest(outDir), "train")).toEqual(trusted);
  });

  it("prepares again when the manifest is missing or a listed shard is damaged", async () => {
    const outDir = tempDir("damaged");
    await run(Prepare.prepare({ ...options, outDir }));
    fs.rmSync(path.join(outDir, "manifest.json"));
    expect((await run(Prepare.prepare({ ...options, outDir }))).skipped).toBe(false);
    const shard = path.join(outDir, readManifest(outDir).splits.train.shards[0].file);
    fs.truncateSync(shard, fs.statSync(shard).size - 2);
    expect((await run(Prepare.prepare({ ...options, outDir }))).skipped).toBe(false);
    expect(fs.statSync(shard).size).toBe(Shards.headerBytes + 2 * 1000);
  });

  it("writes uint32 shards when the vocabulary does not fit 16 bits", async () => {
    const big = wideBytes(70_000);
    const outDir = tempDir("uint32");
    const summary = await runTestWith(layerOf(wideBytes(70_000)))(Prepare.prepare({ ...options, outDir }));
    expect(summary.dtype).toBe("uint32");
    const m = readManifest(outDir);
    const got = shardTokens(outDir, m, "train");
    const expected = await expectedStreams(source, { seed: 7, validationFraction: 0.2, special: big.special });
    expect(got).toEqual(expected.train.tokens);
    expect(got).toContain(big.special.eos); // 69,998: would wrap in uint16
    expect(m.splits.train.shards[0].bytes).toBe(Shards.headerBytes + 4 * m.splits.train.shards[0].tokens);
  });

  it("prefixes BOS when asked and cuts long documents into records", async () => {
    const outDir = tempDir("bos");
    await run(Prepare.prepare({ ...options, outDir, bos: true, recordWords: 7 }));
    const m = readManifest(outDir);
    const expected = await expectedStreams(source, { seed: 7, validationFraction: 0.2, recordWords: 7, bos: true, special: tok.special });
    expect(shardTokens(outDir, m, "train")).toEqual(expected.train.tokens);
    expect(m.splits.train.documents + m.splits.validation.documents).toBeGreaterThan(100);
  });

  it("fails on a missing path or an empty corpus before writing anything", async () => {
    const outDir = path.join(tempDir("nothing"), "out");
    const missing = path.join(corpus, "missing");
    const e1 = await prepareFailure({ source: Corpus.text(missing), outDir });
    expect([e1._tag, e1.reason, e1.path]).toEqual(["CorpusError", "NotFound", missing]);
    const empty = writeFiles(tempDir("empty"), { "a.txt": "" });
    const e2 = await prepareFailure({ source: Corpus.text(empty), outDir });
    expect([e2._tag, e2.reason, e2.path]).toEqual(["CorpusError", "Empty", empty]);
    expect(fs.existsSync(outDir)).toBe(false);
  });

  it("keeps the previous preparation when new input is bad", async () => {
    const src = writeFiles(tempDir("turns-bad"), smallCorpus);
    const outDir = tempDir("kept");
    await run(Prepare.prepare({ ...options, source: Corpus.text(src), outDir }));
    const before = fs.readdirSync(outDir).sort();
    const manifest = fs.readFileSync(path.join(outDir, "manifest.json"), "utf8");
    fs.writeFileSync(path.join(src, "zz-latin1.txt"), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    const e = await prepareFailure({ ...options, source: Corpus.text(src), outDir });
    expect([e._tag, e.reason, e.path]).toEqual(["CorpusError", "NotUtf8", path.join(src, "zz-latin1.txt")]);
    expect(fs.readdirSync(outDir).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(outDir, "manifest.json"), "utf8")).toBe(manifest);
  });

  it("lays documents out in corpus order when asked", async () => {
    const outDir = tempDir("corpus-order");
    await run(Prepare.prepare({ ...options, outDir, order: "corpus" }));
    const expected = await expectedStreams(source, { seed: 7, validationFraction: 0.2, order: "corpus", special: tok.special });
    expect(shardTokens(outDir, readManifest(outDir), "train")).toEqual(expected.train.tokens);
    const shuffled = await expectedStreams(source, { seed: 7, validationFraction: 0.2, special: tok.special });
    expect(shuffled.train.tokens).not.toEqual(expected.train.tokens);
  });

  describe("every phase of a λ split reads a fair sample of the corpus", () => {
    jest.setTimeout(60_000);
    // Two sources told apart by their bytes: 400 documents of "a" words, 200 of "b" words, listed
    // a-first (corpus order is sorted by path). A third of the tokens are "b".
    const mixed = writeFiles(tempDir("mixed"), {
      ...Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`a/doc-${String(i).padStart(3, "0")}.txt`, "aaa ".repeat(8 + (i % 7))])),
      ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`b/doc-${String(i).padStart(3, "0")}.txt`, "bbb ".repeat(8 + (i % 5))])),
    });
    const trainDocuments = 540; // 360 of a/, 180 of b/
    /**
     * A phase holding n of the N train documents drawn at random: its "b" share has a standard
     * deviation of about sqrt(p(1−p)/n · (1 − n/N)); allow 3.5 of those.
     */
    const tolerance = (fraction: number) => {
      const n = fraction * trainDocuments;
      return 3.5 * Math.sqrt(((1 / 3) * (2 / 3)) / n * (1 - n / trainDocuments));
    };
    const share = (ids: ArrayLike<number>) => {
      let a = 0;
      let b = 0;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] === 0x61) a++;
        else if (ids[i] === 0x62) b++;
      }
      return b / (a + b);
    };
    // One preparation per order, shared by the cases (each takes seconds on a loaded machine).
    const prepared = new Map<string, Promise<Array<number>>>();
    const trainTokens = (order: "shuffled" | "corpus") => {
      if (!prepared.has(order)) {
        const outDir = tempDir(`mixed-${order}`);
        prepared.set(
          order,
          run(Prepare.prepare({ source: Corpus.text(mixed), outDir, validationFraction: 0.1, seed: 11, order })).then(() =>
            shardTokens(outDir, readManifest(outDir), "train"),
          ),
        );
      }
      return prepared.get(order)!;
    };
    /** The "b" share of the whole train split and of the patch and token phases' ranges at λ. */
    const phaseShares = async (order: "shuffled" | "corpus", lambda: number) => {
      const tokens = await trainTokens(order);
      const patch = Batches.tokenRange(tokens.length, 0, lambda);
      const token = Batches.tokenRange(tokens.length, lambda, 1);
      return {
        corpus: share(tokens),
        patch: share(tokens.slice(patch.startToken, patch.endToken)),
        token: share(tokens.slice(token.startToken, token.endToken)),
      };
    };

    it.each([0.5, 2 / 3, 0.8])("shuffled layout, λ = %f: both phases match the corpus mix within sampling error", async (lambda) => {
      const s = await phaseShares("shuffled", lambda);
      expect(s.corpus).toBeCloseTo(1 / 3, 1);
      expect(Math.abs(s.patch - s.corpus)).toBeLessThan(tolerance(lambda));
      expect(Math.abs(s.token - s.corpus)).toBeLessThan(tolerance(1 - lambda));
    });

    it("corpus order fails the same check (the defect the shuffle fixes)", async () => {
      const s = await phaseShares("corpus", 2 / 3);
      expect(s.patch).toBeLessThan(0.01);
      expect(s.token).toBeGreaterThan(0.9);
    });

    it("validation mixes the sources as the corpus does", async () => {
      const outDir = tempDir("mixed-val");
      await run(Prepare.prepare({ source: Corpus.text(mixed), outDir, validationFraction: 0.1, seed: 11 }));
      const m = readManifest(outDir);
      expect(m.splits.validation.documents).toBe(60); // 40 of a/, 20 of b/
      expect(m.splits.train.documents).toBe(trainDocuments);
      expect(Math.abs(share(shardTokens(outDir, m, "validation")) - 1 / 3)).toBeLessThan(0.03);
    });
  });

  it("rejects bad options, naming every problem at once", async () => {
    const e = await prepareFailure({ source, outDir: "x", shardTokens: -1, bogus: true } as unknown as Prepare.PrepareOptionsInput);
    expect(e._tag).toBe("ConfigError");
    expect(e.message).toMatch(/shardTokens/);
    expect(e.message).toMatch(/bogus/);
  });
});
