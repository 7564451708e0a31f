/**
 * Train/validation split by document, never by token offsets inside a document, stratified by
 * where documents come from.
 *
 * Rule: every document gets a score in [0, 1) from sha256(seed, id) and a stratum: the folder of
 * its file inside the source (`stratumOf`; the embedded corpus has two, the books and the
 * speeches). In each stratum, the `validationCount(n, fraction)` documents with the smallest
 * scores form the validation split, the rest train. That is a seeded shuffle followed by "take the
 * first fraction" per stratum, done without holding the documents: only the scores are kept to
 * find each cut-off. Stratifying keeps a small source from missing in validation (or being all of
 * it) by chance, so validation mixes the sources as the corpus does.
 *
 * - The assignment of a document depends only on its id, the seed and its stratum's cut-off, not
 *   on the order of the corpus; adding documents moves few others.
 * - validationCount = round(fraction·n), but at least 1 and at most n−1 when n ≥ 2 and
 *   fraction > 0, so a small stratum still gets a validation document and keeps a training one.
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

/**
 * The stratum of a document id (`Corpus` ids: `<name>#<record>` or `<name>:<line>#<record>`): the
 * folder part of `<name>`, "" for a file at the source's top.
 */
export const stratumOf = (id: string): string => {
  const hash = id.lastIndexOf("#");
  const name = (hash < 0 ? id : id.slice(0, hash)).replace(/:\d+$/, "");
  const slash = name.lastIndexOf("/");
  return slash < 0 ? "" : name.slice(0, slash);
};

/** How many of n documents go to validation for a fraction (see the module comment). */
export const validationCount = (n: number, fraction: number): number => {
  if (fraction <= 0 || n < 2) return 0;
  return Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
};

/** The split decision: in a stratum, documents with score ≤ its cut-off are validation. */
export interface Plan {
  readonly seed: number;
  /** Cut-off score per stratum; a stratum not listed has no validation documents. */
  readonly cutoffs: ReadonlyMap<string, number>;
  readonly validationDocuments: number;
}

/** What the plan needs of one document. */
export interface Scored {
  readonly stratum: string;
  readonly score: number;
}

export const scored = (seed: number, id: string): Scored => ({ stratum: stratumOf(id), score: score(seed, id) });

/** Build the plan from every document's stratum and score (in any order). */
export const plan = (seed: number, documents: Iterable<Scored>, fraction: number): Plan => {
  const byStratum = new Map<string, Array<number>>();
  for (const d of documents) {
    const list = byStratum.get(d.stratum);
    if (list === undefined) byStratum.set(d.stratum, [d.score]);
    else list.push(d.score);
  }
  const cutoffs = new Map<string, number>();
  let validationDocuments = 0;
  for (const [stratum, scores] of byStratum) {
    const k = validationCount(scores.length, fraction);
    if (k === 0) continue;
    cutoffs.set(stratum, Float64Array.from(scores).sort()[k - 1]);
    validationDocuments += k;
  }
  return { seed, cutoffs, validationDocuments };
};

/** Which split a document belongs to under a plan. */
export const assign = (p: Plan, id: string): SplitName => {
  const cutoff = p.cutoffs.get(stratumOf(id));
  return cutoff !== undefined && score(p.seed, id) <= cutoff ? "validation" : "train";
};
