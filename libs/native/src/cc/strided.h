// Iteration over the rows of a coalesced strided shape, shared by the elementwise and copy kernels.
#pragma once

#include <cstdint>

namespace patchlm {

constexpr int kMaxRank = 8;

// For rows [begin, end) of `shape` without its last dim, call body(row, offsets) where offsets[k]
// is operand k's element offset of that row (Σ index·strides[k][d]). The offsets advance like an
// odometer, so each row costs O(1) instead of a division per dim.
template <int Operands, class Body>
void forEachRow(int64_t begin, int64_t end, int rank, const int32_t* shape, const int64_t* const (&strides)[Operands],
                Body body) {
  int64_t index[kMaxRank] = {0};
  int64_t offsets[Operands] = {0};
  int64_t rest = begin;
  for (int d = rank - 2; d >= 0; d--) {
    index[d] = rest % shape[d];
    rest /= shape[d];
    for (int k = 0; k < Operands; k++) offsets[k] += index[d] * strides[k][d];
  }
  for (int64_t row = begin; row < end; row++) {
    body(row, offsets);
    for (int d = rank - 2; d >= 0; d--) {
      for (int k = 0; k < Operands; k++) offsets[k] += strides[k][d];
      if (++index[d] < shape[d]) break;
      for (int k = 0; k < Operands; k++) offsets[k] -= strides[k][d] * shape[d];
      index[d] = 0;
    }
  }
}

}  // namespace patchlm
