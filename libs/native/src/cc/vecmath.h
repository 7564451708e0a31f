// Branch-free float math that GCC vectorises in plain loops (-O3 -march=native), so elementwise
// kernels run at SIMD width without libmvec or -ffast-math (which would also drop NaN/inf rules).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// PATCHLM_WIDE_CLONES on a function with exp-heavy loops compiles it twice, for the build's
// baseline and for x86-64-v4 (AVX-512), and picks one per CPU when the addon loads (GCC's
// target_clones, an ifunc): the portable build's AVX2 baseline left half the vector width unused
// on AVX-512 CPUs, where softmax and cross-entropy exps cost as much as the attention products.
// The loops below fix their summation lanes (kLanes), so both clones give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PATCHLM_WIDE_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define PATCHLM_WIDE_CLONES
#endif

namespace patchlm {

inline float bitsToFloat(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// exp with Cephes' expf polynomial after range reduction x = k·ln2 + r, |r| <= ln2/2: about 1 ulp,
// denormal results included. Below -103.98 (under the smallest denormal) the result is exactly 0,
// as additive masks rely on; above ln(FLT_MAX) it is +inf; NaN stays NaN.
inline float fastExp(float x) {
  const float xc = x < -103.98f ? -103.98f : (x > 88.7228394f ? 88.7228394f : x);
  const float k = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  float r = xc - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  // 2^k for k in [-150, 128] as two normal powers 2^(k-h)·2^h, h = k/2.
  const int32_t ki = static_cast<int32_t>(k);
  const int32_t h = ki / 2;
  float y = p * bitsToFloat((ki - h + 127) << 23) * bitsToFloat((h + 127) << 23);
  y = x < -103.98f ? 0.0f : y;
  y = x > 88.7228394f ? INFINITY : y;
  return x != x ? x : y;
}

inline float fastSigmoid(float x) { return 1.0f / (1.0f + fastExp(-x)); }

// Reductions in 16 independent lanes: without -ffast-math GCC keeps a single accumulator in
// order (no SIMD); independent lanes vectorise and change only the summation order.
constexpr int kLanes = 16;

inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; i++) s += a[i] * b[i];
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s;
}

inline float maxOf(const float* x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; j++) acc[j] = -INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = -INFINITY;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  for (int j = 0; j < kLanes; j++) m = acc[j] > m ? acc[j] : m;
  return m;
}

// Σ exp(x[i] − shift) over i < n.
inline float sumExp(const float* x, int64_t n, float shift) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += fastExp(x[i + j] - shift);
  float s = 0;
  for (; i < n; i++) s += fastExp(x[i] - shift);
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s;
}

// x[i] <- exp(x[i] − shift) for i < n; returns their sum.
inline float expInPlace(float* x, int64_t n, float shift) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += (x[i + j] = fastExp(x[i + j] - shift));
  float s = 0;
  for (; i < n; i++) s += (x[i] = fastExp(x[i] - shift));
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s;
}

}  // namespace patchlm
