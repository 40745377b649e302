// AVX2 + FMA variants of the kernels: 8 floats per vector, 16 registers.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define SD_W 8
#define SD_NAME(x) sd_avx2_##x
#define SD_ISA_NAME "avx2"
// Attention tiles: 6 x 2 vectors = 12 accumulators; blocks of 32 query rows.
#define ATT_RV 2
#define ATT_CB 6
#define ATT_DB 6
#define ATT_BR 32
#define ATT_BC 96
#include "kernels_impl.h"
#pragma clang attribute pop
#endif
