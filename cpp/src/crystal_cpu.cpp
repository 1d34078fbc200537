// CPU crystal entry points (see xstructure/crystal.hpp): structure factors and powder reflections dispatch to
// the AVX2+FMA build of crystal_cpu_kernels.inc when the CPU has it; density grids (exponential-bound) are here.
#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "xstructure/crystal.hpp"
#include "xstructure/crystal_grid.hpp"
#include "xstructure/runtime.hpp"

namespace xstructure {


#define XS_DECLARE_CRYSTAL_ISA(ns)                                                  \
    namespace ns {                                                                  \
    void structure_factors(const StructureFactorProblem& p, double* F);             \
    PowderResult powder_reflections(const PowderBatch& p);                          \
    }
XS_DECLARE_CRYSTAL_ISA(isa_base)
#ifdef XSTRUCTURE_HAS_AVX2
XS_DECLARE_CRYSTAL_ISA(isa_avx2)
#endif

void structure_factors_cpu(const StructureFactorProblem& p, double* F) {
#ifdef XSTRUCTURE_HAS_AVX2
    if (cpu_has_avx2_fma()) return isa_avx2::structure_factors(p, F);
#endif
    isa_base::structure_factors(p, F);
}

PowderResult powder_reflections_cpu(const PowderBatch& p) {
#ifdef XSTRUCTURE_HAS_AVX2
    if (cpu_has_avx2_fma()) return isa_avx2::powder_reflections(p);
#endif
    return isa_base::powder_reflections(p);
}

namespace {

int threads(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

double max_sigma(const DensityProblem& p) {
    double m = 0.0;
    for (int64_t j = 0; j < p.N; ++j) m = std::max(m, p.sigma[j]);
    return m;
}

}  // namespace

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
                double r[3];
                grid::load_position(pos + (b * p.N + j) * 3, r);
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
            double r[3], acc[3];
            grid::load_position(pos + (b * p.N + j) * 3, r);
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
