// Optimal superposition (Kabsch) of one pair of structures, shared by the CPU and CUDA kernels.
//
// For weighted, centred structures a', b' the rotation R maximising tr(R^T M), M = sum w a' b'^T, is
// the quaternion eigenvector of Horn's symmetric 4x4 matrix K(M) with the largest eigenvalue.  lambda_max
// comes from Newton's method on K's characteristic polynomial (Theobald's QCP, Acta Cryst. A61 (2005)
// 478); the eigenvector from the adjugate of K - lambda I, or, when lambda_max is (nearly) degenerate
// (collinear structures), from a Jacobi eigen-decomposition of K.  The RMSD is then evaluated directly,
// sqrt(sum w |R a' - b'|^2 / sum w), which is insensitive (to second order) to any error in R: no
// trace-formula cancellation for near-identical structures.  All arithmetic is in double.
//
// No Python, no torch.
#pragma once

#include <cmath>
#include <cstdint>

#include "xstructure/hd.hpp"

namespace xstructure {

struct RmsdProblem {
    int64_t B = 0;                   // pairs
    int64_t N = 0;                   // atoms per structure
    int64_t a_stride = 0;            // elements between consecutive frames of a (0: one a for all pairs)
    int64_t b_stride = 0;            // likewise for b
    const double* weights = nullptr; // (N,) or null for equal weights
    bool align = true;               // superpose before measuring
    bool reflection = false;         // also allow improper rotations
    int num_threads = 0;
};

namespace kabsch_detail {

XS_HD double det3(const double m[9]) {
    return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
           m[2] * (m[3] * m[7] - m[4] * m[6]);
}

// Horn's K for M (row-major, M[3*i+j] = sum w a_i b_j).
XS_HD void horn(const double* S, double K[16]) {
    const double Sxx = S[0], Sxy = S[1], Sxz = S[2], Syx = S[3], Syy = S[4], Syz = S[5], Szx = S[6], Szy = S[7],
                 Szz = S[8];
    K[0] = Sxx + Syy + Szz; K[1] = Syz - Szy;        K[2] = Szx - Sxz;         K[3] = Sxy - Syx;
    K[4] = K[1];            K[5] = Sxx - Syy - Szz;  K[6] = Sxy + Syx;         K[7] = Szx + Sxz;
    K[8] = K[2];            K[9] = K[6];             K[10] = -Sxx + Syy - Szz; K[11] = Syz + Szy;
    K[12] = K[3];           K[13] = K[7];            K[14] = K[11];            K[15] = -Sxx - Syy + Szz;
}

XS_HD double minor3(const double A[16], int r0, int r1, int r2, int c0, int c1, int c2) {
    return A[4 * r0 + c0] * (A[4 * r1 + c1] * A[4 * r2 + c2] - A[4 * r1 + c2] * A[4 * r2 + c1]) -
           A[4 * r0 + c1] * (A[4 * r1 + c0] * A[4 * r2 + c2] - A[4 * r1 + c2] * A[4 * r2 + c0]) +
           A[4 * r0 + c2] * (A[4 * r1 + c0] * A[4 * r2 + c1] - A[4 * r1 + c1] * A[4 * r2 + c0]);
}

XS_HD double det4(const double A[16]) {
    return A[0] * minor3(A, 1, 2, 3, 1, 2, 3) - A[1] * minor3(A, 1, 2, 3, 0, 2, 3) +
           A[2] * minor3(A, 1, 2, 3, 0, 1, 3) - A[3] * minor3(A, 1, 2, 3, 0, 1, 2);
}

// p(x) = x^4 + c2 x^2 + c1 x + c0 and p'(x), the Newton step's numerator and denominator; V is double or a
// vector of doubles (the CPU block path runs four lanes at once).
template <typename V>
XS_HD void quartic(const V& x, const V& c2, const V& c1, const V& c0, V* p, V* dp) {
    const V x2 = x * x;
    const V b = (x2 + c2) * x;
    const V a = b + c1;
    *dp = 2.0 * x2 * x + b + a;
    *p = a * x + c0;
}

// Newton's answer lam is lambda_max when it settled (a step of no more than 1e-15 of its value) on a root no
// higher than the upper bound G/2, up to rounding.
XS_HD bool lambda_settled(bool converged, double lam, double upper) {
    return converged && lam <= upper * (1.0 + 1e-12) + 1e-300;
}

}  // namespace kabsch_detail

// The trace-formula msd (G - 2 lambda) / W, always written to *msd, and whether it can be used: lambda is a
// simple root (|p'(lambda)| well away from 0, so accurate to ~1e-15 relative) and the msd is not so small that
// the cancellation in G - 2 lambda matters (msd > 1e-6 G / W keeps the RMSD error below ~1e-9 Å per Å of
// structure size).  Shared by the scalar path (trace_msd, CPU and CUDA) and the CPU block path.
XS_HD bool trace_msd_safe(double lam, double dp, double G, double W, double* msd) {
    const double s = fabs(lam) + 1e-300;
    *msd = (G - 2.0 * lam) / W;
    return fabs(dp) > 1e-4 * s * s * s && *msd > 1e-6 * G / W;
}

namespace kabsch_detail {

// Largest eigenvalue of K by Newton's method on det(K - x I) = x^4 + c2 x^2 + c1 x + c0, from the upper bound
// G/2.  Returns false when Newton did not settle (a double root that rounding turned into a complex pair).
XS_HD bool lambda_max(const double K[16], const double S[9], double upper, double* lam, double* dp = nullptr) {
    double ss = 0.0;
    for (int i = 0; i < 9; ++i) ss += S[i] * S[i];
    const double c2 = -2.0 * ss;
    const double c1 = -8.0 * det3(S);
    const double c0 = det4(K);
    double x = upper, den = 0.0;
    bool converged = false;
    for (int it = 0; it < 60; ++it) {
        double px;
        quartic(x, c2, c1, c0, &px, &den);
        if (den == 0.0) break;
        const double dx = px / den;
        x -= dx;
        if (fabs(dx) <= 1e-15 * fabs(x) + 1e-300) { converged = true; break; }
    }
    *lam = x;
    if (dp) *dp = den;
    return lambda_settled(converged, x, upper);
}

// Jacobi eigen-decomposition of a symmetric 4x4; returns the eigenvector of the largest eigenvalue in q.
XS_HD void jacobi_top(const double Kin[16], double q[4]) {
    double A[16], V[16];
    for (int i = 0; i < 16; ++i) { A[i] = Kin[i]; V[i] = (i % 5 == 0) ? 1.0 : 0.0; }
    for (int sweep = 0; sweep < 30; ++sweep) {
        double off = 0.0, diag = 0.0;
        for (int i = 0; i < 4; ++i) {
            diag += A[5 * i] * A[5 * i];
            for (int j = i + 1; j < 4; ++j) off += A[4 * i + j] * A[4 * i + j];
        }
        if (off <= 1e-32 * diag || off == 0.0) break;
        for (int p = 0; p < 3; ++p)
            for (int r = p + 1; r < 4; ++r) {
                const double apr = A[4 * p + r];
                if (apr == 0.0) continue;
                const double theta = (A[4 * r + r] - A[4 * p + p]) / (2.0 * apr);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 4; ++k) {  // columns p, r
                    const double akp = A[4 * k + p], akr = A[4 * k + r];
                    A[4 * k + p] = c * akp - s * akr;
                    A[4 * k + r] = s * akp + c * akr;
                }
                for (int k = 0; k < 4; ++k) {  // rows p, r
                    const double apk = A[4 * p + k], ark = A[4 * r + k];
                    A[4 * p + k] = c * apk - s * ark;
                    A[4 * r + k] = s * apk + c * ark;
                }
                for (int k = 0; k < 4; ++k) {
                    const double vkp = V[4 * k + p], vkr = V[4 * k + r];
                    V[4 * k + p] = c * vkp - s * vkr;
                    V[4 * k + r] = s * vkp + c * vkr;
                }
            }
    }
    int best = 0;
    for (int i = 1; i < 4; ++i)
        if (A[5 * i] > A[5 * best]) best = i;
    for (int k = 0; k < 4; ++k) q[k] = V[4 * k + best];
}

// Rotation R (row-major) maximising tr(R^T S) over proper rotations, i.e. R a' ~ b'.
XS_HD void best_rotation(const double S[9], double upper, double R[9]) {
    double K[16];
    horn(S, K);
    double lam;
    bool ok = lambda_max(K, S, upper, &lam);
    double q[4] = {1.0, 0.0, 0.0, 0.0};
    if (ok) {
        double A[16];
        for (int i = 0; i < 16; ++i) A[i] = K[i] - ((i % 5 == 0) ? lam : 0.0);
        // eigenvector: the largest column of adj(A)
        double best = -1.0;
        const int rows[4][3] = {{1, 2, 3}, {0, 2, 3}, {0, 1, 3}, {0, 1, 2}};
        for (int c = 0; c < 4; ++c) {
            double v[4];
            double n2 = 0.0;
            for (int r = 0; r < 4; ++r) {
                const double sgn = ((r + c) % 2 == 0) ? 1.0 : -1.0;
                v[r] = sgn * minor3(A, rows[c][0], rows[c][1], rows[c][2], rows[r][0], rows[r][1], rows[r][2]);
                n2 += v[r] * v[r];
            }
            if (n2 > best) { best = n2; for (int r = 0; r < 4; ++r) q[r] = v[r]; }
        }
        // |adj| ~ (product of the gaps to the other eigenvalues) for a simple lambda_max; a small adjugate
        // means a (nearly) degenerate lambda_max, where the eigenvector is ill-determined: use Jacobi there.
        const double scale = fabs(lam) + 1e-300;
        ok = best > 1e-8 * scale * scale * scale * scale * scale * scale;
        if (ok) {  // and the eigen-residual must be small
            const double nq = sqrt(best);
            double res = 0.0;
            for (int r = 0; r < 4; ++r) {
                double kq = -lam * q[r];
                for (int c = 0; c < 4; ++c) kq += K[4 * r + c] * q[c];
                res += kq * kq;
            }
            ok = sqrt(res) <= 1e-10 * scale * nq;
        }
    }
    if (!ok) jacobi_top(K, q);  // degenerate or unsettled: collinear, tiny or symmetric structures
    double n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (!(n > 0.0)) { q[0] = 1.0; q[1] = q[2] = q[3] = 0.0; n = 1.0; }
    const double q0 = q[0] / n, q1 = q[1] / n, q2 = q[2] / n, q3 = q[3] / n;
    R[0] = q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3; R[1] = 2 * (q1 * q2 - q0 * q3);          R[2] = 2 * (q1 * q3 + q0 * q2);
    R[3] = 2 * (q1 * q2 + q0 * q3);          R[4] = q0 * q0 - q1 * q1 + q2 * q2 - q3 * q3; R[5] = 2 * (q2 * q3 - q0 * q1);
    R[6] = 2 * (q1 * q3 - q0 * q2);          R[7] = 2 * (q2 * q3 + q0 * q1);          R[8] = q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3;
}

}  // namespace kabsch_detail

