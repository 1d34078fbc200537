// Python bindings of the batched Kabsch RMSD kernels (raw buffers; see xstructure/_backend.py).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "xstructure/kabsch.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

RmsdProblem make(int64_t B, int64_t N, int64_t a_stride, int64_t b_stride, std::uintptr_t weights, bool align,
                 bool reflection, int num_threads) {
    if (B < 0 || N < 1) throw std::invalid_argument("kabsch: need B >= 0 pairs and N >= 1 atoms");
    RmsdProblem p;
    p.B = B; p.N = N; p.a_stride = a_stride; p.b_stride = b_stride;
    p.weights = reinterpret_cast<const double*>(weights);
    p.align = align; p.reflection = reflection; p.num_threads = num_threads;
    return p;
}

template <typename T>
T* ptr(std::uintptr_t x) { return reinterpret_cast<T*>(x); }

void forward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t a_stride,
             int64_t b_stride, std::uintptr_t weights, bool align, bool reflection, std::uintptr_t a,
             std::uintptr_t b, std::uintptr_t rmsd, std::uintptr_t R, std::uintptr_t t, std::uintptr_t stream,
             int num_threads) {
    const RmsdProblem p = make(B, N, a_stride, b_stride, weights, align, reflection, num_threads);
    void* st = reinterpret_cast<void*>(stream);
    const bool f64 = dtype == "float64";
    if (!f64 && dtype != "float32") throw std::invalid_argument("kabsch: dtype must be float32 or float64");
    if (device == "cpu") {
        if (f64) kabsch_rmsd_cpu<double>(p, ptr<double>(a), ptr<double>(b), ptr<double>(rmsd), ptr<double>(R), ptr<double>(t));
        else kabsch_rmsd_cpu<float>(p, ptr<float>(a), ptr<float>(b), ptr<float>(rmsd), ptr<float>(R), ptr<float>(t));
    } else if (device == "cuda") {
        if (f64) kabsch_rmsd_cuda<double>(p, ptr<double>(a), ptr<double>(b), ptr<double>(rmsd), ptr<double>(R), ptr<double>(t), st);
        else kabsch_rmsd_cuda<float>(p, ptr<float>(a), ptr<float>(b), ptr<float>(rmsd), ptr<float>(R), ptr<float>(t), st);
    } else {
        throw std::invalid_argument("kabsch: unknown device '" + device + "'");
    }
}

void backward(const std::string& device, const std::string& dtype, int64_t B, int64_t N, int64_t a_stride,
              int64_t b_stride, std::uintptr_t weights, bool align, bool reflection, std::uintptr_t a,
              std::uintptr_t b, std::uintptr_t grad_rmsd, std::uintptr_t ga, std::uintptr_t gb,
              std::uintptr_t stream, int num_threads) {
    const RmsdProblem p = make(B, N, a_stride, b_stride, weights, align, reflection, num_threads);
    void* st = reinterpret_cast<void*>(stream);
    const bool f64 = dtype == "float64";
    if (!f64 && dtype != "float32") throw std::invalid_argument("kabsch: dtype must be float32 or float64");
    if (device == "cpu") {
        if (f64) kabsch_rmsd_backward_cpu<double>(p, ptr<double>(a), ptr<double>(b), ptr<double>(grad_rmsd), ptr<double>(ga), ptr<double>(gb));
        else kabsch_rmsd_backward_cpu<float>(p, ptr<float>(a), ptr<float>(b), ptr<float>(grad_rmsd), ptr<float>(ga), ptr<float>(gb));
    } else if (device == "cuda") {
        if (f64) kabsch_rmsd_backward_cuda<double>(p, ptr<double>(a), ptr<double>(b), ptr<double>(grad_rmsd), ptr<double>(ga), ptr<double>(gb), st);
        else kabsch_rmsd_backward_cuda<float>(p, ptr<float>(a), ptr<float>(b), ptr<float>(grad_rmsd), ptr<float>(ga), ptr<float>(gb), st);
    } else {
        throw std::invalid_argument("kabsch: unknown device '" + device + "'");
    }
}

}  // namespace

void bind_kabsch(py::module_& m) {
    m.def("kabsch_rmsd", &forward, py::call_guard<py::gil_scoped_release>(),
          "batched RMSD after optimal superposition (raw buffers; internal)");
    m.def("kabsch_rmsd_backward", &backward, py::call_guard<py::gil_scoped_release>(),
          "gradients of the batched RMSD with respect to both inputs (raw buffers; internal)");
}

}  // namespace xstructure
