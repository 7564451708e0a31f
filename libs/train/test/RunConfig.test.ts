import { Either } from "effect";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runTest, runTestFailure } from "@patchlm/testing";
import * as ConfigFile from "../src/ConfigFile";
import * as RunConfig from "../src/RunConfig";
import * as Setup from "../src/Setup";

const minimal = { name: "r1", data: "data/x", batch: { tokens: 1000000, batchTokens: 8192, seqLen: 256, microBatch: 8 } };

describe("RunConfig", () => {
  it("fills the paper's defaults", () => {
    const c = Either.getOrThrow(RunConfig.decode("code", minimal));
    expect(c.patch).toEqual({ patchSize: 4, patchFraction: 2 / 3, strategy: "mean", switchPolicy: "reset" });
    expect(c.optim.lr).toBe(3e-4);
    expect(c.optim.beta2).toBe(0.95);
    expect(c.optim.weightDecay).toBe(0.1);
    expect(c.optim.gradClip).toBe(1);
    expect(c.model.preset).toBe("reference");
  });

  it("reports every problem at once with key paths, and rejects unknown keys", () => {
    const bad = { ...minimal, name: "a b", patch: { patchSize: 0, bogus: 1 }, optim: { lr: -1 } };
    const r = RunConfig.decode("run.yaml", bad);
    expect(Either.isLeft(r)).toBe(true);
    if (Either.isLeft(r)) {
      const text = r.left.issues.join("\n");
      for (const key of ["name", "patch.patchSize", "patch.bogus", "optim.lr"]) expect(text).toContain(key);
      expect(r.left.message).toContain("run.yaml");
    }
  });

  // reliability D9: `--name ..` wrote the run into the parent of runs/.
  it("refuses run names that leave runsDir or are not one plain directory name", () => {
    for (const name of ["..", ".", "../x", "a/b", "a\\b", "/abs", ".hidden", "", "x".repeat(129)]) {
      const r = RunConfig.decode("flags", { ...minimal, name });
      expect(Either.isLeft(r)).toBe(true);
      if (Either.isLeft(r)) expect(r.left.issues.join("\n")).toMatch(/^name: .*one directory name/m);
    }
    for (const name of ["r1", "run.v2", "a-b_c", "x".repeat(128)]) expect(Either.isRight(RunConfig.decode("flags", { ...minimal, name }))).toBe(true);
  });
});

describe("ConfigFile", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-cfg-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("merges file and flag overrides, flags winning", async () => {
    const file = path.join(dir, "run.yaml");
    fs.writeFileSync(file, "name: fromfile\ndata: d\nbatch:\n  tokens: 100\n  batchTokens: 64\n  seqLen: 8\n  microBatch: 2\npatch:\n  patchSize: 2\n");
    const overrides = Either.getOrThrow(ConfigFile.parseOverrides(["patch.patchFraction=0.5", "name=\"cli\""]));
    const c = await runTest(ConfigFile.resolve({ file, overrides }));
    expect(c.name).toBe("cli");
    expect(c.patch.patchSize).toBe(2);
    expect(c.patch.patchFraction).toBe(0.5);
  });

  it("names the file when it is missing or malformed", async () => {
    const missing = await runTestFailure(ConfigFile.resolve({ file: path.join(dir, "nope.json") }));
    expect(missing._tag).toBe("FileError");
    expect(String((missing as { message: string }).message)).toContain("nope.json");
    const broken = path.join(dir, "broken.json");
    fs.writeFileSync(broken, "{ not json");
    const e = await runTestFailure(ConfigFile.resolve({ file: broken }));
    expect((e as { reason: string }).reason).toBe("Malformed");
  });

  it("rejects malformed --set pairs", () => {
    expect(Either.isLeft(ConfigFile.parseOverrides(["novalue"]))).toBe(true);
  });
});

describe("Setup.dataRanges", () => {
  const planFor = (tokens: number, uniqueTokens?: number) => {
    const c = Either.getOrThrow(
      RunConfig.decode("t", { name: "r", data: "d", patch: { patchSize: 4, patchFraction: 0.5 }, batch: { tokens, batchTokens: 100, seqLen: 5, microBatch: 1, uniqueTokens }, optim: { warmupSteps: 0 } }),
    );
    return { c, plan: Either.getOrThrow(Setup.phasePlan(c)) };
  };

  it("gives the phases adjacent, disjoint ranges when the budget fits the data", () => {
    const { plan } = planFor(1000);
    expect(Either.getOrThrow(Setup.dataRanges(plan, 5000))).toEqual({ patch: { startToken: 0, endToken: 500 }, token: { startToken: 500, endToken: 1000 } });
  });

  it("cycles both phases over the first uniqueTokens when the budget exceeds them", () => {
    const { c, plan } = planFor(3000, 1000);
    const whole = { startToken: 0, endToken: 1000 };
    expect(Either.getOrThrow(Setup.dataRanges(plan, 5000, c.batch.uniqueTokens))).toEqual({ patch: whole, token: whole });
    expect(Either.isLeft(Setup.dataRanges(plan, 900, c.batch.uniqueTokens))).toBe(true);
  });
});

describe("Setup.phasePlan warmup", () => {
  const decode = (optim: Record<string, unknown>, patch: Record<string, unknown> = { patchSize: 4, patchFraction: 0.5 }) =>
    Setup.phasePlan(Either.getOrThrow(RunConfig.decode("t", { name: "r", data: "d", patch, batch: { tokens: 400_000, batchTokens: 100, seqLen: 5 }, optim })));

  it("defaults to 2% of each phase's steps, at most the paper's 2,000, so short runs are not refused", () => {
    // 4,000 steps: 2,000 patch + 2,000 token under reset → 40 warmup steps.
    const plan = Either.getOrThrow(decode({}));
    expect(plan.phases.map((p) => p.steps)).toEqual([2000, 2000]);
    expect(Setup.defaultWarmup(plan, "reset")).toBe(40);
    expect(Setup.defaultWarmup(plan, "continue")).toBe(80);
    expect(Setup.defaultWarmup({ totalSteps: 10 ** 6, phases: plan.phases.map((p) => ({ ...p, steps: 500_000 })) }, "reset")).toBe(2000);
    expect(plan.config.schedule.warmupSteps).toBe(40);
  });

  it("names the config's own key when the warmup is too long", () => {
    const e = Either.getLeft(decode({ warmupSteps: 5000 }));
    expect(e._tag === "Some" && e.value.issues.join("\n")).toMatch(/^optim\.warmupSteps: 5000 warmup steps exceed the 2000 steps of the patch phase/m);
  });
});
