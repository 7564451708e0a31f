import * as fs from "node:fs/promises";
import { Effect } from "effect";
import { FileError } from "@patchlm/core";

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
