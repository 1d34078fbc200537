// Stand-ins for the CUDA entry points when the extension is built without CUDA.
#include <stdexcept>

#include "xstructure/debye.hpp"
#include "xstructure/kabsch.hpp"
#include "xstructure/radial.hpp"
#include "xstructure/crystal.hpp"
#include "xstructure/runtime.hpp"

namespace xstructure {

namespace {
[[noreturn]] void no_cuda() {
    throw std::runtime_error(
        "xstructure was built without CUDA (nvcc was not found or XSTRUCTURE_CUDA=OFF); "
        "reinstall with nvcc on PATH to use GPU arrays");
}
}  // namespace

template <typename T>
void debye_forward_cuda(const DebyeProblem&, const T*, T*, void*) { no_cuda(); }
template <typename T>
void debye_backward_cuda(const DebyeProblem&, const T*, const T*, T*, void*) { no_cuda(); }

template void debye_forward_cuda<float>(const DebyeProblem&, const float*, float*, void*);
template void debye_forward_cuda<double>(const DebyeProblem&, const double*, double*, void*);
template void debye_backward_cuda<float>(const DebyeProblem&, const float*, const float*, float*, void*);
template void debye_backward_cuda<double>(const DebyeProblem&, const double*, const double*, double*, void*);
template <typename T>
void debye_jacobian_cuda(const DebyeProblem&, const T*, T*, T*, void*) { no_cuda(); }
template void debye_jacobian_cuda<float>(const DebyeProblem&, const float*, float*, float*, void*);
template void debye_jacobian_cuda<double>(const DebyeProblem&, const double*, double*, double*, void*);

template <typename T>
void kabsch_rmsd_cuda(const RmsdProblem&, const T*, const T*, T*, T*, T*, void*) { no_cuda(); }
template <typename T>
void kabsch_rmsd_backward_cuda(const RmsdProblem&, const T*, const T*, const T*, T*, T*, void*) { no_cuda(); }
template void kabsch_rmsd_cuda<float>(const RmsdProblem&, const float*, const float*, float*, float*, float*, void*);
template void kabsch_rmsd_cuda<double>(const RmsdProblem&, const double*, const double*, double*, double*, double*,
                                       void*);
template void kabsch_rmsd_backward_cuda<float>(const RmsdProblem&, const float*, const float*, const float*, float*,
                                               float*, void*);
template void kabsch_rmsd_backward_cuda<double>(const RmsdProblem&, const double*, const double*, const double*,
                                                double*, double*, void*);

template <typename T>
void radial_histogram_cuda(const RadialProblem&, const T*, const RadialOutputs&, void*) { no_cuda(); }
template void radial_histogram_cuda<uint16_t>(const RadialProblem&, const uint16_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<int32_t>(const RadialProblem&, const int32_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<uint32_t>(const RadialProblem&, const uint32_t*, const RadialOutputs&, void*);
template void radial_histogram_cuda<float>(const RadialProblem&, const float*, const RadialOutputs&, void*);
template void radial_histogram_cuda<double>(const RadialProblem&, const double*, const RadialOutputs&, void*);

template <typename T>
void density_grid_cuda(const DensityProblem&, const T*, T*, void*) { no_cuda(); }
template <typename T>
void density_grid_backward_cuda(const DensityProblem&, const T*, const T*, T*, void*) { no_cuda(); }
template void density_grid_cuda<float>(const DensityProblem&, const float*, float*, void*);
template void density_grid_cuda<double>(const DensityProblem&, const double*, double*, void*);
template void density_grid_backward_cuda<float>(const DensityProblem&, const float*, const float*, float*, void*);
template void density_grid_backward_cuda<double>(const DensityProblem&, const double*, const double*, double*, void*);

int cuda_device_count() { return 0; }

}  // namespace xstructure
