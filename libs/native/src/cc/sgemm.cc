// Packed, cache-blocked SGEMM after Goto/BLIS: C is computed in NC-wide column blocks; for each
// KC-deep slice of K, the KC×NC block of op(B) is packed into NR-wide micro-panels, then each
// MC-tall block of op(A) into MR-tall micro-panels, and a register-blocked MR×NR micro-kernel
// runs over every pair, reading both panels with unit stride (B's micro-panel stays in L1, A's
// block in L2, B's block in L3). Packing zero-pads partial panels, so the kernels only ever see
// full tiles; partial tiles of C go through a small tile buffer.
//
// This file is compiled without -march=native. The vector kernels are functions with their own
// target attribute, called only after __builtin_cpu_supports confirmed the CPU runs them:
//   AVX-512F: MR=12 × NR=32 (24 zmm accumulators, 2 B vectors, one broadcast);
//   AVX2+FMA: MR=6 × NR=16 (12 ymm accumulators, the classic Haswell shape);
//   portable: MR=4 × NR=16 in plain C++ (whatever the baseline compiler vectorises).
#include "sgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace patchlm {

namespace {

// One MR×NR tile: c = alpha·(a-panel · b-panel) + beta·c over kc steps; beta == 0 never reads c.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta);

struct Kernel {
  MicroKernel fn;
  int64_t mr, nr;  // register block
  int64_t mc, kc, nc;  // cache blocks (mc a multiple of mr, nc of nr)
};

// ---- portable ----

constexpr int kPortMr = 4, kPortNr = 16;

void kernelPortable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  float acc[kPortMr][kPortNr] = {};
  for (int64_t p = 0; p < kc; p++) {
    for (int i = 0; i < kPortMr; i++) {
      const float ai = a[i];
      for (int j = 0; j < kPortNr; j++) acc[i][j] += ai * b[j];
    }
    a += kPortMr;
    b += kPortNr;
  }
  for (int i = 0; i < kPortMr; i++) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < kPortNr; j++) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < kPortNr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

// ---- AVX2 + FMA ----

#if defined(__x86_64__) || defined(__i386__)
#define PATCHLM_X86 1

__attribute__((target("avx2,fma"))) void kernelAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                      float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += 6;
    b += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
  // (a lambda would not inherit this function's target, so a macro)
#define PATCHLM_STORE_ROW(row, x0, x1)                                                                  \
  if (beta != 0.0f) {                                                                                   \
    _mm256_storeu_ps(row, _mm256_fmadd_ps(va, x0, _mm256_mul_ps(vb, _mm256_loadu_ps(row))));           \
    _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, x1, _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8))));   \
  } else {                                                                                              \
    _mm256_storeu_ps(row, _mm256_mul_ps(va, x0));                                                       \
    _mm256_storeu_ps(row + 8, _mm256_mul_ps(va, x1));                                                   \
  }
  PATCHLM_STORE_ROW(c, c00, c01)
  PATCHLM_STORE_ROW(c + ldc, c10, c11)
  PATCHLM_STORE_ROW(c + 2 * ldc, c20, c21)
  PATCHLM_STORE_ROW(c + 3 * ldc, c30, c31)
  PATCHLM_STORE_ROW(c + 4 * ldc, c40, c41)
  PATCHLM_STORE_ROW(c + 5 * ldc, c50, c51)
#undef PATCHLM_STORE_ROW
}

// ---- AVX-512F ----

__attribute__((target("avx512f"))) void kernelAvx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                       float alpha, float beta) {
  __m512 acc[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += 12;
    b += 32;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta != 0.0f) {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
      float* row = c + i * ldc;
      _mm512_storeu_ps(row, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, _mm512_loadu_ps(row))));
      _mm512_storeu_ps(row + 16, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, _mm512_loadu_ps(row + 16))));
    }
  } else {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
      float* row = c + i * ldc;
      _mm512_storeu_ps(row, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(row + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  }
}
#endif

const Kernel& kernelFor(GemmIsa isa) {
  static const Kernel portable{kernelPortable, kPortMr, kPortNr, 64, 256, 1024};
#ifdef PATCHLM_X86
  // MC·KC·4 bytes of packed A stay in L2 (192 KB, 144 KB); KC·NR·4 of B's micro-panel in L1.
  static const Kernel avx2{kernelAvx2, 6, 16, 144, 256, 4096};
  static const Kernel avx512{kernelAvx512, 12, 32, 192, 256, 4096};
  if (isa == GemmIsa::Avx512) return avx512;
  if (isa == GemmIsa::Avx2) return avx2;
#endif
  return portable;
}

// A growable 64-byte-aligned scratch buffer per thread (one for packed A, one for packed B).
struct Scratch {
  float* data = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(data); }
  float* get(size_t n) {
    if (n > size) {
      std::free(data);
      size = (n + 15) & ~size_t{15};
      data = static_cast<float*>(std::aligned_alloc(64, size * sizeof(float)));
    }
    return data;
  }
};

