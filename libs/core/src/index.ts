export * as Config from "./Config";
export { ConfigError, FileError } from "./Errors";
