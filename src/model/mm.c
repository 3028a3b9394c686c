/*
 * The engine's matrix products go to the tensor kernels (src/tensor/kernels*.c:
 * SIMD paths chosen at run time, activations quantized once per call for the
 * quantized types). Products too small to pay for waking threads run on the
 * calling thread.
 */
#include "llmops/kernels.h"
#include "model/model_internal.h"

void mm_dequant_row(int type, const void *src, float *dst, size_t n) { llmops_dequantize_row(type, src, dst, n, NULL); }

void mm_matmul(int type, const void *W, size_t rows, size_t cols, const float *X, size_t n, float *Y,
               llmops_threadpool *pool) {
    if ((uint64_t)rows * cols * n < (1u << 16)) pool = NULL;
    if (n == 1) llmops_matvec(type, W, rows, cols, X, Y, pool, NULL);
    else llmops_matmul(type, W, rows, cols, X, n, Y, pool, NULL);
}
