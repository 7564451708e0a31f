import { Either } from "effect";
import { Config } from "../src";

const base = { vocabSize: 4096, dModel: 256, nLayers: 4, nHeads: 4, ffnHidden: 688, contextLength: 256 };

describe("Config.ModelConfig", () => {
  it("fills defaults", () => {
    const r = Config.decodeConfig(Config.ModelConfig)("code", base);
    expect(Either.isRight(r)).toBe(true);
    const c = Either.getOrThrow(r);
    expect(c.ropeBase).toBe(10000);
    expect(c.normEps).toBe(1e-6);
    expect(c.tieEmbeddings).toBe(false);
    expect(Config.kvHeads(c)).toBe(4);
    expect(Config.headDim(c)).toBe(64);
  });

  it("reports every problem at once, naming keys, and rejects unknown keys", () => {
    const r = Config.decodeConfig(Config.ModelConfig)("run.json", { ...base, dModel: -3, nLayers: 1.5, bogus: 1 });
    expect(Either.isLeft(r)).toBe(true);
    const err = Either.getLeft(r).pipe((o) => (o._tag === "Some" ? o.value : undefined))!;
    expect(err.source).toBe("run.json");
    const text = err.issues.join("\n");
    expect(text).toMatch(/dModel/);
    expect(text).toMatch(/nLayers/);
    expect(text).toMatch(/bogus/);
    expect(err.message).toMatch(/run\.json/);
  });

  it("rejects a head count that does not divide dModel", () => {
    const r = Config.decodeConfig(Config.ModelConfig)("code", { ...base, nHeads: 3 });
    expect(Either.isLeft(r)).toBe(true);
  });
});

describe("Config.PatchConfig", () => {
  it("defaults to the mean strategy and the paper's reset policy", () => {
    const c = Either.getOrThrow(Config.decodeConfig(Config.PatchConfig)("code", { patchSize: 4, patchFraction: 2 / 3 }));
    expect(c.strategy).toBe("mean");
    expect(c.switchPolicy).toBe("reset");
  });
  it("rejects λ outside [0,1]", () => {
    expect(Either.isLeft(Config.decodeConfig(Config.PatchConfig)("code", { patchSize: 4, patchFraction: 1.5 }))).toBe(true);
  });
});
