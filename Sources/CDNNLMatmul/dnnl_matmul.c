// A cache of single-threaded oneDNN primitives: matmuls, one per (type, shape, strides, beta), and direct
// convolutions of one image band, one per (geometry, padding, bias, sum).
#include "dnnl_matmul.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SD_MATMUL = 0, SD_CONVOLUTION = 1 };

typedef struct {
    int kind;
    int bf16;
    int64_t m, n, k, lda, ldb, ldc;
    int sum;
    // SD_CONVOLUTION: input rows, columns, channels; output channels; kernel rows, columns; stride; padding
    // top, bottom, left, right; bias (0/1).
    int64_t conv[12];
} sd_key;

typedef struct {
    sd_key key;
    int used;
    dnnl_primitive_t primitive;
    size_t scratchpad_bytes;
    dnnl_memory_desc_t src, weights, dst, bias, scratchpad;
    int failure;       // the status of a refused creation (primitive NULL)
    int weight_block;  // SD_CONVOLUTION: the output-channel block of the Ohwi<block>o weights it reads
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

static int sd_primitive_desc(dnnl_primitive_desc_t *pd, const void *desc, int sum);
static int sd_finish(sd_entry *entry, dnnl_primitive_desc_t pd);

static int sd_execute(sd_entry *entry, const void *src_data, const void *weights_data, const void *bias_data, void *dst_data);

static int sd_create_matmul(sd_entry *entry) {
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
    dnnl_primitive_desc_t pd;
    if ((status = sd_primitive_desc(&pd, &desc, key->sum)) != dnnl_success) return status;
    entry->src = src;
    entry->weights = weights;
    entry->dst = dst;
    return sd_finish(entry, pd);
}

// A primitive descriptor with a user scratchpad and, with `sum`, a sum post-op (dst += result).
static int sd_primitive_desc(dnnl_primitive_desc_t *pd, const void *desc, int sum) {
    dnnl_primitive_attr_t attr;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (sum) {
        dnnl_post_ops_t ops;
        dnnl_post_ops_create(&ops);
        dnnl_post_ops_append_sum(ops, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, ops);
        dnnl_post_ops_destroy(ops);
    }
    dnnl_status_t status = dnnl_primitive_desc_create(pd, desc, attr, sd_engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    return status;
}

// Records the scratchpad and creates the primitive; frees `pd`.
static int sd_finish(sd_entry *entry, dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    entry->scratchpad = *scratch;
    entry->scratchpad_bytes = dnnl_memory_desc_get_size(scratch);
    int status = dnnl_primitive_create(&entry->primitive, pd);
    dnnl_primitive_desc_destroy(pd);
    return status;
}

// A direct convolution of one NHWC image band, taking its weights in the layout the primitive chose when that is
// Ohwi<B>o (B = 16, 32 or 64: output channels in blocks of B, each block's [kh][kw][in][B] contiguous), which is
// what oneDNN's brgemm convolution picks for channels-last activations. Any other implementation or weight layout
// is refused (dnnl_unimplemented), and the caller keeps its own convolution.
static int sd_create_convolution(sd_entry *entry) {
    const int64_t *c = entry->key.conv;
    int64_t out_h = (c[0] + c[7] + c[8] - c[4]) / c[6] + 1, out_w = (c[1] + c[9] + c[10] - c[5]) / c[6] + 1;
    dnnl_dims_t src_dims = {1, c[2], c[0], c[1]}, w_dims = {c[3], c[2], c[4], c[5]}, bias_dims = {c[3]};
    dnnl_dims_t dst_dims = {1, c[3], out_h, out_w}, strides = {c[6], c[6]};
    dnnl_dims_t pad_l = {c[7], c[9]}, pad_r = {c[8], c[10]};
    dnnl_memory_desc_t src, any_weights, bias, dst;
    dnnl_status_t status;
    if ((status = dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_nhwc)) != dnnl_success) return status;
    if ((status = dnnl_memory_desc_init_by_tag(&any_weights, 4, w_dims, dnnl_f32, dnnl_format_tag_any)) != dnnl_success) return status;
    if ((status = dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x)) != dnnl_success) return status;
    if ((status = dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_nhwc)) != dnnl_success) return status;
    dnnl_convolution_desc_t desc;
    status = dnnl_convolution_forward_desc_init(
        &desc, dnnl_forward_inference, dnnl_convolution_direct, &src, &any_weights, c[11] ? &bias : NULL, &dst, strides, pad_l, pad_r);
    if (status != dnnl_success) return status;
    dnnl_primitive_desc_t pd;
    if ((status = sd_primitive_desc(&pd, &desc, entry->key.sum)) != dnnl_success) return status;
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    const dnnl_memory_desc_t *chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    static const struct { int block; dnnl_format_tag_t tag; } layouts[] = {{16, dnnl_Acdb16a}, {32, dnnl_Acdb32a}, {64, dnnl_Acdb64a}};
    entry->weight_block = 0;
    if (strncmp(impl, "brgconv", 7) == 0) {
        for (int i = 0; i < 3; i++) {
            dnnl_memory_desc_t blocked;
            if (dnnl_memory_desc_init_by_tag(&blocked, 4, w_dims, dnnl_f32, layouts[i].tag) == dnnl_success &&
                dnnl_memory_desc_equal(&blocked, chosen)) {
                entry->weight_block = layouts[i].block;
                break;
            }
        }
    }
    if (entry->weight_block == 0) {
        dnnl_primitive_desc_destroy(pd);
        return dnnl_unimplemented;
    }
    entry->src = src;
    entry->weights = *chosen;
    entry->bias = bias;
    entry->dst = dst;
    return sd_finish(entry, pd);
}

