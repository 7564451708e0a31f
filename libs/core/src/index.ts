export * as Config from "./Config";
export * as Params from "./Params";
export type { ParamSpec } from "./Params";
export { ConfigError, FileError, fileErrorFrom } from "./Errors";
export { int, mulberry32, type Rng, shuffle } from "./Rng";
export { defaultTo, nearestFlag, runCli } from "./Main";
