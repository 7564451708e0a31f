/**
 * What each evaluator command does: load a checkpoint and its tokenizer, compose the eval libs,
 * print results. Every handler also returns its results (tests and scripts use them).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Console, Effect, Either, Option, Stream } from "effect";
import { ComputeBackend } from "@patchlm/backend";
import { Checkpoint, RunLock } from "@patchlm/checkpoint";
import { Config, ConfigError } from "@patchlm/core";
import { Checkpoints, Choice, Cloze, Documents, EvalInputError, Generate, HuggingFace, Perplexity, Report, Tasks } from "@patchlm/eval";
import { type Tokenizer, TokenizerFiles } from "@patchlm/tokenization";

const get = Option.getOrUndefined;

export type BackendChoice = ComputeBackend.Choice;

const useBackend = (backend: BackendChoice) => ComputeBackend.make({ backend });

const fmt = (x: number | undefined, digits = 4): string => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));

// --- ppl -------------------------------------------------------------------------------------

export interface PplOptions {
  readonly checkpoint: string;
  readonly data: Option.Option<string>;
  readonly tokenizer: Option.Option<string>;
  readonly window: Option.Option<number>;
  readonly stride: Option.Option<number>;
  readonly batchSize: number;
  readonly maxTokens: Option.Option<number>;
  readonly patchSize: Option.Option<number>;
  readonly backend: BackendChoice;
  readonly json: boolean;
}

export interface PplResult extends Perplexity.Result {
  readonly data: string;
  readonly window: number;
  readonly stride: number;
  readonly patch?: { readonly K: number; readonly loss: number; readonly windows: number; readonly comparable: false };
}

/** Token streams to score: the validation split of a prepared directory, or text files (one stream each). */
const streamsFor = Effect.fn("evaluator.streamsFor")(function* (data: string, tokenizer: Tokenizer.Service, maxTokens: number) {
  if (Documents.isPrepared(data)) return [yield* Documents.validationStream(data, tokenizer, maxTokens)];
  const docs = yield* Documents.textFiles(data);
  const out: Array<Documents.TokenStream> = [];
  let total = 0;
  for (const d of docs) {
    if (total >= maxTokens) break;
    const s = Documents.textStream(d.id, d.text, tokenizer);
    out.push(s);
    total += s.tokens.length - 1;
  }
  return out;
});

export const ppl = Effect.fn("evaluator.ppl")(function* (o: PplOptions) {
  yield* useBackend(o.backend);
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const m = yield* Checkpoints.open(o.checkpoint, get(o.tokenizer));
      const data = get(o.data) ?? Checkpoints.runDataDir(m.runDir);
      if (data === undefined) {
        return yield* new EvalInputError({ path: m.runDir, reason: "NotFound", detail: "no --data given and the run has no config.json naming its data directory" });
      }
      const window = get(o.window) ?? m.cfg.contextLength;
      const stride = get(o.stride) ?? window;
      if (window > m.cfg.contextLength || window < 1 || stride < 1 || stride > window) {
        return yield* new EvalInputError({
          path: "--window/--stride",
          reason: "Malformed",
          detail: `need 1 ≤ stride (${stride}) ≤ window (${window}) ≤ the model's context length (${m.cfg.contextLength})`,
        });
      }
      const streams = yield* streamsFor(data, m.tokenizer, get(o.maxTokens) ?? Infinity);
      let sum = { nll: 0, tokens: 0 };
      let bytes = 0;
      const started = performance.now();
      for (const s of streams) {
        const r = Perplexity.streamNll(m.params, m.cfg, s.tokens, { window, stride, batchSize: o.batchSize });
        sum = { nll: sum.nll + r.nll, tokens: sum.tokens + r.tokens };
        bytes += s.bytes;
      }
      const seconds = (performance.now() - started) / 1000;
      const result: PplResult = { ...Perplexity.result(sum, bytes), data, window, stride };
      const K = get(o.patchSize);
      const patch =
        K === undefined
          ? undefined
          : (() => {
              const all = streams.flatMap((s) => Array.from(s.tokens));
              const positions = Math.min(m.cfg.contextLength, Math.max(2, Math.floor(all.length / K)));
              const p = Perplexity.patchLoss(m.params, m.cfg, all, K, { positions, batchSize: o.batchSize });
              return { K, loss: p.loss, windows: p.windows, comparable: false as const };
            })();
      const out: PplResult = patch === undefined ? result : { ...result, patch };
      if (o.json) yield* Console.log(JSON.stringify(out));
      else {
        yield* Console.log(`data: ${data}  (window ${window}, stride ${stride}; ${streams.length} stream(s), ${out.tokens} tokens, ${out.bytes} bytes, ${seconds.toFixed(1)} s)`);
        yield* Console.log(`token loss ${fmt(out.loss)} nats  perplexity ${fmt(out.ppl, 3)}  bits/byte ${fmt(out.bitsPerByte)}`);
        if (patch !== undefined) {
          yield* Console.log(
            `patch loss (K=${patch.K}, mean patches, ${patch.windows} windows): ${fmt(patch.loss)} — NOT comparable with token loss (its floor is ln K = ${Math.log(patch.K).toFixed(3)})`,
          );
        }
      }
      return out;
    }),
  );
});

