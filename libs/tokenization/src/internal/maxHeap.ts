/**
 * A binary max-heap of (count, key) pairs with a total order: larger count first, then smaller
 * key. The total order makes BPE training deterministic: equal counts never depend on insertion
 * order. Stale entries are allowed; the caller re-checks counts on pop (lazy deletion).
 */
export class PairHeap {
  private counts: Float64Array = new Float64Array(1024);
  private keys: Float64Array = new Float64Array(1024);
  private n = 0;

  get size(): number {
    return this.n;
  }

  push(count: number, key: number): void {
    if (this.n === this.counts.length) this.grow();
    let i = this.n++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(count, key, this.counts[parent], this.keys[parent])) break;
      this.counts[i] = this.counts[parent];
      this.keys[i] = this.keys[parent];
      i = parent;
    }
    this.counts[i] = count;
    this.keys[i] = key;
  }

  /** Count of the top entry; the heap must not be empty. */
  topCount(): number {
    return this.counts[0];
  }

  /** Key of the top entry; the heap must not be empty. */
  topKey(): number {
    return this.keys[0];
  }

  pop(): void {
    const last = --this.n;
    if (last === 0) return;
    const count = this.counts[last];
    const key = this.keys[last];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= last) break;
      if (child + 1 < last && this.before(this.counts[child + 1], this.keys[child + 1], this.counts[child], this.keys[child])) child++;
      if (!this.before(this.counts[child], this.keys[child], count, key)) break;
      this.counts[i] = this.counts[child];
      this.keys[i] = this.keys[child];
      i = child;
    }
    this.counts[i] = count;
    this.keys[i] = key;
  }

  private before(c1: number, k1: number, c2: number, k2: number): boolean {
    return c1 > c2 || (c1 === c2 && k1 < k2);
  }

  private grow(): void {
    const counts = new Float64Array(this.counts.length * 2);
    const keys = new Float64Array(this.keys.length * 2);
    counts.set(this.counts);
    keys.set(this.keys);
    this.counts = counts;
    this.keys = keys;
  }
}
