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
//   portable: MR=4 × NR=16 in plain C++ (whatever the baseline compiler vectorises);
//   AVX512_BF16 (gemmBf16): the AVX-512 shape on bf16 pairs, VDPBF16PS, the operands rounded to
//   bf16 while they are packed;
//   NEON (aarch64, where it is baseline): MR=8 × NR=12 (24 q accumulators, FMA by lane).
#include "sgemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace patchlm {

namespace {

// A packed panel element: one float, or one bf16 pair (two consecutive k of one row or column,
// the lower k in the low half) for VDPBF16PS.
using Bf16Pair = uint32_t;

// One MR×NR tile: c = alpha·(a-panel · b-panel) + beta·c over kc steps of k; beta == 0 never
// reads c.
template <class T>
using MicroKernel = void (*)(int64_t kc, const T* a, const T* b, float* c, int64_t ldc, float alpha, float beta);

// Packs an extent × kc block of a matrix, element (i, p) at src[i·si + p·sp], into r-wide
// micro-panels of T (see pack and packBf16 below).
template <class T>
using Packer = void (*)(const float* src, int64_t si, int64_t sp, int64_t extent, int64_t kc, int64_t r, T* dst);

template <class T>
struct Kernel {
  MicroKernel<T> fn;
  Packer<T> pack;
  int64_t mr, nr;  // register block
  int64_t mc, kc, nc;  // cache blocks (mc a multiple of mr, nc of nr; kc even)
};

// k steps one packed element holds.
template <class T>
constexpr int64_t kPerElement = std::is_same_v<T, Bf16Pair> ? 2 : 1;

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

// ---- NEON (aarch64) ----

#if defined(__aarch64__)
constexpr int kNeonMr = 8, kNeonNr = 12;

// 8 rows × 12 columns: per k, three B vectors and two A vectors (rows 0-3, 4-7), each
// accumulator fed by one lane of A (FMLA by element), 24 + 3 + 2 of the 32 q registers.
void kernelNeon(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  float32x4_t acc[kNeonMr][3];
  for (int i = 0; i < kNeonMr; i++) acc[i][0] = acc[i][1] = acc[i][2] = vdupq_n_f32(0.0f);
  for (int64_t p = 0; p < kc; p++) {
    const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
    const float32x4_t lo = vld1q_f32(a), hi = vld1q_f32(a + 4);
    // The lane is an immediate, hence a macro rather than a loop.
#define PATCHLM_ROW(i, v, lane)                             \
  acc[i][0] = vfmaq_laneq_f32(acc[i][0], b0, v, lane);       \
  acc[i][1] = vfmaq_laneq_f32(acc[i][1], b1, v, lane);       \
  acc[i][2] = vfmaq_laneq_f32(acc[i][2], b2, v, lane);
    PATCHLM_ROW(0, lo, 0)
    PATCHLM_ROW(1, lo, 1)
    PATCHLM_ROW(2, lo, 2)
    PATCHLM_ROW(3, lo, 3)
    PATCHLM_ROW(4, hi, 0)
    PATCHLM_ROW(5, hi, 1)
    PATCHLM_ROW(6, hi, 2)
    PATCHLM_ROW(7, hi, 3)
#undef PATCHLM_ROW
    a += kNeonMr;
    b += kNeonNr;
  }
  const float32x4_t va = vdupq_n_f32(alpha);
  for (int i = 0; i < kNeonMr; i++) {
    float* row = c + i * ldc;
    for (int j = 0; j < 3; j++) {
      const float32x4_t scaled = vmulq_f32(va, acc[i][j]);
      vst1q_f32(row + 4 * j, beta == 0.0f ? scaled : vfmaq_n_f32(scaled, vld1q_f32(row + 4 * j), beta));
    }
  }
}
#endif

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

// c = alpha·acc + beta·c for a 12×32 tile held in 24 zmm (beta == 0 never reads c); inlined into
// both AVX-512 kernels, whose targets include avx512f.
__attribute__((target("avx512f"), always_inline)) inline void storeTile12x32(const __m512 (&acc)[12][2], float* c, int64_t ldc,
                                                                            float alpha, float beta) {
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
  storeTile12x32(acc, c, ldc, alpha, beta);
}
// ---- AVX512_BF16 ----

// The AVX-512F kernel's shape with bf16 inputs: each step takes one bf16 pair per row of A
// (broadcast as one 32-bit word) and per column of B, and VDPBF16PS adds both products of a
// pair into the fp32 accumulator, so one instruction does twice the FMAs' work. The products of
// two bf16 are exact in fp32; only the sums round, as in fp32.
__attribute__((target("avx512f,avx512bf16"))) void kernelBf16(int64_t kc, const Bf16Pair* a, const Bf16Pair* b, float* c,
                                                                int64_t ldc, float alpha, float beta) {
  __m512 acc[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; p += 2) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i]));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    a += 12;
    b += 32;
  }
  storeTile12x32(acc, c, ldc, alpha, beta);
}
#endif

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

