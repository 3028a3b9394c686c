/*
 * Matrix kernels: path selection, the scalar reference kernels, and the
 * matvec/matmul drivers (activation quantization, tiling, threading).
 *
 * The scalar kernels are the reference the SIMD files are tested against.
 * The quantized dots compute, per block, the integer sum of weight quants
 * times activation quants and scale it by the two block scales — ggml's
 * vec_dot_q8_0_q8_0 / q4_0_q8_0 / q4_K_q8_K / q6_K_q8_K arithmetic. The
 * K-quant dots finish each 256-element super-block with one float
 * expression, which the SIMD versions reproduce exactly.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define LLMOPS_KERNELS_INTERNAL
#include "llmops/alloc.h"
#include "llmops/kernels.h"

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return llmops_fp16_to_fp32(h);
}

/* ---- scalar reference kernels ------------------------------------------------------- */

static float dot_f32_scalar(const float *w, const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)w[i] * x[i];
    return (float)s;
}

static float dot_f16_scalar(const uint16_t *w, const float *x, size_t n) {
    const uint8_t *p = (const uint8_t *)w;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)f16_at(p + 2 * i) * x[i];
    return (float)s;
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, size_t n) {
    const uint8_t *p = (const uint8_t *)w;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t b;
        memcpy(&b, p + 2 * i, 2);
        s += (double)llmops_bf16_to_fp32(b) * x[i];
    }
    return (float)s;
}

/* Q8_0 weights · Q8_0 activations: Σ_b d_w·d_x · Σ_j w_j·x_j. */
static float dot_q8_0_scalar(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 34, b += 34) {
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += (int8_t)a[2 + j] * (int8_t)b[2 + j];
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
}

/* Q4_0 weights (nibble − 8; low nibbles are elements 0..15) · Q8_0 activations. */
static float dot_q4_0_scalar(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 18, b += 34) {
        const int8_t *x = (const int8_t *)(b + 2);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += ((a[2 + j] & 0x0F) - 8) * x[j];
            isum += ((a[2 + j] >> 4) - 8) * x[j + 16];
        }
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
}

/*
 * Q4_K · Q8_K. Per super-block: sumi = Σ_j sc_j · Σ q·x over sub-block j,
 * summ = Σ_j m_j · (Σ x over sub-block j, from the Q8_K bsums), and
 * sum += (d·d_x)·sumi − (dmin·d_x)·summ.
 */
static float dot_q4_K_scalar(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 144, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        int16_t bs[16];
        memcpy(bs, b + 260, sizeof bs);
        const uint8_t *q = a + 16;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            llmops_kern_scale_min_k4(j, a + 4, &sc, &m);
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
            const uint8_t *qq = q + 32 * (j / 2);
            int shift = 4 * (j & 1), s = 0;
            for (int l = 0; l < 32; l++) s += ((qq[l] >> shift) & 0x0F) * x[32 * j + l];
            sumi += sc * s;
        }
        const float d = f16_at(a) * dx, dmin = f16_at(a + 2) * dx;
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

/*
 * Q6_K · Q8_K. Quants are used unsigned (0..63) and the −32 offset comes
 * back through the bsums: sumi = Σ_g sc_g·Σ q·x − 32·Σ_g sc_g·bsum_g;
 * sum += (d·d_x)·sumi.
 */
static float dot_q6_K_scalar(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 210, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        const int8_t *sc = (const int8_t *)(a + 192);
        int16_t bs[16];
        memcpy(bs, b + 260, sizeof bs);
        int g_sum[16] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a + 64 * h, *qh = a + 128 + 32 * h;
            const int8_t *xs = x + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
                int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                int g = 8 * h + l / 16;
                g_sum[g + 0] += q1 * xs[l];
                g_sum[g + 2] += q2 * xs[l + 32];
                g_sum[g + 4] += q3 * xs[l + 64];
                g_sum[g + 6] += q4 * xs[l + 96];
            }
        }
        int sumi = 0, off = 0;
        for (int g = 0; g < 16; g++) {
            sumi += sc[g] * g_sum[g];
            off += sc[g] * bs[g];
        }
        sumi -= 32 * off;
        sum += f16_at(a + 208) * dx * (float)sumi;
    }
    return sum;
}

