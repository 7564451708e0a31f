/**
 * Hugging Face LLaMA directories: checkpoint → `config.json` + `model.safetensors` +
 * `generation_config.json` (+ `tokenizer.json`, `tokenizer_config.json` when the run's tokenizer is
 * a Hugging Face one), and back.
 *
 * No tensor is renamed or permuted. The parameter table already uses `LlamaForCausalLM`'s state
 * dict names and [out, in] shapes, and the model applies RoPE with HF's rotate-half convention to
 * q/k laid out as HF lays them out (HF's own conversion script permutes Meta's interleaved
 * layout into exactly this one). Tests check the exported files against an independent float64
 * implementation of HF's forward.
 *
 * Everything written is a pure function of the checkpoint (and the tokenizer files, copied byte for
 * byte): export → import → export gives identical bytes.
 *
 * `exportTo` / `read` convert tensors and configs; `exportRun` / `importRun` are the evaluator's
 * export and import of a whole checkpoint, tokenizer included.
 */
import * as buffer from "node:buffer";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect, Either, Option } from "effect";
import { AtomicFile, Config } from "@patchlm/core";
import { Checkpoint, RunLock, Safetensors } from "@patchlm/checkpoint";
import { ParameterTable } from "@patchlm/model";
import { PatchStrategy } from "@patchlm/patching";
import { type Tokenizer, TokenizerFiles } from "@patchlm/tokenization";
import * as Checkpoints from "./Checkpoints";
import * as Documents from "./Documents";
import { EvalInputError } from "./Errors";

export const CONFIG_FILE = "config.json";
export const MODEL_FILE = "model.safetensors";
export const GENERATION_CONFIG_FILE = "generation_config.json";
export const TOKENIZER_FILE = "tokenizer.json";
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";

/** `config.json` of `LlamaForCausalLM` for a model config; keys in a fixed order. */
export const configJson = (cfg: Config.ModelConfig, special: Tokenizer.SpecialTokens | undefined): Record<string, unknown> => ({
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0,
  ...(special === undefined ? {} : { bos_token_id: special.bos, eos_token_id: special.eos, pad_token_id: special.pad }),
  head_dim: Config.headDim(cfg),
  hidden_act: "silu",
  hidden_size: cfg.dModel,
  initializer_range: cfg.initStd,
  intermediate_size: cfg.ffnHidden,
  max_position_embeddings: cfg.contextLength,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: cfg.nHeads,
  num_hidden_layers: cfg.nLayers,
  num_key_value_heads: Config.kvHeads(cfg),
  pretraining_tp: 1,
  rms_norm_eps: cfg.normEps,
  rope_scaling: null,
  rope_theta: cfg.ropeBase,
  tie_word_embeddings: cfg.tieEmbeddings,
  torch_dtype: "float32",
  use_cache: true,
  vocab_size: cfg.vocabSize,
});

export const generationConfigJson = (special: Tokenizer.SpecialTokens | undefined): Record<string, unknown> => ({
  _from_model_config: true,
  ...(special === undefined ? {} : { bos_token_id: special.bos, eos_token_id: special.eos, pad_token_id: special.pad }),
});

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

type Json = Readonly<Record<string, unknown>>;

/**
 * Upper bounds of config.json's sizes, checked before anything is built from them. Far above any
 * LLaMA-style model there is (LLaMA-3 405B: 126 layers, hidden 16384, intermediate 53248, 128256
 * ids), yet small enough that what they size (the parameter table, an error listing, the expected
 * file size) stays small: an untrusted `num_hidden_layers: 1000000` is refused, not built.
 */
export const configLimits = {
  vocab_size: 2 ** 21,
  hidden_size: 65_536,
  intermediate_size: 262_144,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  max_position_embeddings: 2 ** 20,
} as const;

/** Largest config.json read: Hugging Face configs are a few kB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Largest tokenizer.json / tokenizer_config.json accepted (big multilingual vocabularies are ~30 MB). */
export const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
/** Tensor problems listed in one error; the rest are counted. */
const MAX_LISTED = 20;

/** A value as an error shows it: JSON, cut short (an untrusted file can hold megabytes in one key). */
const show = (v: unknown): string => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length <= 60 ? text : `${text.slice(0, 60)}… (${text.length} characters)`;
};