// Largest lambda for S and the trace-formula msd, when that is safe (Newton settled, and trace_msd_safe).
// Returns false, leaving *msd alone, when the caller must take the full path.
XS_HD bool trace_msd(const double S[9], double G, double W, double* msd) {
    double K[16];
    kabsch_detail::horn(S, K);
    double lam, dp;
    const double upper = 0.5 * G + 1e-300;
    if (!kabsch_detail::lambda_max(K, S, upper, &lam, &dp)) return false;
    double m;
    if (!trace_msd_safe(lam, dp, G, W, &m)) return false;
    *msd = m;
    return true;
}

// One pair.  Outputs: msd (weighted mean squared deviation after superposition), R (3x3 row-major) and
// the centroids ca, cb, so that b ~ R (a - ca) + cb.  When align is false, R = I and the centroids are 0.
// need_rotation = false allows the trace formula (R is then left as the identity and must not be used).
template <typename T>
XS_HD void kabsch_pair(const RmsdProblem& p, const T* a, const T* b, double* msd, double R[9], double ca[3],
                       double cb[3], bool need_rotation = true) {
    const int64_t N = p.N;
    double W = 0.0;
    for (int k = 0; k < 3; ++k) { ca[k] = 0.0; cb[k] = 0.0; }
    for (int i = 0; i < 9; ++i) R[i] = (i % 4 == 0) ? 1.0 : 0.0;
    if (!p.align) {
        double s = 0.0;
        for (int64_t i = 0; i < N; ++i) {
            const double w = p.weights ? p.weights[i] : 1.0;
            W += w;
            for (int k = 0; k < 3; ++k) {
                const double d = static_cast<double>(a[3 * i + k]) - static_cast<double>(b[3 * i + k]);
                s += w * d * d;
            }
        }
        *msd = s / W;
        return;
    }
    // One pass of moments about the first atoms (a0, b0): exact centring up to rounding of in-molecule
    // differences, whatever the distance of the structures from the origin.
    const double a0[3] = {static_cast<double>(a[0]), static_cast<double>(a[1]), static_cast<double>(a[2])};
    const double b0[3] = {static_cast<double>(b[0]), static_cast<double>(b[1]), static_cast<double>(b[2])};
    double sa[3] = {0, 0, 0}, sb[3] = {0, 0, 0}, S[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, G = 0.0;
    for (int64_t i = 0; i < N; ++i) {
        const double w = p.weights ? p.weights[i] : 1.0;
        W += w;
        double x[3], y[3];
        for (int k = 0; k < 3; ++k) {
            x[k] = static_cast<double>(a[3 * i + k]) - a0[k];
            y[k] = static_cast<double>(b[3 * i + k]) - b0[k];
            sa[k] += w * x[k];
            sb[k] += w * y[k];
        }
        for (int r = 0; r < 3; ++r) {
            const double wx = w * x[r];
            S[3 * r] += wx * y[0]; S[3 * r + 1] += wx * y[1]; S[3 * r + 2] += wx * y[2];
        }
        G += w * (x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + y[0] * y[0] + y[1] * y[1] + y[2] * y[2]);
    }
    double da[3], db[3];
    for (int k = 0; k < 3; ++k) {
        da[k] = sa[k] / W;
        db[k] = sb[k] / W;
        ca[k] = a0[k] + da[k];
        cb[k] = b0[k] + db[k];
    }
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) S[3 * r + c] -= W * da[r] * db[c];
    G -= W * (da[0] * da[0] + da[1] * da[1] + da[2] * da[2] + db[0] * db[0] + db[1] * db[1] + db[2] * db[2]);
    if (G < 0.0) G = 0.0;

    if (!need_rotation) {
        double m1;
        if (trace_msd(S, G, W, &m1)) {
            if (!p.reflection) { *msd = m1; return; }
            double Sn[9], m2;
            for (int i = 0; i < 9; ++i) Sn[i] = -S[i];
            if (trace_msd(Sn, G, W, &m2)) { *msd = m1 < m2 ? m1 : m2; return; }
        }
    }

    const double upper = 0.5 * G + 1e-300;
    double Rp[9];
    kabsch_detail::best_rotation(S, upper, Rp);
    double best_msd = -1.0;
    for (int pass = 0; pass < (p.reflection ? 2 : 1); ++pass) {
        double Rc[9];
        if (pass == 0) {
            for (int i = 0; i < 9; ++i) Rc[i] = Rp[i];
        } else {  // improper: the best proper rotation of -a', then the inversion
            double Sn[9];
            for (int i = 0; i < 9; ++i) Sn[i] = -S[i];
            kabsch_detail::best_rotation(Sn, upper, Rc);
            for (int i = 0; i < 9; ++i) Rc[i] = -Rc[i];
        }
        double s = 0.0;
        for (int64_t i = 0; i < N; ++i) {
            const double w = p.weights ? p.weights[i] : 1.0;
            double x[3], y[3];
            for (int k = 0; k < 3; ++k) {
                x[k] = static_cast<double>(a[3 * i + k]) - ca[k];
                y[k] = static_cast<double>(b[3 * i + k]) - cb[k];
            }
            for (int r = 0; r < 3; ++r) {
                const double d = Rc[3 * r] * x[0] + Rc[3 * r + 1] * x[1] + Rc[3 * r + 2] * x[2] - y[r];
                s += w * d * d;
            }
        }
        s /= W;
        if (best_msd < 0.0 || s < best_msd) {
            best_msd = s;
            for (int i = 0; i < 9; ++i) R[i] = Rc[i];
        }
    }
    *msd = best_msd;
}

