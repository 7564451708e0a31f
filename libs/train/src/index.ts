export * as RunConfig from "./RunConfig";
export * as ConfigFile from "./ConfigFile";
export * as Setup from "./Setup";
export * as RunFiles from "./RunFiles";
