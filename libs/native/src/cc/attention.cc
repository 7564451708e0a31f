// Causal self-attention for training, forward and backward, one (batch, kv head) group per task.
// Per head it forms the T×T scores in a thread-local buffer, never in a tensor; the forward
// keeps only each row's logsumexp, from which the backward recomputes the probabilities
// (FlashAttention's recipe, untiled: a T×T buffer of a few hundred KB fits in L2 at these sizes).
#include "blas.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "vecmath.h"

namespace patchlm {
namespace {

// C (m×n) = alpha·op(A)·op(B) + beta·C, row-major, single-threaded (inside a pool task).
void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta,
          float* c, int ldc) {
  gemmSingle(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Runs fn(group) for each (batch, kv head) group across the pool, with OpenBLAS single-threaded
// so that the pool's threads do not each fork OpenBLAS's.
template <class F>
void forEachGroup(int64_t groups, F fn) {
  const int blasThreads = blas::threads();
  if (blasThreads > 1) blas::setThreads(1);
  pool().parallelFor(groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; g++) fn(g);
  });
  if (blasThreads > 1) blas::setThreads(blasThreads);
}

// Where head h of batch b starts, and the distance between its consecutive positions: (B,H,T,D)
// is head-major (rows D apart); (B,T,H,D), the layout the projections produce, is sequence-major
// (rows H·D apart), which BLAS reads through its leading dimension with no transpose copies.
struct Heads {
  int64_t T, heads, D;
  bool seqMajor;
  int64_t ld() const { return seqMajor ? heads * D : D; }
  int64_t at(int64_t b, int64_t h) const { return seqMajor ? (b * T * heads + h) * D : (b * heads + h) * T * D; }
};

// Query rows go in blocks of kBlock: block [i0, i1) only needs keys 0..i1−1, so the products
// skip the upper triangle's blocks (at T = 256 that is 37.5% of the attention FLOPs).
constexpr int64_t kBlock = 64;

// A pool thread's T×T scratch matrix, kept between calls: a fresh zero-filled std::vector per
// group cost a 256 KB memset (and, past malloc's mmap threshold, page faults) per head. Every
// element a product or a softmax reads is written first, so it is never cleared.
float* scratch(int which, int64_t n) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& buffer = buffers[which];
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// Rows i0..i1−1 of P (ld T) <- their causal softmax, in place over the scores (see probabilities).
PATCHLM_WIDE_CLONES void softmaxRows(float* p, float* lse, bool haveLse, int64_t T, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    float* row = p + i * T;
    const int64_t n = i + 1;
    if (haveLse) {
      expInPlace(row, n, lse[i]);
    } else {
      const float m = maxOf(row, n);
      const float sum = expInPlace(row, n, m);
      lse[i] = m + std::log(sum);
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < n; j++) row[j] *= inv;
    }
    std::memset(row + n, 0, sizeof(float) * (i1 - n));
  }
}

// Rows i0..i1−1 of P (ld T, columns 0..i1−1) <- causal softmax of scale·Q·Kᵀ for those rows,
// given each row's logsumexp (backward) or computing it into lse (forward).
void probabilities(const float* q, int64_t ldq, const float* k, int64_t ldk, float* p, float* lse, bool haveLse, int64_t T,
                   int64_t D, float scale, int64_t i0, int64_t i1) {
  gemm(false, true, i1 - i0, i1, D, scale, q + i0 * ldq, ldq, k, ldk, 0.0f, p + i0 * T, T);
  softmaxRows(p, lse, haveLse, T, i0, i1);
}

// Rows i0..i1−1 of dP (ld T) <- dS = P ∘ (dP − rowsum(dO ∘ O)), zero above the diagonal.
PATCHLM_WIDE_CLONES void scoreGrads(float* dp, const float* p, const float* dout, const float* o, int64_t ld, int64_t D, int64_t T,
                                    int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    const float rowDot = dot(dout + i * ld, o + i * ld, D);
    float* ds = dp + i * T;
    const float* pi = p + i * T;
    for (int64_t j = 0; j <= i; j++) ds[j] = pi[j] * (ds[j] - rowDot);
    std::memset(ds + i + 1, 0, sizeof(float) * (i1 - i - 1));
  }
}

}  // namespace

