import * as tf from "@tensorflow/tfjs";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

// Kernels are only called with the inputs their op declares; optional ones (bias) may be absent.
export type KernelArgs = Omit<Parameters<tf.KernelFunc>[0], "inputs"> & { inputs: Record<string, tf.TensorInfo> };
export type Info = tf.TensorInfo;

/** The backend a native kernel runs on: the cpu backend's storage, under the name "native". */
export const cpuBackend = (args: KernelArgs): MathBackendCPU => args.backend as MathBackendCPU;

/** The storage of a tensor: the typed array itself, not a copy. */
export const storage = (backend: MathBackendCPU, t: Info): tf.TypedArray =>
  backend.data.get(t.dataId).values as tf.TypedArray;

export const f32 = (backend: MathBackendCPU, t: Info): Float32Array => storage(backend, t) as Float32Array;

/** Wrap freshly computed values as the kernel's output. */
export const output = (backend: MathBackendCPU, shape: ReadonlyArray<number>, dtype: tf.DataType, values: tf.TypedArray): Info =>
  backend.makeTensorInfo(shape as Array<number>, dtype, values);

/** The cpu backend's own kernel, for the dtypes and cases a native kernel leaves to it. */
export const cpuKernel = (name: string): ((args: KernelArgs) => Info | Array<Info>) => {
  const config = tf.getKernel(name, "cpu");
  if (config === undefined) throw new Error(`cpu kernel ${name} is not registered`);
  return config.kernelFunc as (args: KernelArgs) => Info | Array<Info>;
};
