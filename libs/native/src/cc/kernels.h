#pragma once

#include <cstdint>

namespace patchlm {

// Row-major batched sgemm with per-item input offsets (batch broadcasting).
void gemmBatched(const float* a, const float* b, float* out, int64_t M, int64_t N, int64_t K, bool transA, bool transB,
                 const int32_t* aOffsets, const int32_t* bOffsets, int64_t batch);

// Our own GEMM (sgemm.h) instead of OpenBLAS for gemmBatched and the attention kernels: isa is a
// GemmIsa, or -1 for OpenBLAS (the default). False, and no change, when the CPU lacks the ISA.
bool setOwnGemm(int isa);
// The GemmIsa in use, or -1 for OpenBLAS.
int ownGemm();
// bf16 mixed precision for every product of gemmBatched and the attention kernels (sgemm.h's
// gemmBf16); false, with no change, when this CPU lacks AVX512_BF16.
bool setBf16Matmuls(bool on);
bool bf16Matmuls();

// C (M×N) = alpha·op(A)·op(B) + beta·C, row-major, on the calling thread, on whichever GEMM is
// selected (OpenBLAS: whatever its own thread setting is).
void gemmSingle(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Whether gemmBatched may split small batched products across the pool (default on).
void setBatchParallel(bool on);

// The numbering is shared with src/internal/ops.ts.
enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2, Div = 3, Max = 4, Min = 5, SquaredDifference = 6 };
enum class UnaryOp : int {
  Exp = 0, Log = 1, Neg = 2, Sqrt = 3, Rsqrt = 4, Square = 5, Sigmoid = 6, Abs = 7, Relu = 8, Reciprocal = 9, Tanh = 10,
  Scale = 11,
};
enum class ReduceOp : int { Sum = 0, Max = 1, Min = 2, Mean = 3 };

// out = a op b over a coalesced broadcast shape (rank <= kMaxRank); strides in elements, 0 = broadcast.
void binary(BinaryOp op, const float* a, const float* b, float* out, int rank, const int32_t* shape,
            const int64_t* aStrides, const int64_t* bStrides);

void unary(UnaryOp op, const float* x, float* out, int64_t n, float alpha);

// x viewed as (outer, R, inner) -> out (outer, inner).
void reduce(ReduceOp op, const float* x, float* out, int64_t outer, int64_t R, int64_t inner);

// Softmax over the rows of x (rows, cols).
void softmax(const float* x, float* out, int64_t rows, int64_t cols);

// Copy a strided block of 4-byte elements: dst[dOff + Σ i·dStrides] = src[sOff + Σ i·sStrides].
void stridedCopy(const int32_t* src, int32_t* dst, int rank, const int32_t* shape, const int64_t* srcStrides,
                 const int64_t* dstStrides);

// out (outer, n, inner) = x (outer, axisSize, inner) rows picked by indices (n).
void gather(const int32_t* x, const int32_t* indices, int32_t* out, int64_t outer, int64_t axisSize, int64_t inner,
            int64_t n);

// out (rows, inner) += updates (n, inner) at rows[i]; rows outside [0, rows) are skipped.
void scatterAdd(const float* updates, const int32_t* rowIds, float* out, int64_t rows, int64_t inner, int64_t n);

struct AdamWParams {
  float beta1, beta2, c1, c2, eps, invSqrtBc2, shrink, stepSize;
};

// m' = β1·m + c1·g, v' = β2·v + c2·g², p' = p·shrink − m'/(√v'·invSqrtBc2 + ε)·stepSize.
void adamw(const float* p, const float* m, const float* v, const float* g, float* pOut, float* mOut, float* vOut, int64_t n,
           const AdamWParams& h);

// RMSNorm over the rows of x (rows, cols) with gain (cols): y = x·rsqrt(mean(x²) + eps)·gain.
void rmsNorm(const float* x, const float* gain, float* y, int64_t rows, int64_t cols, float eps);
void rmsNormGrad(const float* dy, const float* x, const float* gain, float* dx, float* dgain, int64_t rows, int64_t cols,
                 float eps);

// SwiGLU's gate: y = silu(gate)·up, and its gradient.
void swiglu(const float* gate, const float* up, float* y, int64_t n);
void swigluGrad(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n);

// Causal attention with H query heads over Hkv key/value heads (head h reads kv head h / (H/Hkv)):
// q, o (B,H,T,D); k, v (B,Hkv,T,D), or with seqMajor q, o (B,T,H,D) and k, v (B,T,Hkv,D);
// lse (B,H,T) is each query row's logsumexp of its scaled scores. Gradients share their input's layout.
void causalAttention(const float* q, const float* k, const float* v, float* o, float* lse, int64_t B, int64_t H, int64_t Hkv,
                     int64_t T, int64_t D, float scale, bool seqMajor);
void causalAttentionGrad(const float* dout, const float* q, const float* k, const float* v, const float* o,
                         const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t H, int64_t Hkv, int64_t T,
                         int64_t D, float scale, bool seqMajor);

// Rotary embedding of x (B,T,heads,D) with tables cos, sin (T,D), "rotate half" convention:
//   y[d] = x[d]·cos[d] − x[d+D/2]·sin[d],  y[d+D/2] = x[d+D/2]·cos[d+D/2] + x[d]·sin[d+D/2];
// with transpose, the adjoint map (the gradient): dx[d] = dy[d]·cos[d] + dy[d+D/2]·sin[d+D/2],
// dx[d+D/2] = dy[d+D/2]·cos[d+D/2] − dy[d]·sin[d].
void rope(const float* x, const float* cos, const float* sin, float* y, int64_t B, int64_t T, int64_t heads, int64_t D,
          bool transpose);

// Weighted cross-entropy over rows of logits z (R, V) with K targets t and weights w per row:
// returns Σ_rk w_rk·(lse_r − z_r[t_rk]) and fills lse (R); the gradient scales by dy.
double weightedCrossEntropy(const float* z, const int32_t* t, const float* w, float* lse, int64_t R, int64_t V, int64_t K);
void weightedCrossEntropyGrad(float dy, const float* z, const int32_t* t, const float* w, const float* lse, float* dz,
                              int64_t R, int64_t V, int64_t K);

// Σ x² over n elements (float partial sums per block, accumulated in double).
double sumOfSquares(const float* x, int64_t n);

// FP32 GFLOP/s of register-only FMA chains on every pool thread, best of repeated runs over
// about `seconds`.
double peakGflops(double seconds);

}  // namespace patchlm
