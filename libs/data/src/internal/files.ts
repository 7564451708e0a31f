import { Effect } from "effect";
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { WriteError } from "../Errors";

/** Error text of a failed fs call, with its code when there is one (ENOENT, EACCES, ...). */
export const describeFsError = (e: unknown): string => {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
};

export const isNotFound = (e: unknown): boolean => (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT";

/**
 * Temp files live next to their final path (so the rename is atomic on one file system) and carry a
 * recognisable suffix, so a later run can tell leftovers of an interrupted run from real output.
 */
export const tempPathFor = (finalPath: string): string =>
  `${finalPath}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;

export const isTempName = (name: string): boolean => /\.tmp-\d+-[0-9a-f]{8}$/.test(name);

const writeFailed = (p: string) => (e: unknown) => new WriteError({ path: p, detail: describeFsError(e) });

/** fsync a directory so a rename inside it survives a crash. */
export const fsyncDir = (dir: string): Effect.Effect<void, WriteError> =>
  Effect.tryPromise({
    try: async () => {
      const h = await fsp.open(dir, "r");
      try {
        await h.sync();
      } finally {
        await h.close();
      }
    },
    catch: writeFailed(dir),
  });

/** Move a finished temp file into place: rename (atomic) then fsync the directory. */
export const commitTemp = (temp: string, finalPath: string): Effect.Effect<void, WriteError> =>
  Effect.tryPromise({ try: () => fsp.rename(temp, finalPath), catch: writeFailed(finalPath) }).pipe(
    Effect.zipRight(fsyncDir(path.dirname(finalPath))),
  );

/** Write a whole file atomically: temp file in the same directory, fsync, rename, fsync the directory. */
export const writeFileAtomic = (finalPath: string, data: string | Uint8Array): Effect.Effect<void, WriteError> => {
  const temp = tempPathFor(finalPath);
  return Effect.tryPromise({
    try: async () => {
      const h = await fsp.open(temp, "wx");
      try {
        await h.writeFile(data);
        await h.sync();
      } finally {
        await h.close();
      }
    },
    catch: writeFailed(finalPath),
  }).pipe(
    Effect.zipRight(commitTemp(temp, finalPath)),
    Effect.tapError(() => removeQuietly(temp)),
  );
};

/** Delete a file if it exists; used for cleanup, where failing to delete must not mask the real error. */
export const removeQuietly = (p: string): Effect.Effect<void> =>
  Effect.promise(() => fsp.rm(p, { force: true }).catch(() => undefined));
