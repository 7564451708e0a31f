/**
 * Train/validation split by document, never by token offsets inside a document.
 *
 * Rule: every document gets a score in [0, 1) from sha256(seed, id). The documents with the
 * `validationCount(n, fraction)` smallest scores form the validation split, the rest train.
 * That is a seeded shuffle followed by "take the first fraction", done without holding the
 * documents: only the n scores are kept to find the cut-off score.
 *
 * - The assignment of a document depends only on its id, the seed and the cut-off, not on the
 *   order of the corpus; adding documents moves few others.
 * - validationCount = round(fraction·n), but at least 1 and at most n−1 when n ≥ 2 and
 *   fraction > 0, so a small corpus still gets a validation document and keeps a training one.
 *   fraction = 0 (or n = 1) gives no validation documents.
 */
import { Schema } from "effect";
import { createHash } from "node:crypto";

export const SplitName = Schema.Literal("train", "validation");
export type SplitName = typeof SplitName.Type;

export const splitNames: ReadonlyArray<SplitName> = ["train", "validation"];

/** A document's score in [0, 1): the first 52 bits of sha256("patchlm-split", seed, id). */
export const score = (seed: number, id: string): number => {
  const d = createHash("sha256").update(`patchlm-split\0${seed}\0${id}`).digest();
  // 52 bits fit a double exactly: 4 bytes, then 20 more bits.
  return (d.readUInt32BE(0) * 2 ** 20 + (d.readUInt32BE(4) >>> 12)) / 2 ** 52;
};

/** How many of n documents go to validation for a fraction (see the module comment). */
export const validationCount = (n: number, fraction: number): number => {
  if (fraction <= 0 || n < 2) return 0;
  return Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
};

/** The split decision: documents with score ≤ `cutoff` are validation; `null` means none are. */
export interface Plan {
  readonly seed: number;
  readonly cutoff: number | null;
  readonly validationDocuments: number;
}

/** Build the plan from every document's score (in any order). */
export const plan = (seed: number, scores: ArrayLike<number>, fraction: number): Plan => {
  const k = validationCount(scores.length, fraction);
  if (k === 0) return { seed, cutoff: null, validationDocuments: 0 };
  const sorted = Float64Array.from(scores).sort();
  return { seed, cutoff: sorted[k - 1], validationDocuments: k };
};

/** Which split a document belongs to under a plan. */
export const assign = (p: Plan, id: string): SplitName =>
  p.cutoff !== null && score(p.seed, id) <= p.cutoff ? "validation" : "train";
