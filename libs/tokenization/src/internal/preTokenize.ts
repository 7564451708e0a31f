/**
 * GPT-2's pre-tokenization pattern, as Hugging Face's ByteLevel pre-tokenizer applies it.
 *
 * The Rust library evaluates `\s` with Oniguruma, whose whitespace set differs from JavaScript's
 * in two code points: it includes U+0085 (NEL) and excludes U+FEFF (BOM). The trainer spells the
 * set out so that the words it counts are the words the Rust encoder will see.
 */
const WS = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

export const gpt2Pattern = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  "gu",
);

/** Add the pre-tokens ("words") of `text` to a word -> count table. */
export const countWords = (text: string, into: Map<string, number>): void => {
  const re = new RegExp(gpt2Pattern.source, gpt2Pattern.flags);
  for (const match of text.matchAll(re)) {
    const word = match[0];
    into.set(word, (into.get(word) ?? 0) + 1);
  }
};
