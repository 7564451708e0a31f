// Prints compiler or linker flags for the system OpenBLAS, for binding.gyp:
//   node scripts/blas.cjs include_dirs | libraries | found | check
// pkg-config first (Debian's libopenblas-dev ships openblas.pc), then Debian's known paths.
// `found` prints yes or no: without OpenBLAS the addon is built on our own GEMM alone.
// PATCHLM_NO_OPENBLAS=1 at build time makes that build even where OpenBLAS exists.
// `check` exits 1 with a reason when no OpenBLAS is found.
"use strict";
const { execFileSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

const knownRoots = [
  { include: "/usr/include/x86_64-linux-gnu/openblas-pthread", lib: "/usr/lib/x86_64-linux-gnu/openblas-pthread" },
  { include: "/usr/include/aarch64-linux-gnu/openblas-pthread", lib: "/usr/lib/aarch64-linux-gnu/openblas-pthread" },
  { include: "/usr/include/openblas", lib: "/usr/lib64" },
  { include: "/usr/include", lib: "/usr/lib" },
];

const pkgConfig = (flag) => {
  try {
    return execFileSync("pkg-config", [flag, "openblas"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .split(/\s+/)
      .filter((s) => s.length > 0);
  } catch {
    return undefined;
  }
};

const find = () => {
  const cflags = pkgConfig("--cflags");
  const libs = pkgConfig("--libs");
  if (cflags !== undefined && libs !== undefined) {
    const includeDirs = cflags.filter((f) => f.startsWith("-I")).map((f) => f.slice(2));
    if (includeDirs.length === 0 || includeDirs.some((d) => existsSync(path.join(d, "cblas.h")))) {
      return { includeDirs, libraries: libs, via: "pkg-config openblas" };
    }
  }
  for (const root of knownRoots) {
    if (existsSync(path.join(root.include, "cblas.h")) && existsSync(path.join(root.lib, "libopenblas.so"))) {
      return { includeDirs: [root.include], libraries: [`-L${root.lib}`, "-lopenblas"], via: root.include };
    }
  }
  return undefined;
};

const found = process.env.PATCHLM_NO_OPENBLAS === "1" ? undefined : find();
const what = process.argv[2];
if (what === "check") {
  if (found === undefined) {
    console.error("OpenBLAS not found: no `pkg-config openblas` and no cblas.h + libopenblas.so in Debian's paths");
    process.exit(1);
  }
  console.log(`OpenBLAS found via ${found.via}`);
} else if (what === "found") {
  console.log(found === undefined ? "no" : "yes");
} else if (what === "include_dirs") {
  console.log((found?.includeDirs ?? []).join(" "));
} else if (what === "libraries") {
  // Without OpenBLAS, still name the library so the link fails with a clear "cannot find -lopenblas".
  console.log((found?.libraries ?? ["-lopenblas"]).join(" "));
} else {
  console.error("usage: node scripts/blas.cjs include_dirs|libraries|found|check");
  process.exit(2);
}
