export * as Safetensors from "./Safetensors";
export * as Checkpoint from "./Checkpoint";
export * as RunLock from "./RunLock";
export { SafetensorsError } from "./Safetensors";
export { CheckpointError } from "./Checkpoint";
export { RunLockError } from "./RunLock";
