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

/*
 * Several products of one activation vector (q, k, v; gate, up) in one
 * parallel region: the rows of all weights are split across the threads
 * together, so a decode step wakes the pool once instead of once per weight.
 */
typedef struct {
    const mm_part *parts;
    size_t n_parts;
    const float *x;
    size_t cols;
} multi_job;

static void multi_rows(void *vj, size_t begin, size_t end, int ith) {
    (void)ith;
    multi_job *J = vj;
    size_t base = 0;
    for (size_t p = 0; p < J->n_parts && begin < end; p++) {
        const mm_part *P = &J->parts[p];
        size_t lo = base, hi = base + P->rows;
        base = hi;
        if (end <= lo || begin >= hi) continue;
        size_t r0 = begin > lo ? begin - lo : 0, r1 = (end < hi ? end : hi) - lo;
        uint64_t rb = 0;
        llmops_dtype_nbytes(P->type, J->cols, J->cols, &rb, NULL);
        llmops_matvec(P->type, (const uint8_t *)P->W + r0 * rb, r1 - r0, J->cols, J->x, P->y + r0, NULL, NULL);
    }
}

void mm_matvec_multi(const mm_part *parts, size_t n_parts, size_t cols, const float *x, llmops_threadpool *pool) {
    size_t total = 0;
    for (size_t p = 0; p < n_parts; p++) total += parts[p].rows;
    multi_job J = {parts, n_parts, x, cols};
    int nt = pool ? llmops_threadpool_n_threads(pool) : 1;
    if (nt <= 1 || (uint64_t)total * cols < (1u << 16)) {
        multi_rows(&J, 0, total, 0);
        return;
    }
    /* one contiguous share per thread, in multiples of 16 rows */
    size_t grain = (total + (size_t)nt - 1) / (size_t)nt;
    grain = (grain + 15) / 16 * 16;
    llmops_threadpool_parallel_for(pool, total, grain, multi_rows, &J);
}
