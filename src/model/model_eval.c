/*
 * The forward pass: one decoder (or the BERT encoder) driven by the
 * architecture descriptor, over a batch of tokens from several sequences that
 * share one KV cache of cells (position + sequence set), as in llama.cpp.
 *
 * Shapes (n = tokens in the chunk, s = tokens in a slice of it, d = hidden,
 * hd = head dim; see alloc_scratch):
 *   x   (n, d)            residual stream
 *   q   (n, n_heads·hd)   queries, then the attention's output over them (att)
 *   h   (s, d)            normalized input, projections' outputs
 *   kk, vv (s, n_kv·hd)   keys and values on their way to the cache
 *   ff1, ff2 (s, ffn)     MLP activations
 */
#include <math.h>
#include <sched.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/kernels.h"
#include "model/model_internal.h"

/* ---- small helpers ----------------------------------------------------------------- */

/* Y (n × rows) = X (n × cols) · Wᵀ (+ bias). */
/* Y (n × rows) += bias for each of the n tokens; an F16/BF16 bias is converted once per call. */
static void add_bias(llmops_context *ctx, const mview *b, float *Y, size_t n, int64_t rows) {
    if (!b || !b->data) return;
    const float *bias = b->data;
    if (b->type != LLMOPS_DTYPE_F32) {
        mm_dequant_row(b->type, b->data, ctx->wtmp, (size_t)b->cols);
        bias = ctx->wtmp;
    }
    for (size_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) Y[t * (size_t)rows + (size_t)r] += bias[r];
}

static void linear(llmops_context *ctx, const mview *w, const mview *b, const float *X, size_t n, float *Y) {
    mm_matmul(w->type, w->data, (size_t)w->rows, (size_t)w->cols, X, n, Y, ctx->pool);
    add_bias(ctx, b, Y, n, w->rows);
}

/* Y_p (n × rows_p) = X (n × cols) · W_pᵀ (+ bias_p) for 2 or 3 weights sharing X, in one parallel region
 * with X prepared once (the same values as one linear() each). */
static void linear_multi(llmops_context *ctx, const mview *const *w, const mview *const *b, float *const *Y, size_t np,
                         const float *X, size_t n) {
    llmops_matmul_part parts[3] = {0};
    uint64_t work = 0;
    for (size_t p = 0; p < np && p < 3; p++) {
        parts[p] = (llmops_matmul_part){w[p]->type, w[p]->data, (size_t)w[p]->rows, Y[p]};
        work += (uint64_t)w[p]->rows * (uint64_t)w[p]->cols * n;
    }
    llmops_matmul_multi(parts, np, (size_t)w[0]->cols, X, n, work < (1u << 16) ? NULL : ctx->pool, NULL);
    for (size_t p = 0; p < np; p++) add_bias(ctx, b[p], Y[p], n, w[p]->rows);
}

/* Single-token products that share their input go to the pool together. */
static void linear2(llmops_context *ctx, const mview *w1, const mview *b1, float *y1, const mview *w2, const mview *b2,
                    float *y2, const mview *w3, const mview *b3, float *y3, const float *x) {
    mm_part parts[3] = {{w1->type, w1->data, (size_t)w1->rows, y1}, {w2->type, w2->data, (size_t)w2->rows, y2},
                        {w3 ? w3->type : 0, w3 ? w3->data : NULL, w3 ? (size_t)w3->rows : 0, y3}};
    mm_matvec_multi(parts, w3 ? 3 : 2, (size_t)w1->cols, x, ctx->pool);
    add_bias(ctx, b1, y1, 1, w1->rows);
    add_bias(ctx, b2, y2, 1, w2->rows);
    if (w3) add_bias(ctx, b3, y3, 1, w3->rows);
}

/* A 1-D weight as floats (norm weights and biases are F32; others are converted once per use). */
static const float *f32_of(const mview *v, float *tmp) {
    if (v->type == LLMOPS_DTYPE_F32) return v->data;
    mm_dequant_row(v->type, v->data, tmp, (size_t)v->cols);
    return tmp;
}

/* The sum of squares by the vector helper: every thread of a decode step runs the norm twice per layer
 * on a residual half of which the other core has just written, and scalar chains kept fewer of those
 * lines in flight (SmolLM decode: a fifth less time in the norms). */
static void rms_norm(const float *restrict x, const float *restrict w, float *restrict y, int64_t d, double eps) {
    int64_t i4 = d & ~(int64_t)3;
    float s = (float)(1.0 / sqrt(llmops_vec_sumsq(x, (size_t)d) / (double)d + eps));
    /* the scaling four at a time too (distinct buffers: -O2 vectorizes the four statements) */
    for (int64_t i = 0; i < i4; i += 4)
        for (int j = 0; j < 4; j++) y[i + j] = x[i + j] * s * w[i + j];
    for (int64_t i = i4; i < d; i++) y[i] = x[i] * s * w[i];
}

static void layer_norm(const float *x, const float *w, const float *b, float *y, int64_t d, double eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; i++) mean += x[i];
    mean /= (double)d;
    for (int64_t i = 0; i < d; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)d;
    float s = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
    for (int64_t i = 0; i < d; i++) y[i] = (x[i] - m) * s * w[i] + (b ? b[i] : 0.0f);
}

/* One vector of the model's width through its norm (w, b as floats; b NULL: none). */
static void norm_vec(const llmops_arch *a, const float *x, const float *w, const float *b, float *y) {
    if (a->norm == LLMOPS_NORM_RMS) rms_norm(x, w, y, a->hidden_size, a->norm_eps);
    else layer_norm(x, w, b, y, a->hidden_size, a->norm_eps);
}

static void norm_rows(const llmops_model *m, const mview *w, const mview *b, const float *x, float *y, size_t n,
                      float *tmp_w, float *tmp_b) {
    size_t d = (size_t)m->arch.hidden_size;
    const float *wf = f32_of(w, tmp_w);
    const float *bf = b->data ? f32_of(b, tmp_b) : NULL;
    for (size_t t = 0; t < n; t++) norm_vec(&m->arch, x + t * d, wf, bf, y + t * d);
}

/* x += h over n floats, four at a time: -O2 vectorizes the four statements, not a loop of unknown length. */
static void add_into(float *restrict x, const float *restrict h, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        x[i] += h[i];
        x[i + 1] += h[i + 1];
        x[i + 2] += h[i + 2];
        x[i + 3] += h[i + 3];
    }
    for (; i < n; i++) x[i] += h[i];
}

static float act(llmops_act_kind k, float x) {
    switch (k) {
    case LLMOPS_ACT_SILU: return x / (1.0f + expf(-x));
    case LLMOPS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    case LLMOPS_ACT_GELU_TANH: {
        const float c = 0.7978845608028654f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case LLMOPS_ACT_RELU: return x > 0 ? x : 0;
    }
    return x;
}

/* The cos/sin pairs of position pos, one per rotated pair: cs[2i] = cos, cs[2i+1] = sin. */
static void rope_table(const llmops_model *m, int32_t pos, float *cs) {
    int64_t half = m->arch.rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float theta = (float)pos * m->rope_freqs[i];
        cs[2 * i] = cosf(theta);
        cs[2 * i + 1] = sinf(theta);
    }
}

