// N-API entry: the functions the TypeScript kernels call. Every tensor argument is a
// Float32Array (or Int32Array) view of a cpu-backend tensor's storage; nothing is copied.
#include <napi.h>

#include "blas.h"
#include <cstdlib>
#include <string>

#include "kernels.h"
#include "pool.h"
#include "sgemm.h"
#include "strided.h"

namespace patchlm {
namespace {

float* f32(const Napi::Value& v) { return v.As<Napi::Float32Array>().Data(); }
const int32_t* i32(const Napi::Value& v) { return v.As<Napi::Int32Array>().Data(); }
int64_t len(const Napi::Value& v) { return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()); }
int64_t num(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
bool flag(const Napi::Value& v) { return v.As<Napi::Boolean>().Value(); }
// Strides arrive as Int32Arrays of at most kMaxRank entries (the TypeScript side guarantees it).
void widen(const Napi::Value& v, int64_t* out, int rank) {
  const int32_t* in = i32(v);
  for (int d = 0; d < rank; d++) out[d] = in[d];
}

// Any typed array's elements, for kernels that move 4-byte elements regardless of dtype.
int32_t* raw32(const Napi::Value& v) {
  auto t = v.As<Napi::TypedArray>();
  return reinterpret_cast<int32_t*>(static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
}

// OpenBLAS 0.3.21 (Debian bookworm) falls through from Intel family 6 into family 15 when it does
// not know the model number, so current Xeons (e.g. family 6 model 207) get the SSE3 "Prescott"
// kernels, 5-6x slower than their AVX-512 ones. Upstream fixed it (OpenBLAS e12aaed13: unknown
// models go to the feature-based fallback). When OPENBLAS_CORETYPE is unset and OpenBLAS chose an
// SSE-only core on a CPU with AVX, this re-runs OpenBLAS's own initialisation with the core that
// the fixed fallback would pick. OpenBLAS only reads the variable inside gotoblas_dynamic_init,
// so it is set for that call and removed again: the process environment ends as it started, and a
// value the user set is never touched. Runs before any BLAS call (backend registration).
#ifndef PATCHLM_NO_OPENBLAS
extern "C" {
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
}
#endif

[[maybe_unused]] const char* fallbackCore() {
#if !defined(__x86_64__) && !defined(__i386__)
  return nullptr;  // the misdetection is of x86 models
#else
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "Sandybridge";
  return nullptr;
#endif
}

// redetectBlasCore() -> the core name now in use (unchanged when nothing needed repairing).
Napi::Value RedetectBlasCore(const Napi::CallbackInfo& info) {
#ifdef PATCHLM_NO_OPENBLAS
  return Napi::String::New(info.Env(), blas::core());
#else
  const std::string current = openblas_get_corename();
  const bool sseOnly = current == "Prescott" || current == "Core2" || current == "Penryn" || current == "Nehalem";
  const char* better = fallbackCore();
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && sseOnly && better != nullptr) {
    setenv("OPENBLAS_CORETYPE", better, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
  }
  return Napi::String::New(info.Env(), openblas_get_corename());
#endif
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("blasConfig", std::string(blas::config()));
  out.Set("blasCore", std::string(blas::core()));
  out.Set("blasThreads", blas::threads());
  out.Set("poolThreads", pool().size());
  const int own = ownGemm();
  out.Set("gemm", own < 0 ? std::string("openblas") : std::string("own ") + gemmIsaName(static_cast<GemmIsa>(own)));
  Napi::Array isas = Napi::Array::New(env);
  uint32_t n = 0;
  for (GemmIsa isa : kGemmIsas)
    if (gemmIsaSupported(isa)) isas.Set(n++, std::string(gemmIsaName(isa)));
  out.Set("gemmIsas", isas);
  out.Set("bf16Supported", bf16GemmSupported());
  out.Set("precision", std::string(bf16Matmuls() ? "bf16" : "fp32"));
  return out;
}

// setGemm(isa) -> whether it took effect: -1 = OpenBLAS, else a GemmIsa (0 portable, 1 avx2,
// 2 avx512, 3 neon) of our own GEMM, refused when this CPU lacks it.
Napi::Value SetGemm(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), setOwnGemm(static_cast<int>(num(info[0]))));
}

// setBf16(on) -> whether it took effect: bf16 mixed-precision matmuls on or off; refused (no
// change) when this CPU lacks AVX512_BF16.
Napi::Value SetBf16(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), setBf16Matmuls(flag(info[0])));
}

