import { hostname } from "node:os";
import { crc32c, maskedCrc32c } from "./internal/Crc32c";
import { bytesField, concat, doubleField, floatField, stringField, uint64Field } from "./internal/Protobuf";

/**
 * TensorBoard event files, encoded by the project. A file is a sequence of TFRecords
 *
 *   u64 LE length | u32 LE masked CRC32C of the 8 length bytes | data | u32 LE masked CRC32C of data
 *
 * whose data is an `Event` protobuf (tensorflow/core/util/event.proto):
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; }
 * The first record carries file_version "brain.Event:2".
 */

export { crc32c, maskedCrc32c };

export const FILE_VERSION = "brain.Event:2";

/** TensorBoard only reads files whose name contains "tfevents". */
export const eventFileName = (wallTimeSeconds: number, host = hostname()): string =>
  `events.out.tfevents.${Math.floor(wallTimeSeconds)}.${host}.${process.pid}.patchlm`;

/** One TFRecord around `data`. */
export const frame = (data: Uint8Array): Uint8Array => {
  const head = new Uint8Array(12);
  const view = new DataView(head.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(head.subarray(0, 8)), true);
  const tail = new Uint8Array(4);
  new DataView(tail.buffer).setUint32(0, maskedCrc32c(data), true);
  return concat([head, data, tail]);
};

/** The Event that opens every file. */
export const fileVersionEvent = (wallTimeSeconds: number): Uint8Array =>
  concat([doubleField(1, wallTimeSeconds), uint64Field(2, 0), stringField(3, FILE_VERSION)]);

/** An Event holding scalars (stored as float32, as TensorBoard's simple_value is). */
export const scalarsEvent = (wallTimeSeconds: number, step: number, scalars: Readonly<Record<string, number>>): Uint8Array => {
  const values = Object.entries(scalars).map(([tag, v]) => bytesField(1, concat([stringField(1, tag), floatField(2, v)])));
  return concat([doubleField(1, wallTimeSeconds), uint64Field(2, step), bytesField(5, concat(values))]);
};
