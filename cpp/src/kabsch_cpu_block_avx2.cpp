// The blocked RMSD kernel built for AVX2 + FMA (this file alone gets -mavx2 -mfma).
#define XS_ISA isa_avx2
#include "kabsch_cpu_block.inc"