/* Rotates one head vector in place by the table of its position. */
static void rope(const llmops_model *m, float *v, const float *cs) {
    int64_t half = m->arch.rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int64_t a, b;
        if (m->rope_neox) a = i, b = i + m->arch.rope_dim / 2; /* rotate halves */
        else a = 2 * i, b = 2 * i + 1;                        /* adjacent pairs */
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

/* ---- KV cache access -------------------------------------------------------------------- */

enum { FUSED_PHASES = 4, FUSED_RNG_STRIDE = 8 /* uint64 per line */ };

static size_t kv_dim(const llmops_model *m) { return (size_t)(m->arch.n_kv_heads * m->arch.head_dim); }

static void *kv_row(const llmops_context *ctx, void *base, int layer, uint32_t cell) {
    size_t kd = kv_dim(ctx->m);
    return (uint8_t *)base + (((size_t)layer * ctx->n_cells + cell) * kd) * ctx->kv_elt;
}

static void kv_store(const llmops_context *ctx, void *dst, const float *src, size_t n) {
    if (ctx->p.kv_type == LLMOPS_KV_F32) memcpy(dst, src, n * sizeof(float));
    else
        llmops_fp32_to_fp16_row(src, dst, n);
}


/* ---- attention ---------------------------------------------------------------------------- */

typedef struct {
    llmops_context *ctx;
    const llmops_batch_item *items;
    const uint32_t *cell_of;  /* batch token → its cell */
    size_t n;
    int layer;
    int bidirectional;        /* BERT: attend within the batch, both ways */
} attn_job;

/*
 * One work item: the heads of KV group g (they share its keys and values) for a
 * block of attn_qblk consecutive batch tokens — nq = tokens × group query rows
 * against the cells in blocks of 16. Keys are converted to F32 once per block
 * and laid out transposed, so the scores of all nq rows are small matrix
 * products (no horizontal sums); values likewise feed all rows at once. Every
 * row is computed the same way whatever else is in its block, so a token's
 * result does not depend on how the batch was cut. A decode step (fewer than 4
 * rows) with an F16 cache reads the keys and values in place instead, each
 * converted in registers once for all the group's rows.
 *
 * Per-thread scratch (attn_stride floats): Q and O (nq_max × hd), S (nq_max ×
 * ncp scores), Kt (hd × 16), Vb (16 × hd), then the visibility bytes
 * (qblk × ncp) and one byte per block of 16 cells.
 */
static size_t attn_ncp(uint32_t n_cells) { return ((size_t)n_cells + 15) & ~(size_t)15; }

static size_t attn_stride_of(const llmops_model *m, uint32_t n_cells, size_t *qblk) {
    size_t hd = (size_t)m->arch.head_dim, group = (size_t)(m->arch.n_heads / m->arch.n_kv_heads);
    size_t qb = group >= 32 ? 1 : 32 / group, nq = qb * group, ncp = attn_ncp(n_cells);
    *qblk = qb;
    size_t floats = 2 * nq * hd + nq * ncp + 32 * hd + (qb * ncp + ncp / 16 + 3) / 4;
    return (floats + 15) & ~(size_t)15;
}

/*
 * A decode step reads each group's keys and values in place (hd halves per cell, kd apart) from a
 * cache that the weights streamed since the previous step have pushed out to memory; read a block of
 * 16 cells after another they came at the latency of memory, one round per block (SmolLM Q4_0, 65
 * cells: attention was 6% of a token). So a layer's first KV_PREFETCH_CELLS cells of keys and values
 * (contiguous: all heads of a cell are one row) are requested into L2 as its one-token pass begins,
 * each thread every nth line (kv_prefetch_layer), and arrive while its q, k and v are made; in
 * attention, the cells past those are requested a block of 16 at a time, KV_PREFETCH_CELLS ahead of
 * the scores (kv_prefetch). Attention's time per token halved.
 */
enum { KV_PREFETCH_CELLS = 256 };

static void kv_prefetch_layer(const llmops_context *ctx, int layer, int ith, int nth) {
    size_t nc = ctx->used_hi < KV_PREFETCH_CELLS ? ctx->used_hi : KV_PREFETCH_CELLS;
    size_t bytes = nc * kv_dim(ctx->m) * ctx->kv_elt;
    const uint8_t *k = kv_row(ctx, ctx->k, layer, 0), *v = kv_row(ctx, ctx->v, layer, 0);
    for (size_t o = 64 * (size_t)ith; o < bytes; o += 64 * (size_t)nth) __builtin_prefetch(k + o, 0, 2), __builtin_prefetch(v + o, 0, 2);
}

static void kv_prefetch(const uint16_t *base, size_t kd, size_t c0, size_t c1, size_t hd) {
    for (size_t c = c0; c < c1; c++)
        for (size_t o = 0; o < hd; o += 32) __builtin_prefetch(base + c * kd + o, 0, 3);
}

static void attend_block(attn_job *J, size_t w, int ith) {
    llmops_context *ctx = J->ctx;
    const llmops_model *m = ctx->m;
    const attn_kernels *K = attn_kernels_get(0);
    size_t hd = (size_t)m->arch.head_dim, nkv = (size_t)m->arch.n_kv_heads;
    size_t group = (size_t)m->arch.n_heads / nkv, qd = (size_t)m->arch.n_heads * hd;
    size_t g = w % nkv, t0 = w / nkv * ctx->attn_qblk;
    size_t nt = J->n - t0 < ctx->attn_qblk ? J->n - t0 : ctx->attn_qblk, nq = nt * group;
    size_t ncp = attn_ncp(ctx->n_cells), nq_max = ctx->attn_qblk * group;
    float *Q = ctx->scores + (size_t)ith * ctx->attn_stride, *O = Q + nq_max * hd, *S = O + nq_max * hd;
    float *Kt = S + nq_max * ncp, *Vb = Kt + 16 * hd;
    uint8_t *vis = (uint8_t *)(Vb + 16 * hd), *blk = vis + ctx->attn_qblk * ncp;
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t t = 0; t < nt; t++)
        for (size_t j = 0; j < group; j++) {
            const float *q = ctx->q + (t0 + t) * qd + (g * group + j) * hd;
            float *dst = Q + (t * group + j) * hd;
            for (size_t i = 0; i < hd; i++) dst[i] = q[i] * scale;
        }
    /* which cells each token sees */
    uint32_t hi = ctx->used_hi, chi = 0;
    int64_t window = m->arch.sliding_window; /* Mistral: a query sees the last `window` positions */
    for (size_t t = 0; t < nt; t++) {
        uint64_t bit = (uint64_t)1 << J->items[t0 + t].seq;
        int32_t pos = J->items[t0 + t].pos;
        uint8_t *v = vis + t * ncp;
        for (uint32_t c = 0; c < hi; c++) {
            const kv_cell *cell = &ctx->cells[c];
            int ok = (cell->seqs & bit) && (J->bidirectional || cell->pos <= pos) &&
                     !(window > 0 && (int64_t)pos - cell->pos >= window);
            v[c] = (uint8_t)ok;
            if (ok && c + 1 > chi) chi = c + 1;
        }
    }
    size_t nblk = (chi + 15) / 16;
    const int f32 = ctx->p.kv_type == LLMOPS_KV_F32;
    /* a decode step reads an F16 cache in place: the group's rows of cell 0, kd apart */
    size_t kd = kv_dim(m);
    const uint16_t *kf16 = (const uint16_t *)kv_row(ctx, ctx->k, J->layer, 0) + g * hd;
    const uint16_t *vf16 = (const uint16_t *)kv_row(ctx, ctx->v, J->layer, 0) + g * hd;
    const int decode_f16 = nq < 4 && !f32;
    /* scores */
    for (size_t b = 0; b < nblk; b++) {
        size_t c0 = b * 16, nc = chi - c0 < 16 ? chi - c0 : 16;
        if (decode_f16 && c0 + KV_PREFETCH_CELLS < chi) {
            size_t p0 = c0 + KV_PREFETCH_CELLS, p1 = p0 + 16 < chi ? p0 + 16 : chi;
            kv_prefetch(kf16, kd, p0, p1, hd);
            kv_prefetch(vf16, kd, p0, p1, hd);
        }
        int any = 0;
        for (size_t t = 0; t < nt && !any; t++)
            for (size_t c = 0; c < nc; c++) any |= vis[t * ncp + c0 + c];
        blk[b] = (uint8_t)any;
        if (!any) continue;
        if (decode_f16) { /* a decode step: too few rows to pay for the transposition */
            K->qk_f16(kf16 + c0 * kd, kd, nc, Q, nq, hd, S + c0, ncp);
            continue;
        }
        if (nq < 4) { /* the same with an F32 cache */
            for (size_t c = 0; c < nc; c++) {
                const float *kf = (const float *)kv_row(ctx, ctx->k, J->layer, (uint32_t)(c0 + c)) + g * hd;
                for (size_t r = 0; r < nq; r++) S[r * ncp + c0 + c] = K->dot_f32(kf, Q + r * hd, hd);
            }
            continue;
        }
        for (size_t c = 0; c < nc; c++) {
            const void *k = (const uint8_t *)kv_row(ctx, ctx->k, J->layer, (uint32_t)(c0 + c)) + g * hd * ctx->kv_elt;
            if (f32) memcpy(Vb, k, hd * sizeof(float));
            else K->cvt_f16(k, Vb, hd);
            for (size_t i = 0; i < hd; i++) Kt[i * 16 + c] = Vb[i];
        }
        for (size_t c = nc; c < 16; c++)
            for (size_t i = 0; i < hd; i++) Kt[i * 16 + c] = 0;
        K->qk16(Q, nq, hd, Kt, S + c0, ncp);
    }
    /* softmax per row; invisible cells get weight 0 (a block without a visible cell has no scores, and
     * every cell of it is invisible to every row, so the visibility bytes alone decide) */
    float *sums = Q; /* the queries are no longer needed: nq <= nq_max·hd */
    for (size_t r = 0; r < nq; r++) sums[r] = llmops_vec_softmax(S + r * ncp, vis + (r / group) * ncp, chi);
    memset(O, 0, nq * hd * sizeof(float));
    for (size_t b = 0; b < nblk; b++) {
        if (!blk[b]) continue;
        size_t c0 = b * 16, nc = chi - c0 < 16 ? chi - c0 : 16;
        if (decode_f16) {
            K->pv_f16(S + c0, ncp, nq, vf16 + c0 * kd, kd, nc, hd, O);
            continue;
        }
        for (size_t c = 0; c < nc; c++) {
            const void *v = (const uint8_t *)kv_row(ctx, ctx->v, J->layer, (uint32_t)(c0 + c)) + g * hd * ctx->kv_elt;
            if (f32) memcpy(Vb + c * hd, v, hd * sizeof(float));
            else K->cvt_f16(v, Vb + c * hd, hd);
        }
        K->pv(S + c0, ncp, nq, Vb, nc, hd, O);
    }
    for (size_t r = 0; r < nq; r++) {
        size_t t = r / group, j = r % group;
        float *out = ctx->att + (t0 + t) * qd + (g * group + j) * hd;
        float inv = sums[r] > 0 ? 1.0f / sums[r] : 0.0f;
        for (size_t i = 0; i < hd; i++) out[i] = O[r * hd + i] * inv;
    }
}

