import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { FileSystem } from "@effect/platform";
import type { PlatformError } from "@effect/platform/Error";
import { Effect, Either, Schema, Stream } from "effect";
import { Config, Numbers } from "@patchlm/core";
import * as RunLock from "./RunLock";
import * as Safetensors from "./Safetensors";
import { fileError, syncDirectory, writeSynced } from "./internal/Io";
import { findNonFinite } from "./internal/Finite";

/**
 * Checkpoints of a run: `runs/<name>/step-XXXXXXXX/` with `model.safetensors`,
 * `optimizer.safetensors` and `manifest.json`, plus a `latest` file naming the newest step
 * directory. A run that lost `latest` is recovered from the newest step directory that verifies
 * (`recoverLatest`).
 *
 * Crash safety: a checkpoint is written into a `.tmp-*` directory, every file fsynced, then renamed
 * into place. `latest` is replaced by writing a temp file and renaming it. A crash at any point
 * leaves the previous checkpoint and `latest` intact; a save that fails (a full disk) removes its
 * temp files itself. A crash's half-written `.tmp-*` directory is ignored by `load` and removed by
 * the next `save` of the process that holds the run's lock (RunLock).
 * One process writes a run directory at a time.
 */

export const FORMAT_VERSION = 1;
export const MODEL_FILE = "model.safetensors";
export const OPTIMIZER_FILE = "optimizer.safetensors";
export const MANIFEST_FILE = "manifest.json";
export const LATEST_FILE = "latest";
const TEMP_PREFIX = ".tmp-";

const FileEntry = Schema.Struct({
  sha256: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  bytes: Numbers.NonNegativeInt,
});

/** `manifest.json`: what the checkpoint is, where training was, and how to check its files. */
export const Manifest = Schema.Struct({
  formatVersion: Schema.Literal(FORMAT_VERSION),
  /** Global optimizer steps completed. */
  step: Numbers.NonNegativeInt,
  phase: Schema.Literal("patch", "token"),
  tokensSeen: Schema.Number.pipe(Schema.nonNegative()),
  modelConfig: Schema.Unknown,
  trainConfig: Schema.Unknown,
  /** Where the data stream continues; opaque to this lib. */
  dataCursor: Schema.Unknown,
  /** RNG state; opaque to this lib. */
  rng: Schema.Unknown,
  tokenizerHash: Schema.String,
  packageVersions: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** The optimizer's own step count (it restarts at the switch under the `reset` policy). */
  optimizerStep: Schema.optional(Numbers.NonNegativeInt),
  createdAt: Schema.String,
  /** sha256 and size of every other file in the directory. */
  files: Schema.Record({ key: Schema.String, value: FileEntry }),
});
export type Manifest = typeof Manifest.Type;

/** The manifest fields the caller supplies; the rest is filled in by `save`. */
export type ManifestFields = Omit<Manifest, "formatVersion" | "step" | "optimizerStep" | "createdAt" | "files">;

export interface OptimizerState {
  /** The optimizer's step count (AdamW bias correction). */
  readonly step: number;
  /** Its slots by name, e.g. AdamW first and second moments per parameter. */
  readonly tensors: Safetensors.TensorMap;
}

export interface SaveInput {
  /** Global optimizer steps completed. */
  readonly step: number;
  /** Model weights by checkpoint name (Hugging Face LLaMA names from the parameter table). */
  readonly tensors: Safetensors.TensorMap;
  readonly optimizer?: OptimizerState;
  readonly manifest: ManifestFields;
}

export interface SaveOptions {
  /** How many checkpoints to keep, newest first (default 3). The one `latest` names is never deleted. */
  readonly keepLast?: number;
  /** Write even if a tensor holds NaN or ±Infinity (default false: refuse, naming the tensor). */
  readonly allowNonFinite?: boolean;
}

export interface Saved {
  readonly dir: string;
  readonly manifest: Manifest;
}

export interface Loaded {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly tensors: Safetensors.TensorMap;
  readonly optimizer: OptimizerState | undefined;
}

export interface Listed {
  readonly name: string;
  readonly dir: string;
  readonly step: number;
  readonly isLatest: boolean;
}

/** A checkpoint that cannot be written, found, trusted or used. `detail` says what differs. */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  path: Schema.String,
  reason: Schema.Literal("NotFound", "BadManifest", "FormatVersion", "MissingFile", "Corrupt", "NonFinite", "ConfigMismatch"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}

/** `step-00001200` for step 1200 (more digits past 99,999,999). */
export const stepDirName = (step: number): string => `step-${String(step).padStart(8, "0")}`;

