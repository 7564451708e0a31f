// Fused training kernels: one pass over memory where tfjs would make several, each pass
// allocating its output. Their float32 operation order follows the pure-tfjs fallbacks in
// src/Fused.ts, so both agree to rounding (FMA contraction aside).
#include <algorithm>
#include <cmath>
#include <atomic>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels.h"
#include "pool.h"
#include "vecmath.h"

namespace patchlm {
namespace {
constexpr int64_t kGrain = 16384;

int64_t rowsPerTask(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

}  // namespace

namespace {
// One AdamW element: the moments' and the parameter's new values.
inline void adamwAt(const float* p, const float* m, const float* v, const float* g, float* pOut, float* mOut, float* vOut,
                    int64_t i, const AdamWParams& h) {
  const float mi = m[i] * h.beta1 + g[i] * h.c1;
  const float vi = v[i] * h.beta2 + (g[i] * g[i]) * h.c2;
  const float denom = std::sqrt(vi) * h.invSqrtBc2 + h.eps;
  mOut[i] = mi;
  vOut[i] = vi;
  pOut[i] = p[i] * h.shrink - (mi / denom) * h.stepSize;
}

#if defined(__x86_64__)
// Rows of kStreamBlock elements are computed into stack buffers (L1) and then streamed to the
// outputs with non-temporal stores: the new parameters and moments are not read again before the
// next step, long after they would have left the cache, so writing them through the cache only
// added a read of every output line before its write: 40 bytes of memory traffic per parameter
// instead of the 28 needed. The arithmetic is adamwAt's either way, so the bits do not depend on
// the path.
constexpr int64_t kStreamBlock = 256;

bool aligned16(const float* x) { return (reinterpret_cast<uintptr_t>(x) & 15) == 0; }

void streamOut(float* dst, const float* src) {
  for (int64_t j = 0; j < kStreamBlock; j += 4) _mm_stream_ps(dst + j, _mm_load_ps(src + j));
}
#endif
}  // namespace

void adamw(const float* p, const float* m, const float* v, const float* g, float* pOut, float* mOut, float* vOut, int64_t n,
           const AdamWParams& h) {
  pool().parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
#if defined(__x86_64__)
    // Up to the first element at which all three outputs are 16-byte aligned (when they agree
    // modulo 16, as pooled arrays do), then whole blocks streamed.
    while (i < end && !(aligned16(pOut + i) && aligned16(mOut + i) && aligned16(vOut + i)) && i - begin < 4) {
      adamwAt(p, m, v, g, pOut, mOut, vOut, i, h);
      i++;
    }
    if (aligned16(pOut + i) && aligned16(mOut + i) && aligned16(vOut + i)) {
      alignas(64) float pb[kStreamBlock], mb[kStreamBlock], vb[kStreamBlock];
      for (; i + kStreamBlock <= end; i += kStreamBlock) {
        for (int64_t j = 0; j < kStreamBlock; j++) adamwAt(p + i, m + i, v + i, g + i, pb, mb, vb, j, h);
        streamOut(pOut + i, pb);
        streamOut(mOut + i, mb);
        streamOut(vOut + i, vb);
      }
      // Streamed stores are weakly ordered: fence them before the pool reports this task done.
      _mm_sfence();
    }
#endif
    for (; i < end; i++) adamwAt(p, m, v, g, pOut, mOut, vOut, i, h);
  });
}

void rmsNorm(const float* x, const float* gain, float* y, int64_t rows, int64_t cols, float eps) {
  pool().parallelFor(rows, rowsPerTask(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const float* __restrict xr = x + r * cols;
      float* __restrict yr = y + r * cols;
      const float inv = 1.0f / std::sqrt(dot(xr, xr, cols) / static_cast<float>(cols) + eps);
      for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] * inv) * gain[c];
    }
  });
}

