// The kernels, written once on clang vector extensions and compiled once per instruction set: each
// kernels_<isa>.c defines SD_W (floats per vector), SD_NAME(x), the attention tile sizes, and includes this file
// inside `#pragma clang attribute push(__attribute__((target(...))))`. `a * b + c` is contracted to a fused
// multiply-add where the target has FMA (clang's default -ffp-contract=on), to a multiply and an add elsewhere.
#include "sd_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float vf __attribute__((ext_vector_type(SD_W)));
typedef int32_t vi __attribute__((ext_vector_type(SD_W)));
typedef uint32_t vu __attribute__((ext_vector_type(SD_W)));
typedef uint16_t vh __attribute__((ext_vector_type(SD_W)));
typedef vf vf_u __attribute__((aligned(4), may_alias));
typedef vh vh_u __attribute__((aligned(2), may_alias));

#define INLINE static inline __attribute__((always_inline))

INLINE vf load(const float *p) { return *(const vf_u *)p; }
INLINE void store(float *p, vf v) { *(vf_u *)p = v; }
INLINE vf splat(float x) { return (vf)x; }
INLINE vf vmax(vf a, vf b) { return a > b ? a : b; }
INLINE vf vmin(vf a, vf b) { return a < b ? a : b; }
INLINE vf select_(vi mask, vf a, vf b) { return mask ? a : b; }

/// The first `count` (< SD_W) floats at p, the other lanes `fill`.
INLINE vf load_partial(const float *p, long count, float fill) {
    vf v = splat(fill);
    for (long i = 0; i < count; i++) v[i] = p[i];
    return v;
}
INLINE void store_partial(float *p, vf v, long count) {
    for (long i = 0; i < count; i++) p[i] = v[i];
}
INLINE float hsum(vf v) {
    float s = 0;
    for (int i = 0; i < SD_W; i++) s += v[i];
    return s;
}
INLINE float hmax(vf v) {
    float m = v[0];
    for (int i = 1; i < SD_W; i++) m = v[i] > m ? v[i] : m;
    return m;
}

// MARK: - Transcendental functions (the same numerics as the former Swift SIMD8 versions)

#define ROUNDING_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define ROUNDING_MAGIC_BITS 0x4B400000

/// e^x with a relative error below 2e-7 on [-87, 88]; saturates outside (Cephes).
INLINE vf v_exp(vf x) {
    x = vmin(x, splat(88.3762626647949f));
    x = vmax(x, splat(-87.3365447505531f));
    vf shifted = x * 1.44269504088896341f + ROUNDING_MAGIC;
    vf n = shifted - ROUNDING_MAGIC;
    vf r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vf r2 = r * r;
    vf er = p * r2 + r + 1.0f;
    vi exponent = (((vi)shifted - ROUNDING_MAGIC_BITS) + 127) << 23;
    return er * (vf)exponent;
}

/// 2^x for x <= 0 (attention's shifted scores), relative error below 1e-7; exactly 0 at and below -127, so -inf
/// (a masked score) gives 0.
INLINE vf v_exp2(vf x) {
    x = vmax(x, splat(-127.0f));
    vf shifted = x + ROUNDING_MAGIC;
    vf n = shifted - ROUNDING_MAGIC;
    vf f = x - n;  // [-0.5, 0.5]
    vf p = splat(1.5370715e-4f);  // least-squares fit of 2^f on [-0.5, 0.5], relative error < 1e-7
    p = p * f + 1.3399858e-3f;
    p = p * f + 9.6183736e-3f;
    p = p * f + 5.5503290e-2f;
    p = p * f + 2.4022648e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    vi exponent = (((vi)shifted - ROUNDING_MAGIC_BITS) + 127) << 23;
    return p * (vf)exponent;
}

INLINE vf v_sigmoid(vf x) { return 1.0f / (1.0f + v_exp(-x)); }

/// tanh(x) = 1 - 2 / (e^2x + 1), with an odd polynomial for |x| < 0.625.
INLINE vf v_tanh(vf x) {
    vf e = v_exp(x * 2.0f);
    vf result = 1.0f - 2.0f / (e + 1.0f);
    vf x2 = x * x;
    vf p = splat(-5.70498872745e-3f);
    p = p * x2 + 2.06390887954e-2f;
    p = p * x2 - 5.37397155531e-2f;
    p = p * x2 + 1.33314422036e-1f;
    p = p * x2 - 3.33332819422e-1f;
    vf small = p * x2 * x + x;
    return select_(x2 < 0.390625f, small, result);
}

