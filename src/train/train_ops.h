/*
 * Internal: the forward and backward kernels of the training core, one per
 * op of a decoder (src/train/train_ops.c). Each is written for a range of
 * rows on the calling thread; src/train/trainer.c spreads them over its pool.
 * tests/train/test_train_ops.c checks every backward against finite
 * differences.
 *
 * Conventions: matrices are row-major F32 with an explicit leading dimension
 * (ld = floats between the starts of consecutive rows), so q, k and v can be
 * column slices of one fused buffer. Backward functions ADD into dx and the
 * weight gradients ("+=") unless a comment says "=".
 */
#ifndef LLMOPS_TRAIN_OPS_H
#define LLMOPS_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/threadpool.h"

/* ---- vectorised row loops (train_vec.c; AVX2 when the CPU has it, the same functions otherwise) ---- */

/* e^x within 2 ulp (AVX2: the kernels' exp256, 0 below -87.3, +inf above 88.7; else libm). */
float tops_exp(float x);
/* max of x[0..n) (-FLT_MAX when n is 0). */
float tops_vec_max(const float *x, size_t n);
/* Σ e^(x[j] − mx) in double; store: x[j] ← e^(x[j] − mx). */
double tops_vec_exp_sum(float *x, size_t n, float mx, int store);
/* x[j] ·= f. */
void tops_vec_scale(float *x, size_t n, float f);
/* a = x·σ(x) and, if g, g = d/dx of it = σ(x)·(1 + x·(1 − σ(x))). */
void tops_vec_silu(const float *x, float *a, float *g, size_t n);

/* ---- matrix products (OpenBLAS) ------------------------------------------------------ */

/* C (m × n, ldc) = alpha · op(A) · op(B) + beta · C, row-major; ta/tb: 1 = transposed. */
void tops_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
               const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* One product of a batch (arguments as for tops_gemm). */
typedef struct {
    int ta, tb;
    size_t m, n, k;
    float alpha;
    const float *A;
    size_t lda;
    const float *B;
    size_t ldb;
    float beta;
    float *C;
    size_t ldc;
} tops_gemm_desc;
/*
 * Several products in one parallel region, each split by columns of C over the pool's threads
 * (pool NULL or little work: one after the other, inline). Products that add into the same C
 * must have the same n, so that each thread keeps to the same columns of it.
 */
void tops_gemm_batch(llmops_threadpool *pool, const tops_gemm_desc *d, size_t nd);
/* The same, split by columns of C over the pool's threads (pool NULL or a small product: inline). */
void tops_gemm_par(llmops_threadpool *pool, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *A,
                   size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* Threads OpenBLAS may use for one product (global to the process). */
void tops_blas_threads(int n);
/* Opens OpenBLAS (on first use; see base/dynlib.h): an error names it and what needs it when it is missing.
 * tops_gemm works without it (slowly); the trainer refuses to start. */
llmops_status tops_blas_load(llmops_error *err);

/*
 * A weight matrix (rows = out features, cols = in features) as the trainer
 * sees it: F32 (trainable master copies, or an F32 model used in place) or
 * any type mm_dequant_row reads (F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, ...),
 * dequantised a panel of rows at a time into scratch.
 */
typedef struct {
    int type;
    const void *data;  /* rows × row_bytes */
    size_t row_bytes;
    int64_t rows, cols;
    float *g;          /* (rows, cols) gradient accumulator, or NULL: frozen */
} tops_mat;

/* Whether W is row-contiguous F32, used in place (no panels). */
int tops_mat_plain_f32(const tops_mat *W);

/* Scratch for the panel products: `panel` holds panel_rows × cols floats of the widest matrix. */
typedef struct {
    llmops_threadpool *pool;      /* dequantisation                                          */
    llmops_threadpool *gemm_pool; /* tops_gemm_par's split; NULL: OpenBLAS's own threads       */
    float *panel;
    size_t panel_floats;
} tops_mm_ctx;

/* Rows of W dequantised per panel: about 1 MiB of floats, at least 16 rows. */
size_t tops_panel_rows(int64_t cols);

/* Y (n × rows, ldy) = X (n × cols, ldx) · Wᵀ (+ beta·Y). */
void tops_linear_fwd(tops_mm_ctx *c, const tops_mat *W, const float *X, size_t ldx, size_t n, float *Y, size_t ldy,
                     float beta);
/* dX (n × cols, ld dx) += dY (n × rows, ldy) · W; skipped when dX is NULL. */
void tops_linear_bwd_x(tops_mm_ctx *c, const tops_mat *W, const float *dY, size_t ldy, size_t n, float *dX,
                       size_t lddx);
/* W->g += dYᵀ · X (W trainable, F32). */
void tops_linear_bwd_w(tops_mm_ctx *c, const tops_mat *W, const float *dY, size_t ldy, const float *X, size_t ldx,
                       size_t n);
/* Y[t] += b for every row; db += Σ_t dY[t]. */
void tops_bias_fwd(const float *b, float *Y, size_t ldy, size_t n, size_t m);
void tops_bias_bwd(float *db, const float *dY, size_t ldy, size_t n, size_t m);

/* ---- norms (rows [0, n) of width d) ---------------------------------------------------------- */

/* y = x · rstd · w, rstd[t] = 1/√(mean(x²) + eps) (sum in double, as the engine). */
void tops_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd, size_t n, size_t d, double eps);
/* dx += ∂/∂x, dw += ∂/∂w (dw may be NULL). */
void tops_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw,
                      size_t n, size_t d);
