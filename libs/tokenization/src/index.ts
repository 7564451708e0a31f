export * as Tokenizer from "./Tokenizer";