/// erf(x), absolute error below 2e-7: a series for |x| < 0.5, Numerical Recipes' erfc above.
INLINE vf v_erf(vf input) {
    vi signBits = (vi)input & (int32_t)0x80000000;
    vf a = (vf)((vi)input & 0x7FFFFFFF);
    a = vmin(a, splat(4.0f));
    vf a2 = a * a;
    vf s = splat(-1.4925650358406252e-05f);
    s = s * a2 + 1.2055332981789664e-04f;
    s = s * a2 - 8.5483255082993370e-04f;
    s = s * a2 + 5.2239776254421880e-03f;
    s = s * a2 - 2.6866170645131252e-02f;
    s = s * a2 + 1.1283791670955126e-01f;
    s = s * a2 - 3.7612638903183750e-01f;
    s = s * a2 + 1.1283791670955126f;
    vf small = s * a;
    vf t = 1.0f / (1.0f + 0.5f * a);
    vf q = splat(0.17087277f);
    q = q * t - 0.82215223f;
    q = q * t + 1.48851587f;
    q = q * t - 1.13520398f;
    q = q * t + 0.27886807f;
    q = q * t - 0.18628806f;
    q = q * t + 0.09678418f;
    q = q * t + 0.37409196f;
    q = q * t + 1.00002368f;
    q = q * t - 1.26551223f;
    vf erfc = t * v_exp(q - a2);
    vf result = select_(a < 0.5f, small, 1.0f - erfc);
    return (vf)((vi)result | signBits);
}

INLINE vf v_gelu_erf(vf v) { return 0.5f * v * (1.0f + v_erf(v * 0.70710678118654752f)); }
INLINE vf v_gelu_tanh(vf v) { return 0.5f * v * (1.0f + v_tanh(0.79788456080286536f * (v + 0.044715f * v * v * v))); }

// MARK: - Elementwise maps

#define MAP_LOOP(EXPR)                                                         \
    do {                                                                       \
        long i = 0;                                                            \
        for (; i + SD_W <= count; i += SD_W) {                                 \
            vf v = load(x + i);                                                \
            store(y + i, (EXPR));                                              \
        }                                                                      \
        if (i < count) {                                                       \
            vf v = load_partial(x + i, count - i, 0);                          \
            store_partial(y + i, (EXPR), count - i);                           \
        }                                                                      \
    } while (0)

static void SD_NAME(unary)(int function, const float *x, float *y, long count, float alpha) {
    switch (function) {
    case SD_UNARY_EXP: MAP_LOOP(v_exp(v)); break;
    case SD_UNARY_SIGMOID: MAP_LOOP(v_sigmoid(v)); break;
    case SD_UNARY_SILU:
        if (alpha == 1.0f) {
            MAP_LOOP(v * v_sigmoid(v));
        } else {
            MAP_LOOP(v * v_sigmoid(alpha * v));
        }
        break;
    case SD_UNARY_GELU_ERF: MAP_LOOP(v_gelu_erf(v)); break;
    case SD_UNARY_GELU_TANH: MAP_LOOP(v_gelu_tanh(v)); break;
    case SD_UNARY_TANH: MAP_LOOP(v_tanh(v)); break;
    default: break;
    }
}

static void SD_NAME(softmax_rows)(const float *x, float *y, long rows, long width) {
    for (long row = 0; row < rows; row++) {
        const float *in = x + row * width;
        float *out = y + row * width;
        if (width == 0) continue;
        long vectors = width / SD_W, tail = width - vectors * SD_W;
        vf mv = splat(-INFINITY);
        for (long i = 0; i < vectors; i++) mv = vmax(mv, load(in + i * SD_W));
        float maximum = hmax(mv);
        for (long i = vectors * SD_W; i < width; i++) maximum = in[i] > maximum ? in[i] : maximum;
        if (maximum == -INFINITY) {
            memset(out, 0, (size_t)width * sizeof(float));
            continue;
        }
        vf sv = splat(0);
        for (long i = 0; i < vectors; i++) {
            vf e = v_exp(load(in + i * SD_W) - maximum);
            sv += e;
            store(out + i * SD_W, e);
        }
        float sum = hsum(sv);
        if (tail) {
            vf e = v_exp(load_partial(in + vectors * SD_W, tail, 0) - maximum);
            for (long i = 0; i < tail; i++) {
                out[vectors * SD_W + i] = e[i];
                sum += e[i];
            }
        }
        float inverse = 1.0f / sum;
        for (long i = 0; i < vectors; i++) store(out + i * SD_W, load(out + i * SD_W) * inverse);
        for (long i = vectors * SD_W; i < width; i++) out[i] *= inverse;
    }
}

static void SD_NAME(geglu_rows)(const float *x, float *y, long rows, long half) {
    for (long row = 0; row < rows; row++) {
        const float *hidden = x + row * 2 * half, *gate = hidden + half;
        float *out = y + row * half;
        long i = 0;
        for (; i + SD_W <= half; i += SD_W) store(out + i, load(hidden + i) * v_gelu_erf(load(gate + i)));
        if (i < half) {
            long n = half - i;
            store_partial(out + i, load_partial(hidden + i, n, 0) * v_gelu_erf(load_partial(gate + i, n, 0)), n);
        }
    }
}

// MARK: - Normalisation

#define CHANNEL_BLOCK 32

