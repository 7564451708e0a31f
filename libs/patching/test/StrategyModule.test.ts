import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Effect, Layer } from "effect";
import { runTest, runTestFailure } from "@patchlm/testing";
import { PatchStrategy, Registry, StrategyModule } from "../src";

const mine: PatchStrategy.PatchStrategy = { ...PatchStrategy.mean, name: "mine", description: "a user's" };
const other: PatchStrategy.PatchStrategy = { ...PatchStrategy.mean, name: "other", description: "another" };

describe("StrategyModule", () => {
  it("takes as a strategy only an object with name, description, parameters and aggregate", () => {
    expect(StrategyModule.isPatchStrategy(mine)).toBe(true);
    expect(StrategyModule.isPatchStrategy({ ...mine, aggregate: undefined })).toBe(false);
    expect(StrategyModule.isPatchStrategy({ ...mine, name: "" })).toBe(false);
    expect(StrategyModule.isPatchStrategy("mean")).toBe(false);
  });

  it("finds strategies exported by name, by default, in arrays, and through a CommonJS default, each once", () => {
    const names = (ns: Record<string, unknown>) => StrategyModule.strategiesOf(ns).map((s) => s.name);
    expect(names({ mine, answer: 42 })).toEqual(["mine"]);
    expect(names({ default: [mine, other, 3] })).toEqual(["mine", "other"]);
    expect(names({ default: mine, mine })).toEqual(["mine"]);
    expect(names({ default: { mine, all: [other] } })).toEqual(["mine", "other"]);
    expect(names({ default: { nested: { mine } } })).toEqual([]);
  });

  it("adds a module's strategies to the built-ins and refuses a built-in's name", async () => {
    const loaded = { path: "/m.js", sha256: "0".repeat(64), strategies: ["mine"], loaded: [mine] };
    const got = await runTest(Effect.provide(Registry.lookup("mine"), StrategyModule.registryLayer([loaded])));
    expect(got).toBe(mine);
    const clash = { ...loaded, loaded: [{ ...mine, name: "mean" }] };
    const e = await runTestFailure(Effect.provide(Registry.lookup("mean"), StrategyModule.registryLayer([clash]) as Layer.Layer<Registry.PatchStrategies, Registry.StrategyError>));
    expect(e.message).toMatch(/patch strategy "mean" is already registered/);
  });

  it("refuses a missing file, and a file whose sha256 is not the recorded one before importing it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-strategy-module-"));
    try {
      const missing = await runTestFailure(StrategyModule.load(path.join(dir, "gone.mjs")));
      expect(missing.message).toMatch(/gone\.mjs: no such file/);
      // Importing this would throw: the hash check must come first.
      const file = path.join(dir, "m.mjs");
      fs.writeFileSync(file, "throw new Error('imported');\n");
      const recorded = { sha256: createHash("sha256").update("something else").digest("hex") };
      const changed = await runTestFailure(StrategyModule.load(file, recorded));
      expect(changed).toMatchObject({ reason: "Changed" });
      expect(changed.message).toMatch(/m\.mjs: its content changed since the run recorded it \(sha256 [0-9a-f]{12}…, now [0-9a-f]{12}…\)/);
      expect(StrategyModule.status({ path: file, ...recorded })).toBe("changed");
      expect(StrategyModule.status({ path: file, sha256: createHash("sha256").update(fs.readFileSync(file)).digest("hex") })).toBe("unchanged");
      expect(StrategyModule.status({ path: path.join(dir, "gone.mjs"), ...recorded })).toBe("missing");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
