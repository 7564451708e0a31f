import { Schema } from "effect";

/**
 * Bad configuration: a config file, a flag or a programmatic config failed validation.
 * `source` names where it came from (a file path, "flags", "code"); `issues` lists every problem
 * at once, each naming its key.
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  source: Schema.String,
  issues: Schema.Array(Schema.String),
}) {
  override get message(): string {
    return `invalid config (${this.source}):\n  - ${this.issues.join("\n  - ")}`;
  }
}

/** A file could not be read or written. `reason` names what happened. */
export class FileError extends Schema.TaggedError<FileError>()("FileError", {
  path: Schema.String,
  reason: Schema.Literal("NotFound", "Unreadable", "Unwritable", "NotUtf8", "Empty", "Malformed"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}

/**
 * A platform I/O failure (`@effect/platform` PlatformError) as a FileError naming the path and
 * what was being done.
 */
export const fileErrorFrom =
  (path: string, doing: "read" | "write") =>
  (e: { readonly _tag: string; readonly reason?: string; readonly message: string }): FileError =>
    new FileError({
      path,
      reason: e._tag === "SystemError" && e.reason === "NotFound" ? "NotFound" : doing === "read" ? "Unreadable" : "Unwritable",
      detail: e.message,
    });
