export * as AtomicFile from "./AtomicFile";
export * as Backend from "./Backend";
export * as Config from "./Config";
export * as Numbers from "./Numbers";
export { type ParamSpec, paramCount, paramSize } from "./ParamSpec";
export { ConfigError, FileError, fileErrorFrom } from "./Errors";
export { int, mulberry32, type Rng, shuffle, uniformFloats } from "./Rng";