#ifdef PATCHLM_X86
// v[t] (row t, 16 lanes) <- column t of the 16×16 block v held: three rounds of in-lane and
// cross-lane shuffles (32-bit, 64-bit, then 128-bit quarters), 64 shuffles for 256 elements.
// The words are moved, never read as floats, so bf16 pairs pass through it as well. (Masked forms
// with a full mask: the unmasked intrinsics trip GCC 12's false "may be used uninitialized".)
__attribute__((target("avx512f"), always_inline)) inline void transpose16x16(__m512 (&v)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_maskz_unpacklo_ps(0xffff, v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(0xffff, v[2 * i], v[2 * i + 1]);
  }
  // u[4i + j], quarter L: column 4L + j of rows 4i..4i+3.
  __m512 u[16];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, a, c));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, a, c));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, b, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, b, d));
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    const __m512 x0 = _mm512_maskz_shuffle_f32x4(0xffff, u[j], u[4 + j], 0x44), x1 = _mm512_maskz_shuffle_f32x4(0xffff, u[j], u[4 + j], 0xee);
    const __m512 y0 = _mm512_maskz_shuffle_f32x4(0xffff, u[8 + j], u[12 + j], 0x44), y1 = _mm512_maskz_shuffle_f32x4(0xffff, u[8 + j], u[12 + j], 0xee);
    v[j] = _mm512_maskz_shuffle_f32x4(0xffff, x0, y0, 0x88);
    v[4 + j] = _mm512_maskz_shuffle_f32x4(0xffff, x0, y0, 0xdd);
    v[8 + j] = _mm512_maskz_shuffle_f32x4(0xffff, x1, y1, 0x88);
    v[12 + j] = _mm512_maskz_shuffle_f32x4(0xffff, x1, y1, 0xdd);
  }
}

inline __mmask16 firstLanes(int64_t n) { return n >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << std::max<int64_t>(n, 0)) - 1); }

// How far along its lines (in floats) the transposing packer prefetches: 16 lines are read in
// parallel, one 64-byte line of each per block.
constexpr int64_t kPrefetchAlong = 64;

// pack's transposing case (sp == 1: rows of A, or columns of Bᵀ, with k contiguous) in 16×16
// blocks: 16 lines × 16 k loaded as vectors, transposed in registers, stored as 16 panel rows.
// The scalar gather made packing about 15% of the products' time in a training step (one load
// and one store per element; the attention products, with small N, packed for longer than they
// multiplied).
__attribute__((target("avx512f"))) void packTransposedAvx512(const float* src, int64_t si, int64_t extent, int64_t kc, int64_t r,
                                                             float* dst) {
  for (int64_t i0 = 0; i0 < extent; i0 += r, dst += r * kc) {
    const int64_t rows = std::min(r, extent - i0);
    for (int64_t ib = 0; ib < r; ib += 16) {
      const __mmask16 lanes = firstLanes(r - ib);
      const int64_t live = std::min<int64_t>(16, std::max<int64_t>(0, rows - ib));
      const float* s0 = src + (i0 + ib) * si;
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int64_t np = std::min<int64_t>(16, kc - p0);
        const __mmask16 in = firstLanes(np);
        if (p0 + kPrefetchAlong < kc) {
          for (int t = 0; t < live; t++) _mm_prefetch(reinterpret_cast<const char*>(s0 + t * si + p0 + kPrefetchAlong), _MM_HINT_T0);
        }
        __m512 v[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) v[t] = t < live ? _mm512_maskz_loadu_ps(in, s0 + t * si + p0) : _mm512_setzero_ps();
        transpose16x16(v);
        float* d = dst + p0 * r + ib;
        for (int64_t t = 0; t < np; t++) _mm512_mask_storeu_ps(d + t * r, lanes, v[t]);
      }
    }
  }
}

