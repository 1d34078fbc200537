// Grid geometry shared by the CPU and CUDA density kernels (see crystal.hpp).  Header-only, host and device.
#pragma once

#include <cmath>
#include <cstdint>

#include "xstructure/crystal.hpp"

#include "xstructure/hd.hpp"

namespace xstructure {
namespace grid {


XS_HD void invert3(const double m[9], double inv[9]) {
    const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                       m[2] * (m[3] * m[7] - m[4] * m[6]);
    const double d = 1.0 / det;
    inv[0] = (m[4] * m[8] - m[5] * m[7]) * d;
    inv[1] = (m[2] * m[7] - m[1] * m[8]) * d;
    inv[2] = (m[1] * m[5] - m[2] * m[4]) * d;
    inv[3] = (m[5] * m[6] - m[3] * m[8]) * d;
    inv[4] = (m[0] * m[8] - m[2] * m[6]) * d;
    inv[5] = (m[2] * m[3] - m[0] * m[5]) * d;
    inv[6] = (m[3] * m[7] - m[4] * m[6]) * d;
    inv[7] = (m[1] * m[6] - m[0] * m[7]) * d;
    inv[8] = (m[0] * m[4] - m[1] * m[3]) * d;
}

XS_HD int64_t wrap(int64_t i, int64_t n) {
    const int64_t r = i % n;
    return r < 0 ? r + n : r;
}

// An atom's position, in double whatever the input type.
template <typename T>
XS_HD void load_position(const T* x, double r[3]) {
    r[0] = static_cast<double>(x[0]);
    r[1] = static_cast<double>(x[1]);
    r[2] = static_cast<double>(x[2]);
}

// The normalised Gaussian at squared distance d2, norm exp(-d2 inv2s2), with norm = (2 pi sigma^2)^(-3/2) and
// inv2s2 = 1 / (2 sigma^2): the density contribution per unit weight.
XS_HD double gaussian(double d2, double norm, double inv2s2) { return norm * exp(-d2 * inv2s2); }

// Visit every (grid point, image) pair within the cutoff of atom j at r: fn(flat_index, dx, dy, dz, g) with
// d = grid point - atom image and g = the normalised Gaussian.  Grid steps are the rows of p.step; when the
// grid spans the cell exactly (periodic), indices wrap and so cover every image; otherwise lattice images
// are visited explicitly and indices clipped.
struct GridGeometry {
    double A[9];  // rows: index-space coordinate i = A_i . (r - origin)
    double reach[3];
    bool periodic;
    int img[3];   // explicit image range per cell axis (non-periodic grids)
    double Ci[9]; // rows: fractional coordinate f_i = Ci_i . r
};

XS_HD GridGeometry grid_geometry(const DensityProblem& p, double max_sigma) {
    GridGeometry gg;
    // S has the steps as columns: r = origin + S u  ->  u = S^{-1} (r - origin)
    double S[9];
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k) S[3 * k + i] = p.step[3 * i + k];
    invert3(S, gg.A);
    for (int i = 0; i < 3; ++i)
        gg.reach[i] = sqrt(gg.A[3 * i] * gg.A[3 * i] + gg.A[3 * i + 1] * gg.A[3 * i + 1] + gg.A[3 * i + 2] * gg.A[3 * i + 2]);
    const int64_t n[3] = {p.n0, p.n1, p.n2};
    gg.periodic = true;
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k)
            if (fabs(p.step[3 * i + k] * n[i] - p.cell[3 * i + k]) > 1e-9 * (1.0 + fabs(p.cell[3 * i + k])))
                gg.periodic = false;
    for (int i = 0; i < 3; ++i) gg.img[i] = 0;
    if (!gg.periodic) {
        // images up to the grid's extent plus the cutoff sphere, in units of each cell axis's spacing
        double C[9];
        double* Ci = gg.Ci;
        for (int i = 0; i < 3; ++i)
            for (int k = 0; k < 3; ++k) C[3 * k + i] = p.cell[3 * i + k];
        invert3(C, Ci);
        double extent = 0.0;
        for (int i = 0; i < 3; ++i) {
            double len = 0.0;
            for (int k = 0; k < 3; ++k) len += (p.step[3 * i + k] * n[i]) * (p.step[3 * i + k] * n[i]);
            extent += sqrt(len);
        }
        for (int i = 0; i < 3; ++i) {
            const double ri = sqrt(Ci[3 * i] * Ci[3 * i] + Ci[3 * i + 1] * Ci[3 * i + 1] + Ci[3 * i + 2] * Ci[3 * i + 2]);
            gg.img[i] = static_cast<int>(ceil(ri * (extent + p.cutoff * max_sigma))) + 1;
        }
    }
    return gg;
}

