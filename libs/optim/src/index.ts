export * as AdamW from "./AdamW";
export * as Gradients from "./Gradients";
