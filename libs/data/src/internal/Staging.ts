import { Effect, Scope } from "effect";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { WriteError } from "../Errors";
import { AtomicFile } from "@patchlm/core";
import { describeFsError, removeQuietly } from "./files";

/**
 * One split's documents as `prepare` encodes them, in corpus order, parked in a temp file so that
 * they can be written out in another order without holding the tokens in memory. Ids are stored
 * as uint32 whatever the final dtype; only each document's start offset stays in memory.
 */
export interface Staging {
  /** Append one document's ids (its whole layout: BOS?, tokens, EOS). */
  readonly append: (ids: Uint32Array) => Effect.Effect<void, WriteError>;
  /** Documents appended so far. */
  readonly documents: () => number;
  /** The ids of document `i` (0-based, in append order); flushes pending writes first. */
  readonly read: (i: number) => Effect.Effect<Uint32Array, WriteError>;
}

/** Pending ids kept in memory before a write call: 1 Mi ids, so syscalls stay few and memory bounded. */
const bufferIds = 1 << 20;

/** A staging file next to the output, named as a temp file (a crash leaves one the next `prepare` deletes). */
export const make = (dir: string, label: string): Effect.Effect<Staging, WriteError, Scope.Scope> =>
  Effect.gen(function* () {
    const file = AtomicFile.tempPathFor(path.join(dir, `${label}.staging`));
    const fail = (e: unknown) => new WriteError({ path: file, detail: describeFsError(e) });
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fsp.open(file, "wx+"), catch: fail }),
      (h) => Effect.promise(() => h.close().catch(() => undefined)).pipe(Effect.zipRight(removeQuietly(file))),
    );
    // starts[i] is where document i begins, in ids; starts[n] is the end of the last one.
    const starts: Array<number> = [0];
    const pending = new Uint32Array(bufferIds);
    let pendingIds = 0;
    let writtenIds = 0;

    const flush = Effect.suspend(() => {
      if (pendingIds === 0) return Effect.void;
      const bytes = new Uint8Array(pending.buffer, 0, pendingIds * 4);
      return Effect.tryPromise({
        try: async () => {
          await handle.write(bytes, 0, bytes.length, writtenIds * 4);
          writtenIds += pendingIds;
          pendingIds = 0;
        },
        catch: fail,
      });
    });

    const append = (ids: Uint32Array): Effect.Effect<void, WriteError> =>
      Effect.gen(function* () {
        starts.push(starts[starts.length - 1] + ids.length);
        if (ids.length > bufferIds) {
          yield* flush;
          const bytes = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
          yield* Effect.tryPromise({ try: () => handle.write(bytes, 0, bytes.length, writtenIds * 4), catch: fail });
          writtenIds += ids.length;
          return;
        }
        if (pendingIds + ids.length > bufferIds) yield* flush;
        pending.set(ids, pendingIds);
        pendingIds += ids.length;
      });

    const read = (i: number): Effect.Effect<Uint32Array, WriteError> =>
      Effect.zipRight(
        flush,
        Effect.tryPromise({
          try: async () => {
            const out = new Uint32Array(starts[i + 1] - starts[i]);
            const bytes = new Uint8Array(out.buffer);
            let at = 0;
            while (at < bytes.length) {
              const { bytesRead } = await handle.read(bytes, at, bytes.length - at, starts[i] * 4 + at);
              if (bytesRead === 0) throw new Error(`staging file ended at byte ${starts[i] * 4 + at}`);
              at += bytesRead;
            }
            return out;
          },
          catch: fail,
        }),
      );

    return { append, documents: () => starts.length - 1, read };
  });
