// CPU crystal kernels (see xstructure/crystal.hpp).
#include "xstructure/crystal.hpp"
#include "xstructure/crystal_grid.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xstructure {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

int threads(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

// exp(2 pi i h x) with h x reduced to [-1/2, 1/2] first, so large h lose no precision.
inline void phase(double hx, double& c, double& s) {
    const double t = hx - std::nearbyint(hx);
    c = std::cos(kTwoPi * t);
    s = std::sin(kTwoPi * t);
}

void box(const StructureFactorProblem& p, double* F) {
    const int H = p.H, L = 2 * H + 1;
    const int64_t N = p.N, M = p.M;
    // Per-axis phase tables, (N, L) each for re and im, laid out so the l loop is contiguous.
    std::vector<double> cre[3], cim[3];
    for (int a = 0; a < 3; ++a) {
        cre[a].resize(N * L);
        cim[a].resize(N * L);
        for (int64_t j = 0; j < N; ++j)
            for (int h = -H; h <= H; ++h) phase(h * p.frac[3 * j + a], cre[a][j * L + h + H], cim[a][j * L + h + H]);
    }
    const int T = p.T;
#pragma omp parallel num_threads(threads(p.num_threads))
    {
        std::vector<double> ur(N), ui(N), accr(T * L), acci(T * L);
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int hi = 0; hi < L; ++hi) {
            for (int ki = 0; ki < L; ++ki) {
                for (int64_t j = 0; j < N; ++j) {
                    const double ar = cre[0][j * L + hi], ai = cim[0][j * L + hi];
                    const double br = cre[1][j * L + ki], bi = cim[1][j * L + ki];
                    ur[j] = p.occ[j] * (ar * br - ai * bi);
                    ui[j] = p.occ[j] * (ar * bi + ai * br);
                }
                std::fill(accr.begin(), accr.end(), 0.0);
                std::fill(acci.begin(), acci.end(), 0.0);
                for (int64_t j = 0; j < N; ++j) {
                    double* __restrict__ xr = accr.data() + p.type[j] * L;
                    double* __restrict__ xi = acci.data() + p.type[j] * L;
                    const double* __restrict__ er = cre[2].data() + j * L;
                    const double* __restrict__ ei = cim[2].data() + j * L;
                    const double u = ur[j], v = ui[j];
#pragma omp simd
                    for (int l = 0; l < L; ++l) {
                        xr[l] += u * er[l] - v * ei[l];
                        xi[l] += u * ei[l] + v * er[l];
                    }
                }
                const int64_t base = (static_cast<int64_t>(hi) * L + ki) * L;
                for (int l = 0; l < L; ++l) {
                    double fr = 0.0, fi = 0.0;
                    for (int t = 0; t < T; ++t) {
                        const double gt = p.g[t * M + base + l];
                        fr += gt * accr[t * L + l];
                        fi += gt * acci[t * L + l];
                    }
                    F[2 * (base + l)] = fr;
                    F[2 * (base + l) + 1] = fi;
                }
            }
        }
    }
}

void list(const StructureFactorProblem& p, double* F) {
    const int64_t M = p.M, N = p.N;
#pragma omp parallel for schedule(static) num_threads(threads(p.num_threads))
    for (int64_t m = 0; m < M; ++m) {
        const double h = p.hkl[3 * m], k = p.hkl[3 * m + 1], l = p.hkl[3 * m + 2];
        double fr = 0.0, fi = 0.0;
        for (int64_t j = 0; j < N; ++j) {
            double c, s;
            phase(h * p.frac[3 * j] + k * p.frac[3 * j + 1] + l * p.frac[3 * j + 2], c, s);
            const double w = p.occ[j] * p.g[static_cast<int64_t>(p.type[j]) * M + m];
            fr += w * c;
            fi += w * s;
        }
        F[2 * m] = fr;
        F[2 * m + 1] = fi;
    }
}

double max_sigma(const DensityProblem& p) {
    double m = 0.0;
    for (int64_t j = 0; j < p.N; ++j) m = std::max(m, p.sigma[j]);
    return m;
}

}  // namespace

void structure_factors_cpu(const StructureFactorProblem& p, double* F) {
    if (p.H >= 0) box(p, F);
    else list(p, F);
}

template <typename T>
void density_grid_cpu(const DensityProblem& p, const T* pos, T* rho) {
    const grid::GridGeometry gg = grid::grid_geometry(p, max_sigma(p));
    const int64_t G = p.n0 * p.n1 * p.n2;
    const int nt = threads(p.num_threads);
    for (int64_t b = 0; b < p.B; ++b) {
        std::vector<double> total(G, 0.0);
#pragma omp parallel num_threads(nt)
        {
            std::vector<double> mine(G, 0.0);
#pragma omp for schedule(dynamic, 1)
            for (int64_t j = 0; j < p.N; ++j) {
                const T* q = pos + (b * p.N + j) * 3;
                const double r[3] = {double(q[0]), double(q[1]), double(q[2])};
                const double w = p.weight[j];
                grid::visit(p, gg, r, p.sigma[j], [&](int64_t idx, double, double, double, double g) { mine[idx] += w * g; });
            }
#pragma omp critical(xstructure_density_reduce)
            for (int64_t i = 0; i < G; ++i) total[i] += mine[i];
        }
        for (int64_t i = 0; i < G; ++i) rho[b * G + i] = static_cast<T>(total[i]);
    }
}

template <typename T>
void density_grid_backward_cpu(const DensityProblem& p, const T* pos, const T* grad_rho, T* grad_pos) {
    const grid::GridGeometry gg = grid::grid_geometry(p, max_sigma(p));
    const int64_t G = p.n0 * p.n1 * p.n2;
#pragma omp parallel for schedule(dynamic, 1) collapse(2) num_threads(threads(p.num_threads))
    for (int64_t b = 0; b < p.B; ++b)
        for (int64_t j = 0; j < p.N; ++j) {
            const T* q = pos + (b * p.N + j) * 3;
            const double r[3] = {double(q[0]), double(q[1]), double(q[2])};
            double acc[3];
            grid::atom_gradient(p, gg, r, p.weight[j], p.sigma[j], grad_rho + b * G, acc);
            T* out = grad_pos + (b * p.N + j) * 3;
            for (int k = 0; k < 3; ++k) out[k] = static_cast<T>(acc[k]);
        }
}

template void density_grid_cpu<float>(const DensityProblem&, const float*, float*);
template void density_grid_cpu<double>(const DensityProblem&, const double*, double*);
template void density_grid_backward_cpu<float>(const DensityProblem&, const float*, const float*, float*);
template void density_grid_backward_cpu<double>(const DensityProblem&, const double*, const double*, double*);

}  // namespace xstructure
