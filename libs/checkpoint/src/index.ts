export * as Safetensors from "./Safetensors";
export * as Checkpoint from "./Checkpoint";
export { SafetensorsError } from "./Safetensors";
export { CheckpointError } from "./Checkpoint";