static void attend_range(void *vjob, size_t begin, size_t end, int ith) {
    for (size_t w = begin; w < end; w++) attend_block(vjob, w, ith);
}

/* ---- the cache's cells ------------------------------------------------------------------------ */

void llmops_kv_clear(llmops_context *ctx) {
    memset(ctx->cells, 0, ctx->n_cells * sizeof *ctx->cells);
    ctx->used_hi = 0;
}

static void shrink_used(llmops_context *ctx) {
    while (ctx->used_hi > 0 && ctx->cells[ctx->used_hi - 1].seqs == 0) ctx->used_hi--;
}

void llmops_kv_seq_rm(llmops_context *ctx, int32_t seq, int32_t p0, int32_t p1) {
    for (uint32_t c = 0; c < ctx->used_hi; c++) {
        kv_cell *cell = &ctx->cells[c];
        if (cell->pos < p0 || (p1 >= 0 && cell->pos >= p1)) continue;
        if (seq < 0) cell->seqs = 0;
        else if (seq < 64) cell->seqs &= ~((uint64_t)1 << seq);
    }
    shrink_used(ctx);
}

void llmops_kv_seq_cp(llmops_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    if (src < 0 || src >= 64 || dst < 0 || dst >= 64) return;
    for (uint32_t c = 0; c < ctx->used_hi; c++) {
        kv_cell *cell = &ctx->cells[c];
        if (!(cell->seqs & ((uint64_t)1 << src)) || cell->pos < p0 || (p1 >= 0 && cell->pos >= p1)) continue;
        cell->seqs |= (uint64_t)1 << dst;
    }
}

int32_t llmops_kv_seq_pos_max(const llmops_context *ctx, int32_t seq) {
    int32_t mx = -1;
    if (seq < 0 || seq >= 64) return -1;
    for (uint32_t c = 0; c < ctx->used_hi; c++)
        if ((ctx->cells[c].seqs & ((uint64_t)1 << seq)) && ctx->cells[c].pos > mx) mx = ctx->cells[c].pos;
    return mx;
}

uint32_t llmops_kv_used(const llmops_context *ctx) {
    uint32_t n = 0;
    for (uint32_t c = 0; c < ctx->used_hi; c++) n += ctx->cells[c].seqs != 0;
    return n;
}

/* ---- context ----------------------------------------------------------------------------------- */

void llmops_context_params_init(llmops_context_params *p) {
    memset(p, 0, sizeof *p);
    p->n_batch = 512;
    p->n_seq_max = 1;
    p->kv_type = LLMOPS_KV_F16;
}

/*
 * Scratch for chunks of up to n tokens, in one allocation. Only attention
 * needs the whole chunk at once (every query against every key of it); the
 * rest of a layer can run over the chunk a slice of s tokens at a time.
 * Per token of the chunk: the residual x (d) and the queries q (qd); per
 * token of a slice: h (d), then one region that the attention half and the
 * MLP half of a layer take in turn:
 *   attention:  [the fused QKV product (qd + 2 kvd)] kk (kvd) | vv (kvd)
 *   MLP:        ff1 (ffn) | ff2 (ffn)
 * The attention's output (att) goes over the queries: each work item of
 * attend_block copies its queries into its thread's scratch before it
 * writes the same rows and heads, and no two items share a row's head.
 * Unsliced (s = n), q sits in the region after vv, as nothing of the
 * attention half outlives the output projection.
 * (The single-token path uses the same buffers, in the same order.)
 *
 * Slices cost some prompt speed (every product re-reads and, on AVX-512,
 * repacks its weights per slice, and is a parallel region more; about 1% at
 * 64 tokens on SmolLM-135M Q4_0 once the per-token steps between products
 * run on the pool, see slice_step), so the chunk is sliced only when its
 * scratch would exceed 1/20 of the weights, leaving the rest of the 10%
 * memory margin over weights + KV cache to the process; the slice is then
 * the largest of 256, 128, 64 tokens (multiples of the products' token
 * tiles) that fits, or 64. SmolLM-135M Q4_0 (76 MB of weights) takes
 * 64-token slices: 3.3 MB for a 512-token chunk, not 8.7 MB.
 */
