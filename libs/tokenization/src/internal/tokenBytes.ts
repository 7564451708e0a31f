/**
 * Decoding shared by the byte-level tokenizers: concatenate each id's bytes, then decode UTF-8
 * once. Ids without bytes (specials, ids outside the vocabulary) contribute nothing. Invalid UTF-8
 * (only possible for id sequences no text encodes to, e.g. sampled by a model) becomes U+FFFD,
 * as in Hugging Face's decoder. `ignoreBOM` keeps a leading U+FEFF: it is text like any other.
 */
export const makeDecoder = (tokenBytes: ReadonlyArray<Uint8Array | undefined>) => {
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  return (ids: ArrayLike<number>): string => {
    let size = 0;
    for (let i = 0; i < ids.length; i++) size += tokenBytes[ids[i]]?.length ?? 0;
    const bytes = new Uint8Array(size);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = tokenBytes[ids[i]];
      if (b === undefined) continue;
      bytes.set(b, at);
      at += b.length;
    }
    return decoder.decode(bytes);
  };
};
