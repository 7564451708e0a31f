/**
 * Whole-file writes that a crash cannot tear: the one way patchlm writes a file that someone
 * reads back (configs, manifests, tokenizers, summaries, exports).
 */
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Effect } from "effect";
import { FileError } from "./Errors";

/**
 * A temp file's name beside `file`: the same directory, so the final rename is atomic on one
 * file system, and a recognisable suffix (`.tmp-<pid>-<8 hex>`), so a later run can tell an
 * interrupted write's leftovers from real output (`isTempName`).
 */
export const tempPathFor = (file: string): string => `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;

/** Whether a directory entry is a `tempPathFor` leftover. */
export const isTempName = (name: string): boolean => /\.tmp-\d+-[0-9a-f]{8}$/.test(name);

/**
 * Write `content` to `file` atomically: into a new temp file beside it, fsynced, renamed over
 * `file`, then the directory fsynced. A reader, or a run after a crash, sees the old file or the
 * new one, never part of one. Creates the directory when missing. On failure the temp file is
 * removed and the error is a FileError (Unwritable) naming `file`.
 */
export const write = (file: string, content: string | Uint8Array): Effect.Effect<void, FileError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = path.dirname(file);
      await fsp.mkdir(dir, { recursive: true });
      const temp = tempPathFor(file);
      try {
        const handle = await fsp.open(temp, "wx");
        try {
          await handle.writeFile(content);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fsp.rename(temp, file);
      } catch (e) {
        await fsp.rm(temp, { force: true });
        throw e;
      }
      await syncDirectory(dir);
    },
    catch: (e) => new FileError({ path: file, reason: "Unwritable", detail: e instanceof Error ? e.message : String(e) }),
  });

/** fsync a directory, so that a rename inside it survives a crash. */
const syncDirectory = async (dir: string): Promise<void> => {
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
};
