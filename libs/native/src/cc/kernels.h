#pragma once

#include <cstdint>

namespace patchlm {

// Row-major batched sgemm with per-item input offsets (batch broadcasting).
void gemmBatched(const float* a, const float* b, float* out, int64_t M, int64_t N, int64_t K, bool transA, bool transB,
                 const int32_t* aOffsets, const int32_t* bOffsets, int64_t batch);

}  // namespace patchlm
