/*
 * The training core's per-op kernels: matrix products through OpenBLAS
 * (frozen half/quantized weights dequantised a panel of rows at a time),
 * RMSNorm/LayerNorm, RoPE, blocked causal attention with recomputed scores,
 * activations and cross-entropy — each with its backward pass.
 */
#include "train/train_ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/dynlib.h"
#include "model/model_internal.h"

/*
 * OpenBLAS is opened on first use (see dynlib.h): only the trainer needs it.
 * cblas.h still gives the enums; the two functions come from the library.
 */
typedef __typeof__(cblas_sgemm) *sgemm_fn;
typedef void (*set_threads_fn)(int); /* openblas_set_num_threads: not in every cblas.h */

static dynlib g_blas = DYNLIB_INIT;
static const dynlib_desc g_blas_desc = {"LLMOPS_BLAS_LIB",
                                        {"libopenblas.so.0", "libopenblas.so", NULL},
                                        "OpenBLAS",
                                        "the trainer's matrix products (fine-tuning, training)",
                                        "libopenblas0",
                                        0,
                                        {"cblas_sgemm", "openblas_set_num_threads", NULL}};

llmops_status tops_blas_load(llmops_error *err) { return dynlib_load(&g_blas, &g_blas_desc, err); }

void tops_blas_threads(int n) {
    if (!tops_blas_load(NULL)) ((set_threads_fn)g_blas.sym[1])(n < 1 ? 1 : n);
}

