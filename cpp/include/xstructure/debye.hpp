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

#include "xstructure/hd.hpp"

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
XS_HD int64_t pair_type(int32_t a, int32_t b, int32_t E) {
    if (a > b) { int32_t t = a; a = b; b = t; }
    return static_cast<int64_t>(a) * E - (static_cast<int64_t>(a) * (a - 1)) / 2 + (b - a);
}

XS_HD int64_t n_pair_types(int32_t E) { return static_cast<int64_t>(E) * (E + 1) / 2; }

// The per-pair arithmetic of the CPU and CUDA kernels, in the working type R (double on the CPU; the input type
// on the GPU).  For atoms i, j with d = x_i - x_j, r = |d| and ir = 1 / r:
namespace debye_term {

// d = x_i - x_j; returns r^2.
template <typename R>
XS_HD R separation(const R xi[3], const R xj[3], R d[3]) {
    d[0] = xi[0] - xj[0];
    d[1] = xi[1] - xj[1];
    d[2] = xi[2] - xj[2];
    return d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
}

// sin(q r) / r, the pair's contribution at q (its limit q at r = 0 is the caller's case).
template <typename R>
XS_HD R sinc(R q, R r, R ir) { return hd::sin_t(q * r) * ir; }

// sin(q r) / r and cos(q r) / r.
template <typename R>
XS_HD void sinc_cos(R q, R r, R ir, R* s, R* c) {
    hd::sincos_t(q * r, s, c);
    *s *= ir;
    *c *= ir;
}

// One step along a uniform q grid: (s, c) at q becomes (s, c) at q + dq, with (cd, sd) = (cos, sin)(dq r).
// V is R, or a vector of R (the CPU's four-wide lanes).
template <typename V, typename R>
XS_HD void rotate(V& s, V& c, R cd, R sd) {
    const V t = s * cd + c * sd;
    c = c * cd - s * sd;
    s = t;
}

// With su = sum_k u_k sin(q_k r) / r and vc = sum_k u_k q_k cos(q_k r) / r (u_k = grad_out_k H_k), the gradient of
// sum_k u_k sin(q_k r) / r is f d for atom i and -f d for atom j, f = (vc - su / r) / r.
template <typename R>
XS_HD R grad_factor(R su, R vc, R ir) { return (vc - su * ir) * ir; }

// The Jacobian's per-pair factor at one q: with s = sin(q r) / r, c = cos(q r) / r, h = H and hq = H q, the
// derivative of h sin(q r) / r along r is g = hq c - h s / r; times d / r it is the pair's d out / d x_i (and minus
// that for x_j).  V is R or a vector of R.
template <typename V, typename R>
XS_HD void jacobian_factor(const V& h, const V& hq, const V& s, const V& c, R ir, V& g) { g = hq * c - h * s * ir; }

}  // namespace debye_term

// CPU (OpenMP).  pos: (B, N, 3), out: (B, Q), grad_out: (B, Q), grad_pos: (B, N, 3).  T = float | double;
// arithmetic is done in double whatever T is.
template <typename T>
void debye_forward_cpu(const DebyeProblem& p, const T* pos, T* out);
template <typename T>
void debye_backward_cpu(const DebyeProblem& p, const T* pos, const T* grad_out, T* grad_pos);
// The forward pattern and its full Jacobian: out (B, Q) as debye_forward_cpu, jac (B, N, 3, Q) with
// jac[b, a, c, k] = d out[b, k] / d pos[b, a, c].
template <typename T>
void debye_jacobian_cpu(const DebyeProblem& p, const T* pos, T* out, T* jac);

// One Gauss-Newton step of a MAP fit in a linear subspace of the positions, x = x0 + L z, with a unit Gaussian prior
// on z.  For each geometry b, at x_b = x0 + L z_b (pos), with the pattern out_b (returned, as debye_forward_cpu) and
// A_b = (d out / d x)(x_b) L (Q x M):
//     dz_b = (A_b^T W_b A_b + 1)^-1 (A_b^T W_b (y_b - out_b) - z_b),   W_b = diag(w_b).
// L: (3N, M) row-major; y, w: (B, Q); z, dz: (B, M).  The Jacobian stays in a per-thread buffer (in cache for
// molecules of a few tens of atoms), never written out.  CPU only, in double; a step whose Cholesky factorisation
// fails (overflow) comes back as NaN.  mixed: the Jacobian J_b and its projection A_b = J_b L in float (twice the
// vector width; a relative error of ~1e-7 per entry, which moves dz by up to ~1e-4 of itself); the pattern, the pair
// factors, the Gram matrix, the right-hand side and the solve still in double (in float the Gram matrix's rounding,
// ~1e-7 of its largest eigenvalue, would swamp the prior's unit eigenvalues).
void debye_gauss_newton_cpu(const DebyeProblem& p, const double* pos, const double* L, int64_t M, const double* y,
                            const double* w, const double* z, bool mixed, double* out, double* dz);

// CUDA.  All pointers are device pointers; `stream` is a cudaStream_t (0 = legacy default stream).
// Available only when compiled with CUDA (XSTRUCTURE_HAS_CUDA); otherwise these throw.
template <typename T>
void debye_forward_cuda(const DebyeProblem& p, const T* pos, T* out, void* stream);
template <typename T>
void debye_backward_cuda(const DebyeProblem& p, const T* pos, const T* grad_out, T* grad_pos, void* stream);
template <typename T>
void debye_jacobian_cuda(const DebyeProblem& p, const T* pos, T* out, T* jac, void* stream);

}  // namespace xstructure