const listed = (problems: ReadonlyArray<string>): string =>
  (problems.length <= MAX_LISTED ? problems : [...problems.slice(0, MAX_LISTED), `… and ${problems.length - MAX_LISTED} more`]).join("\n  - ");

/** The model config and special ids of a `config.json`, refusing what the model cannot run. */
export const fromConfigJson = (
  j: Json,
  source: string,
): Either.Either<{ readonly cfg: Config.ModelConfig; readonly special: Tokenizer.SpecialTokens | undefined }, EvalInputError> => {
  const problems: Array<string> = [];
  const unsupported = (key: string, ok: (v: unknown) => boolean, want: string) => {
    if (key in j && !ok(j[key])) problems.push(`${key}: ${show(j[key])} is not supported (${want})`);
  };
  unsupported("model_type", (v) => v === "llama", `"llama"`);
  unsupported("hidden_act", (v) => v === "silu", `"silu"`);
  unsupported("rope_scaling", (v) => v === null, "null");
  unsupported("attention_bias", (v) => v === false, "false");
  unsupported("mlp_bias", (v) => v === false, "false");
  if (problems.length > 0) return Either.left(new EvalInputError({ path: source, reason: "Unsupported", detail: problems.join("; ") }));
  for (const [key, max] of Object.entries(configLimits)) {
    const v = j[key];
    if (typeof v === "number" && !(v >= 1 && v <= max)) problems.push(`${key}: ${show(v)} is out of range (1 to ${max})`);
  }
  if (problems.length > 0) return Either.left(new EvalInputError({ path: source, reason: "Malformed", detail: problems.join("; ") }));
  const nHeads = j.num_attention_heads as number;
  const kv = j.num_key_value_heads ?? nHeads;
  const input = {
    vocabSize: j.vocab_size,
    dModel: j.hidden_size,
    nLayers: j.num_hidden_layers,
    nHeads,
    ...(kv === nHeads ? {} : { nKvHeads: kv }),
    ffnHidden: j.intermediate_size,
    contextLength: j.max_position_embeddings ?? 2048,
    ropeBase: j.rope_theta ?? 10000,
    normEps: j.rms_norm_eps ?? 1e-6,
    tieEmbeddings: j.tie_word_embeddings ?? false,
    initStd: j.initializer_range ?? 0.02,
  };
  return Either.flatMap(
    Either.mapLeft(Config.decodeConfig(Config.ModelConfig)(source, input), (e) => new EvalInputError({ path: source, reason: "Malformed", detail: e.issues.join("; ") })),
    (cfg) => {
      if (j.head_dim !== undefined && j.head_dim !== Config.headDim(cfg)) {
          return Either.left(new EvalInputError({ path: source, reason: "Unsupported", detail: `head_dim ${show(j.head_dim)} differs from hidden_size / num_attention_heads = ${Config.headDim(cfg)}` }));
      }
      // Ids outside the vocabulary (LLaMA-1 configs say pad_token_id -1) are as good as none.
      const ids = [j.bos_token_id, j.eos_token_id, j.pad_token_id];
      const usable = ids.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < cfg.vocabSize);
      const special = usable ? { bos: ids[0] as number, eos: ids[1] as number, pad: ids[2] as number } : undefined;
      return Either.right({ cfg, special });
    },
  );
};

/**
 * The model's tensors of a checkpoint, checked against the parameter table: patch-strategy
 * parameters dropped, every table entry present with its shape, nothing else. Non-F32 floats
 * (F16, BF16) are widened to F32.
 */
