// Python bindings of the crystal kernels (raw buffers; see xstructure/crystal.py).
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "xstructure/crystal.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

using namespace bind;

void structure_factors(const std::string& device, int64_t N, int32_t T, std::uintptr_t type, std::uintptr_t frac,
                       std::uintptr_t occ, int32_t H, int64_t M, std::uintptr_t hkl, std::uintptr_t g, int32_t K,
                       std::uintptr_t ga, std::uintptr_t gb, std::uintptr_t gc, double s2max, std::uintptr_t B,
                       std::array<double, 6> metric, std::uintptr_t F, int num_threads) {
    if (N < 0 || T < 1 || M < 0) throw std::invalid_argument("structure_factors: need N >= 0, T >= 1, M >= 0");
    if (H >= 0 && M != int64_t(2 * H + 1) * (2 * H + 1) * (2 * H + 1))
        throw std::invalid_argument("structure_factors: M must be (2H+1)^3 in box mode");
    StructureFactorProblem p;
    p.N = N; p.T = T; p.type = cptr<int32_t>(type); p.frac = cptr<double>(frac);
    p.occ = cptr<double>(occ); p.H = H; p.M = M; p.hkl = cptr<int32_t>(hkl);
    p.g = cptr<double>(g); p.num_threads = num_threads;
    p.B = cptr<double>(B);
    p.K = K; p.ga = cptr<double>(ga); p.gb = cptr<double>(gb); p.gc = cptr<double>(gc);
    p.s2max = s2max;
    if (!g && !gc) throw std::invalid_argument("structure_factors: give form factors g or Gaussian coefficients");
    for (int i = 0; i < 6; ++i) p.metric[i] = metric[i];
    // CPU only: xstructure.crystal builds its inputs as numpy arrays, so no caller could hand device arrays.
    dispatch_device<CpuOnly>(device, "structure_factors", [&](auto) { structure_factors_cpu(p, mptr<double>(F)); });
}

DensityProblem density_problem(int64_t B, int64_t N, const std::array<int64_t, 3>& shape,
                               const std::array<double, 9>& cell, const std::array<double, 9>& step,
                               const std::array<double, 3>& origin, std::uintptr_t weight, std::uintptr_t sigma,
                               double cutoff, int num_threads) {
    if (B < 0 || N < 0 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1)
        throw std::invalid_argument("density_grid: need B, N >= 0 and a positive grid shape");
    DensityProblem p;
    p.B = B; p.N = N; p.n0 = shape[0]; p.n1 = shape[1]; p.n2 = shape[2];
    for (int i = 0; i < 9; ++i) { p.cell[i] = cell[i]; p.step[i] = step[i]; }
    for (int i = 0; i < 3; ++i) p.origin[i] = origin[i];
    p.weight = cptr<double>(weight); p.sigma = cptr<double>(sigma);
    p.cutoff = cutoff; p.num_threads = num_threads;
    return p;
}

void density(const std::string& device, const std::string& dtype, int64_t B, int64_t N,
             std::array<int64_t, 3> shape, std::array<double, 9> cell, std::array<double, 9> step,
             std::array<double, 3> origin, std::uintptr_t weight, std::uintptr_t sigma, double cutoff,
             std::uintptr_t pos, std::uintptr_t rho, std::uintptr_t stream, int num_threads) {
    const DensityProblem p = density_problem(B, N, shape, cell, step, origin, weight, sigma, cutoff, num_threads);
    dispatch(device, dtype, "density_grid", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>) density_grid_cpu<T>(p, cptr<T>(pos), mptr<T>(rho));
        else density_grid_cuda<T>(p, cptr<T>(pos), mptr<T>(rho), stream_ptr(stream));
    });
}

