import { Effect, Scope } from "effect";
import { createHash, type Hash } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { WriteError } from "../Errors";
import { bytesPerToken, type Dtype, encodeHeader, formatVersion, headerBytes, type ShardEntry } from "../Shards";
import type { SplitName } from "../Split";
import { AtomicFile } from "@patchlm/core";
import { commitTemp, describeFsError, removeQuietly } from "./files";

export interface WriterOptions {
  readonly dir: string;
  readonly split: SplitName;
  /** Distinguishes this run's shards from an older run's in the same directory. */
  readonly prefix: string;
  readonly dtype: Dtype;
  readonly vocabSize: number;
  readonly tokenizerHash: string;
  readonly shardTokens: number;
}

export interface ShardWriter {
  /** Append token ids to the split's stream, starting new shards as they fill. */
  readonly append: (ids: ArrayLike<number>) => Effect.Effect<void, WriteError>;
  /** Close the last shard and list every shard written, in order. */
  readonly finish: Effect.Effect<ReadonlyArray<ShardEntry>, WriteError>;
}

export const shardFileName = (split: SplitName, prefix: string, index: number): string =>
  `${split}-${prefix}-${String(index).padStart(5, "0")}.bin`;

interface OpenShard {
  readonly file: string;
  readonly temp: string;
  readonly handle: fsp.FileHandle;
  readonly hash: Hash;
  tokens: number;
}

/** Tokens staged in memory before a write call: 1 Mi tokens, so syscalls stay few and memory bounded. */
const stagingTokens = 1 << 20;

/**
 * Writes one split's shards. Each shard is a temp file (header placeholder, then tokens appended),
 * completed by writing the real header, fsync, and an atomic rename. If the scope closes before
 * `finish` (failure, interruption), the open temp file is deleted; a hard crash leaves a temp
 * file, which no reader trusts and the next `prepare` deletes.
 */
export const make = (o: WriterOptions): Effect.Effect<ShardWriter, never, Scope.Scope> =>
  Effect.gen(function* () {
    const bpt = bytesPerToken(o.dtype);
    const staging = o.dtype === "uint16" ? new Uint16Array(stagingTokens) : new Uint32Array(stagingTokens);
    const stagingBytes = new Uint8Array(staging.buffer);
    let staged = 0;
    let current: OpenShard | undefined;
    const written: Array<ShardEntry> = [];

    const fail = (file: string) => (e: unknown) => new WriteError({ path: file, detail: describeFsError(e) });

    const openShard = Effect.tryPromise({
      try: async (): Promise<OpenShard> => {
        const file = path.join(o.dir, shardFileName(o.split, o.prefix, written.length));
        const temp = AtomicFile.tempPathFor(file);
        const handle = await fsp.open(temp, "wx");
        try {
          await handle.write(new Uint8Array(headerBytes), 0, headerBytes, 0);
        } catch (e) {
          // Not yet `current`, so the scope's finalizer would not close it.
          await handle.close().catch(() => undefined);
          await fsp.rm(temp, { force: true });
          throw e;
        }
        return { file, temp, handle, hash: createHash("sha256"), tokens: 0 };
      },
      catch: fail(path.join(o.dir, shardFileName(o.split, o.prefix, written.length))),
    });

    const flush = (s: OpenShard): Effect.Effect<void, WriteError> => {
      if (staged === 0) return Effect.void;
      const bytes = stagingBytes.subarray(0, staged * bpt);
      return Effect.tryPromise({
        try: async () => {
          s.hash.update(bytes);
          await s.handle.write(bytes, 0, bytes.length, headerBytes + s.tokens * bpt);
          s.tokens += staged;
          staged = 0;
        },
        catch: fail(s.temp),
      });
    };

    const close = (s: OpenShard): Effect.Effect<void, WriteError> =>
      flush(s).pipe(
        Effect.zipRight(
          Effect.tryPromise({
            try: async () => {
              const header = encodeHeader({
                version: formatVersion,
                dtype: o.dtype,
                vocabSize: o.vocabSize,
                tokens: s.tokens,
                split: o.split,
                tokenizerHash: o.tokenizerHash,
              });
              await s.handle.write(header, 0, headerBytes, 0);
              await s.handle.sync();
              await s.handle.close();
            },
            catch: fail(s.temp),
          }),
        ),
        Effect.zipRight(commitTemp(s.temp, s.file)),
        Effect.tap(() =>
          Effect.sync(() => {
            written.push({
              file: path.basename(s.file),
              tokens: s.tokens,
              bytes: headerBytes + s.tokens * bpt,
              payloadSha256: s.hash.digest("hex"),
            });
            current = undefined;
          }),
        ),
        Effect.tap(() => Effect.logInfo("prepare: shard written").pipe(Effect.annotateLogs({ file: s.file, tokens: s.tokens }))),
      );

    yield* Effect.addFinalizer(() =>
      current === undefined
        ? Effect.void
        : Effect.promise(() => current!.handle.close().catch(() => undefined)).pipe(Effect.zipRight(removeQuietly(current.temp))),
    );

    const append = (ids: ArrayLike<number>): Effect.Effect<void, WriteError> =>
      Effect.gen(function* () {
        let i = 0;
        while (i < ids.length) {
          if (current === undefined) current = yield* openShard;
          const s = current;
          const room = Math.min(o.shardTokens - s.tokens - staged, stagingTokens - staged);
          const n = Math.min(room, ids.length - i);
          for (let k = 0; k < n; k++) {
            const id = ids[i + k];
            // A wrapped id would silently corrupt the data; an id out of range is a tokenizer bug.
            if (!(id >= 0 && id < o.vocabSize)) {
              return yield* Effect.dieMessage(`token id ${id} outside the vocabulary [0, ${o.vocabSize}) of the tokenizer`);
            }
            staging[staged + k] = id;
          }
          staged += n;
          i += n;
          if (s.tokens + staged === o.shardTokens) yield* close(s);
          else if (staged === stagingTokens) yield* flush(s);
        }
      });

    const finish = Effect.suspend(() => (current === undefined ? Effect.void : close(current))).pipe(
      Effect.map(() => written as ReadonlyArray<ShardEntry>),
    );

    return { append, finish };
  });
