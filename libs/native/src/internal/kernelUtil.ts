import * as tf from "@tensorflow/tfjs-core";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { NativeMathBackend, type Words } from "./storage";

// Kernels are only called with the inputs their op declares; optional ones (bias) may be absent.
export type KernelArgs = Omit<Parameters<tf.KernelFunc>[0], "inputs"> & { inputs: Record<string, tf.TensorInfo> };
export type Info = tf.TensorInfo;

/** The backend a native kernel runs on: the cpu backend's storage, under the name "native". */
export const cpuBackend = (args: KernelArgs): MathBackendCPU => args.backend as MathBackendCPU;

/** The storage of a tensor: the typed array itself, not a copy. */
export const storage = (backend: MathBackendCPU, t: Info): tf.TypedArray =>
  backend.data.get(t.dataId).values as tf.TypedArray;

/**
 * A float32 tensor's values as a Float32Array: the storage itself, or a converted copy where the
 * cpu backend kept narrower storage (its Cast to a wider dtype shares the input's Int32Array or
 * Uint8Array under the new dtype, with the same dataId, so the storage must not be replaced).
 */
export const f32 = (backend: MathBackendCPU, t: Info): Float32Array => {
  const values = storage(backend, t);
  return values instanceof Float32Array ? values : Float32Array.from(values);
};

/** An int32 tensor's values as an Int32Array (bool storage cast to int32 is converted). */
export const i32 = (backend: MathBackendCPU, t: Info): Int32Array => {
  const values = storage(backend, t);
  return values instanceof Int32Array ? values : Int32Array.from(values);
};

/**
 * An output array of n elements: from the native backend's pool (arbitrary contents unless
 * `zeroed`), or fresh where a native kernel runs on a plain cpu backend (the wasm fixes' tests).
 */
export const allocate = (backend: MathBackendCPU, dtype: tf.DataType, n: number, zeroed = false): Words => {
  const type = dtype === "float32" ? "float32" : "int32";
  if (backend instanceof NativeMathBackend) return backend.allocate(type, n, zeroed);
  return type === "float32" ? new Float32Array(n) : new Int32Array(n);
};

export const allocateF32 = (backend: MathBackendCPU, n: number, zeroed = false): Float32Array =>
  allocate(backend, "float32", n, zeroed) as Float32Array;

/** Wrap freshly computed values as the kernel's output. */
export const output = (backend: MathBackendCPU, shape: ReadonlyArray<number>, dtype: tf.DataType, values: tf.TypedArray): Info =>
  backend.makeTensorInfo(shape as Array<number>, dtype, values);

/** The cpu backend's own kernel, for the dtypes and cases a native kernel leaves to it. */
export const cpuKernel = (name: string): ((args: KernelArgs) => Info | Array<Info>) => {
  const config = tf.getKernel(name, "cpu");
  if (config === undefined) throw new Error(`cpu kernel ${name} is not registered`);
  return config.kernelFunc as (args: KernelArgs) => Info | Array<Info>;
};

/** The float32 and int32 dtypes, whose 4-byte elements the addon moves; bool, string and complex stay with cpu. */
export const isWords = (dtype: tf.DataType): boolean => dtype === "float32" || dtype === "int32";

/**
 * A kernel whose native body may decline a case (another dtype, an unsupported attribute) by
 * returning undefined; the cpu backend's kernel of the same name then runs.
 */
export const nativeKernel = (
  kernelName: string,
  body: (args: KernelArgs, backend: MathBackendCPU) => Info | Array<Info> | undefined,
): tf.KernelFunc => {
  const fallback = cpuKernel(kernelName);
  return ((args: KernelArgs) => body(args, cpuBackend(args)) ?? fallback(args)) as tf.KernelFunc;
};
