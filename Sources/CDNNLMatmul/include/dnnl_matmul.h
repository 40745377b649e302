#ifndef SD_DNNL_MATMUL_H
#define SD_DNNL_MATMUL_H
#include <stddef.h>
#include <stdint.h>

/// C[m x n] (f32, leading dimension ldc) = A[m x k] * B^T + beta * C, with A row-major (lda) and B given as
/// [n x k] row-major (ldb), i.e. PyTorch's linear-weight layout. beta must be 0 or 1. A and B are bf16
/// (sd_bf16 = 1) or f32 (sd_bf16 = 0). Runs single-threaded on the calling thread (the engine's pool splits
/// work). Primitives are created once per shape and cached. Returns 0 on success, a dnnl_status_t otherwise.
int sd_dnnl_matmul(int bf16, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb,
                   float beta, float *c, int64_t ldc);

/// Direct convolution of one channels-last image band through oneDNN's brgemm convolution, single-threaded on the
/// calling thread. geometry = {input rows, input columns, input channels, output channels, kernel rows, kernel
/// columns, stride, padding top, bottom, left, right}; `sum` adds the result to dst (else dst is overwritten);
/// `bias` [out] may be NULL. `weights` are in the Ohwi<B>o layout (`sd_block_convolution_weights`) with the B that
/// `sd_dnnl_convolution_weight_block` returns for the same geometry. Primitives are cached per geometry.
/// Returns 0 on success, a dnnl_status_t otherwise (dnnl_unimplemented where oneDNN would not run its brgemm
/// convolution with that weight layout: the caller keeps its own convolution).
int sd_dnnl_convolution(const int64_t geometry[11], int sum, const float *src, const float *weights, const float *bias, float *dst);
/// The output-channel block B of the weight layout the convolution of `geometry` takes, or 0 where it is refused.
int sd_dnnl_convolution_weight_block(const int64_t geometry[11], int sum, int bias);
/// Weights [out][inner] (inner = kh * kw * in, the engine's channels-last kernel) to Ohwi<block>o for output-channel
/// blocks first_block ..< first_block + block_count (zero rows pad the last block).
void sd_block_convolution_weights(const float *ohwi, int64_t out_channels, int64_t inner, int64_t block, int64_t first_block,
                                  int64_t block_count, float *blocked);

/// Round-to-nearest-even f32 -> bf16 (NaN stays NaN) and the exact widening.
void sd_f32_to_bf16(const float *source, uint16_t *destination, size_t count);
void sd_bf16_to_f32(const uint16_t *source, float *destination, size_t count);

/// Caps the instruction set oneDNN may use (a dnnl_cpu_isa_t value; before the first primitive). 0 on success.
int sd_dnnl_set_max_isa(int isa);
/// The instruction set oneDNN dispatches to ("avx512_core_bf16", "avx2", ...).
const char *sd_dnnl_effective_isa(void);
/// "2.6.3".
const char *sd_dnnl_version(void);
/// Number of cached primitives.
int sd_dnnl_cached_primitives(void);

#endif