float llmops_kern_dot_f_chain(int type, const void *w, const float *x, size_t n) {
    const uint8_t *p = w;
    float acc = 0;
    for (size_t i = 0; i < n; i++) {
        float wi;
        if (type == LLMOPS_DTYPE_F32) memcpy(&wi, p + 4 * i, 4);
        else if (type == LLMOPS_DTYPE_F16) wi = f16_at(p + 2 * i);
        else {
            uint16_t b;
            memcpy(&b, p + 2 * i, 2);
            wi = llmops_bf16_to_fp32(b);
        }
        acc = fmaf(wi, x[i], acc);
    }
    return acc;
}

static float exp_sum_scalar(float *s, const uint8_t *keep, size_t n, float mx) {
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        s[i] = keep[i] ? expf(s[i] - mx) : 0.0f;
        sum += s[i];
    }
    return sum;
}

static void silu_mul_scalar(float *y, const float *g, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= g[i] / (1.0f + expf(-g[i]));
}

/* Four independent chains: one chain's add latency would bound it. */
static double sumsq_scalar(const float *x, size_t n) {
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) s[j] += (double)x[i + j] * x[i + j];
    for (; i < n; i++) s[0] += (double)x[i] * x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

const llmops_kernel_table llmops_kernels_scalar = {
    .exp_sum = exp_sum_scalar,
    .silu_mul = silu_mul_scalar,
    .sumsq = sumsq_scalar,
    .name = "scalar",
    .dot_f32 = dot_f32_scalar,
    .dot_f16 = dot_f16_scalar,
    .dot_bf16 = dot_bf16_scalar,
    .dot_q8_0 = dot_q8_0_scalar,
    .dot_q4_0 = dot_q4_0_scalar,
    .dot_q4_K = dot_q4_K_scalar,
    .dot_q6_K = dot_q6_K_scalar,
};

/* ---- path selection ------------------------------------------------------------------ */

enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_N };

static int cpu_has(int isa) {
    if (isa == ISA_SCALAR) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && llmops_cpu_has_f16c();
    if (isa == ISA_AVX2) return avx2;
    if (isa == ISA_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    return 0;
}

static const llmops_kernel_table *table_of(int isa) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) return &llmops_kernels_avx512;
    if (isa == ISA_AVX2) return &llmops_kernels_avx2;
#endif
    (void)isa;
    return &llmops_kernels_scalar;
}

/* "auto" → -1; unknown → -2. */
static int isa_by_name(const char *name) {
    if (!name || !*name || !strcmp(name, "auto")) return -1;
    if (!strcmp(name, "scalar")) return ISA_SCALAR;
    if (!strcmp(name, "avx2")) return ISA_AVX2;
    if (!strcmp(name, "avx512") || !strcmp(name, "avx512vnni")) return ISA_AVX512;
    return -2;
}

static int best_isa(int cap) {
    for (int i = cap; i > ISA_SCALAR; i--)
        if (cpu_has(i)) return i;
    return ISA_SCALAR;
}

static _Atomic(const llmops_kernel_table *) g_table;

static const llmops_kernel_table *kernels(void) {
    const llmops_kernel_table *t = atomic_load_explicit(&g_table, memory_order_acquire);
    if (t) return t;
    /* First use: LLMOPS_ISA caps the choice; an unknown or unavailable name falls back. */
    int cap = isa_by_name(getenv("LLMOPS_ISA"));
    t = table_of(best_isa(cap < 0 ? ISA_N - 1 : cap));
    atomic_store_explicit(&g_table, t, memory_order_release);
    return t;
}

