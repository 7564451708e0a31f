import { Effect, Either } from "effect";
import { FileError } from "@patchlm/core";
import { readFileBytes } from "./internal/files";

/**
 * Reading text files without silent mojibake. UTF-8 is checked strictly: the first invalid byte
 * fails the read with `FileError` reason `NotUtf8`, naming the file and the byte offset. Latin-1
 * is only ever used when asked for.
 */

export interface ReadOptions {
  /**
   * "utf8" (default): strict UTF-8. "latin1": ISO-8859-1, every byte to the code point of the
   * same value, which never fails and loses nothing. (Not `TextDecoder("latin1")`: the WHATWG
   * Encoding standard maps that label to windows-1252, which remaps bytes 0x80-0x9F.)
   */
  readonly encoding?: "utf8" | "latin1";
  /** Turn CRLF line ends into LF. Default false. Lone CR is left alone. */
  readonly normalizeNewlines?: boolean;
}

/** Read and decode a text file. A UTF-8 byte order mark at the start is dropped. */
export const readTextFile = (file: string, options: ReadOptions = {}): Effect.Effect<string, FileError> =>
  readFileBytes(file).pipe(
    Effect.flatMap((bytes) => decodeText(bytes, file, options)),
    Effect.withSpan("TextFile.readTextFile", { attributes: { file } }),
  );

/** Decode bytes already in memory, with the rules of `readTextFile`; `source` names them in errors. */
export const decodeText = (bytes: Uint8Array, source: string, options: ReadOptions = {}): Either.Either<string, FileError> => {
  let text: string;
  if (options.encoding === "latin1") {
    text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      const offset = firstInvalidUtf8(bytes);
      const shown = Array.from(bytes.subarray(offset, offset + 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
      return Either.left(
        new FileError({
          path: source,
          reason: "NotUtf8",
          detail: `invalid UTF-8 at byte offset ${offset} (bytes ${shown}); if the file is Latin-1, read it with encoding "latin1"`,
        }),
      );
    }
  }
  return Either.right(options.normalizeNewlines ? text.replace(/\r\n/g, "\n") : text);
};

/**
 * Offset of the first byte of the first ill-formed UTF-8 sequence (Unicode Table 3-7: no overlong
 * forms, no surrogates, nothing above U+10FFFF, no truncated sequence), or -1 if all are valid.
 */
export const firstInvalidUtf8 = (bytes: Uint8Array): number => {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    // Truncated at the end of the file.
    if (i + need >= n) return i;
    if (bytes[i + 1] < lo || bytes[i + 1] > hi) return i;
    for (let k = 2; k <= need; k++) if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return i;
    i += need + 1;
  }
  return -1;
};