// How many lines ahead the rows-contiguous packers prefetch. Their source is mostly an
// activation or a gradient that another kernel wrote long before (a cache miss per line), read
// in short runs (one panel block's width) a line stride apart, which the hardware prefetchers
// follow poorly: prefetching a few lines ahead cut the bf16 packer's share of a step by a third.
constexpr int64_t kPrefetchLines = 8;

// pack's rows-contiguous case (si == 1: B, or Aᵀ) line by line: each line of the kc read once
// from start to end across all panels (walking one panel down all kc lines first touched a new
// page on every line of a wide matrix and re-walked the lines for every panel), with prefetches
// kPrefetchLines ahead.
__attribute__((target("avx512f"))) void packRowsAvx512(const float* src, int64_t sp, int64_t extent, int64_t kc, int64_t r,
                                                       float* dst) {
  for (int64_t p = 0; p < kc; p++) {
    const float* line = src + p * sp;
    const bool fetch = p + kPrefetchLines < kc;
    for (int64_t i0 = 0; i0 < extent; i0 += r) {
      const int64_t rows = std::min(r, extent - i0);
      float* d = dst + i0 * kc + p * r;
      for (int64_t i = 0; i < r; i += 16) {
        if (fetch && i < rows) _mm_prefetch(reinterpret_cast<const char*>(line + kPrefetchLines * sp + i0 + i), _MM_HINT_T0);
        _mm512_mask_storeu_ps(d + i, firstLanes(r - i), _mm512_maskz_loadu_ps(firstLanes(rows - i), line + i0 + i));
      }
    }
  }
}

// The AVX-512 kernel's packer: both cases vectorised (a general si and sp as pack).
__attribute__((target("avx512f"))) void packAvx512(const float* src, int64_t si, int64_t sp, int64_t extent, int64_t kc, int64_t r,
                                                   float* dst) {
  if (sp == 1 && si != 1) {
    packTransposedAvx512(src, si, extent, kc, r, dst);
  } else if (si == 1) {
    packRowsAvx512(src, sp, extent, kc, r, dst);
  } else {
    pack(src, si, sp, extent, kc, r, dst);
  }
}