// With xhat = x·inv and y = xhat·g: dg = Σ_rows dy·xhat, dx = inv·(dy·g − xhat·mean(dy·g·xhat)).
void rmsNormGrad(const float* dy, const float* x, const float* gain, float* dx, float* dgain, int64_t rows, int64_t cols,
                 float eps) {
  const int parts = pool().size();
  std::vector<float> partial(static_cast<size_t>(parts) * cols, 0.0f);
  std::vector<int> used(parts, 0);
  std::atomic<int> nextPart{0};
  pool().parallelFor(rows, rowsPerTask(cols), [&](int64_t begin, int64_t end) {
    const int part = nextPart.fetch_add(1);
    used[part] = 1;
    float* __restrict dg = partial.data() + static_cast<size_t>(part) * cols;
    std::vector<float> dyg(cols);
    for (int64_t r = begin; r < end; r++) {
      const float* __restrict xr = x + r * cols;
      const float* __restrict dyr = dy + r * cols;
      float* __restrict dxr = dx + r * cols;
      const float inv = 1.0f / std::sqrt(dot(xr, xr, cols) / static_cast<float>(cols) + eps);
      for (int64_t c = 0; c < cols; c++) dyg[c] = dyr[c] * gain[c];
      const float meanDot = dot(dyg.data(), xr, cols) * inv / static_cast<float>(cols);
      for (int64_t c = 0; c < cols; c++) {
        const float xhat = xr[c] * inv;
        dg[c] += dyr[c] * xhat;
        dxr[c] = inv * (dyg[c] - xhat * meanDot);
      }
    }
  });
  for (int64_t c = 0; c < cols; c++) dgain[c] = 0.0f;
  for (int p = 0; p < parts; p++)
    if (used[p])
      for (int64_t c = 0; c < cols; c++) dgain[c] += partial[static_cast<size_t>(p) * cols + c];
}

namespace {
PATCHLM_WIDE_CLONES void swigluRange(const float* gate, const float* up, float* y, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; i++) y[i] = (gate[i] * fastSigmoid(gate[i])) * up[i];
}

PATCHLM_WIDE_CLONES void swigluGradRange(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t begin,
                                         int64_t end) {
  for (int64_t i = begin; i < end; i++) {
    const float s = fastSigmoid(gate[i]);
    dup[i] = dy[i] * (gate[i] * s);
    dgate[i] = dy[i] * up[i] * (s * (1.0f + gate[i] * (1.0f - s)));
  }
}
}  // namespace

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  pool().parallelFor(n, kGrain, [&](int64_t begin, int64_t end) { swigluRange(gate, up, y, begin, end); });
}

// y = g·σ(g)·u: du = dy·g·σ(g), dg = dy·u·σ(g)·(1 + g·(1 − σ(g))).
void swigluGrad(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  pool().parallelFor(n, kGrain, [&](int64_t begin, int64_t end) { swigluGradRange(dy, gate, up, dgate, dup, begin, end); });
}

}  // namespace patchlm

namespace patchlm {

namespace {
// weightedCrossEntropy's rows begin..end−1: their lse, and their part of the loss.
PATCHLM_WIDE_CLONES double crossEntropyRows(const float* z, const int32_t* t, const float* w, float* lse, int64_t V, int64_t K,
                                            int64_t begin, int64_t end) {
  double acc = 0.0;
  for (int64_t r = begin; r < end; r++) {
    const float* __restrict zr = z + r * V;
    const float m = maxOf(zr, V);
    const float l = m + std::log(sumExp(zr, V, m));
    lse[r] = l;
    for (int64_t k = 0; k < K; k++) {
      const float wk = w[r * K + k];
      const int32_t tk = t[r * K + k];
      if (wk != 0.0f && tk >= 0 && tk < V) acc += static_cast<double>(wk) * (l - zr[tk]);
    }
  }
  return acc;
}

// weightedCrossEntropyGrad's rows begin..end−1.
PATCHLM_WIDE_CLONES void crossEntropyGradRows(float dy, const float* z, const int32_t* t, const float* w, const float* lse, float* dz,
                                              int64_t V, int64_t K, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; r++) {
    const float* __restrict zr = z + r * V;
    float* __restrict dr = dz + r * V;
    float wsum = 0.0f;
    for (int64_t k = 0; k < K; k++) wsum += w[r * K + k];
    const float scale = dy * wsum;
    const float l = lse[r];
    for (int64_t v = 0; v < V; v++) dr[v] = scale * fastExp(zr[v] - l);
    for (int64_t k = 0; k < K; k++) {
      const int32_t tk = t[r * K + k];
      if (tk >= 0 && tk < V) dr[tk] -= dy * w[r * K + k];
    }
  }
}
}  // namespace

