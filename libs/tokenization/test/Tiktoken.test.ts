import fc from "fast-check";
import { runTest } from "@patchlm/testing";
import { Tiktoken, type Tokenizer } from "../src";
import { acquire } from "./scoped";
import { book, firstDifference, tricky, unicodeText } from "./texts";

// Reference ids from OpenAI's tiktoken (cookbook "How to count tokens with tiktoken").
const cases = {
  gpt2: {
    ids: { "tiktoken is great!": [83, 1134, 30001, 318, 1049, 0], "hello world": [31373, 995], " the": [262] },
    special: { bos: 50256, eos: 50256, pad: 50257 },
    vocabSize: 50258,
    name: "gpt2",
  },
  cl100k_base: {
    ids: { "tiktoken is great!": [83, 1609, 5963, 374, 2294, 0], "hello world": [15339, 1917], " the": [279] },
    special: { bos: 100257, eos: 100257, pad: 100277 },
    vocabSize: 100278,
    name: "cl100k",
  },
} as const;

describe.each(["gpt2", "cl100k_base"] as const)("Tiktoken %s", (encoding) => {
  const expected = cases[encoding];
  let tok: Tokenizer.Service;
  let release: () => Promise<void>;
  beforeAll(async () => {
    ({ value: tok, release } = await acquire(Tiktoken.make(encoding)));
  });
  afterAll(() => release());

  it("gives tiktoken's ids", () => {
    for (const [text, ids] of Object.entries(expected.ids)) expect(Array.from(tok.encode(text))).toEqual(ids);
  });

  it("uses <|endoftext|> for BOS and EOS and a new id after the vocabulary for PAD", () => {
    expect(tok.special).toEqual(expected.special);
    expect(tok.vocabSize).toBe(expected.vocabSize);
    expect(tok.name).toBe(expected.name);
    expect(tok.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("round-trips any valid Unicode string; special-token strings stay text", () => {
    fc.assert(fc.property(unicodeText, (text) => tok.decode(tok.encode(text)) === text), { numRuns: 100 });
    for (const text of tricky) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(Array.from(tok.encode("<|endoftext|>"))).not.toContain(expected.special.eos);
  });

  it("decodes specials and ids outside the vocabulary to nothing, and never carries bytes between calls", () => {
    const euro = Array.from(tok.encode("€"));
    expect(tok.decode([expected.special.eos, ...tok.encode("hi"), expected.special.pad, 10 ** 7])).toBe("hi");
    // A call that ends inside a character must not leak its bytes into the next call.
    if (euro.length > 1) tok.decode(euro.slice(0, 1));
    expect(tok.decode(tok.encode("ok"))).toBe("ok");
  });

  it("encodes a batch on worker threads exactly as one text at a time", async () => {
    const texts = [book("austen-persuasion.txt").slice(0, 400_000), "", ...tricky];
    const batch = await runTest(tok.encodeBatch(texts));
    expect(firstDifference(batch, texts.map(tok.encode))).toBe("");
  });
});