static size_t scratch_floats(size_t n, size_t s, size_t d, size_t qd, size_t kvd, size_t f) {
    size_t attn = qd + 4 * kvd + (s == n ? qd : 0), region = attn > 2 * f ? attn : 2 * f;
    return n * d + (s < n ? n * qd : 0) + s * (d + region);
}

static llmops_status alloc_scratch(llmops_context *ctx, uint32_t n, llmops_error *err) {
    const llmops_arch *a = &ctx->m->arch;
    size_t d = (size_t)a->hidden_size, qd = (size_t)(a->n_heads * a->head_dim), kvd = kv_dim(ctx->m);
    size_t f = (size_t)a->ffn_size, qkv = qd + 2 * kvd, s = n;
    uint64_t budget = ctx->m->weight_bytes / 20 / sizeof(float);
    if (scratch_floats(n, n, d, qd, kvd, f) > budget) {
        s = 64;
        for (size_t c = 256; c > 64; c /= 2)
            if (c < n && scratch_floats(n, c, d, qd, kvd, f) <= budget) {
                s = c;
                break;
            }
        if (s > n) s = n;
    }
    llmops_free(ctx->x);
    ctx->x = llmops_malloc(scratch_floats(n, s, d, qd, kvd, f) * sizeof(float));
    if (!ctx->x) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for a batch of %u tokens", n);
    ctx->h = ctx->x + (size_t)n * d + (s < n ? (size_t)n * qd : 0);
    ctx->ff1 = ctx->h + s * d;
    ctx->ff2 = ctx->ff1 + s * f;
    ctx->kk = ctx->ff1 + s * qkv;
    ctx->vv = ctx->kk + s * kvd;
    ctx->q = ctx->att = s < n ? ctx->x + (size_t)n * d : ctx->vv + s * kvd;
    llmops_free(ctx->wtmp);
    size_t widest = f > qkv ? f : qkv, wt = 2 * (widest > d ? widest : d); /* a 1-D weight and a bias, converted */
    ctx->wtmp = llmops_malloc(wt * sizeof(float));
    if (!ctx->wtmp) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    ctx->scratch_tokens = n;
    ctx->slice_tokens = (uint32_t)s;
    return LLMOPS_OK;
}

void llmops_context_free(llmops_context *ctx) {
    if (!ctx) return;
    llmops_threadpool_free(ctx->pool);
    llmops_free(ctx->cells);
    llmops_free(ctx->k);
    llmops_free(ctx->v);
    llmops_free(ctx->out);
    llmops_free(ctx->out_index);
    lora_ctx_free(ctx);
    float *bufs[] = {ctx->x /* and the activations carved from it */, ctx->scores, ctx->wtmp, ctx->rope_cs,
                     ctx->fused_norm};
    llmops_free(ctx->fused_ctr);
    llmops_free(ctx->fused_rng);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) llmops_free(bufs[i]);
    llmops_free(ctx);
}

llmops_status llmops_context_create(const llmops_model *m, const llmops_context_params *p, llmops_context **out,
                                    llmops_error *err) {
    *out = NULL;
    llmops_context_params defaults;
    if (!p) {
        llmops_context_params_init(&defaults);
        p = &defaults;
    }
    if (p->n_seq_max < 1 || p->n_seq_max > 64)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "n_seq_max must be 1..64, not %u", p->n_seq_max);
    llmops_context *ctx = llmops_calloc(1, sizeof *ctx);
    if (!ctx) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    ctx->m = m;
    ctx->p = *p;
    if (!ctx->p.n_batch) ctx->p.n_batch = 512;
    uint32_t n_ctx = p->n_ctx;
    if (!n_ctx) n_ctx = m->arch.max_positions > 4096 ? 4096 : (uint32_t)m->arch.max_positions;
    ctx->n_cells = n_ctx;
    ctx->kv_elt = p->kv_type == LLMOPS_KV_F32 ? 4 : 2;
    size_t per = (size_t)m->arch.n_layers * n_ctx * kv_dim(m) * ctx->kv_elt;
    llmops_status st = llmops_threadpool_create(p->n_threads, &ctx->pool, err);
    if (st) goto fail;
    ctx->cells = llmops_calloc(n_ctx, sizeof *ctx->cells);
    ctx->k = llmops_malloc(per ? per : 1);
    ctx->v = llmops_malloc(per ? per : 1);
    ctx->attn_stride = attn_stride_of(m, n_ctx, &ctx->attn_qblk);
    int nth = llmops_threadpool_n_threads(ctx->pool);
    ctx->rope_cs = llmops_malloc((size_t)nth * ((size_t)m->arch.rope_dim + 2) * sizeof(float)); /* one per thread */
    ctx->fused_d = ((size_t)m->arch.hidden_size + 15) & ~(size_t)15;
    /* per thread: the normalized vector, then its prepared form (at most 3 bytes per column + 192: F32 is not
     * copied) */
    size_t widest = (size_t)(m->arch.ffn_size > m->arch.hidden_size ? m->arch.ffn_size : m->arch.hidden_size);
    ctx->fused_stride = ctx->fused_d + (3 * widest + 256) / sizeof(float) + 32;
    ctx->fused_norm = llmops_malloc((size_t)nth * ctx->fused_stride * sizeof(float));
    /* the phases' counters, then per layer and KV group the q/k/v heads finished (fused_token) */
    ctx->fused_n_ctr = (size_t)m->arch.n_layers * (FUSED_PHASES + (size_t)m->arch.n_kv_heads) + 1;
    ctx->fused_ctr = llmops_calloc(ctx->fused_n_ctr, sizeof *ctx->fused_ctr);
    ctx->fused_n_rng = ((size_t)m->arch.n_layers * FUSED_PHASES + 1) * (size_t)nth * FUSED_RNG_STRIDE;
    ctx->fused_rng = llmops_calloc(ctx->fused_n_rng, sizeof *ctx->fused_rng);
    if (!ctx->rope_cs || !ctx->fused_norm || !ctx->fused_ctr || !ctx->fused_rng) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    ctx->scores = llmops_malloc((size_t)llmops_threadpool_n_threads(ctx->pool) * ctx->attn_stride * sizeof(float));
    ctx->out_width = m->arch.family == LLMOPS_ARCH_BERT ? (size_t)m->arch.hidden_size : (size_t)m->arch.vocab_size;
    if (!ctx->cells || !ctx->k || !ctx->v || !ctx->scores) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for a KV cache of %u cells (%zu bytes)", n_ctx, 2 * per);
        goto fail;
    }
    if ((st = alloc_scratch(ctx, ctx->p.n_batch < n_ctx ? ctx->p.n_batch : n_ctx, err))) goto fail;
    *out = ctx;
    return LLMOPS_OK;
fail:
    llmops_context_free(ctx);
    return st;
}

uint32_t llmops_context_n_ctx(const llmops_context *ctx) { return ctx->n_cells; }
size_t llmops_output_width(const llmops_context *ctx) { return ctx->out_width; }

const float *llmops_get_logits(const llmops_context *ctx, size_t i) {
    if (!ctx->out_index || i >= ctx->out_cap_items || ctx->out_index[i] == SIZE_MAX) return NULL;
    return ctx->out + ctx->out_index[i] * ctx->out_width;
}

/* ---- one token: the whole pass in one parallel region ---------------------------------------------- */

