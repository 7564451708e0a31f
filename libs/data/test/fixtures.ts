import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// One root per test file, removed after it; `tempDir` can then be called inside tests too.
const root = fs.mkdtempSync(path.join(os.tmpdir(), "patchlm-data-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A fresh temp directory. */
export const tempDir = (label: string): string => fs.mkdtempSync(path.join(root, `${label}-`));

/** Write files (relative path -> text or raw bytes) under a directory, creating subdirectories. */
export const writeFiles = (dir: string, files: Record<string, string | Uint8Array>): string => {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
  return dir;
};
