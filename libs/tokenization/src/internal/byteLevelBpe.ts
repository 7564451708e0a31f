import { gpt2Pattern } from "./preTokenize";

/**
 * A byte-level BPE vocabulary in the compact form the encoder needs. It is plain data (typed
 * arrays), so it crosses to worker threads by structured clone.
 */
export interface EncoderTable {
  /** Token id of each single byte (256 entries). */
  readonly byteIds: Int32Array;
  /** Merges in rank order, flattened as (left id, right id, merged id) triples. */
  readonly merges: Int32Array;
}

// Pair (left, right) packed into one exact double; ids stay below 2^21.
const SHIFT = 2 ** 21;

// Words up to this many bytes merge with the quadratic scan, which is fastest for short words;
// longer ones (a line of 10,000 dashes is one word) use a heap so that cost stays O(n log n).
const SHORT_WORD = 48;
// Cached words: short ones (the long tail of rare long words would only churn the cache).
const CACHE_WORD_CHARS = 64;
const CACHE_ENTRIES = 1 << 18;

/**
 * GPT-2-style byte-level BPE encoding, written to give the same ids as Hugging Face `tokenizers`
 * (`ByteLevel` pre-tokenizer with `use_regex`, BPE model without dropout): split with GPT-2's
 * pattern, turn each piece into its UTF-8 bytes, then repeatedly apply the lowest-ranked merge,
 * leftmost first. A word cache makes natural text several times faster than the Rust binding here
 * (which also builds offsets and token strings for every token).
 *
 * Special tokens are never matched in the text: a text containing "<|eos|>" encodes those
 * characters as ordinary text, so `decode(encode(s)) === s` holds for every string.
 */
export class ByteLevelBpeEncoder {
  private readonly byteIds: Int32Array;
  private readonly ranks = new Map<number, number>();
  private readonly mergedIds: Int32Array;
  private readonly cache = new Map<string, number | Uint32Array>();
  private readonly pattern = new RegExp(gpt2Pattern.source, "uy");
  private readonly encoder = new TextEncoder();
  private scratch = new Uint8Array(1024);

  constructor(table: EncoderTable) {
    this.byteIds = table.byteIds;
    const n = table.merges.length / 3;
    this.mergedIds = new Int32Array(n);
    for (let rank = 0; rank < n; rank++) {
      const key = table.merges[3 * rank] * SHIFT + table.merges[3 * rank + 1];
      // A pair listed twice keeps its last rank, as in both Hugging Face implementations (their
      // merge maps are built by inserting in order).
      this.ranks.set(key, rank);
      this.mergedIds[rank] = table.merges[3 * rank + 2];
    }
  }

  encode(text: string): Uint32Array {
    let out = new Uint32Array(Math.max(16, text.length >> 1));
    let n = 0;
    // Sticky `test` instead of `exec`: no match object per word. The pattern matches at every
    // position (each character is whitespace, a letter, a digit or other), so the words tile the
    // text and each starts where the previous one ended.
    const re = this.pattern;
    re.lastIndex = 0;
    for (let start = 0; start < text.length; start = re.lastIndex) {
      if (!re.test(text)) throw new Error(`pre-tokenizer pattern matched nothing at offset ${start}`);
      const ids = this.encodeWord(text.slice(start, re.lastIndex));
      const count = typeof ids === "number" ? 1 : ids.length;
      if (n + count > out.length) {
        const grown = new Uint32Array(Math.max(out.length * 2, n + count));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      if (typeof ids === "number") out[n++] = ids;
      else {
        out.set(ids, n);
        n += count;
      }
    }
    return out.slice(0, n);
  }

  /** Ids of one pre-token: a number when it is a single token (most words), else an array. */
  private encodeWord(word: string): number | Uint32Array {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    if (this.scratch.length < word.length * 3) this.scratch = new Uint8Array(word.length * 3);
    const { written } = this.encoder.encodeInto(word, this.scratch);
    const symbols = new Array<number>(written);
    for (let i = 0; i < written; i++) symbols[i] = this.byteIds[this.scratch[i]];
    const merged = written <= SHORT_WORD ? this.mergeShort(symbols) : this.mergeLong(symbols);
    const ids = merged.length === 1 ? merged[0] : Uint32Array.from(merged);
    if (word.length <= CACHE_WORD_CHARS) {
      if (this.cache.size >= CACHE_ENTRIES) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  /** Lowest rank first, leftmost among equal ranks: scan all pairs for each merge. */
  private mergeShort(symbols: Array<number>): Array<number> {
    for (;;) {
      let bestRank = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(symbols[i] * SHIFT + symbols[i + 1]);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          at = i;
        }
      }
      if (at < 0) return symbols;
      symbols.splice(at, 2, this.mergedIds[bestRank]);
    }
  }

  /**
   * The same order of merges with a priority queue over (rank, position) and a linked list of
   * symbols, as Hugging Face's `Word::merge_all`. Entries whose pair has changed are skipped.
   */
  private mergeLong(symbols: Array<number>): Array<number> {
    const n = symbols.length;
    const sym = Int32Array.from(symbols);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const queue = new RankQueue();
    const pushPair = (i: number): void => {
      const j = next[i];
      if (j < 0) return;
      const rank = this.ranks.get(sym[i] * SHIFT + sym[j]);
      if (rank !== undefined) queue.push(rank, i, sym[i], sym[j]);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);
    while (queue.size > 0) {
      const { rank, pos, left, right } = queue.pop();
      const j = next[pos];
      if (!alive[pos] || j < 0 || sym[pos] !== left || sym[j] !== right) continue;
      sym[pos] = this.mergedIds[rank];
      alive[j] = 0;
      next[pos] = next[j];
      if (next[j] >= 0) prev[next[j]] = pos;
      if (prev[pos] >= 0) pushPair(prev[pos]);
      pushPair(pos);
    }
    const out: Array<number> = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

/** Min-heap of merge candidates ordered by (rank, position). */
class RankQueue {
  private items: Array<{ rank: number; pos: number; left: number; right: number }> = [];

  get size(): number {
    return this.items.length;
  }

  push(rank: number, pos: number, left: number, right: number): void {
    const items = this.items;
    const item = { rank, pos, left, right };
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(item, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = item;
  }

  pop(): { rank: number; pos: number; left: number; right: number } {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= items.length) break;
        if (child + 1 < items.length && less(items[child + 1], items[child])) child++;
        if (!less(items[child], last)) break;
        items[i] = items[child];
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

const less = (a: { rank: number; pos: number }, b: { rank: number; pos: number }): boolean =>
  a.rank < b.rank || (a.rank === b.rank && a.pos < b.pos);
