/**
 * Patch strategies by name. A registry is an immutable value: `make` one from a list, `register`
 * your own strategies on top of `builtins`, `get` one by the name a config gives. The
 * `PatchStrategies` service carries the registry a program runs with; its default `layer` holds the
 * built-ins, `layerWith` adds yours.
 */
import { Context, Effect, Either, Layer, Schema } from "effect";
import { dual } from "effect/Function";
import { builtins as builtinStrategies, type PatchStrategy } from "./PatchStrategy";

export class StrategyError extends Schema.TaggedError<StrategyError>()("StrategyError", {
  reason: Schema.Literal("UnknownStrategy", "DuplicateStrategy"),
  name: Schema.String,
  known: Schema.Array(Schema.String),
}) {
  override get message(): string {
    const known = this.known.join(", ");
    return this.reason === "UnknownStrategy"
      ? `unknown patch strategy "${this.name}"; known strategies: ${known}`
      : `patch strategy "${this.name}" is already registered (registered: ${known})`;
  }
}

export interface Registry {
  readonly strategies: ReadonlyMap<string, PatchStrategy>;
}

/** The registered names, in registration order. */
export const names = (registry: Registry): ReadonlyArray<string> => [...registry.strategies.keys()];

export const empty: Registry = { strategies: new Map() };

/** Add a strategy; a name may be registered once. */
export const register: {
  (strategy: PatchStrategy): (registry: Registry) => Either.Either<Registry, StrategyError>;
  (registry: Registry, strategy: PatchStrategy): Either.Either<Registry, StrategyError>;
} = dual(2, (registry: Registry, strategy: PatchStrategy): Either.Either<Registry, StrategyError> =>
  registry.strategies.has(strategy.name)
    ? Either.left(new StrategyError({ reason: "DuplicateStrategy", name: strategy.name, known: names(registry) }))
    : Either.right({ strategies: new Map([...registry.strategies, [strategy.name, strategy]]) }),
);

/** A registry holding `strategies`, in order. */
export const make = (strategies: Iterable<PatchStrategy>): Either.Either<Registry, StrategyError> => {
  let registry: Either.Either<Registry, StrategyError> = Either.right(empty);
  for (const s of strategies) registry = Either.flatMap(registry, register(s));
  return registry;
};

/** The strategy registered under `name`, or an UnknownStrategy error listing the known names. */
export const get: {
  (name: string): (registry: Registry) => Either.Either<PatchStrategy, StrategyError>;
  (registry: Registry, name: string): Either.Either<PatchStrategy, StrategyError>;
} = dual(2, (registry: Registry, name: string): Either.Either<PatchStrategy, StrategyError> => {
  const found = registry.strategies.get(name);
  return found === undefined
    ? Either.left(new StrategyError({ reason: "UnknownStrategy", name, known: names(registry) }))
    : Either.right(found);
});

/** mean (the default), weighted-mean, concat-linear, first, last. */
export const builtins: Registry = Either.getOrThrow(make(builtinStrategies));

/** The registry a program runs with. */
export class PatchStrategies extends Context.Tag("@patchlm/patching/PatchStrategies")<PatchStrategies, Registry>() {}

/** The built-in strategies. */
export const layer: Layer.Layer<PatchStrategies> = Layer.succeed(PatchStrategies, builtins);

/** The built-ins plus `extra`; fails if a name is taken. */
export const layerWith = (extra: ReadonlyArray<PatchStrategy>): Layer.Layer<PatchStrategies, StrategyError> =>
  Layer.effect(PatchStrategies, make([...builtins.strategies.values(), ...extra]));

/** Look a strategy up in the program's registry. */
export const lookup = Effect.fn("PatchStrategies.lookup")(function* (name: string) {
  const registry = yield* PatchStrategies;
  return yield* get(registry, name);
});
