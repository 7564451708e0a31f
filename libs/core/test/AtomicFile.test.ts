import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect } from "effect";
import { AtomicFile } from "../src";

// core's tests do not use libs/testing, which depends on core.
const runTest = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
const runTestFailure = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(Effect.flip(e));

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-atomic-"))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("AtomicFile.write", () => {
  it("writes text or bytes, replaces an existing file, creates a missing directory, and leaves no temp file", async () => {
    const file = path.join(dir, "a", "b", "config.json");
    await runTest(AtomicFile.write(file, "first\n"));
    await runTest(AtomicFile.write(file, "second\n"));
    expect(fs.readFileSync(file, "utf8")).toBe("second\n");
    await runTest(AtomicFile.write(file, Uint8Array.from([1, 2, 3])));
    expect([...fs.readFileSync(file)]).toEqual([1, 2, 3]);
    expect(fs.readdirSync(path.dirname(file))).toEqual(["config.json"]);
  });

  it("fails with a FileError naming the file, leaving the old file and no temp file behind", async () => {
    const file = path.join(dir, "taken");
    fs.mkdirSync(file); // a directory cannot be renamed over by a file
    const e = await runTestFailure(AtomicFile.write(file, "x"));
    expect(e).toMatchObject({ _tag: "FileError", path: file, reason: "Unwritable" });
    expect(fs.readdirSync(dir)).toEqual(["taken"]);
  });
});

describe("AtomicFile.tempPathFor", () => {
  it("names a temp file beside its target that isTempName recognises", () => {
    const temp = AtomicFile.tempPathFor(path.join(dir, "manifest.json"));
    expect(path.dirname(temp)).toBe(dir);
    expect(AtomicFile.isTempName(path.basename(temp))).toBe(true);
    expect(AtomicFile.isTempName("manifest.json")).toBe(false);
  });
});
