import { createHash } from "node:crypto";
import { endianness } from "node:os";
import { FileSystem } from "@effect/platform";
import { Effect, Either, Schema } from "effect";
import { FileError } from "@patchlm/core";
import { fileError, readExactly, writeSynced } from "./internal/Io";

/**
 * The safetensors format (Hugging Face), written and read by the project:
 *
 *   u64 LE header length N | N bytes of JSON header, padded with spaces to a multiple of 8 |
 *   raw little-endian tensor bytes, row-major, tensor after tensor with no gaps.
 *
 * Header: {"__metadata__": {string: string} (optional), "<name>": {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]}, ...}, offsets relative to the first byte after the header.
 *
 * Output is canonical and matches the reference serializer byte for byte: tensors ordered by
 * descending dtype alignment, then by name (so every tensor starts aligned to its element size),
 * compact JSON with keys in the order dtype, shape, data_offsets, `__metadata__` first with its
 * keys sorted. Reading accepts any order and re-encoding gives the canonical bytes, so
 * export → import → export is byte-identical.
 */

/** Element types, in the reference implementation's alignment order (smallest first). */
export const dtypes = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"] as const;
export type Dtype = (typeof dtypes)[number];

/** Element storage per dtype. 16-bit and 8-bit floats are kept as their raw bit patterns. */
export type TensorData =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

type ArrayCtor = { new (n: number): TensorData; readonly BYTES_PER_ELEMENT: number; readonly name: string };

const storage: Record<Dtype, ArrayCtor> = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  F8_E5M2: Uint8Array,
  F8_E4M3: Uint8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
};

/** Bytes per element of a dtype. */
export const bytesPerElement = (d: Dtype): number => storage[d].BYTES_PER_ELEMENT;

export interface Tensor {
  readonly dtype: Dtype;
  /** Row-major shape; [] is a scalar. */
  readonly shape: ReadonlyArray<number>;
  readonly data: TensorData;
}

/** Tensors by name. */
export type TensorMap = Readonly<Record<string, Tensor>>;

export interface Contents {
  readonly tensors: TensorMap;
  /** The `__metadata__` map, or undefined when the file has none. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

/** A float32 tensor. */
export const f32 = (shape: ReadonlyArray<number>, data: Float32Array): Tensor => ({ dtype: "F32", shape, data });
/** An int32 tensor. */
export const i32 = (shape: ReadonlyArray<number>, data: Int32Array): Tensor => ({ dtype: "I32", shape, data });
/** An int64 tensor (e.g. an optimizer step counter). */
export const i64 = (shape: ReadonlyArray<number>, data: BigInt64Array): Tensor => ({ dtype: "I64", shape, data });

/** Float32 arrays by name, as model weights and optimizer slots are held in memory. */
export type Float32Map = Readonly<Record<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>>;

/** Plain float32 arrays as F32 tensors. */
export const fromFloat32 = (m: Float32Map): TensorMap =>
  Object.fromEntries(Object.entries(m).map(([name, t]) => [name, f32(t.shape, t.data)]));

/** F32 tensors as plain float32 arrays; any other dtype is an error naming the tensor and `path`. */
export const toFloat32 = (m: TensorMap, path: string): Either.Either<Float32Map, SafetensorsError> => {
  const other = Object.entries(m).find(([, t]) => t.dtype !== "F32");
  return other !== undefined
    ? Either.left(new SafetensorsError({ path, reason: "BadEntry", detail: `tensor "${other[0]}" is ${other[1].dtype}, expected F32` }))
    : Either.right(m as Float32Map);
};

/** A safetensors file that fails validation. `reason` names the check, `detail` the tensor and numbers. */
export class SafetensorsError extends Schema.TaggedError<SafetensorsError>()("SafetensorsError", {
  path: Schema.String,
  reason: Schema.Literal(
    "Truncated",
    "BadHeaderLength",
    "BadHeaderJson",
    "BadEntry",
    "UnknownDtype",
    "SizeMismatch",
    "OffsetsOutOfRange",
    "OffsetsOverlap",
    "OffsetsGap",
  ),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.reason}: ${this.detail}`;
  }
}

/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length reads as huge). */
export const MAX_HEADER_BYTES = 100_000_000;

const numel = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1);

/** A header value or name as an error shows it: JSON, cut short (a header may hold megabytes in one key). */
const show = (v: unknown): string => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length <= 80 ? text : `${text.slice(0, 80)}… (${text.length} characters)`;
};

const utf8 = new TextEncoder();
const byteOrder = (a: string, b: string): number => Buffer.compare(utf8.encode(a), utf8.encode(b));

const bytesOf = (data: TensorData): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

const checkTensor = (name: string, t: Tensor): void => {
  const ctor = storage[t.dtype];
  if (ctor === undefined) throw new TypeError(`tensor "${name}": unknown dtype ${String(t.dtype)}`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError(`tensor "${name}": shape [${t.shape.join(",")}] must hold non-negative integers`);
  }
  if (!(t.data instanceof ctor)) throw new TypeError(`tensor "${name}": dtype ${t.dtype} needs a ${ctor.name}, got ${t.data.constructor.name}`);
  if (t.data.length !== numel(t.shape)) {
    throw new TypeError(`tensor "${name}": shape [${t.shape.join(",")}] has ${numel(t.shape)} elements, data has ${t.data.length}`);
  }
};

/**
 * The file as a list of byte chunks: the 8-byte length and padded header, then each tensor's bytes
 * in canonical order (views, not copies). A tensor whose data does not match its dtype and shape is
 * a programmer error and throws a TypeError naming it.
 */
export const encodeParts = (tensors: TensorMap, metadata?: Readonly<Record<string, string>>): Array<Uint8Array> => {
  if (endianness() !== "LE") throw new Error("safetensors stores little-endian bytes; big-endian hosts are not supported");
  const names = Object.keys(tensors);
  for (const n of names) checkTensor(n, tensors[n]);
  const rank = (d: Dtype) => dtypes.indexOf(d);
  names.sort((a, b) => rank(tensors[b].dtype) - rank(tensors[a].dtype) || byteOrder(a, b));
  const fields: Array<string> = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(byteOrder);
    fields.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  let offset = 0;
  for (const n of names) {
    const t = tensors[n];
    const end = offset + t.data.byteLength;
    fields.push(`${JSON.stringify(n)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8.encode(`{${fields.join(",")}}`);
  const padded = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  padded.set(json);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded.length), true);
  return [prefix, padded, ...names.map((n) => bytesOf(tensors[n].data))];
};

