export * as NativeBackend from "./NativeBackend";
export * as Composite from "./Composite";
/**
 * The fused ops live in @patchlm/fused (backend-independent); this lib only implements their
 * kernels for `native`. Re-exported for callers that imported them from here.
 */
export { Fused } from "@patchlm/fused";
