// Crystal kernels: structure factors F(hkl) and Gaussian density grids of a unit cell.
//
// Structure factors (crystallographic sign convention, as in gemmi, cctbx and the International Tables):
//
//     F(h) = sum_j  occ_j * g_{t(j)}(h) * exp(-B_j s^2) * exp(+2 pi i h . x_j),    s^2 = h^T G* h / 4
//
// with x_j fractional coordinates, g_t(h) the form factor of scattering type t (an element) at the
// reflection (the Python layer evaluates g) and G* the reciprocal metric.  Two layouts: the full box
// h, k, l in [-H, H] (output index ((h+H)(2H+1) + k+H)(2H+1) + l+H), computed with per-axis phase tables so
// that the inner loop over l is complex multiply-adds; or a list of M reflections.  In the box the
// Debye-Waller factor is separable too: exp(-B s^2) = prod of exp(-B G*_ii h_i^2 / 4) and
// exp(-B G*_ij h_i h_j / 2) (i < j), so it costs per-atom tables and no exponential per reflection.
// Output: interleaved complex float64 (re, im).  No Python and no torch here.
#pragma once

#include <cstdint>
#include <vector>

namespace xstructure {

struct StructureFactorProblem {
    int64_t N = 0;                    // atoms
    int32_t T = 0;                    // scattering types
    const int32_t* type = nullptr;    // (N,) type of each atom, in [0, T)
    const double* frac = nullptr;     // (N, 3) fractional coordinates
    const double* occ = nullptr;      // (N,) occupancies
    int32_t H = -1;                   // box half-width (box mode when >= 0)
    int64_t M = 0;                    // reflections (list mode), or (2H+1)^3 in box mode
    const int32_t* hkl = nullptr;     // (M, 3) list mode
    const double* g = nullptr;        // (T, M) form factor of each type at each reflection, or null:
    int32_t K = 0;                    // ... then g_t(s) = c_t + sum_k a_tk exp(-b_tk s^2), K Gaussians per type
    const double* ga = nullptr;       // (T, K)
    const double* gb = nullptr;       // (T, K)
    const double* gc = nullptr;       // (T,)
    double s2max = -1.0;              // reflections with s^2 > s2max give F = 0 (negative: no cutoff)
    const double* B = nullptr;        // (N,) isotropic displacement parameters (Angstrom^2), or null for none
    double metric[6] = {};            // G*: g11, g22, g33, g12, g13, g23 (1/Angstrom^2)
    int num_threads = 0;
};

// CPU only (no CUDA kernel: the Python caller, xstructure.crystal.structure_factors, builds host arrays).
void structure_factors_cpu(const StructureFactorProblem& p, double* F);

// Gaussian density on a periodic grid:  rho(r) = sum_j w_j (2 pi sigma_j^2)^{-3/2} exp(-|r - r_j - R|^2 / 2 sigma_j^2)
// summed over the lattice translations R whose contribution can exceed `cutoff` sigmas.  Grid point
// (a, b, c) sits at  origin + a * step0 + b * step1 + c * step2  (Cartesian, Angstrom): fractional grids use
// step_i = cell_i / n_i, Cartesian grids axis-aligned steps.
struct DensityProblem {
    int64_t B = 0;                    // structures (batch), all with the same cell and atom count
    int64_t N = 0;                    // atoms per structure
    int64_t n0 = 0, n1 = 0, n2 = 0;   // grid shape
    double cell[9] = {};              // rows a, b, c (Angstrom)
    double step[9] = {};              // rows step0, step1, step2 (Angstrom)
    double origin[3] = {};
    const double* weight = nullptr;   // (N,) w_j
    const double* sigma = nullptr;    // (N,) sigma_j (Angstrom)
    double cutoff = 5.0;              // in sigmas
    int num_threads = 0;
};

// pos: (B, N, 3) Cartesian Angstrom; rho: (B, n0, n1, n2).  T = float | double, accumulation in double.
template <typename T>
void density_grid_cpu(const DensityProblem& p, const T* pos, T* rho);
// grad_pos[b, j] = sum_grid grad_rho * d rho / d r_j
template <typename T>
void density_grid_backward_cpu(const DensityProblem& p, const T* pos, const T* grad_rho, T* grad_pos);
template <typename T>
void density_grid_cuda(const DensityProblem& p, const T* pos, T* rho, void* stream);
template <typename T>
void density_grid_backward_cuda(const DensityProblem& p, const T* pos, const T* grad_rho, T* grad_pos, void* stream);

}  // namespace xstructure

namespace xstructure {

// Powder reflections of a batch of crystals (CPU).  For each crystal c, every reflection of the Friedel
// half-space (h > 0, or h = 0 and k > 0, or h = k = 0 and l > 0) with 2θ in [tth_lo, tth_hi] at wavelength
// lambda, its intensity I = 2 |F|² (× LP(θ) = (1 + cos² 2θ) / (sin² θ cos θ) when lp; 2: the Friedel mate),
// with F as in StructureFactorProblem with Gaussian-sum form factors; reflections sorted by 2θ, then by
// descending h, k, l; and peaks: runs of reflections whose neighbours are within `tolerance` degrees.
struct PowderBatch {
    int64_t C = 0;
    const int64_t* atom_off = nullptr;   // (C + 1)
    const int32_t* type = nullptr;       // per atom, index into the crystal's own types
    const double* frac = nullptr;        // (atoms, 3)
    const double* occ = nullptr;
    const double* B = nullptr;           // per atom, may be null
    const int64_t* type_off = nullptr;   // (C + 1) offsets into the per-type Gaussian coefficients
    int32_t K = 0;
    const double* ga = nullptr;          // (types, K)
    const double* gb = nullptr;
    const double* gc = nullptr;          // (types,)
    const double* cells = nullptr;       // (C, 3, 3) rows a, b, c (Angstrom)
    double lambda = 1.5406, tth_lo = 0.0, tth_hi = 90.0, tolerance = 1e-5;
    bool lp = true;
    int num_threads = 0;
};

struct PowderResult {
    // reflections, concatenated over crystals: refl_off[c] .. refl_off[c + 1]
    std::vector<int32_t> hkl;            // (R, 3)
    std::vector<double> tth, g, I;       // 2θ (deg), |G| = 1/d (1/Å), intensity
    std::vector<int64_t> refl_off;       // (C + 1)
    // peaks, concatenated: peak_off[c] .. peak_off[c + 1]; reflections peak_first[p] .. + peak_n[p]
    std::vector<double> peak_tth, peak_d, peak_I;
    std::vector<int64_t> peak_first, peak_n, peak_off;
    std::vector<int32_t> peak_hkl;       // (P, 3): the largest (h, k, l) of each peak's family
};

PowderResult powder_reflections_cpu(const PowderBatch& p);

}  // namespace xstructure
