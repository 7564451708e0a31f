#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "pool.h"

namespace patchlm {

namespace {
// M·N·K of a 512³ product: below it, one product per thread beats OpenBLAS's threading.
constexpr int64_t kSmallGemm = int64_t{512} * 512 * 512;
bool batchParallel = true;
bool parallelBatches() { return batchParallel; }
// Below this M·N·K a product runs on the calling thread alone (fork-join would cost more).
constexpr int64_t kSplitGemm = int64_t{64} * 64 * 64;
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
  if (threads > 1 && blasThreads > 1 && M * N * K >= kSplitGemm) {
    // Each product split into one block of C per pool thread, each block a single-threaded
    // sgemm: OpenBLAS's own threads would otherwise spin between products while the pool runs
    // the elementwise kernels, two thread teams fighting over the same cores.
    openblas_set_num_threads(1);
    const bool byRows = M >= N;
    const int64_t extent = byRows ? M : N;
    const int64_t unit = 16;  // block edges on the kernels' register-block multiples
    const int64_t units = (extent + unit - 1) / unit;
    for (int64_t i = 0; i < batch; i++) {
      const float* ai = a + aOffsets[i];
      const float* bi = b + bOffsets[i];
      float* ci = out + i * M * N;
      pool().parallelFor(units, 1, [&](int64_t begin, int64_t end) {
        const int64_t from = begin * unit;
        const int64_t to = std::min(extent, end * unit);
        if (byRows) {
          // rows from..to of C take rows from..to of op(A): row offsets of A, or column offsets of Aᵀ
          cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                      static_cast<int>(to - from), static_cast<int>(N), static_cast<int>(K), 1.0f,
                      ai + (transA ? from : from * lda), lda, bi, ldb, 0.0f, ci + from * N, static_cast<int>(N));
        } else {
          cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                      static_cast<int>(M), static_cast<int>(to - from), static_cast<int>(K), 1.0f, ai, lda,
                      bi + (transB ? from * ldb : from), ldb, 0.0f, ci + from, static_cast<int>(N));
        }
      });
    }
    openblas_set_num_threads(blasThreads);
    return;
  }
  for (int64_t i = 0; i < batch; i++) item(i);
}

}  // namespace patchlm
