#include "sd_kernels.h"

#include <stdatomic.h>
#include <stddef.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

extern const sd_kernel_table sd_baseline_table;
#if defined(__x86_64__)
extern const sd_kernel_table sd_avx2_table;
extern const sd_kernel_table sd_avx512_table;
#endif

const sd_kernel_table *sd_kernel_table_for(int isa) {
    switch (isa) {
    case SD_ISA_BASELINE: return &sd_baseline_table;
#if defined(__x86_64__)
    case SD_ISA_AVX2: return &sd_avx2_table;
    case SD_ISA_AVX512: return &sd_avx512_table;
#endif
    default: return NULL;
    }
}

static _Atomic(const sd_kernel_table *) current = &sd_baseline_table;

const sd_kernel_table *sd_kernels_current(void) { return atomic_load_explicit(&current, memory_order_acquire); }

void sd_kernels_set(const sd_kernel_table *table) {
    if (table) atomic_store_explicit(&current, table, memory_order_release);
}

int sd_heap_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
