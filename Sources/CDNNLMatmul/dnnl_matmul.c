// A cache of single-threaded oneDNN matmul primitives, one per (type, shape, strides, beta).
#include "dnnl_matmul.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int bf16;
    int64_t m, n, k, lda, ldb, ldc;
    int sum;
} sd_key;

typedef struct {
    sd_key key;
    int used;
    dnnl_primitive_t primitive;
    size_t scratchpad_bytes;
    dnnl_memory_desc_t src, weights, dst, scratchpad;
} sd_entry;

#define SD_CACHE_SLOTS 8192
static sd_entry sd_cache[SD_CACHE_SLOTS];
static int sd_cache_count = 0;
static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t sd_engine = NULL;

typedef void (*omp_set_fn)(int);
static omp_set_fn sd_omp_set_num_threads = NULL;

static __thread dnnl_stream_t sd_stream = NULL;
static __thread void *sd_scratch = NULL;
static __thread size_t sd_scratch_bytes = 0;

static void sd_init_locked(void) {
    if (sd_engine) return;
    dnnl_engine_create(&sd_engine, dnnl_cpu, 0);
    // oneDNN's OpenMP runtime: each call runs on one thread (the caller's), so the engine's pool owns the cores.
    sd_omp_set_num_threads = (omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}

static uint64_t sd_hash(const sd_key *key) {
    const unsigned char *bytes = (const unsigned char *)key;
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(sd_key); i++) { hash ^= bytes[i]; hash *= 1099511628211ull; }
    return hash;
}

