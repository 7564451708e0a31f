// Our SGEMM (src/cc/sgemm.cc) on its own, without Node: every kernel path this CPU runs, forced in
// turn, against a float64 reference on every entry of odd, edge and block-crossing shapes in all
// four transpose forms. Built and run by test/aarch64.test.ts for aarch64 under qemu-user (the
// NEON kernel, which no Node on this machine can load), and natively as a cross-check.
//
//   sgemm_check            prints "ok - <isa> <shape> <form>" per case, "not ok - ..." per failure;
//                          exit status 0 when every case passed.
//
// The bound is the fp32 one of test/sgemm.test.ts: |c − ref| ≤ (2K + 1)·2⁻²⁴·Σₖ|aᵢₖ·bₖⱼ|.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../src/cc/sgemm.h"

namespace {

// A small deterministic generator (xorshift32), uniform in [-1, 1).
struct Rng {
  uint32_t s;
  float next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return static_cast<float>(s >> 8) / 8388608.0f - 1.0f;
  }
};

struct Shape {
  int64_t M, N, K;
};

// Edges around every kernel's register blocks (4/6/8/12 rows, 12/16/32 columns) and cache blocks
// (KC 256, MC 64/128/144/192, NC 1024/3072): 1s, primes, one past a block.
constexpr Shape kShapes[] = {{1, 1, 1},    {1, 17, 3},    {13, 1, 5},    {2, 3, 1},      {5, 7, 3},     {8, 12, 8},
                             {9, 13, 9},   {12, 32, 8},   {13, 33, 9},   {11, 31, 257},  {25, 47, 2},   {193, 65, 31},
                             {97, 130, 300}, {145, 16, 64}, {129, 25, 513}, {17, 3073, 7}, {0, 5, 3},     {4, 3, 0}};

bool check(patchlm::GemmIsa isa, const Shape& s, bool ta, bool tb, uint32_t seed) {
  const int64_t M = s.M, N = s.N, K = s.K;
  Rng rng{seed};
  std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
  for (float& x : a) x = rng.next();
  for (float& x : b) x = rng.next();
  // NaN in C: an overwriting product must never read it.
  std::vector<float> c(static_cast<size_t>(M * N), NAN);
  patchlm::sgemm(isa, ta, tb, M, N, K, 1.0f, a.data(), ta ? M : K, b.data(), tb ? K : N, 0.0f, c.data(), N);
  for (int64_t i = 0; i < M; i++) {
    for (int64_t j = 0; j < N; j++) {
      double sum = 0, abs = 0;
      for (int64_t k = 0; k < K; k++) {
        const double p = static_cast<double>(ta ? a[k * M + i] : a[i * K + k]) * (tb ? b[j * K + k] : b[k * N + j]);
        sum += p;
        abs += std::fabs(p);
      }
      const double tol = (2.0 * K + 1) * std::ldexp(1.0, -24) * abs + 1e-30;
      const double got = c[i * N + j];
      if (!(std::fabs(got - sum) <= tol)) {
        std::printf("not ok - %s %lldx%lldx%lld %s·%s: C[%lld][%lld] = %.9g, expected %.9g ± %.3g\n", patchlm::gemmIsaName(isa),
                    static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), ta ? "aT" : "a", tb ? "bT" : "b",
                    static_cast<long long>(i), static_cast<long long>(j), got, sum, tol);
        return false;
      }
    }
  }
  return true;
}

}  // namespace

int main() {
  int failed = 0, passed = 0;
  for (patchlm::GemmIsa isa : patchlm::kGemmIsas) {
    if (!patchlm::gemmIsaSupported(isa)) {
      std::printf("# %s: not run on this CPU\n", patchlm::gemmIsaName(isa));
      continue;
    }
    uint32_t seed = 1;
    int bad = 0;
    for (const Shape& s : kShapes) {
      for (int form = 0; form < 4; form++) {
        const bool ta = (form & 1) != 0, tb = (form & 2) != 0;
        if (!check(isa, s, ta, tb, seed++)) bad++;
      }
    }
    const int cases = static_cast<int>(sizeof kShapes / sizeof kShapes[0]) * 4;
    std::printf("%s - %s: %d shapes × 4 transpose forms, %d failed\n", bad == 0 ? "ok" : "not ok", patchlm::gemmIsaName(isa), cases / 4, bad);
    passed += cases - bad;
    failed += bad;
  }
  std::printf("# %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