// --- tasks -----------------------------------------------------------------------------------

export interface TasksOptions {
  readonly checkpoint: string;
  /** Task files (`FORMAT:PATH` or `PATH`), or `cloze` for the built-in suite. */
  readonly tasks: ReadonlyArray<string>;
  readonly data: Option.Option<string>;
  readonly tokenizer: Option.Option<string>;
  readonly skipBad: boolean;
  readonly batchSize: number;
  readonly clozeItems: number;
  readonly seed: number;
  readonly backend: BackendChoice;
  readonly json: boolean;
}

/** The built-in cloze suite from a prepared directory's validation documents. */
export const clozeTasks = Effect.fn("evaluator.clozeTasks")(function* (data: string, tokenizer: Tokenizer.Service, items: number, seed: number) {
  const docs = yield* Documents.validationDocuments(data, tokenizer);
  const tasks = [Cloze.lastWord(docs, { items, seed }), Cloze.nextSentence(docs, { items, seed })];
  for (const t of tasks) {
    if (t.items.length === 0) return yield* new EvalInputError({ path: data, reason: "Empty", detail: `the validation documents yield no ${t.name} item` });
  }
  return tasks;
});

/** Load the named tasks (files and/or the cloze suite). */
export const loadTasks = Effect.fn("evaluator.loadTasks")(function* (
  specs: ReadonlyArray<string>,
  o: { readonly skipBad: boolean; readonly data: string | undefined; readonly tokenizer: Tokenizer.Service; readonly clozeItems: number; readonly seed: number },
) {
  const out: Array<Tasks.Task> = [];
  for (const spec of specs) {
    if (spec === "cloze") {
      if (o.data === undefined) return yield* new EvalInputError({ path: "--task cloze", reason: "NotFound", detail: "the cloze suite needs a prepared data directory: pass --data" });
      out.push(...(yield* clozeTasks(o.data, o.tokenizer, o.clozeItems, o.seed)));
    } else {
      const { format, path: file } = Tasks.parseSpec(spec);
      const task = yield* Tasks.load(file, { format, skipBad: o.skipBad });
      if (task.skipped.length > 0) yield* Effect.logWarning(`${file}: skipped ${task.skipped.length} bad line(s): ${task.skipped.map((s) => s.line).join(", ")}`);
      out.push(task);
    }
  }
  return out;
});

const pct = (e: Choice.Estimate | undefined) => (e === undefined ? "–" : `${(e.value * 100).toFixed(1)} ± ${(e.stderr * 100).toFixed(1)}`);

export const tasks = Effect.fn("evaluator.tasks")(function* (o: TasksOptions) {
  if (o.tasks.length === 0) return yield* new EvalInputError({ path: "--task", reason: "NotFound", detail: "give at least one --task FILE (or --task cloze)" });
  yield* useBackend(o.backend);
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const m = yield* Checkpoints.open(o.checkpoint, get(o.tokenizer));
      const list = yield* loadTasks(o.tasks, { ...o, data: get(o.data) ?? Checkpoints.runDataDir(m.runDir), tokenizer: m.tokenizer });
      const scorer = Choice.modelScorer(m.params, m.cfg, { batchSize: o.batchSize });
      const results: Array<Omit<Tasks.TaskResult, "perExample">> = [];
      for (const t of list) {
        const { perExample: _per, ...r } = Tasks.evaluate(t, m.tokenizer, scorer);
        results.push(r);
        if (o.json) yield* Console.log(JSON.stringify(r));
        else {
          yield* Console.log(
            `${r.name.padEnd(20)} ${r.format.padEnd(18)} n=${String(r.examples).padEnd(5)} acc ${pct(r.acc)}  acc_norm ${pct(r.accNorm)}` +
              (r.ppl === undefined ? "" : `  ppl ${fmt(r.ppl, 2)}`) +
              (r.skipped > 0 ? `  (skipped ${r.skipped})` : ""),
          );
        }
      }
      return results;
    }),
  );
});

// --- generate --------------------------------------------------------------------------------

export interface GenerateOptions {
  readonly checkpoint: string;
  readonly prompt: string;
  readonly tokenizer: Option.Option<string>;
  readonly maxNewTokens: number;
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  readonly greedy: boolean;
  readonly stop: ReadonlyArray<string>;
  readonly backend: BackendChoice;
}

