import { Either } from "effect";
import { Study } from "../src";

const base = {
  name: "s",
  data: { corpus: "embedded", tokenizer: "bytes", out: "d" },
  base: { batch: { tokens: 4096, batchTokens: 256, seqLen: 16 }, optim: { warmupSteps: 0 } },
};

describe("Study.expand", () => {
  it("expands seeds into named runs over the base config, with the data and runs directory of the study", () => {
    const s = Either.getOrThrow(
      Study.expand("t.yaml", {
        ...base,
        runs: [
          { name: "base", baseline: true, seeds: [1, 2], set: { patch: { patchSize: 1 } } },
          { name: "k4", seeds: [1, 2], set: { patch: { patchSize: 4 }, optim: { lr: 0.002 } } },
          { name: "epochs", set: { patch: { patchSize: 1 }, batch: { uniqueTokens: 1024 } } },
          { name: "epochs-k4", compareTo: "epochs", set: { batch: { uniqueTokens: 1024 } } },
        ],
      }),
    );
    expect(s.runs.map((r) => r.name)).toEqual(["base-s1", "base-s2", "k4-s1", "k4-s2", "epochs", "epochs-k4"]);
    expect(s.runsDir).toBe("runs/studies/s");
    expect(s.results).toBe("docs/results/s");
    const k4 = s.runs[3];
    expect([k4.seed, k4.config.seed, k4.config.name, k4.config.data, k4.config.runsDir]).toEqual([2, 2, "k4-s2", "d", "runs/studies/s"]);
    expect([k4.config.optim.lr, k4.config.batch.tokens, k4.compareTo]).toEqual([0.002, 4096, "base"]);
    expect(s.runs[5].compareTo).toBe("epochs");
    expect(s.runs[5].config.batch.uniqueTokens).toBe(1024);
    // First seeds of every entry before second seeds.
    expect(Study.trainingOrder(s.runs).map((r) => r.name)).toEqual(["base-s1", "k4-s1", "epochs", "epochs-k4", "base-s2", "k4-s2"]);
  });

  it("reports every problem at once, by run", () => {
    const e = Either.getLeft(
      Study.expand("t.yaml", {
        ...base,
        runs: [
          { name: "a", set: { patch: { patchFraction: 2 } } },
          { name: "b", compareTo: "a", set: {} },
          { name: "b", set: {} },
        ],
        criterion: { run: "zzz", lossWithin: 0.01, flopsAtMost: 0.5, timeAtMost: 0.6 },
      }),
    );
    const issues = e._tag === "Some" ? e.value.issues.join("\n") : "";
    expect(issues).toMatch(/exactly one entry needs baseline: true \(found 0\)/);
    expect(issues).toMatch(/runs\[0\] \(a\): .*patch\.patchFraction/);
    expect(issues).toMatch(/run name "b" appears twice/);
    expect(issues).toMatch(/criterion\.run: no entry named "zzz"/);
  });

  it("refuses a baseline that trains at patch level", () => {
    const e = Either.getLeft(Study.expand("t.yaml", { ...base, runs: [{ name: "a", baseline: true, set: { patch: { patchSize: 4 } } }] }));
    expect(e._tag === "Some" && e.value.issues.join("\n")).toMatch(/the baseline must be token-level/);
  });
});
