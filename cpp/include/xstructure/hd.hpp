// Code shared by the CPU and CUDA kernels: one definition of the per-element arithmetic, compiled for the host
// by the C++ compiler and for the device by nvcc, so that the CPU tests exercise what the GPU runs.
//
// XS_HD marks a shared free function or function template: __host__ __device__ under nvcc, and always `static
// inline`.  Internal linkage matters for the CPU kernels that are compiled twice, once for the baseline
// instruction set and once with -mavx2 -mfma (the *_kernels.inc and *_block.inc files): with external linkage
// the linker keeps a single out-of-line copy of an inline function for the whole library, which could be the
// AVX2 one, reached from the baseline path.  Static, each translation unit keeps its own.
// XS_HD_MEMBER is the same for member functions (which cannot be static); use them only from files built once.
#pragma once

#include <math.h>

#ifdef __CUDACC__
#define XS_HD static __host__ __device__ inline
#define XS_HD_MEMBER __host__ __device__ inline
#else
#define XS_HD static inline
#define XS_HD_MEMBER inline
#endif

namespace xstructure {
namespace hd {

// Elementary functions overloaded on float and double, host and device (the C library names are
// double-only on the host; CUDA's sincos intrinsics exist only on the device).
XS_HD float sqrt_t(float x) { return sqrtf(x); }
XS_HD double sqrt_t(double x) { return sqrt(x); }
XS_HD float sin_t(float x) { return sinf(x); }
XS_HD double sin_t(double x) { return sin(x); }
XS_HD void sincos_t(float x, float* s, float* c) {
#ifdef __CUDA_ARCH__
    sincosf(x, s, c);
#else
    *s = sinf(x);
    *c = cosf(x);
#endif
}
XS_HD void sincos_t(double x, double* s, double* c) {
#ifdef __CUDA_ARCH__
    sincos(x, s, c);
#else
    *s = sin(x);
    *c = cos(x);
#endif
}

}  // namespace hd
}  // namespace xstructure
