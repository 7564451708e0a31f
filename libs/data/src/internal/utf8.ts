/**
 * Strict UTF-8 decoding that can say where it failed. TextDecoder's `fatal` mode rejects bad input
 * but gives no position, so on failure we scan for the first invalid byte ourselves (cold path).
 */
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Byte offset of the first byte that does not start or continue a valid UTF-8 sequence, or -1. */
export const firstInvalidByte = (b: Uint8Array): number => {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [need, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [need, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [need, min] = [3, 0x10000];
    else return i;
    if (i + need >= b.length) return i; // sequence cut off by the end of the input
    let cp = c & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if ((d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are all invalid UTF-8.
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += need + 1;
  }
  return -1;
};

export type Decoded = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly offset: number };

/** Decode UTF-8 strictly; a leading byte-order mark is kept (callers strip it where it is metadata). */
export const decodeUtf8 = (bytes: Uint8Array): Decoded => {
  try {
    return { ok: true, text: strict.decode(bytes) };
  } catch {
    return { ok: false, offset: Math.max(0, firstInvalidByte(bytes)) };
  }
};

/** Show the bytes around an offset as hex, for error messages. */
export const hexAround = (bytes: Uint8Array, offset: number): string =>
  Array.from(bytes.subarray(offset, Math.min(bytes.length, offset + 4)), (x) => x.toString(16).padStart(2, "0")).join(" ");
