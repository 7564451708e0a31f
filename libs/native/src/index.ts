export * as NativeBackend from "./NativeBackend";
export * as Composite from "./Composite";
