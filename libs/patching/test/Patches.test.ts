import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import fc from "fast-check";
import { useBackend } from "@patchlm/testing";
import { Patches } from "../src";

const ok = <A, E>(e: Either.Either<A, E>): A => Either.getOrThrowWith(e, (err) => new Error(`unexpected Left: ${String(err)}`));

describe("Patches (pure)", () => {
  it("groups K=2 patches and scores each against the next patch's tokens (TV1)", () => {
    const p = ok(Patches.patchify(Int32Array.from([5, 1, 4, 2, 3, 0]), 1, 2));
    expect(p.T).toBe(3);
    expect(Array.from(p.groups)).toEqual([5, 1, 4, 2, 3, 0]); // P0=(5,1) P1=(4,2) P2=(3,0)
    expect(Array.from(p.targets)).toEqual([4, 2, 3, 0]); // row0 -> {4,2}, row1 -> {3,0}; 5 and 1 never targets
    expect(Array.from(p.positions)).toEqual([0, 1, 2]);
  });

  it("rejects a length that K does not divide, padding and dropping nothing (TV2)", () => {
    const result = Patches.patchify(Int32Array.from([1, 2, 3, 4, 5, 6, 7]), 1, 2);
    const err = ok(Either.flip(result));
    expect(err._tag).toBe("PatchError");
    expect(err.reason).toBe("LengthNotDivisible");
    expect(err.message).toMatch(/length 7 is not a multiple of the patch size K = 2/);
    expect(Either.isLeft(Patches.patchCount(7, 2))).toBe(true);
  });

  it("gives patch i the position i (TV3)", () => {
    expect(Array.from(ok(Patches.patchify(Int32Array.from([9, 8, 7, 6, 5, 4, 3, 2]), 1, 4)).positions)).toEqual([0, 1]);
  });

  it("scores K·(T−1) targets per sequence: 8188 for K=4, T=2048", () => {
    const p = ok(Patches.patchify(new Int32Array(8192), 1, 4));
    expect([p.T, p.targets.length]).toEqual([2048, 8188]);
  });

  it("never lets a target cross into another sequence of the batch", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }), (B, K, T) => {
        const L = K * T;
        const ids = Int32Array.from({ length: B * L }, (_, i) => i);
        const p = ok(Patches.patchify(ids, B, K));
        expect(p.targets.length).toBe(B * (T - 1) * K);
        for (let b = 0; b < B; b++)
          for (let j = 0; j < T - 1; j++)
            for (let k = 0; k < K; k++) expect(p.targets[(b * (T - 1) + j) * K + k]).toBe(ids[b * L + (j + 1) * K + k]);
      }),
    );
  });

  it("treats K = 1 as ordinary next-token targets", () => {
    const p = ok(Patches.patchify(Int32Array.from([3, 1, 4, 1, 5]), 1, 1));
    expect(Array.from(p.targets)).toEqual([1, 4, 1, 5]);
  });
});

describe.each(["cpu", "wasm"])("Patches (tensors) on %s", (backend) => {
  beforeAll(() => useBackend(backend));

  it("match the pure transforms", () => {
    const ids = Int32Array.from([5, 1, 4, 2, 3, 0, 7, 7, 8, 8, 9, 9]);
    const pure = ok(Patches.patchify(ids, 2, 2));
    tf.tidy(() => {
      const t = tf.tensor2d(ids, [2, 6], "int32");
      const groups = Patches.groupIds(t, 2);
      const targets = Patches.nextPatchTargets(t, 2);
      expect(groups.shape).toEqual([2, 3, 2]);
      expect(targets.shape).toEqual([2, 2, 2]);
      expect(Array.from(groups.dataSync())).toEqual(Array.from(pure.groups));
      expect(Array.from(targets.dataSync())).toEqual(Array.from(pure.targets));
    });
  });

  it("throw the PatchError for a length K does not divide", () => {
    tf.tidy(() => {
      const t = tf.zeros([1, 7], "int32") as tf.Tensor2D;
      expect(() => Patches.nextPatchTargets(t, 2)).toThrow(/length 7 is not a multiple of the patch size K = 2/);
      expect(() => Patches.groupIds(t, 4)).toThrow(/K = 4/);
    });
  });
});