/*
 * A single token (decode) is memory bound: each weight is read once, and the
 * time that is not spent streaming weights goes to synchronisation. So the
 * whole pass runs in one job of the pool: every thread normalizes the residual
 * itself, then streams its own range of a phase's rows and helps with the
 * others' ends (fused_take: uneven progress on a shared machine balances;
 * the q/k/v heads come from one counter), and a barrier separates the
 * phases — four per layer: q/k/v heads (each with its RoPE and its KV-cache
 * store) then attention per KV group once that group's heads are done, the
 * output projection added into the residual, gate and up with the
 * activation, down added into the residual.
 * The values are those of the batched path for one token bit for bit (the
 * same kernels on the same rows, the same order of additions), whatever the
 * number of threads.
 */
enum { FUSED_CHUNK = 16 };

/* The pool's barrier spins briefly, then sleeps: on a machine shared with other jobs a thread
 * that spins or yields for long loses its priority and comes back late, so it is not worth more. */
static void fused_barrier(llmops_context *ctx, int nth) {
    if (nth > 1) llmops_threadpool_barrier(ctx->pool);
}

/* The next chunk of a phase, or SIZE_MAX when none is left. */
static inline size_t fused_next(llmops_context *ctx, size_t phase, size_t n_chunks) {
    size_t c = atomic_fetch_add_explicit(&ctx->fused_ctr[phase], 1, memory_order_relaxed);
    return c < n_chunks ? c : SIZE_MAX;
}

/* The first row of thread t's range of a phase of n rows (n for t = nth), a multiple of FUSED_CHUNK. */
static inline size_t fused_range_start(size_t n, int t, int nth) {
    size_t s = (n * (size_t)t / (size_t)nth + FUSED_CHUNK / 2) / FUSED_CHUNK * FUSED_CHUNK;
    return t == nth || s > n ? n : s;
}

/*
 * The next rows [*r0, *r1) of a phase of n rows for thread ith; 0 when none is
 * left. Each thread owns a contiguous range (fused_range_start) and takes half
 * of what is left of it at a time (in multiples of FUSED_CHUNK rows), so it reads
 * its weights as a few long streams; one that has finished its own takes
 * FUSED_CHUNK rows at a time from the back of the others' (uneven progress on
 * a shared machine balances). A shared counter handing out guided chunks in
 * turn instead measured 5-10% slower decoding (SmolLM Q4_0): each thread's
 * stream broke at every chunk. A range's word counts the rows taken from its
 * front (low half) and back (high half); both change by compare-and-swap.
 */
static inline int fused_take(llmops_context *ctx, size_t phase, size_t n, int ith, int nth, size_t *r0, size_t *r1) {
    for (int k = 0; k < nth; k++) {
        const int t = (ith + k) % nth;
        const size_t s = fused_range_start(n, t, nth), len = fused_range_start(n, t + 1, nth) - s;
        _Atomic uint64_t *w = &ctx->fused_rng[(phase * (size_t)nth + (size_t)t) * FUSED_RNG_STRIDE];
        uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
        for (;;) {
            const size_t f = (size_t)(uint32_t)cur, b = (size_t)(cur >> 32), left = len - f - b;
            if (!left) break;
            /* its own: half of what is left, in multiples of FUSED_CHUNK (FUSED_CHUNK when that is all) */
            size_t c = k == 0 ? (left / 2 + FUSED_CHUNK - 1) / FUSED_CHUNK * FUSED_CHUNK : FUSED_CHUNK;
            if (c > left) c = left;
            const uint64_t next = k == 0 ? cur + c : cur + ((uint64_t)c << 32);
            if (atomic_compare_exchange_weak_explicit(w, &cur, next, memory_order_relaxed, memory_order_relaxed)) {
                if (k == 0) *r0 = s + f, *r1 = s + f + c;
                else *r1 = s + len - b, *r0 = s + len - b - c;
                return 1;
            }
        }
    }
    return 0;
}

/* Waits until *c reaches n (the heads of a KV group, made by other threads): spins, then yields, since the
 * thread that makes the last of them may have lost its core. */
static void fused_wait(atomic_size_t *c, size_t n) {
    for (unsigned i = 0; atomic_load_explicit(c, memory_order_acquire) < n; i++) {
        if (i >= 4096) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
    }
}

/* A thread's activation vector prepared for the kernels once per phase (and per activation format), and
 * the format of the last weight type seen (asked again only when the type changes). */
typedef struct {
    const float *x;
    int fmt;
    int type, type_fmt;
    uint8_t *buf;
} fused_act;

/* y = rows [r0, r1) of W · x (+ bias); x prepared in A unless it already is. */
static void fused_rows(fused_act *A, const mview *w, const mview *b, size_t r0, size_t r1, const float *x, float *y) {
    if (w->type != A->type) A->type = w->type, A->type_fmt = llmops_act_format(w->type);
    if (A->x != x || A->fmt != A->type_fmt) {
        llmops_act_prepare(w->type, x, (size_t)w->cols, A->buf);
        A->x = x;
        A->fmt = A->type_fmt;
    }
    llmops_matvec_prepared(w->type, (const uint8_t *)w->data + r0 * w->row_bytes, r1 - r0, (size_t)w->cols, A->buf, x,
                           y + r0);
    if (b && b->data) {
        const float *bias = b->data;
        for (size_t r = r0; r < r1; r++) y[r] += bias[r];
    }
}

typedef struct {
    llmops_context *ctx;
    const llmops_batch_item *item;
    uint32_t cell;
    float *logits; /* NULL: no output row */
} fused_job;

static int f32_or_absent(const mview *v) { return !v->data || v->type == LLMOPS_DTYPE_F32; }

/* Whether the one-token path handles this model and call. */
static int fused_ok(const llmops_context *ctx, size_t n) {
    const llmops_model *m = ctx->m;
    const llmops_arch *a = &m->arch;
    if (n != 1 || ctx->n_lora || a->family == LLMOPS_ARCH_BERT || !a->gated_ffn) return 0;
    if (!f32_or_absent(&m->output_norm) || !f32_or_absent(&m->output_norm_b) || !m->output_norm.data) return 0;
    for (int64_t l = 0; l < a->n_layers; l++) {
        const mlayer *L = &m->layers[l];
        if (L->wqkv.data || !L->wq.data || !L->wk.data || !L->wv.data || !L->attn_norm.data || !L->ffn_norm.data) return 0;
        const mview *one[] = {&L->attn_norm, &L->attn_norm_b, &L->ffn_norm, &L->ffn_norm_b, &L->bq, &L->bk,
                              &L->bv,        &L->bo,          &L->b_gate,   &L->b_up,       &L->b_down};
        for (size_t i = 0; i < sizeof one / sizeof one[0]; i++)
            if (!f32_or_absent(one[i])) return 0;
    }
    return 1;
}

static void fused_norm(const llmops_model *m, const mview *w, const mview *b, const float *x, float *y) {
    norm_vec(&m->arch, x, w->data, b->data, y);
}

enum { ITEM_K, ITEM_V, ITEM_Q, ITEM_ATT };

/*
 * Item u of a layer's first phase (nkv groups of `group` q heads): groups 0 .. nkv − 2 as k, v, q (all the
 * group's heads), the attention of the group before after each but the first; then the last group's k, v,
 * its q heads one by one, the attention of the group before it and its own. Sets the group and, for q,
 * the heads [h0, h1).
 */
