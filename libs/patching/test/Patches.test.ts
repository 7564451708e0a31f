import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import fc from "fast-check";
import { useBackend } from "@patchlm/testing";
import { Patches } from "../src";

/** groupIds and nextPatchTargets of ids (B, L) read back to the host. */
const cut = (ids: ArrayLike<number>, B: number, K: number) =>
  tf.tidy(() => {
    const t = tf.tensor2d(Int32Array.from(ids), [B, ids.length / B], "int32");
    const groups = Patches.groupIds(t, K);
    const targets = Patches.nextPatchTargets(t, K);
    return { groups: Array.from(groups.dataSync()), groupShape: groups.shape, targets: Array.from(targets.dataSync()), targetShape: targets.shape };
  });

describe("Patches.patchCount", () => {
  it("rejects a length that K does not divide, padding and dropping nothing (TV2)", () => {
    const err = Either.getOrThrow(Either.flip(Patches.patchCount(7, 2)));
    expect(err._tag).toBe("PatchError");
    expect(err.reason).toBe("LengthNotDivisible");
    expect(err.message).toMatch(/length 7 is not a multiple of the patch size K = 2/);
    expect(Patches.patchCount(8192, 4)).toEqual(Either.right(2048));
  });
});

describe.each(["cpu", "wasm"])("Patches on %s", (backend) => {
  beforeAll(() => useBackend(backend));

  it("groups K=2 patches and scores each against the next patch's tokens (TV1)", () => {
    const p = cut([5, 1, 4, 2, 3, 0], 1, 2);
    expect(p.groupShape).toEqual([1, 3, 2]);
    expect(p.groups).toEqual([5, 1, 4, 2, 3, 0]); // P0=(5,1) P1=(4,2) P2=(3,0)
    expect(p.targetShape).toEqual([1, 2, 2]);
    expect(p.targets).toEqual([4, 2, 3, 0]); // row0 -> {4,2}, row1 -> {3,0}; 5 and 1 never targets
  });

  it("scores K·(T−1) targets per sequence: 8188 for K=4, T=2048", () => {
    expect(cut(new Int32Array(8192), 1, 4).targetShape).toEqual([1, 2047, 4]);
  });

  it("never lets a target cross into another sequence of the batch", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }), (B, K, T) => {
        const L = K * T;
        const ids = Int32Array.from({ length: B * L }, (_, i) => i);
        const p = cut(ids, B, K);
        expect(p.groups).toEqual(Array.from(ids));
        expect(p.targets.length).toBe(B * (T - 1) * K);
        for (let b = 0; b < B; b++)
          for (let j = 0; j < T - 1; j++)
            for (let k = 0; k < K; k++) expect(p.targets[(b * (T - 1) + j) * K + k]).toBe(ids[b * L + (j + 1) * K + k]);
      }),
      { numRuns: 30 },
    );
  });

  it("treats K = 1 as ordinary next-token targets", () => {
    expect(cut([3, 1, 4, 1, 5], 1, 1).targets).toEqual([1, 4, 1, 5]);
  });

  it("throw the PatchError for a length K does not divide", () => {
    tf.tidy(() => {
      const t = tf.zeros([1, 7], "int32") as tf.Tensor2D;
      expect(() => Patches.nextPatchTargets(t, 2)).toThrow(/length 7 is not a multiple of the patch size K = 2/);
      expect(() => Patches.groupIds(t, 4)).toThrow(/K = 4/);
    });
  });
});