const char *llmops_kernels_isa(void) { return kernels()->name; }

float llmops_vec_softmax(float *s, const uint8_t *keep, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (keep[i] && s[i] > mx) mx = s[i];
    if (mx == -INFINITY) { /* nothing kept (or only −inf scores) */
        memset(s, 0, n * sizeof *s);
        return 0;
    }
    const llmops_kernel_table *k = kernels();
    return (k->exp_sum ? k->exp_sum : exp_sum_scalar)(s, keep, n, mx);
}

void llmops_vec_silu_mul(float *y, const float *g, size_t n) {
    const llmops_kernel_table *k = kernels();
    (k->silu_mul ? k->silu_mul : silu_mul_scalar)(y, g, n);
}

double llmops_vec_sumsq(const float *x, size_t n) {
    const llmops_kernel_table *k = kernels();
    return (k->sumsq ? k->sumsq : sumsq_scalar)(x, n);
}

int llmops_kernels_isa_available(const char *name) {
    int isa = isa_by_name(name);
    return isa == -1 || (isa >= 0 && cpu_has(isa));
}

llmops_status llmops_kernels_set_isa(const char *name, llmops_error *err) {
    int isa = isa_by_name(name);
    if (isa == -2) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "unknown kernel path \"%s\"", name);
    if (isa >= 0 && !cpu_has(isa))
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "this CPU cannot run the %s kernels", name);
    atomic_store_explicit(&g_table, table_of(isa < 0 ? best_isa(ISA_N - 1) : isa), memory_order_release);
    return LLMOPS_OK;
}

/* ---- drivers ----------------------------------------------------------------------------- */

/* How a weight type meets its activations. */
typedef struct wtype {
    int act;          /* activation format: F32, Q8_0 or Q8_K                       */
    size_t act_block; /* elements per activation block (1 for F32)                 */
    size_t act_bytes; /* bytes per activation block                                */
} wtype;

static int weight_type(int type, wtype *wt) {
    switch (type) {
    case LLMOPS_DTYPE_F32:
    case LLMOPS_DTYPE_F16:
    case LLMOPS_DTYPE_BF16: *wt = (wtype){LLMOPS_DTYPE_F32, 1, 4}; return 1;
    case LLMOPS_DTYPE_Q8_0:
    case LLMOPS_DTYPE_Q4_0: *wt = (wtype){LLMOPS_DTYPE_Q8_0, 32, LLMOPS_Q8_0_BYTES}; return 1;
    case LLMOPS_DTYPE_Q4_K:
    case LLMOPS_DTYPE_Q6_K: *wt = (wtype){LLMOPS_DTYPE_Q8_K, 256, LLMOPS_Q8_K_BYTES}; return 1;
    default: return 0;
    }
}

static void quantize_act(const wtype *wt, const float *x, void *dst, size_t n) {
    if (wt->act == LLMOPS_DTYPE_Q8_0) llmops_kern_quantize_q8_0(x, dst, n / 32);
    else llmops_kern_quantize_q8_K(x, dst, n / 256);
}

/* One row of W against one prepared activation vector (F32 or quantized). */
static inline float row_dot(const llmops_kernel_table *k, int type, const void *w, const void *act, size_t cols) {
    switch (type) {
    case LLMOPS_DTYPE_F32: return k->dot_f32(w, act, cols);
    case LLMOPS_DTYPE_F16: return k->dot_f16(w, act, cols);
    case LLMOPS_DTYPE_BF16: return k->dot_bf16(w, act, cols);
    case LLMOPS_DTYPE_Q8_0: return k->dot_q8_0(w, act, cols / 32);
    case LLMOPS_DTYPE_Q4_0: return k->dot_q4_0(w, act, cols / 32);
    case LLMOPS_DTYPE_Q4_K: return k->dot_q4_K(w, act, cols / 256);
    default: return k->dot_q6_K(w, act, cols / 256);
    }
}

