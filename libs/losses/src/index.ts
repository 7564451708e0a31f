export * as Loss from "./Loss";