static void SD_NAME(channel_sums)(const float *x, long rows, long width, double *sums) {
    if (width <= 0 || rows <= 0) return;
    float *block = malloc((size_t)width * sizeof(float));
    if (!block) abort();
    long vectors = width / SD_W;
    for (long row = 0; row < rows; row += CHANNEL_BLOCK) {
        long end = row + CHANNEL_BLOCK < rows ? row + CHANNEL_BLOCK : rows;
        memset(block, 0, (size_t)width * sizeof(float));
        for (long r = row; r < end; r++) {
            const float *line = x + r * width;
            for (long v = 0; v < vectors; v++) store(block + v * SD_W, load(block + v * SD_W) + load(line + v * SD_W));
            for (long c = vectors * SD_W; c < width; c++) block[c] += line[c];
        }
        for (long c = 0; c < width; c++) sums[c] += (double)block[c];
    }
    free(block);
}

static void SD_NAME(channel_squared_deviations)(const float *x, long rows, long width, const float *mean, double *sums) {
    if (width <= 0 || rows <= 0) return;
    float *block = malloc((size_t)width * sizeof(float));
    if (!block) abort();
    long vectors = width / SD_W;
    for (long row = 0; row < rows; row += CHANNEL_BLOCK) {
        long end = row + CHANNEL_BLOCK < rows ? row + CHANNEL_BLOCK : rows;
        memset(block, 0, (size_t)width * sizeof(float));
        for (long r = row; r < end; r++) {
            const float *line = x + r * width;
            for (long v = 0; v < vectors; v++) {
                vf d = load(line + v * SD_W) - load(mean + v * SD_W);
                store(block + v * SD_W, d * d + load(block + v * SD_W));
            }
            for (long c = vectors * SD_W; c < width; c++) {
                float d = line[c] - mean[c];
                block[c] += d * d;
            }
        }
        for (long c = 0; c < width; c++) sums[c] += (double)block[c];
    }
    free(block);
}

static void SD_NAME(scale_shift_rows)(
    const float *x, float *y, long rows, long width, const float *scale, const float *shift, int silu) {
    long vectors = width / SD_W, tail = width - vectors * SD_W;
    for (long r = 0; r < rows; r++) {
        const float *line = x + r * width;
        float *target = y + r * width;
        for (long v = 0; v < vectors; v++) {
            vf t = load(line + v * SD_W) * load(scale + v * SD_W) + load(shift + v * SD_W);
            if (silu) t = t * v_sigmoid(t);
            store(target + v * SD_W, t);
        }
        if (tail) {
            long c = vectors * SD_W;
            vf t = load_partial(line + c, tail, 0) * load_partial(scale + c, tail, 0) + load_partial(shift + c, tail, 0);
            if (silu) t = t * v_sigmoid(t);
            store_partial(target + c, t, tail);
        }
    }
}

static void SD_NAME(layer_norm_rows)(
    const float *x, float *y, long rows, long width, const float *gamma, const float *beta, float epsilon) {
    long vectors = width / SD_W, tail = width - vectors * SD_W;
    for (long r = 0; r < rows; r++) {
        const float *line = x + r * width;
        float *target = y + r * width;
        vf sv = splat(0);
        for (long v = 0; v < vectors; v++) sv += load(line + v * SD_W);
        double sum = 0;
        for (int i = 0; i < SD_W; i++) sum += (double)sv[i];
        for (long c = vectors * SD_W; c < width; c++) sum += (double)line[c];
        float mean = (float)(sum / (double)width);
        vf qv = splat(0);
        for (long v = 0; v < vectors; v++) {
            vf d = load(line + v * SD_W) - mean;
            qv = d * d + qv;
        }
        double squares = 0;
        for (int i = 0; i < SD_W; i++) squares += (double)qv[i];
        for (long c = vectors * SD_W; c < width; c++) {
            float d = line[c] - mean;
            squares += (double)(d * d);
        }
        float inverseStd = (float)(1.0 / sqrt(squares / (double)width + (double)epsilon));
        for (long v = 0; v < vectors; v++) {
            long c = v * SD_W;
            vf g = gamma ? load(gamma + c) : splat(1), b = beta ? load(beta + c) : splat(0);
            store(target + c, (load(line + c) - mean) * inverseStd * g + b);
        }
        if (tail) {
            long c = vectors * SD_W;
            vf g = gamma ? load_partial(gamma + c, tail, 1) : splat(1), b = beta ? load_partial(beta + c, tail, 0) : splat(0);
            store_partial(target + c, (load_partial(line + c, tail, 0) - mean) * inverseStd * g + b, tail);
        }
    }
}

// MARK: - Narrow float formats

INLINE vf half_bits_to_float(vh h) {
    vi bits = __builtin_convertvector(h, vi);
    vf value = (vf)((bits & 0x7FFF) << 13) * (vf)splat(0x1.0p112f);  // rescales by 2^112, normalising subnormals
    vi valueBits = (vi)value;
    valueBits = value >= 65536.0f ? (valueBits | (255 << 23)) : valueBits;  // was infinity or NaN
    return (vf)(valueBits | ((bits & 0x8000) << 16));
}

