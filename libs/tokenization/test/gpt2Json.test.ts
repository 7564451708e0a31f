import { Option } from "effect";
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";
import { Tokenizer as NativeTokenizer } from "tokenizers";
import { Bpe, HuggingFace, Tiktoken, type Tokenizer } from "../src";
import { bytesToSymbols } from "../src/internal/byteLevel";
import { acquire } from "./scoped";
import { book, firstDifference, paragraphs, tricky } from "./texts";

/**
 * GPT-2's tokenizer.json rebuilt from the r50k rank table that gpt-tokenizer ships (the
 * conversion transformers uses for tiktoken files): the merge that creates token r is found by
 * running BPE on r's bytes with only lower-ranked tokens, which leaves exactly two parts. Its
 * byte ids are not the byte values (id 0 is "!"), unlike ours, so this checks the encoder on a
 * real 50k vocabulary with a permuted byte alphabet, against tiktoken's ids and Rust's.
 */
const gpt2Json = () => {
  const encoder = new TextEncoder();
  const bytes = ranks.map((t) => (typeof t === "string" ? encoder.encode(t) : Uint8Array.from(t)));
  const rankOf = new Map(bytes.map((b, r) => [String.fromCharCode(...b), r]));
  const mergeOf = (r: number): [number, number] => {
    let parts = Array.from(bytes[r], (b) => String.fromCharCode(b));
    for (;;) {
      let best = -1;
      let at = -1;
      for (let i = 0; i + 1 < parts.length; i++) {
        const merged = rankOf.get(parts[i] + parts[i + 1]);
        if (merged !== undefined && merged < r && (best < 0 || merged < best)) [best, at] = [merged, i];
      }
      if (at < 0) break;
      parts = [...parts.slice(0, at), parts[at] + parts[at + 1], ...parts.slice(at + 2)];
    }
    if (parts.length !== 2) throw new Error(`token ${r} does not split in two`);
    return [rankOf.get(parts[0])!, rankOf.get(parts[1])!];
  };
  const symbols = bytes.map((b) => bytesToSymbols(b));
  const vocab: Record<string, number> = Object.fromEntries(symbols.map((s, r) => [s, r]));
  vocab["<|endoftext|>"] = 50256;
  const merges = [];
  for (let r = 256; r < bytes.length; r++) merges.push(mergeOf(r).map((p) => symbols[p]));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    // GPT-2's file spells "no prefix/suffix" as empty strings.
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, vocab, merges },
  };
};

describe("GPT-2's tokenizer.json", () => {
  let ours: Tokenizer.Service;
  let tiktoken: Tokenizer.Service;
  let native: NativeTokenizer;
  const releases: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    const json = gpt2Json();
    expect(Option.isSome(Bpe.fromJson(json))).toBe(true);
    native = NativeTokenizer.fromString(JSON.stringify(json));
    const a = await acquire(HuggingFace.fromJson(json, undefined, "gpt2 tokenizer.json"));
    const b = await acquire(Tiktoken.make("gpt2"));
    [ours, tiktoken] = [a.value, b.value];
    releases.push(a.release, b.release);
  });
  afterAll(() => Promise.all(releases.map((r) => r())));

  const texts = [...paragraphs(book("melville-moby_dick.txt").replace(/\r\n/g, "\n"), 200), ...tricky.filter((t) => !t.includes("<|"))];

  it("takes the byte-level path and maps the specials like the Tiktoken tokenizer", () => {
    expect(ours.special).toEqual(tiktoken.special);
    expect(ours.vocabSize).toBe(tiktoken.vocabSize);
  });

  it("encodes with tiktoken's ids and Rust's ids", async () => {
    const expected = texts.map(tiktoken.encode);
    expect(firstDifference(texts.map(ours.encode), expected)).toBe("");
    const rust = (await native.encodeBatch(texts)).map((e) => Uint32Array.from(e.getIds()));
    expect(firstDifference(rust, expected)).toBe("");
  });

  it("decodes like the Tiktoken tokenizer", () => {
    for (const text of texts.slice(0, 50)) expect(ours.decode(tiktoken.encode(text))).toBe(text);
  });
});
