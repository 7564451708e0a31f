// Elementwise kernels: binary ops with NumPy broadcasting over a coalesced shape (computed in
// TypeScript), and unary ops. Inner loops are specialised for the stride patterns that occur
// (both contiguous, one side broadcast) so that GCC vectorises them.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "pool.h"
#include "strided.h"
#include "vecmath.h"

namespace patchlm {
namespace {

// Elements per task: below this, threading costs more than it saves.
constexpr int64_t kGrain = 16384;

struct Add { static float f(float a, float b) { return a + b; } };
struct Sub { static float f(float a, float b) { return a - b; } };
struct Mul { static float f(float a, float b) { return a * b; } };
struct Div { static float f(float a, float b) { return a / b; } };
// tfjs (and TensorFlow) propagate NaN through maximum/minimum.
struct Max { static float f(float a, float b) { return (a != a || b != b) ? NAN : (a > b ? a : b); } };
struct Min { static float f(float a, float b) { return (a != a || b != b) ? NAN : (a < b ? a : b); } };
struct SqDiff { static float f(float a, float b) { return (a - b) * (a - b); } };

template <class Op>
inline void innerLoop(const float* __restrict a, int64_t as, const float* __restrict b, int64_t bs, float* __restrict out,
                      int64_t n) {
  if (as == 1 && bs == 1) {
    for (int64_t i = 0; i < n; i++) out[i] = Op::f(a[i], b[i]);
  } else if (as == 0 && bs == 1) {
    const float av = a[0];
    for (int64_t i = 0; i < n; i++) out[i] = Op::f(av, b[i]);
  } else if (as == 1 && bs == 0) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; i++) out[i] = Op::f(a[i], bv);
  } else {
    for (int64_t i = 0; i < n; i++) out[i] = Op::f(a[i * as], b[i * bs]);
  }
}

template <class Op>
void binaryStrided(const float* a, const float* b, float* out, int rank, const int32_t* shape, const int64_t* aStrides,
                   const int64_t* bStrides) {
  const int64_t inner = shape[rank - 1];
  int64_t outer = 1;
  for (int d = 0; d < rank - 1; d++) outer *= shape[d];
  const int64_t* const strides[2] = {aStrides, bStrides};
  pool().parallelFor(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t begin, int64_t end) {
    forEachRow<2>(begin, end, rank, shape, strides, [&](int64_t row, const int64_t* offsets) {
      innerLoop<Op>(a + offsets[0], aStrides[rank - 1], b + offsets[1], bStrides[rank - 1], out + row * inner, inner);
    });
  });
}

template <class F>
void unaryLoop(const float* __restrict x, float* __restrict out, int64_t n, F f) {
  pool().parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) out[i] = f(x[i]);
  });
}

}  // namespace

void binary(BinaryOp op, const float* a, const float* b, float* out, int rank, const int32_t* shape,
            const int64_t* aStrides, const int64_t* bStrides) {
  switch (op) {
    case BinaryOp::Add: return binaryStrided<Add>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::Sub: return binaryStrided<Sub>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::Mul: return binaryStrided<Mul>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::Div: return binaryStrided<Div>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::Max: return binaryStrided<Max>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::Min: return binaryStrided<Min>(a, b, out, rank, shape, aStrides, bStrides);
    case BinaryOp::SquaredDifference: return binaryStrided<SqDiff>(a, b, out, rank, shape, aStrides, bStrides);
  }
}

void unary(UnaryOp op, const float* x, float* out, int64_t n, float alpha) {
  switch (op) {
    case UnaryOp::Exp: return unaryLoop(x, out, n, [](float v) { return fastExp(v); });
    case UnaryOp::Log: return unaryLoop(x, out, n, [](float v) { return std::log(v); });
    case UnaryOp::Neg: return unaryLoop(x, out, n, [](float v) { return -v; });
    case UnaryOp::Sqrt: return unaryLoop(x, out, n, [](float v) { return std::sqrt(v); });
    case UnaryOp::Rsqrt: return unaryLoop(x, out, n, [](float v) { return 1.0f / std::sqrt(v); });
    case UnaryOp::Square: return unaryLoop(x, out, n, [](float v) { return v * v; });
    case UnaryOp::Sigmoid: return unaryLoop(x, out, n, [](float v) { return fastSigmoid(v); });
    case UnaryOp::Abs: return unaryLoop(x, out, n, [](float v) { return std::fabs(v); });
    case UnaryOp::Relu: return unaryLoop(x, out, n, [](float v) { return v != v ? v : (v > 0.0f ? v : 0.0f); });
    case UnaryOp::Reciprocal: return unaryLoop(x, out, n, [](float v) { return 1.0f / v; });
    case UnaryOp::Tanh: return unaryLoop(x, out, n, [](float v) { return std::tanh(v); });
    case UnaryOp::Scale: return unaryLoop(x, out, n, [alpha](float v) { return v * alpha; });
  }
}

}  // namespace patchlm
