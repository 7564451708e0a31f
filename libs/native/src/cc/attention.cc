// Causal self-attention for training, forward and backward, one (batch, kv head) group per task.
// Per head it forms the T×T scores in a thread-local buffer, never in a tensor; the forward
// keeps only each row's logsumexp, from which the backward recomputes the probabilities
// (FlashAttention's recipe, untiled: a T×T buffer of a few hundred KB fits in L2 at these sizes).
#include <cblas.h>

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
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc);
}

// Runs fn(group) for each (batch, kv head) group across the pool, with OpenBLAS single-threaded
// so that the pool's threads do not each fork OpenBLAS's.
template <class F>
void forEachGroup(int64_t groups, F fn) {
  const int blasThreads = openblas_get_num_threads();
  if (blasThreads > 1) openblas_set_num_threads(1);
  pool().parallelFor(groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; g++) fn(g);
  });
  if (blasThreads > 1) openblas_set_num_threads(blasThreads);
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

// P (T×T) <- causal softmax of scale·Q·Kᵀ, given each row's logsumexp (or computing it into lse).
void probabilities(const float* q, int64_t ldq, const float* k, int64_t ldk, float* p, float* lse, bool haveLse, int64_t T,
                   int64_t D, float scale) {
  gemm(false, true, T, T, D, scale, q, ldq, k, ldk, 0.0f, p, T);
  for (int64_t i = 0; i < T; i++) {
    float* row = p + i * T;
    float l = lse[i];
    if (!haveLse) {
      float m = -INFINITY;
      for (int64_t j = 0; j <= i; j++) m = row[j] > m ? row[j] : m;
      float s = 0.0f;
      for (int64_t j = 0; j <= i; j++) s += fastExp(row[j] - m);
      l = m + std::log(s);
      lse[i] = l;
    }
    for (int64_t j = 0; j <= i; j++) row[j] = fastExp(row[j] - l);
    for (int64_t j = i + 1; j < T; j++) row[j] = 0.0f;
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
    std::vector<float> p(T * T);
    const float* kg = k + ks.at(b, g);
    const float* vg = v + ks.at(b, g);
    for (int64_t r = 0; r < R; r++) {
      const int64_t h = g * R + r;
      probabilities(q + qs.at(b, h), qs.ld(), kg, ks.ld(), p.data(), lse + (b * H + h) * T, false, T, D, scale);
      gemm(false, false, T, D, T, 1.0f, p.data(), T, vg, ks.ld(), 0.0f, o + qs.at(b, h), qs.ld());
    }
  });
}

// dV = Σ_heads Pᵀ·dO; dP = dO·Vᵀ; dS = P ∘ (dP − rowsum(dO ∘ O)); dQ = scale·dS·K; dK = Σ_heads scale·dSᵀ·Q.
void causalAttentionGrad(const float* dout, const float* q, const float* k, const float* v, const float* o,
                         const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Hkv, int64_t T,
                         int64_t D, float scale, bool seqMajor) {
  const int64_t R = H / Hkv;
  const Heads qs{T, H, D, seqMajor}, ks{T, Hkv, D, seqMajor};
  const int64_t ldq = qs.ld(), ldk = ks.ld();
  forEachGroup(B * Hkv, [&](int64_t group) {
    const int64_t b = group / Hkv;
    const int64_t g = group % Hkv;
    std::vector<float> p(T * T), dp(T * T), rowDot(T);
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
      probabilities(qh, ldq, kg, ldk, p.data(), const_cast<float*>(lse + (b * H + h) * T), true, T, D, scale);
      gemm(true, false, T, D, T, 1.0f, p.data(), T, doh, ldq, 1.0f, dvg, ldk);
      gemm(false, true, T, T, D, 1.0f, doh, ldq, vg, ldk, 0.0f, dp.data(), T);
      for (int64_t i = 0; i < T; i++) {
        float s = 0.0f;
        for (int64_t d = 0; d < D; d++) s += doh[i * ldq + d] * oh[i * ldq + d];
        rowDot[i] = s;
      }
      for (int64_t i = 0; i < T; i++) {
        float* ds = dp.data() + i * T;
        const float* pi = p.data() + i * T;
        for (int64_t j = 0; j <= i; j++) ds[j] = pi[j] * (ds[j] - rowDot[i]);
        for (int64_t j = i + 1; j < T; j++) ds[j] = 0.0f;
      }
      gemm(false, false, T, D, T, scale, dp.data(), T, kg, ldk, 0.0f, dq + qs.at(b, h), ldq);
      gemm(true, false, T, D, T, scale, dp.data(), T, qh, ldq, 1.0f, dkg, ldk);
    }
  });
}

}  // namespace patchlm
