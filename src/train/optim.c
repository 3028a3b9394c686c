/*
 * AdamW with decoupled weight decay, gradient clipping by global norm,
 * learning-rate schedules, and the LoRA target-module parser.
 *
 * The update follows PyTorch's torch.optim.AdamW (amsgrad off):
 *     w ← w − lr·wd·w                      (only tensors with decay)
 *     m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
 *     w ← w − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/threadpool.h"
#include "llmops/train.h"

/*
 * The optimizer's elementwise passes run over segments of at most SEG elements of one tensor,
 * spread over the trainer's thread pool. Segment boundaries depend only on the tensor sizes, so the
 * gradient norm (per-segment sums added in segment order) is the same for any thread count.
 */
#define SEG ((size_t)1 << 16)

typedef struct {
    uint32_t tensor;
    size_t off, n;
} oseg;

struct llmops_adamw {
    llmops_trainer *t;
    llmops_adamw_params p;
    size_t n;
    float **m, **v; /* per trainable tensor: rows·cols moments */
    int64_t steps;
    oseg *segs;
    size_t n_segs;
};

/* The segments of the trainer's tensors; out NULL counts them. */
static size_t make_segs(llmops_trainer *t, oseg *out) {
    size_t k = 0;
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        const llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t ne = (size_t)(x->rows * x->cols);
        for (size_t off = 0; off < ne; off += SEG, k++)
            if (out) out[k] = (oseg){(uint32_t)i, off, ne - off < SEG ? ne - off : SEG};
    }
    return k;
}

void llmops_adamw_params_init(llmops_adamw_params *p) {
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->weight_decay = 0.0f;
}

void llmops_adamw_free(llmops_adamw *o) {
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) {
        if (o->m) llmops_free(o->m[i]);
        if (o->v) llmops_free(o->v[i]);
    }
    llmops_free(o->m);
    llmops_free(o->v);
    llmops_free(o->segs);
    llmops_free(o);
}

llmops_status llmops_adamw_create(llmops_trainer *t, const llmops_adamw_params *p, llmops_adamw **out,
                                  llmops_error *err) {
    *out = NULL;
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "AdamW settings out of range (need 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0)");
    llmops_adamw *o = llmops_calloc(1, sizeof *o);
    if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    o->t = t;
    o->p = *p;
    o->n = llmops_trainer_n_tensors(t);
    o->m = llmops_calloc(o->n ? o->n : 1, sizeof *o->m);
    o->v = llmops_calloc(o->n ? o->n : 1, sizeof *o->v);
    o->n_segs = make_segs(t, NULL);
    o->segs = llmops_malloc((o->n_segs ? o->n_segs : 1) * sizeof *o->segs);
    if (!o->m || !o->v || !o->segs) goto nomem;
    make_segs(t, o->segs);
    for (size_t i = 0; i < o->n; i++) {
        const llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t ne = (size_t)(x->rows * x->cols);
        o->m[i] = llmops_calloc(ne ? ne : 1, sizeof(float));
        o->v[i] = llmops_calloc(ne ? ne : 1, sizeof(float));
        if (!o->m[i] || !o->v[i]) goto nomem;
    }
    *out = o;
    return LLMOPS_OK;
nomem:
    llmops_adamw_free(o);
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for the optimizer state");
}

typedef struct {
    float fb1, fb2, sqrt_c2, eps, step_size, decay; /* decay: the factor for tensors that decay */
    float gscale;                                   /* clipping folded in: g·gscale (1: none)   */
    int scaled;
} adamw_consts;

/* The update of n elements, in exactly the scalar expression order (no contraction), so the
 * vector path below gives the same bits. */
