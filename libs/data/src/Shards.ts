/**
 * Token shards on disk: the binary shard format, the manifest, and random access to the tokens
 * of a split without loading its shards.
 *
 * A prepared directory holds `manifest.json` plus shard files `<split>-<fingerprint12>-<nnnnn>.bin`.
 * Only shards listed in the manifest are trusted; anything else (temp files `*.tmp-<pid>-<hex>`
 * of an interrupted run, shards of an older run) is ignored and cleaned up by the next `prepare`.
 *
 * Shard layout (all integers little-endian), a 128-byte header then the tokens:
 *
 * | offset | bytes | field |
 * |---|---|---|
 * | 0 | 8 | magic `PLMSHARD` |
 * | 8 | 4 | format version (1) |
 * | 12 | 4 | header length in bytes (128) |
 * | 16 | 4 | bytes per token: 2 (uint16) or 4 (uint32) |
 * | 20 | 4 | tokenizer vocab size |
 * | 24 | 8 | token count |
 * | 32 | 16 | split name, ASCII, NUL-padded |
 * | 48 | 64 | tokenizer hash (hex sha256), ASCII, NUL-padded |
 * | 112 | 16 | reserved, zero |
 * | 128 | count·bytes | token ids |
 *
 * The token stream of a split is its shards in manifest order; each document contributes
 * `[BOS]? tokens EOS` (see `Prepare`).
 */
import { Effect, Either, Schema, Scope } from "effect";
import { Numbers } from "@patchlm/core";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { endianness } from "node:os";
import * as path from "node:path";
import { ShardError } from "./Errors";
import { describeFsError, isNotFound } from "./internal/files";
import { HandleCache } from "./internal/HandleCache";
import { SplitName } from "./Split";

export const magic = "PLMSHARD";
export const formatVersion = 1;
export const headerBytes = 128;
export const manifestFile = "manifest.json";

export const Dtype = Schema.Literal("uint16", "uint32");
export type Dtype = typeof Dtype.Type;

/** uint16 while every id fits (vocab ≤ 65,536), else uint32. */
export const dtypeFor = (vocabSize: number): Dtype => (vocabSize <= 65536 ? "uint16" : "uint32");
export const bytesPerToken = (d: Dtype): 2 | 4 => (d === "uint16" ? 2 : 4);

export interface Header {
  readonly version: number;
  readonly dtype: Dtype;
  readonly vocabSize: number;
  readonly tokens: number;
  readonly split: string;
  readonly tokenizerHash: string;
}

const ascii = (s: string, width: number, what: string): Uint8Array => {
  const b = Buffer.from(s, "ascii");
  if (b.length > width || /[^\x20-\x7e]/.test(s)) throw new Error(`shard header: ${what} "${s}" is not ASCII of at most ${width} bytes`);
  return b;
};

/** The 128-byte header of a shard. */
export const encodeHeader = (h: Header): Uint8Array => {
  const out = new Uint8Array(headerBytes);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(magic, "ascii"), 0);
  v.setUint32(8, h.version, true);
  v.setUint32(12, headerBytes, true);
  v.setUint32(16, bytesPerToken(h.dtype), true);
  v.setUint32(20, h.vocabSize, true);
  v.setBigUint64(24, BigInt(h.tokens), true);
  out.set(ascii(h.split, 16, "split"), 32);
  out.set(ascii(h.tokenizerHash, 64, "tokenizer hash"), 48);
  return out;
};

const asciiField = (b: Uint8Array, from: number, width: number): string => {
  const end = b.subarray(from, from + width).indexOf(0);
  return Buffer.from(b.subarray(from, end < 0 ? from + width : from + end)).toString("ascii");
};

/**
 * Parse and check a shard header against the file's size. Errors name the file and say what was
 * expected; a size that disagrees with the header's token count is `Truncated`/`TrailingBytes`.
 */
