import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileSystem } from "@effect/platform";
import { SystemError } from "@effect/platform/Error";
import { NodeFileSystem } from "@effect/platform-node";
import { Effect, Layer } from "effect";
import { runTestFailure, runTestWith } from "@patchlm/testing";
import { Checkpoint, RunLock, Safetensors } from "../src";

const run = runTestWith(NodeFileSystem.layer);
const fail = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem>) => runTestFailure(Effect.provide(e, NodeFileSystem.layer));

const modelConfig = { vocabSize: 64, dModel: 8, nLayers: 1, nHeads: 2, ffnHidden: 16, contextLength: 16 };
const weights = (seed: number): Safetensors.TensorMap => ({
  "model.embed_tokens.weight": Safetensors.f32([64, 8], Float32Array.from({ length: 512 }, (_, i) => Math.sin(i + seed))),
  "model.norm.weight": Safetensors.f32([8], new Float32Array(8).fill(1)),
  "lm_head.weight": Safetensors.f32([64, 8], Float32Array.from({ length: 512 }, (_, i) => Math.cos(i * seed))),
});
const optimizerOf = (w: Safetensors.TensorMap, step: number): Checkpoint.OptimizerState => ({
  step,
  tensors: Object.fromEntries(
    Object.entries(w).flatMap(([n, t]) => [
      [`m.${n}`, Safetensors.f32(t.shape, (t.data as Float32Array).map((x) => x / 10))],
      [`v.${n}`, Safetensors.f32(t.shape, (t.data as Float32Array).map((x) => x * x))],
    ]),
  ),
});
const fields = (step: number): Checkpoint.ManifestFields => ({
  phase: step < 100 ? "patch" : "token",
  tokensSeen: step * 1024,
  modelConfig,
  trainConfig: { patch: { patchSize: 4, patchFraction: 2 / 3 }, seed: 1 },
  dataCursor: { shard: 0, offset: step * 32 },
  rng: { state: [1, 2, 3, step] },
  tokenizerHash: "a".repeat(64),
  packageVersions: { "@tensorflow/tfjs": "4.22.0", effect: "3.22.4" },
});
const input = (step: number): Checkpoint.SaveInput => ({ step, tensors: weights(step + 1), optimizer: optimizerOf(weights(step + 1), step), manifest: fields(step) });

let runDir: string;
beforeEach(() => (runDir = join(mkdtempSync(join(tmpdir(), "ckpt-")), "runs", "demo")));
afterEach(() => rmSync(join(runDir, "..", ".."), { recursive: true, force: true }));

const latestOnDisk = () => readFileSync(join(runDir, "latest"), "utf8");
const stepDirs = () => readdirSync(runDir).filter((n) => n.startsWith("step-")).sort();

describe("Checkpoint.save and load", () => {
  it("round-trips weights, optimizer state and manifest, through latest or the step directory", async () => {
    const saved = await run(Checkpoint.save(runDir, input(120)));
    expect(saved.dir).toBe(join(runDir, "step-00000120"));
    expect(latestOnDisk()).toBe("step-00000120\n");
    expect(readdirSync(saved.dir).sort()).toEqual(["manifest.json", "model.safetensors", "optimizer.safetensors"]);

    for (const path of [runDir, saved.dir]) {
      const loaded = await run(Checkpoint.load(path));
      expect(loaded.dir).toBe(saved.dir);
      expect(loaded.tensors).toEqual(weights(121));
      expect(loaded.optimizer).toEqual(optimizerOf(weights(121), 120));
      expect(loaded.manifest).toEqual(saved.manifest);
      expect(loaded.manifest).toMatchObject({ ...fields(120), formatVersion: 1, step: 120, optimizerStep: 120 });
    }
    const manifest = JSON.parse(readFileSync(join(saved.dir, "manifest.json"), "utf8")) as Checkpoint.Manifest;
    for (const f of ["model.safetensors", "optimizer.safetensors"]) {
      const bytes = readFileSync(join(saved.dir, f));
      expect(manifest.files[f]).toEqual({ sha256: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length });
    }
  });

  it("exports, imports and exports again to byte-identical weight files", async () => {
    await run(Checkpoint.save(runDir, input(7)));
    const loaded = await run(Checkpoint.load(runDir));
    const other = join(runDir, "..", "copy");
    await run(Checkpoint.save(other, { step: 7, tensors: loaded.tensors, optimizer: loaded.optimizer, manifest: loaded.manifest }));
    for (const f of ["model.safetensors", "optimizer.safetensors"]) {
      expect(Buffer.compare(readFileSync(join(runDir, "step-00000007", f)), readFileSync(join(other, "step-00000007", f)))).toBe(0);
    }
  });

  it("saves a model without optimizer state", async () => {
    await run(Checkpoint.save(runDir, { step: 1, tensors: weights(1), manifest: fields(1) }));
    const loaded = await run(Checkpoint.load(runDir));
    expect(loaded.optimizer).toBeUndefined();
    expect(loaded.manifest.optimizerStep).toBeUndefined();
  });

  it("writes model.safetensors with the format metadata Hugging Face loaders look for", async () => {
    await run(Checkpoint.save(runDir, input(1)));
    const contents = await run(Safetensors.readFile(join(runDir, "step-00000001", "model.safetensors")));
    expect(contents.metadata).toEqual({ format: "pt" });
  });
});

