/**
 * `prepare`: tokenize a corpus once into token shards (see `Shards` for the format).
 *
 * Layout of a split's token stream: its documents in a seeded random order (`order: "shuffled"`,
 * the default) or in corpus order (`"corpus"`), each as `[BOS]? tokens EOS`. The shuffle is what
 * makes the paper's "first λ of the data" mean anything here: training reads the λ split as
 * token ranges of this stream (`Batches.tokenRange`), so in corpus order the patch phase and the
 * token phase would read different books, and every prefix of a budget would be a biased sample. EOS after every document is the separator the issue asks for and what
 * GPT-2-style packing uses; the paper's LLaMA pipeline instead prefixes BOS and adds no EOS
 * (docs/method.md §3.4). One separator carries the boundary already, so BOS is off by default;
 * `bos: true` adds it (then every document is `BOS tokens EOS`).
 *
 * Steps, each before anything is written unless noted:
 * 1. list the input files (sorted) and hash their bytes (`Corpus.contentHash`);
 * 2. fingerprint = sha256(format version, inputs hash, tokenizer hash, vocab, layout options);
 *    if `manifest.json` has that fingerprint and its shards check out, return `skipped: true`;
 * 3. pass 1 over the documents: split scores and strata (`Split`); all input errors (bad UTF-8,
 *    malformed JSONL) surface here, so bad input never costs the previous output;
 * 4. pass 2: encode documents in chunks with `encodeBatch`, in corpus order, into one temp
 *    staging file per split, remembering where each document's ids start (memory: two numbers
 *    per document, never the tokens);
 * 5. pass 3: copy the documents from staging to per-split shard writers in the split's order
 *    (temp file, fsync, rename per shard; shard names carry the new fingerprint, so an old
 *    manifest's shards are never overwritten);
 * 6. write `manifest.json` atomically, last; then delete shards no manifest lists and temp files.
 *
 * An interrupted run therefore leaves the old manifest (or none) and untrusted extra files.
 * One `prepare` per output directory at a time: step 4 deletes leftover temp files.
 */
import { AtomicFile, Config, Numbers } from "@patchlm/core";
import { Tokenizer, TokenizerFiles } from "@patchlm/tokenization";
import { Chunk, Effect, Option, Schema, Sink, Stream } from "effect";
import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import * as Corpus from "./Corpus";
import { CorpusError, WriteError } from "./Errors";
import { describeFsError, removeQuietly } from "./internal/files";
import * as Permutation from "./internal/permutation";
import * as ShardWriter from "./internal/ShardWriter";
import * as Staging from "./internal/Staging";
import * as Shards from "./Shards";
import * as Split from "./Split";
import * as Tokenizers from "./Tokenizers";

const { NonNegativeInt, PositiveInt, UnitInterval } = Numbers;

export const defaultShardTokens = 16 * 1024 * 1024;

export const PrepareOptions = Schema.Struct({
  source: Corpus.Source,
  /** Output directory; created if missing. */
  outDir: Schema.String,
  /** Share of documents held out for validation (see `Split`). Default 0.01. */
  validationFraction: Schema.optionalWith(UnitInterval, { default: () => 0.01 }),
  /** Seed of the document split and order. Default 0. */
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  /** Tokens per shard (the last shard of a split may be shorter). Default 16 Mi. */
  shardTokens: Schema.optionalWith(PositiveInt, { default: () => defaultShardTokens }),
  /** Document order inside each split (see the module comment). Default shuffled. */
  order: Schema.optionalWith(Schema.Literal("shuffled", "corpus"), { default: () => "shuffled" as const }),
  /** Prefix every document with BOS (the paper's layout) in addition to the EOS after it. Default false. */
  bos: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Cut documents into records of at most this many words (paper: 10,000); 0 never cuts. */
  recordWords: Schema.optionalWith(NonNegativeInt, { default: () => Corpus.defaultRecordWords }),
  /** Characters of text per `encodeBatch` call: bounds memory, does not change the output. Default 4 Mi. */
  encodeChars: Schema.optionalWith(PositiveInt, { default: () => 4 * 1024 * 1024 }),
});
export type PrepareOptions = typeof PrepareOptions.Type;
export type PrepareOptionsInput = typeof PrepareOptions.Encoded;

export interface SplitSummary {
  readonly documents: number;
  readonly tokens: number;
  readonly shards: number;
}

