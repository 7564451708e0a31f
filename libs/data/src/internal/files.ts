import { Effect } from "effect";
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

/** Delete a file if it exists; used for cleanup, where failing to delete must not mask the real error. */
export const removeQuietly = (p: string): Effect.Effect<void> =>
  Effect.promise(() => fsp.rm(p, { force: true }).catch(() => undefined));
