/**
 * Training and evaluation batches: a `Stream` of (B, L) windows of token ids as typed arrays.
 *
 * Windows are contiguous runs of L tokens of a split's token stream (documents concatenated with
 * their EOS separators, as `group_texts` does; windows cross document boundaries,
 * docs/method.md §3.4), cut from a token range [startToken, endToken) of the split: window w covers
 * [startToken + w·L, startToken + (w+1)·L), and the tail shorter than L is dropped. One lib serves
 * both phases: L = K·T in the patch phase, L = T in the token phase; give the phases disjoint
 * ranges (`tokenRange`) so the patch phase reads the first λ of the data and the token phase the rest.
 *
 * Order: the stream walks epochs 0, 1, 2, ...; within epoch e it visits all W windows, either in
 * index order (`sequential`, for evaluation) or in a seeded pseudo-random permutation keyed by
 * (seed, e) (`shuffled`). Batches take the next B windows of that walk, crossing epoch ends.
 * The position in the walk is the `Cursor`: serialisable, carried by every batch (the state after
 * it) and computable from a step count (`cursorAfter`), so a run resumed from a checkpointed
 * cursor gets exactly the batches an uninterrupted run would have had.
 *
 * Reads use positioned reads on a few open shard files (see `Shards.open`), never whole shards;
 * `prefetch` batches are read ahead while the consumer computes.
 */
import { Config, type ConfigError, Numbers } from "@patchlm/core";
import { Tokenizer } from "@patchlm/tokenization";
import { Effect, Option, Schema, Stream } from "effect";
import { BatchError, type ShardError } from "./Errors";
import * as Permutation from "./internal/permutation";
import * as Shards from "./Shards";
import { SplitName } from "./Split";

const { NonNegativeInt, PositiveInt } = Numbers;

export const Order = Schema.Literal("shuffled", "sequential");
export type Order = typeof Order.Type;

/**
 * Where a batch stream stands: the next window is number `position` of epoch `epoch`'s order,
 * and `step` batches came before. `windows` and `windowLength` name the window grid the cursor belongs
 * to; resuming on another grid is refused.
 */
export const Cursor = Schema.Struct({
  step: NonNegativeInt,
  epoch: NonNegativeInt,
  position: NonNegativeInt,
  windows: PositiveInt,
  windowLength: PositiveInt,
});
export type Cursor = typeof Cursor.Type;

export const TokenRange = Schema.Struct({ startToken: NonNegativeInt, endToken: NonNegativeInt });
export type TokenRange = typeof TokenRange.Type;

export const BatchOptions = Schema.Struct({
  /** A directory made by `Prepare.prepare`. */
  dir: Schema.String,
  split: Schema.optionalWith(SplitName, { default: () => "train" as const }),
  /** L: tokens per row (K·T for the patch phase, T for the token phase). */
  windowLength: PositiveInt,
  /** B: rows per batch. */
  batchSize: PositiveInt,
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  order: Schema.optionalWith(Order, { default: () => "shuffled" as const }),
  /** Tokens of the split to cut windows from; default the whole split. */
  range: Schema.optional(TokenRange),
  /** Stop after this many epochs (the last batch may have fewer rows); default endless. */
  epochs: Schema.optional(PositiveInt),
  /** Resume here (a `Batch.cursor` or `cursorAfter(...)`); default the start. */
  cursor: Schema.optional(Cursor),
  /** Batches read ahead of the consumer; 0 reads on demand. Default 4. */
  prefetch: Schema.optionalWith(NonNegativeInt, { default: () => 4 }),
  /** Most shard files open at once. Default 16. */
  maxOpenFiles: Schema.optionalWith(PositiveInt, { default: () => 16 }),
});
export type BatchOptions = typeof BatchOptions.Type;
export type BatchOptionsInput = typeof BatchOptions.Encoded;

export interface Batch {
  /** 0-based index of this batch in the whole walk (equals the resume step of the cursor before it). */
  readonly step: number;
  /** Rows in this batch: B, or fewer for the last batch of a stream with `epochs`. */
  readonly rows: number;
  readonly windowLength: number;
  /** (rows, L) row-major token ids. */
  readonly tokens: Int32Array;
  /** Offset in the split's token stream of each row's first token. */
  readonly starts: Float64Array;
  /** Epoch of the first row. */
  readonly epoch: number;
  /** The state after this batch: checkpoint it to resume right after this step. */
  readonly cursor: Cursor;
}

/** The window grid of a stream. */
export interface WindowGrid {
  readonly startToken: number;
  readonly endToken: number;
  readonly windowLength: number;
  /** W: whole windows in [startToken, endToken); one epoch visits each once. */
  readonly windows: number;
}

/**
 * The token range [floor(from·tokens), floor(to·tokens)) of a split, for the λ split of the data:
 * patch phase `tokenRange(n, 0, λ)`, token phase `tokenRange(n, λ, 1)` — adjacent and disjoint.
 */
export const tokenRange = (tokens: number, from: number, to: number): TokenRange => ({
  startToken: Math.floor(from * tokens),
  endToken: Math.floor(to * tokens),
});

