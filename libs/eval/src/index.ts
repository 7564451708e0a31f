export * as Score from "./Score";
