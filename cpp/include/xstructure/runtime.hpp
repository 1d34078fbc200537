// What the running process offers the kernels: the CPU instruction set the CPU kernels dispatch to, and the
// number of usable CUDA devices.  No Python and no torch here.
#pragma once

namespace xstructure {

// True when this build carries the AVX2+FMA copies of the CPU kernels and this processor runs them
// (decided once, at the first call).
bool cpu_has_avx2_fma();

// The instruction set the CPU dispatcher chose: "avx2+fma" or "baseline".
const char* cpu_isa();

// Usable CUDA devices: 0 when built without CUDA (cuda_stub.cpp) or when none is present.
int cuda_device_count();

}  // namespace xstructure
