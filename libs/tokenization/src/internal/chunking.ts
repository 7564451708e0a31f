/**
 * Split a long text into pieces that encode to exactly the concatenation of their encodings, so
 * one long document can be spread over several workers.
 *
 * A cut goes right after a "\n" whose neighbours on both sides are not whitespace ("word\nWord").
 * Under GPT-2's and cl100k's split patterns no pre-token spans that newline and the character
 * after it, and the pre-tokens before it do not depend on what follows (the only lookaheads,
 * `\s+(?!\S)` and cl100k's `\s+$`, see a lone "\n" either way), so encoding stops and restarts at
 * the cut as if it were not there. Whitespace here is the union of JavaScript's and Oniguruma's
 * sets, so a cut is safe under both engines. Texts without such a newline stay whole.
 */
export const safeChunks = (text: string, size: number): Array<string> => {
  if (text.length <= size) return [text];
  const chunks: Array<string> = [];
  let from = 0;
  while (text.length - from > size) {
    const cut = findCut(text, from + size);
    if (cut < 0) break;
    chunks.push(text.slice(from, cut));
    from = cut;
  }
  chunks.push(text.slice(from));
  return chunks;
};

const isSpace = (code: number): boolean =>
  (code >= 0x09 && code <= 0x0d) ||
  code === 0x20 ||
  code === 0x85 ||
  code === 0xa0 ||
  code === 0x1680 ||
  (code >= 0x2000 && code <= 0x200a) ||
  code === 0x2028 ||
  code === 0x2029 ||
  code === 0x202f ||
  code === 0x205f ||
  code === 0x3000 ||
  code === 0xfeff;

/** First index i >= at with text[i-1] = "\n" and text[i-2], text[i] not whitespace; -1 if none. */
const findCut = (text: string, at: number): number => {
  for (let nl = text.indexOf("\n", Math.max(1, at - 1)); nl >= 0; nl = text.indexOf("\n", nl + 1)) {
    const i = nl + 1;
    if (nl >= 1 && i < text.length && !isSpace(text.charCodeAt(nl - 1)) && !isSpace(text.charCodeAt(i))) return i;
  }
  return -1;
};