/** The whole file in one buffer (see `encodeParts`). */
export const encode = (tensors: TensorMap, metadata?: Readonly<Record<string, string>>): Uint8Array => {
  const parts = encodeParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

interface Entry {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: ReadonlyArray<number>;
  readonly begin: number;
  readonly end: number;
}

interface Header {
  /** Entries ordered by offset. */
  readonly entries: ReadonlyArray<Entry>;
  readonly metadata: Record<string, string> | undefined;
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u);
const isNonNegativeInt = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0;

/** Length of the JSON header from the first 8 bytes, checked against the file size. */
const headerLength = (path: string, prefix: Uint8Array, fileSize: number): Either.Either<number, SafetensorsError> => {
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES) || Number(n) + 8 > fileSize) {
    return Either.left(
      new SafetensorsError({
        path,
        reason: "BadHeaderLength",
        detail: `header length ${n} does not fit a ${fileSize}-byte file (limit ${MAX_HEADER_BYTES})`,
      }),
    );
  }
  return Either.right(Number(n));
};

/** Parse and validate the JSON header: dtypes, shapes, and offsets that tile the data exactly. */
const parseHeader = (path: string, json: Uint8Array, dataSize: number): Either.Either<Header, SafetensorsError> => {
  const fail = (reason: SafetensorsError["reason"], detail: string) => Either.left(new SafetensorsError({ path, reason, detail }));
  let text: string;
  let parsed: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    return fail("BadHeaderJson", "the header is not valid UTF-8");
  }
  if (!text.startsWith("{")) return fail("BadHeaderJson", `the header must start with "{", found ${JSON.stringify(text.slice(0, 16))}`);
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail("BadHeaderJson", `the header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(parsed)) return fail("BadHeaderJson", "the header is not a JSON object");
  let metadata: Record<string, string> | undefined;
  const entries: Array<Entry> = [];
  for (const [name, v] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (!isRecord(v) || !Object.values(v).every((x) => typeof x === "string")) {
        return fail("BadEntry", "__metadata__ must map strings to strings");
      }
      metadata = v as Record<string, string>;
      continue;
    }
    if (!isRecord(v)) return fail("BadEntry", `tensor ${show(name)} is not an object`);
    const { dtype, shape, data_offsets: offsets } = v;
    if (dtype === undefined) return fail("BadEntry", `tensor ${show(name)} has no dtype`);
    if (typeof dtype !== "string" || !(dtypes as ReadonlyArray<string>).includes(dtype)) {
      return fail("UnknownDtype", `tensor ${show(name)} has dtype ${show(dtype)}; known: ${dtypes.join(", ")}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      return fail("BadEntry", `tensor ${show(name)} has shape ${show(shape)}; expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
      return fail("BadEntry", `tensor ${show(name)} has data_offsets ${show(offsets)}; expected [begin, end]`);
    }
    entries.push({ name, dtype: dtype as Dtype, shape, begin: offsets[0], end: offsets[1] });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let previous = "the start of the data";
  for (const e of entries) {
    const where = `tensor ${show(e.name)} data_offsets [${e.begin},${e.end}]`;
    if (e.end < e.begin || e.end > dataSize) return fail("OffsetsOutOfRange", `${where} outside the ${dataSize} data bytes`);
    if (e.begin < at) return fail("OffsetsOverlap", `${where} overlaps ${previous}, which ends at ${at}`);
    if (e.begin > at) return fail("OffsetsGap", `${where} leaves bytes ${at}..${e.begin} after ${previous} unused`);
    const expected = numel(e.shape) * bytesPerElement(e.dtype);
    if (e.end - e.begin !== expected) {
      return fail("SizeMismatch", `${where} holds ${e.end - e.begin} bytes; ${e.dtype} ${show(e.shape).replace(/"/g, "")} needs ${expected}`);
    }
    at = e.end;
    previous = `tensor ${show(e.name)}`;
  }
  if (at !== dataSize) return fail("OffsetsGap", `${dataSize - at} bytes after ${previous} belong to no tensor`);
  return Either.right({ entries, metadata });
};

const allocate = (e: Entry): TensorData => new storage[e.dtype](numel(e.shape));

const contentsOf = (h: Header, data: ReadonlyArray<TensorData>): Contents => {
  const tensors: Record<string, Tensor> = {};
  h.entries.forEach((e, i) => (tensors[e.name] = { dtype: e.dtype, shape: e.shape, data: data[i] }));
  return { tensors, metadata: h.metadata };
};

/** Parse a whole file held in memory; `path` names it in errors. Tensor data is copied (aligned). */
export const decode = (bytes: Uint8Array, path = "<bytes>"): Either.Either<Contents, SafetensorsError> => {
  if (bytes.length < 8) return Either.left(new SafetensorsError({ path, reason: "Truncated", detail: `${bytes.length} bytes, shorter than the 8-byte header length` }));
  return Either.flatMap(headerLength(path, bytes, bytes.length), (n) =>
    Either.map(parseHeader(path, bytes.subarray(8, 8 + n), bytes.length - 8 - n), (h) =>
      contentsOf(
        h,
        h.entries.map((e) => {
          const out = allocate(e);
          bytesOf(out).set(bytes.subarray(8 + n + e.begin, 8 + n + e.end));
          return out;
        }),
      ),
    ),
  );
};

const kindOf = (type: FileSystem.File.Type): string =>
  ({ Directory: "a directory", FIFO: "a FIFO", CharacterDevice: "a character device", BlockDevice: "a block device", Socket: "a socket" })[type as string] ??
  `a file of type ${type}`;

/** File contents plus the sha256 (hex) and size of the bytes read. */
export interface ReadResult extends Contents {
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * Read and validate a file, tensor by tensor (no whole-file buffer, so files above 2 GiB work),
 * hashing every byte on the way. Only a regular file is opened (through symlinks): a FIFO would
 * block the open until a writer comes, a device such as /dev/zero never ends. That refusal is a
 * FileError, not a SafetensorsError, so no caller goes on to hash the file.
 */
export const readFile = Effect.fn("Safetensors.readFile")(function* (path: string) {
  const fs = yield* FileSystem.FileSystem;
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const info = yield* fs.stat(path);
      if (info.type !== "File") {
        return yield* new FileError({ path, reason: "Unreadable", detail: `${kindOf(info.type)}, not a regular file` });
      }
      const file = yield* fs.open(path, { flag: "r" });
      const size = Number((yield* file.stat).size);
      const hash = createHash("sha256");
      const read = (buffer: Uint8Array) =>
        Effect.map(readExactly(file, buffer), (complete) => {
          hash.update(buffer);
          return complete;
        });
      const prefix = new Uint8Array(8);
      if (size < 8 || !(yield* read(prefix))) {
        return yield* new SafetensorsError({ path, reason: "Truncated", detail: `${size} bytes, shorter than the 8-byte header length` });
      }
      const n = yield* headerLength(path, prefix, size);
      const json = new Uint8Array(n);
      yield* read(json);
      const header = yield* parseHeader(path, json, size - 8 - n);
      const data: Array<TensorData> = [];
      for (const e of header.entries) {
        const out = allocate(e);
        if (!(yield* read(bytesOf(out)))) {
          return yield* new SafetensorsError({ path, reason: "Truncated", detail: `the file ended inside tensor ${show(e.name)}` });
        }
        data.push(out);
      }
      return { ...contentsOf(header, data), sha256: hash.digest("hex"), bytes: size } satisfies ReadResult;
    }),
  ).pipe(Effect.catchTag("BadArgument", "SystemError", (e) => Effect.fail(fileError(path, "read")(e))));
});

/**
 * Write tensors (canonical order, see the module comment) to `path`, fsynced. Returns the sha256
 * (hex) and size of what was written.
 */
export const writeFile = Effect.fn("Safetensors.writeFile")(function* (
  path: string,
  tensors: TensorMap,
  metadata?: Readonly<Record<string, string>>,
) {
  const parts = encodeParts(tensors, metadata);
  const hash = createHash("sha256");
  let bytes = 0;
  for (const p of parts) {
    hash.update(p);
    bytes += p.length;
  }
  yield* writeSynced(path, parts);
  return { sha256: hash.digest("hex"), bytes };
});