static void SD_NAME(half_to_float)(const void *source, float *y, long count) {
    const uint16_t *x = source;
    long i = 0;
    for (; i + SD_W <= count; i += SD_W) store(y + i, half_bits_to_float(*(const vh_u *)(x + i)));
    if (i < count) {
        vh h = (vh)0;
        for (long j = 0; j < count - i; j++) h[j] = x[i + j];
        store_partial(y + i, half_bits_to_float(h), count - i);
    }
}

static void SD_NAME(bfloat16_to_float)(const void *source, float *y, long count) {
    const uint16_t *x = source;
    long i = 0;
    for (; i + SD_W <= count; i += SD_W) store(y + i, (vf)(__builtin_convertvector(*(const vh_u *)(x + i), vu) << 16));
    for (; i < count; i++) {
        uint32_t bits = (uint32_t)x[i] << 16;
        memcpy(y + i, &bits, 4);
    }
}

// MARK: - In-register transposes

#if SD_W == 16
#define SD_LO_INDICES 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define SD_HI_INDICES 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#elif SD_W == 8
#define SD_LO_INDICES 0, 8, 1, 9, 2, 10, 3, 11
#define SD_HI_INDICES 4, 12, 5, 13, 6, 14, 7, 15
#elif SD_W == 4
#define SD_LO_INDICES 0, 4, 1, 5
#define SD_HI_INDICES 2, 6, 3, 7
#else
#error "SD_W must be 4, 8 or 16"
#endif

/// Transposes an SD_W x SD_W block held in SD_W vectors (m[r][c] becomes m[c][r]). log2(SD_W) rounds of the perfect
/// shuffle: row j and row j + SD_W/2 interleave into rows 2j (their first halves) and 2j + 1 (their second halves).
INLINE void transpose_square(vf m[SD_W]) {
    for (int width = 1; width < SD_W; width *= 2) {
        vf next[SD_W];
        for (int j = 0; j < SD_W / 2; j++) {
            next[2 * j] = __builtin_shufflevector(m[j], m[j + SD_W / 2], SD_LO_INDICES);
            next[2 * j + 1] = __builtin_shufflevector(m[j], m[j + SD_W / 2], SD_HI_INDICES);
        }
        for (int j = 0; j < SD_W; j++) m[j] = next[j];
    }
}

/// dst[c * dstStride + r] = scale * src[r * srcStride + c] for r < SD_W, c < SD_W: rows at and past `rows` (1 <= rows;
/// rows past SD_W are not read) read as 0, and columns past `columns` (1 <= columns <= SD_W) are neither read nor written.
INLINE void transpose_block_in(
    const float *src, long srcStride, long rows, long columns, float scale, float *dst, long dstStride) {
    vf m[SD_W];
    for (int r = 0; r < SD_W; r++)
        m[r] = r >= rows ? splat(0) : (columns == SD_W ? load(src + r * srcStride) : load_partial(src + r * srcStride, columns, 0)) * scale;
    transpose_square(m);
    for (int c = 0; c < columns; c++) store(dst + c * dstStride, m[c]);
}

/// dst[r * dstStride + c] = src[c * srcStride + r] * rowScale[r] for r < rows, c < columns (each <= SD_W); reads SD_W
/// lanes of each of the first `columns` source rows.
INLINE void transpose_block_out(
    const float *src, long srcStride, vf rowScale, long rows, long columns, float *dst, long dstStride) {
    vf m[SD_W];
    for (int c = 0; c < SD_W; c++) m[c] = c < columns ? load(src + c * srcStride) * rowScale : splat(0);
    transpose_square(m);
    for (int r = 0; r < rows; r++) {
        if (columns == SD_W) store(dst + r * dstStride, m[r]);
        else store_partial(dst + r * dstStride, m[r], columns);
    }
}

// MARK: - Attention
//
// Flash-attention style: a block of ATT_BR query rows of one head is held transposed (`Qt[d][row]`, rows in
// vector lanes, pre-scaled by scale * log2 e), keys stream by in blocks of at most ATT_BC, and for each key block
//   S^T[key][row] = sum_d K[key][d] Qt[d][row]                           (register tiles of ATT_CB keys x ATT_RV vectors)
//   online softmax per row (lane): running max m, running sum l, rescale factor alpha = 2^(m_old - m_new)
//   O^T[d][row] = alpha O^T[d][row] + sum_key V[key][d] P^T[key][row]    (register tiles of ATT_DB dims x ATT_RV vectors)
// With rows in lanes, every softmax reduction is a vertical vector operation and any head dimension works without
// padding (it is the loop length of one product and the broadcast index of the other). K and V are read in place
// (one broadcast per multiply-add group), so nothing but Q is packed.

#define ATT_TILE_ROWS (ATT_RV * SD_W)
#define ATT_ALIGN(n) (((n) + 15) & ~(long)15)

static long SD_NAME(attention_scratch_floats)(long headDim, long valueHeadDim) {
    return ATT_ALIGN(headDim * ATT_BR) + ATT_ALIGN(valueHeadDim * ATT_BR) + ATT_ALIGN((long)ATT_BC * ATT_BR)
        + 3 * ATT_ALIGN(ATT_BR) + ATT_ALIGN((long)ATT_CB * headDim);
}