const STEP_DIR = /^step-(\d{8,})$/;

const suffix = (): string => `${process.pid}-${randomBytes(4).toString("hex")}`;

const utf8 = new TextEncoder();

const io = <A>(path: string, doing: "read" | "write", f: (fs: FileSystem.FileSystem) => Effect.Effect<A, PlatformError>) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => Effect.mapError(f(fs), fileError(path, doing)));

const checkFinite = (dir: string, groups: ReadonlyArray<[string, Safetensors.TensorMap]>) =>
  Effect.forEach(groups, ([file, tensors]) => {
    const bad = findNonFinite(tensors);
    return bad === undefined
      ? Effect.void
      : Effect.fail(
          new CheckpointError({
            path: join(dir, file),
            reason: "NonFinite",
            detail: `tensor "${bad.name}" holds ${bad.value} at element ${bad.index}; refusing to write a checkpoint with non-finite values`,
          }),
        );
  });

/** Step directories of a run, oldest first by step. */
export const list = Effect.fn("Checkpoint.list")(function* (runDir: string) {
  const names = (yield* io(runDir, "read", (fs) => fs.readDirectory(runDir))).filter((n) => STEP_DIR.test(n));
  const latest = yield* latestName(runDir);
  return names
    .map((name): Listed => ({ name, dir: join(runDir, name), step: Number(STEP_DIR.exec(name)![1]), isLatest: name === latest }))
    .sort((a, b) => a.step - b.step);
});

/** The step directory name `latest` points at, or undefined when the run has none. */
export const latestName = Effect.fn("Checkpoint.latestName")(function* (runDir: string) {
  const path = join(runDir, LATEST_FILE);
  if (!(yield* io(path, "read", (fs) => fs.exists(path)))) return undefined;
  const name = (yield* io(path, "read", (fs) => fs.readFileString(path))).trim();
  if (!STEP_DIR.test(name)) {
    return yield* new CheckpointError({ path, reason: "BadManifest", detail: `expected a step directory name like step-00001200, found ${JSON.stringify(name)}` });
  }
  return name;
});

/** The pid in a temp name: `.tmp-<what>-<pid>-<8 hex>`. */
const TEMP_OWNER = /-(\d+)-[0-9a-f]{8}$/;

/**
 * Remove the `.tmp-*` leftovers of interrupted saves that are provably stale: all of them while
 * this process holds the run's lock (a live writer would hold it), else only this process's own. A
 * temp file of another process that may be writing right now is left alone.
 */
export const cleanup = Effect.fn("Checkpoint.cleanup")(function* (runDir: string) {
  const owned = RunLock.heldHere(runDir);
  const stale = (yield* io(runDir, "read", (fs) => fs.readDirectory(runDir))).filter(
    (n) => n.startsWith(TEMP_PREFIX) && (owned || TEMP_OWNER.exec(n)?.[1] === String(process.pid)),
  );
  for (const n of stale) yield* io(join(runDir, n), "write", (fs) => fs.remove(join(runDir, n), { recursive: true }));
  return stale;
});

const readManifestCreatedAt = (dir: string) =>
  io(dir, "read", (fs) => fs.readFileString(join(dir, MANIFEST_FILE))).pipe(
    Effect.map((text) => {
      try {
        const m = JSON.parse(text) as { createdAt?: unknown };
        return typeof m.createdAt === "string" ? m.createdAt : undefined;
      } catch {
        return undefined;
      }
    }),
    Effect.orElseSucceed(() => undefined),
  );

/**
 * Keep the `keepLast` most recently written checkpoints (by manifest time, then step: after a resume
 * from an older step, the abandoned later steps are the oldest writes) and the one `latest` names.
 * Directories without a readable manifest are not ours to judge and are left alone. Returns the
 * names removed.
 */
export const prune = Effect.fn("Checkpoint.prune")(function* (runDir: string, keepLast: number) {
  const all = yield* list(runDir);
  const dated = yield* Effect.forEach(all, (c) => Effect.map(readManifestCreatedAt(c.dir), (createdAt) => ({ ...c, createdAt })));
  const ours = dated.filter((c) => c.createdAt !== undefined);
  ours.sort((a, b) => (a.createdAt! < b.createdAt! ? 1 : a.createdAt! > b.createdAt! ? -1 : b.step - a.step));
  const doomed = ours.slice(keepLast).filter((c) => !c.isLatest);
  for (const c of doomed) yield* io(c.dir, "write", (fs) => fs.remove(c.dir, { recursive: true }));
  return doomed.map((c) => c.name);
});

