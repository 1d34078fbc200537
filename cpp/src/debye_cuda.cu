// CUDA Debye kernels.  Forward: one thread per (geometry, run of C consecutive q values), looping over
// the atom pairs; on a uniform q grid each pair costs one sincos per thread and a rotation per further q.
// Backward: one thread per (geometry, atom pair), a dot product over q, atomics into the gradient.
// Jacobian: the forward kernel for the pattern, then one thread per (geometry, atom, run of C q values) summing
// over the atom's partners, so that every Jacobian entry is written once, without atomics.
// Arithmetic is in the input type (float or double), through the same per-pair functions as the CPU kernels
// (debye.hpp: debye_term).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "xstructure/debye.hpp"

namespace xstructure {
namespace {

constexpr int C = 8;           // q values per thread in the forward kernel
constexpr int RESEED = 32;     // backward: recompute sincos every RESEED q steps

using namespace debye_term;
using hd::sincos_t;
using hd::sqrt_t;

struct DevArgs {
    int64_t B, N, Q;
    int32_t E;
    const int32_t* species;
    const double* q;
    const double* H;
    const double* beta;
    double q0, dq;
    bool uniform;
};

template <typename T>
__global__ void forward_kernel(DevArgs a, const T* __restrict__ pos, T* __restrict__ out) {
    const int64_t tpg = (a.Q + C - 1) / C;   // threads per geometry
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= a.B * tpg) return;
    const int64_t b = idx / tpg;
    const int64_t k0 = (idx % tpg) * C;
    const int nk = static_cast<int>(min(static_cast<int64_t>(C), a.Q - k0));
    const T* x = pos + b * a.N * 3;

    T acc[C];
#pragma unroll
    for (int c = 0; c < C; ++c) acc[c] = T(0);
    T qk[C];
#pragma unroll
    for (int c = 0; c < C; ++c) qk[c] = (c < nk) ? static_cast<T>(a.q[k0 + c]) : T(0);
    const T qs = static_cast<T>(a.uniform ? a.q0 + k0 * a.dq : a.q[k0]);
    const T dq = static_cast<T>(a.dq);

    for (int64_t i = 0; i < a.N; ++i) {
        const T xi[3] = {x[3 * i], x[3 * i + 1], x[3 * i + 2]};
        const int32_t si = a.species[i];
        for (int64_t j = i + 1; j < a.N; ++j) {
            const T xj[3] = {x[3 * j], x[3 * j + 1], x[3 * j + 2]};
            T d[3];
            const T r2 = separation(xi, xj, d);
            const double* h = a.H + pair_type(si, a.species[j], a.E) * a.Q + k0;
            if (r2 == T(0)) {
#pragma unroll
                for (int c = 0; c < C; ++c)
                    if (c < nk) acc[c] += static_cast<T>(__ldg(h + c)) * qk[c];
                continue;
            }
            const T r = sqrt_t(r2), ir = T(1) / r;
            if (a.uniform) {
                T s, cc, sd, cd;
                sinc_cos(qs, r, ir, &s, &cc);
                sincos_t(dq * r, &sd, &cd);
#pragma unroll
                for (int c = 0; c < C; ++c) {
                    if (c < nk) acc[c] += static_cast<T>(__ldg(h + c)) * s;
                    rotate(s, cc, cd, sd);
                }
            } else {
#pragma unroll
                for (int c = 0; c < C; ++c) {
                    if (c < nk) acc[c] += static_cast<T>(__ldg(h + c)) * sinc(qk[c], r, ir);
                }
            }
        }
    }
#pragma unroll
    for (int c = 0; c < C; ++c)
        if (c < nk) out[b * a.Q + k0 + c] = static_cast<T>(a.beta[k0 + c]) + acc[c];
}

template <typename T>
__global__ void backward_kernel(DevArgs a, const T* __restrict__ pos, const T* __restrict__ gout,
                                T* __restrict__ gpos) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t NN = a.N * a.N;
    if (idx >= a.B * NN) return;
    const int64_t b = idx / NN;
    const int64_t i = (idx / a.N) % a.N;
    const int64_t j = idx % a.N;
    if (j <= i) return;
    const T* x = pos + b * a.N * 3;
    const T xi[3] = {x[3 * i], x[3 * i + 1], x[3 * i + 2]};
    const T xj[3] = {x[3 * j], x[3 * j + 1], x[3 * j + 2]};
    T d[3];
    const T r2 = separation(xi, xj, d);
    if (r2 == T(0)) return;
    const T r = sqrt_t(r2), ir = T(1) / r;
    const double* h = a.H + pair_type(a.species[i], a.species[j], a.E) * a.Q;
    const T* g = gout + b * a.Q;
    T sum_us = 0, sum_vc = 0;
    T s = 0, cc = 0, sd = 0, cd = 0;
    if (a.uniform) sincos_t(static_cast<T>(a.dq) * r, &sd, &cd);
    for (int64_t k = 0; k < a.Q; ++k) {
        const T qk = static_cast<T>(a.q[k]);
        if (!a.uniform || k % RESEED == 0) sinc_cos(qk, r, ir, &s, &cc);
        const T u = g[k] * static_cast<T>(__ldg(h + k));
        sum_us += u * s;
        sum_vc += u * qk * cc;
        if (a.uniform) rotate(s, cc, cd, sd);
    }
    const T f = grad_factor(sum_us, sum_vc, ir);
    T* gi = gpos + (b * a.N + i) * 3;
    T* gj = gpos + (b * a.N + j) * 3;
    for (int c = 0; c < 3; ++c) {
        atomicAdd(gi + c, f * d[c]);
        atomicAdd(gj + c, -f * d[c]);
    }
}