/// S^T tile: st[j * ATT_BR + lane] = sum_t k[j * kStride + t] * qt[t * ATT_BR + lane] for ATT_CB keys j, ATT_RV vectors.
INLINE void attention_qk_tile(const float *qt, const float *k, long kStride, long headDim, float *st) {
    vf acc[ATT_CB][ATT_RV];
    for (int j = 0; j < ATT_CB; j++)
        for (int i = 0; i < ATT_RV; i++) acc[j][i] = splat(0);
    for (long t = 0; t < headDim; t++) {
        vf qv[ATT_RV];
        for (int i = 0; i < ATT_RV; i++) qv[i] = load(qt + t * ATT_BR + i * SD_W);
        for (int j = 0; j < ATT_CB; j++) {
            vf kb = splat(k[j * kStride + t]);
            for (int i = 0; i < ATT_RV; i++) acc[j][i] = qv[i] * kb + acc[j][i];
        }
    }
    for (int j = 0; j < ATT_CB; j++)
        for (int i = 0; i < ATT_RV; i++) store(st + j * ATT_BR + i * SD_W, acc[j][i]);
}

/// O^T tile: ot[j * ATT_BR + lane] = alpha[lane] ot[...] + sum_c v[c * vStride + j] pt[c * ATT_BR + lane], for `dims`
/// (a constant after inlining) value dimensions j and ATT_RV vectors of rows.
INLINE void attention_pv_tile(
    const int dims, const float *pt, const float *v, long vStride, long keys, const float *alpha, float *ot) {
    vf acc[ATT_DB][ATT_RV];
    vf scale[ATT_RV];
    for (int i = 0; i < ATT_RV; i++) scale[i] = load(alpha + i * SD_W);
    for (int j = 0; j < dims; j++)
        for (int i = 0; i < ATT_RV; i++) acc[j][i] = load(ot + j * ATT_BR + i * SD_W) * scale[i];
    for (long c = 0; c < keys; c++) {
        vf pv[ATT_RV];
        for (int i = 0; i < ATT_RV; i++) pv[i] = load(pt + c * ATT_BR + i * SD_W);
        const float *row = v + c * vStride;
        for (int j = 0; j < dims; j++) {
            vf vb = splat(row[j]);
            for (int i = 0; i < ATT_RV; i++) acc[j][i] = pv[i] * vb + acc[j][i];
        }
    }
    for (int j = 0; j < dims; j++)
        for (int i = 0; i < ATT_RV; i++) store(ot + j * ATT_BR + i * SD_W, acc[j][i]);
}

