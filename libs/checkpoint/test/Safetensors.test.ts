import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeFileSystem } from "@effect/platform-node";
import { FileSystem } from "@effect/platform";
import { Effect, Either } from "effect";
import { runTestFailure, runTestWith } from "@patchlm/testing";
import { Safetensors, SafetensorsError } from "../src";

const ascii = (s: string): Array<number> => Array.from(Buffer.from(s, "latin1"));
const le64 = (n: number): Array<number> => Array.from({ length: 8 }, (_, i) => (i < 4 ? (n >>> (8 * i)) & 0xff : 0));
// float32 0..5 little-endian, written out by hand: 0 = 00000000, 1 = 3f800000, 2 = 40000000, 3 = 40400000, 4 = 40800000, 5 = 40a00000
const ZERO_TO_FIVE_F32 = [0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40];
const zeroToFive = () => new Float32Array([0, 1, 2, 3, 4, 5]);

/** A file from a header object and data bytes, for feeding the reader hand-made (bad) files. */
const fileOf = (header: object | string, data: Array<number> = []): Uint8Array => {
  const json = typeof header === "string" ? header : JSON.stringify(header);
  return new Uint8Array([...le64(json.length), ...ascii(json), ...data]);
};

const failure = (bytes: Uint8Array): SafetensorsError => {
  const r = Safetensors.decode(bytes, "bad.safetensors");
  if (Either.isRight(r)) throw new Error("expected a SafetensorsError");
  expect(r.left.message).toMatch(/^bad\.safetensors: /);
  return r.left;
};