export interface Summary {
  readonly outDir: string;
  readonly manifestPath: string;
  readonly fingerprint: string;
  /** True when the directory already held this exact preparation and nothing was done. */
  readonly skipped: boolean;
  readonly seconds: number;
  readonly dtype: Shards.Dtype;
  readonly tokenizer: string;
  readonly splits: Record<Split.SplitName, SplitSummary>;
}

const shardNamePattern = /^(train|validation)-[0-9a-f]{12}-\d{5}\.bin$/;

/** The manifest, if the directory already holds this exact preparation with intact shards. */
const upToDate = (outDir: string, fingerprint: string, tokenizer: Tokenizer.Service) =>
  Shards.readManifest(outDir).pipe(
    Effect.flatMap((m) =>
      m.fingerprint !== fingerprint ? Effect.succeed(Option.none()) : Effect.as(Shards.checkAll(outDir, m, tokenizer), Option.some(m)),
    ),
    Effect.catchAll((e) =>
      e.reason === "NoManifest"
        ? Effect.succeed(Option.none<Shards.Manifest>())
        : Effect.as(Effect.logWarning(`previous preparation not usable, preparing again: ${e.message}`), Option.none<Shards.Manifest>()),
    ),
  );

const listDir = (dir: string) =>
  Effect.tryPromise({ try: () => fsp.readdir(dir), catch: (e) => new WriteError({ path: dir, detail: describeFsError(e) }) });

const listedShards = (m: Shards.Manifest): ReadonlySet<string> =>
  new Set([...m.splits.train.shards, ...m.splits.validation.shards].map((s) => s.file));

/** Delete leftovers: temp files, and (with a manifest) shard files it does not list. Never other files. */
const removeUntrusted = (dir: string, keep: ReadonlySet<string> | undefined) =>
  Effect.flatMap(listDir(dir), (names) =>
    Effect.forEach(
      names.filter((n) => AtomicFile.isTempName(n) || (keep !== undefined && shardNamePattern.test(n) && !keep.has(n))),
      (n) => removeQuietly(path.join(dir, n)),
      { discard: true },
    ),
  );

const summaryOf = (outDir: string, m: Shards.Manifest, skipped: boolean, started: number): Summary => {
  const of = (s: Shards.SplitEntry): SplitSummary => ({ documents: s.documents, tokens: s.tokens, shards: s.shards.length });
  return {
    outDir,
    manifestPath: path.join(outDir, Shards.manifestFile),
    fingerprint: m.fingerprint,
    skipped,
    seconds: (performance.now() - started) / 1000,
    dtype: m.dtype,
    tokenizer: m.tokenizer.name,
    splits: { train: of(m.splits.train), validation: of(m.splits.validation) },
  };
};

/**
 * Position in a split's token stream -> index of the document (in corpus order) laid out there.
 * The shuffle is keyed by the seed and the split, so a split's order does not depend on the other's.
 */
export const documentOrder = (order: "shuffled" | "corpus", seed: number, split: Split.SplitName, n: number): ((i: number) => number) =>
  order === "corpus" ? (i) => i : Permutation.make(n, Permutation.keysFor(`patchlm-prepare\0${seed}\0${split}`)).at;

/** Group documents so each `encodeBatch` call gets about `chars` characters (a longer document goes alone). */
const byChars = (chars: number) =>
  Sink.foldWeighted({
    initial: Chunk.empty<Corpus.Document>(),
    maxCost: chars,
    cost: (_: Chunk.Chunk<Corpus.Document>, d: Corpus.Document) => d.text.length,
    body: (acc: Chunk.Chunk<Corpus.Document>, d: Corpus.Document) => Chunk.append(acc, d),
  });

/**
 * Tokenize a corpus into shards under `outDir`; see the module comment. Needs a `Tokenizer`.
 * Returns what is in the directory afterwards (and whether anything had to be done).
 */
