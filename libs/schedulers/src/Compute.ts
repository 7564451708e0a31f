import type { Phase, PhasePlan } from "./PhasePlan";

/**
 * Compute accounting. FLOPs are counted per model position: the model lib knows the FLOPs of one
 * position (forward + backward, e.g. 6N + attention); a patch-phase step processes
 * tokensPerStep / K positions, a token-phase step tokensPerStep positions.
 */

/**
 * Cost of patch-level training relative to token-only training: λ/K + 1 − λ (paper §2,
 * docs/method.md TV11). A compute budget C (token-equivalents) buys D = C / relativeCost raw
 * tokens: C = 56.25B, K = 4, λ = 1/2 reads 90B. `PhasePlan.relativeCost` is the same quantity
 * over a plan's whole (rounded) steps.
 */
export const relativeCost = (K: number, lambda: number): number => lambda / K + 1 - lambda;

/** FLOPs of one model position, the same in both phases or given per phase. */
export type FlopsPerPosition = number | { readonly patch: number; readonly token: number };

const perPosition = (f: FlopsPerPosition, phase: Phase): number => (typeof f === "number" ? f : f[phase]);

/** FLOPs of one optimizer step of `phase`. */
export const flopsPerStep = (plan: PhasePlan, phase: Phase, f: FlopsPerPosition): number =>
  plan[phase].positionsPerStep * perPosition(f, phase);

/** Sum of `perStep(phase)` over the first `steps` global steps (0 ≤ steps ≤ totalSteps). */
const sumOverSteps = (plan: PhasePlan, steps: number, perStep: (phase: Phase) => number): number => {
  checkSteps(plan, steps);
  const inPatch = Math.min(steps, plan.patch.steps);
  return (inPatch > 0 ? inPatch * perStep("patch") : 0) + (steps > inPatch ? (steps - inPatch) * perStep("token") : 0);
};

/** Cumulative FLOPs after the first `steps` global steps (0 ≤ steps ≤ totalSteps). */
export const flopsBefore = (plan: PhasePlan, steps: number, f: FlopsPerPosition): number =>
  sumOverSteps(plan, steps, (phase) => flopsPerStep(plan, phase, f));

const checkSteps = (plan: PhasePlan, steps: number): void => {
  if (!Number.isInteger(steps) || steps < 0 || steps > plan.totalSteps) {
    throw new RangeError(`step count ${steps} is outside 0..${plan.totalSteps}`);
  }
};