// setBatchParallel(on): a switch for benchmarks comparing both ways of running batched GEMMs.
Napi::Value SetBatchParallel(const Napi::CallbackInfo& info) {
  setBatchParallel(flag(info[0]));
  return info.Env().Undefined();
}

// setThreads(blas, pool)
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  blas::setThreads(static_cast<int>(num(info[0])));
  pool().resize(static_cast<int>(num(info[1])));
  return info.Env().Undefined();
}

// gemm(a, b, out, M, N, K, transA, transB, aOffsets, bOffsets): for each i,
// out[i·M·N ..] = op(a[aOffsets[i] ..]) · op(b[bOffsets[i] ..]), row-major.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const int64_t batch = len(info[8]);
  gemmBatched(f32(info[0]), f32(info[1]), f32(info[2]), num(info[3]), num(info[4]), num(info[5]), flag(info[6]),
              flag(info[7]), i32(info[8]), i32(info[9]), batch);
  return info.Env().Undefined();
}

// binary(op, a, b, out, shape, aStrides, bStrides): Int32Arrays of the coalesced broadcast shape.
Napi::Value Binary(const Napi::CallbackInfo& info) {
  const int rank = static_cast<int>(len(info[4]));
  int64_t aStrides[kMaxRank], bStrides[kMaxRank];
  widen(info[5], aStrides, rank);
  widen(info[6], bStrides, rank);
  binary(static_cast<BinaryOp>(num(info[0])), f32(info[1]), f32(info[2]), f32(info[3]), rank, i32(info[4]), aStrides, bStrides);
  return info.Env().Undefined();
}

// unary(op, x, out, alpha)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  unary(static_cast<UnaryOp>(num(info[0])), f32(info[1]), f32(info[2]), len(info[2]),
        static_cast<float>(info[3].As<Napi::Number>().DoubleValue()));
  return info.Env().Undefined();
}

// reduce(op, x, out, outer, R, inner)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  reduce(static_cast<ReduceOp>(num(info[0])), f32(info[1]), f32(info[2]), num(info[3]), num(info[4]), num(info[5]));
  return info.Env().Undefined();
}

// softmax(x, out, rows, cols)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  softmax(f32(info[0]), f32(info[1]), num(info[2]), num(info[3]));
  return info.Env().Undefined();
}

// stridedCopy(src, srcOffset, dst, dstOffset, shape, srcStrides, dstStrides): 4-byte elements.
Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  const int rank = static_cast<int>(len(info[4]));
  int64_t srcStrides[kMaxRank], dstStrides[kMaxRank];
  widen(info[5], srcStrides, rank);
  widen(info[6], dstStrides, rank);
  stridedCopy(raw32(info[0]) + num(info[1]), raw32(info[2]) + num(info[3]), rank, i32(info[4]), srcStrides, dstStrides);
  return info.Env().Undefined();
}

// gather(x, indices, out, outer, axisSize, inner) -> -1, or the position of an out-of-range index.
Napi::Value Gather(const Napi::CallbackInfo& info) {
  const int32_t* indices = i32(info[1]);
  const int64_t n = len(info[1]);
  const int64_t axisSize = num(info[4]);
  for (int64_t i = 0; i < n; i++)
    if (indices[i] < 0 || indices[i] >= axisSize) return Napi::Number::New(info.Env(), static_cast<double>(i));
  gather(raw32(info[0]), indices, raw32(info[2]), num(info[3]), axisSize, num(info[5]), n);
  return Napi::Number::New(info.Env(), -1);
}

// scatterAdd(updates, rowIds, out, rows, inner)
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  scatterAdd(f32(info[0]), i32(info[1]), f32(info[2]), num(info[3]), num(info[4]), len(info[1]));
  return info.Env().Undefined();
}

float flt(const Napi::Value& v) { return static_cast<float>(v.As<Napi::Number>().DoubleValue()); }

// adamw(p, m, v, g, pOut, mOut, vOut, [beta1, beta2, c1, c2, eps, invSqrtBc2, shrink, stepSize])
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  const float* h = f32(info[7]);
  const AdamWParams params{h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
  adamw(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), f32(info[4]), f32(info[5]), f32(info[6]), len(info[0]), params);
  return info.Env().Undefined();
}

// rmsNorm(x, gain, y, rows, cols, eps)
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  rmsNorm(f32(info[0]), f32(info[1]), f32(info[2]), num(info[3]), num(info[4]), flt(info[5]));
  return info.Env().Undefined();
}

// rmsNormGrad(dy, x, gain, dx, dgain, rows, cols, eps)
Napi::Value RmsNormGrad(const Napi::CallbackInfo& info) {
  rmsNormGrad(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), f32(info[4]), num(info[5]), num(info[6]), flt(info[7]));
  return info.Env().Undefined();
}