export const decodeHeader = (file: string, bytes: Uint8Array, fileSize: number): Either.Either<Header, ShardError> => {
  const fail = (reason: ShardError["reason"], detail: string) => Either.left(new ShardError({ path: file, reason, detail }));
  if (bytes.length < magic.length || Buffer.from(bytes.subarray(0, magic.length)).toString("latin1") !== magic) {
    return fail("BadMagic", `expected a patchlm token shard starting with "${magic}", found ${JSON.stringify(Buffer.from(bytes.subarray(0, 8)).toString("latin1"))}`);
  }
  if (bytes.length < headerBytes) return fail("BadHeader", `expected a ${headerBytes}-byte header, the file has ${fileSize} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, headerBytes);
  const version = v.getUint32(8, true);
  if (version !== formatVersion) return fail("UnsupportedVersion", `format version ${version}; this build reads version ${formatVersion}`);
  const hlen = v.getUint32(12, true);
  if (hlen !== headerBytes) return fail("BadHeader", `header length ${hlen}, expected ${headerBytes}`);
  const bpt = v.getUint32(16, true);
  if (bpt !== 2 && bpt !== 4) return fail("BadHeader", `${bpt} bytes per token, expected 2 (uint16) or 4 (uint32)`);
  const tokens = Number(v.getBigUint64(24, true));
  const expected = headerBytes + tokens * bpt;
  if (fileSize < expected) {
    return fail("Truncated", `header says ${tokens} tokens (${expected} bytes) but the file has ${fileSize} bytes`);
  }
  if (fileSize > expected) {
    return fail("TrailingBytes", `header says ${tokens} tokens (${expected} bytes) but the file has ${fileSize} bytes`);
  }
  return Either.right({
    version,
    dtype: bpt === 2 ? "uint16" : "uint32",
    vocabSize: v.getUint32(20, true),
    tokens,
    split: asciiField(bytes, 32, 16),
    tokenizerHash: asciiField(bytes, 48, 64),
  });
};

// ---------------------------------------------------------------------------------------------
// Manifest

const { NonNegativeInt } = Numbers;

export const ShardEntry = Schema.Struct({
  file: Schema.String,
  tokens: NonNegativeInt,
  bytes: NonNegativeInt,
  /** sha256 of the token payload (the bytes after the header). */
  payloadSha256: Schema.String,
});
export type ShardEntry = typeof ShardEntry.Type;

export const SplitEntry = Schema.Struct({
  documents: NonNegativeInt,
  tokens: NonNegativeInt,
  shards: Schema.Array(ShardEntry),
});
export type SplitEntry = typeof SplitEntry.Type;

export const TokenizerEntry = Schema.Struct({
  name: Schema.String,
  hash: Schema.String,
  vocabSize: NonNegativeInt,
  special: Schema.Struct({ bos: NonNegativeInt, eos: NonNegativeInt, pad: NonNegativeInt }),
});

/** How documents were laid out and split; part of the fingerprint. */
export const Layout = Schema.Struct({
  bos: Schema.Boolean,
  recordWords: NonNegativeInt,
  validationFraction: Schema.Number,
  seed: Schema.Int,
  shardTokens: NonNegativeInt,
  /** Document order inside each split: seeded random (`shuffled`) or as the corpus lists them. */
  order: Schema.optional(Schema.Literal("shuffled", "corpus")),
  /** How validation documents are drawn: per folder of the source (`Split`'s strata). */
  split: Schema.optional(Schema.Literal("stratified")),
});
export type Layout = typeof Layout.Type;

export const Manifest = Schema.Struct({
  format: Schema.Literal("patchlm-token-shards"),
  version: Schema.Literal(formatVersion),
  /** sha256 of inputsHash + tokenizer hash + layout: equal fingerprints mean nothing to redo. */
  fingerprint: Schema.String,
  /** `Corpus.contentHash` of the input files. */
  inputsHash: Schema.String,
  source: Schema.Struct({ description: Schema.String, files: NonNegativeInt, bytes: NonNegativeInt }),
  tokenizer: TokenizerEntry,
  dtype: Dtype,
  layout: Layout,
  splits: Schema.Struct({ train: SplitEntry, validation: SplitEntry }),
});
export type Manifest = typeof Manifest.Type;

/** Read and validate `manifest.json` of a prepared directory. */
export const readManifest = Effect.fn("Shards.readManifest")(function* (dir: string) {
  const file = path.join(path.resolve(dir), manifestFile);
  const raw = yield* Effect.tryPromise({
    try: () => fsp.readFile(file, "utf8"),
    catch: (e) =>
      new ShardError({
        path: file,
        reason: isNotFound(e) ? "NoManifest" : "Unreadable",
        detail: isNotFound(e) ? "no manifest; run prepare on a corpus to create this directory" : describeFsError(e),
      }),
  });
  const json = yield* Effect.try({
    try: () => JSON.parse(raw) as unknown,
    catch: (e) => new ShardError({ path: file, reason: "BadManifest", detail: `not JSON: ${String(e)}` }),
  });
  return yield* Schema.decodeUnknown(Manifest, { errors: "all", onExcessProperty: "error" })(json).pipe(
    Effect.mapError((e) => new ShardError({ path: file, reason: "BadManifest", detail: e.message })),
  );
});

// ---------------------------------------------------------------------------------------------
// Checking shards

/** What a shard's header must say, from the manifest. */
export interface Expected {
  readonly split: SplitName;
  readonly dtype: Dtype;
  readonly tokens: number;
  readonly tokenizerHash: string;
  /** Names the configured tokenizer in mismatch messages. */
  readonly tokenizerName: string;
}

const readHead = (file: string) =>
  Effect.tryPromise({
    try: async () => {
      const h = await fsp.open(file, "r");
      try {
        const size = (await h.stat()).size;
        const buf = new Uint8Array(Math.min(size, headerBytes));
        await h.read(buf, 0, buf.length, 0);
        return { size, buf };
      } finally {
        await h.close();
      }
    },
    catch: (e) =>
      new ShardError({
        path: file,
        reason: isNotFound(e) ? "MissingShard" : "Unreadable",
        detail: isNotFound(e) ? "listed in the manifest but missing; run prepare again" : describeFsError(e),
      }),
  });

/** Check one shard's header and size against what the manifest says. Reads 128 bytes. */
export const checkShard = Effect.fn("Shards.checkShard")(function* (file: string, expected: Expected) {
  const { size, buf } = yield* readHead(file);
  const h = yield* decodeHeader(file, buf, size);
  if (h.tokenizerHash !== expected.tokenizerHash) {
    return yield* new ShardError({
      path: file,
      reason: "TokenizerMismatch",
      detail: `shard was made by a tokenizer with hash ${h.tokenizerHash}; the configured tokenizer "${expected.tokenizerName}" has hash ${expected.tokenizerHash}`,
    });
  }
  const problems = [
    h.split !== expected.split ? `split "${h.split}" (manifest: "${expected.split}")` : "",
    h.dtype !== expected.dtype ? `dtype ${h.dtype} (manifest: ${expected.dtype})` : "",
    h.tokens !== expected.tokens ? `${h.tokens} tokens (manifest: ${expected.tokens})` : "",
  ].filter((s) => s !== "");
  if (problems.length > 0) {
    return yield* new ShardError({ path: file, reason: "BadHeader", detail: `header disagrees with the manifest: ${problems.join(", ")}` });
  }
  return h;
});

const expectedFor = (m: Manifest, split: SplitName, shard: ShardEntry, tokenizer: { name: string; hash: string }): Expected => ({
  split,
  dtype: m.dtype,
  tokens: shard.tokens,
  tokenizerHash: tokenizer.hash,
  tokenizerName: tokenizer.name,
});

/** The configured tokenizer must be the one the manifest was made with. */
const checkTokenizer = (dir: string, m: Manifest, tokenizer: { name: string; hash: string }) =>
  m.tokenizer.hash === tokenizer.hash
    ? Effect.void
    : new ShardError({
        path: path.join(dir, manifestFile),
        reason: "TokenizerMismatch",
        detail:
          `shards were made by tokenizer "${m.tokenizer.name}" (hash ${m.tokenizer.hash}); ` +
          `the configured tokenizer "${tokenizer.name}" has hash ${tokenizer.hash}`,
      });

/** Check every shard of every split (headers and sizes only). */
export const checkAll = Effect.fn("Shards.checkAll")(function* (dir: string, m: Manifest, tokenizer: { name: string; hash: string }) {
  yield* checkTokenizer(dir, m, tokenizer);
  for (const split of ["train", "validation"] as const) {
    for (const s of m.splits[split].shards) yield* checkShard(path.join(dir, s.file), expectedFor(m, split, s, tokenizer));
  }
});

/**
 * Recompute every shard's payload sha256 and compare with the manifest (reads everything; for an
 * explicit integrity check, not for every open).
 */
export const verify = Effect.fn("Shards.verify")(function* (dir: string) {
  const m = yield* readManifest(dir);
  const root = path.resolve(dir);
  yield* checkAll(root, m, m.tokenizer);
  for (const split of ["train", "validation"] as const) {
    for (const s of m.splits[split].shards) {
      const file = path.join(root, s.file);
      const digest = yield* Effect.tryPromise({
        try: async () => {
          const h = createHash("sha256");
          for await (const chunk of fs.createReadStream(file, { start: headerBytes, highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
          return h.digest("hex");
        },
        catch: (e) => new ShardError({ path: file, reason: "Unreadable", detail: describeFsError(e) }),
      });
      if (digest !== s.payloadSha256) {
        return yield* new ShardError({
          path: file,
          reason: "ChecksumMismatch",
          detail: `payload sha256 ${digest} differs from the manifest's ${s.payloadSha256}; the shard was modified`,
        });
      }
    }
  }
  return m;
});