template <typename T>
__global__ void jacobian_kernel(DevArgs a, const T* __restrict__ pos, T* __restrict__ jac) {
    const int64_t tpg = (a.Q + C - 1) / C;   // threads per atom
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= a.B * a.N * tpg) return;
    const int64_t b = idx / (a.N * tpg);
    const int64_t i = (idx / tpg) % a.N;
    const int64_t k0 = (idx % tpg) * C;
    const int nk = static_cast<int>(min(static_cast<int64_t>(C), a.Q - k0));
    const T* x = pos + b * a.N * 3;
    T g[3][C];
#pragma unroll
    for (int c = 0; c < C; ++c) g[0][c] = g[1][c] = g[2][c] = T(0);
    T qk[C];
#pragma unroll
    for (int c = 0; c < C; ++c) qk[c] = (c < nk) ? static_cast<T>(a.q[k0 + c]) : T(0);
    const T qs = static_cast<T>(a.uniform ? a.q0 + k0 * a.dq : a.q[k0]);
    const T dq = static_cast<T>(a.dq);
    const T xi[3] = {x[3 * i], x[3 * i + 1], x[3 * i + 2]};
    const int32_t si = a.species[i];
    for (int64_t j = 0; j < a.N; ++j) {
        if (j == i) continue;
        const T xj[3] = {x[3 * j], x[3 * j + 1], x[3 * j + 2]};
        T d[3];
        const T r2 = separation(xi, xj, d);
        if (r2 == T(0)) continue;   // sinc is even in r: no gradient at r = 0
        const T r = sqrt_t(r2), ir = T(1) / r;
        const T u[3] = {d[0] * ir, d[1] * ir, d[2] * ir};
        const double* h = a.H + pair_type(si, a.species[j], a.E) * a.Q + k0;
        T s = 0, cc = 0, sd = 0, cd = 0;
        if (a.uniform) {
            sinc_cos(qs, r, ir, &s, &cc);
            sincos_t(dq * r, &sd, &cd);
        }
#pragma unroll
        for (int c = 0; c < C; ++c) {
            if (!a.uniform) sinc_cos(qk[c], r, ir, &s, &cc);
            if (c < nk) {
                const T hk = static_cast<T>(__ldg(h + c));
                const T hqk = hk * qk[c];
                T f;
                jacobian_factor(hk, hqk, s, cc, ir, f);
                g[0][c] += f * u[0];
                g[1][c] += f * u[1];
                g[2][c] += f * u[2];
            }
            if (a.uniform) rotate(s, cc, cd, sd);
        }
    }
    T* out = jac + (b * a.N + i) * 3 * a.Q + k0;
#pragma unroll
    for (int c = 0; c < C; ++c)
        if (c < nk) {
            out[c] = g[0][c];
            out[a.Q + c] = g[1][c];
            out[2 * a.Q + c] = g[2][c];
        }
}

DevArgs dev_args(const DebyeProblem& p) {
    return DevArgs{p.B, p.N, p.Q, p.E, p.species, p.q, p.H, p.beta, p.q0, p.dq, p.uniform};
}

void check_launch(const char* what) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

}  // namespace

template <typename T>
void debye_forward_cuda(const DebyeProblem& p, const T* pos, T* out, void* stream) {
    if (p.B == 0 || p.Q == 0) return;
    const int64_t total = p.B * ((p.Q + C - 1) / C);
    const int threads = 256;
    const int64_t blocks = (total + threads - 1) / threads;
    forward_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
        dev_args(p), pos, out);
    check_launch("xstructure debye forward (CUDA)");
}

template <typename T>
void debye_backward_cuda(const DebyeProblem& p, const T* pos, const T* gout, T* gpos, void* stream) {
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (p.B == 0 || p.N == 0) return;
    cudaError_t err = cudaMemsetAsync(gpos, 0, sizeof(T) * p.B * p.N * 3, st);
    if (err != cudaSuccess) throw std::runtime_error(std::string("cudaMemsetAsync: ") + cudaGetErrorString(err));
    const int64_t total = p.B * p.N * p.N;
    const int threads = 256;
    const int64_t blocks = (total + threads - 1) / threads;
    backward_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, st>>>(dev_args(p), pos, gout, gpos);
    check_launch("xstructure debye backward (CUDA)");
}

template <typename T>
void debye_jacobian_cuda(const DebyeProblem& p, const T* pos, T* out, T* jac, void* stream) {
    debye_forward_cuda<T>(p, pos, out, stream);
    if (p.B == 0 || p.N == 0 || p.Q == 0) return;
    const int64_t total = p.B * p.N * ((p.Q + C - 1) / C);
    const int threads = 256;
    const int64_t blocks = (total + threads - 1) / threads;
    jacobian_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
        dev_args(p), pos, jac);
    check_launch("xstructure debye jacobian (CUDA)");
}

template void debye_forward_cuda<float>(const DebyeProblem&, const float*, float*, void*);
template void debye_forward_cuda<double>(const DebyeProblem&, const double*, double*, void*);
template void debye_backward_cuda<float>(const DebyeProblem&, const float*, const float*, float*, void*);
template void debye_backward_cuda<double>(const DebyeProblem&, const double*, const double*, double*, void*);
template void debye_jacobian_cuda<float>(const DebyeProblem&, const float*, float*, float*, void*);
template void debye_jacobian_cuda<double>(const DebyeProblem&, const double*, double*, double*, void*);

}  // namespace xstructure