export const modelTensors = (cfg: Config.ModelConfig, tensors: Safetensors.TensorMap, source: string): Either.Either<Safetensors.TensorMap, EvalInputError> => {
  const table = ParameterTable.make(cfg);
  const out: Record<string, Safetensors.Tensor> = {};
  const problems: Array<string> = [];
  for (const spec of table) {
    const t = tensors[spec.name];
    if (t === undefined) {
      problems.push(`${spec.name}: missing`);
      continue;
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      problems.push(`${spec.name}: shape [${t.shape}], expected [${spec.shape}]`);
      continue;
    }
    const f32 = toF32(t);
    if (f32 === undefined) problems.push(`${spec.name}: dtype ${t.dtype}, expected a float type`);
    else out[spec.name] = f32;
  }
  const known = new Set(table.map((s) => s.name));
  for (const name of Object.keys(tensors)) {
    // HF checkpoints of tied models sometimes store the head anyway; it is the embedding.
    const tiedHead = cfg.tieEmbeddings && name === ParameterTable.Names.lmHead;
    if (!known.has(name) && !PatchStrategy.isStrategyParam(name) && !tiedHead) problems.push(`${name}: not a parameter of this model`);
  }
  return problems.length > 0
    ? Either.left(new EvalInputError({ path: source, reason: "Malformed", detail: `tensors do not fit the model config:\n  - ${listed(problems)}` }))
    : Either.right(out);
};

const toF32 = (t: Safetensors.Tensor): Safetensors.Tensor | undefined => {
  if (t.dtype === "F32") return t;
  const n = t.data.length;
  const out = new Float32Array(n);
  if (t.dtype === "F64") {
    for (let i = 0; i < n; i++) out[i] = (t.data as Float64Array)[i];
  } else if (t.dtype === "BF16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = (t.data as Uint16Array)[i] << 16;
  } else if (t.dtype === "F16") {
    for (let i = 0; i < n; i++) out[i] = halfToFloat((t.data as Uint16Array)[i]);
  } else return undefined;
  return Safetensors.f32(t.shape, out);
};

const halfToFloat = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
};

const writeFile = (file: string, data: string | Uint8Array) =>
  AtomicFile.write(file, data).pipe(Effect.mapError((e) => new EvalInputError({ path: file, reason: "Unwritable", detail: e.detail })));

const ioError = (file: string, e: unknown) =>
  new EvalInputError({
    path: file,
    reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unreadable",
    detail: (e as Error).message,
  });

const readBytes = (file: string) => Effect.try({ try: () => fs.readFileSync(file), catch: (e) => ioError(file, e) });

const kindOf = (st: fs.Stats): string =>
  st.isFIFO()
    ? "a FIFO"
    : st.isCharacterDevice()
      ? "a character device"
      : st.isBlockDevice()
        ? "a block device"
        : st.isDirectory()
          ? "a directory"
          : st.isSocket()
            ? "a socket"
            : "something else";

const notRegular = (file: string, st: fs.Stats) =>
  new EvalInputError({ path: file, reason: "Unsupported", detail: `${kindOf(st)}, not a regular file` });

/**
 * An untrusted file's bytes, checked before the first byte is read: a regular file (through
 * symlinks: a link to /dev/zero is a device) whose size `tooBig` accepts (it returns why not).
 * Opened non-blocking, so a FIFO is refused at once instead of waiting for a writer, and the type
 * and size come from the open descriptor, so the file cannot be swapped between check and read.
 */
const readRegular = (file: string, tooBig: (bytes: number) => string | undefined): Effect.Effect<Buffer, EvalInputError> =>
  Effect.suspend(() => {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      return Effect.fail(ioError(file, e));
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return Effect.fail(notRegular(file, st));
      const why = tooBig(st.size);
      if (why !== undefined) return Effect.fail(new EvalInputError({ path: file, reason: "Malformed", detail: why }));
      const bytes = Buffer.allocUnsafe(st.size);
      let at = 0;
      for (let n = 1; at < bytes.length && n > 0; at += n) n = fs.readSync(fd, bytes, at, bytes.length - at, at);
      // A file that shrank meanwhile is short; the decoder names what is missing.
      return Effect.succeed(bytes.subarray(0, at));
    } catch (e) {
      return Effect.fail(ioError(file, e));
    } finally {
      fs.closeSync(fd);
    }
  });

/** Whether anything is at `p`, a dangling symlink included (reported as such, not taken for absent). */
const present = (p: string): boolean => {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** `readRegular`'s check without the read, for files another library reads (tokenizer.json). */
const checkRegular = (file: string, maxBytes: number): Effect.Effect<void, EvalInputError> =>
  Effect.suspend(() => {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      return Effect.fail(ioError(file, e));
    }
    if (!st.isFile()) return Effect.fail(notRegular(file, st));
    return st.size > maxBytes
      ? Effect.fail(new EvalInputError({ path: file, reason: "Malformed", detail: `${st.size} bytes; a tokenizer file has at most ${maxBytes}` }))
      : Effect.void;
  });

