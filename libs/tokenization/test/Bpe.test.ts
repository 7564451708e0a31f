import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { Effect, Stream } from "effect";
import fc from "fast-check";
import { Tokenizer as NativeTokenizer } from "tokenizers";
import { mulberry32, runTest, runTestFailure } from "@patchlm/testing";
import { Bpe, HuggingFace, type Tokenizer } from "../src";
import { acquire } from "./scoped";
import { book, firstDifference, paragraphs, smallCorpus, tricky, unicodeText } from "./texts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-bpe-"));
let model: Bpe.Model;
let tok: Tokenizer.Service;
let release: () => Promise<void>;
let native: NativeTokenizer;
let js: JsTokenizer;

beforeAll(async () => {
  model = await runTest(Bpe.train(smallCorpus(), { vocabSize: 1024 }));
  await runTest(Bpe.save(model, dir));
  ({ value: tok, release } = await acquire(Bpe.make(model)));
  native = NativeTokenizer.fromFile(path.join(dir, "tokenizer.json"));
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  js = new JsTokenizer(json, config);
});
afterAll(() => release());

// Long words over a small alphabet: many equal-rank candidates, merged through the heap path.
const rand = mulberry32(7);
const longWords = [3, 4, 26].map((letters) =>
  Array.from({ length: 3000 }, () => String.fromCharCode(97 + Math.floor(rand() * letters))).join(""),
);
// Text the tokenizer was not trained on.
const unseen = [...paragraphs(book("austen-persuasion.txt"), 150), ...tricky, ...longWords];

describe("Bpe.train", () => {
  it("builds the requested vocabulary: bytes at 0..255, specials at 256..258, merges after", () => {
    expect(tok.vocabSize).toBe(1024);
    expect(tok.special).toEqual({ bos: 256, eos: 257, pad: 258 });
    expect(tok.name).toBe("bpe-1024");
    const m = model.json.model as { vocab: Record<string, number>; merges: Array<[string, string]> };
    expect(Object.keys(m.vocab)).toHaveLength(1024);
    expect(m.merges).toHaveLength(1024 - 259);
    // Byte-level alphabet: "A" is byte 65, "Ġ" is the space (byte 32), "Ċ" the newline (byte 10).
    expect([m.vocab["A"], m.vocab["Ġ"], m.vocab["Ċ"], m.vocab["<|eos|>"]]).toEqual([65, 32, 10, 257]);
    expect(native.getVocabSize(true)).toBe(1024);
  });

  it("is deterministic: the same texts in any order give the same document and hash", async () => {
    const again = await runTest(Bpe.train([...smallCorpus()].reverse(), { vocabSize: 1024 }));
    expect(again.hash).toBe(model.hash);
    expect(JSON.stringify(again.json)).toBe(JSON.stringify(model.json));
  });

  it("trains the same model from a stream of texts", async () => {
    const streamed = await runTest(Bpe.trainStream(Stream.fromIterable(smallCorpus()), { vocabSize: 1024 }));
    expect(streamed.hash).toBe(model.hash);
  });

  it("fails with CorpusTooSmall when the corpus cannot fill the vocabulary", async () => {
    const error = await runTestFailure(Bpe.train(["tiny text, tiny text"], { vocabSize: 4096 }));
    expect(error._tag).toBe("BpeTrainError");
    expect(error.reason).toBe("CorpusTooSmall");
    expect(error.message).toMatch(/requested vocabSize 4096/);
  });

  it("rejects invalid options, naming each problem", async () => {
    const error = await runTestFailure(
      Bpe.train(["x"], { vocabSize: 100, minFrequency: 0, specialTokens: { bos: "<s>", eos: "<s>", pad: "" } }),
    );
    expect(error.reason).toBe("InvalidOptions");
    expect(error.message).toMatch(/vocabSize must be an integer from 259/);
    expect(error.message).toMatch(/minFrequency/);
    expect(error.message).toMatch(/distinct and non-empty/);
  });
});

