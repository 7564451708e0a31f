export { defaultTo, nearestFlag, runCli } from "./Main";