/** Point `latest` at step directory `name`: a temp file, fsynced, renamed over it. */
const writeLatest = (runDir: string, name: string) =>
  Effect.gen(function* () {
    const pointerTmp = join(runDir, `${TEMP_PREFIX}latest-${suffix()}`);
    yield* Effect.zipRight(
      writeSynced(pointerTmp, [utf8.encode(name + "\n")]),
      io(join(runDir, LATEST_FILE), "write", (fs) => fs.rename(pointerTmp, join(runDir, LATEST_FILE))),
    ).pipe(Effect.onError(() => removeQuietly(pointerTmp)));
    yield* syncDirectory(runDir);
  });

/** Remove a temp file or directory of a save that failed; a failure to remove is not the error to report. */
const removeQuietly = (path: string) => Effect.ignore(io(path, "write", (fs) => fs.remove(path, { recursive: true, force: true })));

/**
 * Write a checkpoint of `input.step` into `runDir`, atomically, point `latest` at it, and prune
 * old ones. Refuses non-finite tensors unless `allowNonFinite`.
 */
export const save = Effect.fn("Checkpoint.save")(function* (runDir: string, input: SaveInput, options: SaveOptions = {}) {
  const keepLast = options.keepLast ?? 3;
  if (!Number.isSafeInteger(input.step) || input.step < 0) throw new RangeError(`checkpoint step must be a non-negative integer, got ${input.step}`);
  if (!Number.isSafeInteger(keepLast) || keepLast < 1) throw new RangeError(`keepLast must be a positive integer, got ${keepLast}`);
  const name = stepDirName(input.step);
  const dir = join(runDir, name);
  if (options.allowNonFinite !== true) {
    yield* checkFinite(dir, [[MODEL_FILE, input.tensors], ...(input.optimizer ? [[OPTIMIZER_FILE, input.optimizer.tensors] as [string, Safetensors.TensorMap]] : [])]);
  }
  yield* io(runDir, "write", (fs) => fs.makeDirectory(runDir, { recursive: true }));
  yield* cleanup(runDir);

  // A write that fails (a full disk) removes its partial temp directory at once: left for the next
  // save, it would keep the disk full. Only a crash leaves one behind.
  const tmp = join(runDir, `${TEMP_PREFIX}${name}-${suffix()}`);
  yield* io(tmp, "write", (fs) => fs.makeDirectory(tmp));
  const manifest = yield* Effect.gen(function* () {
    const files: Record<string, { sha256: string; bytes: number }> = {};
    files[MODEL_FILE] = yield* Safetensors.writeFile(join(tmp, MODEL_FILE), input.tensors, { format: "pt" });
    if (input.optimizer) files[OPTIMIZER_FILE] = yield* Safetensors.writeFile(join(tmp, OPTIMIZER_FILE), input.optimizer.tensors);
    const manifest: Manifest = {
      ...input.manifest,
      formatVersion: FORMAT_VERSION,
      step: input.step,
      ...(input.optimizer ? { optimizerStep: input.optimizer.step } : {}),
      createdAt: new Date().toISOString(),
      files,
    };
    yield* writeSynced(join(tmp, MANIFEST_FILE), [utf8.encode(JSON.stringify(manifest, null, 2) + "\n")]);
    yield* syncDirectory(tmp);

    // Publish the directory. Re-saving a step (after resuming from an older checkpoint) moves the
    // old copy aside first (a directory cannot be renamed over a non-empty one), and back if the
    // new one cannot take its place.
    if (yield* io(dir, "read", (fs) => fs.exists(dir))) {
      const aside = join(runDir, `${TEMP_PREFIX}replaced-${name}-${suffix()}`);
      yield* io(dir, "write", (fs) => fs.rename(dir, aside));
      yield* io(dir, "write", (fs) => fs.rename(tmp, dir)).pipe(Effect.onError(() => Effect.ignore(io(dir, "write", (fs) => fs.rename(aside, dir)))));
      yield* removeQuietly(aside);
    } else {
      yield* io(dir, "write", (fs) => fs.rename(tmp, dir));
    }
    return manifest;
  }).pipe(Effect.onError(() => removeQuietly(tmp)));
  yield* syncDirectory(runDir);

  yield* writeLatest(runDir, name);

  yield* prune(runDir, keepLast);
  return { dir, manifest } satisfies Saved;
});

