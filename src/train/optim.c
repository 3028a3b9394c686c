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
#include <stdio.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/train.h"

struct llmops_adamw {
    llmops_trainer *t;
    llmops_adamw_params p;
    size_t n;
    float **m, **v; /* per trainable tensor: rows·cols moments */
    int64_t steps;
};

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
    if (!o->m || !o->v) goto nomem;
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

void llmops_adamw_step(llmops_adamw *o, float lr) {
    o->steps++;
    const double b1 = o->p.beta1, b2 = o->p.beta2;
    const float c1 = (float)(1.0 - pow(b1, (double)o->steps));
    const float c2 = (float)(1.0 - pow(b2, (double)o->steps));
    const float step_size = lr / c1, sqrt_c2 = sqrtf(c2), eps = o->p.eps;
    const float fb1 = o->p.beta1, fb2 = o->p.beta2;
    for (size_t i = 0; i < o->n; i++) {
        llmops_train_tensor *x = llmops_trainer_tensor(o->t, i);
        size_t ne = (size_t)(x->rows * x->cols);
        float *w = x->w, *g = x->g, *m = o->m[i], *v = o->v[i];
        const float decay = x->decay ? 1.0f - lr * o->p.weight_decay : 1.0f;
        for (size_t k = 0; k < ne; k++) {
            float gk = g[k];
            m[k] = fb1 * m[k] + (1.0f - fb1) * gk;
            v[k] = fb2 * v[k] + (1.0f - fb2) * gk * gk;
            float denom = sqrtf(v[k]) / sqrt_c2 + eps;
            w[k] = w[k] * decay - step_size * m[k] / denom;
        }
    }
}

int64_t llmops_adamw_steps(const llmops_adamw *o) { return o->steps; }
void llmops_adamw_set_steps(llmops_adamw *o, int64_t steps) { o->steps = steps; }
float *llmops_adamw_m(llmops_adamw *o, size_t i) { return i < o->n ? o->m[i] : NULL; }
float *llmops_adamw_v(llmops_adamw *o, size_t i) { return i < o->n ? o->v[i] : NULL; }

double llmops_grad_norm(llmops_trainer *t) {
    double sum = 0;
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        const llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t ne = (size_t)(x->rows * x->cols);
        double s = 0;
        for (size_t k = 0; k < ne; k++) s += (double)x->g[k] * x->g[k];
        sum += s;
    }
    return sqrt(sum);
}

/* As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
double llmops_clip_grad_norm(llmops_trainer *t, double max_norm) {
    double norm = llmops_grad_norm(t);
    if (max_norm <= 0 || !(norm > max_norm)) return norm;
    float c = (float)(max_norm / (norm + 1e-6));
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t ne = (size_t)(x->rows * x->cols);
        for (size_t k = 0; k < ne; k++) x->g[k] *= c;
    }
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