static void adamw_scalar(float *w, const float *g, float *m, float *v, size_t n, const adamw_consts *c, float decay) {
    for (size_t k = 0; k < n; k++) {
        float gk = c->scaled ? g[k] * c->gscale : g[k];
        m[k] = c->fb1 * m[k] + (1.0f - c->fb1) * gk;
        v[k] = c->fb2 * v[k] + (1.0f - c->fb2) * gk * gk;
        float denom = sqrtf(v[k]) / c->sqrt_c2 + c->eps;
        w[k] = w[k] * decay - c->step_size * m[k] / denom;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static void adamw_avx2(float *w, const float *g, float *m, float *v, size_t n,
                                                       const adamw_consts *c, float decay) {
    const __m256 b1 = _mm256_set1_ps(c->fb1), nb1 = _mm256_set1_ps(1.0f - c->fb1), b2 = _mm256_set1_ps(c->fb2),
                 nb2 = _mm256_set1_ps(1.0f - c->fb2), sc2 = _mm256_set1_ps(c->sqrt_c2), eps = _mm256_set1_ps(c->eps),
                 ss = _mm256_set1_ps(c->step_size), dc = _mm256_set1_ps(decay), gs = _mm256_set1_ps(c->gscale);
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 gk = _mm256_loadu_ps(g + k);
        if (c->scaled) gk = _mm256_mul_ps(gk, gs);
        __m256 mk = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + k)), _mm256_mul_ps(nb1, gk));
        __m256 vk = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + k)), _mm256_mul_ps(_mm256_mul_ps(nb2, gk), gk));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vk), sc2), eps);
        __m256 wk = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(w + k), dc), _mm256_div_ps(_mm256_mul_ps(ss, mk), den));
        _mm256_storeu_ps(m + k, mk);
        _mm256_storeu_ps(v + k, vk);
        _mm256_storeu_ps(w + k, wk);
    }
    adamw_scalar(w + k, g + k, m + k, v + k, n - k, c, decay);
}
#endif

static int have_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

typedef struct {
    llmops_adamw *o;
    adamw_consts c;
    int avx2;
} adamw_job;

static void adamw_segs(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    adamw_job *J = vj;
    llmops_adamw *o = J->o;
    for (size_t s = b; s < e; s++) {
        const oseg *sg = &o->segs[s];
        llmops_train_tensor *x = llmops_trainer_tensor(o->t, sg->tensor);
        float decay = x->decay ? J->c.decay : 1.0f;
        float *w = x->w + sg->off, *m = o->m[sg->tensor] + sg->off, *v = o->v[sg->tensor] + sg->off;
        const float *g = x->g + sg->off;
#if defined(__x86_64__)
        if (J->avx2) {
            adamw_avx2(w, g, m, v, sg->n, &J->c, decay);
            continue;
        }
#endif
        adamw_scalar(w, g, m, v, sg->n, &J->c, decay);
    }
}

static void adamw_run(llmops_adamw *o, float lr, float gscale, int scaled) {
    o->steps++;
    const double b1 = o->p.beta1, b2 = o->p.beta2;
    const float c1 = (float)(1.0 - pow(b1, (double)o->steps));
    const float c2 = (float)(1.0 - pow(b2, (double)o->steps));
    adamw_job J = {o,
                   {o->p.beta1, o->p.beta2, sqrtf(c2), o->p.eps, lr / c1, 1.0f - lr * o->p.weight_decay, gscale, scaled},
                   have_avx2()};
    llmops_threadpool *pool = llmops_trainer_pool(o->t);
    if (!pool || llmops_threadpool_parallel_for(pool, o->n_segs, 4, adamw_segs, &J)) adamw_segs(&J, 0, o->n_segs, 0);
}

void llmops_adamw_step(llmops_adamw *o, float lr) { adamw_run(o, lr, 1.0f, 0); }

int64_t llmops_adamw_steps(const llmops_adamw *o) { return o->steps; }
void llmops_adamw_set_steps(llmops_adamw *o, int64_t steps) { o->steps = steps; }
float *llmops_adamw_m(llmops_adamw *o, size_t i) { return i < o->n ? o->m[i] : NULL; }
float *llmops_adamw_v(llmops_adamw *o, size_t i) { return i < o->n ? o->v[i] : NULL; }

