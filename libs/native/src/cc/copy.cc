// Data movement on 4-byte elements (float32 and int32 alike): strided block copies (slice,
// concat, transpose, pad, tile), gather and scatter-add.
#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "pool.h"
#include "strided.h"

namespace patchlm {
namespace {
constexpr int64_t kGrain = 16384;
}

void stridedCopy(const int32_t* src, int32_t* dst, int rank, const int32_t* shape, const int64_t* srcStrides,
                 const int64_t* dstStrides) {
  const int64_t inner = shape[rank - 1];
  const int64_t si = srcStrides[rank - 1];
  const int64_t di = dstStrides[rank - 1];
  int64_t outer = 1;
  for (int d = 0; d < rank - 1; d++) outer *= shape[d];
  if (outer * inner == 0) return;
  const int64_t* const strides[2] = {srcStrides, dstStrides};
  pool().parallelFor(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t begin, int64_t end) {
    forEachRow<2>(begin, end, rank, shape, strides, [&](int64_t, const int64_t* offsets) {
      const int32_t* __restrict s = src + offsets[0];
      int32_t* __restrict t = dst + offsets[1];
      if (si == 1 && di == 1) {
        std::memcpy(t, s, sizeof(int32_t) * inner);
      } else {
        for (int64_t i = 0; i < inner; i++) t[i * di] = s[i * si];
      }
    });
  });
}

void gather(const int32_t* x, const int32_t* indices, int32_t* out, int64_t outer, int64_t axisSize, int64_t inner,
            int64_t n) {
  pool().parallelFor(outer * n, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; u++) {
      const int64_t o = u / n;
      const int64_t i = u % n;
      std::memcpy(out + u * inner, x + (o * axisSize + indices[i]) * inner, sizeof(int32_t) * inner);
    }
  });
}

void scatterAdd(const float* updates, const int32_t* rowIds, float* out, int64_t rows, int64_t inner, int64_t n) {
  // Threads own disjoint column ranges, so duplicate row ids never race. One range per thread
  // (at least 16 columns): narrower ranges each walked all n rows again, a cache line per row of
  // updates and of out (the patch embedding's gradient, 8,192 rows of 256, took 3.7 ms).
  const int64_t threads = std::max<int64_t>(1, pool().size());
  const int64_t chunk = std::min<int64_t>(inner, std::max<int64_t>(16, ((inner + threads - 1) / threads + 15) / 16 * 16));
  const int64_t chunks = (inner + chunk - 1) / chunk;
  pool().parallelFor(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; u++) {
      const int64_t c0 = u * chunk;
      const int64_t c1 = std::min(inner, c0 + chunk);
      for (int64_t i = 0; i < n; i++) {
        const int64_t r = rowIds[i];
        if (r < 0 || r >= rows) continue;
        float* __restrict dst = out + r * inner;
        const float* __restrict src = updates + i * inner;
        for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
      }
    }
  });
}

}  // namespace patchlm
