/**
 * Patch transforms: token ids (B, K·T) -> patch groups (B,T,K) and next-patch targets (B,T−1,K);
 * patch i sits at position i, not i·K (docs/method.md §1.3, §8 TV3): the decoder runs over the T
 * patches at positions 0..T−1.
 *
 * Patches are K contiguous, non-overlapping tokens starting at token 0 of each sequence, with no
 * regard for document or word boundaries (docs/method.md §1.1). The output at patch j is scored
 * against the K tokens of patch j+1: patch 0's tokens are never targets and the last patch's
 * output is unscored, so a sequence of K·T tokens scores K·(T−1) targets (docs/method.md §2.2,
 * §8 TV1).
 * The official code's `logits[..., :-1, :]` against `labels[..., K:]` (modeling_llama.py:1060-1061).
 */
import * as tf from "@tensorflow/tfjs-core";
import { Either, Schema } from "effect";

/**
 * A sequence length that does not split into whole patches. The official code has no padding
 * and no truncation (docs/method.md §1.2), so neither does this: the data must come in K·T-token
 * sequences.
 */
export class PatchError extends Schema.TaggedError<PatchError>()("PatchError", {
  reason: Schema.Literal("LengthNotDivisible"),
  length: Schema.Number,
  patchSize: Schema.Number,
}) {
  override get message(): string {
    return (
      `sequence length ${this.length} is not a multiple of the patch size K = ${this.patchSize}: ` +
      `patch training needs sequences of K·T tokens (nothing is padded or dropped)`
    );
  }
}

/** T = L / K, or a PatchError when L % K ≠ 0 (TV2). */
export const patchCount = (length: number, K: number): Either.Either<number, PatchError> => {
  if (!Number.isInteger(K) || K < 1) throw new Error(`patch size K must be a positive integer, got ${K}`);
  return length % K === 0 ? Either.right(length / K) : Either.left(new PatchError({ reason: "LengthNotDivisible", length, patchSize: K }));
};

const patchCountOrThrow = (ids: tf.Tensor2D, K: number): number =>
  Either.getOrThrowWith(patchCount(ids.shape[1], K), (e) => e);

/** (B,T,K) <- ids (B, K·T). Throws the PatchError when K does not divide the length. */
export const groupIds = (ids: tf.Tensor2D, K: number): tf.Tensor3D => {
  const T = patchCountOrThrow(ids, K);
  return tf.reshape(ids, [ids.shape[0], T, K]);
};

/** (B,T−1,K) <- ids (B, K·T): the next-patch targets, `ids[:, K:]`. Throws the PatchError when K does not divide the length. */
export const nextPatchTargets = (ids: tf.Tensor2D, K: number): tf.Tensor3D => {
  const T = patchCountOrThrow(ids, K);
  const [B, L] = ids.shape;
  return tf.tidy(() => tf.reshape(tf.slice(ids, [0, K], [B, L - K]), [B, T - 1, K]));
};
