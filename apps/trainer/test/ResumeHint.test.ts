import * as path from "node:path";
import { Effect, Logger } from "effect";
import { runTest, runTestFailure } from "@patchlm/testing";
import { Trainer } from "@patchlm/train";
import { withResumeHint } from "../src/ResumeHint";

const summary = (ended: Trainer.Summary["ended"]): Trainer.Summary => ({
  name: "k4",
  runDir: path.resolve("runs", "k4"),
  step: 5,
  totalSteps: 12,
  tokens: 1280,
  flops: 1e9,
  wallSeconds: 1,
  cpuSeconds: 1,
  ended,
  validation: undefined,
  losses: [],
});

/** The messages logged while running `self`. */
const logged = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const lines: Array<string> = [];
    const logger = Logger.make(({ message }) => lines.push(String(Array.isArray(message) ? message.join(" ") : message)));
    yield* self.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)));
    return lines;
  });

describe("withResumeHint", () => {
  it("says which command continues a run that stopped early, and nothing when it finished", async () => {
    expect(await runTest(logged(withResumeHint(Effect.succeed(summary("maxSteps")))))).toEqual(["continue with `trainer resume k4`"]);
    expect(await runTest(logged(withResumeHint(Effect.succeed(summary("finished")))))).toEqual([]);
  });

  // reliability D8: a run resumed by its path (a copy, another --runs-dir) is continued by its path, not by its name.
  it("names a run that does not live at runs/<name> by its directory", async () => {
    const at = (runDir: string) => runTest(logged(withResumeHint(Effect.succeed({ ...summary("stopped"), runDir }))));
    expect(await at(path.resolve("elsewhere", "copy-of-k4"))).toEqual([`continue with \`trainer resume ${path.join("elsewhere", "copy-of-k4")}\``]);
    expect(await at("/somewhere/else/k4")).toEqual(["continue with `trainer resume /somewhere/else/k4`"]);
  });

  it("adds the resume command to RunExists and leaves other failures alone", async () => {
    const exists = new Trainer.TrainError({ reason: "RunExists", run: "k4", detail: "/runs/k4 already holds checkpoints (latest step-00000005)" });
    const e = (await runTestFailure(withResumeHint(Effect.fail(exists)))) as Trainer.TrainError;
    expect(e.message).toBe("RunExists: /runs/k4 already holds checkpoints (latest step-00000005); resume it with `trainer resume k4` or pick another --name");
    const finished = new Trainer.TrainError({ reason: "Finished", run: "k4", detail: "done" });
    expect(await runTestFailure(withResumeHint(Effect.fail(finished)))).toBe(finished);
  });
});
