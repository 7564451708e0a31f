import * as fsp from "node:fs/promises";

interface Entry {
  readonly handle: Promise<fsp.FileHandle>;
  users: number;
}

const closeQuietly = (e: Entry): Promise<void> =>
  e.handle.then((h) => h.close()).catch(() => undefined);

/**
 * A small LRU of open read-only file handles: positioned reads on a few open files instead of
 * loading them, so memory does not grow with the corpus. Handles in use are never closed under
 * their user.
 *
 * `closeAll` ends the cache for good. A read that was already running when its scope closed
 * (a promise cannot be interrupted: a prefetching stream cut short leaves one behind) finishes
 * on its own handle, which is then closed; it can open nothing more. Before, such a read opened
 * its next file into the emptied cache, and the handle stayed open until garbage collection
 * closed it (Node's "Closing file descriptor N on garbage collection" in the test logs).
 */
export class HandleCache {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(private readonly capacity: number) {}

  async use<A>(file: string, f: (h: fsp.FileHandle) => Promise<A>): Promise<A> {
    if (this.closed) throw new Error(`${file}: not read, its dataset was closed (the scope that opened it ended)`);
    let e = this.entries.get(file);
    if (e) this.entries.delete(file);
    else e = { handle: fsp.open(file, "r"), users: 0 };
    this.entries.set(file, e); // most recently used last
    e.users++;
    try {
      const handle = await e.handle.catch((err: unknown) => {
        this.entries.delete(file); // a failed open is not cached
        throw err;
      });
      return await f(handle);
    } finally {
      e.users--;
      if (this.closed) {
        if (e.users === 0) await closeQuietly(e);
      } else {
        await this.evict();
      }
    }
  }

  /** Handles open now (in use or idle). */
  get size(): number {
    return this.entries.size;
  }

  private async evict(): Promise<void> {
    for (const [file, e] of this.entries) {
      if (this.entries.size <= this.capacity) return;
      if (e.users > 0) continue;
      this.entries.delete(file);
      await closeQuietly(e);
    }
  }

  /** Close every idle handle now and every handle in use when its user is done; no more opens. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.filter((e) => e.users === 0).map(closeQuietly));
  }
}
