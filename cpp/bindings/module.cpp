// The one extension module, xstructure._core: one bind_* function per domain.
#include <pybind11/pybind11.h>

#include "xstructure/runtime.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace xstructure {
void bind_debye(py::module_& m);
void bind_kabsch(py::module_& m);
void bind_radial(py::module_& m);
void bind_crystal(py::module_& m);
void bind_pumpprobe(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "xstructure compiled kernels (internal; use the xstructure package)";
    xstructure::bind_debye(m);
    xstructure::bind_kabsch(m);
    xstructure::bind_radial(m);
    xstructure::bind_crystal(m);
    xstructure::bind_pumpprobe(m);

    m.def("cuda_device_count", &xstructure::cuda_device_count,
          "Number of usable CUDA devices (0 when built without CUDA or when none is present).");
    m.def("build_info", []() {
        py::dict d;
#if defined(__clang__)
        d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        d["compiler"] = std::string("gcc ") + __VERSION__;
#else
        d["compiler"] = "unknown";
#endif
#ifdef _OPENMP
        d["openmp"] = true;
        d["openmp_version"] = _OPENMP;
        d["omp_max_threads"] = omp_get_max_threads();
#else
        d["openmp"] = false;
        d["openmp_version"] = 0;
        d["omp_max_threads"] = 1;
#endif
        d["cpu_isa"] = xstructure::cpu_isa();
#ifdef XSTRUCTURE_HAS_CUDA
        d["cuda"] = true;
        d["cuda_version"] = XSTRUCTURE_CUDA_VERSION;
        d["cuda_architectures"] = XSTRUCTURE_CUDA_ARCHS;
#else
        d["cuda"] = false;
        d["cuda_version"] = "";
        d["cuda_architectures"] = "";
#endif
        return d;
    });
}
