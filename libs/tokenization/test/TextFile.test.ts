import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Either } from "effect";
import fc from "fast-check";
import { runTest, runTestFailure } from "@patchlm/testing";
import { TextFile } from "../src";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-textfile-"));
const write = (name: string, bytes: ArrayLike<number> | string): string => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof bytes === "string" ? bytes : Uint8Array.from(bytes));
  return file;
};
const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

describe("TextFile.readTextFile", () => {
  it("reads UTF-8, drops a leading byte order mark, and keeps CRLF unless asked", async () => {
    const file = write("ok.txt", [0xef, 0xbb, 0xbf, ...new TextEncoder().encode("héllo\r\nwörld 😀\r\n")]);
    expect(await runTest(TextFile.readTextFile(file))).toBe("héllo\r\nwörld 😀\r\n");
    expect(await runTest(TextFile.readTextFile(file, { normalizeNewlines: true }))).toBe("héllo\nwörld 😀\n");
  });

  it("fails on Latin-1 bytes, naming the file and the byte offset", async () => {
    // "café au lait" in Latin-1: é is the single byte 0xE9 at offset 3.
    const file = write("latin1.txt", [...ascii("caf"), 0xe9, ...ascii(" au lait")]);
    const error = await runTestFailure(TextFile.readTextFile(file));
    expect(error._tag).toBe("FileError");
    expect(error.reason).toBe("NotUtf8");
    expect(error.path).toBe(file);
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/byte offset 3 \(bytes e9 20 61 75\)/);
  });

  it("decodes Latin-1 explicitly, byte for code point (0x80-0x9F included)", async () => {
    const file = write("latin1b.txt", [...ascii("caf"), 0xe9, 0x0d, 0x0a, 0x85, 0xff]);
    expect(await runTest(TextFile.readTextFile(file, { encoding: "latin1", normalizeNewlines: true }))).toBe("café\n\u0085ÿ");
  });

  it("reports a missing file as NotFound", async () => {
    const error = await runTestFailure(TextFile.readTextFile(path.join(dir, "absent.txt")));
    expect(error.reason).toBe("NotFound");
    expect(error.message).toContain("absent.txt");
  });
});

describe("TextFile.firstInvalidUtf8", () => {
  it.each([
    ["lone continuation byte", [0x61, 0x80], 1],
    ["overlong encoding of '/'", [0x61, 0x62, 0xc0, 0xaf], 2],
    ["overlong three-byte form", [0xe0, 0x80, 0xaf], 0],
    ["UTF-16 surrogate U+D800", [0x41, 0xed, 0xa0, 0x80], 1],
    ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80], 0],
    ["truncated at the end", [0x61, 0x62, 0x63, 0xe2, 0x82], 3],
    ["invalid lead byte 0xF5", [0xf5, 0x80, 0x80, 0x80], 0],
    ["bad second continuation", [0x61, 0xe2, 0x82, 0x41], 1],
  ])("finds the %s", (_name, bytes, offset) => {
    expect(TextFile.firstInvalidUtf8(Uint8Array.from(bytes))).toBe(offset);
  });

  it("agrees with the strict TextDecoder on random bytes, and the prefix before it is valid", () => {
    const strict = new TextDecoder("utf-8", { fatal: true });
    const valid = (b: Uint8Array) => {
      try {
        strict.decode(b);
        return true;
      } catch {
        return false;
      }
    };
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 24 }),
      fc.string({ unit: "binary", maxLength: 12 }).chain((s) =>
        fc.tuple(fc.constant(new TextEncoder().encode(s)), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([b, at, v]) => {
          const copy = Uint8Array.from(b);
          if (copy.length > 0) copy[at % copy.length] = v;
          return copy;
        }),
      ),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        const offset = TextFile.firstInvalidUtf8(b);
        return offset === -1 ? valid(b) : !valid(b) && valid(b.subarray(0, offset));
      }),
      { numRuns: 2000 },
    );
  });

  it("decodeText returns the error as a value for bytes already in memory", () => {
    const result = TextFile.decodeText(Uint8Array.from([0x61, 0xff]), "record 7 of data.jsonl");
    expect(Either.isLeft(result) && result.left.message).toMatch(/record 7 of data\.jsonl: NotUtf8: invalid UTF-8 at byte offset 1/);
  });
});
