import { PairHeap } from "./maxHeap";

/**
 * The result of BPE training, in trainer symbol ids: ids 0..255 are the single bytes, then one id
 * per new token in the order it was created.
 */
export interface MergeTable {
  /** Byte content of each symbol id. */
  readonly tokens: ReadonlyArray<Uint8Array>;
  /** Merges in rank order: merging `[left, right]` gives the symbol whose bytes are their concatenation. */
  readonly merges: ReadonlyArray<readonly [number, number]>;
  /** True when no pair with at least `minFrequency` occurrences was left before reaching the target. */
  readonly exhausted: boolean;
}

// Pair (left, right) packed into one number; symbol ids stay below 2^21, so keys stay exact doubles.
const SHIFT = 2 ** 21;
const pairKey = (left: number, right: number): number => left * SHIFT + right;

/**
 * Learn byte-level BPE merges from a table of pre-tokenized words and their counts, until
 * `newTokens` new symbols exist.
 *
 * The algorithm is the incremental one of Hugging Face's BpeTrainer (and Sennrich et al.): pair
 * counts are kept for the whole table; each merge rewrites only the words that contain the pair
 * (found through a pair -> words index) and adjusts the counts of the neighbouring pairs; a max-heap
 * with lazy deletion picks the next pair. Ties on count go to the smaller (left, right) symbol id
 * pair, so the result depends only on the word table, never on iteration order.
 *
 * Two merges can produce the same byte string by different routes ("ab"+"c" and "a"+"bc"). Like
 * Hugging Face, both merges are kept and map to one symbol, since `tokenizer.json` keys tokens by
 * string; such a merge adds no new token.
 */
export const learnMerges = (words: ReadonlyMap<string, number>, newTokens: number, minFrequency: number): MergeTable => {
  const encoder = new TextEncoder();
  const tokens: Array<Uint8Array> = [];
  const tokenIds = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    tokens.push(Uint8Array.of(b));
    tokenIds.set(String.fromCharCode(b), b);
  }

  // All words' symbols in one buffer; a word shrinks in place as merges apply.
  const wordList: Array<Uint8Array> = [];
  const counts: Array<number> = [];
  let total = 0;
  for (const [word, count] of words) {
    const bytes = encoder.encode(word);
    if (bytes.length < 2) continue;
    wordList.push(bytes);
    counts.push(count);
    total += bytes.length;
  }
  const nWords = wordList.length;
  const symbols = new Int32Array(total);
  const start = new Int32Array(nWords);
  const length = new Int32Array(nWords);
  const count = Float64Array.from(counts);
  for (let w = 0, at = 0; w < nWords; w++) {
    start[w] = at;
    length[w] = wordList[w].length;
    symbols.set(wordList[w], at);
    at += wordList[w].length;
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Array<number>>();
  const addWord = (key: number, w: number): void => {
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [w]);
    else if (list[list.length - 1] !== w) list.push(w);
  };
  for (let w = 0; w < nWords; w++) {
    for (let i = start[w], end = start[w] + length[w] - 1; i < end; i++) {
      const key = pairKey(symbols[i], symbols[i + 1]);
      pairCount.set(key, (pairCount.get(key) ?? 0) + count[w]);
      addWord(key, w);
    }
  }
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);

  const merges: Array<readonly [number, number]> = [];
  const visited = new Int32Array(nWords).fill(-1);
  const grown = new Set<number>();
  let created = 0;
  let exhausted = false;
  const bump = (left: number, right: number, delta: number): number => {
    const key = pairKey(left, right);
    pairCount.set(key, (pairCount.get(key) ?? 0) + delta);
    return key;
  };

  while (created < newTokens) {
    // Pop until the top entry is current: counts only fall between pushes, except for pairs that
    // contain the newest symbol, which are pushed after each merge.
    let best = -1;
    while (heap.size > 0) {
      const key = heap.topKey();
      const stored = heap.topCount();
      heap.pop();
      const current = pairCount.get(key) ?? 0;
      if (current === stored) {
        best = key;
        break;
      }
      if (current > 0) heap.push(current, key);
    }
    if (best < 0 || (pairCount.get(best) ?? 0) < minFrequency) {
      exhausted = true;
      break;
    }
    const left = Math.floor(best / SHIFT);
    const right = best - left * SHIFT;
    const bytes = new Uint8Array(tokens[left].length + tokens[right].length);
    bytes.set(tokens[left]);
    bytes.set(tokens[right], tokens[left].length);
    const text = String.fromCharCode(...bytes);
    let merged = tokenIds.get(text);
    if (merged === undefined) {
      merged = tokens.length;
      tokens.push(bytes);
      tokenIds.set(text, merged);
      created++;
    }
    merges.push([left, right]);

    const stamp = merges.length;
    grown.clear();
    for (const w of pairWords.get(best) ?? []) {
      if (visited[w] === stamp) continue;
      visited[w] = stamp;
      const c = count[w];
      const s = start[w];
      const end = s + length[w];
      let out = s;
      for (let r = s; r < end; ) {
        if (r + 1 < end && symbols[r] === left && symbols[r + 1] === right) {
          // Same bookkeeping as Hugging Face's Word::merge: the left neighbour is the symbol
          // already written (possibly the merged symbol of an adjacent occurrence).
          if (out > s) {
            const prev = symbols[out - 1];
            bump(prev, left, -c);
            const key = bump(prev, merged, c);
            grown.add(key);
            addWord(key, w);
          }
          if (r + 2 < end) {
            const next = symbols[r + 2];
            bump(right, next, -c);
            const key = bump(merged, next, c);
            grown.add(key);
            addWord(key, w);
          }
          symbols[out++] = merged;
          r += 2;
        } else {
          symbols[out++] = symbols[r++];
        }
      }
      length[w] = out - s;
    }
    pairCount.delete(best);
    pairWords.delete(best);
    for (const key of grown) {
      const c = pairCount.get(key) ?? 0;
      if (c > 0) heap.push(c, key);
      else pairCount.delete(key);
    }
  }
  return { tokens, merges, exhausted };
};
