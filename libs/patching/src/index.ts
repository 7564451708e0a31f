export * as Patches from "./Patches";
export * as PatchStrategy from "./PatchStrategy";
export * as Registry from "./Registry";
export * as Objective from "./Objective";
export * as StrategyModule from "./StrategyModule";
export { StrategyError } from "./Registry";
export { StrategyModuleError } from "./StrategyModule";