/** The generate flag of each sampling option, so a range error names what the user typed. */
const samplingFlags: Readonly<Record<string, string>> = {
  maxNewTokens: "--max-new-tokens",
  temperature: "--temperature",
  topK: "--top-k",
  topP: "--top-p",
  seed: "--seed",
  stop: "--stop",
};

export const generate = Effect.fn("evaluator.generate")(function* (o: GenerateOptions, write: (text: string) => Effect.Effect<void> = (t) => Effect.sync(() => void process.stdout.write(t))) {
  // Checked before the checkpoint is loaded: a bad flag costs nothing.
  const options = yield* Either.mapLeft(
    Generate.checkOptions("flags", {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      greedy: o.greedy,
      stop: o.stop,
    }),
    (e) => new ConfigError({ source: e.source, issues: e.issues.map((i) => i.replace(/^(\w+):/, (key, name: string) => (samplingFlags[name] === undefined ? key : `${samplingFlags[name]}:`))) }),
  );
  yield* useBackend(o.backend);
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const m = yield* Checkpoints.open(o.checkpoint, get(o.tokenizer));
      let text = "";
      let done: Generate.Event | undefined;
      yield* Stream.runForEach(Generate.events(m.params, m.cfg, m.tokenizer, o.prompt, options), (e) => {
        if (e._tag === "Done") {
          done = e;
          return write("\n");
        }
        text += e.text;
        return write(e.text);
      });
      if (done?._tag === "Done") yield* Effect.logInfo(`generated ${done.tokens} tokens (stopped: ${done.reason})`);
      return { text, done };
    }),
  );
});

// --- compare ---------------------------------------------------------------------------------

export interface CompareOptions {
  readonly runs: ReadonlyArray<string>;
  readonly out: string;
  readonly tasks: ReadonlyArray<string>;
  readonly maxTokens: number;
  readonly batchSize: number;
  readonly clozeItems: number;
  readonly evaluate: boolean;
  readonly backend: BackendChoice;
}

/** Evaluate one run's latest checkpoint: ppl and bits/byte on its validation split, and the tasks. */
const evaluateRun = (run: Report.Run, o: CompareOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const m = yield* Checkpoints.open(run.dir);
      const ev: { loss?: number; ppl?: number; bitsPerByte?: number; tasks: Record<string, number> } = { tasks: {} };
      if (run.data !== undefined && Documents.isPrepared(run.data)) {
        const s = yield* Documents.validationStream(run.data, m.tokenizer, o.maxTokens);
        const r = Perplexity.result(Perplexity.streamNll(m.params, m.cfg, s.tokens, { batchSize: o.batchSize }), s.bytes);
        Object.assign(ev, { loss: r.loss, ppl: r.ppl, bitsPerByte: r.bitsPerByte });
      }
      const list = yield* loadTasks(o.tasks, { skipBad: false, data: run.data, tokenizer: m.tokenizer, clozeItems: o.clozeItems, seed: 0 });
      const scorer = Choice.modelScorer(m.params, m.cfg, { batchSize: o.batchSize });
      for (const t of list) ev.tasks[t.name] = Tasks.headline(Tasks.evaluate(t, m.tokenizer, scorer)).value;
      return ev satisfies Report.RunEval;
    }),
  );

export const compare = Effect.fn("evaluator.compare")(function* (o: CompareOptions) {
  if (o.runs.length === 0) return yield* new EvalInputError({ path: "compare", reason: "NotFound", detail: "give at least one run directory" });
  const runs = yield* Effect.forEach(o.runs, (r) => Report.loadRun(r));
  const evals: Array<Report.RunEval> = [];
  if (o.evaluate) {
    yield* useBackend(o.backend);
    for (const r of runs) {
      yield* Effect.logInfo(`evaluating ${r.name}`);
      evals.push(yield* evaluateRun(r, o));
    }
  } else {
    // Without evaluation, the last validation loss of each run's metrics stands in.
    for (const r of runs) {
      const last = [...r.records].reverse().find((x) => x.values["val/loss"] !== undefined)?.values["val/loss"];
      evals.push(last === undefined ? {} : { loss: last, ppl: Math.exp(last) });
    }
  }
  const notes = o.evaluate
    ? [`Evaluated on at most ${o.maxTokens} validation tokens per run (windows of the model's context, stride = window).`]
    : ["Not re-evaluated (--no-eval): val loss and ppl are each run's last logged validation figures."];
  const files = yield* Report.write(o.out, runs, evals, notes);
  yield* Console.log(Report.table(runs, evals));
  yield* Console.log(`\nwrote ${files.join(", ")}`);
  return { runs, evals, files };
});

