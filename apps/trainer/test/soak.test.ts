/**
 * The kill -9 soak (tools/soak.ts, issue 16) in its short form, run as a user runs it: three
 * trials — a moment of training, a checkpoint's write, a moment from the start — each resumed to
 * the end and compared bit for bit with an uninterrupted run. `--trials 20` is the long form.
 */
import * as path from "node:path";
import { Processes } from "@patchlm/testing";

jest.setTimeout(240_000);

interface Report {
  readonly trials: number;
  readonly passed: number;
  readonly pass: boolean;
  readonly reference: { readonly finalSha256: string };
  readonly results: ReadonlyArray<{ readonly trial: number; readonly landed: string; readonly mismatches: ReadonlyArray<string>; readonly finalSha256: string }>;
}

it("3 kill -9 trials resume to the uninterrupted run's losses and final weights, bit for bit", () => {
  const r = Processes.runTs(path.join(Processes.repo, "tools", "soak.ts"), ["--trials", "3", "--steps", "8", "--backend", "cpu"], { cwd: Processes.repo });
  const report = JSON.parse(r.stdout) as Report;
  expect(report.results.map((t) => ({ trial: t.trial, landed: t.landed, mismatches: t.mismatches }))).toEqual(
    report.results.map((t) => ({ trial: t.trial, landed: t.landed, mismatches: [] })),
  );
  expect(report.results.map((t) => t.finalSha256)).toEqual([1, 2, 3].map(() => report.reference.finalSha256));
  expect(report).toMatchObject({ trials: 3, passed: 3, pass: true });
  expect(r.status).toBe(0);
});
