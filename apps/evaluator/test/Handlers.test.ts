/**
 * The evaluator's handlers end to end on a tiny checkpoint made here: Model.init weights saved with
 * Checkpoint.save, the byte tokenizer stored beside the run, a small prepared corpus.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NodeContext } from "@effect/platform-node";
import { Chunk, Effect, Layer, Logger, Option, Stream } from "effect";
import { Checkpoint, Safetensors } from "@patchlm/checkpoint";
import type { Config } from "@patchlm/core";
import { Corpus, Prepare } from "@patchlm/data";
import { Documents, Generate, Perplexity } from "@patchlm/eval";
import { MetricRecord } from "@patchlm/metrics";
import { Model, Presets } from "@patchlm/model";
import { expectClose, runTest, runTestFailure, useBackend } from "@patchlm/testing";
import { Bytes, Tokenizer, TokenizerFiles } from "@patchlm/tokenization";
import * as Handlers from "../src/Handlers";

const cfg: Config.ModelConfig = { ...Presets.tiny, vocabSize: 259, dModel: 16, nHeads: 2, nLayers: 1, ffnHidden: 32, contextLength: 32 };
const tokenizer = Bytes.make();
const none = Option.none();
const quiet = Logger.replace(Logger.defaultLogger, Logger.none);
const run = <A, E>(e: Effect.Effect<A, E, never>) => runTest(e);
const provide = <A, E, R>(e: Effect.Effect<A, E, R>) =>
  Effect.provide(e, Layer.mergeAll(NodeContext.layer, quiet, Layer.succeed(Tokenizer.Tokenizer, tokenizer))) as Effect.Effect<A, E, never>;

jest.setTimeout(30_000);

const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-evaluator-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const docs = [
  "The river ran cold through the valley. Farmers watched the water rise each spring. They built walls of stone along the banks. The walls held for many years. One spring the rain did not stop.",
  "A small shop stood at the corner of the square. The baker opened it before dawn every day. People came early for warm bread and rolls. He never raised his prices in the winter.",
  "The ship left the harbour at noon. Its sails filled with a strong western wind. The captain studied his charts in silence. Nobody on board had seen these waters before.",
  "Snow covered the mountain road for most of the year. Travellers waited in the village until the pass was clear. The innkeeper kept a fire burning day and night. Stories were told late into the evening.",
  "The old library had thousands of books on its shelves. Students came from far away to read them. The librarian knew where every volume was kept. Nothing was ever lost in that building.",
  "A fox crept along the edge of the field at dusk. The hens were already safe inside the barn. The farmer's dog barked once and the fox ran off. The night passed quietly after that.",
];

const corpusDir = path.join(root, "corpus");
const dataDir = path.join(root, "data");
const runDir = path.join(root, "run");
let params: Model.Weights;

const saveCheckpoint = (dir: string, step: number, tokenizerHash: string) =>
  provide(
    Checkpoint.save(dir, {
      step,
      tensors: Object.fromEntries(Object.entries(params).map(([n, v]) => [n, Safetensors.f32(v.shape, v.dataSync() as Float32Array)])),
      manifest: {
        phase: "token",
        tokensSeen: 1000,
        modelConfig: cfg,
        trainConfig: {},
        dataCursor: null,
        rng: null,
        tokenizerHash,
        packageVersions: {},
      },
    }),
  );

beforeAll(async () => {
  await useBackend("cpu");
  fs.mkdirSync(corpusDir, { recursive: true });
  docs.forEach((d, i) => fs.writeFileSync(path.join(corpusDir, `doc${i}.txt`), d));
  await run(provide(Prepare.prepare({ source: Corpus.text(corpusDir), outDir: dataDir, validationFraction: 0.5, seed: 1 })));
  params = Model.init(cfg, 3);
  await run(provide(saveCheckpoint(runDir, 5, tokenizer.hash)));
  await run(TokenizerFiles.save(runDir, { kind: "bytes" }));
  fs.writeFileSync(path.join(runDir, "config.json"), JSON.stringify({ name: "tiny", data: dataDir, patch: { patchSize: 1, patchFraction: 0 } }));
  fs.writeFileSync(
    path.join(runDir, "metrics.jsonl"),
    [10, 20].map((s) => MetricRecord.toJsonLine({ step: s, phase: "token", tokens: 0, flops: 0, wallSeconds: 0, totalTokens: s * 100, totalFlops: s * 1e6, elapsedSeconds: s, values: { "val/loss": 6 - s / 10 } })).join(""),
  );
});

const pplOptions = (o: Partial<Handlers.PplOptions> = {}): Handlers.PplOptions => ({
  checkpoint: runDir,
  data: none,
  tokenizer: none,
  window: none,
  stride: none,
  batchSize: 4,
  maxTokens: none,
  patchSize: none,
  backend: "cpu",
  json: true,
  ...o,
});

describe("evaluator handlers", () => {
  it("ppl on the run's validation split equals the lib's windowed NLL over the EOS-prefixed stream", async () => {
    const r = await run(provide(Handlers.ppl(pplOptions({ stride: Option.some(16), maxTokens: Option.some(200) }))));
    const stream = await run(provide(Documents.validationStream(dataDir, tokenizer, 200)));
    const want = Perplexity.streamNll(params, cfg, stream.tokens, { window: 32, stride: 16 });
    expect(r.tokens).toBe(want.tokens);
    expectClose(r.loss, want.nll / want.tokens, { atol: 1e-5 });
    // bytes: the scored text; with the byte tokenizer, one per byte token (EOS separators carry none)
    expect(r.tokens).toBe(200);
    expect(r.bytes).toBe(stream.tokens.slice(1).filter((t) => t < 256).length);
    expect(r.bytes).toBeLessThan(200);
    expectClose(r.bitsPerByte, want.nll / Math.LN2 / r.bytes, { rtol: 1e-5 });
  });

  it("ppl on a text file counts its UTF-8 bytes and reports the patch loss apart", async () => {
    const file = path.join(root, "note.txt");
    fs.writeFileSync(file, "Ünïcode text, scored with windows.\n");
    const r = await run(provide(Handlers.ppl(pplOptions({ data: Option.some(file), patchSize: Option.some(2) }))));
    expect(r.bytes).toBe(Buffer.byteLength("Ünïcode text, scored with windows.\n"));
    expect(r.tokens).toBe(r.bytes); // byte tokenizer, EOS prefix scores the first byte too
    expect(r.patch).toMatchObject({ K: 2, comparable: false });
    expect(r.patch!.loss).toBeGreaterThan(Math.log(2));
  });

  it("tasks: a hand-made PIQA file and the built-in cloze suite", async () => {
    const piqa = path.join(__dirname, "..", "..", "..", "libs", "eval", "test", "fixtures", "piqa.jsonl");
    const results = await run(
      provide(
        Handlers.tasks({ checkpoint: runDir, tasks: [`piqa:${piqa}`, "cloze"], data: none, tokenizer: none, skipBad: false, batchSize: 8, clozeItems: 4, seed: 0, backend: "cpu", json: true }),
      ),
    );
    expect(results.map((r) => [r.name, r.examples])).toEqual([["piqa", 2], ["cloze-lastword", 4], ["cloze-nextsentence", 4]]);
    for (const r of results) expect(r.acc.value).toBeGreaterThanOrEqual(0);
  });

  it("generate --greedy streams the same text as the lib, twice", async () => {
    const pieces: Array<string> = [];
    const o: Handlers.GenerateOptions = { checkpoint: runDir, prompt: "The river", tokenizer: none, maxNewTokens: 5, temperature: 1, topK: 0, topP: 1, seed: 4, greedy: true, stop: [], backend: "cpu" };
    const a = await run(provide(Handlers.generate(o, (t) => Effect.sync(() => void pieces.push(t)))));
    const b = await run(provide(Handlers.generate({ ...o, seed: 9 }, () => Effect.void)));
    expect(a.text).toBe(b.text);
    expect(pieces.join("")).toBe(`${a.text}\n`);
    const events = await run(Effect.map(Stream.runCollect(Generate.events(params, cfg, tokenizer, "The river", { greedy: true, maxNewTokens: 5 })), Chunk.toReadonlyArray));
    expect(events.flatMap((e) => (e._tag === "Text" ? [e.text] : [])).join("")).toBe(a.text);
  });

  // reliability D11: --temperature -1 / NaN and negative --max-new-tokens / --top-k were accepted.
  it("generate refuses out-of-range sampling flags, naming the flag", async () => {
    const o: Handlers.GenerateOptions = { checkpoint: runDir, prompt: "The river", tokenizer: none, maxNewTokens: 5, temperature: 1, topK: 0, topP: 1, seed: 4, greedy: false, stop: [], backend: "cpu" };
    const cases: ReadonlyArray<[Partial<Handlers.GenerateOptions>, RegExp]> = [
      [{ temperature: -1 }, /--temperature: .*-1/],
      [{ temperature: NaN }, /--temperature: .*NaN/],
      [{ maxNewTokens: -5 }, /--max-new-tokens: .*-5/],
      [{ topK: -3 }, /--top-k: .*-3/],
      [{ topP: 0 }, /--top-p: /],
    ];
    for (const [change, want] of cases) {
      const written: Array<string> = [];
      const e = await runTestFailure(provide(Handlers.generate({ ...o, ...change }, (t) => Effect.sync(() => void written.push(t)))));
      expect(e).toMatchObject({ _tag: "ConfigError", source: "flags" });
      expect((e as Error).message).toMatch(want);
      expect(written).toEqual([]);
    }
  });

  it("compare writes the report with the run's row", async () => {
    const out = path.join(root, "report");
    const r = await run(provide(Handlers.compare({ runs: [runDir], out, tasks: [], maxTokens: 256, batchSize: 4, clozeItems: 2, evaluate: true, backend: "cpu" })));
    expect(fs.readdirSync(out).sort()).toEqual(["loss-vs-flops.png", "loss-vs-tokens.png", "report.md"]);
    expect(r.evals[0].bitsPerByte).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(out, "report.md"), "utf8")).toMatch(/\| tiny \| 1 \| 0 \| – \| 1\.000× \| 1\.000× \| 1\.000× \|/);
  });

  it("export → import → export is byte-identical; a bytes tokenizer's special ids survive in config.json", async () => {
    const a = path.join(root, "hf-a");
    const imported = path.join(root, "imported");
    const b = path.join(root, "hf-b");
    await run(provide(Handlers.exportHf({ checkpoint: runDir, hf: a, tokenizer: none })));
    const config = JSON.parse(fs.readFileSync(path.join(a, "config.json"), "utf8"));
    expect([config.bos_token_id, config.eos_token_id, config.pad_token_id, config.vocab_size]).toEqual([256, 257, 258, 259]);
    await run(provide(Handlers.importHf({ hfDir: a, out: imported, step: 0 })));
    await run(provide(Handlers.exportHf({ checkpoint: imported, hf: b, tokenizer: none })));
    const files = fs.readdirSync(a).sort();
    expect(files).toEqual(["config.json", "generation_config.json", "model.safetensors"]);
    for (const f of files) expect(Buffer.compare(fs.readFileSync(path.join(a, f)), fs.readFileSync(path.join(b, f)))).toBe(0);
    // the checkpoint's own model.safetensors is the same canonical file
    const step = path.join(imported, "step-00000000", "model.safetensors");
    expect(Buffer.compare(fs.readFileSync(step), fs.readFileSync(path.join(a, "model.safetensors")))).toBe(0);
  });

  // The import's refusals and its staging directory (reliability D4, D10, D13) are tested on
  // HuggingFace.importRun in libs/eval/test/HuggingFace.test.ts.

  it("bad input: another tokenizer, a missing or corrupt checkpoint, a malformed task line", async () => {
    const other = path.join(root, "other-run");
    await run(provide(saveCheckpoint(other, 1, "f".repeat(64))));
    await run(TokenizerFiles.save(other, { kind: "bytes" }));
    const mismatch = await runTestFailure(provide(Handlers.ppl(pplOptions({ checkpoint: other, data: Option.some(dataDir) }))));
    expect(mismatch).toMatchObject({ _tag: "TokenizerMismatch" });
    expect((mismatch as Error).message).toMatch(/tokenizer hash: the checkpoint was trained with f{64}, the tokenizer "bytes" has/);

    const missing = await runTestFailure(provide(Handlers.ppl(pplOptions({ checkpoint: path.join(root, "nope") }))));
    expect(missing).toMatchObject({ _tag: "CheckpointError", reason: "NotFound" });

    const broken = path.join(root, "broken");
    fs.cpSync(runDir, broken, { recursive: true });
    const model = path.join(broken, "step-00000005", "model.safetensors");
    fs.writeFileSync(model, fs.readFileSync(model).subarray(0, 100));
    expect(await runTestFailure(provide(Handlers.ppl(pplOptions({ checkpoint: broken }))))).toMatchObject({ _tag: "CheckpointError", reason: "Corrupt" });

    const bad = path.join(__dirname, "..", "..", "..", "libs", "eval", "test", "fixtures", "bad.jsonl");
    const t = { checkpoint: runDir, tasks: [bad], data: none, tokenizer: none, skipBad: false, batchSize: 8, clozeItems: 4, seed: 0, backend: "cpu" as const, json: true };
    expect(await runTestFailure(provide(Handlers.tasks(t)))).toMatchObject({ _tag: "TaskError", line: 2, reason: "MalformedJson" });
    const skipped = await run(provide(Handlers.tasks({ ...t, skipBad: true })));
    expect([skipped[0].examples, skipped[0].skipped]).toEqual([1, 2]);
  });
});