/**
 * Why a model.safetensors of `bytes` cannot hold the `parameters` of its config (undefined when it
 * can): at least 2 bytes a parameter (F16/BF16), at most 8 (F64) twice over (room for a stored
 * tied head and patch-strategy tensors) plus the largest header. Checked before reading it.
 */
const modelSizeProblem = (bytes: number, parameters: number): string | undefined => {
  const least = 8 + 2 * parameters;
  const most = Math.min(8 + Safetensors.MAX_HEADER_BYTES + 16 * parameters, buffer.constants.MAX_LENGTH);
  return bytes < least || bytes > most
    ? `${bytes} bytes; the config's ${parameters} parameters need between ${least} and ${most} (is config.json this model's?)`
    : undefined;
};

export interface ExportInput {
  readonly cfg: Config.ModelConfig;
  readonly tensors: Safetensors.TensorMap;
  /** Special token ids for config.json; omitted there when unknown. */
  readonly special: Tokenizer.SpecialTokens | undefined;
  /** A directory holding the run's `tokenizer.json` (+ `tokenizer_config.json`), copied as they are. */
  readonly tokenizerDir?: string;
  /** Names the checkpoint in errors. */
  readonly source: string;
}

/** Write a Hugging Face LLaMA directory. Returns the files written. */
export const exportTo = Effect.fn("HuggingFace.exportTo")(function* (input: ExportInput, outDir: string) {
  const tensors = yield* modelTensors(input.cfg, input.tensors, input.source);
  yield* Effect.try({
    try: () => fs.mkdirSync(outDir, { recursive: true }),
    catch: (e) => new EvalInputError({ path: outDir, reason: "Unwritable", detail: (e as Error).message }),
  });
  const written = [CONFIG_FILE, MODEL_FILE, GENERATION_CONFIG_FILE];
  yield* writeFile(path.join(outDir, CONFIG_FILE), json(configJson(input.cfg, input.special)));
  yield* writeFile(path.join(outDir, MODEL_FILE), Safetensors.encode(tensors, { format: "pt" }));
  yield* writeFile(path.join(outDir, GENERATION_CONFIG_FILE), json(generationConfigJson(input.special)));
  for (const f of [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]) {
    const src = input.tokenizerDir === undefined ? undefined : path.join(input.tokenizerDir, f);
    if (src !== undefined && fs.existsSync(src)) {
      yield* writeFile(path.join(outDir, f), yield* readBytes(src));
      written.push(f);
    } else fs.rmSync(path.join(outDir, f), { force: true });
  }
  return written;
});

export interface Imported {
  readonly cfg: Config.ModelConfig;
  readonly tensors: Safetensors.TensorMap;
  readonly special: Tokenizer.SpecialTokens | undefined;
  /** The tokenizer files present in the directory. */
  readonly tokenizerFiles: ReadonlyArray<string>;
}

/** Read a Hugging Face LLaMA directory (config.json + model.safetensors; sharded checkpoints are not supported). */
export const read = Effect.fn("HuggingFace.read")(function* (dir: string) {
  const configPath = path.join(dir, CONFIG_FILE);
  const text = (yield* readRegular(configPath, (n) => (n > MAX_CONFIG_BYTES ? `${n} bytes; a config.json has at most ${MAX_CONFIG_BYTES}` : undefined))).toString("utf8");
  const parsed = yield* Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) => new EvalInputError({ path: configPath, reason: "Malformed", detail: `not JSON: ${(e as Error).message}` }),
  });
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return yield* new EvalInputError({ path: configPath, reason: "Malformed", detail: "expected a JSON object" });
  }
  const { cfg, special } = yield* fromConfigJson(parsed as Json, configPath);
  const tokenizerFiles = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE].filter((f) => present(path.join(dir, f)));
  for (const f of tokenizerFiles) yield* checkRegular(path.join(dir, f), MAX_TOKENIZER_BYTES);
  const modelPath = path.join(dir, MODEL_FILE);
  if (!present(modelPath)) {
    const sharded = fs.existsSync(path.join(dir, "model.safetensors.index.json"));
    return yield* new EvalInputError({
      path: modelPath,
      reason: sharded ? "Unsupported" : "NotFound",
      detail: sharded ? "sharded safetensors checkpoints are not supported; merge them into one model.safetensors" : "no model.safetensors",
    });
  }
  const parameters = ParameterTable.count(cfg);
  const bytes = yield* readRegular(modelPath, (n) => modelSizeProblem(n, parameters));
  const contents = yield* Either.mapLeft(Safetensors.decode(bytes, modelPath), (e) => new EvalInputError({ path: modelPath, reason: "Malformed", detail: e.message }));
  const tensors = yield* modelTensors(cfg, contents.tensors, modelPath);
  return { cfg, tensors, special, tokenizerFiles } satisfies Imported;
});