// --- export / import -------------------------------------------------------------------------

export interface ExportOptions {
  readonly checkpoint: string;
  readonly hf: string;
  readonly tokenizer: Option.Option<string>;
}

const SpecialIds = (u: unknown): Tokenizer.SpecialTokens | undefined => {
  const s = typeof u === "object" && u !== null ? (u as { specialTokens?: unknown }).specialTokens : undefined;
  if (typeof s !== "object" || s === null) return undefined;
  const { bos, eos, pad } = s as Record<string, unknown>;
  return typeof bos === "number" && typeof eos === "number" && typeof pad === "number" ? { bos, eos, pad } : undefined;
};

export const exportHf = Effect.fn("evaluator.export")(function* (o: ExportOptions) {
  const loaded = yield* Checkpoint.load(o.checkpoint);
  const cfg = yield* Config.decodeConfig(Config.ModelConfig)(`${loaded.dir}/manifest.json modelConfig`, loaded.manifest.modelConfig);
  const runDir = Checkpoints.runDirOf(o.checkpoint, loaded.dir);
  const tokDir = yield* Effect.option(Checkpoints.tokenizerDirFor(runDir, get(o.tokenizer)));
  // The ids an import recorded win (they are what config.json said); else the run's tokenizer's.
  const fromTokenizer = Option.isSome(tokDir) ? yield* Effect.scoped(Effect.option(TokenizerFiles.load(tokDir.value))) : Option.none();
  const special = SpecialIds(loaded.manifest.trainConfig) ?? Option.getOrUndefined(Option.map(fromTokenizer, (t) => t.special));
  const written = yield* HuggingFace.exportTo({ cfg, tensors: loaded.tensors, special, tokenizerDir: get(tokDir), source: loaded.dir }, o.hf);
  if (!written.includes(HuggingFace.TOKENIZER_FILE)) {
    yield* Effect.logWarning(`the run's tokenizer is not a Hugging Face tokenizer.json (built-in bytes/tiktoken, or none found): ${o.hf} has no tokenizer.json`);
  }
  yield* Console.log(`exported ${loaded.dir} to ${o.hf}: ${written.join(", ")}`);
  return written;
});

export interface ImportOptions {
  readonly hfDir: string;
  readonly out: string;
  readonly step: number;
}

/**
 * `--out` must be new or an empty directory: an import never writes beside or over what a user
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
    return Effect.fail(
      new EvalInputError({ path: out, reason: "Exists", detail: `already holds ${shown}; import into a new or empty directory` }),
    );
  });

/** This host in a staging directory's name (letters, digits, dots and dashes). */
const hostTag = (): string => os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");

/** `<out>.tmp-import-<host>-<pid>-XXXXXX`: the import staging into it names itself. */
const stagingPrefix = (out: string): string => `${out}.tmp-import-${hostTag()}-${process.pid}-`;

/**
 * The staging directories that earlier imports to the same `--out` left when they were killed
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
 * Import into a staging directory beside `--out` (same file system), renamed into place only once
 * the checkpoint and tokenizer are complete and checked: a failed import leaves nothing behind, and
 * what a killed one left is removed by the next import to the same `--out`.
 */
export const importHf = Effect.fn("evaluator.import")(function* (o: ImportOptions) {
  const out = path.resolve(o.out);
  yield* ensureFreshOut(out);
  yield* removeStaleImports(out);
  const hf = yield* HuggingFace.read(o.hfDir);
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
      for (const f of hf.tokenizerFiles) fs.copyFileSync(path.join(o.hfDir, f), path.join(staging, f));
      // The tokenizer is checked against the model before the import is published: the import
      // records its hash, so a later check by hash alone would accept it whatever its size.
      const tokenizerHash = hf.tokenizerFiles.includes(HuggingFace.TOKENIZER_FILE)
        ? yield* Effect.scoped(
            Effect.gen(function* () {
              const tokenizer = yield* TokenizerFiles.load(staging);
              yield* Documents.ensureTokenizer(path.join(o.hfDir, HuggingFace.TOKENIZER_FILE), { tokenizerHash: "", vocabSize: hf.cfg.vocabSize }, tokenizer);
              return tokenizer.hash;
            }),
          )
        : "";
      const saved = yield* Checkpoint.save(staging, {
        step: o.step,
        tensors: hf.tensors,
        manifest: {
          phase: "token",
          tokensSeen: 0,
          modelConfig: hf.cfg,
          trainConfig: { importedFrom: path.resolve(o.hfDir), specialTokens: hf.special ?? null },
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
      const dir = path.join(out, path.basename(saved.dir));
      yield* Console.log(`imported ${o.hfDir} into ${dir}`);
      return { ...saved, dir };
    }),
  );
});
