#define _GNU_SOURCE
#include "cpu_features.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/// Linux keeps AMX tile data off until a process asks (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA).
static bool request_amx_permission(void) {
#if defined(__linux__)
    const long ARCH_REQ_XCOMP_PERM = 0x1023;
    const long XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}
#endif

void sd_cpu_features_detect(sd_cpu_features *f) {
    memset(f, 0, sizeof(*f));
#if defined(__x86_64__) || defined(__i386__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned int maxLeaf = a;
    memcpy(f->vendor, &b, 4);
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    f->vendor[12] = 0;

    __get_cpuid(1, &a, &b, &c, &d);
    bool osxsave = (c >> 27) & 1;
    f->sse42 = (c >> 20) & 1;
    f->fma = (c >> 12) & 1;
    f->avx = (c >> 28) & 1;
    f->f16c = (c >> 29) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    f->osAVX = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
    f->osAVX512 = f->osAVX && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
    bool xcrAMX = (xcr0 & 0x60000) == 0x60000;        // XTILECFG, XTILEDATA

    if (maxLeaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = (b >> 5) & 1;
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512cd = (b >> 28) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vnni = (c >> 11) & 1;
        f->avx512fp16 = (d >> 23) & 1;
        f->amxBF16 = (d >> 22) & 1;
        f->amxTile = (d >> 24) & 1;
        f->amxInt8 = (d >> 25) & 1;
        unsigned int subleaves = a;
        if (subleaves >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f->avx512bf16 = (a >> 5) & 1;
        }
    }
    f->osAMX = f->amxTile && xcrAMX && request_amx_permission();

    unsigned int maxExtended = __get_cpuid_max(0x80000000, 0);
    if (maxExtended >= 0x80000004) {
        unsigned int *brand = (unsigned int *)f->brand;
        for (unsigned int leaf = 0; leaf < 3; leaf++) {
            __get_cpuid(0x80000002 + leaf, &brand[leaf * 4], &brand[leaf * 4 + 1], &brand[leaf * 4 + 2], &brand[leaf * 4 + 3]);
        }
        f->brand[48] = 0;
    }
#endif
}

bool sd_openblas_select_core(const char *core) {
    void (*dynamicQuit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*dynamicInit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!dynamicQuit || !dynamicInit) return false;
    // OpenBLAS reads the variable; put the process environment back afterwards, so that child processes (a
    // Python baseline in a benchmark, say) choose their own kernels.
    const char *previous = getenv("OPENBLAS_CORETYPE");
    char *saved = previous ? strdup(previous) : NULL;
    setenv("OPENBLAS_CORETYPE", core, 1);
    dynamicQuit();
    dynamicInit();
    if (saved) {
        setenv("OPENBLAS_CORETYPE", saved, 1);
        free(saved);
    } else {
        unsetenv("OPENBLAS_CORETYPE");
    }
    return true;
}

// Peak FMA throughput: independent chains of fused multiply-adds on registers, one loop per instruction set,
// each compiled for its own target so one binary carries all of them.
#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iterations) {
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m512 a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iterations) {
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m256 a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

static float fma_loop_sse(long iterations) {
    __m128 a0 = _mm_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m128 m = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++) {
        a0 = _mm_add_ps(_mm_mul_ps(a0, m), c); a1 = _mm_add_ps(_mm_mul_ps(a1, m), c);
        a2 = _mm_add_ps(_mm_mul_ps(a2, m), c); a3 = _mm_add_ps(_mm_mul_ps(a3, m), c);
        a4 = _mm_add_ps(_mm_mul_ps(a4, m), c); a5 = _mm_add_ps(_mm_mul_ps(a5, m), c);
        a6 = _mm_add_ps(_mm_mul_ps(a6, m), c); a7 = _mm_add_ps(_mm_mul_ps(a7, m), c);
    }
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)), _mm_add_ps(_mm_add_ps(a4, a5), _mm_add_ps(a6, a7)));
    float lanes[4];
    _mm_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

double sd_fma_loop(int width, long iterations) {
#if defined(__x86_64__)
    switch (width) {
    case 16: return fma_loop_avx512(iterations);
    case 8: return fma_loop_avx2(iterations);
    default: return fma_loop_sse(iterations);
    }
#else
    (void)width;
    (void)iterations;
    return 0;
#endif
}

#if defined(__linux__)
#include <sched.h>
#endif

bool sd_pin_current_thread(const int *cores, int count) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cores[i] < 0 || cores[i] >= CPU_SETSIZE) return false;
        CPU_SET(cores[i], &set);
    }
    return count > 0 && sched_setaffinity(0, sizeof(set), &set) == 0;
#else
    (void)cores;
    (void)count;
    return false;
#endif
}

int sd_current_thread_cores(int *out, int capacity) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    int n = 0;
    for (int core = 0; core < CPU_SETSIZE && n < capacity; core++) {
        if (CPU_ISSET(core, &set)) out[n++] = core;
    }
    return n;
#else
    (void)out;
    (void)capacity;
    return 0;
#endif
}
