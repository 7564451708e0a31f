import { type Compute, expectMatchesCpu, randomTensor } from "@patchlm/testing";
import { NativeBackend } from "../src";

/**
 * Register `native` for a test file. CI builds the addon (.ci/run installs libopenblas-dev), so
 * there a missing addon is a failure; elsewhere the native suites are skipped with the reason.
 */
export const registration = NativeBackend.register({ threads: 2 });
export const nativeAvailable = registration._tag === "Registered";
if (registration._tag === "Unavailable" && process.env.CI !== undefined) {
  throw new Error(`native addon unavailable in CI: ${registration.reason}`);
}
export const describeNative = nativeAvailable ? describe : describe.skip;

/** `compute` on native against the cpu backend (see `expectMatchesCpu`). */
export const expectNativeMatchesCpu = (label: string, compute: Compute, atol = 1e-4, rtol = 1e-4, reference = compute): Promise<void> =>
  expectMatchesCpu("native", label, compute, { atol, rtol, reference });

export const rand = randomTensor;
