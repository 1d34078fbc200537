// The pump-probe kernels built for x86-64 with AVX2 and FMA (this file alone gets -mavx2 -mfma).
#define XS_ISA isa_avx2
#include "pumpprobe_cpu_kernels.inc"
