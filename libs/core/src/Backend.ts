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

/**
 * The precision of matmuls: `fp32`, or `bf16` mixed precision (operands rounded to bf16, products
 * summed in fp32; weights, gradients, optimizer state, norms, softmax and losses stay fp32). bf16
 * runs on the native backend on CPUs with AVX512_BF16.
 */
export const Precision = Schema.Literal("fp32", "bf16");
export type Precision = typeof Precision.Type;