// 16 bf16 pairs: lo holds each pair's k (the low half), hi its k + 1. VCVTNE2PS2BF16 rounds both
// to bf16 in one instruction, to nearest with ties to even, NaN kept (quieted), and fp32
// denormals flushed to zeros of their sign (the instruction's fixed rule, whatever MXCSR says);
// it puts lo's 16 in the low half of the vector and hi's in the high half, and one word
// permutation interleaves them into pairs. (Rounding in integer arithmetic took about 20
// instructions per 16 pairs and made packing half the bf16 kernel's time in a training step.)
__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline)) inline __m512i bf16Pairs(__m512 lo, __m512 hi) {
  alignas(64) static const uint16_t interleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(interleave), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// As pack, with bf16 pairs: panel q holds, for each pair of k (p, p+1), the pairs of rows q·r + i
// for i < r; an odd kc's last pair and rows past `extent` are zero. 16 elements at a time (the
// kernel runs only on AVX-512 CPUs). Rows contiguous (si == 1: B, or Aᵀ): each pair of k lines
// gives r words, two loads per 16. k contiguous (sp == 1: A, or Bᵀ): 16 rows × 16 pairs (32
// consecutive floats of each row) at a time, transposed as 32-bit words into 16 panel rows.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void packBf16(const float* src, int64_t si, int64_t sp, int64_t extent, int64_t kc, int64_t r,
                                                 Bf16Pair* dst) {
  const int64_t pairs = (kc + 1) / 2;
  if (si == 1) {
    // Line pair by line pair across all panels, with prefetches, as packRowsAvx512.
    for (int64_t q = 0; q < pairs; q++) {
      const float* lo = src + 2 * q * sp;
      const bool odd = 2 * q + 1 == kc;
      const bool fetch = 2 * q + kPrefetchLines + 1 < kc;
      for (int64_t i0 = 0; i0 < extent; i0 += r) {
        const int64_t rows = std::min(r, extent - i0);
        Bf16Pair* d = dst + i0 * pairs + q * r;
        for (int64_t i = 0; i < r; i += 16) {
          if (fetch && i < rows) {
            _mm_prefetch(reinterpret_cast<const char*>(lo + kPrefetchLines * sp + i0 + i), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(lo + (kPrefetchLines + 1) * sp + i0 + i), _MM_HINT_T0);
          }
          const __mmask16 in = firstLanes(rows - i);
          const __m512 a = _mm512_maskz_loadu_ps(in, lo + i0 + i);
          const __m512 b = odd ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(in, lo + sp + i0 + i);
          _mm512_mask_storeu_epi32(d + i, firstLanes(r - i), bf16Pairs(a, b));
        }
      }
    }
    return;
  }
  // Lines past `extent` pack as zero pairs.
  const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
  for (int64_t i0 = 0; i0 < extent; i0 += r, dst += r * pairs) {
    const int64_t rows = std::min(r, extent - i0);
    const float* s0 = src + i0 * si;
    for (int64_t ib = 0; ib < r; ib += 16) {
      const __mmask16 lanes = firstLanes(r - ib);
      const int64_t live = std::min<int64_t>(16, std::max<int64_t>(0, rows - ib));
      for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
        const int64_t left = kc - 2 * q0;  // floats of each line from pair q0 on
        __m512 v[16];
        for (int t = 0; t < 16; t++) {
          if (t >= live) {
            v[t] = _mm512_setzero_ps();
            continue;
          }
          const float* line = s0 + (ib + t) * si + 2 * q0;
          const __m512 x0 = _mm512_maskz_loadu_ps(firstLanes(left), line);
          const __m512 x1 = _mm512_maskz_loadu_ps(firstLanes(left - 16), line + 16);
          // Even floats are each pair's k, odd ones its k + 1.
          const __m512 lo = _mm512_permutex2var_ps(x0, evens, x1);
          const __m512 hi = _mm512_permutex2var_ps(x0, odds, x1);
          v[t] = _mm512_castsi512_ps(bf16Pairs(lo, hi));
        }
        transpose16x16(v);
        const int64_t n = std::min<int64_t>(16, pairs - q0);
        Bf16Pair* d = dst + q0 * r + ib;
        for (int64_t t = 0; t < n; t++) _mm512_mask_storeu_ps(d + t * r, lanes, v[t]);
      }
    }
  }
}
#endif

const Kernel<float>& kernelFor(GemmIsa isa) {
  static const Kernel<float> portable{kernelPortable, pack, kPortMr, kPortNr, 64, 256, 1024};
#if defined(__aarch64__)
  // MC·KC·4 = 128 KB of packed A in L2, KC·NR·4 = 12 KB of B's micro-panel in L1.
  static const Kernel<float> neon{kernelNeon, pack, kNeonMr, kNeonNr, 128, 256, 3072};
  if (isa == GemmIsa::Neon) return neon;
#endif
#ifdef PATCHLM_X86
  // MC·KC·4 bytes of packed A stay in L2 (192 KB, 144 KB); KC·NR·4 of B's micro-panel in L1.
  static const Kernel<float> avx2{kernelAvx2, pack, 6, 16, 144, 256, 4096};
  static const Kernel<float> avx512{kernelAvx512, packAvx512, 12, 32, 192, 256, 4096};
  if (isa == GemmIsa::Avx512) return avx512;
  if (isa == GemmIsa::Avx2) return avx2;
#endif
  return portable;
}

#ifdef PATCHLM_X86
// Half the bytes per k, so twice the fp32 kernel's KC in the same L1/L2 footprint.
const Kernel<Bf16Pair> bf16Kernel{kernelBf16, packBf16, 12, 32, 192, 512, 4096};
#endif