void tops_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
               const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (!m || !n) return;
    if (!k) { /* C = beta · C */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    if (!tops_blas_load(NULL)) {
        ((sgemm_fn)g_blas.sym[0])(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                  (int)m, (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    /* no BLAS (the trainer refuses to start without it; a direct caller still gets the right product) */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s += (double)(ta ? A[p * lda + i] : A[i * lda + p]) * (double)(tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = alpha * (float)s + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
}

/*
 * One product split over the pool's threads by columns of C (each thread a
 * contiguous slice of n, in multiples of 16), OpenBLAS running single-threaded
 * inside each: one set of threads for the whole trainer, no second pool
 * spinning beside it. Small products run on the calling thread.
 */
typedef struct {
    const tops_gemm_desc *d;
    size_t nd;
} gemm_job;

static void gemm_slices(void *vj, int ith, int nth) {
    gemm_job *J = vj;
    for (size_t i = 0; i < J->nd; i++) {
        const tops_gemm_desc *g = &J->d[i];
        size_t per = (g->n + (size_t)nth - 1) / (size_t)nth;
        per = (per + 15) / 16 * 16;
        size_t j0 = (size_t)ith * per, j1 = j0 + per < g->n ? j0 + per : g->n;
        if (j0 >= j1) continue;
        const float *B = g->tb ? g->B + j0 * g->ldb : g->B + j0;
        tops_gemm(g->ta, g->tb, g->m, j1 - j0, g->k, g->alpha, g->A, g->lda, B, g->ldb, g->beta, g->C + j0, g->ldc);
    }
}

void tops_gemm_batch(llmops_threadpool *pool, const tops_gemm_desc *d, size_t nd) {
    double flops = 0;
    for (size_t i = 0; i < nd; i++) flops += (double)d[i].m * (double)d[i].n * (double)d[i].k;
    if (!pool || llmops_threadpool_n_threads(pool) < 2 || flops < 262144.0) {
        for (size_t i = 0; i < nd; i++)
            tops_gemm(d[i].ta, d[i].tb, d[i].m, d[i].n, d[i].k, d[i].alpha, d[i].A, d[i].lda, d[i].B, d[i].ldb, d[i].beta,
                      d[i].C, d[i].ldc);
        return;
    }
    gemm_job J = {d, nd};
    llmops_threadpool_run(pool, gemm_slices, &J);
}

void tops_gemm_par(llmops_threadpool *pool, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *A,
                   size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    tops_gemm_desc d = {ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc};
    tops_gemm_batch(pool, &d, 1);
}

int tops_mat_plain_f32(const tops_mat *W) {
    return W->type == LLMOPS_DTYPE_F32 && W->row_bytes == (size_t)W->cols * sizeof(float);
}

/* ---- panel products ------------------------------------------------------------------------ */

size_t tops_panel_rows(int64_t cols) {
    size_t r = (size_t)(262144 / (cols > 0 ? cols : 1));
    if (r < 16) r = 16;
    return r;
}

typedef struct {
    const tops_mat *W;
    int64_t r0;
    float *dst;
} deq_job;

static void deq_rows(void *vj, size_t begin, size_t end, int ith) {
    (void)ith;
    deq_job *J = vj;
    size_t cols = (size_t)J->W->cols;
    for (size_t r = begin; r < end; r++)
        mm_dequant_row(J->W->type, (const uint8_t *)J->W->data + ((size_t)J->r0 + r) * J->W->row_bytes,
                       J->dst + r * cols, cols);
}

/* Rows [r0, r0 + nr) of W as F32 in c->panel. */
static const float *panel_of(tops_mm_ctx *c, const tops_mat *W, int64_t r0, size_t nr) {
    deq_job J = {W, r0, c->panel};
    if (c->pool && nr * (size_t)W->cols >= 65536) llmops_threadpool_parallel_for(c->pool, nr, 8, deq_rows, &J);
    else deq_rows(&J, 0, nr, 0);
    return c->panel;
}

void tops_linear_fwd(tops_mm_ctx *c, const tops_mat *W, const float *X, size_t ldx, size_t n, float *Y, size_t ldy,
                     float beta) {
    size_t rows = (size_t)W->rows, cols = (size_t)W->cols;
    if (tops_mat_plain_f32(W)) {
        tops_gemm_par(c->gemm_pool, 0, 1, n, rows, cols, 1.0f, X, ldx, W->data, cols, beta, Y, ldy);
        return;
    }
    size_t P = tops_panel_rows(W->cols);
    for (size_t r0 = 0; r0 < rows; r0 += P) {
        size_t nr = rows - r0 < P ? rows - r0 : P;
        const float *pw = panel_of(c, W, (int64_t)r0, nr);
        tops_gemm_par(c->gemm_pool, 0, 1, n, nr, cols, 1.0f, X, ldx, pw, cols, beta, Y + r0, ldy);
    }
}

void tops_linear_bwd_x(tops_mm_ctx *c, const tops_mat *W, const float *dY, size_t ldy, size_t n, float *dX,
                       size_t lddx) {
    if (!dX) return;
    size_t rows = (size_t)W->rows, cols = (size_t)W->cols;
    if (tops_mat_plain_f32(W)) {
        tops_gemm_par(c->gemm_pool, 0, 0, n, cols, rows, 1.0f, dY, ldy, W->data, cols, 1.0f, dX, lddx);
        return;
    }
    size_t P = tops_panel_rows(W->cols);
    for (size_t r0 = 0; r0 < rows; r0 += P) {
        size_t nr = rows - r0 < P ? rows - r0 : P;
        const float *pw = panel_of(c, W, (int64_t)r0, nr);
        tops_gemm_par(c->gemm_pool, 0, 0, n, cols, nr, 1.0f, dY + r0, ldy, pw, cols, 1.0f, dX, lddx);
    }
}

void tops_linear_bwd_w(tops_mm_ctx *c, const tops_mat *W, const float *dY, size_t ldy, const float *X, size_t ldx,
                       size_t n) {
    if (!W->g) return;
    tops_gemm_par(c->gemm_pool, 1, 0, (size_t)W->rows, (size_t)W->cols, n, 1.0f, dY, ldy, X, ldx, 1.0f, W->g, (size_t)W->cols);
}

void tops_bias_fwd(const float *b, float *Y, size_t ldy, size_t n, size_t m) {
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < m; j++) Y[t * ldy + j] += b[j];
}

void tops_bias_bwd(float *db, const float *dY, size_t ldy, size_t n, size_t m) {
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < m; j++) db[j] += dY[t * ldy + j];
}

/* ---- norms ------------------------------------------------------------------------------------- */

void tops_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd, size_t n, size_t d, double eps) {
    for (size_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double ss = 0;
        for (size_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float s = (float)(1.0 / sqrt(ss / (double)d + eps));
        rstd[t] = s;
        for (size_t i = 0; i < d; i++) yr[i] = xr[i] * s * w[i];
    }
}

void tops_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw,
                      size_t n, size_t d) {
    for (size_t t = 0; t < n; t++) {
        const float *xr = x + t * d, *dyr = dy + t * d;
        float *dxr = dx + t * d;
        float s = rstd[t];
        double gx = 0;
        for (size_t i = 0; i < d; i++) gx += (double)dyr[i] * w[i] * xr[i];
        float c = (float)(gx * (double)s * s / (double)d);
        for (size_t i = 0; i < d; i++) dxr[i] += s * (dyr[i] * w[i] - xr[i] * c);
        if (dw)
            for (size_t i = 0; i < d; i++) dw[i] += dyr[i] * xr[i] * s;
    }
}

void tops_layernorm_fwd(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, size_t n,
                        size_t d, double eps) {
    for (size_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double mu = 0, var = 0;
        for (size_t i = 0; i < d; i++) mu += xr[i];
        mu /= (double)d;
        for (size_t i = 0; i < d; i++) var += ((double)xr[i] - mu) * ((double)xr[i] - mu);
        var /= (double)d;
        float s = (float)(1.0 / sqrt(var + eps)), m = (float)mu;
        mean[t] = m;
        rstd[t] = s;
        for (size_t i = 0; i < d; i++) yr[i] = (xr[i] - m) * s * w[i] + (b ? b[i] : 0.0f);
    }
}

void tops_layernorm_bwd(const float *x, const float *w, const float *mean, const float *rstd, const float *dy,
                        float *dx, float *dw, float *db, size_t n, size_t d) {
    for (size_t t = 0; t < n; t++) {
        const float *xr = x + t * d, *dyr = dy + t * d;
        float *dxr = dx + t * d;
        float s = rstd[t], m = mean[t];
        double sg = 0, sgx = 0;
        for (size_t i = 0; i < d; i++) {
            double g = (double)dyr[i] * w[i], xh = (double)(xr[i] - m) * s;
            sg += g;
            sgx += g * xh;
        }
        float mg = (float)(sg / (double)d), mgx = (float)(sgx / (double)d);
        for (size_t i = 0; i < d; i++) {
            float xh = (xr[i] - m) * s;
            dxr[i] += s * (dyr[i] * w[i] - mg - xh * mgx);
            if (dw) dw[i] += dyr[i] * xh;
            if (db) db[i] += dyr[i];
        }
    }
}

/* ---- RoPE ---------------------------------------------------------------------------------------- */

void tops_rope_table(const float *freqs, int64_t rope_dim, int n_pos, float *cs, float *sn) {
    int64_t half = rope_dim / 2;
    for (int p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < half; i++) {
            float theta = (float)p * freqs[i];
            cs[(size_t)p * (size_t)half + (size_t)i] = cosf(theta);
            sn[(size_t)p * (size_t)half + (size_t)i] = sinf(theta);
        }
}

void tops_rope(float *v, int n_heads, int64_t hd, int64_t rope_dim, const float *cs, const float *sn, int neox,
               int inverse) {
    int64_t half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)hd;
        for (int64_t i = 0; i < half; i++) {
            float c = cs[i], s = inverse ? -sn[i] : sn[i];
            int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/* ---- attention ----------------------------------------------------------------------------------- */

size_t tops_attn_scratch(int T) { return 2 * (size_t)TOPS_ATTN_BLOCK * (size_t)(T > 0 ? T : 1); }

/* First key a query block [i0, ..) may see. */
static int first_key(int i0, int64_t window) {
    if (window <= 0) return 0;
    int64_t c = (int64_t)i0 - window + 1;
    return c > 0 ? (int)c : 0;
}

/* S (bi × nc, scaled scores of queries i0.. against keys c0..) → softmax rows in place. */
static void block_softmax(float *S, int i0, int bi, int c0, int nc, int64_t window) {
    for (int r = 0; r < bi; r++) {
        int i = i0 + r;
        float *row = S + (size_t)r * (size_t)nc;
        int lo = first_key(i, window) - c0, hi = i - c0; /* visible columns [lo, hi] */
        size_t cnt = (size_t)(hi - lo + 1);
        float mx = tops_vec_max(row + lo, cnt);
        float inv = (float)(1.0 / tops_vec_exp_sum(row + lo, cnt, mx, 1));
        for (int j = 0; j < lo; j++) row[j] = 0;
        tops_vec_scale(row + lo, cnt, inv);
        for (int j = hi + 1; j < nc; j++) row[j] = 0;
    }
}

void tops_attn_fwd(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, float *o, size_t ldo,
                   int T, int64_t hd, int64_t window, float scale, float *scratch) {
    for (int i0 = 0; i0 < T; i0 += TOPS_ATTN_BLOCK) {
        int bi = T - i0 < TOPS_ATTN_BLOCK ? T - i0 : TOPS_ATTN_BLOCK;
        int c0 = first_key(i0, window), nc = i0 + bi - c0;
        float *S = scratch;
        tops_gemm(0, 1, (size_t)bi, (size_t)nc, (size_t)hd, scale, q + (size_t)i0 * ldq, ldq, k + (size_t)c0 * ldkv,
                  ldkv, 0.0f, S, (size_t)nc);
        block_softmax(S, i0, bi, c0, nc, window);
        tops_gemm(0, 0, (size_t)bi, (size_t)hd, (size_t)nc, 1.0f, S, (size_t)nc, v + (size_t)c0 * ldkv, ldkv, 0.0f,
                  o + (size_t)i0 * ldo, ldo);
    }
}

void tops_attn_bwd(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, const float *dout,
                   size_t lddo, float *dq, size_t lddq, float *dk, float *dv, size_t lddkv, int T, int64_t hd,
                   int64_t window, float scale, float *scratch) {
    float *P = scratch, *dS = scratch + (size_t)TOPS_ATTN_BLOCK * (size_t)T;
    for (int i0 = 0; i0 < T; i0 += TOPS_ATTN_BLOCK) {
        int bi = T - i0 < TOPS_ATTN_BLOCK ? T - i0 : TOPS_ATTN_BLOCK;
        int c0 = first_key(i0, window), nc = i0 + bi - c0;
        size_t ncs = (size_t)nc;
        tops_gemm(0, 1, (size_t)bi, ncs, (size_t)hd, scale, q + (size_t)i0 * ldq, ldq, k + (size_t)c0 * ldkv, ldkv,
                  0.0f, P, ncs);
        block_softmax(P, i0, bi, c0, nc, window);
        /* dP = dO · Vᵀ, then dS = P ⊙ (dP − Σ_j P dP) · scale */
        tops_gemm(0, 1, (size_t)bi, ncs, (size_t)hd, 1.0f, dout + (size_t)i0 * lddo, lddo, v + (size_t)c0 * ldkv, ldkv,
                  0.0f, dS, ncs);
        for (int r = 0; r < bi; r++) {
            float *pr = P + (size_t)r * ncs, *dr = dS + (size_t)r * ncs;
            double D = 0;
            for (int j = 0; j < nc; j++) D += (double)pr[j] * dr[j];
            float Df = (float)D;
            for (int j = 0; j < nc; j++) dr[j] = pr[j] * (dr[j] - Df) * scale;
        }
        tops_gemm(0, 0, (size_t)bi, (size_t)hd, ncs, 1.0f, dS, ncs, k + (size_t)c0 * ldkv, ldkv, 0.0f,
                  dq + (size_t)i0 * lddq, lddq);
        tops_gemm(1, 0, ncs, (size_t)hd, (size_t)bi, 1.0f, dS, ncs, q + (size_t)i0 * ldq, ldq, 1.0f,
                  dk + (size_t)c0 * lddkv, lddkv);
        tops_gemm(1, 0, ncs, (size_t)hd, (size_t)bi, 1.0f, P, ncs, dout + (size_t)i0 * lddo, lddo, 1.0f,
                  dv + (size_t)c0 * lddkv, lddkv);
    }
}

/* ---- activations ----------------------------------------------------------------------------------- */

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */

float tops_act(llmops_act_kind k, float x) {
    switch (k) {
    case LLMOPS_ACT_SILU: return x * (1.0f / (1.0f + tops_exp(-x)));
    case LLMOPS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    case LLMOPS_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(GELU_C * (x + 0.044715f * x * x * x)));
    case LLMOPS_ACT_RELU: return x > 0 ? x : 0;
    }
    return x;
}

float tops_act_grad(llmops_act_kind k, float x) {
    switch (k) {
    case LLMOPS_ACT_SILU: {
        float s = 1.0f / (1.0f + tops_exp(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case LLMOPS_ACT_GELU:
        return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x * expf(-0.5f * x * x) * 0.3989422804014327f;
    case LLMOPS_ACT_GELU_TANH: {
        float t = tanhf(GELU_C * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case LLMOPS_ACT_RELU: return x > 0 ? 1.0f : 0.0f;
    }
    return 1.0f;
}

void tops_act_both(llmops_act_kind k, float x, float *a, float *g) {
    switch (k) {
    case LLMOPS_ACT_SILU: {
        float sg = 1.0f / (1.0f + tops_exp(-x));
        *a = x * sg;
        *g = sg * (1.0f + x * (1.0f - sg));
        return;
    }
    case LLMOPS_ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        *a = x * cdf;
        *g = cdf + x * expf(-0.5f * x * x) * 0.3989422804014327f;
        return;
    }
    case LLMOPS_ACT_GELU_TANH: {
        float th = tanhf(GELU_C * (x + 0.044715f * x * x * x));
        *a = 0.5f * x * (1.0f + th);
        *g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
        return;
    }
    case LLMOPS_ACT_RELU:
        *a = x > 0 ? x : 0;
        *g = x > 0 ? 1.0f : 0.0f;
        return;
    }
    *a = x;
    *g = 1.0f;
}

/* ---- cross-entropy ---------------------------------------------------------------------------------- */

double tops_ce_row(float *logits, int64_t V, int32_t target, float scale, int grad) {
    float lt = logits[target], mx = tops_vec_max(logits, (size_t)V);
    double sum = tops_vec_exp_sum(logits, (size_t)V, mx, grad);
    if (grad) {
        tops_vec_scale(logits, (size_t)V, (float)(scale / sum));
        logits[target] -= scale;
    }
    return log(sum) + (double)mx - (double)lt;
}