// ---------------------------------------------------------------------------------------------
// Random access

/** One shard of an opened split; `start` is the offset of its first token in the split's stream. */
export interface ShardInfo {
  readonly path: string;
  readonly tokens: number;
  readonly start: number;
}

/** The token stream of one split, readable at any offset. Valid within the Scope it was opened in. */
export interface Dataset {
  readonly dir: string;
  readonly split: SplitName;
  readonly manifest: Manifest;
  /** Tokens in the split. */
  readonly tokens: number;
  readonly shards: ReadonlyArray<ShardInfo>;
  /** Tokens [start, start + length) of the split's stream, across shard boundaries. */
  readonly read: (start: number, length: number) => Effect.Effect<Int32Array, ShardError>;
}

export interface OpenOptions {
  /** Most shard files held open at once. Default 16. */
  readonly maxOpenFiles?: number;
}

/**
 * Open one split of a prepared directory for reading. Checks the manifest, that the configured
 * tokenizer made it, and every shard's header and size; loads no token data.
 */
export const open = Effect.fn("Shards.open")(function* (
  dir: string,
  split: SplitName,
  tokenizer: { readonly name: string; readonly hash: string },
  options: OpenOptions = {},
) {
  if (endianness() !== "LE") return yield* Effect.dieMessage("token shards are little-endian; this host is big-endian");
  const root = path.resolve(dir);
  const manifest = yield* readManifest(root);
  yield* checkTokenizer(root, manifest, tokenizer);
  const shards: Array<ShardInfo> = [];
  let start = 0;
  for (const s of manifest.splits[split].shards) {
    const file = path.join(root, s.file);
    yield* checkShard(file, expectedFor(manifest, split, s, tokenizer));
    shards.push({ path: file, tokens: s.tokens, start });
    start += s.tokens;
  }
  const cache = new HandleCache(options.maxOpenFiles ?? 16);
  yield* Effect.addFinalizer(() => Effect.promise(() => cache.closeAll()));
  const bpt = bytesPerToken(manifest.dtype);

  /** Index of the shard holding token `t` (binary search over starts). */
  const shardAt = (t: number): number => {
    let lo = 0;
    let hi = shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (shards[mid].start <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };

  // Every id read is checked against the vocabulary: a damaged shard must fail here, naming the
  // file and offset, not later inside the model's embedding lookup.
  const vocab = manifest.tokenizer.vocabSize;
  const outOfVocabulary = (file: string, ids: Uint16Array | Uint32Array, firstToken: number): ShardError | undefined => {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < vocab) continue;
      const at = firstToken + i;
      return new ShardError({
        path: file,
        reason: "BadToken",
        detail: `id ${ids[i]} at token ${at} (byte ${headerBytes + at * bpt}) is outside the tokenizer's vocabulary of ${vocab} ids; the shard is damaged, run prepare again`,
      });
    }
    return undefined;
  };

  const read = (from: number, length: number): Effect.Effect<Int32Array, ShardError> => {
    if (!Number.isInteger(from) || !Number.isInteger(length) || from < 0 || length < 0 || from + length > start) {
      return Effect.dieMessage(`Shards.read: range [${from}, ${from + length}) outside the ${start} tokens of split ${split}`);
    }
    let current = "";
    return Effect.tryPromise({
      try: async () => {
        const out = new Int32Array(length);
        let done = 0;
        for (let i = shardAt(from); done < length; i++) {
          const s = shards[i];
          current = s.path;
          const offset = from + done - s.start;
          const n = Math.min(length - done, s.tokens - offset);
          const bytes = new Uint8Array(n * bpt);
          await cache.use(s.path, async (h) => {
            let got = 0;
            while (got < bytes.length) {
              const r = await h.read(bytes, got, bytes.length - got, headerBytes + offset * bpt + got);
              if (r.bytesRead === 0) throw new Error(`unexpected end of file at byte ${headerBytes + offset * bpt + got}`);
              got += r.bytesRead;
            }
          });
          const ids = bpt === 2 ? new Uint16Array(bytes.buffer, 0, n) : new Uint32Array(bytes.buffer, 0, n);
          const bad = outOfVocabulary(s.path, ids, offset);
          if (bad !== undefined) throw bad;
          out.set(ids, done);
          done += n;
        }
        return out;
      },
      catch: (e) => (e instanceof ShardError ? e : new ShardError({ path: current || root, reason: "Unreadable", detail: describeFsError(e) })),
    });
  };

  const dataset: Dataset = { dir: root, split, manifest, tokens: start, shards, read };
  return dataset;
}) satisfies (...args: never[]) => Effect.Effect<Dataset, ShardError, Scope.Scope>;
