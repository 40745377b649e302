// The engine's own elementwise, normalisation, conversion and attention kernels, compiled once per instruction set
// (AVX-512, AVX2 + FMA, baseline SSE2) into one binary; Compute/Kernels.swift picks one table at start-up from CPUID.
#ifndef SWIFTDIFFUSION_KERNELS_H
#define SWIFTDIFFUSION_KERNELS_H

#include <stdint.h>

/// The instruction sets kernels are compiled for (the index of a table).
enum {
    SD_ISA_BASELINE = 0,
    SD_ISA_AVX2 = 1,
    SD_ISA_AVX512 = 2,
};

/// Elementwise functions of `sd_kernel_table.unary`.
enum {
    SD_UNARY_EXP = 0,
    /// 1 / (1 + e^-x)
    SD_UNARY_SIGMOID = 1,
    /// x * sigmoid(alpha x): SiLU (alpha 1) and CLIP's quick GELU (alpha 1.702).
    SD_UNARY_SILU = 2,
    /// 0.5 x (1 + erf(x / sqrt 2))
    SD_UNARY_GELU_ERF = 3,
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    SD_UNARY_GELU_TANH = 4,
    SD_UNARY_TANH = 5,
};

/// A Winograd F(4x4, 3x3) convolution's shape (stride 1, channels-last). `height` and `width` are the input's as the
/// convolution sees it, after the nearest-neighbour upsampling by `upsample` (source pixel (y / upsample, x / upsample)).
/// Tiles are numbered image by image, row by row, each covering 4 x 4 output positions.
typedef struct {
    long height, width, upsample, inChannels, padTop, padLeft, outHeight, outWidth, outChannels;
} sd_winograd_geometry;

/// One instruction set's kernels. Pointers may alias only where a comment says so.
typedef struct {
    /// "avx512", "avx2" or "baseline".
    const char *name;
    /// Floats per vector register of these kernels.
    int vectorWidth;
    /// `y[i] = f(x[i])` for one of the SD_UNARY_* functions (x and y may be the same).
    void (*unary)(int function, const float *x, float *y, long count, float alpha);
    /// Numerically stable softmax of `rows` rows of `width` (x and y may be the same); a row that is all -inf gives zeros.
    void (*softmaxRows)(const float *x, float *y, long rows, long width);
    /// `y[r, i] = x[r, i] * gelu_erf(x[r, half + i])` for rows of `2 half` inputs.
    void (*gegluRows)(const float *x, float *y, long rows, long half);
    /// `sums[c] += sum over rows of x[r, c]` (float blocks of 32 rows, accumulated in double).
    void (*channelSums)(const float *x, long rows, long width, double *sums);
    /// `sums[c] += sum over rows of (x[r, c] - mean[c])^2`.
    void (*channelSquaredDeviations)(const float *x, long rows, long width, const float *mean, double *sums);
    /// `y[r, c] = x[r, c] * scale[c] + shift[c]`, then SiLU when `silu` (x and y may be the same).
    void (*scaleShiftRows)(const float *x, float *y, long rows, long width, const float *scale, const float *shift, int silu);
    /// LayerNorm of each row; `gamma` / `beta` may be NULL (1 / 0).
    void (*layerNormRows)(const float *x, float *y, long rows, long width, const float *gamma, const float *beta, float epsilon);
    /// IEEE binary16 / bfloat16 bits (any alignment) to float32.
    void (*halfToFloat)(const void *x, float *y, long count);
    void (*bfloat16ToFloat)(const void *x, float *y, long count);

    /// Query rows handled by one `attention` call (a block), and the scratch floats it needs.
    long attentionBlockRows;
    long (*attentionScratchFloats)(long headDim, long valueHeadDim);
    /// Fused attention for one block of `rows` (<= attentionBlockRows) query rows of one head: online softmax over
    /// blocks of keys, so no score matrix is ever in memory. Row r of q, k, v and o is at `pointer + r * stride`.
    /// `causal`: query `firstRow + r` sees keys 0 ... firstRow + r. `scratch`: attentionScratchFloats floats (any
    /// alignment; 64 bytes is fastest).
    void (*attention)(
        const float *q, const float *k, const float *v, float *o, long rows, long keys, long headDim, long valueHeadDim,
        long qStride, long kStride, long vStride, long oStride, float scale, long firstRow, int causal, float *scratch);

    /// Winograd F(4x4, 3x3) (Compute/WinogradConvolution.swift). The kernel transform G g G^T of `outCount` output
    /// channels of a [out][3][3][inChannels] kernel, fp32 or (`bf16` nonzero) bfloat16 bits widened exactly: point xi
    /// of channel pair (o, i) goes to `u[xi * xiStride + o * inChannels + i]`.
    void (*winogradKernel)(const void *kernel, int bf16, long outCount, long inChannels, float *u, long xiStride);
    /// The input transform B^T d B of tiles firstTile ..< firstTile + count: point xi of tile firstTile + j, channel c
    /// goes to `v[xi * xiStride + j * inChannels + c]`. Pixels outside the input are zeros (padding).
    void (*winogradInput)(const float *source, const sd_winograd_geometry *geometry, long firstTile, long count, float *v, long xiStride);
    /// The output transform A^T m A of the same tiles for output channels outFirst ..< outFirst + outCount, reading
    /// point xi of tile j, channel c at `m[xi * xiStride + j * ldm + c]`; adds `bias` (may be NULL) and, when
    /// `accumulate`, what `destination` holds; writes only positions inside the output.
    void (*winogradOutput)(
        const float *m, long xiStride, long ldm, const sd_winograd_geometry *geometry, long firstTile, long count, long outFirst,
        long outCount, const float *bias, int accumulate, float *destination);
} sd_kernel_table;

/// The table for an instruction set (SD_ISA_*), or NULL when this build has no kernels for it (other architectures).
/// The caller checks the processor can run it.
const sd_kernel_table *sd_kernel_table_for(int isa);

/// The table in use (the baseline one until `sd_kernels_set` is called), read and set atomically.
const sd_kernel_table *sd_kernels_current(void);
void sd_kernels_set(const sd_kernel_table *table);

/// Asks the C heap to return its free memory to the system (glibc's `malloc_trim(0)`; nothing elsewhere). Returns 1
/// when memory was returned.
int sd_heap_trim(void);

#endif
