export * as Corpus from "./Corpus";
export * as Split from "./Split";
export * as Shards from "./Shards";
export * as Prepare from "./Prepare";
export * as Tokenizers from "./Tokenizers";
export * as Batches from "./Batches";
export * as Errors from "./Errors";
export { BatchError, CorpusError, ShardError, WriteError } from "./Errors";
