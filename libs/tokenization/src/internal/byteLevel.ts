/**
 * GPT-2's byte-to-unicode table, as used by Hugging Face's ByteLevel pre-tokenizer and decoder:
 * every byte maps to one printable code point, so a byte string can be stored as a JSON string key
 * in `tokenizer.json`. Printable Latin-1 bytes map to themselves; the other 68 bytes map to
 * U+0100 + n in byte order.
 */
export const byteToUnicode: ReadonlyArray<string> = (() => {
  const table = new Array<string>(256);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + next++);
  }
  return table;
})();

/** The byte-level string of a byte sequence (one table character per byte). */
export const bytesToSymbols = (bytes: ArrayLike<number>): string => {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += byteToUnicode[bytes[i]];
  return s;
};
