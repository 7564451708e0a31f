import { Schema } from "effect";

/**
 * A corpus source could not be read as documents. `path` names the file or directory, `line` the
 * 1-based line for JSONL problems; `detail` says what was expected.
 */
export class CorpusError extends Schema.TaggedError<CorpusError>()("CorpusError", {
  path: Schema.String,
  reason: Schema.Literal("NotFound", "Empty", "Unreadable", "NotUtf8", "MalformedJson", "MissingField"),
  line: Schema.optional(Schema.Number),
  detail: Schema.String,
}) {
  override get message(): string {
    const where = this.line === undefined ? this.path : `${this.path}:${this.line}`;
    return `${where}: ${this.reason}: ${this.detail}`;
  }
}

/**
 * Prepared token shards (or their manifest) cannot be trusted or read. Nothing is deleted or
 * rewritten when this is raised: the files stay as they are for inspection. `BadToken`: an id in
 * the shard outside its tokenizer's vocabulary (the detail names the offset).
 */
export class ShardError extends Schema.TaggedError<ShardError>()("ShardError", {
  path: Schema.String,
  reason: Schema.Literal(
    "NoManifest",
    "BadManifest",
    "MissingShard",
    "BadMagic",
    "UnsupportedVersion",
    "BadHeader",
    "Truncated",
    "TrailingBytes",
    "TokenizerMismatch",
    "ChecksumMismatch",
    "BadToken",
    "Unreadable",
  ),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}

/** `prepare` could not write its output directory. */
export class WriteError extends Schema.TaggedError<WriteError>()("WriteError", {
  path: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: Unwritable: ${this.detail}`;
  }
}

/**
 * A batch stream cannot be built over the requested data: the split is empty, the token range holds
 * less than one window, or a resume cursor belongs to a different layout. `path` is the shard directory.
 */
export class BatchError extends Schema.TaggedError<BatchError>()("BatchError", {
  path: Schema.String,
  reason: Schema.Literal("EmptySplit", "TooFewTokens", "BadRange", "BadCursor"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}