describe("Safetensors.encode matches Hugging Face's bytes", () => {
  it("writes the u64 header length, compact JSON in dtype/shape/data_offsets order, then raw LE bytes", () => {
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(64); // already a multiple of 8: no padding
    const expected = [...le64(64), ...ascii(header), ...ZERO_TO_FIVE_F32];
    expect(Array.from(Safetensors.encode({ "attn.0": Safetensors.f32([1, 2, 3], zeroToFive()) }))).toEqual(expected);
  });

  it("pads the header with spaces to a multiple of 8 bytes", () => {
    const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(65);
    const expected = [...le64(72), ...ascii(header + " ".repeat(7)), ...ZERO_TO_FIVE_F32];
    expect(Array.from(Safetensors.encode({ attn0: Safetensors.f32([1, 1, 2, 3], zeroToFive()) }))).toEqual(expected);
  });

  it("writes __metadata__ first, and an empty file as {} plus padding", () => {
    expect(Array.from(Safetensors.encode({}))).toEqual([...le64(8), ...ascii("{}      ")]);
    const meta = '{"__metadata__":{"format":"pt"}}';
    expect(Array.from(Safetensors.encode({}, { format: "pt" }))).toEqual([...le64(32), ...ascii(meta)]);
  });

  it("orders tensors by descending dtype alignment, then name, so every tensor starts aligned", () => {
    const bytes = Safetensors.encode({
      b: Safetensors.f32([1], new Float32Array([1])),
      a: { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
      c: Safetensors.i64([1], new BigInt64Array([7n])),
      d: Safetensors.f32([2], new Float32Array([2, 3])),
      e: { dtype: "BF16", shape: [1], data: new Uint16Array([0x3f80]) },
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString()) as Record<string, { data_offsets: [number, number] }>;
    expect(Object.keys(header)).toEqual(["c", "b", "d", "e", "a"]);
    expect(Object.values(header).map((h) => h.data_offsets)).toEqual([[0, 8], [8, 12], [12, 20], [20, 22], [22, 25]]);
    expect(bytes.length).toBe(8 + n + 25);
  });

  it("refuses data that does not match its dtype or shape, naming the tensor", () => {
    expect(() => Safetensors.encode({ w: Safetensors.f32([2, 2], new Float32Array(3)) })).toThrow(/tensor "w": shape \[2,2\] has 4 elements, data has 3/);
    expect(() => Safetensors.encode({ w: { dtype: "F32", shape: [1], data: new Int32Array(1) } })).toThrow(/tensor "w": dtype F32 needs a Float32Array/);
  });
});

describe("Safetensors.decode", () => {
  const tensors: Safetensors.TensorMap = {
    "model.embed_tokens.weight": Safetensors.f32([2, 3], zeroToFive()),
    "model.norm.weight": Safetensors.f32([3], new Float32Array([1, -0.5, 1e-30])),
    step: Safetensors.i64([], new BigInt64Array([123456789012n])),
    ids: Safetensors.i32([2], new Int32Array([-1, 2147483647])),
    mask: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) },
    half: { dtype: "F16", shape: [1], data: new Uint16Array([0x3c00]) },
    empty: Safetensors.f32([0, 4], new Float32Array(0)),
  };

  it("round-trips every dtype and shape, and re-encodes to identical bytes", () => {
    const bytes = Safetensors.encode(tensors, { format: "pt", note: "ü" });
    const back = Either.getOrThrow(Safetensors.decode(bytes));
    expect(back.metadata).toEqual({ format: "pt", note: "ü" });
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      expect(back.tensors[name].dtype).toBe(t.dtype);
      expect(back.tensors[name].shape).toEqual(t.shape);
      expect(back.tensors[name].data).toEqual(t.data);
    }
    expect(Buffer.compare(Safetensors.encode(back.tensors, back.metadata), bytes)).toBe(0);
  });

  it("reads a file in another writer's order (by name, unaligned) and re-encodes it canonically", () => {
    const foreign = fileOf({ a: { dtype: "U8", shape: [1], data_offsets: [0, 1] }, b: { dtype: "F32", shape: [1], data_offsets: [1, 5] } }, [9, 0, 0, 0x80, 0x3f]);
    const back = Either.getOrThrow(Safetensors.decode(foreign));
    expect(Array.from(back.tensors.a.data as Uint8Array)).toEqual([9]);
    expect(Array.from(back.tensors.b.data as Float32Array)).toEqual([1]);
    expect(back.metadata).toBeUndefined();
    const canonical = Safetensors.encode(back.tensors);
    expect(Buffer.from(canonical).toString("latin1")).toContain('{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":');
  });

  it("names what is wrong with a bad file", () => {
    const f32 = (offsets: [number, number], shape = [1]) => ({ dtype: "F32", shape, data_offsets: offsets });
    const cases: Array<[Uint8Array, SafetensorsError["reason"], RegExp]> = [
      [new Uint8Array(5), "Truncated", /5 bytes/],
      [new Uint8Array([...le64(1e9), 0x7b, 0x7d]), "BadHeaderLength", /header length 1000000000 does not fit a 10-byte file/],
      [new Uint8Array([...le64(100), ...ascii("{}")]), "BadHeaderLength", /header length 100/],
      [fileOf("[1,2,3]"), "BadHeaderJson", /must start with "\{"/],
      [fileOf("{nope}"), "BadHeaderJson", /not valid JSON/],
      [new Uint8Array([...le64(3), 0x7b, 0xff, 0x7d]), "BadHeaderJson", /not valid UTF-8/],
      [fileOf({ w: { dtype: "F12", shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), "UnknownDtype", /tensor "w" has dtype "F12"/],
      [fileOf({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), "BadEntry", /tensor "w" has shape \[-1\]/],
      [fileOf({ w: { shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), "BadEntry", /tensor "w" has no dtype/],
      [fileOf({ __metadata__: { a: 1 } }), "BadEntry", /__metadata__ must map strings to strings/],
      [fileOf({ w: f32([0, 8], [2]) }, [0, 0, 0, 0]), "OffsetsOutOfRange", /tensor "w" data_offsets \[0,8\] outside the 4 data bytes/],
      [fileOf({ w: f32([4, 0]) }, [0, 0, 0, 0]), "OffsetsOutOfRange", /\[4,0\]/],
      [fileOf({ v: f32([0, 8], [2]), w: f32([4, 8]) }, new Array(8).fill(0)), "OffsetsOverlap", /tensor "w" data_offsets \[4,8\] overlaps tensor "v"/],
      [fileOf({ w: f32([4, 8]) }, new Array(8).fill(0)), "OffsetsGap", /leaves bytes 0\.\.4/],
      [fileOf({ w: f32([0, 4]) }, new Array(6).fill(0)), "OffsetsGap", /2 bytes after tensor "w" belong to no tensor/],
      [fileOf({ w: f32([0, 4], [2]) }, [0, 0, 0, 0]), "SizeMismatch", /holds 4 bytes; F32 \[2\] needs 8/],
    ];
    for (const [bytes, reason, detail] of cases) {
      const e = failure(bytes);
      expect([e.reason, e.detail]).toEqual([reason, expect.stringMatching(detail)]);
    }
  });
});

describe("Safetensors float32 maps", () => {
  it("converts plain float32 arrays to F32 tensors and back, refusing other dtypes", () => {
    const plain = { "w.exp_avg": { shape: [2], data: new Float32Array([1, 2]) } };
    const tensors = Safetensors.fromFloat32(plain);
    expect(tensors["w.exp_avg"]).toEqual({ dtype: "F32", shape: [2], data: new Float32Array([1, 2]) });
    expect(Either.getOrThrow(Safetensors.toFloat32(tensors, "o.safetensors"))).toEqual(tensors);
    const mixed = { ...tensors, step: Safetensors.i64([], new BigInt64Array([1n])) };
    const r = Safetensors.toFloat32(mixed, "o.safetensors");
    expect(Either.isLeft(r) && r.left).toMatchObject({ reason: "BadEntry", detail: 'tensor "step" is I64, expected F32', path: "o.safetensors" });
  });
});

describe("Safetensors.readFile / writeFile", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "safetensors-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const run = runTestWith(NodeFileSystem.layer);
  const provideFs = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem>) => Effect.provide(e, NodeFileSystem.layer);

  it("writes the same bytes as encode, returns their sha256, and reads them back", async () => {
    const path = join(dir, "m.safetensors");
    const tensors = { w: Safetensors.f32([2, 3], zeroToFive()), n: Safetensors.i64([1], new BigInt64Array([5n])) };
    const written = await run(Safetensors.writeFile(path, tensors, { format: "pt" }));
    const onDisk = readFileSync(path);
    expect(Buffer.compare(onDisk, Safetensors.encode(tensors, { format: "pt" }))).toBe(0);
    expect(written).toEqual({ sha256: createHash("sha256").update(onDisk).digest("hex"), bytes: onDisk.length });
    const read = await run(Safetensors.readFile(path));
    expect(read.sha256).toBe(written.sha256);
    expect(read.bytes).toBe(onDisk.length);
    expect(Array.from(read.tensors.w.data as Float32Array)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(read.tensors.n.data).toEqual(new BigInt64Array([5n]));
  });

  it("fails on a truncated file or a missing one, naming it", async () => {
    const path = join(dir, "cut.safetensors");
    const bytes = Safetensors.encode({ w: Safetensors.f32([2, 3], zeroToFive()) });
    writeFileSync(path, bytes.subarray(0, bytes.length - 4));
    const e = await runTestFailure(Safetensors.readFile(path).pipe(provideFs));
    expect(e).toMatchObject({ _tag: "SafetensorsError", path, reason: "OffsetsOutOfRange" });
    const missing = await runTestFailure(Safetensors.readFile(join(dir, "none")).pipe(provideFs));
    expect(missing).toMatchObject({ _tag: "FileError", reason: "NotFound" });
  });
});

