export { int, mulberry32, type Rng, shuffle } from "@patchlm/core";