// Packs an extent × kc block of a matrix, element (i, p) at src[i·si + p·sp], into r-wide
// micro-panels: panel q holds, for each p, elements (q·r + i, p) for i < r, zero past `extent`.
// op(A) packs with i = row (si, sp = lda, 1, or 1, lda transposed); op(B) with i = column
// (si, sp = 1, ldb, or ldb, 1 transposed).
void pack(const float* src, int64_t si, int64_t sp, int64_t extent, int64_t kc, int64_t r, float* dst) {
  for (int64_t i0 = 0; i0 < extent; i0 += r, dst += r * kc) {
    const int64_t rows = std::min(r, extent - i0);
    const float* s0 = src + i0 * si;
    if (si == 1) {
      // Each p reads `rows` contiguous floats.
      for (int64_t p = 0; p < kc; p++) {
        const float* s = s0 + p * sp;
        float* d = dst + p * r;
        if (rows == r) {
          std::memcpy(d, s, sizeof(float) * r);
        } else {
          int64_t i = 0;
          for (; i < rows; i++) d[i] = s[i];
          for (; i < r; i++) d[i] = 0.0f;
        }
      }
    } else {
      // A transposing copy: each p writes one contiguous r-wide row of the panel, gathering from
      // `rows` source lines that each advance by sp (one sequential stream per line when sp == 1,
      // which the prefetchers follow). Writing along i instead (stride r) touched a new cache
      // line per element and made packing a large share of long-K products.
      for (int64_t p = 0; p < kc; p++) {
        const float* s = s0 + p * sp;
        float* d = dst + p * r;
        int64_t i = 0;
        for (; i < rows; i++) d[i] = s[i * si];
        for (; i < r; i++) d[i] = 0.0f;
      }
    }
  }
}

void scale(float* c, int64_t ldc, int64_t M, int64_t N, float beta) {
  for (int64_t i = 0; i < M; i++) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      std::memset(ci, 0, sizeof(float) * N);
    } else {
      for (int64_t j = 0; j < N; j++) ci[j] *= beta;
    }
  }
}

}  // namespace

const char* gemmIsaName(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::Avx512: return "avx512";
    case GemmIsa::Avx2: return "avx2";
    default: return "portable";
  }
}

bool gemmIsaSupported(GemmIsa isa) {
#ifdef PATCHLM_X86
  __builtin_cpu_init();
  if (isa == GemmIsa::Avx512) return __builtin_cpu_supports("avx512f");
  if (isa == GemmIsa::Avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == GemmIsa::Portable;
}

GemmIsa gemmBestIsa() {
  if (gemmIsaSupported(GemmIsa::Avx512)) return GemmIsa::Avx512;
  if (gemmIsaSupported(GemmIsa::Avx2)) return GemmIsa::Avx2;
  return GemmIsa::Portable;
}

void sgemm(GemmIsa isa, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    if (beta != 1.0f) scale(c, ldc, M, N, beta);
    return;
  }
  const Kernel& k = kernelFor(isa);
  const int64_t MR = k.mr, NR = k.nr;
  thread_local Scratch aBuf, bBuf;
  const int64_t kcMax = std::min(k.kc, K);
  const int64_t ncMax = std::min(k.nc, (N + NR - 1) / NR * NR);
  const int64_t mcMax = std::min(k.mc, (M + MR - 1) / MR * MR);
  float* bPack = bBuf.get(static_cast<size_t>(kcMax * ncMax));
  float* aPack = aBuf.get(static_cast<size_t>(kcMax * mcMax));
  alignas(64) float tile[16 * 32];  // MR×NR of the largest kernel, for partial tiles
  for (int64_t jc = 0; jc < N; jc += k.nc) {
    const int64_t nc = std::min(k.nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += k.kc) {
      const int64_t kc = std::min(k.kc, K - pc);
      // The first K slice applies the caller's beta; later ones add to it.
      const float betaHere = pc == 0 ? beta : 1.0f;
      if (transB) pack(b + jc * ldb + pc, ldb, 1, nc, kc, NR, bPack);
      else pack(b + pc * ldb + jc, 1, ldb, nc, kc, NR, bPack);
      for (int64_t ic = 0; ic < M; ic += k.mc) {
        const int64_t mc = std::min(k.mc, M - ic);
        if (transA) pack(a + pc * lda + ic, 1, lda, mc, kc, MR, aPack);
        else pack(a + ic * lda + pc, lda, 1, mc, kc, MR, aPack);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min(NR, nc - jr);
          const float* bp = bPack + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min(MR, mc - ir);
            const float* ap = aPack + ir * kc;
            float* cp = c + (ic + ir) * ldc + jc + jr;
            if (mr == MR && nr == NR) {
              k.fn(kc, ap, bp, cp, ldc, alpha, betaHere);
            } else {
              k.fn(kc, ap, bp, tile, NR, 1.0f, 0.0f);
              for (int64_t i = 0; i < mr; i++) {
                float* ci = cp + i * ldc;
                const float* ti = tile + i * NR;
                if (betaHere == 0.0f) {
                  for (int64_t j = 0; j < nr; j++) ci[j] = alpha * ti[j];
                } else {
                  for (int64_t j = 0; j < nr; j++) ci[j] = alpha * ti[j] + betaHere * ci[j];
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace patchlm
