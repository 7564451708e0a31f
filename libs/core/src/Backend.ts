/**
 * The compute backends by name: one list for the run config, the apps' `--backend` flags and
 * `@patchlm/backend`, which implements them (in this order of preference under `auto`).
 */
import { Schema } from "effect";

export const Name = Schema.Literal("tensorflow", "native", "wasm", "cpu");
export type Name = typeof Name.Type;

/** A backend, or `auto`: the best one that loads here. */
export const Choice = Schema.Literal("auto", ...Name.literals);
export type Choice = typeof Choice.Type;
