// Python binding of the pump-probe block pass (raw buffers; see xstructure/experiment/run.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "xstructure/pumpprobe.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

using namespace bind;

// Returns (rows, sums): the k rows a used shot touched, increasing, as int64 (k,), and a float64 (m, Q) array
// whose first k rows are their sums (m >= k).
py::tuple block(const std::string& device, const std::string& dtype, int64_t n, int64_t Q, int64_t stride,
                std::uintptr_t X, int32_t norm, int64_t i0, int64_t i1, std::uintptr_t inv_in,
                std::uintptr_t code_in, std::uintptr_t group, int64_t G, std::uintptr_t has, std::uintptr_t center,
                std::uintptr_t thr, int64_t limit, std::uintptr_t col_ptr, std::uintptr_t col_row,
                std::uintptr_t col_val, int64_t n_rows, std::uintptr_t code, std::uintptr_t inv, int num_threads) {
    dispatch<Floating, CpuOnly>(device, dtype, "pumpprobe", [](auto, auto) {});   // names checked first
    if (n < 0 || Q < 1 || stride < Q) throw std::invalid_argument("pumpprobe: need n >= 0, Q >= 1, stride >= Q");
    if (norm < 0 || norm > 2) throw std::invalid_argument("pumpprobe: unknown normalisation");
    if (norm == 1 && !(0 <= i0 && i0 < i1 && i1 <= Q))
        throw std::invalid_argument("pumpprobe: the window must satisfy 0 <= i0 < i1 <= Q");
    if (norm == 2 && !inv_in) throw std::invalid_argument("pumpprobe: weights normalisation needs 1 / weights");
    if (!code_in || !group || !col_ptr || !code || !inv || (n > 0 && (!X || !col_row || !col_val)))
        throw std::invalid_argument("pumpprobe: a required buffer is missing");
    if (has && (!center || !thr || G < 1)) throw std::invalid_argument("pumpprobe: the outlier test needs tables");
    if (n_rows < 0 || n_rows > INT32_MAX) throw std::invalid_argument("pumpprobe: need 0 <= n_rows < 2^31");
    PumpProbeProblem p;
    p.n = n; p.Q = Q; p.stride = stride;
    p.norm = static_cast<PumpProbeNorm>(norm);
    p.i0 = i0; p.i1 = i1;
    p.inv_in = cptr<double>(inv_in);
    p.code_in = cptr<uint8_t>(code_in);
    p.group = cptr<int64_t>(group);
    p.G = G;
    p.has = cptr<uint8_t>(has);
    p.center = cptr<void>(center);
    p.thr = cptr<void>(thr);
    p.limit = limit;
    p.col_ptr = cptr<int64_t>(col_ptr);
    p.col_row = cptr<int32_t>(col_row);
    p.col_val = cptr<double>(col_val);
    p.n_rows = n_rows;
    p.num_threads = num_threads;
    for (int64_t s = 0; s < n; ++s) {
        if (p.group[s] < -1 || (p.has && p.group[s] >= G))
            throw std::invalid_argument("pumpprobe: a shot's group is outside [-1, G)");
        if (p.col_ptr[s + 1] < p.col_ptr[s]) throw std::invalid_argument("pumpprobe: column pointers decrease");
    }
    std::vector<int64_t> rows;
    {
        py::gil_scoped_release release;
        rows = pumpprobe_rows(p);
    }
    const auto nu = static_cast<py::ssize_t>(rows.size());
    py::array_t<double> sums({nu, static_cast<py::ssize_t>(Q)});
    double* out = sums.mutable_data();
    int64_t k = 0;
    {
        py::gil_scoped_release release;
        dispatch<Floating, CpuOnly>(device, dtype, "pumpprobe", [&](auto, auto t) {
            using T = decltype(t);
            k = pumpprobe_block_cpu<T>(p, cptr<T>(X), rows.data(), nu, out, mptr<uint8_t>(code), mptr<double>(inv));
        });
    }
    py::array_t<int64_t> kept(static_cast<py::ssize_t>(k));
    std::copy(rows.begin(), rows.begin() + k, kept.mutable_data());
    return py::make_tuple(kept, sums);
}

}  // namespace

void bind_pumpprobe(py::module_& m) {
    m.def("pumpprobe_block", &block,
          "one pass over a block of pump-probe shots: codes, 1/normalisers and the sums of the used shots into "
          "their rows of the aggregation matrix (raw buffers; internal)");
}

}  // namespace xstructure
