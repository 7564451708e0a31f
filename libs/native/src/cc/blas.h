// The few OpenBLAS calls the addon makes outside GEMM, and whether OpenBLAS is there at all.
// Without OpenBLAS (scripts/blas.cjs found none, or PATCHLM_NO_OPENBLAS=1 at build time) the addon
// is built with PATCHLM_NO_OPENBLAS, on our own GEMM (sgemm.h) alone.
#pragma once

#ifndef PATCHLM_NO_OPENBLAS
#include <cblas.h>
#endif

namespace patchlm::blas {

#ifdef PATCHLM_NO_OPENBLAS
constexpr bool kAvailable = false;
inline int threads() { return 1; }
inline void setThreads(int) {}
inline const char* config() { return "none"; }
inline const char* core() { return "none"; }
#else
constexpr bool kAvailable = true;
inline int threads() { return openblas_get_num_threads(); }
inline void setThreads(int n) { openblas_set_num_threads(n); }
inline const char* config() { return openblas_get_config(); }
inline const char* core() { return openblas_get_corename(); }
#endif

}  // namespace patchlm::blas
