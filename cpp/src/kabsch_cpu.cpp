// Batched Kabsch RMSD on the CPU: OpenMP over pairs, float64 arithmetic per pair.
#include "xstructure/kabsch.hpp"
#include "xstructure/runtime.hpp"

#ifdef _OPENMP
#include <omp.h>
static int omp_default_threads() { return omp_get_max_threads(); }
#else
static int omp_default_threads() { return 1; }
#endif

namespace xstructure {


#define XS_DECLARE_BLOCK(ns)                                                                                  \
    namespace ns {                                                                                            \
    void block_f32(const RmsdProblem&, const float*, const float*, int64_t, int, double*, bool*);              \
    void block_f64(const RmsdProblem&, const double*, const double*, int64_t, int, double*, bool*);            \
    }
XS_DECLARE_BLOCK(isa_base)
#ifdef XSTRUCTURE_HAS_AVX2
XS_DECLARE_BLOCK(isa_avx2)
#endif
#undef XS_DECLARE_BLOCK

namespace {
constexpr int LANES = 8;  // kabsch_cpu_block.inc

void block(const RmsdProblem& p, const float* a, const float* b, int64_t k0, int nl, double* msd, bool* ok) {
#ifdef XSTRUCTURE_HAS_AVX2
    if (cpu_has_avx2_fma()) return isa_avx2::block_f32(p, a, b, k0, nl, msd, ok);
#endif
    isa_base::block_f32(p, a, b, k0, nl, msd, ok);
}
void block(const RmsdProblem& p, const double* a, const double* b, int64_t k0, int nl, double* msd, bool* ok) {
#ifdef XSTRUCTURE_HAS_AVX2
    if (cpu_has_avx2_fma()) return isa_avx2::block_f64(p, a, b, k0, nl, msd, ok);
#endif
    isa_base::block_f64(p, a, b, k0, nl, msd, ok);
}
}  // namespace

template <typename T>
void kabsch_rmsd_cpu(const RmsdProblem& p, const T* a, const T* b, T* rmsd, T* R, T* t) {
    const int nt = p.num_threads;
    if (!R && !t && p.align) {
        // RMSD only: blocks of LANES pairs vectorised across pairs; lanes that fail the accuracy guards take
        // the scalar full path (rotation + direct evaluation).
        const int64_t nblocks = (p.B + LANES - 1) / LANES;
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : omp_default_threads())
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t k0 = blk * LANES;
            const int nl = static_cast<int>(p.B - k0 < LANES ? p.B - k0 : LANES);
            double msd[LANES];
            bool ok[LANES];
            if (p.a_stride == 0 && p.b_stride != 0) {  // symmetric: the one reference goes in b
                RmsdProblem q = p;
                q.a_stride = p.b_stride;
                q.b_stride = 0;
                block(q, b, a, k0, nl, msd, ok);
            } else {
                block(p, a, b, k0, nl, msd, ok);
            }
            for (int l = 0; l < nl; ++l) {
                const int64_t k = k0 + l;
                if (!ok[l]) {
                    double Rk[9], ca[3], cb[3];
                    kabsch_pair(p, a + k * p.a_stride, b + k * p.b_stride, &msd[l], Rk, ca, cb, true);
                }
                rmsd[k] = static_cast<T>(msd[l] < 0.0 ? 0.0 : sqrt(msd[l]));  // NaN propagates
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : omp_default_threads())
    for (int64_t k = 0; k < p.B; ++k) {
        double msd, Rk[9], ca[3], cb[3];
        kabsch_pair(p, a + k * p.a_stride, b + k * p.b_stride, &msd, Rk, ca, cb, R != nullptr || t != nullptr);
        store_pair(k, msd, Rk, ca, cb, rmsd, R, t);
    }
}

template <typename T>
void kabsch_rmsd_backward_cpu(const RmsdProblem& p, const T* a, const T* b, const T* grad_rmsd, T* ga, T* gb) {
    const int nt = p.num_threads;
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : omp_default_threads())
    for (int64_t k = 0; k < p.B; ++k) {
        double msd, Rk[9], ca[3], cb[3];
        const T* ak = a + k * p.a_stride;
        const T* bk = b + k * p.b_stride;
        kabsch_pair(p, ak, bk, &msd, Rk, ca, cb);
        kabsch_pair_grad(p, ak, bk, static_cast<double>(grad_rmsd[k]), msd, Rk, ca, cb, ga + k * 3 * p.N,
                         gb + k * 3 * p.N);
    }
}

template void kabsch_rmsd_cpu<float>(const RmsdProblem&, const float*, const float*, float*, float*, float*);
template void kabsch_rmsd_cpu<double>(const RmsdProblem&, const double*, const double*, double*, double*, double*);
template void kabsch_rmsd_backward_cpu<float>(const RmsdProblem&, const float*, const float*, const float*, float*,
                                              float*);
template void kabsch_rmsd_backward_cpu<double>(const RmsdProblem&, const double*, const double*, const double*,
                                               double*, double*);

}  // namespace xstructure