static int sd_create(sd_entry *entry) {
    const sd_key *key = &entry->key;
    dnnl_data_type_t type = key->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t src_dims = {key->m, key->k}, src_strides = {key->lda, 1};
    dnnl_dims_t w_dims = {key->k, key->n}, w_strides = {1, key->ldb};
    dnnl_dims_t dst_dims = {key->m, key->n}, dst_strides = {key->ldc, 1};
    dnnl_memory_desc_t src, weights, dst;
    dnnl_status_t status;
    if ((status = dnnl_memory_desc_init_by_strides(&src, 2, src_dims, type, src_strides)) != dnnl_success) return status;
    if ((status = dnnl_memory_desc_init_by_strides(&weights, 2, w_dims, type, w_strides)) != dnnl_success) return status;
    if ((status = dnnl_memory_desc_init_by_strides(&dst, 2, dst_dims, dnnl_f32, dst_strides)) != dnnl_success) return status;
    dnnl_matmul_desc_t desc;
    if ((status = dnnl_matmul_desc_init(&desc, &src, &weights, NULL, &dst)) != dnnl_success) return status;
    dnnl_primitive_attr_t attr;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (key->sum) {
        dnnl_post_ops_t ops;
        dnnl_post_ops_create(&ops);
        dnnl_post_ops_append_sum(ops, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, ops);
        dnnl_post_ops_destroy(ops);
    }
    dnnl_primitive_desc_t pd;
    status = dnnl_primitive_desc_create(&pd, &desc, attr, sd_engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (status != dnnl_success) return status;
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    entry->scratchpad = *scratch;
    entry->scratchpad_bytes = dnnl_memory_desc_get_size(scratch);
    entry->src = src;
    entry->weights = weights;
    entry->dst = dst;
    status = dnnl_primitive_create(&entry->primitive, pd);
    dnnl_primitive_desc_destroy(pd);
    return status;
}

static sd_entry *sd_lookup(const sd_key *key, int *status) {
    *status = dnnl_success;
    uint64_t slot = sd_hash(key) % SD_CACHE_SLOTS;
    pthread_mutex_lock(&sd_lock);
    sd_init_locked();
    if (sd_omp_set_num_threads) sd_omp_set_num_threads(1);
    for (int probe = 0; probe < SD_CACHE_SLOTS; probe++) {
        sd_entry *entry = &sd_cache[(slot + probe) % SD_CACHE_SLOTS];
        if (entry->used && memcmp(&entry->key, key, sizeof(sd_key)) == 0) {
            pthread_mutex_unlock(&sd_lock);
            return entry;
        }
        if (!entry->used) {
            if (sd_cache_count >= SD_CACHE_SLOTS * 3 / 4) break;
            memset(entry, 0, sizeof(*entry));
            entry->key = *key;
            *status = sd_create(entry);
            if (*status != dnnl_success) {
                pthread_mutex_unlock(&sd_lock);
                return NULL;
            }
            entry->used = 1;
            sd_cache_count++;
            pthread_mutex_unlock(&sd_lock);
            return entry;
        }
    }
    pthread_mutex_unlock(&sd_lock);
    *status = dnnl_out_of_memory;
    return NULL;
}

int sd_dnnl_matmul(int bf16, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
                   float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return dnnl_success;
    sd_key key;
    memset(&key, 0, sizeof(key));  // padding bytes take part in the hash
    key.bf16 = bf16 ? 1 : 0;
    key.m = m; key.n = n; key.k = k; key.lda = lda; key.ldb = ldb; key.ldc = ldc;
    key.sum = beta != 0;
    int status;
    sd_entry *entry = sd_lookup(&key, &status);
    if (!entry) return status;
    if (!sd_stream) {
        if (sd_omp_set_num_threads) sd_omp_set_num_threads(1);
        if ((status = dnnl_stream_create(&sd_stream, sd_engine, dnnl_stream_default_flags)) != dnnl_success) return status;
    }
    if (entry->scratchpad_bytes > sd_scratch_bytes) {
        free(sd_scratch);
        sd_scratch_bytes = entry->scratchpad_bytes;
        if (posix_memalign(&sd_scratch, 64, sd_scratch_bytes) != 0) { sd_scratch = NULL; sd_scratch_bytes = 0; return dnnl_out_of_memory; }
    }
    dnnl_memory_t src, weights, dst, scratch = NULL;
    dnnl_memory_create(&src, &entry->src, sd_engine, (void *)a);
    dnnl_memory_create(&weights, &entry->weights, sd_engine, (void *)b);
    dnnl_memory_create(&dst, &entry->dst, sd_engine, c);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, NULL}};
    int count = 3;
    if (entry->scratchpad_bytes > 0) {
        dnnl_memory_create(&scratch, &entry->scratchpad, sd_engine, sd_scratch);
        args[3].memory = scratch;
        count = 4;
    }
    status = dnnl_primitive_execute(entry->primitive, sd_stream, count, args);
    if (status == dnnl_success) status = dnnl_stream_wait(sd_stream);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(weights);
    dnnl_memory_destroy(dst);
    if (scratch) dnnl_memory_destroy(scratch);
    return status;
}

void sd_f32_to_bf16(const float *source, uint16_t *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &source[i], 4);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            destination[i] = (uint16_t)((bits >> 16) | 0x40);  // quiet NaN
        } else {
            bits += 0x7fffu + ((bits >> 16) & 1u);
            destination[i] = (uint16_t)(bits >> 16);
        }
    }
}

void sd_bf16_to_f32(const uint16_t *source, float *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = (uint32_t)source[i] << 16;
        memcpy(&destination[i], &bits, 4);
    }
}

int sd_dnnl_set_max_isa(int isa) { return dnnl_set_max_cpu_isa((dnnl_cpu_isa_t)isa); }

const char *sd_dnnl_effective_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

const char *sd_dnnl_version(void) {
    static char text[32];
    const dnnl_version_t *version = dnnl_version();
    snprintf(text, sizeof(text), "%d.%d.%d", version->major, version->minor, version->patch);
    return text;
}

int sd_dnnl_cached_primitives(void) {
    pthread_mutex_lock(&sd_lock);
    int count = sd_cache_count;
    pthread_mutex_unlock(&sd_lock);
    return count;
}