// Gradient of rmsd = sqrt(msd) for one pair given the optimal R (envelope theorem: R is stationary):
// d rmsd / d a_i = (w_i / (W rmsd)) R^T (R a'_i - b'_i),  d rmsd / d b_i = -(w_i / (W rmsd)) (R a'_i - b'_i).
// Zero when rmsd == 0 (a subgradient).  g scales both (the incoming gradient).
template <typename T, typename U>
XS_HD void kabsch_pair_grad(const RmsdProblem& p, const T* a, const T* b, double g, double msd, const double R[9],
                            const double ca[3], const double cb[3], U* ga, U* gb) {
    const int64_t N = p.N;
    double W = 0.0, G = 0.0;
    for (int64_t i = 0; i < N; ++i) {
        const double w = p.weights ? p.weights[i] : 1.0;
        W += w;
        for (int k = 0; k < 3; ++k) {
            const double x = static_cast<double>(a[3 * i + k]) - ca[k], y = static_cast<double>(b[3 * i + k]) - cb[k];
            G += w * (x * x + y * y);
        }
    }
    const double rmsd = sqrt(msd > 0.0 ? msd : 0.0);
    // An RMSD at the rounding level of the structure's size is an exact match: the kink of the norm, where
    // the gradient is set to the zero subgradient rather than a unit vector of rounding noise.
    const double f = (rmsd > 1e-12 * sqrt(G / W)) ? g / (W * rmsd) : 0.0;
    for (int64_t i = 0; i < N; ++i) {
        const double w = (p.weights ? p.weights[i] : 1.0) * f;
        double x[3], y[3], d[3];
        for (int k = 0; k < 3; ++k) {
            x[k] = static_cast<double>(a[3 * i + k]) - ca[k];
            y[k] = static_cast<double>(b[3 * i + k]) - cb[k];
        }
        for (int r = 0; r < 3; ++r) d[r] = R[3 * r] * x[0] + R[3 * r + 1] * x[1] + R[3 * r + 2] * x[2] - y[r];
        for (int k = 0; k < 3; ++k) {
            ga[3 * i + k] = static_cast<U>(w * (R[k] * d[0] + R[3 + k] * d[1] + R[6 + k] * d[2]));
            gb[3 * i + k] = static_cast<U>(-w * d[k]);
        }
    }
}

