/**
 * The safetensors reader on untrusted bytes (reliability issue, D3): random files, valid files with
 * bytes flipped, cut short or given another header length, and random headers. Whatever the
 * input, `decode` returns (never throws) either a SafetensorsError with a short message or tensors
 * whose bytes the input holds (no allocation beyond the file), and `readFile` agrees with it on
 * disk. Special files (a FIFO, /dev/zero) are refused at once instead of hanging.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeFileSystem } from "@effect/platform-node";
import { Cause, Effect, Either, Exit, Option } from "effect";
import fc from "fast-check";
import { Safetensors, SafetensorsError } from "../src";

jest.setTimeout(120_000);

/** A valid file from a few small tensors of any dtype. */
const validFile = fc
  .dictionary(
    fc.string({ minLength: 1, maxLength: 6 }).filter((n) => n !== "__metadata__"),
    fc.tuple(fc.constantFrom(...Safetensors.dtypes), fc.array(fc.nat(3), { maxLength: 3 })),
    { maxKeys: 4 },
  )
  .map((spec) => {
    const tensors: Record<string, Safetensors.Tensor> = {};
    for (const [name, [dtype, shape]] of Object.entries(spec)) {
      const n = shape.reduce((a, b) => a * b, 1);
      tensors[name] = { dtype, shape, data: new (ctorOf(dtype))(n) };
    }
    return Safetensors.encode(tensors, { format: "pt" });
  });

const ctorOf = (d: Safetensors.Dtype): new (n: number) => Safetensors.TensorData => {
  const bytes = Safetensors.bytesPerElement(d);
  if (d === "I64") return BigInt64Array;
  if (d === "U64") return BigUint64Array;
  if (d === "F64") return Float64Array;
  if (d === "F32") return Float32Array;
  if (d === "I32") return Int32Array;
  if (d === "U32") return Uint32Array;
  if (d === "I16") return Int16Array;
  if (d === "I8") return Int8Array;
  return bytes === 2 ? Uint16Array : Uint8Array;
};

const le64 = (n: bigint): Uint8Array => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
};

const concat = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => Buffer.concat(parts);

/** Header values chosen to hit every check, plus anything JSON can say. */
const weird = fc.oneof(
  fc.integer({ min: -3, max: 64 }),
  fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, 1e308, -0, 0.5, Number.MAX_SAFE_INTEGER),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(...Safetensors.dtypes, "F12", ""),
  fc.constant(null),
  fc.boolean(),
);
const entry = fc.record(
  {
    dtype: fc.oneof(fc.constantFrom(...Safetensors.dtypes), weird),
    shape: fc.oneof(fc.array(fc.oneof(fc.nat(4), weird), { maxLength: 4 }), weird, fc.constant(new Array(5000).fill(1))),
    data_offsets: fc.oneof(fc.tuple(fc.nat(64), fc.nat(64)), fc.array(weird, { maxLength: 3 }), weird),
  },
  { requiredKeys: [] },
);
const header = fc.oneof(
  fc.dictionary(fc.oneof(fc.string({ maxLength: 6 }), fc.constant("__metadata__"), fc.constant("n".repeat(3000))), fc.oneof(entry, fc.json()), { maxKeys: 5 }),
  fc.json(),
);
const randomHeaderFile = fc
  .tuple(header, fc.uint8Array({ maxLength: 64 }), fc.integer({ min: -4, max: 4 }))
  .map(([h, data, lengthSkew]) => {
    const json = new TextEncoder().encode(typeof h === "string" ? h : JSON.stringify(h));
    return concat(le64(BigInt(Math.max(0, json.length + lengthSkew))), json, data);
  });

const mutated = fc.oneof(
  // flipped bytes
  fc.tuple(validFile, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })).map(([bytes, flips]) => {
    const out = bytes.slice();
    for (const [at, v] of flips) out[at % out.length] = v;
    return out;
  }),
  // cut short
  fc.tuple(validFile, fc.nat()).map(([bytes, n]) => bytes.subarray(0, n % (bytes.length + 1))),
  // another header length, up to the largest u64
  fc.tuple(validFile, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).map(([bytes, n]) => concat(le64(n), bytes.subarray(8))),
  // bytes appended
  fc.tuple(validFile, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([bytes, extra]) => concat(bytes, extra)),
  randomHeaderFile,
  fc.uint8Array({ maxLength: 256 }),
);

const reasons: ReadonlyArray<string> = SafetensorsError.fields.reason.literals;

/** The property every input must keep; returns the decode result for comparison. */
const checkDecode = (bytes: Uint8Array): Either.Either<Safetensors.Contents, SafetensorsError> => {
  const started = performance.now();
  const r = Safetensors.decode(bytes, "fuzz.safetensors");
  expect(performance.now() - started).toBeLessThan(1000);
  if (Either.isLeft(r)) {
    expect(r.left).toBeInstanceOf(SafetensorsError);
    expect(reasons).toContain(r.left.reason);
    expect(r.left.message.startsWith("fuzz.safetensors: ")).toBe(true);
    expect(r.left.message.length).toBeLessThan(1000);
  } else {
    const held = Object.values(r.right.tensors).reduce((n, t) => n + t.data.byteLength, 0);
    expect(held).toBeLessThanOrEqual(bytes.length);
  }
  return r;
};

describe("Safetensors.decode on untrusted bytes", () => {
  it("valid files round-trip", () => {
    fc.assert(
      fc.property(validFile, (bytes) => {
        const r = checkDecode(bytes);
        expect(Either.isRight(r)).toBe(true);
        if (Either.isRight(r)) expect(Buffer.compare(Safetensors.encode(r.right.tensors, r.right.metadata), bytes)).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it("random and mutated files give tensors the file holds or a short tagged error, never a throw", () => {
    fc.assert(fc.property(mutated, (bytes) => void checkDecode(bytes)), { numRuns: 2000 });
  });
});

describe("Safetensors.readFile on untrusted files", () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), "safetensors-fuzz-"))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const readExit = (path: string) => Effect.runPromiseExit(Safetensors.readFile(path).pipe(Effect.provide(NodeFileSystem.layer)));

  it("agrees with decode on every mutated file, failing only with tagged errors", async () => {
    let i = 0;
    await fc.assert(
      fc.asyncProperty(mutated, async (bytes) => {
        const path = join(dir, `f${i++}.safetensors`);
        writeFileSync(path, bytes);
        const expected = Safetensors.decode(bytes, path);
        const exit = await readExit(path);
        rmSync(path);
        if (Exit.isSuccess(exit)) {
          expect(Either.isRight(expected)).toBe(true);
          if (Either.isRight(expected)) expect(exit.value.tensors).toEqual(expected.right.tensors);
        } else {
          expect(Option.getOrUndefined(Cause.failureOption(exit.cause))).toMatchObject({ _tag: "SafetensorsError" });
          expect(Either.isLeft(expected)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it.each<[string, (path: string) => void]>([
    ["a FIFO", (p) => expect(spawnSync("mkfifo", [p]).status).toBe(0)],
    ["a symlink to /dev/zero", (p) => symlinkSync("/dev/zero", p)],
    ["a directory", (p) => mkdirSync(p)],
  ])("refuses %s at once, as a FileError (no caller then hashes it)", async (_what, make) => {
    const path = join(dir, `special-${Math.random().toString(16).slice(2)}.safetensors`);
    make(path);
    const started = performance.now();
    const exit = await readExit(path);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : exit).toMatchObject({
      _tag: "FileError",
      reason: "Unreadable",
      detail: expect.stringMatching(/not a regular file/),
    });
  });
});
