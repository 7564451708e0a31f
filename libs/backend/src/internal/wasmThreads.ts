import * as tf from "@tensorflow/tfjs";
import { BackendWasm, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

/**
 * The `wasm` backend on several threads in Node.
 *
 * tfjs-backend-wasm ships a threaded-SIMD build whose XNNPACK kernels (matmul above all) split
 * their work over a pthreadpool, but its loader never uses it under Node (tfjs issue #3830): its
 * `WASM_HAS_MULTITHREAD_SUPPORT` flag answers false there, and it would hand the pthread workers
 * blob: URLs, which Node's worker_threads cannot load. The build itself runs in Node (Emscripten
 * maps its pthreads onto worker_threads), so we load it ourselves: the factory from its file, the
 * pthread workers from ./wasmPthreadWorker.cjs, and register a `wasm` backend made from it
 * before tfjs initialises its own. The kernels registered for `wasm` (tfjs's and our fixes) bind to
 * whichever module the backend holds, so nothing else changes. XNNPACK splits a GEMM by output
 * tiles, never along the reduction, so results do not depend on the thread count.
 */

const load = createRequire(__filename);

// The few WebAssembly JS API pieces used here (the project's TypeScript libs declare no WebAssembly).
type WasmModule = object;
type WasmInstance = object;
type WasmImports = Record<string, Record<string, unknown>>;
const Wasm = (globalThis as unknown as {
  WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule>; Instance: new (module: WasmModule, imports: WasmImports) => WasmInstance };
}).WebAssembly;

/** What the Emscripten factory of the threaded build needs from us (its WasmFactoryConfig). */
interface FactoryConfig {
  readonly mainScriptUrlOrBlob: string;
  readonly locateFile: (file: string, prefix: string) => string;
  readonly instantiateWasm: (imports: WasmImports, receive: (instance: WasmInstance, module: WasmModule) => void) => object;
}

interface ThreadedModule {
  cwrap(name: string, returnType: string | null, argTypes: ReadonlyArray<string>): (...args: Array<number>) => unknown;
  tfjs?: Record<string, unknown>;
  readonly PThread: { readonly runningWorkers: ReadonlyArray<{ unref(): void }> };
}

export type Threaded =
  | { readonly _tag: "Threaded"; readonly threads: number }
  | { readonly _tag: "Single"; readonly reason: string };

const maxThreads = 8; // the build pre-spawns 8 pthread workers and caps its pool there

let registered: number | undefined;

/** The thread count `register` set up in this process, if it did. */
export const registeredThreads = (): number | undefined => registered;

/**
 * Make the `wasm` backend, when tfjs next initialises it, the threaded build with `threads`
 * threads. Leaves tfjs's own single-threaded registration in place when `threads` is 1, when
 * `wasm` is already initialised (its tensors would be lost), or when the build cannot load here
 * (the reason says why).
 */
export const register = async (threads: number): Promise<Threaded> => {
  const wanted = Math.min(Math.max(1, Math.floor(threads)), maxThreads);
  if (registered !== undefined) return { _tag: "Threaded", threads: registered };
  if (wanted === 1) return { _tag: "Single", reason: "1 thread requested" };
  if (tf.engine().registry["wasm"] !== undefined) return { _tag: "Single", reason: "the wasm backend was initialised before its threads were set" };
  if (typeof SharedArrayBuffer === "undefined") return { _tag: "Single", reason: "no SharedArrayBuffer in this runtime" };
  // A bundled app may lack this file next to the code; a worker that cannot load would crash the process.
  const workerFile = path.join(__dirname, "wasmPthreadWorker.cjs");
  if (!existsSync(workerFile)) return { _tag: "Single", reason: `the pthread worker ${workerFile} is missing` };
  try {
    const factoryPath = load.resolve("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js");
    const wasmFile = path.join(path.dirname(factoryPath), "tfjs-backend-wasm-threaded-simd.wasm");
    const compiled = await Wasm.compile(readFileSync(wasmFile));
    const factory = load(factoryPath) as (config: FactoryConfig) => Promise<ThreadedModule>;
    const module = await factory({
      // Each pthread worker evaluates this file to get the factory.
      mainScriptUrlOrBlob: factoryPath,
      locateFile: (file, prefix) =>
        file.endsWith(".worker.js") ? workerFile : file.endsWith(".wasm") ? wasmFile : prefix + file,
      instantiateWasm: (imports, receive) => {
        // The backend caps its pool at half the logical cores (it assumes two hyperthreads per
        // core); report twice the wanted count so that the cap is exactly what was asked for.
        imports.env.emscripten_num_logical_cores = () => 2 * wanted;
        receive(new Wasm.Instance(compiled, imports), compiled);
        return {};
      },
    });
    // The bridge tfjs's own loader adds (tf-backend-wasm init()).
    module.tfjs = {
      init: module.cwrap("init", null, []),
      initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
      getThreadsCount: module.cwrap("get_threads_count", "number", []),
      registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
      disposeData: module.cwrap("dispose_data", null, ["number"]),
      dispose: module.cwrap("dispose", null, []),
    };
    setThreadsCount(wanted);
    tf.removeBackend("wasm");
    tf.registerBackend(
      "wasm",
      () => {
        const backend = new BackendWasm(module as unknown as ConstructorParameters<typeof BackendWasm>[0]);
        // The pool's threads started just now, and Emscripten keeps a running pthread's worker
        // referenced: unreferenced, they no longer keep the process alive after its last task.
        for (const worker of module.PThread.runningWorkers) worker.unref();
        return backend;
      },
      2,
    );
    registered = wanted;
    return { _tag: "Threaded", threads: wanted };
  } catch (e) {
    return { _tag: "Single", reason: `the threaded build did not load: ${String(e instanceof Error ? e.message : e).split("\n")[0]}` };
  }
};