// Store one pair's result: rmsd[k] (NaN propagates), and when asked R[k] (3x3) and t[k] with b ~ R a + t.
template <typename T>
XS_HD void store_pair(int64_t k, double msd, const double Rk[9], const double ca[3], const double cb[3], T* rmsd,
                      T* R, T* t) {
    rmsd[k] = static_cast<T>(msd < 0.0 ? 0.0 : sqrt(msd));
    if (R)
        for (int i = 0; i < 9; ++i) R[9 * k + i] = static_cast<T>(Rk[i]);
    if (t)
        for (int r = 0; r < 3; ++r)
            t[3 * k + r] = static_cast<T>(cb[r] - (Rk[3 * r] * ca[0] + Rk[3 * r + 1] * ca[1] + Rk[3 * r + 2] * ca[2]));
}

// Batched entry points.  a: frames of N x 3 with a_stride between them (0 = one frame for all pairs); b
// likewise.  rmsd: (B,).  R (B, 9) and t (B, 3), optional (null): b ~ R a + t.
// grad: ga, gb (B, N, 3) per pair (the caller sums over broadcast frames); grad_rmsd (B,).
template <typename T>
void kabsch_rmsd_cpu(const RmsdProblem& p, const T* a, const T* b, T* rmsd, T* R, T* t);
template <typename T>
void kabsch_rmsd_backward_cpu(const RmsdProblem& p, const T* a, const T* b, const T* grad_rmsd, T* ga, T* gb);
template <typename T>
void kabsch_rmsd_cuda(const RmsdProblem& p, const T* a, const T* b, T* rmsd, T* R, T* t, void* stream);
template <typename T>
void kabsch_rmsd_backward_cuda(const RmsdProblem& p, const T* a, const T* b, const T* grad_rmsd, T* ga, T* gb,
                               void* stream);

}  // namespace xstructure