describe("Checkpoint retention", () => {
  it("keeps the last N checkpoints", async () => {
    for (const s of [1, 2, 3, 4, 5]) await run(Checkpoint.save(runDir, input(s), { keepLast: 2 }));
    expect(stepDirs()).toEqual(["step-00000004", "step-00000005"]);
    expect(latestOnDisk()).toBe("step-00000005\n");
    const listed = await run(Checkpoint.list(runDir));
    expect(listed.map((c) => [c.step, c.isLatest])).toEqual([[4, false], [5, true]]);
  });

  it("never deletes the checkpoint latest points at", async () => {
    for (const s of [1, 2, 3]) await run(Checkpoint.save(runDir, input(s), { keepLast: 3 }));
    writeFileSync(join(runDir, "latest"), "step-00000001\n");
    expect(await run(Checkpoint.prune(runDir, 1))).toEqual(["step-00000002"]);
    expect(stepDirs()).toEqual(["step-00000001", "step-00000003"]);
  });

  it("after resuming from an older step, replaces a re-saved step and prunes by write order", async () => {
    for (const s of [1, 2, 3]) await run(Checkpoint.save(runDir, input(s), { keepLast: 3 }));
    const resumed = await run(Checkpoint.load(join(runDir, "step-00000001")));
    await run(Checkpoint.save(runDir, { ...input(2), tensors: resumed.tensors }, { keepLast: 2 }));
    expect(stepDirs()).toEqual(["step-00000002", "step-00000003"]);
    expect(latestOnDisk()).toBe("step-00000002\n");
    expect((await run(Checkpoint.load(runDir))).tensors).toEqual(weights(2));
    expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
  });
});

/** NodeFileSystem with one operation failing, as a crash at that point would leave things. */
const crashingAt = (when: (method: "rename" | "open", path: string) => boolean) =>
  Layer.effect(
    FileSystem.FileSystem,
    Effect.map(FileSystem.FileSystem, (fs) => {
      const crash = (method: "rename" | "open", path: string) =>
        Effect.fail(new SystemError({ reason: "Unknown", module: "FileSystem", method, pathOrDescriptor: path, description: "simulated crash" }));
      return {
        ...fs,
        rename: (from: string, to: string) => (when("rename", to) ? crash("rename", to) : fs.rename(from, to)),
        open: (path: string, options?: FileSystem.OpenFileOptions) => (when("open", path) ? crash("open", path) : fs.open(path, options)),
      } satisfies FileSystem.FileSystem;
    }),
  ).pipe(Layer.provide(NodeFileSystem.layer));

/**
 * NodeFileSystem on a disk that fills up after `bytes` more bytes: a write past that writes what
 * fits, then fails with ENOSPC, leaving a partial file as a real full disk does.
 */
const diskFullAfter = (bytes: number) =>
  Layer.effect(
    FileSystem.FileSystem,
    Effect.map(FileSystem.FileSystem, (fs) => {
      let left = bytes;
      const full = (path: string) =>
        new SystemError({ reason: "Unknown", module: "FileSystem", method: "write", pathOrDescriptor: path, description: "ENOSPC: no space left on device" });
      const writeAll = (file: FileSystem.File, path: string) => (buffer: Uint8Array) => {
        const n = Math.min(left, buffer.length);
        left -= n;
        return n === buffer.length ? file.writeAll(buffer) : Effect.zipRight(file.writeAll(buffer.subarray(0, n)), Effect.fail(full(path)));
      };
      const onFullDisk = (file: FileSystem.File, path: string): FileSystem.File =>
        new Proxy(file, {
          get: (target, key) => {
            if (key === "writeAll") return writeAll(target, path);
            const value = Reflect.get(target, key, target) as unknown;
            return typeof value === "function" ? value.bind(target) : value;
          },
        });
      return { ...fs, open: (path: string, options?: FileSystem.OpenFileOptions) => Effect.map(fs.open(path, options), (f) => onFullDisk(f, path)) } satisfies FileSystem.FileSystem;
    }),
  ).pipe(Layer.provide(NodeFileSystem.layer));

