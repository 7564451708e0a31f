/**
 * RunLock (reliability D5): one process owns a run directory; the lock dies with its process (a
 * real child, killed with SIGKILL) and is then taken over, saying so; Checkpoint.cleanup removes
 * only temp files that are provably stale.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { NodeFileSystem } from "@effect/platform-node";
import { Effect, Logger } from "effect";
import { Processes, runTest, runTestFailure } from "@patchlm/testing";
import { Checkpoint, RunLock } from "../src";

jest.setTimeout(60_000);

let dir: string;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), "runlock-")), "run");
  mkdirSync(dir);
});
afterEach(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

const lockFile = () => JSON.parse(readFileSync(join(dir, "lock"), "utf8")) as RunLock.Holder;

/** Log lines an Effect wrote, and its result. */
const logged = async <A, E>(effect: Effect.Effect<A, E>): Promise<{ lines: Array<string>; exit: A | E }> => {
  const lines: Array<string> = [];
  const logger = Logger.make(({ logLevel, message }) => void lines.push(`${logLevel.label} ${[message].flat().join(" ")}`));
  const exit = await Effect.runPromise(Effect.either(effect).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))));
  return { lines, exit: exit._tag === "Right" ? exit.right : exit.left };
};

describe("RunLock", () => {
  it("names its holder while held, refuses a second holder, and goes when the scope closes", async () => {
    await runTest(
      Effect.scoped(
        Effect.gen(function* () {
          const held = yield* RunLock.acquire(dir, { command: "trainer train --name run" });
          expect(lockFile()).toMatchObject({ pid: process.pid, host: hostname(), command: "trainer train --name run", token: held.holder.token });
          expect(RunLock.heldHere(dir)).toBe(true);
          const again = yield* Effect.flip(Effect.scoped(RunLock.acquire(dir)));
          expect(again).toMatchObject({ _tag: "RunLockError", reason: "Held" });
          expect(again.message).toMatch(new RegExp(`^${resolve(dir)}: in use by pid ${process.pid} on ${hostname()} since .* \\(trainer train --name run\\); this process already owns`));
        }),
      ),
    );
    expect(existsSync(join(dir, "lock"))).toBe(false);
    expect(RunLock.heldHere(dir)).toBe(false);
  });

  it("a live holder in another process is refused; once it is killed, the lock is taken over with a warning", async () => {
    const child = Processes.follow(spawn(process.execPath, Processes.tsArgs(join(__dirname, "fixtures", "hold-lock.ts"), [dir])));
    await Processes.waitFor(() => child.output().includes("held"), "the child to hold the lock", 30_000);
    const refused = await runTestFailure(Effect.scoped(RunLock.acquire(dir)));
    expect(refused.message).toMatch(new RegExp(`in use by pid ${child.child.pid} on ${hostname()} since .* \\(hold-lock fixture\\); .*kill -TERM ${child.child.pid}`));
    // Its save in progress is not ours to remove.
    const save = `.tmp-step-00000007-${child.child.pid}-0123abcd`;
    await runTest(Effect.provide(Checkpoint.cleanup(dir), NodeFileSystem.layer));
    expect(readdirSync(dir)).toContain(save);

    child.child.kill("SIGKILL");
    await child.exit;
    expect(lockFile().pid).toBe(child.child.pid);
    const { lines, exit } = await logged(
      Effect.scoped(
        Effect.gen(function* () {
          const held = yield* RunLock.acquire(dir);
          expect(lockFile().pid).toBe(process.pid);
          // Under the lock, the dead writer's leftovers are provably stale.
          expect(yield* Effect.provide(Checkpoint.cleanup(dir), NodeFileSystem.layer)).toEqual([save]);
          return held.replaced?.pid;
        }),
      ),
    );
    expect(exit).toBe(child.child.pid);
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^WARN .*took over the stale lock of pid ${child.child.pid} on ${hostname()} .*: it is no longer running$`))]);
  });

  it("without the lock, cleanup removes only this process's own temp files", async () => {
    for (const n of [`.tmp-step-00000003-${process.pid}-0badf00d`, ".tmp-step-00000004-999999-0badf00d", ".tmp-latest-1-abcdef01"]) mkdirSync(join(dir, n));
    const removed = await runTest(Effect.provide(Checkpoint.cleanup(dir), NodeFileSystem.layer));
    expect(removed).toEqual([`.tmp-step-00000003-${process.pid}-0badf00d`]);
    expect(readdirSync(dir).sort()).toEqual([".tmp-latest-1-abcdef01", ".tmp-step-00000004-999999-0badf00d"]);
  });

  it("a missing directory is a FileError naming it", async () => {
    const e = await runTestFailure(Effect.scoped(RunLock.acquire(join(dir, "nope"))));
    expect(e).toMatchObject({ _tag: "FileError", reason: "NotFound" });
    expect(e.message).toContain(join(dir, "nope"));
  });
});