static int fused_item(size_t u, size_t nkv, size_t group, size_t *g, size_t *h0, size_t *h1) {
    const size_t pre = nkv >= 2 ? 3 + 4 * (nkv - 2) : 0;
    size_t j;
    if (u < pre) {
        *g = u < 3 ? 0 : (u - 3) / 4 + 1, j = u < 3 ? u : (u - 3) % 4;
        if (j == 3) return --*g, ITEM_ATT;
        *h0 = *g * group, *h1 = *h0 + group;
        return j == 0 ? ITEM_K : j == 1 ? ITEM_V : ITEM_Q;
    }
    j = u - pre, *g = nkv - 1;
    if (j < 2) return j == 0 ? ITEM_K : ITEM_V;
    if (j < 2 + group) return *h0 = *g * group + j - 2, *h1 = *h0 + 1, ITEM_Q;
    if (j == 2 + group && nkv >= 2) --*g;
    return ITEM_ATT;
}

/* The number of those items, and how many k, v and q items group g has (what its attention waits for). */
static size_t fused_n_items(size_t nkv, size_t group) { return (nkv >= 2 ? 3 + 4 * (nkv - 2) + 2 : 1) + 2 + group; }

static size_t fused_group_items(size_t g, size_t nkv, size_t group) { return g + 1 < nkv ? 3 : 2 + group; }

static void fused_token(void *vj, int ith, int nth) {
    fused_job *F = vj;
    llmops_context *ctx = F->ctx;
    const llmops_model *m = ctx->m;
    const llmops_arch *a = &m->arch;
    size_t d = (size_t)a->hidden_size, hd = (size_t)a->head_dim, nh = (size_t)a->n_heads, nkv = (size_t)a->n_kv_heads;
    size_t f = (size_t)a->ffn_size, group = nh / nkv;
    float *xn = ctx->fused_norm + (size_t)ith * ctx->fused_stride;
    fused_act A = {NULL, -1, -1, -1, (uint8_t *)(((uintptr_t)(xn + ctx->fused_d) + 63) & ~(uintptr_t)63)};
    size_t ph = 0;
    for (int l = 0; l < (int)a->n_layers; l++, ph += FUSED_PHASES) {
        const mlayer *L = &m->layers[l];
        fused_norm(m, &L->attn_norm, &L->attn_norm_b, ctx->x, xn);
        A.x = NULL;
        kv_prefetch_layer(ctx, l, ith, nth);
        /* k, v and q by KV groups (a group's k head, its v head, then its q heads in one item), each head
         * rotated and, for k and v, stored where it is made. A group's attention is the item after the next
         * group's three (by then its own are done or being made), the last group's at the end: no barrier
         * between heads and attention. A group's q heads are one item, not one each: each item is a call
         * with its own start-up costs (SmolLM: 18 items per layer became 12). But the last group's q heads
         * are one item each, so the phase ends with the last two attention items side by side, not one
         * thread's q heads then the other's attention (fused_item). */
        atomic_size_t *ready = ctx->fused_ctr + (size_t)a->n_layers * FUSED_PHASES + 1 + (size_t)l * nkv;
        attn_job J = {ctx, F->item, &F->cell, 1, l, 0};
        for (size_t u; (u = fused_next(ctx, ph, fused_n_items(nkv, group))) != SIZE_MAX;) {
            size_t g, h0, h1;
            const int kind = fused_item(u, nkv, group, &g, &h0, &h1);
            if (kind == ITEM_ATT) {
                fused_wait(&ready[g], fused_group_items(g, nkv, group));
                attend_block(&J, g, ith);
                continue;
            }
            if (kind == ITEM_Q) {
                fused_rows(&A, &L->wq, &L->bq, h0 * hd, h1 * hd, xn, ctx->q);
                for (size_t h = h0; h < h1 && a->pos == LLMOPS_POS_ROPE; h++) rope(m, ctx->q + h * hd, ctx->rope_cs);
            } else if (kind == ITEM_K) {
                fused_rows(&A, &L->wk, &L->bk, g * hd, (g + 1) * hd, xn, ctx->kk);
                if (a->pos == LLMOPS_POS_ROPE) rope(m, ctx->kk + g * hd, ctx->rope_cs);
                kv_store(ctx, (uint8_t *)kv_row(ctx, ctx->k, l, F->cell) + g * hd * ctx->kv_elt, ctx->kk + g * hd, hd);
            } else {
                fused_rows(&A, &L->wv, &L->bv, g * hd, (g + 1) * hd, xn, ctx->vv);
                kv_store(ctx, (uint8_t *)kv_row(ctx, ctx->v, l, F->cell) + g * hd * ctx->kv_elt, ctx->vv + g * hd, hd);
            }
            atomic_fetch_add_explicit(&ready[g], 1, memory_order_release);
        }
        fused_barrier(ctx, nth);
        /* output projection into the residual, by row chunks */
        for (size_t r0, r1; fused_take(ctx, ph + 1, d, ith, nth, &r0, &r1);) {
            fused_rows(&A, &L->wo, &L->bo, r0, r1, ctx->att, ctx->h);
            add_into(ctx->x + r0, ctx->h + r0, r1 - r0);
        }
        fused_barrier(ctx, nth);
        fused_norm(m, &L->ffn_norm, &L->ffn_norm_b, ctx->x, xn);
        A.x = NULL;
        for (size_t r0, r1; fused_take(ctx, ph + 2, f, ith, nth, &r0, &r1);) {
            fused_rows(&A, &L->w_up, &L->b_up, r0, r1, xn, ctx->ff1);
            fused_rows(&A, &L->w_gate, &L->b_gate, r0, r1, xn, ctx->ff2);
            if (a->act == LLMOPS_ACT_SILU) llmops_vec_silu_mul(ctx->ff1 + r0, ctx->ff2 + r0, r1 - r0);
            else
                for (size_t r = r0; r < r1; r++) ctx->ff1[r] *= act(a->act, ctx->ff2[r]);
        }
        fused_barrier(ctx, nth);
        for (size_t r0, r1; fused_take(ctx, ph + 3, d, ith, nth, &r0, &r1);) {
            fused_rows(&A, &L->w_down, &L->b_down, r0, r1, ctx->ff1, ctx->h);
            add_into(ctx->x + r0, ctx->h + r0, r1 - r0);
        }
        fused_barrier(ctx, nth);
    }
    if (!F->logits) return;
    fused_norm(m, &m->output_norm, &m->output_norm_b, ctx->x, xn);
    A.x = NULL;
    for (size_t r0, r1; fused_take(ctx, ph, (size_t)m->output.rows, ith, nth, &r0, &r1);) {
        fused_rows(&A, &m->output, NULL, r0, r1, xn, F->logits);
    }
}

/* ---- one pass over a chunk of the batch ------------------------------------------------------------ */

/*
 * The per-token steps between a slice's products (norms, RoPE and the cache
 * stores, the activation, the residual sums) run on the pool too: on the
 * calling thread alone they would leave the others idle long enough to go to
 * sleep before every product. Each token is computed as on one thread.
 */
enum { STEP_NORM, STEP_ROPE_STORE, STEP_ADD_NORM, STEP_ACT, STEP_ADD };

typedef struct {
    llmops_context *ctx;
    const llmops_batch_item *it;
    const uint32_t *cell_of;
    size_t s0;            /* the slice's first token in the chunk */
    int layer, step;
    const float *w, *b;   /* the norm's weight and bias (NULL: none), as floats */
} slice_job;

