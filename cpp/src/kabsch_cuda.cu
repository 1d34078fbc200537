// Batched Kabsch RMSD on the GPU: one thread per pair, the same per-pair code as the CPU (kabsch.hpp).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "xstructure/kabsch.hpp"

namespace xstructure {
namespace {

template <typename T>
__global__ void rmsd_kernel(RmsdProblem p, const T* a, const T* b, T* rmsd, T* R, T* t) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= p.B) return;
    double msd, Rk[9], ca[3], cb[3];
    kabsch_pair(p, a + k * p.a_stride, b + k * p.b_stride, &msd, Rk, ca, cb, R != nullptr || t != nullptr);
    store_pair(k, msd, Rk, ca, cb, rmsd, R, t);
}

template <typename T>
__global__ void rmsd_backward_kernel(RmsdProblem p, const T* a, const T* b, const T* g, T* ga, T* gb) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= p.B) return;
    double msd, Rk[9], ca[3], cb[3];
    const T* ak = a + k * p.a_stride;
    const T* bk = b + k * p.b_stride;
    kabsch_pair(p, ak, bk, &msd, Rk, ca, cb);
    kabsch_pair_grad(p, ak, bk, static_cast<double>(g[k]), msd, Rk, ca, cb, ga + k * 3 * p.N, gb + k * 3 * p.N);
}

void check(const char* what) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

}  // namespace

template <typename T>
void kabsch_rmsd_cuda(const RmsdProblem& p, const T* a, const T* b, T* rmsd, T* R, T* t, void* stream) {
    if (p.B == 0) return;
    const int threads = 128;
    const int64_t blocks = (p.B + threads - 1) / threads;
    rmsd_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(p, a, b, rmsd,
                                                                                                      R, t);
    check("xstructure kabsch rmsd (CUDA)");
}

template <typename T>
void kabsch_rmsd_backward_cuda(const RmsdProblem& p, const T* a, const T* b, const T* g, T* ga, T* gb,
                               void* stream) {
    if (p.B == 0) return;
    const int threads = 128;
    const int64_t blocks = (p.B + threads - 1) / threads;
    rmsd_backward_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
        p, a, b, g, ga, gb);
    check("xstructure kabsch rmsd backward (CUDA)");
}

template void kabsch_rmsd_cuda<float>(const RmsdProblem&, const float*, const float*, float*, float*, float*, void*);
template void kabsch_rmsd_cuda<double>(const RmsdProblem&, const double*, const double*, double*, double*, double*,
                                       void*);
template void kabsch_rmsd_backward_cuda<float>(const RmsdProblem&, const float*, const float*, const float*, float*,
                                               float*, void*);
template void kabsch_rmsd_backward_cuda<double>(const RmsdProblem&, const double*, const double*, const double*,
                                                double*, double*, void*);

}  // namespace xstructure
