import { Effect, Layer, Context } from "effect";
import * as tf from "@tensorflow/tfjs";
import { expectClose, expectNoTensorLeak, runTest, runTestFailure, runTestWith, randomInts } from "../src";
import { ConfigError } from "@patchlm/core";

class Answer extends Context.Tag("test/Answer")<Answer, { readonly value: number }>() {}

describe("testing helpers", () => {
  it("runTest returns the value and shows the Cause on failure", async () => {
    expect(await runTest(Effect.succeed(3))).toBe(3);
    await expect(runTest(Effect.fail(new ConfigError({ source: "x.json", issues: ["a: bad"] })))).rejects.toThrow(/ConfigError[\s\S]*x\.json/);
  });
  it("runTestWith provides a layer", async () => {
    const v = await runTestWith(Layer.succeed(Answer, { value: 42 }))(Effect.map(Answer, (a) => a.value));
    expect(v).toBe(42);
  });
  it("runTestFailure returns the typed error", async () => {
    const e = await runTestFailure(Effect.fail(new ConfigError({ source: "flags", issues: [] })));
    expect(e._tag).toBe("ConfigError");
    await expect(runTestFailure(Effect.succeed(1))).rejects.toThrow(/expected failure/);
  });
  it("expectClose passes within tolerance and reports the max difference otherwise", () => {
    expect(expectClose([1, 2, 3], [1, 2, 3.0000001]).maxAbsDiff).toBeLessThan(1e-6);
    expect(() => expectClose([1, 2, 3], [1, 2.1, 3], { label: "v" })).toThrow(/v: element 1.*max \|diff\| 1\.000e-1/);
    expect(() => expectClose([NaN], [0])).toThrow(/element 0/);
  });
  it("expectNoTensorLeak catches a leak", async () => {
    await expectNoTensorLeak(() => tf.tidy(() => tf.add(tf.ones([2]), 1).sum()).dispose());
    let leaked: tf.Tensor | undefined;
    await expect(expectNoTensorLeak(() => { leaked = tf.ones([2]); })).rejects.toThrow(/tensor count/);
    leaked?.dispose();
  });
  it("randomInts is deterministic", () => {
    expect(Array.from(randomInts(5, 10, 7))).toEqual(Array.from(randomInts(5, 10, 7)));
  });
});
