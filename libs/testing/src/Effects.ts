import { Cause, Effect, Exit, Layer } from "effect";

/**
 * Run an Effect to completion in a jest test. On failure, throw an Error whose message is the
 * pretty-printed Cause, so jest shows the tagged error (and any defect) instead of "FiberFailure".
 */
export const runTest = async <A, E>(effect: Effect.Effect<A, E, never>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect);
  if (Exit.isSuccess(exit)) return exit.value;
  throw new Error(`Effect failed:\n${Cause.pretty(exit.cause)}`);
};

/** Same as `runTest`, providing a layer first. */
export const runTestWith =
  <ROut, E2>(layer: Layer.Layer<ROut, E2, never>) =>
  <A, E>(effect: Effect.Effect<A, E, ROut>): Promise<A> =>
    runTest(Effect.provide(effect, layer));

/**
 * Run an Effect that is expected to fail and return its typed error, so a test can assert on its
 * tag, reason and message. Fails the test if the Effect succeeds or dies.
 */
export const runTestFailure = async <A, E>(effect: Effect.Effect<A, E, never>): Promise<E> => {
  const exit = await Effect.runPromiseExit(effect);
  if (Exit.isSuccess(exit)) throw new Error(`expected failure, got success: ${String(exit.value)}`);
  const failure = Cause.failureOption(exit.cause);
  if (failure._tag === "None") throw new Error(`expected a typed failure, got:\n${Cause.pretty(exit.cause)}`);
  return failure.value;
};
