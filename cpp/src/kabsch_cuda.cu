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
    rmsd[k] = static_cast<T>(msd < 0.0 ? 0.0 : sqrt(msd));  // NaN propagates
    if (R) for (int i = 0; i < 9; ++i) R[9 * k + i] = static_cast<T>(Rk[i]);
    if (t)
        for (int r = 0; r < 3; ++r)
            t[3 * k + r] = static_cast<T>(cb[r] - (Rk[3 * r] * ca[0] + Rk[3 * r + 1] * ca[1] + Rk[3 * r + 2] * ca[2]));
}

template <typename T>
__global__ void rmsd_backward_kernel(RmsdProblem p, const T* a, const T* b, const T* g, T* ga, T* gb) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= p.B) return;
    double msd, Rk[9], ca[3], cb[3];
    const T* ak = a + k * p.a_stride;
    const T* bk = b + k * p.b_stride;
    kabsch_pair(p, ak, bk, &msd, Rk, ca, cb);
    // write per-atom gradients straight out (no scratch): recompute d per atom
    const int64_t N = p.N;
    double W = 0.0, G = 0.0;
    for (int64_t i = 0; i < N; ++i) {
        const double w = p.weights ? p.weights[i] : 1.0;
        W += w;
        for (int c = 0; c < 3; ++c) {
            const double x = static_cast<double>(ak[3 * i + c]) - ca[c], y = static_cast<double>(bk[3 * i + c]) - cb[c];
            G += w * (x * x + y * y);
        }
    }
    const double r = sqrt(msd > 0.0 ? msd : 0.0);
    const double f = (r > 1e-12 * sqrt(G / W)) ? static_cast<double>(g[k]) / (W * r) : 0.0;  // as kabsch_pair_grad
    for (int64_t i = 0; i < N; ++i) {
        const double w = (p.weights ? p.weights[i] : 1.0) * f;
        double x[3], y[3], d[3];
        for (int c = 0; c < 3; ++c) {
            x[c] = static_cast<double>(ak[3 * i + c]) - ca[c];
            y[c] = static_cast<double>(bk[3 * i + c]) - cb[c];
        }
        for (int rr = 0; rr < 3; ++rr) d[rr] = Rk[3 * rr] * x[0] + Rk[3 * rr + 1] * x[1] + Rk[3 * rr + 2] * x[2] - y[rr];
        for (int c = 0; c < 3; ++c) {
            ga[(k * N + i) * 3 + c] = static_cast<T>(w * (Rk[c] * d[0] + Rk[3 + c] * d[1] + Rk[6 + c] * d[2]));
            gb[(k * N + i) * 3 + c] = static_cast<T>(-w * d[c]);
        }
    }
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
