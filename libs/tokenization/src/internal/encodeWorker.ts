import { parentPort, workerData } from "node:worker_threads";
import { makeEncoder, type EncoderSpec } from "./encoders";

/**
 * Worker-thread body of the encode pool: builds the encoder described by `workerData`, then
 * answers each `{ id, texts }` with `{ id, results }`, moving the id buffers instead of copying.
 */
const port = parentPort!;
const ready = makeEncoder(workerData as EncoderSpec);

port.on("message", (message: { id: number; texts: ReadonlyArray<string> }) => {
  ready.then(
    (encode) => {
      try {
        const results = message.texts.map(encode);
        port.postMessage(
          { id: message.id, results },
          results.map((r) => r.buffer as ArrayBuffer),
        );
      } catch (error) {
        port.postMessage({ id: message.id, error: String(error instanceof Error ? error.stack : error) });
      }
    },
    (error: unknown) => port.postMessage({ id: message.id, error: String(error instanceof Error ? error.stack : error) }),
  );
});
