export * as ComputeBackend from "./ComputeBackend";
export { BackendError } from "./Errors";
