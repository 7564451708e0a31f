import { Either, ParseResult, Schema } from "effect";
import { ConfigError } from "./Errors";
import { PositiveInt, PositiveNumber, UnitInterval } from "./Numbers";

/**
 * The decoder's shape. Letters used in shape comments across the project:
 * B batch, T positions, K patch size, C channels (dModel), V vocab, L layers, H heads.
 */
export const ModelConfig = Schema.Struct({
  vocabSize: PositiveInt,
  dModel: PositiveInt,
  nLayers: PositiveInt,
  nHeads: PositiveInt,
  /** Key/value heads; < nHeads gives grouped-query attention. Defaults to nHeads. */
  nKvHeads: Schema.optional(PositiveInt),
  /** SwiGLU hidden width. */
  ffnHidden: PositiveInt,
  /** Maximum positions T (patches in patch mode, tokens in token mode). */
  contextLength: PositiveInt,
  ropeBase: Schema.optionalWith(PositiveNumber, { default: () => 10000 }),
  normEps: Schema.optionalWith(PositiveNumber, { default: () => 1e-6 }),
  tieEmbeddings: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  initStd: Schema.optionalWith(PositiveNumber, { default: () => 0.02 }),
}).pipe(
  Schema.filter((c) => {
    const kv = c.nKvHeads ?? c.nHeads;
    if (c.dModel % c.nHeads !== 0) return `dModel (${c.dModel}) must be divisible by nHeads (${c.nHeads})`;
    if ((c.dModel / c.nHeads) % 2 !== 0) return `head dim dModel/nHeads (${c.dModel / c.nHeads}) must be even for RoPE`;
    if (c.nHeads % kv !== 0) return `nHeads (${c.nHeads}) must be divisible by nKvHeads (${kv})`;
    return true;
  }),
);
export type ModelConfig = typeof ModelConfig.Type;
export type ModelConfigInput = typeof ModelConfig.Encoded;

/** Key/value heads, defaulting to nHeads (plain multi-head attention). */
export const kvHeads = (c: ModelConfig): number => c.nKvHeads ?? c.nHeads;
export const headDim = (c: ModelConfig): number => c.dModel / c.nHeads;

/** What to do with optimizer state and LR schedule at the patch -> token switch (docs/method.md §3.3). */
export const SwitchPolicy = Schema.Literal("reset", "continue");
export type SwitchPolicy = typeof SwitchPolicy.Type;

/** The patch-level training plan: K, λ and how the switch behaves. K = 1 is token-only training. */
export const PatchConfig = Schema.Struct({
  patchSize: PositiveInt,
  patchFraction: UnitInterval,
  strategy: Schema.optionalWith(Schema.String, { default: () => "mean" }),
  switchPolicy: Schema.optionalWith(SwitchPolicy, { default: () => "reset" as const }),
});
export type PatchConfig = typeof PatchConfig.Type;

/**
 * Decode an unknown value (parsed JSON/YAML, merged flags) into a config type, reporting every
 * problem at once and rejecting unknown keys. `source` names the file or "flags" for messages.
 */
export const decodeConfig =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (source: string, input: unknown): Either.Either<A, ConfigError> =>
    Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })(input).pipe(
      Either.mapLeft((e) => new ConfigError({ source, issues: formatIssues(e) })),
    );

/** Flatten a ParseError into one line per problem, each starting with its key path. */
export const formatIssues = (e: ParseResult.ParseError): Array<string> =>
  ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => {
    const path = i.path.length === 0 ? "(root)" : i.path.map(String).join(".");
    return `${path}: ${i.message}`;
  });
