// The machine's sustained FP32 FMA throughput, for MFU: independent multiply-add chains in
// registers, at the widest vector width this CPU runs (AVX-512, else AVX2 + FMA, else SSE),
// chosen at run time like the GEMM's kernels, on every pool thread at once. Virtual machines
// report a nominal clock, so only a measurement tells the real one (and whether the cores share
// FMA units).
#include <chrono>

#include "kernels.h"
#include "pool.h"

namespace patchlm {
namespace {

constexpr int kChains = 12;  // enough independent chains to cover FMA latency × 2 pipes

// 2·Lanes·kChains FLOPs per iteration; returns a value that depends on every chain. One body,
// compiled per instruction set through the target attribute of its caller (always_inline).
template <typename Vec, int Lanes>
__attribute__((always_inline)) inline float chainsBody(int64_t iterations) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = Vec{} + 0.001f * static_cast<float>(i);
  const Vec a = Vec{} + 0.999999f;
  const Vec b = Vec{} + 1e-7f;
  for (int64_t it = 0; it < iterations; it++)
    for (int i = 0; i < kChains; i++) acc[i] = acc[i] * a + b;
  Vec s = acc[0];
  for (int i = 1; i < kChains; i++) s += acc[i];
  float out = 0;
  for (int j = 0; j < Lanes; j++) out += s[j];
  return out;
}

typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

#if defined(__x86_64__) || defined(__i386__)
__attribute__((noinline, target("avx512f,fma"))) float chains512(int64_t n) { return chainsBody<Vec16, 16>(n); }
__attribute__((noinline, target("avx2,fma"))) float chains256(int64_t n) { return chainsBody<Vec8, 8>(n); }
#endif
__attribute__((noinline)) float chains128(int64_t n) { return chainsBody<Vec4, 4>(n); }

struct Width {
  float (*chains)(int64_t);
  int lanes;
};

Width widest() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f")) return {chains512, 16};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {chains256, 8};
#endif
  return {chains128, 4};
}

}  // namespace

double peakGflops(double seconds) {
  using Clock = std::chrono::steady_clock;
  const int threads = pool().size();
  int64_t iterations = 1 << 16;
  double best = 0;
  volatile float sink = 0;
  const Width width = widest();
  for (auto start = Clock::now(); std::chrono::duration<double>(Clock::now() - start).count() < seconds;) {
    const auto t0 = Clock::now();
    pool().parallelFor(threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) sink = sink + width.chains(iterations);
    });
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (elapsed < 0.01) {
      iterations *= 4;
      continue;
    }
    const double gflops = threads * static_cast<double>(iterations) * kChains * width.lanes * 2 / elapsed / 1e9;
    best = gflops > best ? gflops : best;
  }
  return best;
}

}  // namespace patchlm
