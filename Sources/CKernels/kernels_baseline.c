// Baseline variants of the kernels: 4 floats per vector (SSE2 on x86-64, NEON on arm64), no fused multiply-add
// on x86-64. Every processor the package builds for runs these.
#define SD_W 4
#define SD_NAME(x) sd_baseline_##x
#define SD_ISA_NAME "baseline"
#define ATT_RV 2
#define ATT_CB 6
#define ATT_DB 6
#define ATT_BR 32
#define ATT_BC 96
#include "kernels_impl.h"
