import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Effect } from "effect";
import { FileError } from "@patchlm/core";

/**
 * Write a file atomically: write a temporary file next to it, then rename. A reader (or a run
 * after a crash) sees the old file or the new one, never half of one.
 */
export const writeFileAtomic = (file: string, content: string | Uint8Array): Effect.Effect<void, FileError> =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(path.dirname(file), { recursive: true });
      const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
      try {
        await fs.writeFile(temp, content);
        await fs.rename(temp, file);
      } catch (error) {
        await fs.rm(temp, { force: true });
        throw error;
      }
    },
    catch: (error) => new FileError({ path: file, reason: "Unwritable", detail: describe(error) }),
  });

/** Read a whole file; a missing file is `NotFound`, any other failure `Unreadable`. */
export const readFileBytes = (file: string): Effect.Effect<Uint8Array, FileError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: (error) =>
      new FileError({
        path: file,
        reason: errorCode(error) === "ENOENT" ? "NotFound" : "Unreadable",
        detail: describe(error),
      }),
  });

export const errorCode = (error: unknown): string | undefined =>
  error !== null && typeof error === "object" && "code" in error ? String(error.code) : undefined;

export const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));