/** Resolve a run directory (through `latest`) or a step directory to the step directory. */
export const resolve = Effect.fn("Checkpoint.resolve")(function* (path: string) {
  if (yield* io(path, "read", (fs) => fs.exists(join(path, MANIFEST_FILE)))) return path;
  const latest = yield* latestName(path);
  if (latest === undefined) {
    const steps = yield* Effect.orElseSucceed(list(path), (): Array<Listed> => []);
    return yield* new CheckpointError({
      path,
      reason: "NotFound",
      detail:
        steps.length === 0
          ? `no ${MANIFEST_FILE} (not a step directory) and no ${LATEST_FILE} (not a run directory)`
          : `no ${LATEST_FILE}, though it holds ${steps.map((c) => c.name).join(", ")}: give one of those, or resume the run (it continues from the newest that verifies)`,
    });
  }
  const dir = join(path, latest);
  if (!(yield* io(dir, "read", (fs) => fs.exists(join(dir, MANIFEST_FILE))))) {
    return yield* new CheckpointError({ path: join(path, LATEST_FILE), reason: "NotFound", detail: `latest names ${latest}, which has no ${MANIFEST_FILE}` });
  }
  return dir;
});

const parseManifest = (path: string, text: string): Either.Either<Manifest, CheckpointError> => {
  const bad = (detail: string) => Either.left(new CheckpointError({ path, reason: "BadManifest", detail }));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return bad(`not valid JSON (${(e as Error).message})`);
  }
  // The version decides how to read everything else, so it is checked first and on its own.
  const version = typeof json === "object" && json !== null ? (json as { formatVersion?: unknown }).formatVersion : undefined;
  if (version !== FORMAT_VERSION) {
    return Either.left(
      new CheckpointError({ path, reason: "FormatVersion", detail: `manifest format version ${JSON.stringify(version)}, expected ${FORMAT_VERSION}` }),
    );
  }
  return Either.mapLeft(Config.decodeConfig(Manifest)(path, json), (e) => new CheckpointError({ path, reason: "BadManifest", detail: e.issues.join("; ") }));
};

const sha256OfFile = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    const hash = createHash("sha256");
    yield* Stream.runForEach(fs.stream(path), (chunk) => Effect.sync(() => hash.update(chunk)));
    return hash.digest("hex");
  }).pipe(Effect.mapError(fileError(path, "read")));

/** A file a manifest lists must be there, and its entry must be there for a file the checkpoint needs. */
const ensureListed = (dir: string, file: string, entry: { sha256: string; bytes: number } | undefined) =>
  Effect.gen(function* () {
    const path = join(dir, file);
    if (entry === undefined) return yield* new CheckpointError({ path: join(dir, MANIFEST_FILE), reason: "BadManifest", detail: `no entry for ${file} in files` });
    if (!(yield* io(path, "read", (fs) => fs.exists(path)))) return yield* new CheckpointError({ path, reason: "MissingFile", detail: `${file} is listed in the manifest but missing` });
    const corrupt = (sha: string) =>
      new CheckpointError({ path, reason: "Corrupt", detail: `${file} sha256 mismatch: manifest has ${entry.sha256}, file has ${sha}` });
    return { path, entry, corrupt };
  });

/** Read one safetensors file of a checkpoint and check it against its manifest entry. */
const readVerified = (dir: string, file: string, entry: { sha256: string; bytes: number } | undefined) =>
  Effect.gen(function* () {
    const { path, entry: listed, corrupt } = yield* ensureListed(dir, file, entry);
    const read = yield* Safetensors.readFile(path).pipe(
      // A file that does not parse is reported as corrupt when its bytes differ from the manifest's.
      Effect.catchTag("SafetensorsError", (e) => Effect.flatMap(sha256OfFile(path), (sha) => Effect.fail(sha === listed.sha256 ? e : corrupt(sha)))),
    );
    if (read.sha256 !== listed.sha256) return yield* corrupt(read.sha256);
    return read;
  });

/**
 * Check a step directory without decoding its tensors: its manifest, and the sha256 of every file
 * it lists (the model's at least). Returns the manifest.
 */
export const verify = Effect.fn("Checkpoint.verify")(function* (dir: string) {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!(yield* io(manifestPath, "read", (fs) => fs.exists(manifestPath)))) {
    return yield* new CheckpointError({ path: dir, reason: "NotFound", detail: `no ${MANIFEST_FILE}` });
  }
  const manifest = yield* parseManifest(manifestPath, yield* io(manifestPath, "read", (fs) => fs.readFileString(manifestPath)));
  for (const file of new Set([MODEL_FILE, ...Object.keys(manifest.files)])) {
    const { path, entry, corrupt } = yield* ensureListed(dir, file, manifest.files[file]);
    const sha = yield* sha256OfFile(path);
    if (sha !== entry.sha256) return yield* corrupt(sha);
  }
  return manifest;
});