/* ---- gradient norm and clipping ---------------------------------------------------------------- */

typedef struct {
    llmops_trainer *t;
    const oseg *segs;
    double *sums; /* per segment */
    float scale;
} grad_job;

static void norm_segs(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    grad_job *J = vj;
    for (size_t s = b; s < e; s++) {
        const oseg *sg = &J->segs[s];
        const float *g = llmops_trainer_tensor(J->t, sg->tensor)->g + sg->off;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        size_t k = 0;
        for (; k + 4 <= sg->n; k += 4) {
            a0 += (double)g[k] * g[k];
            a1 += (double)g[k + 1] * g[k + 1];
            a2 += (double)g[k + 2] * g[k + 2];
            a3 += (double)g[k + 3] * g[k + 3];
        }
        for (; k < sg->n; k++) a0 += (double)g[k] * g[k];
        J->sums[s] = (a0 + a1) + (a2 + a3);
    }
}

static void scale_segs(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    grad_job *J = vj;
    for (size_t s = b; s < e; s++) {
        const oseg *sg = &J->segs[s];
        float *g = llmops_trainer_tensor(J->t, sg->tensor)->g + sg->off;
        for (size_t k = 0; k < sg->n; k++) g[k] *= J->scale;
    }
}

/* Runs fn over every segment of t's gradients on t's pool (on this thread when there is none). */
static void over_segs(llmops_trainer *t, llmops_threadpool_range_fn fn, grad_job *J, size_t n_segs) {
    llmops_threadpool *pool = llmops_trainer_pool(t);
    if (!pool || llmops_threadpool_parallel_for(pool, n_segs, 4, fn, J)) fn(J, 0, n_segs, 0);
}

/* The global norm: per-segment sums in parallel, added in segment order (segs NULL, or no memory
 * for the sums: one pass on this thread). */
static double norm_over(llmops_trainer *t, const oseg *segs, size_t ns) {
    double *sums = segs ? llmops_malloc((ns ? ns : 1) * sizeof *sums) : NULL;
    double sum = 0;
    if (!sums) {
        for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
            const llmops_train_tensor *x = llmops_trainer_tensor(t, i);
            size_t ne = (size_t)(x->rows * x->cols);
            for (size_t k = 0; k < ne; k++) sum += (double)x->g[k] * x->g[k];
        }
        return sqrt(sum);
    }
    grad_job J = {t, segs, sums, 1.0f};
    over_segs(t, norm_segs, &J, ns);
    for (size_t s = 0; s < ns; s++) sum += sums[s];
    llmops_free(sums);
    return sqrt(sum);
}

/* The global norm with a segment list made here; *segs_out (if given) receives it to reuse. */
static double grad_norm_segs(llmops_trainer *t, oseg **segs_out, size_t *n_out) {
    size_t ns = make_segs(t, NULL);
    oseg *segs = llmops_malloc((ns ? ns : 1) * sizeof *segs);
    if (segs) make_segs(t, segs);
    double norm = norm_over(t, segs, ns);
    if (segs_out) *segs_out = segs, *n_out = segs ? ns : 0;
    else llmops_free(segs);
    return norm;
}

double llmops_grad_norm(llmops_trainer *t) { return grad_norm_segs(t, NULL, NULL); }

/* torch.nn.utils.clip_grad_norm_'s factor: max_norm / (norm + 1e-6) when that is below 1. */
static int clip_factor(double norm, double max_norm, float *c) {
    if (!(max_norm > 0 && norm > max_norm)) return 0;
    *c = (float)(max_norm / (norm + 1e-6));
    return 1;
}

double llmops_adamw_clip_step(llmops_adamw *o, float lr, double max_norm) {
    double norm = norm_over(o->t, o->segs, o->n_segs); /* the optimizer's own segment list */
    float c = 1.0f;
    int scaled = clip_factor(norm, max_norm, &c);
    adamw_run(o, lr, c, scaled);
    return norm;
}

