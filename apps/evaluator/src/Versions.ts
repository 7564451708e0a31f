import * as fs from "node:fs";
import * as path from "node:path";

/** This app's version (src/ and dist/ both sit beside its package.json). */
export const version: string = (JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8")) as { version: string }).version;
