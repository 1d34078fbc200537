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

// Gaussian-sum form factors along one line of the box: for fixed (h, k), s^2 = (q0 + q1 l + q2 l^2) / 4 is
// quadratic in l, so each exp(-b s^2) follows from its neighbour by a ratio that itself changes by a
// constant factor: three exponentials per line instead of one per reflection.  The recurrence starts at the
// vertex of the quadratic and runs outwards, where the terms only shrink (b > 0), so underflow to 0 is exact
// to double precision.
void gaussian_line(const StructureFactorProblem& p, int H, double q0, double q1, double q2, double* out) {
    const int L = 2 * H + 1;
    int lv = q2 > 0 ? static_cast<int>(std::lround(-q1 / (2.0 * q2))) : 0;
    lv = std::max(-H, std::min(H, lv));
    for (int t = 0; t < p.T; ++t) {
        double* o = out + t * L;
        for (int l = 0; l < L; ++l) o[l] = p.gc[t];
        for (int k = 0; k < p.K; ++k) {
            const double a = p.ga[t * p.K + k], b = 0.25 * p.gb[t * p.K + k];
            const double kappa = std::exp(-2.0 * b * q2);
            const double fv = a * std::exp(-b * (q0 + q1 * lv + q2 * lv * lv));
            o[lv + H] += fv;
            double f = fv, r = std::exp(-b * (q1 + q2 * (2 * lv + 1)));  // f(l+1) / f(l) at l = lv
            for (int l = lv + 1; l <= H; ++l) {
                f *= r;
                r *= kappa;
                o[l + H] += f;
            }
            f = fv;
            r = std::exp(-b * (-q1 + q2 * (1 - 2 * lv)));  // f(l-1) / f(l) at l = lv
            for (int l = lv - 1; l >= -H; --l) {
                f *= r;
                r *= kappa;
                o[l + H] += f;
            }
        }
    }
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
    const double* G = p.metric;
    const bool dw = p.B != nullptr;
    // Per-axis tables, (N, L) each, laid out so the l loop is contiguous: phases, and with B the diagonal
    // Debye-Waller factors exp(-B g_ii h^2 / 4) (folded into the l phases).
    std::vector<double> cre[3], cim[3], diag[2];
    for (int a = 0; a < 3; ++a) {
        cre[a].resize(N * L);
        cim[a].resize(N * L);
        for (int64_t j = 0; j < N; ++j)
            for (int h = -H; h <= H; ++h) {
                double& re = cre[a][j * L + h + H];
                double& im = cim[a][j * L + h + H];
                phase(h * p.frac[3 * j + a], re, im);
                if (dw) {
                    const double d = std::exp(-0.25 * p.B[j] * G[a] * h * h);
                    if (a == 2) {
                        re *= d;
                        im *= d;
                    } else {
                        if (diag[a].empty()) diag[a].resize(N * L);
                        diag[a][j * L + h + H] = d;
                    }
                }
            }
    }
    // Cross terms with l: exp(-B g13 h l / 2) and exp(-B g23 k l / 2), (N, L, L) each.
    std::vector<double> xhl, xkl;
    if (dw) {
        xhl.resize(N * L * L);
        xkl.resize(N * L * L);
        for (int64_t j = 0; j < N; ++j)
            for (int h = -H; h <= H; ++h)
                for (int l = -H; l <= H; ++l) {
                    xhl[(j * L + h + H) * L + l + H] = std::exp(-0.5 * p.B[j] * G[4] * h * l);
                    xkl[(j * L + h + H) * L + l + H] = std::exp(-0.5 * p.B[j] * G[5] * h * l);
                }
    }
    const int T = p.T;
#pragma omp parallel num_threads(threads(p.num_threads))
    {
        std::vector<double> ur(N), ui(N), accr(T * L), acci(T * L), gline(p.g ? 0 : T * L);
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int hi = 0; hi < L; ++hi) {
            for (int ki = 0; ki < L; ++ki) {
                for (int64_t j = 0; j < N; ++j) {
                    const double ar = cre[0][j * L + hi], ai = cim[0][j * L + hi];
                    const double br = cre[1][j * L + ki], bi = cim[1][j * L + ki];
                    double w = p.occ[j];
                    if (dw)
                        w *= diag[0][j * L + hi] * diag[1][j * L + ki] *
                             std::exp(-0.5 * p.B[j] * G[3] * double(hi - H) * double(ki - H));
                    ur[j] = w * (ar * br - ai * bi);
                    ui[j] = w * (ar * bi + ai * br);
                }
                std::fill(accr.begin(), accr.end(), 0.0);
                std::fill(acci.begin(), acci.end(), 0.0);
                for (int64_t j = 0; j < N; ++j) {
                    double* __restrict__ xr = accr.data() + p.type[j] * L;
                    double* __restrict__ xi = acci.data() + p.type[j] * L;
                    const double* __restrict__ er = cre[2].data() + j * L;
                    const double* __restrict__ ei = cim[2].data() + j * L;
                    const double u = ur[j], v = ui[j];
                    if (dw) {
                        const double* __restrict__ yh = xhl.data() + (j * L + hi) * L;
                        const double* __restrict__ yk = xkl.data() + (j * L + ki) * L;
#pragma omp simd
                        for (int l = 0; l < L; ++l) {
                            const double c = yh[l] * yk[l];
                            xr[l] += c * (u * er[l] - v * ei[l]);
                            xi[l] += c * (u * ei[l] + v * er[l]);
                        }
                    } else {
#pragma omp simd
                        for (int l = 0; l < L; ++l) {
                            xr[l] += u * er[l] - v * ei[l];
                            xi[l] += u * ei[l] + v * er[l];
                        }
                    }
                }
                const int64_t base = (static_cast<int64_t>(hi) * L + ki) * L;
                const double h = hi - H, k = ki - H;
                const double q0 = G[0] * h * h + G[1] * k * k + 2.0 * G[3] * h * k;
                const double q1 = 2.0 * (G[4] * h + G[5] * k), q2 = G[2];
                const double* gl;
                int64_t gstride;
                if (p.g) {
                    gl = p.g + base;
                    gstride = M;
                } else {
                    gaussian_line(p, H, q0, q1, q2, gline.data());
                    gl = gline.data();
                    gstride = L;
                }
                for (int l = 0; l < L; ++l) {
                    double fr = 0.0, fi = 0.0;
                    for (int t = 0; t < T; ++t) {
                        const double gt = gl[t * gstride + l];
                        fr += gt * accr[t * L + l];
                        fi += gt * acci[t * L + l];
                    }
                    if (p.s2max >= 0.0 && 0.25 * (q0 + q1 * (l - H) + q2 * (l - H) * (l - H)) > p.s2max) fr = fi = 0.0;
                    F[2 * (base + l)] = fr;
                    F[2 * (base + l) + 1] = fi;
                }
            }
        }
    }
}

