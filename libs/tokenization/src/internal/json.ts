export const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** `bos_token` and friends in `tokenizer_config.json`: a string or a serialized AddedToken `{ content }`. */
export const tokenName = (value: unknown): string | undefined =>
  typeof value === "string" ? value : isRecord(value) && typeof value.content === "string" ? value.content : undefined;

/** The special-token names a `tokenizer_config.json` document declares. */
export const configuredSpecials = (config: Record<string, unknown>) => ({
  bos: tokenName(config.bos_token),
  eos: tokenName(config.eos_token),
  pad: tokenName(config.pad_token),
});