export const prepare = Effect.fn("Prepare.prepare")(function* (input: PrepareOptionsInput) {
  const started = performance.now();
  const options: PrepareOptions = yield* Config.decodeConfig(PrepareOptions)("prepare options", input);
  const tokenizer = yield* Tokenizer.Tokenizer;
  const outDir = path.resolve(options.outDir);
  const root = Corpus.rootOf(options.source);

  const inputs = yield* Corpus.files(options.source);
  const inputsHash = yield* Corpus.contentHash(inputs);
  const dtype = Shards.dtypeFor(tokenizer.vocabSize);
  const layout: Shards.Layout = {
    bos: options.bos,
    recordWords: options.recordWords,
    validationFraction: options.validationFraction,
    seed: options.seed,
    shardTokens: options.shardTokens,
    order: options.order,
    split: "stratified",
  };
  const fingerprint = createHash("sha256")
    .update(JSON.stringify({ version: Shards.formatVersion, inputsHash, tokenizer: tokenizer.hash, vocab: tokenizer.vocabSize, dtype, layout }))
    .digest("hex");

  const previous = yield* upToDate(outDir, fingerprint, tokenizer);
  if (Option.isSome(previous)) {
    yield* removeUntrusted(outDir, listedShards(previous.value));
    yield* Effect.logInfo("prepare: up to date, nothing to do").pipe(Effect.annotateLogs({ outDir, fingerprint }));
    return summaryOf(outDir, previous.value, true, started);
  }

  const documents = () => Corpus.documentsOf(inputs, root, { recordWords: options.recordWords });

  // Pass 1: only the split scores are kept, so the cut-offs are known before anything is written.
  const scored: Array<Split.Scored> = [];
  yield* Stream.runForEach(documents(), (d) => Effect.sync(() => scored.push(Split.scored(options.seed, d.id))));
  const plan = Split.plan(options.seed, scored, options.validationFraction);

  yield* Effect.tryPromise({
    try: () => fsp.mkdir(outDir, { recursive: true }),
    catch: (e) => new WriteError({ path: outDir, detail: describeFsError(e) }),
  });
  yield* removeUntrusted(outDir, undefined);

  const manifest = yield* Effect.scoped(
    Effect.gen(function* () {
      const writerFor = (split: Split.SplitName) =>
        ShardWriter.make({
          dir: outDir,
          split,
          prefix: fingerprint.slice(0, 12),
          dtype,
          vocabSize: tokenizer.vocabSize,
          tokenizerHash: tokenizer.hash,
          shardTokens: options.shardTokens,
        });
      const staging = { train: yield* Staging.make(outDir, "train"), validation: yield* Staging.make(outDir, "validation") };
      const counts = { train: { documents: 0, tokens: 0 }, validation: { documents: 0, tokens: 0 } };
      const { bos, eos } = tokenizer.special;
      const extra = options.bos ? 2 : 1;

      /** Stage one encoded group, each document as `[BOS]? ids EOS` in its split. */
      const stage = (docs: Chunk.Chunk<Corpus.Document>, encoded: ReadonlyArray<Uint32Array>) =>
        Effect.forEach(
          Chunk.toReadonlyArray(docs),
          (d, i) => {
            const split = Split.assign(plan, d.id);
            const run = new Uint32Array(encoded[i].length + extra);
            let at = 0;
            if (options.bos) run[at++] = bos;
            run.set(encoded[i], at);
            run[run.length - 1] = eos;
            counts[split].documents++;
            counts[split].tokens += run.length;
            return staging[split].append(run);
          },
          { discard: true },
        );

      // Pass 2: encode in corpus order into staging.
      yield* documents().pipe(
        Stream.transduce(byChars(options.encodeChars)),
        Stream.filter((group) => Chunk.isNonEmpty(group)),
        Stream.mapEffect((group) =>
          Effect.map(tokenizer.encodeBatch(Chunk.toReadonlyArray(group).map((d) => d.text)), (ids) => [group, ids] as const),
        ),
        // Encode the next group while the previous one is staged.
        Stream.buffer({ capacity: 2 }),
        Stream.runForEach(([group, ids]) => stage(group, ids)),
      );

      // Pass 3: each split's documents from staging into shards, in the split's order.
      const shardsOf = (split: Split.SplitName) =>
        Effect.gen(function* () {
          const writer = yield* writerFor(split);
          const n = staging[split].documents();
          const at = n > 0 ? documentOrder(options.order, options.seed, split, n) : (i: number) => i;
          for (let i = 0; i < n; i++) yield* Effect.flatMap(staging[split].read(at(i)), writer.append);
          return yield* writer.finish;
        });
      const trainShards = yield* shardsOf("train");
      const validationShards = yield* shardsOf("validation");

      const entry = (split: Split.SplitName, shards: ReadonlyArray<Shards.ShardEntry>): Shards.SplitEntry => ({
        documents: counts[split].documents,
        tokens: counts[split].tokens,
        shards,
      });
      const m: Shards.Manifest = {
        format: "patchlm-token-shards",
        version: Shards.formatVersion,
        fingerprint,
        inputsHash,
        source: {
          description: Corpus.describe(options.source),
          files: inputs.length,
          bytes: inputs.reduce((n, f) => n + f.size, 0),
        },
        tokenizer: { name: tokenizer.name, hash: tokenizer.hash, vocabSize: tokenizer.vocabSize, special: tokenizer.special },
        dtype,
        layout,
        splits: { train: entry("train", trainShards), validation: entry("validation", validationShards) },
      };
      const manifestPath = path.join(outDir, Shards.manifestFile);
      yield* AtomicFile.write(manifestPath, `${JSON.stringify(m, null, 2)}\n`).pipe(
        Effect.mapError((e) => new WriteError({ path: manifestPath, detail: e.detail })),
      );
      return m;
    }),
  );

  yield* removeUntrusted(outDir, listedShards(manifest));
  const summary = summaryOf(outDir, manifest, false, started);
  yield* Effect.logInfo("prepare: done").pipe(
    Effect.annotateLogs({
      outDir,
      trainTokens: summary.splits.train.tokens,
      validationTokens: summary.splits.validation.tokens,
      seconds: summary.seconds.toFixed(1),
    }),
  );
  return summary;
});

