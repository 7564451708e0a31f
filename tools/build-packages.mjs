#!/usr/bin/env node
// Builds the packages' dist/ folders: what `npm pack` ships and what plain `node` runs.
//   node tools/build-packages.mjs            every lib and app (tsc -b tsconfig.build.json)
//   node tools/build-packages.mjs --package DIR   one package and what it depends on (its prepack)
//
// tsc -b compiles each package's src/ to CommonJS JavaScript and .d.ts (tsconfig.dist.json).
// Then, for every entry of the package's exports map, this script writes the ESM entry beside it:
// `dist/<entry>.mjs` re-exports the CommonJS module, and `dist/<entry>.d.mts` its types. So
// `import` and `require` reach one copy of each module: a process that mixes them still has one
// native backend registration, one strategy registry and one class per tagged error (no dual-
// package hazard). Plain-CommonJS helpers in src/ (worker entries) are copied as they are, except
// the source-only shims that register tsx.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");

const ts = createRequire(import.meta.url)("typescript");

/** The value names a compiled entry exports (from its .d.ts: types-only exports have no value to re-export). */
const valueExports = (dts) => {
  const program = ts.createProgram([dts], { noResolve: false, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(dts);
  const symbol = file && checker.getSymbolAtLocation(file);
  if (symbol === undefined) throw new Error(`${dts}: not a module`);
  return checker
    .getExportsOfModule(symbol)
    .filter((s) => {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      return (target.flags & ts.SymbolFlags.Value) !== 0 || (s.flags & ts.SymbolFlags.Value) !== 0;
    })
    .map((s) => s.name)
    .sort();
};

const packageDirs = () =>
  ["libs", "apps"].flatMap((group) =>
    fs
      .readdirSync(path.join(root, group))
      .map((d) => path.join(root, group, d))
      .filter((d) => fs.existsSync(path.join(d, "tsconfig.lib.json"))),
  );

const walk = (dir) =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));

const finish = (dir) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  const dist = path.join(dir, "dist");
  for (const target of Object.values(pkg.exports ?? {})) {
    const esm = typeof target === "object" ? target.import : undefined;
    if (esm === undefined) continue;
    const cjs = path.basename(target.require.default);
    const names = valueExports(path.join(dir, target.require.types));
    const banner = `// ESM entry: the CommonJS build re-exported, so import and require share one copy.\n`;
    fs.writeFileSync(path.join(dir, esm.default), `${banner}import cjs from "./${cjs}";\nexport const { ${names.join(", ")} } = cjs;\n`);
    fs.writeFileSync(path.join(dir, esm.types), `${banner}export * from "./${cjs}";\n`);
  }
  const src = path.join(dir, "src");
  for (const file of walk(src).filter((f) => f.endsWith(".cjs"))) {
    if (/require\("tsx/.test(fs.readFileSync(file, "utf8"))) continue;
    const out = path.join(dist, path.relative(src, file));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.copyFileSync(file, out);
  }
  for (const bin of Object.values(typeof pkg.bin === "string" ? { bin: pkg.bin } : (pkg.bin ?? {}))) {
    const file = path.join(dir, bin);
    if (!fs.existsSync(file)) throw new Error(`${pkg.name}: bin ${bin} was not built`);
    fs.chmodSync(file, 0o755);
  }
};

const args = process.argv.slice(2);
const only = args[0] === "--package" ? path.resolve(args[1] ?? ".") : undefined;
if (args.length > 0 && only === undefined) {
  console.error("usage: node tools/build-packages.mjs [--package DIR]");
  process.exit(2);
}
const project = only === undefined ? path.join(root, "tsconfig.build.json") : path.join(only, "tsconfig.lib.json");
execFileSync(process.execPath, [tsc, "-b", project], { stdio: "inherit", cwd: root });
// tsc -b builds the package's references too; finish them all, so their dist/ is complete as well.
for (const dir of packageDirs()) if (fs.existsSync(path.join(dir, "dist"))) finish(dir);
