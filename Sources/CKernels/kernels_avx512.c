// AVX-512 (F, BW, DQ, VL) + FMA variants of the kernels: 16 floats per vector, 32 registers.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#define SD_W 16
#define SD_NAME(x) sd_avx512_##x
#define SD_ISA_NAME "avx512"
// Attention tiles: 6 keys (or value dims) x 4 vectors = 24 accumulators; blocks of 64 query rows.
#define ATT_RV 4
#define ATT_CB 6
#define ATT_DB 6
#define ATT_BR 64
#define ATT_BC 96
#include "kernels_impl.h"
#pragma clang attribute pop
#endif
