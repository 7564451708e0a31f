export * as Model from "./Model";
export * as ParameterTable from "./ParameterTable";
export * as Presets from "./Presets";
export type { Weights, HiddenOptions } from "./Model";