float llmops_vec_dot(int type, const void *w_row, const float *x, size_t n) {
    wtype wt;
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti || !weight_type(type, &wt) || n % ti->block_size) return NAN;
    const llmops_kernel_table *k = kernels();
    if (wt.act == LLMOPS_DTYPE_F32) return row_dot(k, type, w_row, x, n);
    /* quantize x in chunks of 8192 elements: 9.3 KiB of stack at most */
    enum { CHUNK = 8192 };
    _Alignas(64) uint8_t buf[CHUNK / 256 * LLMOPS_Q8_K_BYTES + CHUNK / 32 * LLMOPS_Q8_0_BYTES];
    const uint8_t *w = w_row;
    float sum = 0;
    for (size_t done = 0; done < n; done += CHUNK) {
        size_t m = n - done < CHUNK ? n - done : CHUNK;
        quantize_act(&wt, x + done, buf, m);
        sum += row_dot(k, type, w + done / ti->block_size * ti->type_size, buf, m);
    }
    return sum;
}

/* Q8S (kernels.h): the Q8_0 quants, the block scales as floats, then −128·Σq and −8·Σq per block. */
void llmops_kern_quantize_q8s(const float *x, uint8_t *dst, size_t cols) {
    uint8_t blk[LLMOPS_Q8_0_BYTES];
    size_t nb = cols / 32;
    for (size_t b = 0; b < nb; b++) {
        llmops_kern_quantize_q8_0(x + 32 * b, blk, 1);
        memcpy(dst + 32 * b, blk + 2, 32);
        int32_t sq = 0;
        for (int i = 0; i < 32; i++) sq += (int8_t)blk[2 + i];
        float d = f16_at(blk);
        int32_t c128 = -128 * sq, c8 = -8 * sq;
        memcpy(dst + cols + 4 * b, &d, 4);
        memcpy(dst + cols + 4 * nb + 4 * b, &c128, 4);
        memcpy(dst + cols + 8 * nb + 4 * b, &c8, 4);
    }
    llmops_kern_q8s_fill_x4(dst, cols);
}

void llmops_kern_q8s_fill_x4(uint8_t *dst, size_t cols) {
    size_t nb = cols / 32;
    uint8_t *x4 = dst + cols + 12 * nb;
    memset(x4, 0, (nb + 3) / 4 * 128);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *g = x4 + b / 4 * 128 + b % 4 * 16;
        memcpy(g, dst + 32 * b, 16);
        memcpy(g + 64, dst + 32 * b + 16, 16);
    }
}

/*
 * How matmul runs: the activations are prepared once (quantized, in the
 * layout the path's tiled kernel takes), then the rows of W are split into
 * one contiguous range per thread (multiples of MM_ROW_GROUP rows), and each
 * thread runs its range over the tokens MM_TOK_BLOCK at a time: the tiled
 * kernel keeps a few weight rows in registers across a few tokens, the
 * block's activations stay in L1 across the range, and the range's weights
 * stay in L2 across the token blocks. The Q8S kernels (Q8_0/Q4_0 on
 * AVX-512) get the whole range and all the tokens in one call: they repack
 * each group of 16 rows once and run it over every token.
 */
enum { MM_ROW_GROUP = 16, MM_TOK_BLOCK = 32 };

enum { ACT_F32, ACT_Q8_0, ACT_Q8S, ACT_Q8_K };

typedef struct mm_job {
    const llmops_kernel_table *k;
    llmops_kern_mm_fn fn; /* the tiled kernel; NULL: one dot per (row, token) */
    int type, act_fmt;
    const uint8_t *W;
    size_t row_bytes; /* bytes per weight row                          */
    size_t rows, cols, n;
    const float *X;   /* (n, cols)                                      */
    uint8_t *act;     /* n prepared activation vectors, act_stride apart */
    size_t act_stride;
    size_t tok_block; /* tokens per pass over the rows                  */
    float *Y;         /* (n, rows)                                      */
} mm_job;

