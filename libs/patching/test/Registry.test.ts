import * as tf from "@tensorflow/tfjs";
import { Effect, Either, pipe } from "effect";
import { runTestFailure, runTestWith } from "@patchlm/testing";
import { PatchStrategy, Registry } from "../src";

// A strategy defined in user code: the sum of the K embeddings.
const sum: PatchStrategy.PatchStrategy = {
  name: "sum",
  description: "sum of the K token embeddings",
  parameters: () => [],
  aggregate: (x) => tf.sum(x, 2) as tf.Tensor3D,
};

const right = <A, E>(e: Either.Either<A, E>): A => Either.getOrThrowWith(e, (err) => new Error(String(err)));
const left = <A, E>(e: Either.Either<A, E>): E => right(Either.flip(e));

describe("Registry", () => {
  it("holds the built-ins, mean first as the default", () => {
    expect(Registry.names(Registry.builtins)).toEqual(["mean", "weighted-mean", "concat-linear", "first", "last"]);
    expect(PatchStrategy.DEFAULT).toBe("mean");
    expect(right(Registry.get(Registry.builtins, "mean"))).toBe(PatchStrategy.mean);
  });

  it("fails on an unknown name with UnknownStrategy, listing the known names", () => {
    const err = left(Registry.get(Registry.builtins, "median"));
    expect([err._tag, err.reason, err.name]).toEqual(["StrategyError", "UnknownStrategy", "median"]);
    expect(err.message).toBe('unknown patch strategy "median"; known strategies: mean, weighted-mean, concat-linear, first, last');
  });

  it("takes user strategies through register, data-first or piped, leaving the original untouched", () => {
    const extended = right(Registry.register(Registry.builtins, sum));
    expect(right(Registry.get(extended, "sum"))).toBe(sum);
    expect(right(Registry.get("sum")(right(pipe(Registry.builtins, Registry.register(sum)))))).toBe(sum);
    expect(Either.isLeft(Registry.get(Registry.builtins, "sum"))).toBe(true);
  });

  it("refuses a name registered twice", () => {
    const err = left(Registry.make([sum, PatchStrategy.mean, sum]));
    expect([err.reason, err.name]).toEqual(["DuplicateStrategy", "sum"]);
    expect(err.message).toMatch(/already registered \(registered: sum, mean\)/);
  });

  it("serves the built-ins through the default layer", async () => {
    const s = await runTestWith(Registry.layer)(Registry.lookup("concat-linear"));
    expect(s).toBe(PatchStrategy.concatLinear);
    const err = await runTestFailure(Effect.provide(Registry.lookup("median"), Registry.layer));
    expect(err.reason).toBe("UnknownStrategy");
  });

  it("adds user strategies through layerWith, and fails the layer on a clash", async () => {
    expect(await runTestWith(Registry.layerWith([sum]))(Registry.lookup("sum"))).toBe(sum);
    const clash = await runTestFailure(Effect.provide(Registry.lookup("mean"), Registry.layerWith([PatchStrategy.mean])));
    expect(clash.reason).toBe("DuplicateStrategy");
  });
});
