import * as tf from "@tensorflow/tfjs";

/**
 * Assert that `fn` leaves no tensor behind: `tf.memory().numTensors` after equals before.
 * Awaits async functions, so it also covers code that crosses `await`.
 */
export const expectNoTensorLeak = async <A>(fn: () => A | Promise<A>, label = "expectNoTensorLeak"): Promise<A> => {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`${label}: tensor count went from ${before} to ${after}`);
  return result;
};

/** Use a known backend for a test file (default cpu) and wait until it is ready. */
export const useBackend = async (name = "cpu"): Promise<void> => {
  await tf.setBackend(name);
  await tf.ready();
};
