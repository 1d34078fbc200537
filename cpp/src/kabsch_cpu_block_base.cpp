// The blocked RMSD kernel built for the baseline instruction set of the target.
#define XS_ISA isa_base
#include "kabsch_cpu_block.inc"
