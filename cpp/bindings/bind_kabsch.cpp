// Python bindings of the batched Kabsch RMSD kernels (raw buffers; see xstructure/_backend.py).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "xstructure/kabsch.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

using namespace bind;

RmsdProblem make(int64_t B, int64_t N, int64_t a_stride, int64_t b_stride, std::uintptr_t weights, bool align,
                 bool reflection, int num_threads) {
    if (B < 0 || N < 1) throw std::invalid_argument("kabsch: need B >= 0 pairs and N >= 1 atoms");
    RmsdProblem p;
    p.B = B; p.N = N; p.a_stride = a_stride; p.b_stride = b_stride;
    p.weights = cptr<double>(weights);
    p.align = align; p.reflection = reflection; p.num_threads = num_threads;
    return p;
}

void forward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t a_stride,
             int64_t b_stride, std::uintptr_t weights, bool align, bool reflection, std::uintptr_t a,
             std::uintptr_t b, std::uintptr_t rmsd, std::uintptr_t R, std::uintptr_t t, std::uintptr_t stream,
             int num_threads) {
    const RmsdProblem p = make(B, N, a_stride, b_stride, weights, align, reflection, num_threads);
    dispatch(device, dtype, "kabsch", [&](auto dev, auto tag) {
        using T = decltype(tag);
        if constexpr (is_cpu<decltype(dev)>)
            kabsch_rmsd_cpu<T>(p, cptr<T>(a), cptr<T>(b), mptr<T>(rmsd), mptr<T>(R), mptr<T>(t));
        else
            kabsch_rmsd_cuda<T>(p, cptr<T>(a), cptr<T>(b), mptr<T>(rmsd), mptr<T>(R), mptr<T>(t), stream_ptr(stream));
    });
}

void backward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t a_stride,
              int64_t b_stride, std::uintptr_t weights, bool align, bool reflection, std::uintptr_t a,
              std::uintptr_t b, std::uintptr_t grad_rmsd, std::uintptr_t ga, std::uintptr_t gb,
              std::uintptr_t stream, int num_threads) {
    const RmsdProblem p = make(B, N, a_stride, b_stride, weights, align, reflection, num_threads);
    dispatch(device, dtype, "kabsch", [&](auto dev, auto tag) {
        using T = decltype(tag);
        if constexpr (is_cpu<decltype(dev)>)
            kabsch_rmsd_backward_cpu<T>(p, cptr<T>(a), cptr<T>(b), cptr<T>(grad_rmsd), mptr<T>(ga), mptr<T>(gb));
        else
            kabsch_rmsd_backward_cuda<T>(p, cptr<T>(a), cptr<T>(b), cptr<T>(grad_rmsd), mptr<T>(ga), mptr<T>(gb),
                                         stream_ptr(stream));
    });
}

}  // namespace

void bind_kabsch(py::module_& m) {
    m.def("kabsch_rmsd", &forward, py::call_guard<py::gil_scoped_release>(),
          "batched RMSD after optimal superposition (raw buffers; internal)");
    m.def("kabsch_rmsd_backward", &backward, py::call_guard<py::gil_scoped_release>(),
          "gradients of the batched RMSD with respect to both inputs (raw buffers; internal)");
}

}  // namespace xstructure
