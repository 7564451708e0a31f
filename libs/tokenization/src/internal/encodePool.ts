import { availableParallelism } from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { Effect, type Scope } from "effect";
import { safeChunks } from "./chunking";
import type { EncoderSpec } from "./encoders";

/** Encodes batches of texts on worker threads (one per core), falling back to the caller's thread. */
export interface EncodePool {
  readonly encodeBatch: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Uint32Array>>;
}

// Below this many characters a batch is encoded on the calling thread: posting it to workers
// (and starting them the first time) costs more than it saves.
const INLINE_CHARS = 1 << 18;
// Texts longer than this are cut at safe points so one long book still spreads over all cores.
const CHUNK_CHARS = 1 << 18;
// Pieces are grouped into messages of about this size; two per worker are in flight so a worker
// never waits for the main thread between messages.
const JOB_CHARS = 1 << 18;
const IN_FLIGHT = 2;

interface Job {
  readonly id: number;
  readonly texts: ReadonlyArray<string>;
  readonly done: (results: ReadonlyArray<Uint32Array> | Error) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly running: Map<number, Job>;
}

/**
 * A pool of encode workers, owned by the scope: workers start on the first large batch and are
 * terminated when the scope closes. Idle workers are unref'ed, so a pool whose scope is never
 * closed still does not keep the process alive.
 *
 * Why worker threads: the tokenizers here are JavaScript (ours and gpt-tokenizer) and the event
 * loop runs on one core; the machines patchlm targets have few cores, so the pool uses all of them
 * (`os.availableParallelism()`), and the calling thread only splits and reassembles.
 */
export const make = (
  spec: EncoderSpec,
  encodeInline: (text: string) => Uint32Array,
  threads: number = availableParallelism(),
): Effect.Effect<EncodePool, never, Scope.Scope> =>
  Effect.gen(function* () {
    let slots: Array<Slot> | undefined;
    let broken: Error | undefined;
    const queue: Array<Job> = [];
    let nextId = 0;

    const fail = (error: Error): void => {
      broken = error;
      for (const slot of slots ?? []) {
        for (const job of slot.running.values()) job.done(error);
        slot.running.clear();
      }
      for (const job of queue.splice(0)) job.done(error);
    };

    const pump = (): void => {
      for (const slot of slots ?? []) {
        while (slot.running.size < IN_FLIGHT && queue.length > 0) {
          const job = queue.shift()!;
          slot.running.set(job.id, job);
          slot.worker.ref();
          slot.worker.postMessage({ id: job.id, texts: job.texts });
        }
      }
    };

    // Compiled (a package's dist/), the worker body is JavaScript already; run from source, a
    // CommonJS shim registers tsx in the worker first.
    const workerFile = path.join(__dirname, __filename.endsWith(".ts") ? "encodeWorker.cjs" : "encodeWorker.js");
    const start = (): Array<Slot> =>
      Array.from({ length: threads }, () => {
        const worker = new Worker(workerFile, { workerData: spec });
        const slot: Slot = { worker, running: new Map() };
        worker.unref();
        worker.on("message", (message: { id: number; results?: ReadonlyArray<Uint32Array>; error?: string }) => {
          const job = slot.running.get(message.id);
          if (job === undefined) return;
          slot.running.delete(message.id);
          if (slot.running.size === 0) worker.unref();
          job.done(message.results ?? new Error(`encode worker failed: ${message.error}`));
          pump();
        });
        worker.on("error", (error) => fail(error));
        worker.on("exit", (code) => {
          if (slot.running.size > 0) fail(new Error(`encode worker exited with code ${code}`));
        });
        return slot;
      });

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        const running = slots ?? [];
        slots = undefined;
        await Promise.all(running.map((slot) => slot.worker.terminate()));
      }),
    );

    const runParallel = (texts: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Uint32Array>> =>
      Effect.async<ReadonlyArray<Uint32Array>>((resume) => {
        if (broken !== undefined) return resume(Effect.die(broken));
        slots ??= start();
        // Cut long texts, then group consecutive pieces into jobs; `owner[k]` is the text of piece k.
        const pieces: Array<string> = [];
        const owner: Array<number> = [];
        texts.forEach((text, t) => {
          for (const chunk of safeChunks(text, CHUNK_CHARS)) {
            pieces.push(chunk);
            owner.push(t);
          }
        });
        const results = new Array<Uint32Array>(pieces.length);
        const mine: Array<Job> = [];
        let pending = 0;
        let finished = false;
        for (let from = 0; from < pieces.length; ) {
          let to = from;
          let chars = 0;
          while (to < pieces.length && (to === from || chars + pieces[to].length <= JOB_CHARS)) chars += pieces[to++].length;
          const offset = from;
          pending++;
          const job: Job = {
            id: nextId++,
            texts: pieces.slice(from, to),
            done: (out) => {
              if (finished) return;
              if (out instanceof Error) {
                finished = true;
                return resume(Effect.die(out));
              }
              out.forEach((ids, k) => (results[offset + k] = ids));
              if (--pending === 0) {
                finished = true;
                resume(Effect.succeed(assemble(texts.length, owner, results)));
              }
            },
          };
          mine.push(job);
          queue.push(job);
          from = to;
        }
        if (pending === 0) return resume(Effect.succeed([]));
        pump();
        // On interruption, drop this batch's queued jobs; results of running ones are ignored.
        return Effect.sync(() => {
          finished = true;
          for (const job of mine) {
            const at = queue.indexOf(job);
            if (at >= 0) queue.splice(at, 1);
          }
        });
      });

    const encodeBatch = (texts: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Uint32Array>> => {
      let chars = 0;
      for (const text of texts) chars += text.length;
      return threads < 2 || chars < INLINE_CHARS ? Effect.sync(() => texts.map(encodeInline)) : runParallel(texts);
    };
    return { encodeBatch };
  });

/** Concatenate the pieces of each text, in order; a text that was not cut keeps its buffer. */
const assemble = (
  nTexts: number,
  owner: ReadonlyArray<number>,
  pieces: ReadonlyArray<Uint32Array>,
): ReadonlyArray<Uint32Array> => {
  const parts: Array<Array<Uint32Array>> = Array.from({ length: nTexts }, () => []);
  pieces.forEach((ids, k) => parts[owner[k]].push(ids));
  return parts.map((list): Uint32Array => {
    if (list.length === 1) return list[0];
    const out = new Uint32Array(list.reduce((n, ids) => n + ids.length, 0));
    let at = 0;
    for (const ids of list) {
      out.set(ids, at);
      at += ids.length;
    }
    return out;
  });
};