/* As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
double llmops_clip_grad_norm(llmops_trainer *t, double max_norm) {
    oseg *segs = NULL;
    size_t ns = 0;
    double norm = grad_norm_segs(t, &segs, &ns);
    float c;
    if (clip_factor(norm, max_norm, &c)) {
        if (segs) {
            grad_job J = {t, segs, NULL, c};
            over_segs(t, scale_segs, &J, ns);
        } else {
            for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
                llmops_train_tensor *x = llmops_trainer_tensor(t, i);
                size_t ne = (size_t)(x->rows * x->cols);
                for (size_t k = 0; k < ne; k++) x->g[k] *= c;
            }
        }
    }
    llmops_free(segs);
    return norm;
}

double llmops_lr_at(const llmops_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (s->warmup_steps > 0 && step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == LLMOPS_LR_CONSTANT) return s->lr;
    int64_t span = s->total_steps - s->warmup_steps;
    if (span <= 0) return s->lr;
    double progress = (double)(step - s->warmup_steps) / (double)span;
    if (progress > 1) progress = 1;
    double f = s->kind == LLMOPS_LR_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return s->min_lr + (s->lr - s->min_lr) * f;
}

llmops_status llmops_lr_kind_parse(const char *s, llmops_lr_kind *out, llmops_error *err) {
    if (!strcmp(s, "constant")) *out = LLMOPS_LR_CONSTANT;
    else if (!strcmp(s, "linear")) *out = LLMOPS_LR_LINEAR;
    else if (!strcmp(s, "cosine")) *out = LLMOPS_LR_COSINE;
    else return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "unknown learning-rate schedule '%s' (constant, linear, cosine)", s);
    return LLMOPS_OK;
}

/* Module names accepted for LoRA targets: ours, Hugging Face's and GPT-2's. */
static const struct {
    const char *name;
    unsigned bits;
} target_names[] = {
    {"q", LLMOPS_LORA_Q},          {"q_proj", LLMOPS_LORA_Q},       {"k", LLMOPS_LORA_K},
    {"k_proj", LLMOPS_LORA_K},     {"v", LLMOPS_LORA_V},            {"v_proj", LLMOPS_LORA_V},
    {"o", LLMOPS_LORA_O},          {"o_proj", LLMOPS_LORA_O},       {"gate", LLMOPS_LORA_GATE},
    {"gate_proj", LLMOPS_LORA_GATE}, {"up", LLMOPS_LORA_UP},        {"up_proj", LLMOPS_LORA_UP},
    {"down", LLMOPS_LORA_DOWN},    {"down_proj", LLMOPS_LORA_DOWN}, {"qkv", LLMOPS_LORA_QKV},
    {"c_attn", LLMOPS_LORA_QKV},   {"attn.c_proj", LLMOPS_LORA_O},  {"c_fc", LLMOPS_LORA_UP},
    {"mlp.c_proj", LLMOPS_LORA_DOWN},
    {"all", LLMOPS_LORA_Q | LLMOPS_LORA_K | LLMOPS_LORA_V | LLMOPS_LORA_O | LLMOPS_LORA_GATE | LLMOPS_LORA_UP |
                LLMOPS_LORA_DOWN | LLMOPS_LORA_QKV},
};

llmops_status llmops_lora_targets_parse(const char *s, unsigned *out, llmops_error *err) {
    unsigned bits = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        size_t len = (size_t)(e - p), k;
        for (k = 0; k < sizeof target_names / sizeof target_names[0]; k++)
            if (strlen(target_names[k].name) == len && !memcmp(target_names[k].name, p, len)) break;
        if (k == sizeof target_names / sizeof target_names[0])
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                    "unknown LoRA target module '%.*s' (q, k, v, o, gate, up, down, qkv, "
                                    "their Hugging Face names such as q_proj, or all)",
                                    (int)len, p);
        bits |= target_names[k].bits;
        p = e;
    }
    if (!bits) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no LoRA target modules given");
    *out = bits;
    return LLMOPS_OK;
}
