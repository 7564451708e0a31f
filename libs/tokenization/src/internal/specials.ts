import type { SpecialTokens } from "../Tokenizer";

/** Token names, in order of preference, that mean BOS, EOS and PAD across common vocabularies. */
export const knownNames = {
  bos: ["<|bos|>", "<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "[CLS]"],
  eos: ["<|eos|>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "[SEP]"],
  pad: ["<|pad|>", "<pad>", "[PAD]", "<|padding|>"],
} as const;

export interface ResolvedSpecials {
  readonly special: SpecialTokens;
  /** Vocabulary size including any ids added for missing specials. */
  readonly vocabSize: number;
  /** Ids that exist only in patchlm (added for a missing EOS or PAD). */
  readonly added: ReadonlyArray<number>;
}

/**
 * Map BOS, EOS and PAD onto a vocabulary. The rule, for each role:
 * 1. the token named by the tokenizer config (`tokenizer_config.json`'s `bos_token`, ...) if it
 *    is in the vocabulary;
 * 2. else the first of `knownNames[role]` that is in the vocabulary;
 * 3. BOS without a token of its own is EOS (GPT-2's convention: one `<|endoftext|>` both ends
 *    and starts documents);
 * 4. an EOS or PAD still missing gets a new id after the vocabulary (`vocabSize` grows by one
 *    each). It decodes to nothing. PAD is never shared with EOS, because PAD positions are
 *    masked out of the loss and EOS is a real target.
 */
export const resolveSpecials = (
  lookup: (token: string) => number | undefined,
  vocabSize: number,
  configured: { readonly bos?: string; readonly eos?: string; readonly pad?: string },
): ResolvedSpecials => {
  // Configs often set `pad_token` to the EOS token; rule 4 overrides that.
  const find = (role: keyof typeof knownNames): number | undefined => {
    const named = configured[role];
    const fromConfig = named === undefined ? undefined : lookup(named);
    if (fromConfig !== undefined) return fromConfig;
    for (const name of knownNames[role]) {
      const id = lookup(name);
      if (id !== undefined) return id;
    }
    return undefined;
  };
  let size = vocabSize;
  const added: Array<number> = [];
  const fresh = (): number => {
    added.push(size);
    return size++;
  };
  const eos = find("eos") ?? fresh();
  const bos = find("bos") ?? eos;
  const found = find("pad");
  const pad = found !== undefined && found !== eos ? found : fresh();
  return { special: { bos, eos, pad }, vocabSize: size, added };
};
