import { FileSystem } from "@effect/platform";
import { Effect } from "effect";
import { fileErrorFrom } from "@patchlm/core";

/** A platform I/O failure as the project's FileError, naming the path and what was being done. */
export const fileError = fileErrorFrom;

/**
 * Write `parts` to a new file at `path` and fsync it before closing, so a later rename publishes
 * complete bytes even after a power loss.
 */
export const writeSynced = (path: string, parts: Iterable<Uint8Array>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(path, { flag: "w" });
        for (const part of parts) yield* file.writeAll(part);
        yield* file.sync;
      }),
    );
  }).pipe(Effect.mapError(fileError(path, "write")));

/** fsync a directory, so renames inside it are durable. */
export const syncDirectory = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    yield* Effect.scoped(Effect.flatMap(fs.open(path, { flag: "r" }), (dir) => dir.sync));
  }).pipe(Effect.mapError(fileError(path, "write")));

/** Read exactly `buffer.length` bytes from the current position, failing on a short file. */
export const readExactly = (file: FileSystem.File, buffer: Uint8Array) =>
  Effect.gen(function* () {
    let done = 0;
    while (done < buffer.length) {
      const n = Number(yield* file.read(buffer.subarray(done)));
      if (n === 0) return false;
      done += n;
    }
    return true;
  });