// A growable 64-byte-aligned scratch buffer per thread (one for packed A, one for packed B).
struct Scratch {
  void* data = nullptr;
  size_t bytes = 0;
  ~Scratch() { std::free(data); }
  template <class T>
  T* get(size_t n) {
    const size_t want = (n * sizeof(T) + 63) & ~size_t{63};
    if (want > bytes) {
      std::free(data);
      bytes = want;
      data = std::aligned_alloc(64, bytes);
    }
    return static_cast<T*>(data);
  }
};

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

template <class T>
void blocked(const Kernel<T>& k, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a,
             int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int64_t MR = k.mr, NR = k.nr;
  constexpr int64_t step = kPerElement<T>;
  thread_local Scratch aBuf, bBuf;
  const int64_t depthMax = (std::min(k.kc, K) + step - 1) / step;  // packed elements per panel row
  const int64_t ncMax = std::min(k.nc, (N + NR - 1) / NR * NR);
  const int64_t mcMax = std::min(k.mc, (M + MR - 1) / MR * MR);
  T* bPack = bBuf.get<T>(static_cast<size_t>(depthMax * ncMax));
  T* aPack = aBuf.get<T>(static_cast<size_t>(depthMax * mcMax));
  alignas(64) float tile[16 * 32];  // MR×NR of the largest kernel, for partial tiles
  for (int64_t jc = 0; jc < N; jc += k.nc) {
    const int64_t nc = std::min(k.nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += k.kc) {
      const int64_t kc = std::min(k.kc, K - pc);
      const int64_t depth = (kc + step - 1) / step;
      // The first K slice applies the caller's beta; later ones add to it.
      const float betaHere = pc == 0 ? beta : 1.0f;
      if (transB) k.pack(b + jc * ldb + pc, ldb, 1, nc, kc, NR, bPack);
      else k.pack(b + pc * ldb + jc, 1, ldb, nc, kc, NR, bPack);
      for (int64_t ic = 0; ic < M; ic += k.mc) {
        const int64_t mc = std::min(k.mc, M - ic);
        if (transA) k.pack(a + pc * lda + ic, 1, lda, mc, kc, MR, aPack);
        else k.pack(a + ic * lda + pc, lda, 1, mc, kc, MR, aPack);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min(NR, nc - jr);
          const T* bp = bPack + jr * depth;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min(MR, mc - ir);
            const T* ap = aPack + ir * depth;
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

}  // namespace

const char* gemmIsaName(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::Avx512: return "avx512";
    case GemmIsa::Avx2: return "avx2";
    case GemmIsa::Neon: return "neon";
    default: return "portable";
  }
}

GemmRegisterBlock gemmRegisterBlock(GemmIsa isa) {
  const Kernel<float>& k = kernelFor(isa);
  return {k.mr, k.nr};
}

bool gemmIsaSupported(GemmIsa isa) {
#ifdef PATCHLM_X86
  __builtin_cpu_init();
  if (isa == GemmIsa::Avx512) return __builtin_cpu_supports("avx512f");
  if (isa == GemmIsa::Avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
  if (isa == GemmIsa::Neon) return true;  // baseline on aarch64
#endif
  return isa == GemmIsa::Portable;
}

GemmIsa gemmBestIsa() {
  if (gemmIsaSupported(GemmIsa::Neon)) return GemmIsa::Neon;
  if (gemmIsaSupported(GemmIsa::Avx512)) return GemmIsa::Avx512;
  if (gemmIsaSupported(GemmIsa::Avx2)) return GemmIsa::Avx2;
  return GemmIsa::Portable;
}

bool bf16GemmSupported() {
#ifdef PATCHLM_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

namespace {
// The shared entry checks of both GEMMs; false when nothing is left to compute.
bool needsProduct(int64_t M, int64_t N, int64_t K, float alpha, float beta, float* c, int64_t ldc) {
  if (M <= 0 || N <= 0) return false;
  if (K <= 0 || alpha == 0.0f) {
    if (beta != 1.0f) scale(c, ldc, M, N, beta);
    return false;
  }
  return true;
}
}  // namespace

void sgemm(GemmIsa isa, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (!needsProduct(M, N, K, alpha, beta, c, ldc)) return;
  blocked(kernelFor(isa), transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemmBf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (!needsProduct(M, N, K, alpha, beta, c, ldc)) return;
#ifdef PATCHLM_X86
  blocked(bf16Kernel, transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

}  // namespace patchlm
