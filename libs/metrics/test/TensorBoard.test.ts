import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeFileSystem } from "@effect/platform-node";
import { Effect, Logger } from "effect";
import { runTestWith } from "@patchlm/testing";
import { MetricRecord, MetricsSink, TensorBoard } from "../src";

/** Bit-at-a-time CRC-32C, independent of the library's table-driven one. */
const crcBitwise = (bytes: Uint8Array): number => {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
};
const mask = (c: number): number => ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) % 2 ** 32;

/** A minimal independent protobuf reader: field number → list of raw values. */
type Field = { wire: number; value: number | bigint | Uint8Array };
const readVarint = (b: Uint8Array, at: { i: number }): bigint => {
  let out = 0n;
  let shift = 0n;
  for (;;) {
    const byte = b[at.i++];
    out |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return out;
    shift += 7n;
  }
};
const decodeMessage = (b: Uint8Array): Map<number, Array<Field>> => {
  const fields = new Map<number, Array<Field>>();
  const at = { i: 0 };
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  while (at.i < b.length) {
    const key = Number(readVarint(b, at));
    const [field, wire] = [key >>> 3, key & 7];
    let value: Field["value"];
    if (wire === 0) value = readVarint(b, at);
    else if (wire === 1) {
      value = view.getFloat64(at.i, true);
      at.i += 8;
    } else if (wire === 5) {
      value = view.getFloat32(at.i, true);
      at.i += 4;
    } else if (wire === 2) {
      const n = Number(readVarint(b, at));
      value = b.subarray(at.i, at.i + n);
      at.i += n;
    } else throw new Error(`unexpected wire type ${wire}`);
    fields.set(field, [...(fields.get(field) ?? []), { wire, value }]);
  }
  return fields;
};
const readRecords = (file: Uint8Array): Array<Uint8Array> => {
  const out: Array<Uint8Array> = [];
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let i = 0;
  while (i < file.length) {
    const n = Number(view.getBigUint64(i, true));
    expect(view.getUint32(i + 8, true)).toBe(mask(crcBitwise(file.subarray(i, i + 8))));
    const data = file.subarray(i + 12, i + 12 + n);
    expect(view.getUint32(i + 12 + n, true)).toBe(mask(crcBitwise(data)));
    out.push(data);
    i += 16 + n;
  }
  expect(i).toBe(file.length);
  return out;
};
const text = (f: Field | undefined) => new TextDecoder().decode(f!.value as Uint8Array);

describe("TensorBoard CRC32C", () => {
  it("matches the known check values", () => {
    expect(TensorBoard.crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(TensorBoard.crc32c(new Uint8Array(0))).toBe(0);
    // RFC 3720 (iSCSI) B.4 vectors: 32 zero bytes, 32 0xFF bytes, bytes 0..31
    expect(TensorBoard.crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(TensorBoard.crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(TensorBoard.crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
  });
  it("masks as TFRecord does", () => {
    const bytes = new TextEncoder().encode("patchlm");
    expect(TensorBoard.maskedCrc32c(bytes)).toBe(mask(crcBitwise(bytes)));
  });
});

describe("TensorBoard event encoding", () => {
  it("frames an Event with wall_time, step and scalar values", () => {
    const [data] = readRecords(TensorBoard.frame(TensorBoard.scalarsEvent(1700000000.25, 300, { "train/loss": 2.5, "val/ppl": 1 / 3 })));
    const ev = decodeMessage(data);
    expect(ev.get(1)![0]).toEqual({ wire: 1, value: 1700000000.25 });
    expect(ev.get(2)![0]).toEqual({ wire: 0, value: 300n });
    const summary = decodeMessage(ev.get(5)![0].value as Uint8Array);
    const values = summary.get(1)!.map((v) => decodeMessage(v.value as Uint8Array));
    expect(values.map((v) => [text(v.get(1)![0]), v.get(2)![0].value])).toEqual([
      ["train/loss", 2.5],
      ["val/ppl", Math.fround(1 / 3)],
    ]);
    expect(values[0].get(2)![0].wire).toBe(5);
  });

  it("encodes steps beyond 2^32 as int64 varints", () => {
    const ev = decodeMessage(TensorBoard.scalarsEvent(0, 2 ** 40 + 3, {}));
    expect(ev.get(2)![0].value).toBe(2n ** 40n + 3n);
  });
});

describe("MetricsSink file sinks", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "sinks-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const run = runTestWith(NodeFileSystem.layer);
  const rec = (step: number): MetricRecord.MetricRecord => ({
    step,
    phase: step <= 2 ? "patch" : "token",
    tokens: 100,
    flops: 1e6,
    wallSeconds: 1,
    totalTokens: 100 * step,
    totalFlops: 1e6 * step,
    elapsedSeconds: step,
    values: { "train/loss": 3 - step / 10, "train/lr": 1e-3 },
  });

  it("writes metrics.jsonl, appending across sessions, and a TensorBoard file that parses back", async () => {
    const session = (steps: Array<number>) =>
      Effect.scoped(
        Effect.gen(function* () {
          const sink = MetricsSink.fanout([yield* MetricsSink.jsonl(join(dir, "metrics.jsonl")), yield* MetricsSink.tensorBoard(join(dir, "tb"), () => 1700000000 + steps[0])]);
          for (const s of steps) yield* sink.write(rec(s));
          yield* sink.flush;
        }),
      );
    await run(session([1, 2]));
    await run(session([3]));
    const back = await run(MetricRecord.readJsonl(join(dir, "metrics.jsonl")));
    expect(back).toEqual([rec(1), rec(2), rec(3)]);

    const files = readdirSync(join(dir, "tb")).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.1700000001\./);
    const events = readRecords(readFileSync(join(dir, "tb", files[0]))).map(decodeMessage);
    expect(text(events[0].get(3)![0])).toBe("brain.Event:2");
    expect(events[0].get(1)![0].value).toBe(1700000001);
    expect(events.slice(1).map((e) => e.get(2)![0].value)).toEqual([1n, 2n]);
    const firstValues = decodeMessage(events[1].get(5)![0].value as Uint8Array).get(1)!.map((v) => decodeMessage(v.value as Uint8Array));
    expect(firstValues.map((v) => [text(v.get(1)![0]), v.get(2)![0].value])).toEqual([
      ["train/loss", Math.fround(2.9)],
      ["train/lr", Math.fround(1e-3)],
    ]);
  });

  it("the run layer writes both files and logs a line per record", async () => {
    const logged: Array<string> = [];
    const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logged.push(String(message))));
    await run(
      Effect.flatMap(MetricsSink.MetricsSink, (s) => s.write(rec(3))).pipe(
        Effect.provide(MetricsSink.layer({ runDir: dir, logLines: { totalSteps: 10 } })),
        Effect.provide(capture),
      ),
    );
    expect(readdirSync(dir).sort()).toEqual(["metrics.jsonl", "tensorboard"]);
    expect(readdirSync(join(dir, "tensorboard"))).toHaveLength(1);
    expect(logged).toEqual(["step  3/10 token | loss 2.7000 | lr 1.00e-3 | 100 tok/s | 1 MFLOP/s | 3.0s"]);
  });

  it("keeps records in memory", async () => {
    const out = await run(
      Effect.gen(function* () {
        const mem = yield* MetricsSink.memory();
        yield* mem.write(rec(1));
        yield* mem.write(rec(2));
        return yield* mem.records;
      }),
    );
    expect(out.map((r) => r.step)).toEqual([1, 2]);
  });
});
