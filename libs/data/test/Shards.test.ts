import { runTestFailure, runTestWith } from "@patchlm/testing";
import { Effect, Either } from "effect";
import * as fs from "node:fs";
import * as path from "node:path";
import { Corpus, Prepare, Shards } from "../src";
import { bytes, layerOf, wideBytes } from "./tokenizers";
import { smallCorpus } from "./expected";
import { tempDir, writeFiles } from "./fixtures";

const tok = bytes;
const run = runTestWith(layerOf());
const source = Corpus.text(writeFiles(tempDir("shards-corpus"), smallCorpus));
const good = tempDir("shards-good");

beforeAll(() => run(Prepare.prepare({ source, outDir: good, validationFraction: 0.2, shardTokens: 2000 })));

interface Failure {
  readonly _tag: string;
  readonly reason: string;
  readonly path: string;
  readonly message: string;
}

/** A copy of the good directory with one shard damaged by `damage`; returns the open failure and the shard. */
const damaged = async (label: string, damage: (shard: string) => void): Promise<readonly [Failure, string]> => {
  const dir = tempDir(label);
  fs.cpSync(good, dir, { recursive: true });
  const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Shards.Manifest;
  const shard = path.join(dir, m.splits.train.shards[1].file);
  damage(shard);
  const e = (await runTestFailure(Effect.scoped(Shards.open(dir, "train", tok)))) as Failure;
  return [e, shard] as const;
};

const patchBytes = (file: string, offset: number, bytes: ArrayLike<number>) => {
  const b = fs.readFileSync(file);
  b.set(bytes, offset);
  fs.writeFileSync(file, b);
};

describe("Shards header", () => {
  it("round-trips through encode and decode", () => {
    const h = { version: 1, dtype: "uint32" as const, vocabSize: 70000, tokens: 3, split: "validation", tokenizerHash: tok.hash };
    const bytes = new Uint8Array(Shards.headerBytes + 12);
    bytes.set(Shards.encodeHeader(h));
    expect(Either.getOrThrow(Shards.decodeHeader("x.bin", bytes, bytes.length))).toEqual(h);
    expect(Buffer.from(bytes.subarray(0, 8)).toString("ascii")).toBe("PLMSHARD");
  });

  it("picks uint16 up to a vocab of 65,536 and uint32 above", () => {
    expect(Shards.dtypeFor(65536)).toBe("uint16");
    expect(Shards.dtypeFor(65537)).toBe("uint32");
  });
});

