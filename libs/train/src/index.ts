export * as RunConfig from "./RunConfig";
export * as ConfigFile from "./ConfigFile";
