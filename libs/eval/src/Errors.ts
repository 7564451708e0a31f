import { Schema } from "effect";

/**
 * A task file that cannot be used: missing, unreadable, a line that is not JSON or lacks a field
 * of its format, or no usable example at all. `line` is 1-based (0 when the problem is the whole
 * file).
 */
export class TaskError extends Schema.TaggedError<TaskError>()("TaskError", {
  path: Schema.String,
  line: Schema.Number,
  reason: Schema.Literal("NotFound", "Unreadable", "NotUtf8", "MalformedJson", "MissingField", "BadField", "Empty", "UnknownFormat"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}${this.line > 0 ? `:${this.line}` : ""}: ${this.reason}: ${this.detail}`;
  }
}

/**
 * A tokenizer that is not the one a checkpoint (or token shards) was made with. `differences`
 * lists every fact that differs (hash, name, vocabulary size), one entry each.
 */
export class TokenizerMismatch extends Schema.TaggedError<TokenizerMismatch>()("TokenizerMismatch", {
  path: Schema.String,
  differences: Schema.Array(Schema.String),
}) {
  override get message(): string {
    return `${this.path}: the tokenizer does not match:\n  - ${this.differences.join("\n  - ")}`;
  }
}

/**
 * Run directories or evaluation inputs that a report or conversion cannot use. `Exists`: an output
 * directory already holds something a conversion would overwrite.
 */
export class EvalInputError extends Schema.TaggedError<EvalInputError>()("EvalInputError", {
  path: Schema.String,
  reason: Schema.Literal("NotFound", "Unreadable", "Malformed", "Empty", "Unsupported", "Unwritable", "Exists"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}
