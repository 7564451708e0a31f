import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect } from "effect";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Bpe, TokenizerFiles } from "../src";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-tokenizer-files-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const roundTrip = (d: string, text: string) =>
  Effect.scoped(Effect.map(TokenizerFiles.load(d), (t) => ({ ids: t.encode(text), back: t.decode(t.encode(text)), hash: t.hash })));

describe("TokenizerFiles", () => {
  it("stores built-in tokenizers as a spec and loads them back", async () => {
    const d = path.join(dir, "bytes");
    await runTest(TokenizerFiles.save(d, { kind: "bytes" }));
    const r = await runTest(roundTrip(d, "héllo"));
    expect(r.back).toBe("héllo");
    expect(Array.from(r.ids)).toEqual([104, 195, 169, 108, 108, 111]);
    const g = path.join(dir, "gpt2");
    await runTest(TokenizerFiles.save(g, { kind: "tiktoken", encoding: "gpt2" }));
    expect(Array.from((await runTest(roundTrip(g, "Hello world"))).ids)).toEqual([15496, 995]);
  });

  it("stores a trained BPE as tokenizer.json with the same hash, and copies it", async () => {
    const text = "the cat sat on the mat. the cat ate the rat. ".repeat(50);
    const model = await runTest(Bpe.train([text], { vocabSize: 270 }));
    const d = path.join(dir, "bpe");
    await runTest(TokenizerFiles.save(d, { kind: "bpe", model }));
    expect(fs.existsSync(path.join(d, TokenizerFiles.TOKENIZER_JSON))).toBe(true);
    const r = await runTest(roundTrip(d, "the cat"));
    expect(r.hash).toBe(model.hash);
    const run = path.join(dir, "run");
    fs.mkdirSync(run);
    await runTest(TokenizerFiles.copy(d, run));
    expect((await runTest(roundTrip(run, "the cat"))).hash).toBe(model.hash);
  });

  // reliability D2: saveTokenizer deleted the directory's tokenizer before it knew the new one could
  // be written (a missing file: left no tokenizer at all).
  it("replaces a stored tokenizer only once the new one is written; a failed save keeps the old", async () => {
    const d = path.join(dir, "replace");
    await runTest(TokenizerFiles.save(d, { kind: "bytes" }));
    const before = (await runTest(roundTrip(d, "x"))).hash;
    const e = await runTestFailure(TokenizerFiles.save(d, { kind: "file", path: path.join(dir, "no-such-tokenizer.json") }));
    expect(e).toMatchObject({ _tag: "FileError", reason: "NotFound" });
    expect(fs.readdirSync(d)).toEqual([TokenizerFiles.TOKENIZER_SPEC]);
    expect((await runTest(roundTrip(d, "x"))).hash).toBe(before);
    // A kind replacing another leaves only the new kind's files.
    const model = await runTest(Bpe.train(["the cat sat on the mat. ".repeat(20)], { vocabSize: 262 }));
    await runTest(TokenizerFiles.save(d, { kind: "bpe", model }));
    expect(fs.readdirSync(d).sort()).toEqual([TokenizerFiles.TOKENIZER_JSON, TokenizerFiles.TOKENIZER_CONFIG]);
    await runTest(TokenizerFiles.save(d, { kind: "tiktoken", encoding: "gpt2" }));
    expect(fs.readdirSync(d)).toEqual([TokenizerFiles.TOKENIZER_SPEC]);
    // copyTokenizer makes the target's tokenizer the source's, stale files of another kind removed.
    await runTest(TokenizerFiles.copy(path.join(dir, "bytes"), d));
    expect(fs.readdirSync(d)).toEqual([TokenizerFiles.TOKENIZER_SPEC]);
    expect((await runTest(roundTrip(d, "x"))).hash).toBe(before);
  });

  it("names the directory when no tokenizer is stored", async () => {
    const e = await runTestFailure(Effect.scoped(TokenizerFiles.load(path.join(dir, "nothing"))));
    expect(e.message).toMatch(/nothing.*tokenizer\.json or tokenizer\.spec\.json/s);
  });
});