void causalAttention(const float* q, const float* k, const float* v, float* o, float* lse, int64_t B, int64_t H, int64_t Hkv,
                     int64_t T, int64_t D, float scale, bool seqMajor) {
  const int64_t R = H / Hkv;
  const Heads qs{T, H, D, seqMajor}, ks{T, Hkv, D, seqMajor};
  forEachGroup(B * Hkv, [&](int64_t group) {
    const int64_t b = group / Hkv;
    const int64_t g = group % Hkv;
    float* p = scratch(0, T * T);
    const float* kg = k + ks.at(b, g);
    const float* vg = v + ks.at(b, g);
    for (int64_t r = 0; r < R; r++) {
      const int64_t h = g * R + r;
      const float* qh = q + qs.at(b, h);
      float* oh = o + qs.at(b, h);
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock);
        probabilities(qh, qs.ld(), kg, ks.ld(), p, lse + (b * H + h) * T, false, T, D, scale, i0, i1);
        gemm(false, false, i1 - i0, D, i1, 1.0f, p + i0 * T, T, vg, ks.ld(), 0.0f, oh + i0 * qs.ld(), qs.ld());
      }
    }
  });
}

// Per row block [i0, i1) and the keys 0..i1−1 it sees: dV += Pᵀ·dO; dP = dO·Vᵀ;
// dS = P ∘ (dP − rowsum(dO ∘ O)); dQ = scale·dS·K; dK += scale·dSᵀ·Q (summed over the heads of a group).
void causalAttentionGrad(const float* dout, const float* q, const float* k, const float* v, const float* o,
                         const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Hkv, int64_t T,
                         int64_t D, float scale, bool seqMajor) {
  const int64_t R = H / Hkv;
  const Heads qs{T, H, D, seqMajor}, ks{T, Hkv, D, seqMajor};
  const int64_t ldq = qs.ld(), ldk = ks.ld();
  forEachGroup(B * Hkv, [&](int64_t group) {
    const int64_t b = group / Hkv;
    const int64_t g = group % Hkv;
    float* p = scratch(0, T * T);
    float* dp = scratch(1, T * T);
    const float* kg = k + ks.at(b, g);
    const float* vg = v + ks.at(b, g);
    float* dkg = dk + ks.at(b, g);
    float* dvg = dv + ks.at(b, g);
    for (int64_t t = 0; t < T; t++) {
      std::memset(dkg + t * ldk, 0, sizeof(float) * D);
      std::memset(dvg + t * ldk, 0, sizeof(float) * D);
    }
    for (int64_t r = 0; r < R; r++) {
      const int64_t h = g * R + r;
      const float* qh = q + qs.at(b, h);
      const float* doh = dout + qs.at(b, h);
      const float* oh = o + qs.at(b, h);
      float* dqh = dq + qs.at(b, h);
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock);
        const int64_t rows = i1 - i0;
        float* pb = p + i0 * T;
        float* dpb = dp + i0 * T;
        probabilities(qh, ldq, kg, ldk, p, const_cast<float*>(lse + (b * H + h) * T), true, T, D, scale, i0, i1);
        gemm(true, false, i1, D, rows, 1.0f, pb, T, doh + i0 * ldq, ldq, 1.0f, dvg, ldk);
        gemm(false, true, rows, i1, D, 1.0f, doh + i0 * ldq, ldq, vg, ldk, 0.0f, dpb, T);
        scoreGrads(dp, p, doh, oh, ldq, D, T, i0, i1);
        gemm(false, false, rows, D, i1, scale, dpb, T, kg, ldk, 0.0f, dqh + i0 * ldq, ldq);
        gemm(true, false, i1, D, rows, scale, dpb, T, qh + i0 * ldq, ldq, 1.0f, dkg, ldk);
      }
    }
  });
}

}  // namespace patchlm
