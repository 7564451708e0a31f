export * as NativeBackend from "./NativeBackend";
export * as Composite from "./Composite";
export * as Fused from "./Fused";