describe("Checkpoint atomicity", () => {
  // reliability D13: on ENOSPC a partial .tmp-step-* stayed behind and kept the disk full.
  it("a save that fails on a full disk removes its partial files at once; latest stays on the previous checkpoint", async () => {
    await run(Checkpoint.save(runDir, input(10)));
    const bytes = (d: string) => readdirSync(d).reduce((n, f) => n + readFileSync(join(d, f)).length, 0);
    const oneCheckpoint = bytes(join(runDir, "step-00000010"));
    for (const room of [100, Math.floor(oneCheckpoint / 2), oneCheckpoint - 10]) {
      const e = await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(20)), diskFullAfter(room)));
      expect(e).toMatchObject({ _tag: "FileError", reason: "Unwritable" });
      expect(e.message).toMatch(/ENOSPC/);
      expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
      expect(stepDirs()).toEqual(["step-00000010"]);
      expect(latestOnDisk()).toBe("step-00000010\n");
    }
    // Room for the checkpoint but not for `latest` ("step-00000020\\n"): the new step is published, latest stays.
    const scratch = join(runDir, "..", "scratch");
    await run(Checkpoint.save(scratch, input(20)));
    await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(20)), diskFullAfter(bytes(join(scratch, "step-00000020")) + 5)));
    expect(stepDirs()).toEqual(["step-00000010", "step-00000020"]);
    expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
    expect(latestOnDisk()).toBe("step-00000010\n");
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(10);
    await run(Checkpoint.save(runDir, input(20)));
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(20);
  });

  it("a failed write leaves latest on the previous checkpoint and no temp files; a crash's leftovers go with the next save", async () => {
    await run(Checkpoint.save(runDir, input(10)));
    const e = await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(20)), crashingAt((m, p) => m === "open" && p.endsWith("optimizer.safetensors"))));
    expect(e).toMatchObject({ _tag: "FileError", reason: "Unwritable" });
    expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
    expect(stepDirs()).toEqual(["step-00000010"]);
    expect(latestOnDisk()).toBe("step-00000010\n");
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(10);

    // What a crash (no chance to clean up) of this process leaves: removed by its next save.
    const crashed = join(runDir, `.tmp-step-00000020-${process.pid}-0123abcd`);
    mkdirSync(crashed);
    writeFileSync(join(crashed, "model.safetensors"), new Uint8Array(100));
    await run(Checkpoint.save(runDir, input(20)));
    expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(20);
  });

  it("re-saving a step whose new copy cannot be published puts the old copy back", async () => {
    await run(Checkpoint.save(runDir, input(10)));
    let renames = 0;
    await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(10)), crashingAt((m, p) => m === "rename" && p.endsWith("step-00000010") && renames++ === 0)));
    expect(readdirSync(runDir).filter((n) => n.startsWith("."))).toEqual([]);
    expect(stepDirs()).toEqual(["step-00000010"]);
    expect((await run(Checkpoint.load(runDir))).tensors).toEqual(weights(11));
  });

  it("a crash before the step directory is published, or before latest is replaced, keeps latest valid", async () => {
    await run(Checkpoint.save(runDir, input(10)));
    await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(20)), crashingAt((m, p) => m === "rename" && p.endsWith("step-00000020"))));
    expect(stepDirs()).toEqual(["step-00000010"]);
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(10);

    await runTestFailure(Effect.provide(Checkpoint.save(runDir, input(30)), crashingAt((m, p) => m === "rename" && p.endsWith("latest"))));
    expect(latestOnDisk()).toBe("step-00000010\n");
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(10);
    // the published but unreferenced step-00000030 is complete and loadable by path
    expect((await run(Checkpoint.load(join(runDir, "step-00000030")))).manifest.step).toBe(30);
  });

  it("ignores a half-written temp directory when loading; the holder of the run's lock removes it", async () => {
    await run(Checkpoint.save(runDir, input(10)));
    const partial = join(runDir, ".tmp-step-00000020-999-deadbeef");
    mkdirSync(partial);
    writeFileSync(join(partial, "model.safetensors"), new Uint8Array(100));
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(10);
    // Another process's: without the lock, it may be a save in progress.
    expect(await run(Checkpoint.cleanup(runDir))).toEqual([]);
    expect(await run(Effect.scoped(Effect.zipRight(RunLock.acquire(runDir), Checkpoint.cleanup(runDir))))).toEqual([".tmp-step-00000020-999-deadbeef"]);
    expect(existsSync(partial)).toBe(false);
  });
});

