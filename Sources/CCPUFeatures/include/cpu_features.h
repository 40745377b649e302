// What the processor and the operating system let this process run, from CPUID and XGETBV: the engine chooses
// its kernels from these features, never from a table of processor models.
#ifndef SWIFTDIFFUSION_CPU_FEATURES_H
#define SWIFTDIFFUSION_CPU_FEATURES_H

#include <stdbool.h>

/// A spin-wait hint (`pause` on x86-64, `yield` on arm64): the waiting loop leaves the core's resources to the other
/// hardware thread and costs less power, and leaving the loop does not flush the pipeline.
static inline void sd_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct {
    bool sse42;
    bool avx;
    bool avx2;
    bool fma;
    bool f16c;
    bool avx512f;
    bool avx512bw;
    bool avx512dq;
    bool avx512vl;
    bool avx512cd;
    bool avx512vnni;
    bool avx512bf16;
    bool avx512fp16;
    bool amxTile;
    bool amxBF16;
    bool amxInt8;
    /// The OS saves YMM / ZMM and opmask / AMX tile state on context switches (XCR0), and for AMX grants
    /// the tile data permission (arch_prctl on Linux).
    bool osAVX;
    bool osAVX512;
    bool osAMX;
    /// "GenuineIntel", "AuthenticAMD", ... and the brand string.
    char vendor[13];
    char brand[49];
} sd_cpu_features;

/// Fills `features` (all false on processors other than x86-64).
void sd_cpu_features_detect(sd_cpu_features *features);

/// Re-selects OpenBLAS's kernel set at run time for a DYNAMIC_ARCH OpenBLAS (Debian's): sets
/// OPENBLAS_CORETYPE to `core` and re-runs OpenBLAS's own core initialisation. Returns false when the library
/// lacks the entry points. Must run before any BLAS call is in flight.
bool sd_openblas_select_core(const char *core);

/// Runs `iterations` rounds of 12 independent fused multiply-adds on `width`-float registers (16: AVX-512,
/// 8: AVX2+FMA, else SSE multiply + add) and returns a value that depends on them (so none is optimised away).
/// The caller checks the instruction set is available; FLOPs done = iterations x 12 x width x 2 (SSE: 8 x 4 x 2).
double sd_fma_loop(int width, long iterations);

/// Pins the calling OS thread to the given cores (Linux sched_setaffinity); false when not supported or refused
/// (e.g. a core outside the process's allowed set).
bool sd_pin_current_thread(const int *cores, int count);

/// Writes the cores the calling thread may run on into `out` (at most `capacity`) and returns how many.
int sd_current_thread_cores(int *out, int capacity);

#endif