/** The step directory `recoverLatest` chose, and the newer ones it passed over (and why). */
export interface Recovered {
  readonly name: string;
  readonly step: number;
  readonly passedOver: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
}

/**
 * A run whose `latest` is lost but whose step directories are intact: point `latest` at the newest
 * step directory that verifies. Undefined (and nothing written) when `latest` is there or the run
 * has no step directory; fails, listing why, when none verifies. Call it holding the run's lock.
 */
export const recoverLatest = Effect.fn("Checkpoint.recoverLatest")(function* (runDir: string) {
  if ((yield* latestName(runDir)) !== undefined) return undefined;
  const steps = yield* list(runDir);
  if (steps.length === 0) return undefined;
  const passedOver: Array<{ name: string; reason: string }> = [];
  for (const c of [...steps].reverse()) {
    const checked = yield* Effect.either(verify(c.dir));
    if (Either.isLeft(checked)) {
      passedOver.push({ name: c.name, reason: checked.left.message });
      continue;
    }
    yield* writeLatest(runDir, c.name);
    return { name: c.name, step: c.step, passedOver } satisfies Recovered;
  }
  return yield* new CheckpointError({
    path: join(runDir, LATEST_FILE),
    reason: "NotFound",
    detail: `missing, and no step directory verifies:\n  - ${passedOver.map((p) => p.reason).join("\n  - ")}`,
  });
});

/**
 * Load a checkpoint from a step directory, or from a run directory through `latest`, verifying
 * the format version and every file's sha256.
 */
export const load = Effect.fn("Checkpoint.load")(function* (path: string) {
  const dir = yield* resolve(path);
  const manifestPath = join(dir, MANIFEST_FILE);
  const manifest = yield* parseManifest(manifestPath, yield* io(manifestPath, "read", (fs) => fs.readFileString(manifestPath)));
  const model = yield* readVerified(dir, MODEL_FILE, manifest.files[MODEL_FILE]);
  const optimizer =
    manifest.files[OPTIMIZER_FILE] === undefined ? undefined : yield* readVerified(dir, OPTIMIZER_FILE, manifest.files[OPTIMIZER_FILE]);
  return {
    dir,
    manifest,
    tensors: model.tensors,
    optimizer: optimizer === undefined ? undefined : { step: manifest.optimizerStep ?? manifest.step, tensors: optimizer.tensors },
  } satisfies Loaded;
});

/** What a resuming run expects of a checkpoint. Omitted fields are not compared. */
export interface Expected {
  readonly modelConfig?: unknown;
  readonly trainConfig?: unknown;
  readonly tokenizerHash?: string;
}

const show = (u: unknown): string => (u === undefined ? "(absent)" : JSON.stringify(u));

const diff = (path: string, have: unknown, want: unknown, out: Array<string>): void => {
  const bothObjects = typeof have === "object" && have !== null && typeof want === "object" && want !== null;
  if (bothObjects && Array.isArray(have) === Array.isArray(want)) {
    const keys = new Set([...Object.keys(have as object), ...Object.keys(want as object)]);
    for (const k of keys) diff(`${path}.${k}`, (have as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], out);
  } else if (!Object.is(have, want)) {
    out.push(`${path}: ${show(have)} in the checkpoint vs ${show(want)} expected`);
  }
};

/** Every difference between what a run expects and a checkpoint's manifest, one line each, naming the key. */
export const differences = (expected: Expected, manifest: Manifest): Array<string> => {
  const out: Array<string> = [];
  if (expected.modelConfig !== undefined) diff("modelConfig", manifest.modelConfig, expected.modelConfig, out);
  if (expected.trainConfig !== undefined) diff("trainConfig", manifest.trainConfig, expected.trainConfig, out);
  if (expected.tokenizerHash !== undefined) diff("tokenizerHash", manifest.tokenizerHash, expected.tokenizerHash, out);
  return out;
};

/** Fail with a ConfigMismatch listing every difference, or succeed when the checkpoint fits. */
export const ensureCompatible = (loaded: Pick<Loaded, "dir" | "manifest">, expected: Expected): Effect.Effect<void, CheckpointError> => {
  const found = differences(expected, loaded.manifest);
  return found.length === 0
    ? Effect.void
    : Effect.fail(new CheckpointError({ path: loaded.dir, reason: "ConfigMismatch", detail: `checkpoint does not match this run:\n  - ${found.join("\n  - ")}` }));
};
