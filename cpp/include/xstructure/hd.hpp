// XS_HD marks functions shared by the CPU and CUDA kernels: host and device under nvcc, inline elsewhere.
#pragma once

#ifdef __CUDACC__
#define XS_HD __host__ __device__ inline
#else
#define XS_HD inline
#endif
