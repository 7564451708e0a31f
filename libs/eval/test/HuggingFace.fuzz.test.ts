/**
 * `HuggingFace.read` on untrusted directories (reliability issue, D3): config.json with random
 * values (sizes up to 2^53, wrong types, unknown keys, any JSON), model.safetensors with bytes
 * flipped, cut, grown or replaced. Whatever the input: a result or an EvalInputError with a short
 * message, fast, and memory that does not grow with what the files claim.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Cause, Effect, Exit, Option } from "effect";
import fc from "fast-check";
import { Model } from "@patchlm/model";
import { runTest, useBackend } from "@patchlm/testing";
import { EvalInputError, HuggingFace } from "../src";
import { tinyCfg, weightsOf } from "./helpers";

jest.setTimeout(180_000);

let root: string;
let valid: string;
let config: Record<string, unknown>;
let model: Uint8Array;

beforeAll(async () => {
  await useBackend("cpu");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-hf-fuzz-"));
  valid = path.join(root, "valid");
  const params = Model.init(tinyCfg, 31);
  await runTest(HuggingFace.exportTo({ cfg: tinyCfg, tensors: weightsOf(params), special: { bos: 256, eos: 257, pad: 258 }, source: "fuzz" }, valid));
  Model.dispose(params);
  config = JSON.parse(fs.readFileSync(path.join(valid, HuggingFace.CONFIG_FILE), "utf8"));
  model = fs.readFileSync(path.join(valid, HuggingFace.MODEL_FILE));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const sizeKeys = Object.keys(HuggingFace.configLimits);
const otherKeys = ["head_dim", "rope_theta", "rms_norm_eps", "tie_word_embeddings", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id", "model_type", "rope_scaling"];

/** Values that hit the range checks, plus whatever JSON can hold. */
const value = fc.oneof(
  fc.integer({ min: -2, max: 300 }),
  fc.constantFrom(0, 1e5, 1e6, 2 ** 31, 2 ** 53, 1e300, 0.5, -1),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 6 }),
  fc.constant(null),
  fc.boolean(),
  fc.json({ maxDepth: 2 }).map((j) => JSON.parse(j) as unknown),
);

const configText = fc.oneof(
  // the valid config with some keys changed, removed or added
  fc
    .tuple(
      fc.dictionary(fc.constantFrom(...sizeKeys, ...otherKeys), value, { maxKeys: 4 }),
      fc.subarray([...sizeKeys, ...otherKeys], { maxLength: 2 }),
      fc.dictionary(fc.string({ maxLength: 6 }), value, { maxKeys: 2 }),
    )
    .map(([changed, removed, extra]) => {
      const c: Record<string, unknown> = { ...config, ...extra, ...changed };
      for (const k of removed) delete c[k];
      return JSON.stringify(c);
    }),
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 40 }),
);

const modelBytes = fc.oneof(
  fc.constant(undefined), // unchanged
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((flips) => {
    const out = Uint8Array.from(model);
    // In the first 2 kB: the length and the header, where a flip changes what the reader believes.
    for (const [at, v] of flips) out[at % Math.min(out.length, 2048)] = v;
    return out;
  }),
  fc.nat().map((n) => model.subarray(0, n % (model.length + 1))),
  fc.uint8Array({ minLength: 1, maxLength: 32 }).map((extra) => Buffer.concat([model, extra])),
  fc.uint8Array({ maxLength: 128 }),
);

let case_ = 0;

/** Read a copy of the valid directory with these files changed; check the property. */
const check = async (configJson: string | undefined, modelFile: Uint8Array | undefined) => {
  const dir = path.join(root, `case-${case_++}`);
  fs.cpSync(valid, dir, { recursive: true });
  if (configJson !== undefined) fs.writeFileSync(path.join(dir, HuggingFace.CONFIG_FILE), configJson);
  if (modelFile !== undefined) fs.writeFileSync(path.join(dir, HuggingFace.MODEL_FILE), modelFile);
  const started = performance.now();
  const exit = await Effect.runPromiseExit(Effect.suspend(() => HuggingFace.read(dir)));
  const seconds = (performance.now() - started) / 1000;
  fs.rmSync(dir, { recursive: true, force: true });
  expect(seconds).toBeLessThan(2);
  if (Exit.isFailure(exit)) {
    const e = Option.getOrUndefined(Cause.failureOption(exit.cause));
    expect(e).toBeInstanceOf(EvalInputError);
    expect((e as EvalInputError).message.length).toBeLessThan(4000);
  } else {
    for (const t of Object.values(exit.value.tensors)) expect(t.dtype).toBe("F32");
  }
};

describe("HuggingFace.read on untrusted directories", () => {
  const rssBefore = () => process.memoryUsage().rss;

  it("random configs beside a valid model: a model or a short EvalInputError, fast, memory bounded", async () => {
    const before = rssBefore();
    await fc.assert(fc.asyncProperty(configText, (c) => check(c, undefined)), { numRuns: 300 });
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 1024 * 1024);
  });

  it("mutated model.safetensors, with or without a mutated config: the same", async () => {
    const before = rssBefore();
    await fc.assert(
      fc.asyncProperty(fc.option(configText, { freq: 3 }), modelBytes, (c, m) => check(c ?? undefined, m)),
      { numRuns: 300 },
    );
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 1024 * 1024);
  });
});