// swiglu(gate, up, y)
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  swiglu(f32(info[0]), f32(info[1]), f32(info[2]), len(info[2]));
  return info.Env().Undefined();
}

// swigluGrad(dy, gate, up, dgate, dup)
Napi::Value SwigluGrad(const Napi::CallbackInfo& info) {
  swigluGrad(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), f32(info[4]), len(info[0]));
  return info.Env().Undefined();
}

// weightedCrossEntropy(z, t, w, lse, R, V, K) -> Σ_rk w_rk·(lse_r − z_r[t_rk])
Napi::Value WeightedCrossEntropy(const Napi::CallbackInfo& info) {
  const double loss = weightedCrossEntropy(f32(info[0]), i32(info[1]), f32(info[2]), f32(info[3]), num(info[4]), num(info[5]), num(info[6]));
  return Napi::Number::New(info.Env(), loss);
}

// weightedCrossEntropyGrad(dy, z, t, w, lse, dz, R, V, K)
Napi::Value WeightedCrossEntropyGrad(const Napi::CallbackInfo& info) {
  weightedCrossEntropyGrad(flt(info[0]), f32(info[1]), i32(info[2]), f32(info[3]), f32(info[4]), f32(info[5]), num(info[6]), num(info[7]),
                           num(info[8]));
  return info.Env().Undefined();
}

// causalAttention(q, k, v, o, lse, [B, H, Hkv, T, D], scale, seqMajor)
Napi::Value CausalAttention(const Napi::CallbackInfo& info) {
  const int32_t* d = i32(info[5]);
  causalAttention(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), f32(info[4]), d[0], d[1], d[2], d[3], d[4], flt(info[6]),
                  flag(info[7]));
  return info.Env().Undefined();
}

// causalAttentionGrad(dO, q, k, v, o, lse, dq, dk, dv, [B, H, Hkv, T, D], scale, seqMajor)
Napi::Value CausalAttentionGrad(const Napi::CallbackInfo& info) {
  const int32_t* d = i32(info[9]);
  causalAttentionGrad(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), f32(info[4]), f32(info[5]), f32(info[6]),
                      f32(info[7]), f32(info[8]), d[0], d[1], d[2], d[3], d[4], flt(info[10]), flag(info[11]));
  return info.Env().Undefined();
}

// sumOfSquares(x) -> Σ x²
Napi::Value SumOfSquares(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), sumOfSquares(f32(info[0]), len(info[0])));
}

// peakGflops(seconds)
Napi::Value PeakGflops(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), peakGflops(info[0].As<Napi::Number>().DoubleValue()));
}

// rope(x, cos, sin, y, [B, T, heads, D], transpose)
Napi::Value Rope(const Napi::CallbackInfo& info) {
  const int32_t* d = i32(info[4]);
  rope(f32(info[0]), f32(info[1]), f32(info[2]), f32(info[3]), d[0], d[1], d[2], d[3], flag(info[5]));
  return info.Env().Undefined();
}

}  // namespace
}  // namespace patchlm

// NODE_API_MODULE pastes the init function's name into an identifier, so it must be unqualified.
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace patchlm;
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("redetectBlasCore", Napi::Function::New(env, RedetectBlasCore));
  exports.Set("setBatchParallel", Napi::Function::New(env, SetBatchParallel));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("setGemm", Napi::Function::New(env, SetGemm));
  exports.Set("setBf16", Napi::Function::New(env, SetBf16));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("stridedCopy", Napi::Function::New(env, StridedCopy));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("scatterAdd", Napi::Function::New(env, ScatterAdd));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("rmsNormGrad", Napi::Function::New(env, RmsNormGrad));
  exports.Set("swiglu", Napi::Function::New(env, Swiglu));
  exports.Set("swigluGrad", Napi::Function::New(env, SwigluGrad));
  exports.Set("weightedCrossEntropy", Napi::Function::New(env, WeightedCrossEntropy));
  exports.Set("weightedCrossEntropyGrad", Napi::Function::New(env, WeightedCrossEntropyGrad));
  exports.Set("causalAttention", Napi::Function::New(env, CausalAttention));
  exports.Set("causalAttentionGrad", Napi::Function::New(env, CausalAttentionGrad));
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("peakGflops", Napi::Function::New(env, PeakGflops));
  exports.Set("sumOfSquares", Napi::Function::New(env, SumOfSquares));
  return exports;
}

NODE_API_MODULE(patchlm_native, Init)