static int sd_create(sd_entry *entry) {
    return entry->key.kind == SD_CONVOLUTION ? sd_create_convolution(entry) : sd_create_matmul(entry);
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
            *status = entry->failure;
            return entry->primitive ? entry : NULL;
        }
        if (!entry->used) {
            if (sd_cache_count >= SD_CACHE_SLOTS * 3 / 4) break;
            memset(entry, 0, sizeof(*entry));
            entry->key = *key;
            *status = sd_create(entry);
            // A refused shape is remembered too, so that asking again costs a lookup, not a primitive descriptor.
            entry->used = 1;
            sd_cache_count++;
            if (*status != dnnl_success) {
                entry->failure = *status;
                entry->primitive = NULL;
                pthread_mutex_unlock(&sd_lock);
                return NULL;
            }
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
    return sd_execute(entry, a, b, NULL, c);
}

// Runs a cached primitive on the calling thread (its stream and scratchpad are the thread's own).
static int sd_execute(sd_entry *entry, const void *src_data, const void *weights_data, const void *bias_data, void *dst_data) {
    int status;
    if (!sd_stream) {
        if (sd_omp_set_num_threads) sd_omp_set_num_threads(1);
        if ((status = dnnl_stream_create(&sd_stream, sd_engine, dnnl_stream_default_flags)) != dnnl_success) return status;
    }
    if (entry->scratchpad_bytes > sd_scratch_bytes) {
        free(sd_scratch);
        sd_scratch_bytes = entry->scratchpad_bytes;
        if (posix_memalign(&sd_scratch, 64, sd_scratch_bytes) != 0) { sd_scratch = NULL; sd_scratch_bytes = 0; return dnnl_out_of_memory; }
    }
    dnnl_memory_t memories[5] = {NULL, NULL, NULL, NULL, NULL};
    dnnl_exec_arg_t args[5];
    int count = 0;
    const struct { int arg; const dnnl_memory_desc_t *md; const void *data; } operands[4] = {
        {DNNL_ARG_SRC, &entry->src, src_data}, {DNNL_ARG_WEIGHTS, &entry->weights, weights_data},
        {DNNL_ARG_BIAS, &entry->bias, bias_data}, {DNNL_ARG_DST, &entry->dst, dst_data}};
    for (int i = 0; i < 4; i++) {
        if (!operands[i].data) continue;
        dnnl_memory_create(&memories[count], operands[i].md, sd_engine, (void *)operands[i].data);
        args[count].arg = operands[i].arg;
        args[count].memory = memories[count];
        count++;
    }
    if (entry->scratchpad_bytes > 0) {
        dnnl_memory_create(&memories[count], &entry->scratchpad, sd_engine, sd_scratch);
        args[count].arg = DNNL_ARG_SCRATCHPAD;
        args[count].memory = memories[count];
        count++;
    }
    status = dnnl_primitive_execute(entry->primitive, sd_stream, count, args);
    if (status == dnnl_success) status = dnnl_stream_wait(sd_stream);
    for (int i = 0; i < count; i++) dnnl_memory_destroy(memories[i]);
    return status;
}

static void sd_convolution_key(sd_key *key, const int64_t geometry[11], int sum, int bias) {
    memset(key, 0, sizeof(*key));  // padding bytes take part in the hash
    key->kind = SD_CONVOLUTION;
    for (int i = 0; i < 11; i++) key->conv[i] = geometry[i];
    key->conv[11] = bias ? 1 : 0;
    key->sum = sum ? 1 : 0;
}

int sd_dnnl_convolution_weight_block(const int64_t geometry[11], int sum, int bias) {
    sd_key key;
    sd_convolution_key(&key, geometry, sum, bias);
    int status;
    sd_entry *entry = sd_lookup(&key, &status);
    return entry ? entry->weight_block : 0;
}

int sd_dnnl_convolution(const int64_t geometry[11], int sum, const float *src, const float *weights, const float *bias, float *dst) {
    sd_key key;
    sd_convolution_key(&key, geometry, sum, bias != NULL);
    int status;
    sd_entry *entry = sd_lookup(&key, &status);
    if (!entry) return status;
    return sd_execute(entry, src, weights, bias, dst);
}

void sd_block_convolution_weights(const float *ohwi, int64_t out_channels, int64_t inner, int64_t block, int64_t first_block,
                                  int64_t block_count, float *blocked) {
    for (int64_t b = first_block; b < first_block + block_count; b++) {
        float *target = blocked + b * inner * block;
        int64_t valid = out_channels - b * block < block ? out_channels - b * block : block;
        // Tiles of 256 inner positions: a tile's target (256 * block floats) stays in L1 while the block's rows are
        // read 1 KiB at a time.
        for (int64_t j0 = 0; j0 < inner; j0 += 256) {
            int64_t j1 = j0 + 256 < inner ? j0 + 256 : inner;
            for (int64_t o = 0; o < block; o++) {
                if (o < valid) {
                    const float *row = ohwi + (b * block + o) * inner;
                    for (int64_t j = j0; j < j1; j++) target[j * block + o] = row[j];
                } else {
                    for (int64_t j = j0; j < j1; j++) target[j * block + o] = 0;
                }
            }
        }
    }
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
