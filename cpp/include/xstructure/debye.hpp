// Debye scattering kernels of the Independent Atom Model.
//
// The kernels compute, for a batch of B geometries of one molecule with N atoms,
//
//     out[b, k] = beta[k] + sum_p H[p, k] * A_p(b, q_k),
//     A_p(b, q) = sum_{i<j, type(i,j) = p} sin(q r_ij) / r_ij        (limit q for r_ij = 0),
//
// where p runs over the E(E+1)/2 unordered pairs of species.  The Python layer folds the form-factor
// products and every signal definition into H and beta (for I_mol: H = 2 f_a f_b / q, with H = 0 at
// q = 0 and the q = 0 value, which does not depend on the geometry, in beta).  Keeping the kernel this
// small lets one forward and one backward serve I_mol, I_total and sM on CPU and GPU alike.
//
// No Python and no torch here: callers pass raw buffers.
#pragma once

#include <cstdint>

namespace xstructure {

struct DebyeProblem {
    int64_t B = 0;             // geometries
    int64_t N = 0;             // atoms per geometry
    int64_t Q = 0;             // q points
    int32_t E = 0;             // species (distinct form factors)
    const int32_t* species = nullptr;  // (N,) species index of each atom, in [0, E)
    const double* q = nullptr;         // (Q,) momentum transfer, 1/Angstrom
    bool uniform = false;              // q[k] == q0 + k * dq (to ~1e-12 relative)
    double q0 = 0.0;
    double dq = 0.0;
    const double* H = nullptr;         // (P, Q) weights per species pair, P = E (E + 1) / 2
    const double* beta = nullptr;      // (Q,) additive term
    int num_threads = 0;               // CPU threads, 0 = OpenMP default
};

// Index of the unordered species pair (a, b) among E species.
static inline int64_t pair_type(int32_t a, int32_t b, int32_t E) {
    if (a > b) { int32_t t = a; a = b; b = t; }
    return static_cast<int64_t>(a) * E - (static_cast<int64_t>(a) * (a - 1)) / 2 + (b - a);
}

static inline int64_t n_pair_types(int32_t E) { return static_cast<int64_t>(E) * (E + 1) / 2; }

// CPU (OpenMP).  pos: (B, N, 3), out: (B, Q), grad_out: (B, Q), grad_pos: (B, N, 3).  T = float | double;
// arithmetic is done in double whatever T is.
template <typename T>
void debye_forward_cpu(const DebyeProblem& p, const T* pos, T* out);
template <typename T>
void debye_backward_cpu(const DebyeProblem& p, const T* pos, const T* grad_out, T* grad_pos);

// The instruction set the CPU dispatcher chose ("avx2+fma" or "baseline").
const char* cpu_isa();

// CUDA.  All pointers are device pointers; `stream` is a cudaStream_t (0 = legacy default stream).
// Available only when compiled with CUDA (XSTRUCTURE_HAS_CUDA); otherwise these throw.
template <typename T>
void debye_forward_cuda(const DebyeProblem& p, const T* pos, T* out, void* stream);
template <typename T>
void debye_backward_cuda(const DebyeProblem& p, const T* pos, const T* grad_out, T* grad_pos, void* stream);

int cuda_device_count();   // 0 when not compiled with CUDA or no usable device

}  // namespace xstructure
