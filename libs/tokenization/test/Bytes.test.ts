import fc from "fast-check";
import { runTest } from "@patchlm/testing";
import { Bytes } from "../src";
import { tricky, unicodeText } from "./texts";

const tok = Bytes.make();

describe("Bytes", () => {
  it("maps each UTF-8 byte to its value and puts the specials right after", () => {
    expect(Array.from(tok.encode("hé€😀"))).toEqual([104, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]);
    expect(tok.special).toEqual({ bos: 256, eos: 257, pad: 258 });
    expect(tok.vocabSize).toBe(259);
    expect(tok.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("round-trips any valid Unicode string, a leading BOM included", () => {
    fc.assert(fc.property(unicodeText, (text) => tok.decode(tok.encode(text)) === text), { numRuns: 500 });
    for (const text of tricky) expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it("decodes specials and ids outside the vocabulary to nothing", () => {
    expect(tok.decode([256, 104, 105, 257, 258, 300, -1])).toBe("hi");
  });

  it("encodes a batch like one text at a time", async () => {
    const texts = ["a", "", "日本"];
    const batch = await runTest(tok.encodeBatch(texts));
    expect(batch.map((ids) => Array.from(ids))).toEqual(texts.map((t) => Array.from(tok.encode(t))));
  });
});
