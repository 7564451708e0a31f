#include <cblas.h>

#include <cstring>

#include "kernels.h"
#include "pool.h"

namespace patchlm {

namespace {
// M·N·K of a 512³ product: below it, one product per thread beats OpenBLAS's threading.
constexpr int64_t kSmallGemm = int64_t{512} * 512 * 512;
bool batchParallel = true;
bool parallelBatches() { return batchParallel; }
}  // namespace

void setBatchParallel(bool on) { batchParallel = on; }

void gemmBatched(const float* a, const float* b, float* out, int64_t M, int64_t N, int64_t K, bool transA, bool transB,
                 const int32_t* aOffsets, const int32_t* bOffsets, int64_t batch) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(out, 0, sizeof(float) * M * N * batch);
    return;
  }
  const int lda = static_cast<int>(transA ? M : K);
  const int ldb = static_cast<int>(transB ? K : N);
  auto item = [&](int64_t i) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, a + aOffsets[i], lda,
                b + bOffsets[i], ldb, 0.0f, out + i * M * N, static_cast<int>(N));
  };
  const int threads = pool().size();
  const int blasThreads = openblas_get_num_threads();
  // A batch of small products (attention heads) splits across threads by item, each product
  // single-threaded: OpenBLAS would otherwise fork and join its threads inside every small call.
  if (threads > 1 && batch >= threads && M * N * K <= kSmallGemm && blasThreads > 1 && parallelBatches()) {
    openblas_set_num_threads(1);
    pool().parallelFor(batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) item(i);
    });
    openblas_set_num_threads(blasThreads);
    return;
  }
  for (int64_t i = 0; i < batch; i++) item(i);
}

}  // namespace patchlm