/** The window grid over a split of `tokens` tokens, or why there is none. */
export const windowGrid = (
  dir: string,
  split: SplitName,
  tokens: number,
  windowLength: number,
  range: TokenRange | undefined,
): Effect.Effect<WindowGrid, BatchError> => {
  const fail = (reason: BatchError["reason"], detail: string) => Effect.fail(new BatchError({ path: dir, reason, detail }));
  if (tokens === 0) return fail("EmptySplit", `split "${split}" has no tokens (was it prepared with validationFraction 0 or from one document?)`);
  const { startToken, endToken } = range ?? { startToken: 0, endToken: tokens };
  if (startToken >= endToken || endToken > tokens) {
    return fail("BadRange", `token range [${startToken}, ${endToken}) is empty or outside the ${tokens} tokens of split "${split}"`);
  }
  const windows = Math.floor((endToken - startToken) / windowLength);
  if (windows < 1) {
    return fail(
      "TooFewTokens",
      `token range [${startToken}, ${endToken}) of split "${split}" holds ${endToken - startToken} tokens, fewer than one window of ${windowLength}`,
    );
  }
  if (windows > 2 ** 32) return fail("BadRange", `${windows} windows exceed the supported 2^32; use a longer window or a smaller range`);
  return Effect.succeed({ startToken, endToken, windowLength, windows });
};

/** The cursor after `steps` batches of `batchSize` rows from the start of an endless walk. */
export const cursorAfter = (l: WindowGrid, batchSize: number, steps: number): Cursor => {
  const consumed = steps * batchSize;
  return {
    step: steps,
    epoch: Math.floor(consumed / l.windows),
    position: consumed % l.windows,
    windows: l.windows,
    windowLength: l.windowLength,
  };
};

/** Where a walk starts. */
export const initialCursor = (l: WindowGrid): Cursor => cursorAfter(l, 1, 0);

/** Window order of one epoch: index in the walk -> window number. */
export const epochOrder = (l: WindowGrid, order: Order, seed: number, epoch: number): ((position: number) => number) => {
  if (order === "sequential") return (p) => p;
  const perm = Permutation.make(l.windows, Permutation.keysFor(`patchlm-batches\0${seed}\0${epoch}`));
  return perm.at;
};

const checkCursor = (dir: string, l: WindowGrid, c: Cursor): Effect.Effect<Cursor, BatchError> =>
  c.windows === l.windows && c.windowLength === l.windowLength && c.position < l.windows
    ? Effect.succeed(c)
    : Effect.fail(
        new BatchError({
          path: dir,
          reason: "BadCursor",
          detail:
            `cursor (epoch ${c.epoch}, position ${c.position}) belongs to a grid of ${c.windows} windows of ${c.windowLength} tokens; ` +
            `this stream has ${l.windows} windows of ${l.windowLength} tokens (same directory, split, range and window length?)`,
        }),
      );

/** Open the split and compute the window grid a stream with these options would use. */
export const describe = Effect.fn("Batches.describe")(function* (input: BatchOptionsInput) {
  const o: BatchOptions = yield* Config.decodeConfig(BatchOptions)("batch options", input);
  const manifest = yield* Shards.readManifest(o.dir);
  return yield* windowGrid(o.dir, o.split, manifest.splits[o.split].tokens, o.windowLength, o.range);
});

/**
 * The batches of a prepared split. Needs the configured `Tokenizer`: shards made by another
 * tokenizer are refused (`ShardError` TokenizerMismatch naming both hashes).
 */
export const stream = (
  input: BatchOptionsInput,
): Stream.Stream<Batch, ConfigError | ShardError | BatchError, Tokenizer.Tokenizer> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const o: BatchOptions = yield* Config.decodeConfig(BatchOptions)("batch options", input);
      const tokenizer = yield* Tokenizer.Tokenizer;
      const data = yield* Shards.open(o.dir, o.split, tokenizer, { maxOpenFiles: o.maxOpenFiles });
      const l = yield* windowGrid(data.dir, o.split, data.tokens, o.windowLength, o.range);
      const first = o.cursor === undefined ? initialCursor(l) : yield* checkCursor(data.dir, l, o.cursor);
      const L = l.windowLength;

      let orderEpoch = -1;
      let orderOf: (p: number) => number = (p) => p;
      const windowAt = (epoch: number, position: number): number => {
        if (epoch !== orderEpoch) {
          orderOf = epochOrder(l, o.order, o.seed, epoch);
          orderEpoch = epoch;
        }
        return orderOf(position);
      };

      const next = (c: Cursor): Effect.Effect<Option.Option<readonly [Batch, Cursor]>, ShardError> => {
        const left = o.epochs === undefined ? Infinity : (o.epochs - c.epoch) * l.windows - c.position;
        if (left <= 0) return Effect.succeed(Option.none());
        const rows = Math.min(o.batchSize, left);
        const starts = new Float64Array(rows);
        let { epoch, position } = c;
        for (let r = 0; r < rows; r++) {
          starts[r] = l.startToken + windowAt(epoch, position) * L;
          if (++position === l.windows) [epoch, position] = [epoch + 1, 0];
        }
        const tokens = new Int32Array(rows * L);
        return Effect.forEach(
          starts,
          (s, r) => Effect.map(data.read(s, L), (w) => tokens.set(w, r * L)),
          { concurrency: 4, discard: true },
        ).pipe(
          Effect.map(() => {
            const cursor: Cursor = { ...c, step: c.step + 1, epoch, position };
            const batch: Batch = { step: c.step, rows, windowLength: L, tokens, starts, epoch: c.epoch, cursor };
            return Option.some([batch, cursor] as const);
          }),
        );
      };

      const batches = Stream.unfoldEffect(first, next);
      return o.prefetch > 0 ? Stream.buffer(batches, { capacity: o.prefetch }) : batches;
    }),
  );
