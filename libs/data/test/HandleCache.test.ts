import * as fs from "node:fs";
import * as path from "node:path";
import { HandleCache } from "../src/internal/HandleCache";
import { tempDir } from "./fixtures";

// Open descriptors of this process (Linux): the cache must leave none behind.
const openFds = (): number => fs.readdirSync("/proc/self/fd").length;
const linux = fs.existsSync("/proc/self/fd");

describe("HandleCache (the shard reader's open files)", () => {
  const dir = tempDir("handle-cache");
  const files = ["a", "b", "c"].map((name, i) => {
    const file = path.join(dir, `${name}.bin`);
    fs.writeFileSync(file, Buffer.from([i, i + 1, i + 2, i + 3]));
    return file;
  });
  const firstByte = async (cache: HandleCache, file: string): Promise<number> =>
    cache.use(file, async (h) => {
      const buf = Buffer.alloc(1);
      await h.read(buf, 0, 1, 0);
      return buf[0];
    });

  it("keeps at most `capacity` idle handles, least recently used closed first", async () => {
    const cache = new HandleCache(2);
    expect(await firstByte(cache, files[0])).toBe(0);
    expect(await firstByte(cache, files[1])).toBe(1);
    expect(await firstByte(cache, files[2])).toBe(2);
    expect(cache.size).toBe(2);
    await cache.closeAll();
    expect(cache.size).toBe(0);
  });

  it("lets a read that is running when it closes finish on its handle, then closes it, and opens nothing after", async () => {
    const before = linux ? openFds() : 0;
    const cache = new HandleCache(4);
    let handleOfRead: { fd: number } | undefined;
    const read = cache.use(files[1], async (h) => {
      handleOfRead = h;
      await cache.closeAll(); // the scope ends while this read runs (a cut-short prefetch)
      const buf = Buffer.alloc(2);
      await h.read(buf, 0, 2, 1); // still open under its user
      return Array.from(buf);
    });
    expect(await read).toEqual([2, 3]);
    expect(handleOfRead?.fd).toBe(-1); // closed once its user was done
    await expect(firstByte(cache, files[2])).rejects.toThrow(/c\.bin: not read, its dataset was closed/);
    if (linux) expect(openFds()).toBe(before);
  });
});