// Per row r: lse_r = log Σ_v exp(z_rv); loss = Σ_r Σ_k w_rk·(lse_r − z_r[t_rk]). Targets outside
// [0, V) must carry weight 0 (ignored slots); they are never read.
double weightedCrossEntropy(const float* z, const int32_t* t, const float* w, float* lse, int64_t R, int64_t V, int64_t K) {
  const int parts = pool().size();
  std::vector<double> partial(parts, 0.0);
  std::atomic<int> nextPart{0};
  pool().parallelFor(R, rowsPerTask(V), [&](int64_t begin, int64_t end) {
    const int part = nextPart.fetch_add(1);
    partial[part] = crossEntropyRows(z, t, w, lse, V, K, begin, end);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

// dz_r = dy·((Σ_k w_rk)·exp(z_r − lse_r) − Σ_k w_rk·onehot(t_rk)).
void weightedCrossEntropyGrad(float dy, const float* z, const int32_t* t, const float* w, const float* lse, float* dz,
                              int64_t R, int64_t V, int64_t K) {
  pool().parallelFor(R, rowsPerTask(V), [&](int64_t begin, int64_t end) { crossEntropyGradRows(dy, z, t, w, lse, dz, V, K, begin, end); });
}

namespace {
// rope's rows begin..end−1 (each `heads` heads of D); transpose is the adjoint (the gradient, the
// rotation by −θ). Every pointer is restrict-qualified and the
// two halves are separate loops: with the tables' pointers possibly aliasing the output, GCC kept
// the loop scalar.
PATCHLM_WIDE_CLONES void ropeRows(const float* __restrict x, const float* __restrict cos, const float* __restrict sin,
                                  float* __restrict y, int64_t T, int64_t heads, int64_t D, bool transpose, int64_t begin,
                                  int64_t end) {
  const int64_t half = D / 2;
  const int64_t width = heads * D;
  for (int64_t r = begin; r < end; r++) {
    const float* __restrict c = cos + (r % T) * D;
    const float* __restrict s = sin + (r % T) * D;
    for (int64_t h = 0; h < heads; h++) {
      const float* __restrict xi = x + r * width + h * D;
      float* __restrict yi = y + r * width + h * D;
      if (transpose) {
        for (int64_t d = 0; d < half; d++) yi[d] = xi[d] * c[d] + xi[d + half] * s[d + half];
        for (int64_t d = 0; d < half; d++) yi[d + half] = xi[d + half] * c[d + half] - xi[d] * s[d];
      } else {
        for (int64_t d = 0; d < half; d++) yi[d] = xi[d] * c[d] - xi[d + half] * s[d];
        for (int64_t d = 0; d < half; d++) yi[d + half] = xi[d + half] * c[d + half] + xi[d] * s[d + half];
      }
    }
  }
}
}  // namespace

void rope(const float* x, const float* cos, const float* sin, float* y, int64_t B, int64_t T, int64_t heads, int64_t D,
          bool transpose) {
  pool().parallelFor(B * T, rowsPerTask(heads * D), [&](int64_t begin, int64_t end) {
    ropeRows(x, cos, sin, y, T, heads, D, transpose, begin, end);
  });
}

}  // namespace patchlm