static void prepare_act(const llmops_kernel_table *k, int fmt, const float *x, uint8_t *dst, size_t cols) {
    switch (fmt) {
    case ACT_Q8_0: llmops_kern_quantize_q8_0(x, dst, cols / 32); break;
    case ACT_Q8S: (k->quantize_q8s ? k->quantize_q8s : llmops_kern_quantize_q8s)(x, dst, cols); break;
    default: llmops_kern_quantize_q8_K(x, dst, cols / 256); break;
    }
}

static void mm_quantize(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    mm_job *j = ctx;
    for (size_t t = begin; t < end; t++) prepare_act(j->k, j->act_fmt, j->X + t * j->cols, j->act + t * j->act_stride, j->cols);
}

static void mm_rows(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const mm_job *j = ctx;
    size_t r0 = begin * MM_ROW_GROUP, r1 = end * MM_ROW_GROUP < j->rows ? end * MM_ROW_GROUP : j->rows;
    for (size_t t0 = 0; t0 < j->n; t0 += j->tok_block) {
        size_t nt = j->n - t0 < j->tok_block ? j->n - t0 : j->tok_block;
        const uint8_t *a = j->act + t0 * j->act_stride;
        float *y = j->Y + t0 * j->rows;
        if (j->fn) {
            j->fn(j->W + r0 * j->row_bytes, j->row_bytes, r1 - r0, a, j->act_stride, nt, j->cols, y + r0, j->rows);
            continue;
        }
        for (size_t r = r0; r < r1; r++) {
            const uint8_t *w = j->W + r * j->row_bytes;
            for (size_t t = 0; t < nt; t++) y[t * j->rows + r] = row_dot(j->k, j->type, w, a + t * j->act_stride, j->cols);
        }
    }
}

/* Runs fn over [0, n_items) as one contiguous share per thread. */
static llmops_status run_shares(llmops_threadpool *pool, size_t n_items, llmops_threadpool_range_fn fn, void *ctx,
                                llmops_error *err) {
    if (!n_items) return LLMOPS_OK;
    int nth = pool ? llmops_threadpool_n_threads(pool) : 1;
    if (nth <= 1 || n_items == 1) {
        fn(ctx, 0, n_items, 0);
        return LLMOPS_OK;
    }
    size_t grain = (n_items + (size_t)nth - 1) / (size_t)nth;
    llmops_status st = llmops_threadpool_parallel_for(pool, n_items, grain, fn, ctx);
    if (st) return llmops_error_set(err, st, "kernels: the thread pool refused the job (called from inside it?)");
    return LLMOPS_OK;
}

/*
 * The activation buffer: small ones on the caller's stack, others in a
 * per-thread cache grown on demand (up to ACT_CACHE_MAX; larger ones are
 * allocated for the call). The cache uses the C library's allocator, not
 * llmops_malloc, since it outlives the call and belongs to no caller; the
 * thread's exit frees it. A second buffer per thread (llmops_kern_scratch)
 * holds the weights a tiled kernel repacks; the thread that calls matmul
 * uses both at once.
 */
enum { ACT_STACK = 16 << 10 };
#define ACT_CACHE_MAX ((size_t)64 << 20)

enum { SLOT_ACT, SLOT_SCRATCH, SLOT_N };

typedef struct act_cache {
    void *raw;
    uint8_t *p; /* raw, 64-byte aligned */
    size_t cap;
} act_cache;

static pthread_key_t g_act_key;
static pthread_once_t g_act_once = PTHREAD_ONCE_INIT;
static int g_act_key_ok;

static void act_cache_free(void *v) {
    act_cache *c = v;
    if (c)
        for (int i = 0; i < SLOT_N; i++) free(c[i].raw);
    free(c);
}

static void act_key_init(void) { g_act_key_ok = pthread_key_create(&g_act_key, act_cache_free) == 0; }

