// CUDA radial histogram (see xstructure/radial.hpp): batched stacks of frames.
//
// Grid (blocks per frame, frames).  Each block strides over its share of one frame's pixels and adds into
// a float histogram in shared memory (fast native shared atomics), then adds its histogram into the
// frame's float64 output with one atomic per bin.  Maps with more bins than fit in shared memory add
// straight into global memory.  Invalid pixels (rare) go to the removed_* rows with global atomics.  The
// per-pixel arithmetic (validity, bin, weight, variance terms) is radial.hpp's, shared with the CPU kernel.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "xstructure/radial.hpp"

namespace xstructure {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("radial (CUDA) ") + what + ": " + cudaGetErrorString(e));
}

constexpr int kThreads = 256;
constexpr int kSharedFloats = 12 * 1024;  // 48 KiB


template <typename T, typename I, int M, bool SHARED>
__global__ void radial_kernel(int64_t npix, int32_t nbins, const T* __restrict__ frames, const I* __restrict__ index,
                              const double* __restrict__ weight, RadialValidity valid, const double* __restrict__ mean,
                              double* signal, double* var, double* rw, double* rw2, double* rc) {
    extern __shared__ float sh[];
    const int64_t nb1 = nbins + 1;
    const int S = (M == 1) ? 2 : 1;
    const int64_t f = blockIdx.y;
    if (SHARED)
        for (int64_t i = threadIdx.x; i < nb1 * S; i += blockDim.x) sh[i] = 0.f;
    __syncthreads();
    const T* frame = frames + f * npix;
    const double* mrow = mean ? mean + f * nb1 : nullptr;
    double* sig = signal ? signal + f * nb1 : nullptr;
    double* vr = var ? var + f * nb1 : nullptr;
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < npix; k += int64_t(gridDim.x) * blockDim.x) {
        const double x = static_cast<double>(frame[k]);
        const int64_t b = radial_term::bin(index, k);
        if (!valid(x)) {
            if (M != 2) {
                const double wk = radial_term::weight(weight, k);
                atomicAdd(rw + f * nb1 + b, wk);
                atomicAdd(rw2 + f * nb1 + b, wk * wk);
                atomicAdd(rc + f * nb1 + b, 1.0);
            }
            continue;
        }
        if (M == 2) {
            const double d2 = radial_term::deviation2(x, mrow[b], radial_term::weight(weight, k));
            if (SHARED) atomicAdd(sh + b, static_cast<float>(d2));
            else atomicAdd(vr + b, d2);
        } else {
            if (SHARED) atomicAdd(sh + b * S, static_cast<float>(x));
            else atomicAdd(sig + b, x);
            if (M == 1) {
                const double v = radial_term::poisson_variance(x);
                if (SHARED) atomicAdd(sh + b * S + 1, static_cast<float>(v));
                else atomicAdd(vr + b, v);
            }
        }
    }
    if (!SHARED) return;
    __syncthreads();
    for (int64_t b = threadIdx.x; b < nb1; b += blockDim.x) {
        if (M == 2) {
            if (sh[b] != 0.f) atomicAdd(vr + b, double(sh[b]));
        } else {
            if (sh[b * S] != 0.f) atomicAdd(sig + b, double(sh[b * S]));
            if (M == 1 && sh[b * S + 1] != 0.f) atomicAdd(vr + b, double(sh[b * S + 1]));
        }
    }
}

template <typename T, typename I, int M>
void launch(const RadialProblem& p, const T* frames, const RadialOutputs& out, cudaStream_t st) {
    const int64_t nb1 = p.nbins + 1;
    const int S = (M == 1) ? 2 : 1;
    const size_t row = sizeof(double) * size_t(p.F * nb1);
    if (M == 2) {
        check(cudaMemsetAsync(out.var, 0, row, st), "memset");
    } else {
        for (double* o : {out.signal, out.var, out.removed_w, out.removed_w2, out.removed_count})
            if (o) check(cudaMemsetAsync(o, 0, row, st), "memset");
    }
    if (p.F == 0 || p.npix == 0) return;
    // About 16k pixels per block: enough work to amortise the shared-histogram flush.
    int64_t bx = (p.npix + 16383) / 16384;
    if (bx > 65535) bx = 65535;
    if (p.F > 65535) throw std::invalid_argument("radial (CUDA): at most 65535 frames per call");
    dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(p.F));
    const RadialValidity v{p.check, p.lo, p.hi, p.has_dummy, p.dummy, p.delta_dummy};
    const I* idx = static_cast<const I*>(p.index);
    if (nb1 * S <= kSharedFloats) {
        radial_kernel<T, I, M, true><<<grid, kThreads, sizeof(float) * nb1 * S, st>>>(
            p.npix, p.nbins, frames, idx, p.weight, v, p.mean, out.signal, out.var, out.removed_w, out.removed_w2,
            out.removed_count);
    } else {
        radial_kernel<T, I, M, false><<<grid, kThreads, 0, st>>>(p.npix, p.nbins, frames, idx, p.weight, v, p.mean,
                                                                  out.signal, out.var, out.removed_w, out.removed_w2,
                                                                  out.removed_count);
    }
    check(cudaGetLastError(), "launch");
}

template <typename T, typename I>
void by_mode(const RadialProblem& p, const T* frames, const RadialOutputs& out, cudaStream_t st) {
    switch (p.mode) {
        case RadialMode::SIGNAL: launch<T, I, 0>(p, frames, out, st); break;
        case RadialMode::POISSON: launch<T, I, 1>(p, frames, out, st); break;
        case RadialMode::AZIMUTHAL_PASS2: launch<T, I, 2>(p, frames, out, st); break;
    }
}

}  // namespace

template <typename T>
void radial_histogram_cuda(const RadialProblem& p, const T* frames, const RadialOutputs& out, void* stream) {
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (p.index16) by_mode<T, uint16_t>(p, frames, out, st);
    else by_mode<T, int32_t>(p, frames, out, st);
}

template void radial_histogram_cuda<uint16_t>(const RadialProblem&, const uint16_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<int32_t>(const RadialProblem&, const int32_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<uint32_t>(const RadialProblem&, const uint32_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<float>(const RadialProblem&, const float*, const RadialOutputs&, void*);
template void radial_histogram_cuda<double>(const RadialProblem&, const double*, const RadialOutputs&, void*);

}  // namespace xstructure
