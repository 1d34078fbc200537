// Python bindings of the crystal kernels (raw buffers; see xstructure/crystal.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "xstructure/crystal.hpp"

namespace py = pybind11;

namespace xstructure {
namespace {

template <typename T>
T* ptr(std::uintptr_t x) { return reinterpret_cast<T*>(x); }

void structure_factors(const std::string& device, int64_t N, int32_t T, std::uintptr_t type, std::uintptr_t frac,
                       std::uintptr_t occ, int32_t H, int64_t M, std::uintptr_t hkl, std::uintptr_t g, int32_t K,
                       std::uintptr_t ga, std::uintptr_t gb, std::uintptr_t gc, double s2max, std::uintptr_t B,
                       std::array<double, 6> metric, std::uintptr_t F, std::uintptr_t stream, int num_threads) {
    if (N < 0 || T < 1 || M < 0) throw std::invalid_argument("structure_factors: need N >= 0, T >= 1, M >= 0");
    if (H >= 0 && M != int64_t(2 * H + 1) * (2 * H + 1) * (2 * H + 1))
        throw std::invalid_argument("structure_factors: M must be (2H+1)^3 in box mode");
    StructureFactorProblem p;
    p.N = N; p.T = T; p.type = ptr<const int32_t>(type); p.frac = ptr<const double>(frac);
    p.occ = ptr<const double>(occ); p.H = H; p.M = M; p.hkl = ptr<const int32_t>(hkl);
    p.g = ptr<const double>(g); p.num_threads = num_threads;
    p.B = ptr<const double>(B);
    p.K = K; p.ga = ptr<const double>(ga); p.gb = ptr<const double>(gb); p.gc = ptr<const double>(gc);
    p.s2max = s2max;
    if (!g && !gc) throw std::invalid_argument("structure_factors: give form factors g or Gaussian coefficients");
    for (int i = 0; i < 6; ++i) p.metric[i] = metric[i];
    if (device == "cpu") structure_factors_cpu(p, ptr<double>(F));
    else if (device == "cuda") structure_factors_cuda(p, ptr<double>(F), reinterpret_cast<void*>(stream));
    else throw std::invalid_argument("structure_factors: unknown device '" + device + "'");
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
    p.weight = ptr<const double>(weight); p.sigma = ptr<const double>(sigma);
    p.cutoff = cutoff; p.num_threads = num_threads;
    return p;
}

void density(const std::string& device, const std::string& dtype, int64_t B, int64_t N,
             std::array<int64_t, 3> shape, std::array<double, 9> cell, std::array<double, 9> step,
             std::array<double, 3> origin, std::uintptr_t weight, std::uintptr_t sigma, double cutoff,
             std::uintptr_t pos, std::uintptr_t rho, std::uintptr_t stream, int num_threads) {
    const DensityProblem p = density_problem(B, N, shape, cell, step, origin, weight, sigma, cutoff, num_threads);
    void* st = reinterpret_cast<void*>(stream);
    const bool f64 = dtype == "float64";
    if (!f64 && dtype != "float32") throw std::invalid_argument("density_grid: dtype must be float32 or float64");
    if (device == "cpu") {
        if (f64) density_grid_cpu<double>(p, ptr<const double>(pos), ptr<double>(rho));
        else density_grid_cpu<float>(p, ptr<const float>(pos), ptr<float>(rho));
    } else if (device == "cuda") {
        if (f64) density_grid_cuda<double>(p, ptr<const double>(pos), ptr<double>(rho), st);
        else density_grid_cuda<float>(p, ptr<const float>(pos), ptr<float>(rho), st);
    } else {
        throw std::invalid_argument("density_grid: unknown device '" + device + "'");
    }
}

void density_backward(const std::string& device, const std::string& dtype, int64_t B, int64_t N,
                      std::array<int64_t, 3> shape, std::array<double, 9> cell, std::array<double, 9> step,
                      std::array<double, 3> origin, std::uintptr_t weight, std::uintptr_t sigma, double cutoff,
                      std::uintptr_t pos, std::uintptr_t grad_rho, std::uintptr_t grad_pos, std::uintptr_t stream,
                      int num_threads) {
    const DensityProblem p = density_problem(B, N, shape, cell, step, origin, weight, sigma, cutoff, num_threads);
    void* st = reinterpret_cast<void*>(stream);
    const bool f64 = dtype == "float64";
    if (!f64 && dtype != "float32") throw std::invalid_argument("density_grid: dtype must be float32 or float64");
    if (device == "cpu") {
        if (f64) density_grid_backward_cpu<double>(p, ptr<const double>(pos), ptr<const double>(grad_rho), ptr<double>(grad_pos));
        else density_grid_backward_cpu<float>(p, ptr<const float>(pos), ptr<const float>(grad_rho), ptr<float>(grad_pos));
    } else if (device == "cuda") {
        if (f64) density_grid_backward_cuda<double>(p, ptr<const double>(pos), ptr<const double>(grad_rho), ptr<double>(grad_pos), st);
        else density_grid_backward_cuda<float>(p, ptr<const float>(pos), ptr<const float>(grad_rho), ptr<float>(grad_pos), st);
    } else {
        throw std::invalid_argument("density_grid: unknown device '" + device + "'");
    }
}

}  // namespace

void bind_crystal(py::module_& m) {
    m.def("structure_factors", &structure_factors, py::call_guard<py::gil_scoped_release>(),
          "structure factors on an hkl box or list (raw buffers; internal)");
    m.def("density_grid", &density, py::call_guard<py::gil_scoped_release>(),
          "Gaussian density of atoms on a periodic grid (raw buffers; internal)");
    m.def("density_grid_backward", &density_backward, py::call_guard<py::gil_scoped_release>(),
          "gradient of the density grid with respect to positions (raw buffers; internal)");
}

}  // namespace xstructure