/* A 64-byte aligned buffer of `bytes` from this thread's cache slot, or NULL. */
static uint8_t *act_cache_get(int slot, size_t bytes) {
    if (bytes > ACT_CACHE_MAX || pthread_once(&g_act_once, act_key_init) || !g_act_key_ok) return NULL;
    act_cache *all = pthread_getspecific(g_act_key);
    if (!all) {
        if (!(all = calloc(SLOT_N, sizeof *all))) return NULL;
        if (pthread_setspecific(g_act_key, all)) {
            free(all);
            return NULL;
        }
    }
    act_cache *c = &all[slot];
    if (c->cap >= bytes) return c->p;
    size_t cap = bytes < (size_t)1 << 20 ? (size_t)1 << 20 : bytes;
    if (cap < 2 * c->cap && 2 * c->cap <= ACT_CACHE_MAX) cap = 2 * c->cap;
    void *raw = malloc(cap + 63);
    if (!raw) return NULL;
    free(c->raw);
    c->raw = raw;
    c->p = (uint8_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    c->cap = cap;
    return c->p;
}

uint8_t *llmops_kern_scratch(size_t bytes) { return act_cache_get(SLOT_SCRATCH, bytes); }

/* The job of one product: its kernel and the format of its activations. */
static void job_setup(mm_job *jp, int type, const void *W, size_t row_bytes, size_t rows, size_t cols, const float *X,
                      size_t n, float *Y) {
    wtype wt;
    weight_type(type, &wt);
    const llmops_kernel_table *k = kernels();
    mm_job j = {.k = k, .type = type, .W = W, .row_bytes = row_bytes, .rows = rows, .cols = cols, .n = n,
                .Y = Y, .X = X};
    switch (type) {
    case LLMOPS_DTYPE_F32: j.fn = k->mm_f32; break;
    case LLMOPS_DTYPE_F16: j.fn = k->mm_f16; break;
    case LLMOPS_DTYPE_BF16: j.fn = k->mm_bf16; break;
    case LLMOPS_DTYPE_Q8_0: j.fn = k->mm_q8_0; break;
    case LLMOPS_DTYPE_Q4_0: j.fn = k->mm_q4_0; break;
    case LLMOPS_DTYPE_Q4_K: j.fn = k->mm_q4_K; break;
    case LLMOPS_DTYPE_Q6_K: j.fn = k->mm_q6_K; break;
    default: j.fn = NULL; break;
    }
    if (wt.act == LLMOPS_DTYPE_F32) {
        j.act_fmt = ACT_F32;
        j.act = (uint8_t *)(uintptr_t)X;
        j.act_stride = cols * sizeof(float);
    } else if (wt.act == LLMOPS_DTYPE_Q8_0 && j.fn) {
        j.act_fmt = ACT_Q8S;
        j.act_stride = (llmops_kern_q8s_bytes(cols) + 63) & ~(size_t)63;
    } else {
        j.act_fmt = wt.act == LLMOPS_DTYPE_Q8_0 ? ACT_Q8_0 : ACT_Q8_K;
        j.act_stride = cols / wt.act_block * wt.act_bytes;
    }
    /* the Q8S kernels, and the float ones where f_chain is set, block rows and tokens themselves:
     * they get all the tokens at once */
    int whole = j.act_fmt == ACT_Q8S || (j.act_fmt == ACT_F32 && j.fn && k->f_chain);
    j.tok_block = whole ? (n ? n : 1) : MM_TOK_BLOCK;
    *jp = j;
}

int llmops_act_format(int type) {
    wtype wt;
    if (!weight_type(type, &wt)) return -1;
    if (wt.act == LLMOPS_DTYPE_F32) return ACT_F32;
    mm_job j;
    job_setup(&j, type, NULL, 0, 1, 256, NULL, 1, NULL);
    return j.act_fmt;
}

size_t llmops_act_bytes(int type, size_t cols) {
    wtype wt;
    if (!weight_type(type, &wt)) return 0;
    mm_job j;
    job_setup(&j, type, NULL, 0, 1, cols, NULL, 1, NULL);
    return j.act_fmt == ACT_F32 ? 0 : j.act_stride;
}

void llmops_act_prepare(int type, const float *x, size_t cols, void *dst) {
    mm_job j;
    job_setup(&j, type, NULL, 0, 1, cols, x, 1, NULL);
    if (j.act_fmt != ACT_F32) prepare_act(j.k, j.act_fmt, x, dst, cols);
}

void llmops_matvec_prepared(int type, const void *W, size_t rows, size_t cols, const void *act, const float *x,
                            float *y) {
    uint64_t row_bytes = 0;
    if (!rows || llmops_dtype_nbytes(type, cols, cols, &row_bytes, NULL)) return;
    mm_job j;
    job_setup(&j, type, W, (size_t)row_bytes, rows, cols, x, 1, y);
    if (j.act_fmt != ACT_F32) j.act = (uint8_t *)(uintptr_t)act;
    mm_rows(&j, 0, (rows + MM_ROW_GROUP - 1) / MM_ROW_GROUP, 0);
}

llmops_status llmops_matmul(int type, const void *W, size_t rows, size_t cols, const float *X, size_t n,
                            float *Y, llmops_threadpool *pool, llmops_error *err) {
    wtype wt;
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti || !weight_type(type, &wt))
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "no matrix kernel for %s weights",
                                ti ? ti->name : "unknown");
    if (cols % ti->block_size)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%zu columns is not a whole number of %s blocks (%u)",
                                cols, ti->name, ti->block_size);
    if (!rows || !n || !cols) {
        if (rows && n && Y) memset(Y, 0, rows * n * sizeof(float));
        return LLMOPS_OK;
    }
    if (!W || !X || !Y) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "NULL matrix");
    uint64_t row_bytes, tmp;
    if (llmops_dtype_nbytes(type, cols, cols, &row_bytes, err) || !llmops_mul_ok(row_bytes, rows, &tmp) ||
        !llmops_mul_ok(rows, n, &tmp) || !llmops_mul_ok(tmp, sizeof(float), &tmp) ||
        !llmops_mul_ok(cols, n, &tmp) || !llmops_mul_ok(tmp, sizeof(float), &tmp) || tmp > SIZE_MAX)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "matrix sizes overflow (%zu × %zu, %zu tokens)", rows, cols,
                                n);

    mm_job j;
    job_setup(&j, type, W, (size_t)row_bytes, rows, cols, X, n, Y);
    _Alignas(64) uint8_t stack_buf[ACT_STACK];
    uint8_t *heap = NULL;
    llmops_status st = LLMOPS_OK;
    if (j.act_fmt != ACT_F32) {
        size_t bytes = j.act_stride * n; /* <= 10 · cols · n: checked above */
        if (bytes <= sizeof stack_buf) j.act = stack_buf;
        else if (!(j.act = act_cache_get(SLOT_ACT, bytes))) {
            if (!(j.act = heap = llmops_malloc(bytes)))
                return llmops_error_set(err, LLMOPS_ERR_NOMEM, "kernels: no memory for %zu quantized activations",
                                        n * cols);
        }
        st = run_shares(n >= 4 ? pool : NULL, n, mm_quantize, &j, err);
    }
    if (!st) st = run_shares(pool, (rows + MM_ROW_GROUP - 1) / MM_ROW_GROUP, mm_rows, &j, err);
    llmops_free(heap);
    return st;
}

