/**
 * One process owns a run directory at a time: `<runDir>/lock` names the holder (pid, host, when,
 * what it runs), and on Linux an abstract Unix socket named after the directory is the lock itself:
 * the kernel holds it for the process and drops it the moment the process dies, kill -9 included.
 *
 * - A lock whose holder is alive (here or, as far as anyone can tell, on another host) is refused,
 *   naming the holder and how to stop it or clear the lock.
 * - A lock whose holder is provably gone — this host, this boot, and its pid no longer running or
 *   now another process — is stale. It is taken over only while the socket is held (so no live
 *   process anywhere on this host can hold it), with a warning naming the dead holder; without the
 *   socket (not Linux) it is reported with how to clear it.
 * - Scoped: the lock file is removed and the socket closed when the scope closes (or at exit).
 *
 * `heldHere` tells a writer (Checkpoint.cleanup) that every other writer's leftovers in the
 * directory are stale: any live writer would hold the lock.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import { join, resolve } from "node:path";
import { Effect, Either, Schema } from "effect";
import { FileError } from "@patchlm/core";

export const LOCK_FILE = "lock";

/** What the lock file says about its holder. */
export const Holder = Schema.Struct({
  pid: Schema.Int.pipe(Schema.positive()),
  host: Schema.String,
  /** This boot of the host (Linux): a pid from an earlier boot is no one's. */
  bootId: Schema.optional(Schema.String),
  /** The holder's start time in clock ticks since boot (Linux): tells a reused pid from the holder. */
  processStart: Schema.optional(Schema.String),
  startedAt: Schema.String,
  command: Schema.String,
  /** Tells this holder's file from any other's. */
  token: Schema.String,
});
export type Holder = typeof Holder.Type;

