import type { PlatformError } from "@effect/platform/Error";
import { FileError } from "@patchlm/core";

/** A platform I/O failure as the project's FileError, naming the path and what was being done. */
export const fileError =
  (path: string, doing: "read" | "write") =>
  (e: PlatformError): FileError =>
    new FileError({
      path,
      reason: e._tag === "SystemError" && e.reason === "NotFound" ? "NotFound" : doing === "read" ? "Unreadable" : "Unwritable",
      detail: e.message,
    });