void density_backward(const std::string& device, const std::string& dtype, int64_t B, int64_t N,
                      std::array<int64_t, 3> shape, std::array<double, 9> cell, std::array<double, 9> step,
                      std::array<double, 3> origin, std::uintptr_t weight, std::uintptr_t sigma, double cutoff,
                      std::uintptr_t pos, std::uintptr_t grad_rho, std::uintptr_t grad_pos, std::uintptr_t stream,
                      int num_threads) {
    const DensityProblem p = density_problem(B, N, shape, cell, step, origin, weight, sigma, cutoff, num_threads);
    dispatch(device, dtype, "density_grid", [&](auto dev, auto t) {
        using T = decltype(t);
        if constexpr (is_cpu<decltype(dev)>)
            density_grid_backward_cpu<T>(p, cptr<T>(pos), cptr<T>(grad_rho), mptr<T>(grad_pos));
        else
            density_grid_backward_cuda<T>(p, cptr<T>(pos), cptr<T>(grad_rho), mptr<T>(grad_pos), stream_ptr(stream));
    });
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    if (!v.empty()) std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

py::dict powder(int64_t C, std::uintptr_t atom_off, std::uintptr_t type, std::uintptr_t frac, std::uintptr_t occ,
                std::uintptr_t B, std::uintptr_t type_off, int32_t K, std::uintptr_t ga, std::uintptr_t gb,
                std::uintptr_t gc, std::uintptr_t cells, double lambda, double tth_lo,
                double tth_hi, double tolerance, bool lp, int num_threads) {
    if (C < 0 || K < 0) throw std::invalid_argument("powder: need C >= 0 crystals and K >= 0");
    if (!(lambda > 0) || !(tth_lo >= 0) || !(tth_hi > tth_lo) || !(tth_hi <= 180) || !(tolerance >= 0))
        throw std::invalid_argument("powder: need lambda > 0, 0 <= tth_lo < tth_hi <= 180, tolerance >= 0");
    PowderBatch p;
    p.C = C; p.atom_off = cptr<int64_t>(atom_off); p.type = cptr<int32_t>(type);
    p.frac = cptr<double>(frac); p.occ = cptr<double>(occ); p.B = cptr<double>(B);
    p.type_off = cptr<int64_t>(type_off); p.K = K; p.ga = cptr<double>(ga); p.gb = cptr<double>(gb);
    p.gc = cptr<double>(gc); p.cells = cptr<double>(cells);
    p.lambda = lambda; p.tth_lo = tth_lo; p.tth_hi = tth_hi; p.tolerance = tolerance; p.lp = lp;
    p.num_threads = num_threads;
    PowderResult r;
    {
        py::gil_scoped_release release;
        r = powder_reflections_cpu(p);
    }
    const py::ssize_t R = static_cast<py::ssize_t>(r.tth.size()), P = static_cast<py::ssize_t>(r.peak_tth.size());
    py::dict d;
    d["hkl"] = to_array(r.hkl, {R, 3});
    d["tth"] = to_array(r.tth, {R});
    d["g"] = to_array(r.g, {R});
    d["I"] = to_array(r.I, {R});
    d["refl_off"] = to_array(r.refl_off, {C + 1});
    d["peak_tth"] = to_array(r.peak_tth, {P});
    d["peak_d"] = to_array(r.peak_d, {P});
    d["peak_I"] = to_array(r.peak_I, {P});
    d["peak_first"] = to_array(r.peak_first, {P});
    d["peak_n"] = to_array(r.peak_n, {P});
    d["peak_off"] = to_array(r.peak_off, {C + 1});
    d["peak_hkl"] = to_array(r.peak_hkl, {P, 3});
    return d;
}

}  // namespace

void bind_crystal(py::module_& m) {
    m.def("powder_reflections", &powder, "powder reflections and merged peaks of a batch of crystals (internal)");
    m.def("structure_factors", &structure_factors, py::call_guard<py::gil_scoped_release>(),
          "structure factors on an hkl box or list (raw host buffers; CPU only; internal)");
    m.def("density_grid", &density, py::call_guard<py::gil_scoped_release>(),
          "Gaussian density of atoms on a periodic grid (raw buffers; internal)");
    m.def("density_grid_backward", &density_backward, py::call_guard<py::gil_scoped_release>(),
          "gradient of the density grid with respect to positions (raw buffers; internal)");
}

}  // namespace xstructure
