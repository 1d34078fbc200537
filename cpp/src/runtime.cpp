// CPU instruction-set queries (see xstructure/runtime.hpp).  cuda_device_count lives in runtime_cuda.cu, or in
// cuda_stub.cpp for builds without CUDA.
#include "xstructure/runtime.hpp"

namespace xstructure {

bool cpu_has_avx2_fma() {
#ifdef XSTRUCTURE_HAS_AVX2
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
#else
    return false;
#endif
}

const char* cpu_isa() { return cpu_has_avx2_fma() ? "avx2+fma" : "baseline"; }

}  // namespace xstructure
