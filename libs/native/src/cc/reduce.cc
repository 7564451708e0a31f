// Reductions over the middle axis of (outer, R, inner), and row softmax.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "vecmath.h"

namespace patchlm {
namespace {

constexpr int64_t kGrain = 16384;

struct SumOp {
  static constexpr float init = 0.0f;
  static float f(float acc, float v) { return acc + v; }
};
struct MaxOp {
  static constexpr float init = -INFINITY;
  static float f(float acc, float v) { return (v > acc || v != v) ? v : acc; }
};
struct MinOp {
  static constexpr float init = INFINITY;
  static float f(float acc, float v) { return (v < acc || v != v) ? v : acc; }
};

// One contiguous row with kLanes independent accumulators: vectorises without reassociating the
// loop as a whole (no -ffast-math), and sums in a pairwise-like order that loses less precision.
template <class Op>
float reduceRow(const float* __restrict x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; j++) acc[j] = Op::init;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] = Op::f(acc[j], x[i + j]);
  float r = Op::init;
  for (; i < n; i++) r = Op::f(r, x[i]);
  for (int j = 0; j < kLanes; j++) r = Op::f(r, acc[j]);
  return r;
}

template <class Op>
void reduceMiddle(const float* x, float* out, int64_t outer, int64_t R, int64_t inner, float scale) {
  if (inner == 1) {
    pool().parallelFor(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(R, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; o++) out[o] = reduceRow<Op>(x + o * R, R) * scale;
    });
    return;
  }
  // Columns in chunks, so that even outer = 1 (a bias gradient) splits across threads.
  const int64_t chunk = std::max<int64_t>(64, std::min<int64_t>(inner, kGrain / std::max<int64_t>(R, 1)));
  const int64_t chunks = (inner + chunk - 1) / chunk;
  pool().parallelFor(outer * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; u++) {
      const int64_t o = u / chunks;
      const int64_t c0 = (u % chunks) * chunk;
      const int64_t c1 = std::min(inner, c0 + chunk);
      float* __restrict dst = out + o * inner;
      for (int64_t c = c0; c < c1; c++) dst[c] = Op::init;
      for (int64_t r = 0; r < R; r++) {
        const float* __restrict src = x + (o * R + r) * inner;
        for (int64_t c = c0; c < c1; c++) dst[c] = Op::f(dst[c], src[c]);
      }
      if (scale != 1.0f)
        for (int64_t c = c0; c < c1; c++) dst[c] *= scale;
    }
  });
}

}  // namespace

void reduce(ReduceOp op, const float* x, float* out, int64_t outer, int64_t R, int64_t inner) {
  switch (op) {
    case ReduceOp::Sum: return reduceMiddle<SumOp>(x, out, outer, R, inner, 1.0f);
    case ReduceOp::Mean: return reduceMiddle<SumOp>(x, out, outer, R, inner, R == 0 ? NAN : 1.0f / static_cast<float>(R));
    case ReduceOp::Max: return reduceMiddle<MaxOp>(x, out, outer, R, inner, 1.0f);
    case ReduceOp::Min: return reduceMiddle<MinOp>(x, out, outer, R, inner, 1.0f);
  }
}

void softmax(const float* x, float* out, int64_t rows, int64_t cols) {
  pool().parallelFor(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const float* __restrict src = x + r * cols;
      float* __restrict dst = out + r * cols;
      const float m = reduceRow<MaxOp>(src, cols);
      for (int64_t c = 0; c < cols; c++) dst[c] = fastExp(src[c] - m);
      const float inv = 1.0f / reduceRow<SumOp>(dst, cols);
      for (int64_t c = 0; c < cols; c++) dst[c] *= inv;
    }
  });
}

double sumOfSquares(const float* x, int64_t n) {
  // Per-part partial sums in float lanes over blocks of kGrain, accumulated in double: a norm over
  // millions of elements keeps float32 accuracy without a double per element.
  std::vector<double> partials(pool().size(), 0.0);
  std::atomic<int> next{0};
  pool().parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    double acc = 0.0;
    for (int64_t i = begin; i < end; i += kGrain) {
      const int64_t stop = std::min(end, i + kGrain);
      acc += dot(x + i, x + i, stop - i);
    }
    partials[next.fetch_add(1)] = acc;
  });
  double total = 0.0;
  for (double p : partials) total += p;
  return total;
}

}  // namespace patchlm