void list(const StructureFactorProblem& p, double* F) {
    const int64_t M = p.M, N = p.N;
    const double* G = p.metric;
#pragma omp parallel num_threads(threads(p.num_threads))
    {
        std::vector<double> gt(p.T);
#pragma omp for schedule(static)
        for (int64_t m = 0; m < M; ++m) {
            const double h = p.hkl[3 * m], k = p.hkl[3 * m + 1], l = p.hkl[3 * m + 2];
            const double q = G[0] * h * h + G[1] * k * k + G[2] * l * l + 2.0 * (G[3] * h * k + G[4] * h * l + G[5] * k * l);
            const double s2 = 0.25 * q;
            if (p.s2max >= 0.0 && s2 > p.s2max) {
                F[2 * m] = F[2 * m + 1] = 0.0;
                continue;
            }
            for (int t = 0; t < p.T; ++t) {
                if (p.g) {
                    gt[t] = p.g[static_cast<int64_t>(t) * M + m];
                } else {
                    double f = p.gc[t];
                    for (int i = 0; i < p.K; ++i) f += p.ga[t * p.K + i] * std::exp(-p.gb[t * p.K + i] * s2);
                    gt[t] = f;
                }
            }
            double fr = 0.0, fi = 0.0;
            for (int64_t j = 0; j < N; ++j) {
                double c, s;
                phase(h * p.frac[3 * j] + k * p.frac[3 * j + 1] + l * p.frac[3 * j + 2], c, s);
                double w = p.occ[j] * gt[p.type[j]];
                if (p.B) w *= std::exp(-p.B[j] * s2);
                fr += w * c;
                fi += w * s;
            }
            F[2 * m] = fr;
            F[2 * m + 1] = fi;
        }
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
