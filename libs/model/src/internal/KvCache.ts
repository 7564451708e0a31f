import * as tf from "@tensorflow/tfjs-core";

/**
 * Keys and values of the positions decoded so far, one pair per layer, for incremental decoding.
 * Keys are stored pre-transposed as (B,Hkv,D,S) so the score product is a plain batched matMul;
 * values as (B,Hkv,S,D). Each decode step concatenates the new positions and disposes the old
 * tensors: tfjs has no in-place write, so one (B,Hkv,S,D)-sized copy per layer and step is the
 * floor here; a native backend can replace `append` with a write into a preallocated buffer.
 *
 * The cache owns its tensors: `dispose()` frees them. It is for inference: gradients do not flow
 * through cached positions.
 */
export class KvCache {
  private readonly keys: Array<tf.Tensor4D | undefined>;
  private readonly values: Array<tf.Tensor4D | undefined>;
  private filled = 0;

  constructor(
    /** Sequences decoded together (B). */
    readonly batch: number,
    /** Positions the cache may hold (at most the config's contextLength). */
    readonly capacity: number,
    readonly layers: number,
  ) {
    this.keys = new Array(layers).fill(undefined);
    this.values = new Array(layers).fill(undefined);
  }

  /** Positions already decoded; the next call's positions start here. */
  get length(): number {
    return this.filled;
  }

  /**
   * Layer l's keys (B,Hkv,D,S) and values (B,Hkv,S,D) including the new positions, which are
   * appended and kept. Called by the model inside its tidy.
   */
  append(l: number, newKeys: tf.Tensor4D, newValues: tf.Tensor4D): { keys: tf.Tensor4D; values: tf.Tensor4D } {
    const oldK = this.keys[l];
    const oldV = this.values[l];
    const keys = tf.keep(oldK === undefined ? newKeys : tf.concat([oldK, newKeys], 3));
    const values = tf.keep(oldV === undefined ? newValues : tf.concat([oldV, newValues], 2));
    oldK?.dispose();
    oldV?.dispose();
    this.keys[l] = keys;
    this.values[l] = values;
    return { keys, values };
  }

  /** Mark T more positions as decoded, once every layer has appended them. */
  advance(T: number): void {
    this.filled += T;
  }

  /** Free every cached tensor and empty the cache. */
  dispose(): void {
    for (let l = 0; l < this.layers; l++) {
      this.keys[l]?.dispose();
      this.values[l]?.dispose();
      this.keys[l] = undefined;
      this.values[l] = undefined;
    }
    this.filled = 0;
  }
}