// reliability D7: a run that lost `latest` had "nothing to resume" although its step directories were intact.
describe("Checkpoint.recoverLatest", () => {
  it("points a lost latest at the newest step directory that verifies, passing over a corrupt one", async () => {
    for (const s of [1, 2, 3]) await run(Checkpoint.save(runDir, input(s)));
    expect(await run(Checkpoint.recoverLatest(runDir))).toBeUndefined();
    rmSync(join(runDir, "latest"));
    const weights = join(runDir, "step-00000003", "optimizer.safetensors");
    const bytes = readFileSync(weights);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(weights, bytes);
    const e = await fail(Checkpoint.load(runDir));
    expect(e.message).toMatch(/no latest, though it holds step-00000001, step-00000002, step-00000003: give one of those, or resume the run/);
    const recovered = await run(Checkpoint.recoverLatest(runDir));
    expect(recovered).toEqual({ name: "step-00000002", step: 2, passedOver: [{ name: "step-00000003", reason: expect.stringMatching(/optimizer\.safetensors: Corrupt: .*sha256 mismatch/) }] });
    expect(latestOnDisk()).toBe("step-00000002\n");
    expect((await run(Checkpoint.load(runDir))).manifest.step).toBe(2);
  });

  it("leaves a run without step directories alone, and fails listing why when none verifies", async () => {
    mkdirSync(runDir, { recursive: true });
    expect(await run(Checkpoint.recoverLatest(runDir))).toBeUndefined();
    await run(Checkpoint.save(runDir, input(4)));
    rmSync(join(runDir, "latest"));
    rmSync(join(runDir, "step-00000004", "model.safetensors"));
    const e = await fail(Checkpoint.recoverLatest(runDir));
    expect(e.message).toMatch(/latest: NotFound: missing, and no step directory verifies:\n {2}- .*step-00000004\/model\.safetensors: MissingFile/);
    expect(existsSync(join(runDir, "latest"))).toBe(false);
  });
});

