// Python bindings of the Debye kernels: buffers cross as integer addresses plus sizes; the Python layer
// (xstructure/_backend.py) validates shapes and dtypes, keeps the arrays alive and passes the stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "xstructure/debye.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

using namespace bind;

DebyeProblem make_problem(int64_t B, int64_t N, int64_t Q, int32_t E, std::uintptr_t species, std::uintptr_t q,
                          bool uniform, double q0, double dq, std::uintptr_t H, std::uintptr_t beta,
                          int num_threads) {
    if (B < 0 || N < 0 || Q < 0 || E < 1) throw std::invalid_argument("debye: negative size or no species");
    DebyeProblem p;
    p.B = B; p.N = N; p.Q = Q; p.E = E;
    p.species = cptr<int32_t>(species);
    p.q = cptr<double>(q);
    p.uniform = uniform; p.q0 = q0; p.dq = dq;
    p.H = cptr<double>(H);
    p.beta = beta ? cptr<double>(beta) : nullptr;
    p.num_threads = num_threads;
    return p;
}

void forward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t Q, int32_t E,
             std::uintptr_t species, std::uintptr_t q, bool uniform, double q0, double dq, std::uintptr_t H,
             std::uintptr_t beta, std::uintptr_t pos, std::uintptr_t out, std::uintptr_t stream, int num_threads) {
    const DebyeProblem p = make_problem(B, N, Q, E, species, q, uniform, q0, dq, H, beta, num_threads);
    dispatch(device, dtype, "debye", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>) debye_forward_cpu<T>(p, cptr<T>(pos), mptr<T>(out));
        else debye_forward_cuda<T>(p, cptr<T>(pos), mptr<T>(out), stream_ptr(stream));
    });
}

void backward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t Q, int32_t E,
              std::uintptr_t species, std::uintptr_t q, bool uniform, double q0, double dq, std::uintptr_t H,
              std::uintptr_t pos, std::uintptr_t grad_out, std::uintptr_t grad_pos, std::uintptr_t stream,
              int num_threads) {
    const DebyeProblem p = make_problem(B, N, Q, E, species, q, uniform, q0, dq, H, 0, num_threads);
    dispatch(device, dtype, "debye", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>)
            debye_backward_cpu<T>(p, cptr<T>(pos), cptr<T>(grad_out), mptr<T>(grad_pos));
        else
            debye_backward_cuda<T>(p, cptr<T>(pos), cptr<T>(grad_out), mptr<T>(grad_pos), stream_ptr(stream));
    });
}

void jacobian(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t Q, int32_t E,
              std::uintptr_t species, std::uintptr_t q, bool uniform, double q0, double dq, std::uintptr_t H,
              std::uintptr_t beta, std::uintptr_t pos, std::uintptr_t out, std::uintptr_t jac, std::uintptr_t stream,
              int num_threads) {
    if (!beta && Q > 0) throw std::invalid_argument("debye_jacobian: beta is required");
    const DebyeProblem p = make_problem(B, N, Q, E, species, q, uniform, q0, dq, H, beta, num_threads);
    dispatch(device, dtype, "debye", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>) debye_jacobian_cpu<T>(p, cptr<T>(pos), mptr<T>(out), mptr<T>(jac));
        else debye_jacobian_cuda<T>(p, cptr<T>(pos), mptr<T>(out), mptr<T>(jac), stream_ptr(stream));
    });
}

void gauss_newton(const std::string& device, int64_t B, int64_t N, int64_t Q, int32_t E, std::uintptr_t species,
                  std::uintptr_t q, bool uniform, double q0, double dq, std::uintptr_t H, std::uintptr_t beta,
                  std::uintptr_t pos, std::uintptr_t L, int64_t M, std::uintptr_t y, std::uintptr_t w,
                  std::uintptr_t z, bool mixed, std::uintptr_t out, std::uintptr_t dz, int num_threads) {
    if (M < 1) throw std::invalid_argument("debye_gauss_newton: the subspace needs at least one direction");
    if (!beta && Q > 0) throw std::invalid_argument("debye_gauss_newton: beta is required");
    const DebyeProblem p = make_problem(B, N, Q, E, species, q, uniform, q0, dq, H, beta, num_threads);
    dispatch_device<CpuOnly>(device, "debye_gauss_newton", [&](auto) {
        debye_gauss_newton_cpu(p, cptr<double>(pos), cptr<double>(L), M, cptr<double>(y), cptr<double>(w),
                               cptr<double>(z), mixed, mptr<double>(out), mptr<double>(dz));
    });
}

}  // namespace

void bind_debye(py::module_& m) {
    m.def("debye_forward", &forward, py::call_guard<py::gil_scoped_release>(),
          "out[b,k] = beta[k] + sum_p H[p,k] sum_{pairs of type p} sin(q_k r)/r  (raw buffers; internal)");
    m.def("debye_backward", &backward, py::call_guard<py::gil_scoped_release>(),
          "gradient of sum(grad_out * forward) with respect to the positions (raw buffers; internal)");
    m.def("debye_jacobian", &jacobian, py::call_guard<py::gil_scoped_release>(),
          "forward, and jac[b,a,c,k] = d out[b,k] / d pos[b,a,c] (raw buffers; internal)");
    m.def("debye_gauss_newton", &gauss_newton, py::call_guard<py::gil_scoped_release>(),
          "one Gauss-Newton MAP step in a subspace x = x0 + L z on the CPU, float64 (mixed: the Jacobian and its "
          "projection in float32) (raw buffers; internal)");
}

}  // namespace xstructure
