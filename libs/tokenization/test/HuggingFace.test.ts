import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect, Option } from "effect";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Bpe, HuggingFace, type Tokenizer } from "../src";
import { resolveSpecials } from "../src/internal/specials";
import { acquire } from "./scoped";
import { book, firstDifference, paragraphs, smallCorpus } from "./texts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-hf-"));
const writeDir = (name: string, files: Record<string, unknown>): string => {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files))
    fs.writeFileSync(path.join(dir, file), typeof content === "string" ? content : JSON.stringify(content));
  return dir;
};

/** A tiny BERT-style WordPiece tokenizer: lowercasing normalizer, [CLS]/[SEP]/[PAD]/[UNK]. */
const wordPiece = () => {
  const words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "##s", "dog", ".", ","];
  return {
    version: "1.0",
    truncation: { direction: "Right", max_length: 3, strategy: "LongestFirst", stride: 0 },
    padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: false },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(words.map((w, i) => [w, i])),
    },
  };
};

let trained: Bpe.Model;
beforeAll(async () => {
  trained = await runTest(Bpe.train(smallCorpus(), { vocabSize: 600 }));
});

describe("HuggingFace.fromFile errors", () => {
  it("names a missing file", async () => {
    const missing = path.join(root, "nope", "tokenizer.json");
    const error = await runTestFailure(Effect.scoped(HuggingFace.fromFile(missing)));
    expect([error._tag, error.reason]).toEqual(["FileError", "NotFound"]);
    expect(error.message).toContain(missing);
  });

  it("names a file that is not JSON, or not a tokenizer", async () => {
    const notJson = writeDir("not-json", { "tokenizer.json": "{ vocab: " });
    const notJsonError = await runTestFailure(Effect.scoped(HuggingFace.fromFile(notJson)));
    expect(notJsonError.reason).toBe("Malformed");
    expect(notJsonError.message).toContain(path.join(notJson, "tokenizer.json"));
    expect(notJsonError.message).toMatch(/not JSON/);

    const notTokenizer = writeDir("not-tokenizer", { "tokenizer.json": { model: { type: "Nonsense" } } });
    const error = await runTestFailure(Effect.scoped(HuggingFace.fromFile(path.join(notTokenizer, "tokenizer.json"))));
    expect(error.reason).toBe("Malformed");
    expect(error.message).toMatch(/tokenizers library cannot load it/);
  });

  it("names a tokenizer_config.json that is broken", async () => {
    const dir = writeDir("bad-config", { "tokenizer.json": trained.json, "tokenizer_config.json": "[1," });
    const error = await runTestFailure(Effect.scoped(HuggingFace.fromFile(dir)));
    expect(error.reason).toBe("Malformed");
    expect(error.message).toContain("tokenizer_config.json");
  });
});

describe("HuggingFace.fromFile on byte-level BPE", () => {
  it("reads GPT-2's older merge format (\"a b\" strings) with the same ids", () => {
    const json = trained.json as { model: { merges: Array<[string, string]> } };
    const old = { ...json, model: { ...json.model, merges: json.model.merges.map(([a, b]) => `${a} ${b}`) } };
    const fromOld = Option.getOrThrow(Bpe.fromJson(old));
    expect(fromOld.table.merges).toEqual(trained.table.merges);
  });

  it("maps specials from tokenizer_config.json before well-known names; PAD never equals EOS", async () => {
    const config = { bos_token: "<|pad|>", eos_token: { content: "<|bos|>" }, pad_token: "<|bos|>" };
    const dir = writeDir("config-specials", { "tokenizer.json": trained.json, "tokenizer_config.json": config });
    const { value: tok, release } = await acquire(HuggingFace.fromFile(dir));
    await release();
    // eos <- config "<|bos|>" (256); bos <- config "<|pad|>" (258); pad named EOS -> new id 600.
    expect(tok.special).toEqual({ bos: 258, eos: 256, pad: 600 });
    expect(tok.vocabSize).toBe(601);
  });
});

describe("HuggingFace.fromFile on other tokenizers (Rust batch, tokenizers.js single)", () => {
  const sample = [...paragraphs(book("chesterton-brown.txt"), 60), "the cat sat on the mat.", "Dogs, cats.", "", "ÜBER façade"];

  const check = async (dir: string) => {
    const { value: tok, release } = await acquire(HuggingFace.fromFile(dir));
    try {
      const batch = await runTest(tok.encodeBatch(sample));
      expect(firstDifference(batch, sample.map(tok.encode))).toBe("");
      return { tok, batch };
    } finally {
      await release();
    }
  };

  it("loads a WordPiece tokenizer: same ids both ways, no truncation, no added specials", async () => {
    const dir = writeDir("wordpiece", { "tokenizer.json": wordPiece() });
    const { tok, batch } = await check(dir);
    expect(tok.name).toBe("wordpiece-14");
    expect(tok.special).toEqual({ bos: 2, eos: 3, pad: 0 } satisfies Tokenizer.SpecialTokens);
    expect(Array.from(tok.encode("The cats sat on a mat."))).toEqual([4, 5, 10, 6, 7, 9, 8, 12]);
    expect(tok.decode([2, 4, 5, 10, 3, 0])).toBe("the cats");
    expect(batch[sample.length - 4].length).toBe(7);
  });

  it("loads a byte-level BPE with a prefix space through the generic path, same ids both ways", async () => {
    const json = { ...trained.json, pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true } };
    expect(Option.isNone(Bpe.fromJson(json))).toBe(true);
    const { tok } = await check(writeDir("prefix-space", { "tokenizer.json": json }));
    expect(tok.special).toEqual(trained.special);
    expect(tok.hash).not.toBe(trained.hash);
  });
});

describe("resolveSpecials", () => {
  const vocab = new Map([
    ["<|endoftext|>", 7],
    ["</s>", 3],
    ["<pad>", 1],
  ]);
  const lookup = (t: string) => vocab.get(t);

  it("prefers the configured names, then the well-known ones", () => {
    expect(resolveSpecials(lookup, 10, {}).special).toEqual({ bos: 3, eos: 3, pad: 1 });
    expect(resolveSpecials(lookup, 10, { eos: "<|endoftext|>" }).special).toEqual({ bos: 7, eos: 7, pad: 1 });
  });

  it("adds ids after the vocabulary for a missing EOS and PAD", () => {
    expect(resolveSpecials(() => undefined, 10, {})).toEqual({ special: { bos: 10, eos: 10, pad: 11 }, vocabSize: 12, added: [10, 11] });
  });
});