static void slice_tokens(void *vj, size_t begin, size_t end, int ith) {
    const slice_job *J = vj;
    llmops_context *ctx = J->ctx;
    const llmops_model *m = ctx->m;
    const llmops_arch *a = &m->arch;
    size_t d = (size_t)a->hidden_size, hd = (size_t)a->head_dim, qd = (size_t)a->n_heads * hd, kvd = kv_dim(m);
    size_t f = (size_t)a->ffn_size;
    for (size_t t = begin; t < end; t++) {
        float *x = ctx->x + (J->s0 + t) * d, *h = ctx->h + t * d;
        switch (J->step) {
        case STEP_ADD_NORM:
            add_into(x, h, d);
            /* fall through */
        case STEP_NORM: norm_vec(a, x, J->w, J->b, h); break;
        case STEP_ROPE_STORE: {
            float *q = ctx->q + (J->s0 + t) * qd, *k = ctx->kk + t * kvd;
            if (a->pos == LLMOPS_POS_ROPE) {
                float *cs = ctx->rope_cs + (size_t)ith * ((size_t)a->rope_dim + 2);
                rope_table(m, J->it[J->s0 + t].pos, cs);
                for (int64_t hh = 0; hh < a->n_heads; hh++) rope(m, q + (size_t)hh * hd, cs);
                for (int64_t hh = 0; hh < a->n_kv_heads; hh++) rope(m, k + (size_t)hh * hd, cs);
            }
            kv_store(ctx, kv_row(ctx, ctx->k, J->layer, J->cell_of[J->s0 + t]), k, kvd);
            kv_store(ctx, kv_row(ctx, ctx->v, J->layer, J->cell_of[J->s0 + t]), ctx->vv + t * kvd, kvd);
            break;
        }
        case STEP_ACT: {
            float *u = ctx->ff1 + t * f, *g = ctx->ff2 + t * f;
            if (!a->gated_ffn)
                for (size_t i = 0; i < f; i++) u[i] = act(a->act, u[i]);
            else if (a->act == LLMOPS_ACT_SILU) llmops_vec_silu_mul(u, g, f);
            else
                for (size_t i = 0; i < f; i++) u[i] *= act(a->act, g[i]);
            break;
        }
        default: add_into(x, h, d); break;
        }
    }
}

/* One step over the ns tokens of a slice: halves per thread (the tokens cost alike). */
static void slice_step(slice_job *J, int step, size_t ns) {
    J->step = step;
    size_t nth = (size_t)llmops_threadpool_n_threads(J->ctx->pool);
    if (ns < 2 || nth < 2 || llmops_threadpool_parallel_for(J->ctx->pool, ns, (ns + nth - 1) / nth, slice_tokens, J))
        slice_tokens(J, 0, ns, 0);
}