describe("Shards.open errors", () => {
  it("bad magic", async () => {
    const [e, shard] = await damaged("magic", (f) => patchBytes(f, 0, Buffer.from("NOTSHARD")));
    expect([e._tag, e.reason, e.path]).toEqual(["ShardError", "BadMagic", shard]);
    expect(e.message).toMatch(/PLMSHARD/);
  });

  it("unsupported version", async () => {
    const [e, shard] = await damaged("version", (f) => patchBytes(f, 8, [9, 0, 0, 0]));
    expect([e.reason, e.path]).toEqual(["UnsupportedVersion", shard]);
    expect(e.message).toMatch(/version 9/);
  });

  it("bad token width", async () => {
    const [e, shard] = await damaged("width", (f) => patchBytes(f, 16, [3, 0, 0, 0]));
    expect([e.reason, e.path]).toEqual(["BadHeader", shard]);
  });

  it("truncated tail", async () => {
    const [e, shard] = await damaged("truncated", (f) => fs.truncateSync(f, fs.statSync(f).size - 3));
    expect([e.reason, e.path]).toEqual(["Truncated", shard]);
    expect(e.message).toMatch(/2000 tokens/);
  });

  it("bytes after the last token", async () => {
    const [e, shard] = await damaged("trailing", (f) => fs.appendFileSync(f, Buffer.from([1, 2])));
    expect([e.reason, e.path]).toEqual(["TrailingBytes", shard]);
  });

  it("a shard made by another tokenizer, naming both hashes", async () => {
    const other = wideBytes(300).hash;
    const [e, shard] = await damaged("foreign", (f) => patchBytes(f, 48, Buffer.from(other, "ascii")));
    expect([e.reason, e.path]).toEqual(["TokenizerMismatch", shard]);
    expect(e.message).toContain(other);
    expect(e.message).toContain(tok.hash);
  });

  it("a header that disagrees with the manifest", async () => {
    const [e, shard] = await damaged("split", (f) => patchBytes(f, 32, Buffer.from("validation")));
    expect([e.reason, e.path]).toEqual(["BadHeader", shard]);
    expect(e.message).toMatch(/split/);
  });

  it("a missing shard", async () => {
    const [e, shard] = await damaged("missing", (f) => fs.rmSync(f));
    expect([e.reason, e.path]).toEqual(["MissingShard", shard]);
  });

  it("a manifest that is not valid", async () => {
    const dir = tempDir("bad-manifest");
    fs.writeFileSync(path.join(dir, "manifest.json"), '{"format":"something else"}');
    const e = (await runTestFailure(Effect.scoped(Shards.open(dir, "train", tok)))) as Failure;
    expect([e.reason, e.path]).toEqual(["BadManifest", path.join(dir, "manifest.json")]);
  });

  it("verify catches a modified payload that headers and sizes cannot", async () => {
    expect((await run(Shards.verify(good))).fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const dir = tempDir("flipped");
    fs.cpSync(good, dir, { recursive: true });
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Shards.Manifest;
    const shard = path.join(dir, m.splits.train.shards[0].file);
    patchBytes(shard, Shards.headerBytes + 10, [0x21]);
    await run(Effect.scoped(Shards.open(dir, "train", tok)));
    const e = (await runTestFailure(Shards.verify(dir))) as Failure;
    expect([e.reason, e.path]).toEqual(["ChecksumMismatch", shard]);
    expect(e.message).toMatch(/sha256/);
  });
});

// reliability D12: an id outside the vocabulary in a shard reached the model as a raw GatherV2 error,
// naming neither the shard nor the offset.
describe("Shards.read checks every id against the vocabulary", () => {
  it("an out-of-vocabulary id fails the read, naming the shard file and the offset", async () => {
    const dir = tempDir("oov");
    fs.cpSync(good, dir, { recursive: true });
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Shards.Manifest;
    const shard = path.join(dir, m.splits.train.shards[1].file);
    patchBytes(shard, Shards.headerBytes + 2 * 7, [0xff, 0xff]); // uint16 id 65535 at token 7 of the shard
    const read = (from: number, length: number) => Effect.scoped(Effect.flatMap(Shards.open(dir, "train", tok), (d) => d.read(from, length)));
    const e = (await runTestFailure(read(0, m.splits.train.shards[0].tokens + 20))) as Failure;
    expect([e._tag, e.reason, e.path]).toEqual(["ShardError", "BadToken", shard]);
    expect(e.message).toContain(`id 65535 at token 7 (byte ${Shards.headerBytes + 14})`);
    expect(e.message).toContain(`vocabulary of ${tok.vocabSize}`);
    // Ranges that do not cover the bad id still read.
    expect((await run(read(0, 10))).length).toBe(10);
  });
});

describe("Shards.open", () => {
  it("reads token ranges across shard boundaries", async () => {
    const all = await run(
      Effect.scoped(
        Effect.flatMap(Shards.open(good, "train", tok, { maxOpenFiles: 1 }), (d) =>
          Effect.all([d.read(0, d.tokens), d.read(1990, 20), d.read(d.tokens - 5, 5), Effect.succeed(d.shards.length)]),
        ),
      ),
    );
    const [whole, across, tail, shards] = all;
    expect(shards).toBeGreaterThan(2);
    expect(Array.from(across)).toEqual(Array.from(whole.subarray(1990, 2010)));
    expect(Array.from(tail)).toEqual(Array.from(whole.subarray(whole.length - 5)));
    expect(whole[whole.length - 1]).toBe(tok.special.eos);
  });
});
