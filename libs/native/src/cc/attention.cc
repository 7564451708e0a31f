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

// P (T×T) <- causal softmax of scale·Q·Kᵀ, given each row's logsumexp (or computing it into lse).
void probabilities(const float* q, const float* k, float* p, float* lse, bool haveLse, int64_t T, int64_t D, float scale) {
  gemm(false, true, T, T, D, scale, q, D, k, D, 0.0f, p, T);
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
                     int64_t T, int64_t D, float scale) {
  const int64_t R = H / Hkv;
  forEachGroup(B * Hkv, [&](int64_t group) {
    const int64_t b = group / Hkv;
    const int64_t g = group % Hkv;
    std::vector<float> p(T * T);
    const float* kg = k + (b * Hkv + g) * T * D;
    const float* vg = v + (b * Hkv + g) * T * D;
    for (int64_t r = 0; r < R; r++) {
      const int64_t h = g * R + r;
      const int64_t head = (b * H + h) * T;
      probabilities(q + head * D, kg, p.data(), lse + head, false, T, D, scale);
      gemm(false, false, T, D, T, 1.0f, p.data(), T, vg, D, 0.0f, o + head * D, D);
    }
  });
}

// dV = Σ_heads Pᵀ·dO; dP = dO·Vᵀ; dS = P ∘ (dP − rowsum(dO ∘ O)); dQ = scale·dS·K; dK = Σ_heads scale·dSᵀ·Q.
void causalAttentionGrad(const float* dout, const float* q, const float* k, const float* v, const float* o,
                         const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Hkv, int64_t T,
                         int64_t D, float scale) {
  const int64_t R = H / Hkv;
  forEachGroup(B * Hkv, [&](int64_t group) {
    const int64_t b = group / Hkv;
    const int64_t g = group % Hkv;
    std::vector<float> p(T * T), dp(T * T), rowDot(T);
    const float* kg = k + (b * Hkv + g) * T * D;
    const float* vg = v + (b * Hkv + g) * T * D;
    float* dkg = dk + (b * Hkv + g) * T * D;
    float* dvg = dv + (b * Hkv + g) * T * D;
    std::memset(dkg, 0, sizeof(float) * T * D);
    std::memset(dvg, 0, sizeof(float) * T * D);
    for (int64_t r = 0; r < R; r++) {
      const int64_t h = g * R + r;
      const int64_t head = (b * H + h) * T;
      const float* qh = q + head * D;
      const float* doh = dout + head * D;
      const float* oh = o + head * D;
      probabilities(qh, kg, p.data(), const_cast<float*>(lse + head), true, T, D, scale);
      gemm(true, false, T, D, T, 1.0f, p.data(), T, doh, D, 1.0f, dvg, D);
      gemm(false, true, T, T, D, 1.0f, doh, D, vg, D, 0.0f, dp.data(), T);
      for (int64_t i = 0; i < T; i++) {
        float s = 0.0f;
        for (int64_t d = 0; d < D; d++) s += doh[i * D + d] * oh[i * D + d];
        rowDot[i] = s;
      }
      for (int64_t i = 0; i < T; i++) {
        float* ds = dp.data() + i * T;
        const float* pi = p.data() + i * T;
        for (int64_t j = 0; j <= i; j++) ds[j] = pi[j] * (ds[j] - rowDot[i]);
        for (int64_t j = i + 1; j < T; j++) ds[j] = 0.0f;
      }
      gemm(false, false, T, D, T, scale, dp.data(), T, kg, D, 0.0f, dq + head * D, D);
      gemm(true, false, T, D, T, scale, dp.data(), T, qh, D, 1.0f, dkg, D);
    }
  });
}

}  // namespace patchlm