static void SD_NAME(attention)(
    const float *q, const float *k, const float *v, float *o, long rows, long keys, long headDim, long valueHeadDim,
    long qStride, long kStride, long vStride, long oStride, float scale, long firstRow, int causal, float *scratch) {
    float *qt = scratch;
    float *ot = qt + ATT_ALIGN(headDim * ATT_BR);
    float *st = ot + ATT_ALIGN(valueHeadDim * ATT_BR);
    float *runningMax = st + ATT_ALIGN((long)ATT_BC * ATT_BR);
    float *runningSum = runningMax + ATT_ALIGN(ATT_BR);
    float *alpha = runningSum + ATT_ALIGN(ATT_BR);
    float *kTail = alpha + ATT_ALIGN(ATT_BR);

    // Causal: the block's last row sees keys up to firstRow + rows - 1.
    long visibleKeys = causal ? (firstRow + rows < keys ? firstRow + rows : keys) : keys;
    const float qScale = scale * 1.44269504088896341f;  // scores in base 2: e^s = 2^(s log2 e)
    // Q^T in SD_W x SD_W register transposes; the lanes of rows past `rows` are zero (and those rows are never addressed).
    for (long r0 = 0; r0 < ATT_BR; r0 += SD_W) {
        if (r0 >= rows) {
            for (long t = 0; t < headDim; t++) store(qt + t * ATT_BR + r0, splat(0));
            continue;
        }
        for (long t0 = 0; t0 < headDim; t0 += SD_W)
            transpose_block_in(
                q + r0 * qStride + t0, qStride, rows - r0, headDim - t0 < SD_W ? headDim - t0 : SD_W, qScale, qt + t0 * ATT_BR + r0,
                ATT_BR);
    }
    memset(ot, 0, (size_t)(valueHeadDim * ATT_BR) * sizeof(float));
    for (long r = 0; r < ATT_BR; r++) {
        runningMax[r] = -INFINITY;
        runningSum[r] = 0;
    }
    // Key blocks of equal size, each at most ATT_BC keys and a whole number of ATT_CB-key tiles.
    long tiles = (visibleKeys + ATT_CB - 1) / ATT_CB;
    long blocks = (tiles * ATT_CB + ATT_BC - 1) / ATT_BC;
    long tilesPerBlock = blocks > 0 ? (tiles + blocks - 1) / blocks : 1;
    vi laneIndex;
    for (int i = 0; i < SD_W; i++) laneIndex[i] = i;

    for (long block0 = 0; block0 < visibleKeys; block0 += tilesPerBlock * ATT_CB) {
        long blockKeys = visibleKeys - block0 < tilesPerBlock * ATT_CB ? visibleKeys - block0 : tilesPerBlock * ATT_CB;
        long blockTiles = (blockKeys + ATT_CB - 1) / ATT_CB;
        // Scores.
        for (long tile = 0; tile < blockTiles; tile++) {
            long key0 = block0 + tile * ATT_CB;
            const float *kTile = k + key0 * kStride;
            long tileStride = kStride;
            if (key0 + ATT_CB > keys) {
                // The last keys: a zero-padded copy, so the tile never reads past K (the padding is never used).
                long valid = keys - key0;
                for (long j = 0; j < ATT_CB; j++)
                    for (long t = 0; t < headDim; t++) kTail[j * headDim + t] = j < valid ? kTile[j * kStride + t] : 0.0f;
                kTile = kTail;
                tileStride = headDim;
            }
            for (long rt = 0; rt < ATT_BR / ATT_TILE_ROWS; rt++)
                attention_qk_tile(qt + rt * ATT_TILE_ROWS, kTile, tileStride, headDim, st + tile * ATT_CB * ATT_BR + rt * ATT_TILE_ROWS);
        }
        // Online softmax, one vector of rows at a time.
        int masked = causal && block0 + blockKeys - 1 > firstRow;
        for (long rv = 0; rv < ATT_BR / SD_W; rv++) {
            float *column = st + rv * SD_W;
            vf previous = load(runningMax + rv * SD_W), maximum = previous;
            if (masked) {
                vi row = laneIndex + (int32_t)(firstRow + rv * SD_W);
                for (long c = 0; c < blockKeys; c++) {
                    vf s = select_(row < (int32_t)(block0 + c), splat(-INFINITY), load(column + c * ATT_BR));
                    store(column + c * ATT_BR, s);
                    maximum = vmax(maximum, s);
                }
            } else {
                for (long c = 0; c < blockKeys; c++) maximum = vmax(maximum, load(column + c * ATT_BR));
            }
            // A row with nothing visible yet keeps -inf; subtract 0 there instead (no inf - inf).
            vf shift = select_(maximum == -INFINITY, splat(0), maximum);
            vf sum = splat(0);
            for (long c = 0; c < blockKeys; c++) {
                vf p = v_exp2(load(column + c * ATT_BR) - shift);
                store(column + c * ATT_BR, p);
                sum += p;
            }
            vf factor = v_exp2(previous - shift);
            store(alpha + rv * SD_W, factor);
            store(runningSum + rv * SD_W, load(runningSum + rv * SD_W) * factor + sum);
            store(runningMax + rv * SD_W, maximum);
        }
        if (block0 == 0) {
            // The caller's next item on this thread is usually the next block of rows of this head: fetch its query and
            // output rows into L2 while this block computes. Each row is a whole row stride from the last (all heads
            // are interleaved in a row), a pattern the hardware prefetchers do not follow far enough ahead, and with
            // few keys (cross-attention) the misses are a tenth of the block's time. A prefetch never faults, so rows
            // past the end are harmless; their addresses are formed as integers.
            uintptr_t nextQuery = (uintptr_t)q + (uintptr_t)(ATT_BR * qStride) * sizeof(float);
            uintptr_t nextOutput = (uintptr_t)o + (uintptr_t)(ATT_BR * oStride) * sizeof(float);
            for (long r = 0; r < ATT_BR; r++) {
                for (long t = 0; t < headDim; t += 64 / (long)sizeof(float))
                    __builtin_prefetch((const void *)(nextQuery + (uintptr_t)(r * qStride + t) * sizeof(float)), 0, 2);
                for (long t = 0; t < valueHeadDim; t += 64 / (long)sizeof(float))
                    __builtin_prefetch((const void *)(nextOutput + (uintptr_t)(r * oStride + t) * sizeof(float)), 1, 2);
            }
        }
        // Values.
        const float *vBlock = v + block0 * vStride;
        for (long rt = 0; rt < ATT_BR / ATT_TILE_ROWS; rt++) {
            const float *pt = st + rt * ATT_TILE_ROWS;
            const float *a = alpha + rt * ATT_TILE_ROWS;
            float *otTile = ot + rt * ATT_TILE_ROWS;
            long d = 0;
            for (; d + ATT_DB <= valueHeadDim; d += ATT_DB)
                attention_pv_tile(ATT_DB, pt, vBlock + d, vStride, blockKeys, a, otTile + d * ATT_BR);
            switch (valueHeadDim - d) {
#define PV_TAIL(n) \
    case n: if (n < ATT_DB) attention_pv_tile(n < ATT_DB ? n : 1, pt, vBlock + d, vStride, blockKeys, a, otTile + d * ATT_BR); break;
                PV_TAIL(1) PV_TAIL(2) PV_TAIL(3) PV_TAIL(4) PV_TAIL(5) PV_TAIL(6) PV_TAIL(7)
#undef PV_TAIL
            default: break;
            }
        }
    }
    // O = (O^T)^T / l, SD_W rows at a time.
    for (long r0 = 0; r0 < rows; r0 += SD_W) {
        vf sums = load(runningSum + r0);
        vf inverse = select_(sums > 0, 1.0f / sums, splat(0));
        long blockRows = rows - r0 < SD_W ? rows - r0 : SD_W;
        for (long d0 = 0; d0 < valueHeadDim; d0 += SD_W)
            transpose_block_out(
                ot + d0 * ATT_BR + r0, ATT_BR, inverse, blockRows, valueHeadDim - d0 < SD_W ? valueHeadDim - d0 : SD_W, o + r0 * oStride + d0,
                oStride);
    }
}