/* y = (x − mean) · rstd · w + b (b may be NULL). */
void tops_layernorm_fwd(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, size_t n,
                        size_t d, double eps);
void tops_layernorm_bwd(const float *x, const float *w, const float *mean, const float *rstd, const float *dy,
                        float *dx, float *dw, float *db, size_t n, size_t d);

/* ---- rotary embedding --------------------------------------------------------------------------- */

/* cs, sn: (n_pos, rope_dim/2) tables, θ = (float)pos · freq[i] as the engine computes it. */
void tops_rope_table(const float *freqs, int64_t rope_dim, int n_pos, float *cs, float *sn);
/*
 * Rotates n_heads head vectors of hd floats (head h at v + h·hd) by the
 * angles of one position (cs, sn rows): neox = 1 pairs (i, i + rope_dim/2),
 * 0 pairs (2i, 2i+1). inverse = 1 rotates by −θ, which is the backward pass
 * (the rotation is orthogonal).
 */
void tops_rope(float *v, int n_heads, int64_t hd, int64_t rope_dim, const float *cs, const float *sn, int neox,
               int inverse);

/* ---- causal attention of one sequence -------------------------------------------------------------- */

/* Query rows handled per block: scores are (block × visible keys), never T × T. */
#define TOPS_ATTN_BLOCK 64

/* Floats of scratch one attention call needs (forward: one buffer; backward: two). */
size_t tops_attn_scratch(int T);

/*
 * One head of one sequence of T tokens: o = softmax(q·kᵀ·scale + mask)·v,
 * where query i sees keys j ≤ i with i − j < window (window 0: all).
 * q, o: (T, hd) with leading dims ldq, ldo; k, v: (T, hd) with ldkv.
 */
void tops_attn_fwd(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, float *o, size_t ldo,
                   int T, int64_t hd, int64_t window, float scale, float *scratch);
/* Backward of the same: dq = (ldq), dk += , dv += (lddkv). Scores are recomputed. */
void tops_attn_bwd(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, const float *dout,
                   size_t lddo, float *dq, size_t lddq, float *dk, float *dv, size_t lddkv, int T, int64_t hd,
                   int64_t window, float scale, float *scratch);

/* ---- activations ------------------------------------------------------------------------------------ */

float tops_act(llmops_act_kind k, float x);
/* d act / dx. */
float tops_act_grad(llmops_act_kind k, float x);
/* Both at once (one exp/erf/tanh): *a = act(x), *g = act'(x), the same values as the two above. */
void tops_act_both(llmops_act_kind k, float x, float *a, float *g);

/* ---- cross-entropy ---------------------------------------------------------------------------------- */

/*
 * Cross-entropy of one logits row of V against target (natural log). With
 * grad != 0 the row is overwritten by scale · (softmax − onehot(target)).
 */
double tops_ce_row(float *logits, int64_t V, int32_t target, float scale, int grad);

#endif
