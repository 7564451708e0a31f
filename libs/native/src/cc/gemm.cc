#include "blas.h"
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "sgemm.h"

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

namespace {
// -1: OpenBLAS (the default); otherwise the GemmIsa of our own kernels (PATCHLM_GEMM=own, or a
// build without OpenBLAS).
int ownIsa = blas::kAvailable ? -1 : static_cast<int>(gemmBestIsa());
// bf16 mixed precision: every product through gemmBf16, whichever fp32 GEMM is chosen.
bool bf16 = false;

// How gemmBatched spreads a batch over the pool, for either GEMM: product(m, n, a, b, c) computes
// an m×n block of one item's C (row stride N) from op(A)'s rows at `a` and op(B)'s columns at `b`,
// single-threaded; alone(fn) runs fn with the GEMM's own threading off. `parallel`: whether the
// pool may split at all; blocks of C are `rowUnit` rows or `colUnit` columns (register-block
// multiples).
template <class Product, class Alone>
void splitBatched(const float* a, const float* b, float* out, int64_t M, int64_t N, int64_t K, bool transA, bool transB,
                  const int32_t* aOffsets, const int32_t* bOffsets, int64_t batch, bool parallel, int64_t rowUnit,
                  int64_t colUnit, Product product, Alone alone) {
  const int64_t lda = transA ? M : K;
  const int64_t ldb = transB ? K : N;
  auto item = [&](int64_t i) { product(M, N, a + aOffsets[i], b + bOffsets[i], out + i * M * N); };
  const int threads = pool().size();
  // A batch of small products (attention heads) splits across threads by item, each product
  // single-threaded: OpenBLAS would otherwise fork and join its threads inside every small call.
  if (threads > 1 && batch >= threads && M * N * K <= kSmallGemm && parallel && parallelBatches()) {
    alone([&] {
      pool().parallelFor(batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++) item(i);
      });
    });
    return;
  }
  if (threads > 1 && parallel && M * N * K >= kSplitGemm) {
    // Each product split into one block of C per pool thread, each block a single-threaded
    // product: OpenBLAS's own threads would otherwise spin between products while the pool runs
    // the elementwise kernels, two thread teams fighting over the same cores.
    alone([&] {
      const bool byRows = M >= N;
      const int64_t extent = byRows ? M : N;
      const int64_t unit = byRows ? rowUnit : colUnit;
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
            product(to - from, N, ai + (transA ? from : from * lda), bi, ci + from * N);
          } else {
            product(M, to - from, ai, bi + (transB ? from * ldb : from), ci + from);
          }
        });
      }
    });
    return;
  }
  for (int64_t i = 0; i < batch; i++) item(i);
}
}  // namespace

bool setOwnGemm(int isa) {
  if (isa < 0) {
    if (!blas::kAvailable) return false;
    ownIsa = -1;
    return true;
  }
  if (isa > static_cast<int>(GemmIsa::Neon) || !gemmIsaSupported(static_cast<GemmIsa>(isa))) return false;
  ownIsa = isa;
  return true;
}

int ownGemm() { return ownIsa; }

bool setBf16Matmuls(bool on) {
  if (on && !bf16GemmSupported()) return false;
  bf16 = on;
  return true;
}

bool bf16Matmuls() { return bf16; }

void gemmSingle(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (bf16) {
    gemmBf16(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#ifndef PATCHLM_NO_OPENBLAS
  if (ownIsa < 0) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
                static_cast<int>(ldc));
    return;
  }
#endif
  sgemm(static_cast<GemmIsa>(ownIsa), transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace {
// Long-K products with a small C (the weight gradients xᵀ·dy: C×C or C×F against K = B·T rows)
// split K in two halves instead of C: split by rows, every thread would pack all of op(B) from
// memory (2 MB of fp32 per thread for 256×256×2048), which costs more than its share of the
// arithmetic; split by K, each thread packs its half of each operand. The halves are fixed by the
// shape alone and summed in one order, so the result does not depend on the thread count (one
// product only: a batch keeps the split by item, or by blocks of C).
bool splitsK(int64_t M, int64_t N, int64_t K, int64_t batch) {
  return batch == 1 && K >= 2 * std::max(M, N) && M * N <= (int64_t{1} << 20) && M * N * K >= kSplitGemm;
}

// out (M×N) = op(a)·op(b) as the sum of two half-K products (the first K rounded to 16), each
// split further by rows of C across the pool's threads (units of `rowUnit` rows).
void productSplitK(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* out,
                   int64_t rowUnit) {
  const int64_t lda = transA ? M : K;
  const int64_t ldb = transB ? K : N;
  const int64_t half = std::min(K, (K / 2 + 15) / 16 * 16);
  // The calling thread's buffer, named by pointer: inside the lambda a thread_local would be
  // each worker's own (empty) one.
  thread_local std::vector<float> secondBuffer;
  secondBuffer.resize(static_cast<size_t>(M * N));
  float* second = secondBuffer.data();
  const int64_t units = (M + rowUnit - 1) / rowUnit;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(units, pool().size() / 2));
  pool().parallelFor(2 * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const int64_t part = t / blocks, block = t % blocks;
      const int64_t r0 = std::min(M, units * block / blocks * rowUnit), r1 = std::min(M, units * (block + 1) / blocks * rowUnit);
      if (r0 >= r1) continue;
      const int64_t k0 = part == 0 ? 0 : half, depth = part == 0 ? half : K - half;
      const float* ap = transA ? a + k0 * lda + r0 : a + r0 * lda + k0;
      const float* bp = transB ? b + k0 : b + k0 * ldb;
      float* dst = (part == 0 ? out : second) + r0 * N;
      gemmSingle(transA, transB, r1 - r0, N, depth, 1.0f, ap, lda, bp, ldb, 0.0f, dst, N);
    }
  });
  pool().parallelFor(M * N, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) out[i] += second[i];
  });
}
}  // namespace

void gemmBatched(const float* a, const float* b, float* out, int64_t M, int64_t N, int64_t K, bool transA, bool transB,
                 const int32_t* aOffsets, const int32_t* bOffsets, int64_t batch) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(out, 0, sizeof(float) * M * N * batch);
    return;
  }
  const int64_t lda = transA ? M : K;
  const int64_t ldb = transB ? K : N;
  auto product = [&](int64_t m, int64_t n, const float* ai, const float* bi, float* ci) {
    gemmSingle(transA, transB, m, n, K, 1.0f, ai, lda, bi, ldb, 0.0f, ci, N);
  };
  if (ownIsa >= 0 || bf16) {
    // Blocks of C on the kernel's register-block multiples (the bf16 kernel's are AVX-512's).
    const GemmRegisterBlock block = gemmRegisterBlock(bf16 ? GemmIsa::Avx512 : static_cast<GemmIsa>(ownIsa));
    if (splitsK(M, N, K, batch)) {
      productSplitK(transA, transB, M, N, K, a + aOffsets[0], b + bOffsets[0], out, 4 * block.mr);
      return;
    }
    splitBatched(a, b, out, M, N, K, transA, transB, aOffsets, bOffsets, batch, true, 4 * block.mr, block.nr, product, [](auto fn) { fn(); });
    return;
  }
  const int blasThreads = blas::threads();
  splitBatched(a, b, out, M, N, K, transA, transB, aOffsets, bOffsets, batch, blasThreads > 1, 16, 16, product, [&](auto fn) {
    blas::setThreads(1);
    fn();
    blas::setThreads(blasThreads);
  });
}

}  // namespace patchlm
