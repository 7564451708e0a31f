// Our own packed, cache-blocked SGEMM (no BLAS), with the micro-kernel picked at run time from
// the CPU's features. Compiled without -march=native (binding.gyp's patchlm_sgemm target): the
// AVX2 and AVX-512 kernels carry per-function target attributes and run only where
// __builtin_cpu_supports says so, so one binary serves every x86-64 CPU; on aarch64 the NEON
// kernel is baseline.
#pragma once

#include <cstdint>

namespace patchlm {

enum class GemmIsa : int { Portable = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

// Every kernel path, fastest first (as Info lists the supported ones).
constexpr GemmIsa kGemmIsas[] = {GemmIsa::Avx512, GemmIsa::Avx2, GemmIsa::Neon, GemmIsa::Portable};

// "portable", "avx2", "avx512", "neon".
const char* gemmIsaName(GemmIsa isa);

// The micro-kernel's tile of C: mr rows × nr columns.
struct GemmRegisterBlock {
  int64_t mr, nr;
};
GemmRegisterBlock gemmRegisterBlock(GemmIsa isa);
// Whether this CPU runs the kernel (portable: always).
bool gemmIsaSupported(GemmIsa isa);
// The fastest kernel this CPU runs.
GemmIsa gemmBestIsa();

// C (M×N, row stride ldc) = alpha·op(A)·op(B) + beta·C, row-major, on the calling thread only.
// op(A) is M×K (A is K×M with transA), op(B) is K×N (B is N×K with transB). beta == 0 never
// reads C (it may hold NaN). Any sizes, including 0. The ISA must be supported.
void sgemm(GemmIsa isa, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Whether this CPU runs gemmBf16 (AVX512_BF16, AVX-512F and AVX-512BW).
bool bf16GemmSupported();

// As sgemm, with op(A) and op(B) rounded to bf16 (to nearest, ties to even; fp32 denormals to
// zero, as VCVTNE2PS2BF16 does) as they are packed,
// and the products accumulated in fp32 by VDPBF16PS: the matmul of bf16 mixed precision. C, alpha
// and beta stay fp32. Only where bf16GemmSupported().
void gemmBf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace patchlm
