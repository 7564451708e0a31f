export * as Tokenizer from "./Tokenizer";
export * as Bytes from "./Bytes";
export * as Bpe from "./Bpe";
export * as HuggingFace from "./HuggingFace";
export * as Tiktoken from "./Tiktoken";
export * as TextFile from "./TextFile";
export * as TokenizerFiles from "./TokenizerFiles";
export { BpeTrainError } from "./Bpe";
