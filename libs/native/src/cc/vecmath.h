// Branch-free float math that GCC vectorises in plain loops (-O3 -march=native), so elementwise
// kernels run at SIMD width without libmvec or -ffast-math (which would also drop NaN/inf rules).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

}  // namespace patchlm
