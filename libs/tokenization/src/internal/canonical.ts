import { createHash } from "node:crypto";

/**
 * JSON with object keys sorted at every level and no whitespace: two documents that mean the same
 * (same keys and values, any key order or formatting) give the same bytes. Array order is kept,
 * since it carries meaning (BPE merge ranks).
 */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeys(value));

const sortKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
};

/** Hex sha256 of the canonical JSON of a description: the `hash` of a tokenizer. */
export const descriptionHash = (description: unknown): string =>
  createHash("sha256").update(canonicalJson(description)).digest("hex");