template <typename Fn>
XS_HD void visit(const DensityProblem& p, const GridGeometry& gg, const double r[3], double sigma, Fn&& fn) {
    const double rc = p.cutoff * sigma;
    const double inv2s2 = 1.0 / (2.0 * sigma * sigma);
    const double norm = pow(2.0 * 3.14159265358979323846 * sigma * sigma, -1.5);
    const int64_t n[3] = {p.n0, p.n1, p.n2};
    const int ia = gg.img[0], ib = gg.img[1], ic = gg.img[2];
    double r0[3] = {r[0], r[1], r[2]};
    if (!gg.periodic) {  // bring the atom into the home cell, so that the image range above suffices
        double f[3];
        for (int i = 0; i < 3; ++i) f[i] = floor(gg.Ci[3 * i] * r[0] + gg.Ci[3 * i + 1] * r[1] + gg.Ci[3 * i + 2] * r[2]);
        for (int k = 0; k < 3; ++k) r0[k] -= f[0] * p.cell[k] + f[1] * p.cell[3 + k] + f[2] * p.cell[6 + k];
    }
    for (int na = -ia; na <= ia; ++na)
        for (int nb = -ib; nb <= ib; ++nb)
            for (int nc = -ic; nc <= ic; ++nc) {
                double ri[3];
                for (int k = 0; k < 3; ++k)
                    ri[k] = r0[k] + na * p.cell[k] + nb * p.cell[3 + k] + nc * p.cell[6 + k] - p.origin[k];
                int64_t lo[3], hi[3];
                bool empty = false;
                for (int i = 0; i < 3; ++i) {
                    const double u = gg.A[3 * i] * ri[0] + gg.A[3 * i + 1] * ri[1] + gg.A[3 * i + 2] * ri[2];
                    lo[i] = static_cast<int64_t>(ceil(u - rc * gg.reach[i]));
                    hi[i] = static_cast<int64_t>(floor(u + rc * gg.reach[i]));
                    if (!gg.periodic) {
                        lo[i] = (lo[i] > 0 ? lo[i] : 0);
                        hi[i] = (hi[i] < n[i] - 1 ? hi[i] : n[i] - 1);
                    }
                    if (hi[i] < lo[i]) empty = true;
                }
                if (empty) continue;
                for (int64_t a = lo[0]; a <= hi[0]; ++a)
                    for (int64_t b = lo[1]; b <= hi[1]; ++b) {
                        const double px = a * p.step[0] + b * p.step[3] - ri[0];
                        const double py = a * p.step[1] + b * p.step[4] - ri[1];
                        const double pz = a * p.step[2] + b * p.step[5] - ri[2];
                        const int64_t rowab = (wrap(a, n[0]) * n[1] + wrap(b, n[1])) * n[2];
                        for (int64_t c = lo[2]; c <= hi[2]; ++c) {
                            const double dx = px + c * p.step[6], dy = py + c * p.step[7], dz = pz + c * p.step[8];
                            const double d2 = dx * dx + dy * dy + dz * dz;
                            if (d2 > rc * rc) continue;
                            fn(rowab + wrap(c, n[2]), dx, dy, dz, gaussian(d2, norm, inv2s2));
                        }
                    }
                if (gg.periodic) return;  // wrapped indices already cover every image
            }
}


// d/dr_j of sum_grid grad_rho * w g(|p - r_j|) = sum_grid grad_rho * w g (p - r_j) / sigma^2, into acc[3].
template <typename T>
XS_HD void atom_gradient(const DensityProblem& p, const GridGeometry& gg, const double r[3], double w, double sigma,
                         const T* grad_rho, double acc[3]) {
    const double s2 = sigma * sigma;
    acc[0] = acc[1] = acc[2] = 0.0;
    visit(p, gg, r, sigma, [&](int64_t idx, double dx, double dy, double dz, double g) {
        const double f = double(grad_rho[idx]) * w * g / s2;
        acc[0] += f * dx;
        acc[1] += f * dy;
        acc[2] += f * dz;
    });
}

}  // namespace grid
}  // namespace xstructure
