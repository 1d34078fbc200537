// Batched Kabsch RMSD on the CPU: OpenMP over pairs, float64 arithmetic per pair.
#include "xstructure/kabsch.hpp"

#ifdef _OPENMP
#include <omp.h>
static int omp_default_threads() { return omp_get_max_threads(); }
#else
static int omp_default_threads() { return 1; }
#endif

namespace xstructure {

template <typename T>
void kabsch_rmsd_cpu(const RmsdProblem& p, const T* a, const T* b, T* rmsd, T* R, T* t) {
    const int nt = p.num_threads;
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : omp_default_threads())
    for (int64_t k = 0; k < p.B; ++k) {
        double msd, Rk[9], ca[3], cb[3];
        kabsch_pair(p, a + k * p.a_stride, b + k * p.b_stride, &msd, Rk, ca, cb, R != nullptr || t != nullptr);
        rmsd[k] = static_cast<T>(msd < 0.0 ? 0.0 : sqrt(msd));  // NaN propagates
        if (R) for (int i = 0; i < 9; ++i) R[9 * k + i] = static_cast<T>(Rk[i]);
        if (t)
            for (int r = 0; r < 3; ++r)
                t[3 * k + r] = static_cast<T>(cb[r] - (Rk[3 * r] * ca[0] + Rk[3 * r + 1] * ca[1] + Rk[3 * r + 2] * ca[2]));
    }
}

template <typename T>
void kabsch_rmsd_backward_cpu(const RmsdProblem& p, const T* a, const T* b, const T* grad_rmsd, T* ga, T* gb) {
    const int nt = p.num_threads;
    const int64_t n3 = 3 * p.N;
#pragma omp parallel num_threads(nt > 0 ? nt : omp_default_threads())
    {
        double* da = new double[n3 > 0 ? n3 : 1];
        double* db = new double[n3 > 0 ? n3 : 1];
#pragma omp for schedule(static)
        for (int64_t k = 0; k < p.B; ++k) {
            double msd, Rk[9], ca[3], cb[3];
            const T* ak = a + k * p.a_stride;
            const T* bk = b + k * p.b_stride;
            kabsch_pair(p, ak, bk, &msd, Rk, ca, cb);
            kabsch_pair_grad(p, ak, bk, static_cast<double>(grad_rmsd[k]), msd, Rk, ca, cb, da, db);
            for (int64_t i = 0; i < n3; ++i) {
                ga[k * n3 + i] = static_cast<T>(da[i]);
                gb[k * n3 + i] = static_cast<T>(db[i]);
            }
        }
        delete[] da;
        delete[] db;
    }
}

template void kabsch_rmsd_cpu<float>(const RmsdProblem&, const float*, const float*, float*, float*, float*);
template void kabsch_rmsd_cpu<double>(const RmsdProblem&, const double*, const double*, double*, double*, double*);
template void kabsch_rmsd_backward_cpu<float>(const RmsdProblem&, const float*, const float*, const float*, float*,
                                              float*);
template void kabsch_rmsd_backward_cpu<double>(const RmsdProblem&, const double*, const double*, const double*,
                                               double*, double*);

}  // namespace xstructure
