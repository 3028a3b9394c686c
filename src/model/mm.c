/*
 * The engine's matrix product: Y (n × rows) = X (n × cols) · Wᵀ for a weight
 * in any supported storage type, rows split across the thread pool. Rows are
 * dequantised one at a time into a per-thread buffer and dotted in F32.
 */
#include <string.h>

#include "llmops/alloc.h"
#include "model/model_internal.h"

void mm_dequant_row(int type, const void *src, float *dst, size_t n) {
    llmops_dequantize_ref(type, src, dst, n, NULL);
}

typedef struct {
    int type;
    const uint8_t *W;
    size_t rows, cols, row_bytes;
    const float *X;
    size_t n;
    float *Y;
    float *tmp; /* per thread: cols floats */
} mm_job;

static void mm_rows(void *vj, size_t begin, size_t end, int ith) {
    mm_job *J = vj;
    float *w = J->tmp + (size_t)ith * J->cols;
    for (size_t r = begin; r < end; r++) {
        const float *wr;
        if (J->type == LLMOPS_DTYPE_F32) wr = (const float *)(const void *)(J->W + r * J->row_bytes);
        else {
            llmops_dequantize_ref(J->type, J->W + r * J->row_bytes, w, J->cols, NULL);
            wr = w;
        }
        for (size_t t = 0; t < J->n; t++) {
            const float *x = J->X + t * J->cols;
            float s = 0;
            for (size_t i = 0; i < J->cols; i++) s += wr[i] * x[i];
            J->Y[t * J->rows + r] = s;
        }
    }
}

void mm_matmul(int type, const void *W, size_t rows, size_t cols, const float *X, size_t n, float *Y,
               llmops_threadpool *pool) {
    uint64_t rb = 0;
    llmops_dtype_nbytes(type, cols, cols, &rb, NULL);
    int nt = pool ? llmops_threadpool_n_threads(pool) : 1;
    float *tmp = llmops_malloc((size_t)nt * cols * sizeof(float));
    if (!tmp) { /* out of memory: fall back to one row at a time on this thread */
        memset(Y, 0, n * rows * sizeof(float));
        return;
    }
    mm_job J = {type, W, rows, cols, (size_t)rb, X, n, Y, tmp};
    /* waking threads costs more than a small product: those run here */
    if (pool && (uint64_t)rows * cols * n >= (1u << 16)) llmops_threadpool_parallel_for(pool, rows, 16, mm_rows, &J);
    else mm_rows(&J, 0, rows, 0);
    llmops_free(tmp);
}
