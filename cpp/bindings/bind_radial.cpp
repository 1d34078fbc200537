// Python binding of the radial-integration histogram (raw buffers; see xstructure/integrator.py).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "xstructure/radial.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

using namespace bind;

// Element types of detector frames.
using FrameTypes = Dtypes<uint16_t, int32_t, uint32_t, float, double>;

void histogram(const std::string& device, const std::string& dtype, int64_t F, int64_t npix, int32_t nbins,
               std::uintptr_t index, bool index16, std::uintptr_t weight, bool check, double lo, double hi,
               bool has_dummy, double dummy, double delta_dummy, int32_t mode, std::uintptr_t mean,
               std::uintptr_t frames, std::uintptr_t signal, std::uintptr_t var, std::uintptr_t removed_w,
               std::uintptr_t removed_w2, std::uintptr_t removed_count, std::uintptr_t stream, int num_threads) {
    if (F < 0 || npix < 0 || nbins < 1) throw std::invalid_argument("radial: need F >= 0, npix >= 0, nbins >= 1");
    if (index16 && nbins > 65534) throw std::invalid_argument("radial: a uint16 index holds at most 65534 bins");
    if (mode < 0 || mode > 2) throw std::invalid_argument("radial: unknown mode");
    RadialProblem p;
    p.F = F; p.npix = npix; p.nbins = nbins;
    p.index = cptr<void>(index); p.index16 = index16;
    p.weight = cptr<double>(weight);
    p.check = check; p.lo = lo; p.hi = hi;
    p.has_dummy = has_dummy; p.dummy = dummy; p.delta_dummy = delta_dummy;
    p.mode = static_cast<RadialMode>(mode);
    p.mean = cptr<double>(mean);
    p.num_threads = num_threads;
    if (p.mode == RadialMode::AZIMUTHAL_PASS2 && !p.mean) throw std::invalid_argument("radial: pass 2 needs means");
    RadialOutputs o;
    o.signal = mptr<double>(signal);
    o.var = mptr<double>(var);
    o.removed_w = mptr<double>(removed_w);
    o.removed_w2 = mptr<double>(removed_w2);
    o.removed_count = mptr<double>(removed_count);
    dispatch<FrameTypes>(device, dtype, "radial", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>) radial_histogram_cpu<T>(p, cptr<T>(frames), o);
        else radial_histogram_cuda<T>(p, cptr<T>(frames), o, stream_ptr(stream));
    });
}

}  // namespace

void bind_radial(py::module_& m) {
    m.def("radial_histogram", &histogram, py::call_guard<py::gil_scoped_release>(),
          "per-bin sums of a stack of frames through a pixel->bin map (raw buffers; internal)");
}

}  // namespace xstructure
