import { Effect, Exit, Scope } from "effect";
import { runTest } from "@patchlm/testing";

/**
 * Acquire a scoped resource (a tokenizer with its worker threads) once for a test file: call in
 * `beforeAll`, and `release` in `afterAll` terminates the workers.
 */
export const acquire = async <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => {
  const scope = Effect.runSync(Scope.make());
  const value = await runTest(Scope.extend(effect, scope));
  return { value, release: () => Effect.runPromise(Scope.close(scope, Exit.void)) };
};