// MARK: - Winograd F(4x4, 3x3) transforms (Lavin & Gray's points 0, +-1, +-2, infinity)
//
// A 3x3 stride-1 convolution of 6x6 input tiles d into 4x4 output tiles y is y = A^T [(G g G^T) . (B^T d B)] A,
// with 36 multiplications per tile and channel pair where the direct form has 144. The elementwise products over
// input channels are 36 matrix products, one per point xi = 6 r + s (WinogradConvolution.swift runs them as GEMMs).
// Each transform below is applied to the columns, then to the rows, of a tile, on a vector of channels.

/// B^T x for a 6-vector.
#define WINO_INPUT_1D(x, y) do {                                   \
        y[0] = 4.0f * x[0] - 5.0f * x[2] + x[4];                   \
        y[1] = -4.0f * (x[1] + x[2]) + x[3] + x[4];                \
        y[2] = 4.0f * (x[1] - x[2]) - x[3] + x[4];                 \
        y[3] = 2.0f * (x[3] - x[1]) - x[2] + x[4];                 \
        y[4] = 2.0f * (x[1] - x[3]) - x[2] + x[4];                 \
        y[5] = 4.0f * x[1] - 5.0f * x[3] + x[5];                   \
    } while (0)

/// G x for a 3-vector.
#define WINO_KERNEL_1D(x, y) do {                                  \
        y[0] = x[0] * 0.25f;                                       \
        y[1] = (x[0] + x[1] + x[2]) * (-1.0f / 6.0f);              \
        y[2] = (x[0] - x[1] + x[2]) * (-1.0f / 6.0f);              \
        y[3] = x[0] * (1.0f / 24.0f) + x[1] * (1.0f / 12.0f) + x[2] * (1.0f / 6.0f); \
        y[4] = x[0] * (1.0f / 24.0f) - x[1] * (1.0f / 12.0f) + x[2] * (1.0f / 6.0f); \
        y[5] = x[2];                                               \
    } while (0)

/// A^T x for a 6-vector.
#define WINO_OUTPUT_1D(x, y) do {                                  \
        vf sum12 = x[1] + x[2], diff12 = x[1] - x[2];              \
        vf sum34 = x[3] + x[4], diff34 = x[3] - x[4];              \
        y[0] = x[0] + sum12 + sum34;                               \
        y[1] = diff12 + 2.0f * diff34;                             \
        y[2] = sum12 + 4.0f * sum34;                               \
        y[3] = diff12 + 8.0f * diff34 + x[5];                      \
    } while (0)

INLINE vf load_lanes(const float *p, long lanes) { return lanes == SD_W ? load(p) : load_partial(p, lanes, 0.0f); }
INLINE void store_lanes(float *p, vf v, long lanes) {
    if (lanes == SD_W) store(p, v);
    else store_partial(p, v, lanes);
}

/// `lanes` bf16 values at p widened to fp32 (exactly), the other lanes 0.
INLINE vf load_bf16_lanes(const uint16_t *p, long lanes) {
    if (lanes == SD_W) return (vf)(__builtin_convertvector(*(const vh_u *)p, vu) << 16);
    vu bits = 0;
    for (long i = 0; i < lanes; i++) bits[i] = (uint32_t)p[i] << 16;
    return (vf)bits;
}

static void SD_NAME(winograd_kernel)(const void *kernel, int bf16, long outCount, long inChannels, float *u, long xiStride) {
    for (long o = 0; o < outCount; o++) {
        long first = o * 9 * inChannels;
        for (long c = 0; c < inChannels; c += SD_W) {
            long lanes = inChannels - c < SD_W ? inChannels - c : SD_W;
            vf t[6][3];
            for (long kw = 0; kw < 3; kw++) {
                vf x[3], y[6];
                for (long kh = 0; kh < 3; kh++) {
                    long at = first + (kh * 3 + kw) * inChannels + c;
                    x[kh] = bf16 ? load_bf16_lanes((const uint16_t *)kernel + at, lanes) : load_lanes((const float *)kernel + at, lanes);
                }
                WINO_KERNEL_1D(x, y);
                for (long r = 0; r < 6; r++) t[r][kw] = y[r];
            }
            for (long r = 0; r < 6; r++) {
                vf y[6];
                WINO_KERNEL_1D(t[r], y);
                for (long s = 0; s < 6; s++) store_lanes(u + (r * 6 + s) * xiStride + o * inChannels + c, y[s], lanes);
            }
        }
    }
}