describe("Bpe tokenizer.json", () => {
  it("gives identical ids in tokenizers (Rust), tokenizers.js and our encoder", async () => {
    const nativeIds = (await native.encodeBatch(unseen)).map((e) => e.getIds());
    const mismatches = unseen.flatMap((text, i) => {
      const ours = Array.from(tok.encode(text));
      const theirs = js.encode(text, { add_special_tokens: false }).ids;
      // Special-token strings are text for us; both libraries match them (documented difference).
      if (text.includes("<|")) return [];
      return ours.join() === nativeIds[i].join() && ours.join() === theirs.join() ? [] : [JSON.stringify(text.slice(0, 60))];
    });
    expect(mismatches).toEqual([]);
  });

  it("decodes like both libraries", () => {
    for (const text of unseen.slice(0, 40)) {
      const ids = tok.encode(text);
      expect(js.decode(Array.from(ids), { skip_special_tokens: true })).toBe(tok.decode(ids));
    }
  });

  it("saves a directory that HuggingFace.fromFile loads with the same hash, specials and ids", async () => {
    const { value: loaded, release: done } = await acquire(HuggingFace.fromFile(dir));
    try {
      expect(loaded.hash).toBe(tok.hash);
      expect(loaded.special).toEqual(tok.special);
      expect(loaded.vocabSize).toBe(1024);
      const text = unseen[3];
      expect(Array.from(loaded.encode(text))).toEqual(Array.from(tok.encode(text)));
    } finally {
      await done();
    }
  });
});

describe("Bpe tokenizer", () => {
  it("round-trips any valid Unicode string", () => {
    fc.assert(
      fc.property(unicodeText, (text) => tok.decode(tok.encode(text)) === text),
      { numRuns: 400 },
    );
    for (const text of tricky) expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it("encodes special-token strings in a text as ordinary text", () => {
    const ids = Array.from(tok.encode("a <|eos|> b"));
    expect(ids).not.toContain(257);
    expect(tok.decode(ids)).toBe("a <|eos|> b");
  });

  it("decodes special ids and ids outside the vocabulary to nothing", () => {
    const hello = Array.from(tok.encode("hello"));
    expect(tok.decode([256, ...hello, 257, 258, 5000, -1])).toBe("hello");
  });

  it("encodes a batch on worker threads exactly as one text at a time, long books included", async () => {
    // Over the pool's inline threshold, with one book long enough to be cut into pieces.
    const texts = [book("melville-moby_dick.txt").replace(/\r\n/g, "\n").slice(0, 700_000), ...unseen.slice(0, 50), ""];
    const batch = await runTest(tok.encodeBatch(texts));
    expect(firstDifference(batch, texts.map(tok.encode))).toBe("");
    expect(await runTest(tok.encodeBatch([]))).toEqual([]);
  });

  it("serves concurrent batches (a prefetching reader) with each its own results", async () => {
    const a = [book("shakespeare-hamlet.txt").repeat(2), "first"];
    const b = [book("milton-paradise.txt"), "second"];
    const [ra, rb] = await runTest(Effect.all([tok.encodeBatch(a), tok.encodeBatch(b)], { concurrency: 2 }));
    expect(firstDifference(ra, a.map(tok.encode))).toBe("");
    expect(firstDifference(rb, b.map(tok.encode))).toBe("");
  });
});

describe("Bpe.fromJson", () => {
  it("rejects documents the byte-level encoder does not reproduce", () => {
    const json = model.json as Record<string, unknown>;
    const withPrefixSpace = { ...json, pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, use_regex: true } };
    const withNormalizer = { ...json, normalizer: { type: "Lowercase" } };
    const withNonSpecialAdded = { ...json, added_tokens: [{ id: 5, content: "x", special: false }] };
    for (const doc of [withPrefixSpace, withNormalizer, withNonSpecialAdded, { model: { type: "WordPiece" } }, 42])
      expect(Bpe.fromJson(doc)._tag).toBe("None");
    expect(Bpe.fromJson(json)._tag).toBe("Some");
  });
});