/* Several jobs on one prepared X: the row groups of all of them, numbered one after another. */
enum { MM_MULTI_MAX = 4 };

typedef struct mm_multi {
    mm_job jobs[MM_MULTI_MAX];
    size_t first[MM_MULTI_MAX + 1]; /* row groups before job p */
    size_t n_jobs;
} mm_multi;

static void mm_multi_rows(void *ctx, size_t begin, size_t end, int ith) {
    mm_multi *M = ctx;
    for (size_t p = 0; p < M->n_jobs && begin < end; p++) {
        size_t lo = M->first[p], hi = M->first[p + 1];
        if (end <= lo || begin >= hi) continue;
        mm_rows(&M->jobs[p], (begin > lo ? begin : lo) - lo, (end < hi ? end : hi) - lo, ith);
    }
}

llmops_status llmops_matmul_multi(const llmops_matmul_part *parts, size_t n_parts, size_t cols, const float *X,
                                  size_t n, llmops_threadpool *pool, llmops_error *err) {
    mm_multi M;
    int same = n_parts >= 1 && n_parts <= MM_MULTI_MAX && n > 0 && cols > 0 && X;
    for (size_t p = 0; same && p < n_parts; p++) {
        wtype wt;
        const llmops_dtype_info *ti = llmops_dtype_get(parts[p].type);
        uint64_t rb, tmp;
        same = ti && weight_type(parts[p].type, &wt) && cols % ti->block_size == 0 && parts[p].rows && parts[p].W &&
               parts[p].Y && !llmops_dtype_nbytes(parts[p].type, cols, cols, &rb, NULL) &&
               llmops_mul_ok(rb, parts[p].rows, &tmp) && llmops_mul_ok(parts[p].rows, n, &tmp) &&
               llmops_mul_ok(tmp, sizeof(float), &tmp) && llmops_mul_ok(cols, n, &tmp) &&
               llmops_mul_ok(tmp, sizeof(float), &tmp) && tmp <= SIZE_MAX;
        if (same) {
            job_setup(&M.jobs[p], parts[p].type, parts[p].W, (size_t)rb, parts[p].rows, cols, X, n, parts[p].Y);
            same = M.jobs[p].act_fmt == M.jobs[0].act_fmt && M.jobs[p].act_stride == M.jobs[0].act_stride &&
                   M.jobs[p].k == M.jobs[0].k;
        }
    }
    if (!same) { /* different activation formats, or arguments llmops_matmul will judge: one call each */
        for (size_t p = 0; p < n_parts; p++) {
            llmops_status st = llmops_matmul(parts[p].type, parts[p].W, parts[p].rows, cols, X, n, parts[p].Y, pool, err);
            if (st) return st;
        }
        return LLMOPS_OK;
    }
    M.n_jobs = n_parts;
    M.first[0] = 0;
    for (size_t p = 0; p < n_parts; p++) M.first[p + 1] = M.first[p] + (parts[p].rows + MM_ROW_GROUP - 1) / MM_ROW_GROUP;
    mm_job *j0 = &M.jobs[0];
    _Alignas(64) uint8_t stack_buf[ACT_STACK];
    uint8_t *heap = NULL, *act = NULL;
    llmops_status st = LLMOPS_OK;
    if (j0->act_fmt != ACT_F32) {
        size_t bytes = j0->act_stride * n;
        if (bytes <= sizeof stack_buf) act = stack_buf;
        else if (!(act = act_cache_get(SLOT_ACT, bytes))) {
            if (!(act = heap = llmops_malloc(bytes)))
                return llmops_error_set(err, LLMOPS_ERR_NOMEM, "kernels: no memory for %zu quantized activations",
                                        n * cols);
        }
        j0->act = act;
        st = run_shares(n >= 4 ? pool : NULL, n, mm_quantize, j0, err);
        for (size_t p = 1; p < n_parts; p++) M.jobs[p].act = act;
    }
    if (!st) st = run_shares(pool, M.first[n_parts], mm_multi_rows, &M, err);
    llmops_free(heap);
    return st;
}

llmops_status llmops_matvec(int type, const void *W, size_t rows, size_t cols, const float *x, float *y,
                            llmops_threadpool *pool, llmops_error *err) {
    return llmops_matmul(type, W, rows, cols, x, 1, y, pool, err);
}
