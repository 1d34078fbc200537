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
    // Cross terms exp(-B g13 h l / 2), exp(-B g23 k l / 2) and exp(-B g12 h k / 2), (N, L, L) each.
    std::vector<double> xhl, xkl, xhk;
    if (dw) {
        xhl.resize(N * L * L);
        xkl.resize(N * L * L);
        xhk.resize(N * L * L);
        // exp(-B g h l / 2) = r^l with r = exp(-B g h / 2): one exponential per (atom, h), then powers
        // outwards from l = 0 (|l| <= H multiplications, ~1e-15 relative)
        auto fill = [&](std::vector<double>& x, double gij, int64_t j) {
            for (int h = -H; h <= H; ++h) {
                double* row = x.data() + (j * L + h + H) * L + H;
                const double r = std::exp(-0.5 * p.B[j] * gij * h), ri = 1.0 / r;
                row[0] = 1.0;
                double up = 1.0, dn = 1.0;
                for (int l = 1; l <= H; ++l) {
                    up *= r;
                    dn *= ri;
                    row[l] = up;
                    row[-l] = dn;
                }
            }
        };
        for (int64_t j = 0; j < N; ++j) {
            fill(xhl, G[4], j);
            fill(xkl, G[5], j);
            fill(xhk, G[3], j);
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
                    if (dw) w *= diag[0][j * L + hi] * diag[1][j * L + ki] * xhk[(j * L + hi) * L + ki];
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

namespace xstructure {

PowderResult powder_reflections_cpu(const PowderBatch& p) {
    constexpr double kDeg = 57.295779513082320876798154814105;
    struct Refl {
        int32_t h, k, l;
        double tth, g, I;
    };
    struct Peak {
        int64_t first, n;
        double tth, d, I;
        int32_t rep[3];
    };
    std::vector<std::vector<Refl>> per(p.C);
    std::vector<std::vector<Peak>> peaks(p.C);
    const double gmax = 2.0 * std::sin(p.tth_hi / kDeg / 2.0) / p.lambda;
    const double gmin = 2.0 * std::sin(p.tth_lo / kDeg / 2.0) / p.lambda;
    const double hi2 = gmax * gmax * (1 + 1e-12), lo2 = gmin * gmin * (1 - 1e-12);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads(p.num_threads))
    for (int64_t c = 0; c < p.C; ++c) {
        // reciprocal metric G* = R R^T with R = inv(cell)^T (rows a*, b*, c*), and |h| <= |G| |a|
        const double* cell = p.cells + 9 * c;
        double inv[9];
        grid::invert3(cell, inv);
        double R[9];
        for (int i = 0; i < 3; ++i)
            for (int k2 = 0; k2 < 3; ++k2) R[3 * i + k2] = inv[3 * k2 + i];
        auto dot = [&](int i, int k2) { return R[3 * i] * R[3 * k2] + R[3 * i + 1] * R[3 * k2 + 1] + R[3 * i + 2] * R[3 * k2 + 2]; };
        const double G[6] = {dot(0, 0), dot(1, 1), dot(2, 2), dot(0, 1), dot(0, 2), dot(1, 2)};
        const int64_t a0 = p.atom_off[c], a1 = p.atom_off[c + 1], t0 = p.type_off[c];
        const int T = static_cast<int>(p.type_off[c + 1] - t0);
        int n[3];
        for (int i = 0; i < 3; ++i) {
            const double len = std::sqrt(cell[3 * i] * cell[3 * i] + cell[3 * i + 1] * cell[3 * i + 1] + cell[3 * i + 2] * cell[3 * i + 2]);
            n[i] = static_cast<int>(std::floor(gmax * len + 1e-9));
        }
        std::vector<double> f(T);
        std::vector<Refl>& out = per[c];
        // per-axis phase tables exp(2 pi i h x_j), laid out (h, atom) so that the atom loop is contiguous: a
        // reflection's phase is then two complex products
        const int64_t na = a1 - a0;
        std::vector<double> pr[3], pi[3];
        for (int ax = 0; ax < 3; ++ax) {
            const int w = 2 * n[ax] + 1;
            pr[ax].resize(na * w);
            pi[ax].resize(na * w);
            // e^{2 pi i h x} = (e^{2 pi i x})^h: powers of one phase (|h| <= n, ~n ulps), conjugates for h < 0
            for (int64_t j = 0; j < na; ++j) {
                double c1, s1;
                phase(p.frac[3 * (a0 + j) + ax], c1, s1);
                double cr = 1.0, ci = 0.0;
                for (int h = 0; h <= n[ax]; ++h) {
                    pr[ax][(h + n[ax]) * na + j] = cr;
                    pi[ax][(h + n[ax]) * na + j] = ci;
                    pr[ax][(n[ax] - h) * na + j] = cr;
                    pi[ax][(n[ax] - h) * na + j] = -ci;
                    const double t = cr * c1 - ci * s1;
                    ci = cr * s1 + ci * c1;
                    cr = t;
                }
            }
        }
        // atoms come sorted by type: type t owns atoms [ts[t], ts[t + 1])
        std::vector<int64_t> ts(T + 1, na);
        for (int t = T - 1; t >= 0; --t)
            for (int64_t j = 0; j < na; ++j)
                if (p.type[a0 + j] == t) { ts[t] = j; break; }
        for (int t = T - 1; t >= 0; --t) ts[t] = std::min(ts[t], ts[t + 1]);
        // Along a row (h, k), s^2 = (q0 + q1 l + q2 l^2) / 4: every exp(-b s^2) (form-factor Gaussians and
        // Debye-Waller factors) follows its neighbour in l by a ratio that changes by a constant factor.
        const int KT = T * p.K;
        std::vector<double> gval(KT), grat(KT), gkap(KT), dval, drat, dkap, wj(na), ur(na), ui(na);
        if (p.B) {
            dval.resize(na);
            drat.resize(na);
            dkap.resize(na);
        }
        const double q2 = G[2];
        for (int h = 0; h <= n[0]; ++h)
            for (int k = -n[1]; k <= n[1]; ++k) {
                if (h == 0 && k < 0) continue;
                const double q0 = G[0] * h * h + G[1] * k * k + 2.0 * G[3] * h * k;
                const double q1 = 2.0 * (G[4] * h + G[5] * k);
                const double l0 = -n[2];
                const double qs = q0 + q1 * l0 + q2 * l0 * l0, dq = q1 + q2 * (2.0 * l0 + 1.0);
                for (int t = 0; t < T; ++t)
                    for (int i = 0; i < p.K; ++i) {
                        const double b = 0.25 * p.gb[(t0 + t) * p.K + i];
                        gval[t * p.K + i] = p.ga[(t0 + t) * p.K + i] * std::exp(-b * qs);
                        grat[t * p.K + i] = std::exp(-b * dq);
                        gkap[t * p.K + i] = std::exp(-2.0 * b * q2);
                    }
                for (int64_t j = 0; j < na; ++j) {  // u_j = occ_j e_h(x_j) e_k(y_j), fixed along the row
                    const double ar = pr[0][(h + n[0]) * na + j], ai = pi[0][(h + n[0]) * na + j];
                    const double br = pr[1][(k + n[1]) * na + j], bi = pi[1][(k + n[1]) * na + j];
                    ur[j] = p.occ[a0 + j] * (ar * br - ai * bi);
                    ui[j] = p.occ[a0 + j] * (ar * bi + ai * br);
                }
                if (p.B)
                    for (int64_t j = 0; j < na; ++j) {
                        const double b = 0.25 * p.B[a0 + j];
                        dval[j] = std::exp(-b * qs);
                        drat[j] = std::exp(-b * dq);
                        dkap[j] = std::exp(-2.0 * b * q2);
                    }
                for (int l = -n[2]; l <= n[2]; ++l) {
                    const double q = q0 + q1 * l + q2 * l * l;
                    const bool take = !(h == 0 && k == 0 && l <= 0) && q <= hi2 && q >= lo2 && q > 0;
                    if (take) {
                        const double g = std::sqrt(q);
                        const double x = std::min(1.0, p.lambda * g / 2.0);
                        const double tth = 2.0 * std::asin(x) * kDeg;
                        if (tth >= p.tth_lo && tth <= p.tth_hi && tth < 180.0) {
                            for (int t = 0; t < T; ++t) {
                                double v = p.gc[t0 + t];
                                for (int i = 0; i < p.K; ++i) v += gval[t * p.K + i];
                                f[t] = v;
                            }
                            const double* __restrict__ Cr = pr[2].data() + (l + n[2]) * na;
                            const double* __restrict__ Ci = pi[2].data() + (l + n[2]) * na;
                            const double* __restrict__ Ur = ur.data();
                            const double* __restrict__ Ui = ui.data();
                            if (p.B)
                                for (int64_t j = 0; j < na; ++j) wj[j] = dval[j];
                            double fr = 0.0, fi = 0.0;
                            for (int t = 0; t < T; ++t) {
                                double sr = 0.0, si = 0.0;
                                if (p.B) {
#pragma omp simd reduction(+ : sr, si)
                                    for (int64_t j = ts[t]; j < ts[t + 1]; ++j) {
                                        sr += wj[j] * (Ur[j] * Cr[j] - Ui[j] * Ci[j]);
                                        si += wj[j] * (Ur[j] * Ci[j] + Ui[j] * Cr[j]);
                                    }
                                } else {
#pragma omp simd reduction(+ : sr, si)
                                    for (int64_t j = ts[t]; j < ts[t + 1]; ++j) {
                                        sr += Ur[j] * Cr[j] - Ui[j] * Ci[j];
                                        si += Ur[j] * Ci[j] + Ui[j] * Cr[j];
                                    }
                                }
                                fr += f[t] * sr;
                                fi += f[t] * si;
                            }
                            double I = 2.0 * (fr * fr + fi * fi);
                            if (p.lp) {  // sin θ = x: sin²θ = x², cos θ = √(1 − x²), cos 2θ = 1 − 2x²
                                const double c2 = 1.0 - 2.0 * x * x;
                                I *= (1.0 + c2 * c2) / (x * x * std::sqrt(1.0 - x * x));
                            }
                            out.push_back({h, k, l, tth, g, I});
                        }
                    }
                    for (int i = 0; i < KT; ++i) {
                        gval[i] *= grat[i];
                        grat[i] *= gkap[i];
                    }
                    if (p.B)
                        for (int64_t j = 0; j < na; ++j) {
                            dval[j] *= drat[j];
                            drat[j] *= dkap[j];
                        }
                }
            }
        std::sort(out.begin(), out.end(), [](const Refl& a, const Refl& b) {
            if (a.tth != b.tth) return a.tth < b.tth;
            if (a.h != b.h) return a.h > b.h;
            if (a.k != b.k) return a.k > b.k;
            return a.l > b.l;
        });
        // runs of reflections within `tolerance` of their neighbour are one peak
        std::vector<Peak>& pks = peaks[c];
        for (size_t i = 0; i < out.size(); ++i) {
            const Refl& x = out[i];
            if (i == 0 || x.tth - out[i - 1].tth > p.tolerance) pks.push_back({static_cast<int64_t>(i), 0, 0.0, 0.0, 0.0, {0, 0, 0}});
            Peak& pk = pks.back();
            const int32_t cand[2][3] = {{x.h, x.k, x.l}, {-x.h, -x.k, -x.l}};
            for (int m = 0; m < 2; ++m) {  // the representative: the largest (h, k, l), Friedel mates included
                const int32_t* cd = cand[m];
                const bool larger = cd[0] != pk.rep[0] ? cd[0] > pk.rep[0] : cd[1] != pk.rep[1] ? cd[1] > pk.rep[1] : cd[2] > pk.rep[2];
                if ((pk.n == 0 && m == 0) || larger)
                    for (int e = 0; e < 3; ++e) pk.rep[e] = cd[e];
            }
            pk.n += 1;
            pk.tth += x.tth;
            pk.d += 1.0 / x.g;
            pk.I += x.I;
        }
    }
    // Offsets, then every crystal's reflections and peaks copied into place in parallel.
    PowderResult r;
    r.refl_off.assign(p.C + 1, 0);
    r.peak_off.assign(p.C + 1, 0);
    for (int64_t c = 0; c < p.C; ++c) {
        r.refl_off[c + 1] = r.refl_off[c] + static_cast<int64_t>(per[c].size());
        r.peak_off[c + 1] = r.peak_off[c] + static_cast<int64_t>(peaks[c].size());
    }
    const size_t R = static_cast<size_t>(r.refl_off[p.C]), P = static_cast<size_t>(r.peak_off[p.C]);
    r.hkl.resize(3 * R);
    r.tth.resize(R);
    r.g.resize(R);
    r.I.resize(R);
    r.peak_tth.resize(P);
    r.peak_d.resize(P);
    r.peak_I.resize(P);
    r.peak_first.resize(P);
    r.peak_n.resize(P);
    r.peak_hkl.resize(3 * P);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads(p.num_threads))
    for (int64_t c = 0; c < p.C; ++c) {
        const int64_t b = r.refl_off[c], q0 = r.peak_off[c];
        for (size_t i = 0; i < per[c].size(); ++i) {
            const Refl& x = per[c][i];
            r.hkl[3 * (b + i)] = x.h;
            r.hkl[3 * (b + i) + 1] = x.k;
            r.hkl[3 * (b + i) + 2] = x.l;
            r.tth[b + i] = x.tth;
            r.g[b + i] = x.g;
            r.I[b + i] = x.I;
        }
        for (size_t i = 0; i < peaks[c].size(); ++i) {
            const Peak& pk = peaks[c][i];
            r.peak_tth[q0 + i] = pk.tth / double(pk.n);
            r.peak_d[q0 + i] = pk.d / double(pk.n);
            r.peak_I[q0 + i] = pk.I;
            r.peak_first[q0 + i] = b + pk.first;
            r.peak_n[q0 + i] = pk.n;
            for (int m = 0; m < 3; ++m) r.peak_hkl[3 * (q0 + i) + m] = pk.rep[m];
        }
    }
    return r;
}

}  // namespace xstructure
