// The machine's sustained FP32 FMA throughput, for MFU: independent multiply-add chains in
// registers, at the widest vector width this build targets (-march=native), on every pool
// thread at once. Virtual machines report a nominal clock, so only a measurement tells the
// real one (and whether the cores share FMA units).
#include <chrono>

#include "kernels.h"
#include "pool.h"

namespace patchlm {
namespace {

typedef float Vec __attribute__((vector_size(64)));
constexpr int kChains = 12;  // enough independent chains to cover FMA latency × 2 pipes

// 2·16·kChains FLOPs per iteration; returns a value that depends on every chain.
__attribute__((noinline)) float chains(int64_t iterations) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = Vec{} + 0.001f * static_cast<float>(i);
  const Vec a = Vec{} + 0.999999f;
  const Vec b = Vec{} + 1e-7f;
  for (int64_t it = 0; it < iterations; it++)
    for (int i = 0; i < kChains; i++) acc[i] = acc[i] * a + b;
  Vec s = acc[0];
  for (int i = 1; i < kChains; i++) s += acc[i];
  float out = 0;
  for (int j = 0; j < 16; j++) out += s[j];
  return out;
}

}  // namespace

double peakGflops(double seconds) {
  using Clock = std::chrono::steady_clock;
  const int threads = pool().size();
  int64_t iterations = 1 << 16;
  double best = 0;
  volatile float sink = 0;
  for (auto start = Clock::now(); std::chrono::duration<double>(Clock::now() - start).count() < seconds;) {
    const auto t0 = Clock::now();
    pool().parallelFor(threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) sink = sink + chains(iterations);
    });
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (elapsed < 0.01) {
      iterations *= 4;
      continue;
    }
    const double gflops = threads * static_cast<double>(iterations) * kChains * 16 * 2 / elapsed / 1e9;
    best = gflops > best ? gflops : best;
  }
  return best;
}

}  // namespace patchlm
