// The crystal kernels built for the baseline instruction set of the target.
#define XS_ISA isa_base
#include "crystal_cpu_kernels.inc"
