export * as Handlers from "./Handlers";