static void SD_NAME(winograd_input)(
    const float *source, const sd_winograd_geometry *g, long firstTile, long count, float *v, long xiStride) {
    long tilesY = (g->outHeight + 3) / 4, tilesX = (g->outWidth + 3) / 4;
    long channels = g->inChannels, up = g->upsample;
    long sourceWidth = g->width / up, sourceImage = (g->height / up) * sourceWidth * channels;
    for (long j = 0; j < count; j++) {
        long t = firstTile + j;
        long n = t / (tilesY * tilesX), position = t % (tilesY * tilesX);
        long y0 = (position / tilesX) * 4 - g->padTop, x0 = (position % tilesX) * 4 - g->padLeft;
        const float *image = source + n * sourceImage;
        // Offsets of the tile's 6 x 6 pixels in the source (-1: padding).
        long offsets[36];
        for (long r = 0; r < 6; r++) {
            long iy = y0 + r;
            for (long s = 0; s < 6; s++) {
                long ix = x0 + s;
                int inside = iy >= 0 && iy < g->height && ix >= 0 && ix < g->width;
                offsets[r * 6 + s] = inside ? ((iy / up) * sourceWidth + ix / up) * channels : -1;
            }
        }
        for (long c = 0; c < channels; c += SD_W) {
            long lanes = channels - c < SD_W ? channels - c : SD_W;
            vf t[6][6];
            for (long s = 0; s < 6; s++) {
                vf x[6], y[6];
                for (long r = 0; r < 6; r++) {
                    long offset = offsets[r * 6 + s];
                    x[r] = offset < 0 ? splat(0.0f) : load_lanes(image + offset + c, lanes);
                }
                WINO_INPUT_1D(x, y);
                for (long r = 0; r < 6; r++) t[r][s] = y[r];
            }
            for (long r = 0; r < 6; r++) {
                vf y[6];
                WINO_INPUT_1D(t[r], y);
                for (long s = 0; s < 6; s++) store_lanes(v + (r * 6 + s) * xiStride + j * channels + c, y[s], lanes);
            }
        }
    }
}

static void SD_NAME(winograd_output)(
    const float *m, long xiStride, long ldm, const sd_winograd_geometry *g, long firstTile, long count, long outFirst,
    long outCount, const float *bias, int accumulate, float *destination) {
    long tilesY = (g->outHeight + 3) / 4, tilesX = (g->outWidth + 3) / 4;
    long outChannels = g->outChannels;
    for (long j = 0; j < count; j++) {
        long t = firstTile + j;
        long n = t / (tilesY * tilesX), position = t % (tilesY * tilesX);
        long oy0 = (position / tilesX) * 4, ox0 = (position % tilesX) * 4;
        long rows = g->outHeight - oy0 < 4 ? g->outHeight - oy0 : 4;
        long columns = g->outWidth - ox0 < 4 ? g->outWidth - ox0 : 4;
        float *image = destination + n * g->outHeight * g->outWidth * outChannels + outFirst;
        for (long c = 0; c < outCount; c += SD_W) {
            long lanes = outCount - c < SD_W ? outCount - c : SD_W;
            vf t[4][6];
            for (long s = 0; s < 6; s++) {
                vf x[6], y[4];
                for (long r = 0; r < 6; r++) x[r] = load_lanes(m + (r * 6 + s) * xiStride + j * ldm + c, lanes);
                WINO_OUTPUT_1D(x, y);
                for (long r = 0; r < 4; r++) t[r][s] = y[r];
            }
            vf b = bias ? load_lanes(bias + outFirst + c, lanes) : splat(0.0f);
            for (long r = 0; r < rows; r++) {
                vf y[4];
                WINO_OUTPUT_1D(t[r], y);
                for (long s = 0; s < columns; s++) {
                    float *p = image + ((oy0 + r) * g->outWidth + ox0 + s) * outChannels + c;
                    vf value = y[s] + b;
                    if (accumulate) value += load_lanes(p, lanes);
                    store_lanes(p, value, lanes);
                }
            }
        }
    }
}

const sd_kernel_table SD_NAME(table) = {
    .name = SD_ISA_NAME,
    .vectorWidth = SD_W,
    .unary = SD_NAME(unary),
    .softmaxRows = SD_NAME(softmax_rows),
    .gegluRows = SD_NAME(geglu_rows),
    .channelSums = SD_NAME(channel_sums),
    .channelSquaredDeviations = SD_NAME(channel_squared_deviations),
    .scaleShiftRows = SD_NAME(scale_shift_rows),
    .layerNormRows = SD_NAME(layer_norm_rows),
    .halfToFloat = SD_NAME(half_to_float),
    .bfloat16ToFloat = SD_NAME(bfloat16_to_float),
    .attentionBlockRows = ATT_BR,
    .attentionScratchFloats = SD_NAME(attention_scratch_floats),
    .attention = SD_NAME(attention),
    .winogradKernel = SD_NAME(winograd_kernel),
    .winogradInput = SD_NAME(winograd_input),
    .winogradOutput = SD_NAME(winograd_output),
};
