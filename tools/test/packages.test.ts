/**
 * The package manifests say what the code does: every import a package's sources make is a
 * declared dependency or peer, every declared @patchlm dependency is used, the exports map points
 * at files the build makes (and at the sources under the workspace condition), and the build's
 * project references follow the dependencies.
 */
import * as fs from "node:fs";
import * as path from "node:path";

interface Manifest {
  readonly name: string;
  readonly version: string;
  readonly private?: boolean;
  readonly bin?: Record<string, string>;
  readonly exports?: Record<string, string | { "@patchlm/source": string; import: { types: string; default: string }; require: { types: string; default: string } }>;
  readonly files?: ReadonlyArray<string>;
  readonly sideEffects?: boolean;
  readonly dependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
}

const repo = path.resolve(__dirname, "..", "..");
const rootManifest = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as Manifest;
const packages = ["libs", "apps"].flatMap((group) => fs.readdirSync(path.join(repo, group)).map((d) => path.join(group, d)));
const manifest = (dir: string): Manifest => JSON.parse(fs.readFileSync(path.join(repo, dir, "package.json"), "utf8")) as Manifest;

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(file) : /\.(ts|cjs)$/.test(e.name) ? [file] : [];
  });

/** The packages a package's src/ imports or requires (bare specifiers, node: builtins left out). */
const importedPackages = (dir: string): Set<string> => {
  const found = new Set<string>();
  for (const file of sourceFiles(path.join(repo, dir, "src"))) {
    const text = fs.readFileSync(file, "utf8");
    // The tsx shim of a worker runs only from source (the build does not ship it).
    if (/require\("tsx/.test(text)) continue;
    for (const m of text.matchAll(/(?:from |import\(|require\()"([^".][^"]*)"/g)) {
      const spec = m[1]!;
      if (spec.startsWith("node:")) continue;
      found.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  }
  return found;
};

describe.each(packages)("%s", (dir) => {
  const m = manifest(dir);
  const declared = { ...m.dependencies, ...m.peerDependencies };

  it("declares every package its sources import", () => {
    const missing = [...importedPackages(dir)].filter((p) => p !== m.name && declared[p] === undefined);
    expect(missing).toEqual([]);
  });

  it("uses every @patchlm package it declares", () => {
    const imported = importedPackages(dir);
    expect(Object.keys(declared).filter((p) => p.startsWith("@patchlm/") && !imported.has(p))).toEqual([]);
  });

  it("is publishable: not private, the workspace's version, files and @patchlm dependencies pinned to it", () => {
    expect(m.private).toBeUndefined();
    expect(m.version).toBe(rootManifest.version);
    expect(m.files).toEqual(expect.arrayContaining(["README.md"]));
    for (const [p, range] of Object.entries(declared)) if (p.startsWith("@patchlm/")) expect(`${p}@${range}`).toBe(`${p}@${rootManifest.version}`);
  });

  it("shares effect and tfjs with its consumer: they are peers, never bundled dependencies", () => {
    for (const shared of ["effect", "@effect/platform", "@tensorflow/tfjs-core", "@tensorflow/tfjs"]) {
      if (dir.startsWith("libs/")) expect(m.dependencies?.[shared]).toBeUndefined();
    }
  });

  it("has project references for exactly its @patchlm dependencies", () => {
    const config = JSON.parse(fs.readFileSync(path.join(repo, dir, "tsconfig.lib.json"), "utf8")) as { references: ReadonlyArray<{ path: string }> };
    const referenced = config.references.map((r) => path.resolve(repo, dir, r.path)).sort();
    const dirOf = Object.fromEntries(packages.map((d) => [manifest(d).name, d]));
    const expected = Object.keys(declared)
      .filter((p) => p.startsWith("@patchlm/"))
      .map((p) => path.join(repo, dirOf[p]!, "tsconfig.lib.json"))
      .sort();
    expect(referenced).toEqual(expected);
  });

  if (dir.startsWith("libs/")) {
    it("exports its entries from dist/ (CommonJS, ESM, types) and, under the workspace condition, from src/", () => {
      const entries = Object.entries(m.exports ?? {}).filter(([k]) => k !== "./package.json");
      expect(entries.map(([k]) => k)).toContain(".");
      for (const [, target] of entries) {
        if (typeof target === "string") throw new Error(`${dir}: an exports entry must name its conditions`);
        expect(fs.existsSync(path.join(repo, dir, target["@patchlm/source"]))).toBe(true);
        const base = target["@patchlm/source"].replace(/^\.\/src\//, "./dist/").replace(/\.ts$/, "");
        expect(target.require).toEqual({ types: `${base}.d.ts`, default: `${base}.js` });
        expect(target.import).toEqual({ types: `${base}.d.mts`, default: `${base}.mjs` });
      }
      // internal/ stays closed: no entry reaches into it.
      expect(Object.keys(m.exports ?? {}).filter((k) => k.includes("internal"))).toEqual([]);
    });
  } else {
    it("installs its command as a compiled bin", () => {
      const bin = Object.entries(m.bin ?? {});
      expect(bin).toEqual([[`patchlm-${path.basename(dir)}`, "./dist/main.js"]]);
      expect(fs.readFileSync(path.join(repo, dir, "src", "main.ts"), "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
    });
  }
});
