/**
 * How `runCli` reports a failure, through a real process (reliability D12): one `error:` line that
 * names the flag, file or key; no JSON dump of a parser error and no stack trace, unless
 * `--log-level debug` asks for it.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { nearestFlag } from "../src";

jest.setTimeout(120_000);

const tsxDist = path.resolve(__dirname, "..", "..", "..", "node_modules", "tsx", "dist");
const fixture = path.join(__dirname, "fixtures", "cli.ts");

const cli = (...args: ReadonlyArray<string>) => {
  const r = spawnSync(
    process.execPath,
    ["--conditions=@patchlm/source", "--require", path.join(tsxDist, "preflight.cjs"), "--import", pathToFileURL(path.join(tsxDist, "loader.mjs")).href, fixture, ...args],
    { encoding: "utf8", env: { ...process.env, FORCE_COLOR: "0", PATCHLM_LOG: "" } },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines: r.stderr.split("\n").filter((l) => l.trim() !== "") };
};

const oneErrorLine = (r: ReturnType<typeof cli>, want: RegExp) => {
  expect(r.lines).toEqual([expect.stringMatching(want)]);
  expect(r.lines[0]).toMatch(/^error: /);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toMatch(/_tag/);
  expect(r.status).toBe(1);
};

describe("runCli failures", () => {
  it("succeeds quietly", () => {
    const r = cli("run", "--count", "3");
    expect(r.stdout).toBe("ok count=3 rate=1 mode=fast\n");
    expect(r.status).toBe(0);
  });

  it("a bad flag value names the flag, in one line", () => {
    oneErrorLine(cli("run", "--count", "abc"), /^error: --count: 'abc' is not a/);
    oneErrorLine(cli("run", "--rate=fast"), /^error: --rate: 'fast' is not a/);
    oneErrorLine(cli("run", "--then", "other", "--mode", "medium"), /^error: --mode: 'medium' is not one of fast, slow$/);
    oneErrorLine(cli("run", "--mode=medium"), /^error: --mode: 'medium' is not one of fast, slow$/);
  });

  it("a tagged failure is its message", () => {
    oneErrorLine(cli("run", "--then", "fail"), /^error: some\/file\.txt: Malformed: line 3 is not JSON$/);
  });

  it("a system error (ENAMETOOLONG) names the file and the code, without a stack trace", () => {
    oneErrorLine(cli("run", "--then", "enametoolong"), /^error: .*x{300}: ENAMETOOLONG: name too long/);
    oneErrorLine(cli("run", "--dir", path.join("/tmp", "y".repeat(300))), /^error: .*y{300}: ENAMETOOLONG/);
  });

  it("an unexpected failure is one line plus where to get the trace; --log-level debug shows it", () => {
    const r = cli("run", "--then", "bug");
    expect(r.lines[0]).toBe("error: TypeError: Cannot read properties of undefined (reading 'shape')");
    expect(r.lines.slice(1)).toEqual([expect.stringMatching(/--log-level debug/)]);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.status).toBe(1);
    const debug = cli("run", "--then", "bug", "--log-level", "debug");
    expect(debug.stderr).toMatch(/^\s+at /m);
    expect(debug.status).toBe(1);
  });
});

describe("runCli usability", () => {
  it("a mistyped flag is one line that suggests the nearest flag", () => {
    oneErrorLine(cli("run", "--cuont", "3"), /^error: unknown flag '--cuont'; did you mean --count\? \(--help lists them\)$/);
  });

  it("--help written into a pipe has no colour codes, and shows each default", () => {
    const r = cli("run", "--help");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--rate float\s+A floating point number\.\s+Default: 1\./);
    expect(r.stdout).not.toMatch(new RegExp(String.fromCharCode(27)));
  });

  it("nearestFlag picks a close flag and nothing for a far one", () => {
    expect(nearestFlag("--mirco-batch", ["--micro-batch", "--max-steps", "--batch-tokens"])).toBe("--micro-batch");
    expect(nearestFlag("--lr=3", ["--lr", "--seed"])).toBe("--lr");
    expect(nearestFlag("--completely-different", ["--lr", "--seed"])).toBeUndefined();
  });
});