static llmops_status eval_chunk(llmops_context *ctx, const llmops_batch_item *it, size_t n, size_t out_row0,
                                size_t item0, llmops_error *err) {
    const llmops_model *m = ctx->m;
    const llmops_arch *a = &m->arch;
    size_t d = (size_t)a->hidden_size, hd = (size_t)a->head_dim, qd = (size_t)a->n_heads * hd, kvd = kv_dim(m);
    int bert = a->family == LLMOPS_ARCH_BERT;
    size_t S = ctx->slice_tokens; /* the steps other than attention go a slice of S tokens at a time */
    float *tw = ctx->wtmp, *tb = ctx->wtmp + d; /* 1-D weights that are not F32 are converted here */
    /* cells for the new tokens */
    uint32_t *cell_of = llmops_malloc(n * sizeof *cell_of);
    if (!cell_of) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    uint32_t next = 0;
    for (size_t t = 0; t < n; t++) {
        while (next < ctx->n_cells && ctx->cells[next].seqs) next++;
        if (next == ctx->n_cells) {
            llmops_free(cell_of);
            return llmops_error_set(err, LLMOPS_ERR_LIMIT,
                                    "context full: all %u KV cells are in use (raise n_ctx or free a sequence)", ctx->n_cells);
        }
        cell_of[t] = next++;
    }
    /* embeddings */
    for (size_t t = 0; t < n; t++) {
        float *x = ctx->x + t * d;
        mm_dequant_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)it[t].token * m->tok_embd.row_bytes,
                              x, d);
        if (m->pos_embd.data) {
            float *pe = ctx->h;
            mm_dequant_row(m->pos_embd.type,
                                  (const uint8_t *)m->pos_embd.data + (size_t)it[t].pos * m->pos_embd.row_bytes, pe, d);
            add_into(x, pe, d);
        }
        if (m->type_embd.data) {
            float *te = ctx->h;
            mm_dequant_row(m->type_embd.type, m->type_embd.data, te, d); /* token type 0 */
            add_into(x, te, d);
        }
    }
    if (bert)
        for (size_t s0 = 0; s0 < n; s0 += S) {
            size_t ns = n - s0 < S ? n - s0 : S;
            memcpy(ctx->h, ctx->x + s0 * d, ns * d * sizeof(float));
            norm_rows(m, &m->embd_norm, &m->embd_norm_b, ctx->h, ctx->x + s0 * d, ns, tw, tb);
        }
    if (fused_ok(ctx, n)) {
        fused_job F = {ctx, it, cell_of[0], NULL};
        if (it[0].logits) {
            F.logits = ctx->out + out_row0 * ctx->out_width;
            ctx->out_index[item0] = out_row0;
        }
        ctx->cells[cell_of[0]].pos = it[0].pos;
        ctx->cells[cell_of[0]].seqs = (uint64_t)1 << it[0].seq;
        if (cell_of[0] + 1 > ctx->used_hi) ctx->used_hi = cell_of[0] + 1;
        if (a->pos == LLMOPS_POS_ROPE) rope_table(m, it[0].pos, ctx->rope_cs);
        memset(ctx->fused_ctr, 0, ctx->fused_n_ctr * sizeof *ctx->fused_ctr);
        memset((void *)ctx->fused_rng, 0, ctx->fused_n_rng * sizeof *ctx->fused_rng);
        llmops_threadpool_run(ctx->pool, fused_token, &F);
        shrink_used(ctx);
        llmops_free(cell_of);
        return LLMOPS_OK;
    }
    for (int l = 0; l < (int)a->n_layers; l++) {
        const mlayer *L = &m->layers[l];
        /* q for the whole chunk; each slice's k and v go to the cache */
        for (size_t s0 = 0; s0 < n; s0 += S) {
            size_t ns = n - s0 < S ? n - s0 : S;
            float *xs = ctx->x + s0 * d, *q = ctx->q + s0 * qd;
            const float *in = xs; /* BERT: the residual itself */
            slice_job SJ = {ctx, it, cell_of, s0, l, 0, NULL, NULL};
            if (!bert) {
                SJ.w = f32_of(&L->attn_norm, tw);
                SJ.b = L->attn_norm_b.data ? f32_of(&L->attn_norm_b, tb) : NULL;
                slice_step(&SJ, STEP_NORM, ns);
                in = ctx->h;
            }
            if (L->wqkv.data) {
                float *qkv = ctx->ff1; /* (ns, qd + 2 kvd) */
                linear(ctx, &L->wqkv, &L->bqkv, in, ns, qkv);
                if (ctx->n_lora) lora_apply(ctx, l, LW_QKV, in, ns, qkv);
                size_t w = qd + 2 * kvd;
                for (size_t t = 0; t < ns; t++) {
                    memcpy(q + t * qd, qkv + t * w, qd * sizeof(float));
                    memcpy(ctx->kk + t * kvd, qkv + t * w + qd, kvd * sizeof(float));
                    memcpy(ctx->vv + t * kvd, qkv + t * w + qd + kvd, kvd * sizeof(float));
                }
            } else if (ns == 1) {
                linear2(ctx, &L->wq, &L->bq, q, &L->wk, &L->bk, ctx->kk, &L->wv, &L->bv, ctx->vv, in);
            } else {
                const mview *w3[3] = {&L->wq, &L->wk, &L->wv}, *b3[3] = {&L->bq, &L->bk, &L->bv};
                float *y3[3] = {q, ctx->kk, ctx->vv};
                linear_multi(ctx, w3, b3, y3, 3, in, ns);
            }
            if (ctx->n_lora && !L->wqkv.data) {
                lora_apply(ctx, l, LW_Q, in, ns, q);
                lora_apply(ctx, l, LW_K, in, ns, ctx->kk);
                lora_apply(ctx, l, LW_V, in, ns, ctx->vv);
            }
            slice_step(&SJ, STEP_ROPE_STORE, ns);
        }
        /* the new cells become visible to this layer's attention */
        for (size_t t = 0; t < n; t++) {
            ctx->cells[cell_of[t]].pos = it[t].pos;
            ctx->cells[cell_of[t]].seqs = (uint64_t)1 << it[t].seq;
            if (cell_of[t] + 1 > ctx->used_hi) ctx->used_hi = cell_of[t] + 1;
        }
        /* att over q (see alloc_scratch) */
        attn_job J = {ctx, it, cell_of, n, l, bert};
        size_t work = n * (size_t)a->n_heads * ctx->used_hi * hd;
        size_t items = (n + ctx->attn_qblk - 1) / ctx->attn_qblk * (size_t)a->n_kv_heads;
        if (work >= (1u << 15)) llmops_threadpool_parallel_for(ctx->pool, items, 1, attend_range, &J);
        else attend_range(&J, 0, items, 0);
        /* the output projection and the MLP, a slice at a time */
        for (size_t s0 = 0; s0 < n; s0 += S) {
            size_t ns = n - s0 < S ? n - s0 : S;
            float *xs = ctx->x + s0 * d, *att = ctx->att + s0 * qd;
            slice_job SJ = {ctx, it, cell_of, s0, l, 0, NULL, NULL};
            linear(ctx, &L->wo, &L->bo, att, ns, ctx->h);
            if (ctx->n_lora) lora_apply(ctx, l, LW_O, att, ns, ctx->h);
            if (bert) {
                add_into(xs, ctx->h, ns * d);
                memcpy(ctx->h, xs, ns * d * sizeof(float));
                norm_rows(m, &L->attn_out_norm, &L->attn_out_norm_b, ctx->h, xs, ns, tw, tb);
                memcpy(ctx->h, xs, ns * d * sizeof(float));
            } else {
                SJ.w = f32_of(&L->ffn_norm, tw);
                SJ.b = L->ffn_norm_b.data ? f32_of(&L->ffn_norm_b, tb) : NULL;
                slice_step(&SJ, STEP_ADD_NORM, ns);
            }
            if (a->gated_ffn && ns == 1) {
                linear2(ctx, &L->w_up, &L->b_up, ctx->ff1, &L->w_gate, &L->b_gate, ctx->ff2, NULL, NULL, NULL, ctx->h);
            } else if (a->gated_ffn) {
                const mview *w2[2] = {&L->w_up, &L->w_gate}, *b2[2] = {&L->b_up, &L->b_gate};
                float *y2[2] = {ctx->ff1, ctx->ff2};
                linear_multi(ctx, w2, b2, y2, 2, ctx->h, ns);
            } else {
                linear(ctx, &L->w_up, &L->b_up, ctx->h, ns, ctx->ff1);
            }
            if (ctx->n_lora) {
                lora_apply(ctx, l, LW_UP, ctx->h, ns, ctx->ff1);
                if (a->gated_ffn) lora_apply(ctx, l, LW_GATE, ctx->h, ns, ctx->ff2);
            }
            slice_step(&SJ, STEP_ACT, ns);
            /* down over h: the slice's MLP input is used up */
            linear(ctx, &L->w_down, &L->b_down, ctx->ff1, ns, ctx->h);
            if (ctx->n_lora) lora_apply(ctx, l, LW_DOWN, ctx->ff1, ns, ctx->h);
            slice_step(&SJ, STEP_ADD, ns);
            if (bert) {
                memcpy(ctx->h, xs, ns * d * sizeof(float));
                norm_rows(m, &L->out_norm, &L->out_norm_b, ctx->h, xs, ns, tw, tb);
            }
        }
    }
    /* outputs */
    size_t row = out_row0;
    for (size_t t = 0; t < n; t++) {
        if (!it[t].logits) continue;
        float *o = ctx->out + row * ctx->out_width;
        ctx->out_index[item0 + t] = row++;
        if (bert) {
            memcpy(o, ctx->x + t * d, d * sizeof(float));
            continue;
        }
        norm_rows(m, &m->output_norm, &m->output_norm_b, ctx->x + t * d, ctx->h, 1, tw, tb);
        linear(ctx, &m->output, NULL, ctx->h, 1, o);
    }
    if (bert) /* an encoder keeps nothing between calls */
        for (size_t t = 0; t < n; t++) ctx->cells[cell_of[t]].seqs = 0;
    shrink_used(ctx);
    llmops_free(cell_of);
    return LLMOPS_OK;
}

llmops_status llmops_decode(llmops_context *ctx, const llmops_batch_item *items, size_t n, llmops_error *err) {
    const llmops_arch *a = &ctx->m->arch;
    size_t n_out = 0;
    for (size_t i = 0; i < n; i++) {
        const llmops_batch_item *b = &items[i];
        if (b->token < 0 || b->token >= a->vocab_size)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "batch item %zu: token %d is outside the vocabulary of %lld",
                                    i, b->token, (long long)a->vocab_size);
        if (b->seq < 0 || (uint32_t)b->seq >= ctx->p.n_seq_max)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "batch item %zu: sequence %d is outside 0..%u", i, b->seq,
                                    ctx->p.n_seq_max - 1);
        if (b->pos < 0 || b->pos >= a->max_positions)
            return llmops_error_set(err, LLMOPS_ERR_LIMIT,
                                    "batch item %zu: position %d is past the model's context length %lld", i, b->pos,
                                    (long long)a->max_positions);
        n_out += b->logits != 0;
    }
    if (a->family == LLMOPS_ARCH_BERT && n > ctx->scratch_tokens)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "BERT input of %zu tokens exceeds the batch size %u", n,
                                ctx->scratch_tokens);
    /* output rows */
    if (n > ctx->out_cap_items) {
        size_t *ni = llmops_reallocarray(ctx->out_index, n, sizeof *ni);
        if (!ni) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        ctx->out_index = ni;
        ctx->out_cap_items = n;
    }
    for (size_t i = 0; i < ctx->out_cap_items; i++) ctx->out_index[i] = SIZE_MAX;
    if (n_out > ctx->out_rows_cap) {
        float *no = llmops_reallocarray(ctx->out, n_out, ctx->out_width * sizeof(float));
        if (!no) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for %zu output rows", n_out);
        ctx->out = no;
        ctx->out_rows_cap = n_out;
    }
    /* long batches are evaluated in chunks (prompt prefill) */
    size_t row = 0;
    for (size_t i = 0; i < n; i += ctx->scratch_tokens) {
        size_t c = n - i < ctx->scratch_tokens ? n - i : ctx->scratch_tokens;
        llmops_status st = eval_chunk(ctx, items + i, c, row, i, err);
        if (st) return st;
        for (size_t k = 0; k < c; k++) row += items[i + k].logits != 0;
    }
    return LLMOPS_OK;
}
