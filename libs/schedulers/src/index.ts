export * as LrSchedule from "./LrSchedule";
export * as PhasePlan from "./PhasePlan";
export * as Compute from "./Compute";
export type { Phase, PhaseSpec, PhaseState } from "./PhasePlan";
