// Runtime dispatch of the CPU Debye kernels to the best instruction set this processor has.
#include <new>
#include <stdexcept>

#include "xstructure/debye.hpp"
#include "xstructure/runtime.hpp"

namespace xstructure {

#define XS_DECLARE_ISA(ns)                                                                        \
    namespace ns {                                                                                \
    bool forward_f32(const DebyeProblem&, const float*, float*);                                  \
    bool forward_f64(const DebyeProblem&, const double*, double*);                                \
    bool backward_f32(const DebyeProblem&, const float*, const float*, float*);                   \
    bool backward_f64(const DebyeProblem&, const double*, const double*, double*);                \
    bool jacobian_f32(const DebyeProblem&, const float*, float*, float*);                         \
    bool jacobian_f64(const DebyeProblem&, const double*, double*, double*);                      \
    bool gauss_newton(const DebyeProblem&, const double*, const double*, int64_t, const double*,   \
                      const double*, const double*, bool, double*, double*);                      \
    }
XS_DECLARE_ISA(isa_base)
#ifdef XSTRUCTURE_HAS_AVX2
XS_DECLARE_ISA(isa_avx2)
#endif
#undef XS_DECLARE_ISA

namespace {
void check(bool ok) {
    if (!ok) throw std::bad_alloc();
}
}  // namespace

#ifdef XSTRUCTURE_HAS_AVX2
#define XS_DISPATCH(fn, ...) check(cpu_has_avx2_fma() ? isa_avx2::fn(__VA_ARGS__) : isa_base::fn(__VA_ARGS__))
#else
#define XS_DISPATCH(fn, ...) check(isa_base::fn(__VA_ARGS__))
#endif

template <>
void debye_forward_cpu<float>(const DebyeProblem& p, const float* pos, float* out) {
    XS_DISPATCH(forward_f32, p, pos, out);
}
template <>
void debye_forward_cpu<double>(const DebyeProblem& p, const double* pos, double* out) {
    XS_DISPATCH(forward_f64, p, pos, out);
}
template <>
void debye_backward_cpu<float>(const DebyeProblem& p, const float* pos, const float* g, float* gp) {
    XS_DISPATCH(backward_f32, p, pos, g, gp);
}
template <>
void debye_backward_cpu<double>(const DebyeProblem& p, const double* pos, const double* g, double* gp) {
    XS_DISPATCH(backward_f64, p, pos, g, gp);
}
template <>
void debye_jacobian_cpu<float>(const DebyeProblem& p, const float* pos, float* out, float* jac) {
    XS_DISPATCH(jacobian_f32, p, pos, out, jac);
}
template <>
void debye_jacobian_cpu<double>(const DebyeProblem& p, const double* pos, double* out, double* jac) {
    XS_DISPATCH(jacobian_f64, p, pos, out, jac);
}
void debye_gauss_newton_cpu(const DebyeProblem& p, const double* pos, const double* L, int64_t M, const double* y,
                            const double* w, const double* z, bool mixed, double* out, double* dz) {
    XS_DISPATCH(gauss_newton, p, pos, L, M, y, w, z, mixed, out, dz);
}

}  // namespace xstructure