/** Everything `prepare` can fail with: ConfigError | CorpusError | WriteError. */
export type PrepareError = Effect.Effect.Error<ReturnType<typeof prepare>>;

/**
 * Refuse, before anything is written, a split that would hold out no document: training evaluates
 * on the validation split and would otherwise fail only at its first evaluation. `Split` holds out
 * at least one document of every stratum with `validationCount(n) > 0`, so the scan stops at the
 * first stratum that gets one (within the first few documents of a real corpus); only a corpus
 * that has none is read to its end.
 */
export const ensureValidationSplit = Effect.fn("Prepare.ensureValidationSplit")(function* (source: Corpus.Source, fraction: number) {
  const perStratum = new Map<string, number>();
  let documents = 0;
  const holdsOut = yield* Corpus.documents(source, { recordWords: Corpus.defaultRecordWords }).pipe(
    Stream.map((d) => {
      documents++;
      const stratum = Split.stratumOf(d.id);
      const n = (perStratum.get(stratum) ?? 0) + 1;
      perStratum.set(stratum, n);
      return Split.validationCount(n, fraction) > 0;
    }),
    Stream.takeUntil((found) => found),
    Stream.runLast,
  );
  if (Option.getOrElse(holdsOut, () => false)) return;
  return yield* new CorpusError({
    path: Corpus.rootOf(source),
    reason: "Empty",
    detail:
      `${documents} document${documents === 1 ? "" : "s"} in ${perStratum.size} folder${perStratum.size === 1 ? "" : "s"}, none with two: ` +
      `the validation split would be empty (each folder holds out a share of its own documents); add documents`,
  });
});

export interface RunOptions {
  readonly source: Corpus.Source;
  readonly outDir: string;
  readonly tokenizer: Tokenizers.Choice;
  readonly seed: number;
  readonly validationFraction: number;
}

/**
 * A prepared data directory from a corpus and a tokenizer choice: the split checked, the tokenizer
 * made (a BPE trained on the train split, or reused), the shards written, then the tokenizer
 * installed beside them. The tokenizer is made apart and becomes the output's only once the
 * shards it made are written: a run that fails leaves an existing data directory as it was.
 */
export const run = Effect.fn("Prepare.run")(function* (o: RunOptions) {
  const split = { seed: o.seed, validationFraction: o.validationFraction };
  yield* ensureValidationSplit(o.source, o.validationFraction);
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const staged = yield* Tokenizers.stage(o.outDir, o.tokenizer, o.source, split);
      const summary = yield* prepare({ source: o.source, outDir: o.outDir, ...split }).pipe(Effect.provide(TokenizerFiles.layer(staged.dir)));
      yield* Tokenizers.install(staged, o.outDir);
      return summary;
    }),
  );
});