/** Special token ids an import recorded in its manifest's trainConfig (config.json's), if any. */
const recordedSpecialIds = (trainConfig: unknown): Tokenizer.SpecialTokens | undefined => {
  const s = typeof trainConfig === "object" && trainConfig !== null ? (trainConfig as { specialTokens?: unknown }).specialTokens : undefined;
  if (typeof s !== "object" || s === null) return undefined;
  const { bos, eos, pad } = s as Record<string, unknown>;
  return typeof bos === "number" && typeof eos === "number" && typeof pad === "number" ? { bos, eos, pad } : undefined;
};

/**
 * Export a checkpoint (a run directory through `latest`, or a step directory) to a Hugging Face
 * LLaMA directory, with the run's tokenizer (`tokenizerDir`, else beside the run, else its data
 * directory) when it is a Hugging Face tokenizer.json. Returns the step directory exported and
 * the files written; warns when no tokenizer.json could be written.
 */
export const exportRun = Effect.fn("HuggingFace.exportRun")(function* (checkpoint: string, outDir: string, options: { readonly tokenizerDir?: string } = {}) {
  const loaded = yield* Checkpoint.load(checkpoint);
  const cfg = yield* Config.decodeConfig(Config.ModelConfig)(`${loaded.dir}/manifest.json modelConfig`, loaded.manifest.modelConfig);
  const runDir = Checkpoints.runDirOf(checkpoint, loaded.dir);
  const tokDir = yield* Effect.option(Checkpoints.tokenizerDirFor(runDir, options.tokenizerDir));
  // The ids an import recorded win (they are what config.json said); else the run's tokenizer's.
  const fromTokenizer = Option.isSome(tokDir) ? yield* Effect.scoped(Effect.option(TokenizerFiles.load(tokDir.value))) : Option.none();
  const special = recordedSpecialIds(loaded.manifest.trainConfig) ?? Option.getOrUndefined(Option.map(fromTokenizer, (t) => t.special));
  const files = yield* exportTo({ cfg, tensors: loaded.tensors, special, tokenizerDir: Option.getOrUndefined(tokDir), source: loaded.dir }, outDir);
  if (!files.includes(TOKENIZER_FILE)) {
    yield* Effect.logWarning(`the run's tokenizer is not a Hugging Face tokenizer.json (built-in bytes/tiktoken, or none found): ${outDir} has no tokenizer.json`);
  }
  return { source: loaded.dir, files };
});

/**
 * `out` must be new or an empty directory: an import never writes beside or over what a user
 * owns (a run's `latest`, its checkpoints, its tokenizer).
 */
const ensureFreshOut = (out: string): Effect.Effect<void, EvalInputError> =>
  Effect.suspend(() => {
    let entries: Array<string>;
    try {
      entries = fs.readdirSync(out).sort();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return Effect.void;
      if (code === "ENOTDIR") return Effect.fail(new EvalInputError({ path: out, reason: "Exists", detail: "exists and is not a directory" }));
      // "ENAMETOOLONG: name too long, scandir '<out>'": the path is already named.
      return Effect.fail(new EvalInputError({ path: out, reason: "Unwritable", detail: (e as Error).message.replace(/, \w+ '.*'$/s, "") }));
    }
    if (entries.length === 0) return Effect.void;
    const shown = entries.slice(0, 6).join(", ") + (entries.length > 6 ? `, … (${entries.length} entries)` : "");
    return Effect.fail(new EvalInputError({ path: out, reason: "Exists", detail: `already holds ${shown}; import into a new or empty directory` }));
  });

