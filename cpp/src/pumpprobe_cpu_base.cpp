// The pump-probe kernels built for the baseline instruction set of the target.
#define XS_ISA isa_base
#include "pumpprobe_cpu_kernels.inc"
