export * as RunConfig from "./RunConfig";
export * as ConfigFile from "./ConfigFile";
export * as Setup from "./Setup";
export * as Step from "./Step";
export * as State from "./State";
export * as Trainer from "./Trainer";
export * as Bench from "./Bench";
export * as Study from "./Study";
