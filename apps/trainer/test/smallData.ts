/** The small corpus the process tests train on: six text documents, prepared with byte tokens. */
import type { SpawnSyncReturns } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** Write `<root>/corpus` and prepare it into `<root>/data` (train 5 documents, validation 1). */
export const prepareSmallData = (root: string, trainer: (args: ReadonlyArray<string>) => SpawnSyncReturns<string>): SpawnSyncReturns<string> => {
  const corpus = path.join(root, "corpus");
  fs.mkdirSync(corpus);
  for (let d = 0; d < 6; d++) {
    fs.writeFileSync(path.join(corpus, `d${d}.txt`), Array.from({ length: 60 }, (_, i) => `Line ${i} of document ${d}: the quick brown fox.`).join("\n"));
  }
  return trainer(["prepare", "--corpus", "corpus", "--out", "data", "--tokenizer", "bytes", "--val-fraction", "0.2"]);
};
