import { Schema } from "effect";

/**
 * A compute backend could not be used. `reason`:
 * - `Unavailable`: an explicitly requested backend is not installed/built here; `detail` says why
 *   and how to enable it.
 * - `UnknownBackend`: a name from config, a flag or `PATCHLM_BACKEND` is not a backend.
 * - `InitFailed`: the backend is present but tfjs could not initialise it.
 * - `BadSetting`: a numeric setting (threads, peak) from options or the environment is invalid.
 */
export class BackendError extends Schema.TaggedError<BackendError>()("BackendError", {
  backend: Schema.String,
  reason: Schema.Literal("Unavailable", "UnknownBackend", "InitFailed", "BadSetting"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `compute backend "${this.backend}": ${this.reason}: ${this.detail}`;
  }
}
