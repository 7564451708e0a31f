/**
 * The few protobuf wire-format writers an event file needs. A field is a tag varint
 * (field number << 3 | wire type) followed by its payload.
 */

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** Base-128 varint of a non-negative safe integer (int64 values below 2^53). */
export const varint = (n: number): Uint8Array => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint needs a non-negative safe integer, got ${n}`);
  const out: Array<number> = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
};

const tag = (field: number, wire: number): Uint8Array => varint(field * 8 + wire);

export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => Buffer.concat(parts);

export const uint64Field = (field: number, n: number): Uint8Array => concat([tag(field, VARINT), varint(n)]);

export const doubleField = (field: number, x: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x, true);
  return concat([tag(field, FIXED64), b]);
};

export const floatField = (field: number, x: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return concat([tag(field, FIXED32), b]);
};

export const bytesField = (field: number, bytes: Uint8Array): Uint8Array => concat([tag(field, LENGTH_DELIMITED), varint(bytes.length), bytes]);

export const stringField = (field: number, s: string): Uint8Array => bytesField(field, new TextEncoder().encode(s));
