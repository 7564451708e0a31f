import { runTest } from "@patchlm/testing";
import { Chunk, Effect, Stream } from "effect";
import { Corpus, Prepare, Split } from "../src";

export interface ExpectedSplit {
  /** The split's token stream as the byte tokenizer makes it: [BOS] bytes EOS per document. */
  readonly tokens: Array<number>;
  readonly documents: Array<Corpus.Document>;
}

/**
 * The token streams `prepare` must produce, computed independently of it: documents assigned
 * with `Split`, in each split's order (`Prepare.documentOrder` of the corpus-order list), encoded
 * as UTF-8 bytes with EOS (and BOS) ids around them.
 */
export const expectedStreams = async (
  source: Corpus.Source,
  o: {
    seed: number;
    validationFraction: number;
    recordWords?: number;
    bos?: boolean;
    order?: "shuffled" | "corpus";
    special: { bos: number; eos: number };
  },
): Promise<Record<Split.SplitName, ExpectedSplit>> => {
  const docs = await runTest(
    Stream.runCollect(Corpus.documents(source, { recordWords: o.recordWords ?? 10_000 })).pipe(Effect.map(Chunk.toReadonlyArray)),
  );
  const plan = Split.plan(o.seed, docs.map((d) => Split.scored(o.seed, d.id)), o.validationFraction);
  const out: Record<Split.SplitName, ExpectedSplit> = { train: { tokens: [], documents: [] }, validation: { tokens: [], documents: [] } };
  for (const split of Split.splitNames) {
    const inCorpusOrder = docs.filter((d) => Split.assign(plan, d.id) === split);
    const n = inCorpusOrder.length;
    const at = n > 0 ? Prepare.documentOrder(o.order ?? "shuffled", o.seed, split, n) : (i: number) => i;
    const s = out[split];
    for (let i = 0; i < n; i++) {
      const d = inCorpusOrder[at(i)];
      s.documents.push(d);
      if (o.bos) s.tokens.push(o.special.bos);
      s.tokens.push(...Buffer.from(d.text, "utf8"), o.special.eos);
    }
  }
  return out;
};

/** A small corpus with multi-byte text (accents, CJK, emoji) in nested folders. */
export const smallCorpus: Record<string, string> = Object.fromEntries(
  Array.from({ length: 12 }, (_, i) => [
    `${i % 3 === 0 ? "sub/" : ""}doc-${String(i).padStart(2, "0")}.txt`,
    `Document ${i}: ` + `naïve café ${"😀".repeat(i % 3)} 漢字 line ${i}.\n`.repeat(5 + 3 * i),
  ]),
);