/** This host in a staging directory's name (letters, digits, dots and dashes). */
const hostTag = (): string => os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");

/** `<out>.tmp-import-<host>-<pid>-XXXXXX`: the import staging into it names itself. */
const stagingPrefix = (out: string): string => `${out}.tmp-import-${hostTag()}-${process.pid}-`;

/**
 * The staging directories that earlier imports to the same `out` left when they were killed
 * (kill -9, a crash, a full disk): removed when their process is provably gone (this host, pid no
 * longer running). Another import in progress, or one from another host, is left alone.
 */
const removeStaleImports = (out: string) =>
  Effect.gen(function* () {
    const parent = path.dirname(out);
    const prefix = `${path.basename(out)}.tmp-import-`;
    const names = fs.existsSync(parent) ? fs.readdirSync(parent).filter((n) => n.startsWith(prefix)) : [];
    for (const name of names) {
      const owner = /^(.+)-(\d+)-[A-Za-z0-9]{6}$/.exec(name.slice(prefix.length));
      if (owner === null || owner[1] !== hostTag() || RunLock.liveness({ host: os.hostname(), pid: Number(owner[2]) }).state !== "dead") continue;
      fs.rmSync(path.join(parent, name), { recursive: true, force: true });
      yield* Effect.logWarning(`removed ${path.join(parent, name)}, left by an import (pid ${owner[2]}) that did not finish`);
    }
  });

/**
 * Import a Hugging Face LLaMA directory as a checkpoint (step `step`) of a new run directory
 * `out`, tokenizer files beside it. Built in a staging directory beside `out` (same file system)
 * and renamed into place only once the checkpoint and tokenizer are complete and checked: a
 * failed import leaves nothing behind, and what a killed one left is removed by the next import
 * to the same `out`. Returns the saved checkpoint, `dir` its step directory under `out`.
 */
export const importRun = Effect.fn("HuggingFace.importRun")(function* (hfDir: string, outDir: string, options: { readonly step?: number } = {}) {
  const out = path.resolve(outDir);
  yield* ensureFreshOut(out);
  yield* removeStaleImports(out);
  const hf = yield* read(hfDir);
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const staging = yield* Effect.acquireRelease(
        Effect.try({
          try: () => {
            fs.mkdirSync(path.dirname(out), { recursive: true });
            return fs.mkdtempSync(stagingPrefix(out));
          },
          catch: (e) => new EvalInputError({ path: out, reason: "Unwritable", detail: (e as Error).message }),
        }),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
      );
      for (const f of hf.tokenizerFiles) fs.copyFileSync(path.join(hfDir, f), path.join(staging, f));
      // The tokenizer is checked against the model before the import is published: the import
      // records its hash, so a later check by hash alone would accept it whatever its size.
      const tokenizerHash = hf.tokenizerFiles.includes(TOKENIZER_FILE)
        ? yield* Effect.scoped(
            Effect.gen(function* () {
              const tokenizer = yield* TokenizerFiles.load(staging);
              yield* Documents.ensureTokenizer(path.join(hfDir, TOKENIZER_FILE), { tokenizerHash: "", vocabSize: hf.cfg.vocabSize }, tokenizer);
              return tokenizer.hash;
            }),
          )
        : "";
      const saved = yield* Checkpoint.save(staging, {
        step: options.step ?? 0,
        tensors: hf.tensors,
        manifest: {
          phase: "token",
          tokensSeen: 0,
          modelConfig: hf.cfg,
          trainConfig: { importedFrom: path.resolve(hfDir), specialTokens: hf.special ?? null },
          dataCursor: null,
          rng: null,
          tokenizerHash,
          packageVersions: {},
        },
      });
      // Checked again at the last moment; an empty directory gives way to the finished import.
      yield* ensureFreshOut(out);
      yield* Effect.try({
        try: () => {
          if (fs.existsSync(out)) fs.rmdirSync(out);
          fs.renameSync(staging, out);
        },
        catch: (e) => new EvalInputError({ path: out, reason: "Unwritable", detail: (e as Error).message }),
      });
      return { ...saved, dir: path.join(out, path.basename(saved.dir)) };
    }),
  );
});
