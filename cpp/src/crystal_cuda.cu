// CUDA density-grid kernels (see xstructure/crystal.hpp): one thread per (structure, atom) scattering its
// Gaussian into the grid with atomics (float64 accumulation for float64 grids); the backward pass gathers per
// atom, no atomics.  The grid walk and the Gaussian are crystal_grid.hpp's, the same code as the CPU kernels.
// (Structure factors have no CUDA kernel: xstructure.crystal builds their inputs on the host.)
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "xstructure/crystal.hpp"
#include "xstructure/crystal_grid.hpp"

namespace xstructure {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("crystal (CUDA) ") + what + ": " + cudaGetErrorString(e));
}

template <typename T>
__global__ void density_kernel(DensityProblem p, grid::GridGeometry gg, const T* pos, T* rho) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= p.B * p.N) return;
    const int64_t b = i / p.N, j = i % p.N;
    const int64_t G = p.n0 * p.n1 * p.n2;
    double r[3];
    grid::load_position(pos + 3 * i, r);
    const double w = p.weight[j];
    T* out = rho + b * G;
    grid::visit(p, gg, r, p.sigma[j], [&](int64_t idx, double, double, double, double g) {
        atomicAdd(out + idx, static_cast<T>(w * g));
    });
}

template <typename T>
__global__ void density_backward_kernel(DensityProblem p, grid::GridGeometry gg, const T* pos, const T* grad_rho,
                                        T* grad_pos) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= p.B * p.N) return;
    const int64_t b = i / p.N, j = i % p.N;
    const int64_t G = p.n0 * p.n1 * p.n2;
    double r[3], acc[3];
    grid::load_position(pos + 3 * i, r);
    grid::atom_gradient(p, gg, r, p.weight[j], p.sigma[j], grad_rho + b * G, acc);
    for (int k = 0; k < 3; ++k) grad_pos[3 * i + k] = static_cast<T>(acc[k]);
}

double host_max_sigma(const DensityProblem& p) {
    // sigma lives in device memory: copy it once to find the largest
    if (p.N == 0) return 0.0;
    double* host = new double[p.N];
    check(cudaMemcpy(host, p.sigma, sizeof(double) * p.N, cudaMemcpyDeviceToHost), "copy sigma");
    double m = 0.0;
    for (int64_t j = 0; j < p.N; ++j) m = host[j] > m ? host[j] : m;
    delete[] host;
    return m;
}

int blocks(int64_t n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

}  // namespace

template <typename T>
void density_grid_cuda(const DensityProblem& p, const T* pos, T* rho, void* stream) {
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    check(cudaMemsetAsync(rho, 0, sizeof(T) * p.B * p.n0 * p.n1 * p.n2, st), "memset");
    if (p.B * p.N == 0) return;
    const grid::GridGeometry gg = grid::grid_geometry(p, host_max_sigma(p));
    density_kernel<T><<<blocks(p.B * p.N, 128), 128, 0, st>>>(p, gg, pos, rho);
    check(cudaGetLastError(), "density grid");
}

template <typename T>
void density_grid_backward_cuda(const DensityProblem& p, const T* pos, const T* grad_rho, T* grad_pos, void* stream) {
    if (p.B * p.N == 0) return;
    const grid::GridGeometry gg = grid::grid_geometry(p, host_max_sigma(p));
    density_backward_kernel<T><<<blocks(p.B * p.N, 128), 128, 0, static_cast<cudaStream_t>(stream)>>>(p, gg, pos,
                                                                                                    grad_rho, grad_pos);
    check(cudaGetLastError(), "density grid backward");
}

template void density_grid_cuda<float>(const DensityProblem&, const float*, float*, void*);
template void density_grid_cuda<double>(const DensityProblem&, const double*, double*, void*);
template void density_grid_backward_cuda<float>(const DensityProblem&, const float*, const float*, float*, void*);
template void density_grid_backward_cuda<double>(const DensityProblem&, const double*, const double*, double*, void*);

}  // namespace xstructure
