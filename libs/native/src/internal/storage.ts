import * as tf from "@tensorflow/tfjs-core";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

export type Words = Float32Array | Int32Array;

/** Arrays below this many elements come from V8's heap cheaply; pooling them costs more than it saves. */
const minPooled = 1024;
/** Released arrays kept for reuse, at most (a reference-config step cycles about 300 MB). */
const defaultMaxPooledBytes = 1 << 30;
// A reference-config step holds up to 112 arrays of one size (B·T×C activations and their
// gradients) at its peak; a lower cap makes every step fault in ~100 MB of fresh pages.
const maxPerSize = 512;

/**
 * The cpu backend's storage and kernels under another name, plus a pool of output arrays.
 *
 * Native kernels read and write the same typed arrays as the cpu kernels, so tensors move
 * between `cpu`-inherited and native kernels without copies. A training step allocates hundreds
 * of megabytes of temporaries; fresh large typed arrays are zero-filled pages the kernel then
 * faults in, which costs as much as the arithmetic. So arrays that native kernels allocated are
 * recycled when their tensor is disposed. Only those: arrays handed in by users (tf.tensor of a
 * typed array) are never reused, and readSync (dataSync/data) returns a copy of a pooled array,
 * so no caller ever holds an array that a later kernel overwrites.
 */
export class NativeMathBackend extends MathBackendCPU {
  /** Released arrays by `dtype:length`; a Map keeps its keys in insertion order, which `touch` makes recency order. */
  private readonly pool = new Map<string, Array<Words>>();
  private readonly ours = new WeakSet<Words>();
  private pooledBytes = 0;

  /** `maxPooledBytes`: the most the pool holds (tests use a small one). */
  constructor(private readonly maxPooledBytes = defaultMaxPooledBytes) {
    super();
    // The cpu backend greets its first use in Node with advice to install tfjs-node; here it is
    // not the pure-JS backend that runs.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** An array of n elements for a kernel output: recycled (arbitrary contents) unless `zeroed`. */
  allocate(dtype: "float32" | "int32", n: number, zeroed = false): Words {
    const reused = n >= minPooled ? this.touch(`${dtype}:${n}`)?.pop() : undefined;
    if (reused === undefined) {
      const fresh = dtype === "float32" ? new Float32Array(n) : new Int32Array(n);
      if (n >= minPooled) this.ours.add(fresh);
      return fresh;
    }
    this.pooledBytes -= reused.byteLength;
    if (zeroed) reused.fill(0);
    return reused;
  }

  override disposeData(dataId: object, force = false): boolean {
    const values = this.data.get(dataId)?.values;
    const released = super.disposeData(dataId, force);
    if (released && !this.data.has(dataId) && (values instanceof Float32Array || values instanceof Int32Array) && this.ours.has(values)) {
      this.recycle(values);
    }
    return released;
  }

  /** The pool's list for `key`, moved to the most recently used end. */
  private touch(key: string): Array<Words> | undefined {
    const list = this.pool.get(key);
    if (list !== undefined) {
      this.pool.delete(key);
      this.pool.set(key, list);
    }
    return list;
  }

  /**
   * Keep a released array for reuse. A full pool makes room by dropping the least recently used
   * sizes, not by refusing: the sizes in use must win over those of an earlier run or an
   * evaluation, which would otherwise hold the pool and leave every later step faulting in fresh
   * pages (the demo's second run trained at about half speed).
   */
  private recycle(values: Words): void {
    if (values.byteLength > this.maxPooledBytes) return;
    const key = `${values instanceof Float32Array ? "float32" : "int32"}:${values.length}`;
    const list = this.touch(key) ?? [];
    if (list.length >= maxPerSize) return;
    for (const [other, arrays] of this.pool) {
      if (this.pooledBytes + values.byteLength <= this.maxPooledBytes) break;
      if (other === key) continue;
      for (const a of arrays) this.pooledBytes -= a.byteLength;
      this.pool.delete(other);
    }
    if (this.pooledBytes + values.byteLength > this.maxPooledBytes) return;
    list.push(values);
    this.pool.set(key, list);
    this.pooledBytes += values.byteLength;
  }

  override readSync(dataId: object): tf.backend_util.BackendValues {
    const values = super.readSync(dataId);
    return (values instanceof Float32Array || values instanceof Int32Array) && this.ours.has(values) ? values.slice() : values;
  }

  /** Bytes held for reuse (for leak tests and reports). */
  get pooled(): number {
    return this.pooledBytes;
  }

  override dispose(): void {
    this.pool.clear();
    this.pooledBytes = 0;
    super.dispose();
  }
}