/** A run directory that another process owns, or whose lock cannot be read or taken. */
export class RunLockError extends Schema.TaggedError<RunLockError>()("RunLockError", {
  path: Schema.String,
  reason: Schema.Literal("Held", "Stale", "Unreadable"),
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.detail}`;
  }
}

/** A held lock. */
export interface Held {
  readonly dir: string;
  readonly path: string;
  readonly holder: Holder;
  /** The stale holder this lock replaced, if any. */
  readonly replaced: Holder | undefined;
}

const readText = (path: string): string | undefined => {
  try {
    return fs.readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
};

const bootId = (): string | undefined => readText("/proc/sys/kernel/random/boot_id")?.trim();

/** Field 22 of /proc/<pid>/stat, the process's start time; undefined where there is no /proc. */
const processStart = (pid: number): string | undefined => {
  const stat = readText(`/proc/${pid}/stat`);
  return stat === undefined ? undefined : stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
};

/** The holder's process: running, provably gone (and why), or not knowable from here (another host). */
export const liveness = (h: Pick<Holder, "pid" | "host" | "bootId" | "processStart">): { readonly state: "alive" | "dead" | "unknown"; readonly why: string } => {
  if (h.host !== os.hostname()) return { state: "unknown", why: `it runs on host ${h.host}` };
  const boot = bootId();
  if (h.bootId !== undefined && boot !== undefined && h.bootId !== boot) return { state: "dead", why: "this host has restarted since" };
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return { state: "dead", why: "it is no longer running" };
  }
  const start = processStart(h.pid);
  if (h.processStart !== undefined && start !== undefined && start !== h.processStart) {
    return { state: "dead", why: `it is no longer running (pid ${h.pid} is now another process)` };
  }
  return { state: "alive", why: "it is running" };
};

const describe = (h: Holder): string => `pid ${h.pid} on ${h.host} since ${h.startedAt} (${h.command})`;

const parseHolder = (text: string | undefined): Either.Either<Holder, string> => {
  if (text === undefined) return Either.left("unreadable");
  try {
    return Either.mapLeft(Schema.decodeUnknownEither(Holder)(JSON.parse(text)), (e) => e.message.split("\n")[0]);
  } catch (e) {
    return Either.left(`not JSON: ${(e as Error).message}`);
  }
};

/** Locks this process holds, by directory identity (device and inode). */
const held = new Map<string, Held>();

const identity = (dir: string): string => {
  const st = fs.statSync(dir);
  return `${st.dev}:${st.ino}`;
};

/** Whether this process holds the lock of `dir`. */
export const heldHere = (dir: string): boolean => {
  try {
    return held.has(identity(dir));
  } catch {
    return false;
  }
};

/**
 * The kernel's half of the lock: an abstract Unix socket named after the directory. Undefined
 * where there are none (not Linux); "busy" when a live process on this host holds it.
 */
const listen = (key: string): Effect.Effect<net.Server | undefined | "busy"> =>
  process.platform !== "linux"
    ? Effect.succeed(undefined)
    : Effect.async((resume) => {
        const server = net.createServer((socket) => socket.destroy());
        server.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code === "EADDRINUSE" ? ("busy" as const) : undefined)));
        server.listen(`\0patchlm-run-lock-${createHash("sha256").update(key).digest("hex").slice(0, 40)}`, () => {
          server.unref();
          resume(Effect.succeed(server));
        });
      });

const removeIfOurs = (path: string, token: string): void => {
  const now = parseHolder(readText(path));
  if (Either.isRight(now) && now.right.token === token) fs.rmSync(path, { force: true });
};

const ioError = (path: string, e: unknown) =>
  new FileError({ path, reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unwritable", detail: (e as Error).message });

/**
 * Take the lock of `dir` (which must exist) for the scope's lifetime. `command` says what holds it
 * (default: this process's arguments).
 */
export const acquire = (dir: string, options: { readonly command?: string } = {}) =>
  Effect.acquireRelease(take(resolve(dir), options.command ?? process.argv.slice(2).join(" ")), (h) =>
    Effect.sync(() => {
      const entry = held.get(h.key);
      if (entry === undefined) return;
      held.delete(h.key);
      process.removeListener("exit", h.atExit);
      removeIfOurs(h.lock.path, h.lock.holder.token);
      if (h.server !== undefined) h.server.close();
    }),
  ).pipe(Effect.map((h) => h.lock));

const take = (dir: string, command: string) =>
  Effect.gen(function* () {
    const path = join(dir, LOCK_FILE);
    const key = yield* Effect.try({ try: () => identity(dir), catch: (e) => ioError(dir, e) });
    const heldBy = (h: Holder, how: string) => new RunLockError({ path: dir, reason: "Held", detail: `in use by ${describe(h)}; ${how}` });
    const ours = held.get(key);
    if (ours !== undefined) return yield* heldBy(ours.holder, "this process already owns this run directory");
    const server = yield* listen(key);
    const giveUp = <E>(e: E) => Effect.sync(() => (server instanceof net.Server ? server.close() : undefined)).pipe(Effect.zipRight(Effect.fail(e)));
    const waitOrStop = (h: Holder) => `one process owns a run directory at a time: wait for it to end, or stop it (kill -TERM ${h.pid})`;
    if (server === "busy") {
      const found = parseHolder(readText(path));
      return yield* Either.isRight(found)
        ? heldBy(found.right, waitOrStop(found.right))
        : new RunLockError({ path: dir, reason: "Held", detail: `in use by another process on this host (its ${LOCK_FILE} file is not written yet)` });
    }
    const holder: Holder = {
      pid: process.pid,
      host: os.hostname(),
      bootId: bootId(),
      processStart: processStart(process.pid),
      startedAt: new Date().toISOString(),
      command: command.length > 300 ? `${command.slice(0, 300)}…` : command,
      token: randomBytes(16).toString("hex"),
    };
    const text = JSON.stringify(holder, null, 2) + "\n";
    let replaced: Holder | undefined;
    for (;;) {
      try {
        fs.writeFileSync(path, text, { flag: "wx" });
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return yield* giveUp(ioError(path, e));
      }
      const existing = readText(path);
      if (existing === undefined) continue; // removed in between: try again
      const found = parseHolder(existing);
      if (Either.isLeft(found)) {
        return yield* giveUp(
          new RunLockError({ path, reason: "Unreadable", detail: `not a run lock (${found.left}); if no process uses ${dir}, remove ${path}` }),
        );
      }
      const h = found.right;
      const life = liveness(h);
      if (life.state === "alive") return yield* giveUp(heldBy(h, `${waitOrStop(h)}; if that pid is not using this run, remove ${path}`));
      if (life.state === "unknown") {
        return yield* giveUp(heldBy(h, `this host cannot tell whether ${h.host} still runs it; if no process there uses this run, remove ${path}`));
      }
      if (server === undefined) {
        return yield* giveUp(
          new RunLockError({ path: dir, reason: "Stale", detail: `the lock of ${describe(h)} is stale: ${life.why}; remove ${path} and try again` }),
        );
      }
      // No live process on this host holds the socket, and the holder is gone: the lock is stale.
      const tmp = join(dir, `.tmp-lock-${process.pid}-${randomBytes(4).toString("hex")}`);
      yield* Effect.try({
        try: () => {
          fs.writeFileSync(tmp, text);
          fs.renameSync(tmp, path);
        },
        catch: (e) => ioError(path, e),
      }).pipe(Effect.catchAll(giveUp));
      replaced = h;
      yield* Effect.logWarning(`${dir}: took over the stale lock of ${describe(h)}: ${life.why}`);
      break;
    }
    // Another host could have raced us for the same file: the file must name us now.
    const now = parseHolder(readText(path));
    if (Either.isLeft(now) || now.right.token !== holder.token) {
      return yield* giveUp(
        Either.isRight(now) ? heldBy(now.right, waitOrStop(now.right)) : new RunLockError({ path, reason: "Unreadable", detail: "changed while being taken" }),
      );
    }
    const lock: Held = { dir, path, holder, replaced };
    const atExit = () => removeIfOurs(path, holder.token);
    process.on("exit", atExit);
    held.set(key, lock);
    return { lock, key, atExit, server: server instanceof net.Server ? server : undefined };
  });
