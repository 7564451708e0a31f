// N-API entry: the functions the TypeScript kernels call. Every tensor argument is a
// Float32Array (or Int32Array) view of a cpu-backend tensor's storage; nothing is copied.
#include <napi.h>

#include <cblas.h>

#include <cstdlib>
#include <string>

#include "kernels.h"
#include "pool.h"

namespace patchlm {
namespace {

float* f32(const Napi::Value& v) { return v.As<Napi::Float32Array>().Data(); }
const int32_t* i32(const Napi::Value& v) { return v.As<Napi::Int32Array>().Data(); }
int64_t len(const Napi::Value& v) { return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()); }
int64_t num(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
bool flag(const Napi::Value& v) { return v.As<Napi::Boolean>().Value(); }

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("blasConfig", std::string(openblas_get_config()));
  out.Set("blasCore", std::string(openblas_get_corename()));
  out.Set("blasThreads", openblas_get_num_threads());
  out.Set("poolThreads", pool().size());
  return out;
}

// setThreads(blas, pool)
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  openblas_set_num_threads(static_cast<int>(num(info[0])));
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

}  // namespace
}  // namespace patchlm

// NODE_API_MODULE pastes the init function's name into an identifier, so it must be unqualified.
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace patchlm;
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  return exports;
}

NODE_API_MODULE(patchlm_native, Init)