describe("Checkpoint corruption and mismatch", () => {
  const stepDir = () => join(runDir, "step-00000005");
  beforeEach(() => run(Checkpoint.save(runDir, input(5))));

  it("detects a flipped byte in a weight file by its sha256", async () => {
    const path = join(stepDir(), "model.safetensors");
    const bytes = readFileSync(path);
    bytes[bytes.length - 3] ^= 0x40;
    writeFileSync(path, bytes);
    const e = await fail(Checkpoint.load(runDir));
    expect(e).toMatchObject({ _tag: "CheckpointError", reason: "Corrupt", path });
    expect(e.message).toMatch(/model\.safetensors sha256 mismatch: manifest has [0-9a-f]{64}, file has [0-9a-f]{64}/);
  });

  it("reports a truncated file as corrupt rather than as a parse error", async () => {
    const path = join(stepDir(), "optimizer.safetensors");
    writeFileSync(path, readFileSync(path).subarray(0, 50));
    expect(await fail(Checkpoint.load(runDir))).toMatchObject({ reason: "Corrupt", detail: expect.stringMatching(/optimizer\.safetensors sha256 mismatch/) });
  });

  it("reports a missing file", async () => {
    rmSync(join(stepDir(), "optimizer.safetensors"));
    expect(await fail(Checkpoint.load(runDir))).toMatchObject({ reason: "MissingFile", detail: "optimizer.safetensors is listed in the manifest but missing" });
  });

  it("checks the manifest format version first", async () => {
    const path = join(stepDir(), "manifest.json");
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), formatVersion: 2, newField: 1 }));
    const e = await fail(Checkpoint.load(runDir));
    expect(e).toMatchObject({ reason: "FormatVersion", path, detail: "manifest format version 2, expected 1" });
  });

  it("rejects a manifest that is not JSON or misses fields, naming them", async () => {
    const path = join(stepDir(), "manifest.json");
    const good = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    writeFileSync(path, "{ not json");
    expect(await fail(Checkpoint.load(runDir))).toMatchObject({ reason: "BadManifest", detail: expect.stringMatching(/not valid JSON/) });
    writeFileSync(path, JSON.stringify({ ...good, phase: "bag", tokenizerHash: undefined }));
    const e = await fail(Checkpoint.load(runDir));
    expect(e).toMatchObject({ reason: "BadManifest" });
    expect(e.message).toMatch(/phase/);
    expect(e.message).toMatch(/tokenizerHash/);
  });

  it("says when there is no checkpoint, or latest names a missing one", async () => {
    const empty = join(runDir, "..", "empty");
    mkdirSync(empty);
    expect(await fail(Checkpoint.load(empty))).toMatchObject({ reason: "NotFound", detail: expect.stringMatching(/no manifest\.json .* and no latest/) });
    writeFileSync(join(runDir, "latest"), "step-00000099\n");
    expect(await fail(Checkpoint.load(runDir))).toMatchObject({ reason: "NotFound", detail: "latest names step-00000099, which has no manifest.json" });
    writeFileSync(join(runDir, "latest"), "../../etc\n");
    expect(await fail(Checkpoint.load(runDir))).toMatchObject({ reason: "BadManifest", detail: expect.stringMatching(/expected a step directory name/) });
  });

  it("lists every config difference against what a run expects", async () => {
    const loaded = await run(Checkpoint.load(runDir));
    expect(Checkpoint.differences({ modelConfig, tokenizerHash: "a".repeat(64) }, loaded.manifest)).toEqual([]);
    const expected = { modelConfig: { ...modelConfig, dModel: 16, nKvHeads: 1 }, tokenizerHash: "b".repeat(64) };
    expect(Checkpoint.differences(expected, loaded.manifest)).toEqual([
      "modelConfig.dModel: 8 in the checkpoint vs 16 expected",
      "modelConfig.nKvHeads: (absent) in the checkpoint vs 1 expected",
      `tokenizerHash: "${"a".repeat(64)}" in the checkpoint vs "${"b".repeat(64)}" expected`,
    ]);
    const e = await runTestFailure(Checkpoint.ensureCompatible(loaded, expected));
    expect(e).toMatchObject({ reason: "ConfigMismatch", path: stepDir() });
    expect(e.message).toMatch(/modelConfig\.dModel: 8 in the checkpoint vs 16 expected/);
    await run(Checkpoint.ensureCompatible(loaded, { modelConfig }));
  });
});

describe("Checkpoint refuses non-finite weights", () => {
  it("fails naming the tensor and element, and writes nothing", async () => {
    await run(Checkpoint.save(runDir, input(1)));
    const w = { ...weights(2) } as Record<string, Safetensors.Tensor>;
    const bad = new Float32Array(8).fill(1);
    bad[3] = NaN;
    w["model.norm.weight"] = Safetensors.f32([8], bad);
    const e = await fail(Checkpoint.save(runDir, { ...input(2), tensors: w }));
    expect(e).toMatchObject({ _tag: "CheckpointError", reason: "NonFinite", path: join(runDir, "step-00000002", "model.safetensors") });
    expect(e.message).toMatch(/tensor "model\.norm\.weight" holds NaN at element 3/);
    expect(stepDirs()).toEqual(["step-00000001"]);
    expect(latestOnDisk()).toBe("step-00000001\n");
  });

  it("checks optimizer state and 16-bit floats too, and writes anyway when allowed", async () => {
    const opt = optimizerOf(weights(1), 1);
    const v = (opt.tensors["v.lm_head.weight"].data as Float32Array).slice();
    v[10] = -Infinity;
    const withInf = { ...opt, tensors: { ...opt.tensors, "v.lm_head.weight": Safetensors.f32([64, 8], v) } };
    expect(await fail(Checkpoint.save(runDir, { ...input(1), optimizer: withInf }))).toMatchObject({
      reason: "NonFinite",
      detail: expect.stringMatching(/"v\.lm_head\.weight" holds -Infinity at element 10/),
    });
    const bf16 = { "h.weight": { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0x7fc0]) } as const };
    expect(await fail(Checkpoint.save(runDir, { step: 1, tensors: bf16, manifest: fields(1) }))).toMatchObject({
      detail: expect.stringMatching(/"h\.weight" holds a non-finite BF16 \(0x7fc0\) at element 1/),
    });
    await run(Checkpoint.save(runDir, { ...input(1), optimizer: withInf }, { allowNonFinite: true }));
    expect(stepDirs()).toEqual(["step-00000001"]);
  });
});
