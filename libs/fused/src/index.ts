export * as Fused from "./Fused";
