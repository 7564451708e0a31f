// The pthread worker of tfjs-backend-wasm's threaded-SIMD build, run by Node's worker_threads
// (see wasmThreads.ts). The package ships the worker's source only as a string, which its own
// loader hands to the browser as a blob: URL; Node loads workers from files, so this file runs
// that string. It is evaluated here, in this module's scope, because it reads `require` and
// `__filename`. The string's "\n" escapes were turned into real line breaks by the template
// literal that holds it; they are restored first, as tfjs's own loader does.
const { wasmWorkerContents } = require("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js");
eval(wasmWorkerContents.replace(/\n/g, "\\n"));
