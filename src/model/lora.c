/*
 * LoRA adapters in the engine: a PEFT folder or a llama.cpp GGUF LoRA file is
 * read into F32 factors in the model's row order, checked against the
 * model's weights, and applied by the forward pass after each adapted
 * product: Y += scale · (X Aᵀ) Bᵀ.
 *
 * Shapes: A (r, in), B (out, r), X (n, in), Y (n, out); the scratch
 * ctx->lora_tmp holds X Aᵀ (n, r_max).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "formats/convert_names.h"
#include "llmops/adapter.h"
#include "llmops/alloc.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/kernels.h"
#include "model/model_internal.h"

static const char *const k_kind_names[LW_N] = {"attn_q",      "attn_k",   "attn_v", "attn_qkv",
                                               "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

typedef struct {
    const float *a, *b; /* (r, in), (out, r); NULL: not adapted */
    int64_t r, in, out;
} lora_w;

struct llmops_adapter {
    const llmops_model *m;
    float alpha, scaling;
    int rank;
    llmops_train_tensor *ts; /* pairs: ts[2i] = lora_a, ts[2i+1] = lora_b */
    size_t n_ts;
    lora_w *w;               /* n_layers × LW_N */
};

/* ---- names and the model's weights ---------------------------------------------------- */

int lora_kind_parse(const char *name, int *layer, int *kind) {
    if (strncmp(name, "blk.", 4) != 0) return 0;
    const char *p = name + 4;
    long v = 0;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 100000) return 0;
        p++;
    }
    if (*p++ != '.') return 0;
    for (int k = 0; k < LW_N; k++) {
        size_t n = strlen(k_kind_names[k]);
        if (!strncmp(p, k_kind_names[k], n) && !strcmp(p + n, ".weight")) {
            *layer = (int)v;
            *kind = k;
            return 1;
        }
    }
    return 0;
}

const char *lora_kind_name(int kind) { return kind >= 0 && kind < LW_N ? k_kind_names[kind] : "?"; }

static const mview *model_weight(const llmops_model *m, int layer, int kind) {
    const mlayer *L = &m->layers[layer];
    const mview *v = NULL;
    switch (kind) {
    case LW_Q: v = &L->wq; break;
    case LW_K: v = &L->wk; break;
    case LW_V: v = &L->wv; break;
    case LW_QKV: v = &L->wqkv; break;
    case LW_O: v = &L->wo; break;
    case LW_GATE: v = &L->w_gate; break;
    case LW_UP: v = &L->w_up; break;
    case LW_DOWN: v = &L->w_down; break;
    default: return NULL;
    }
    return v->data ? v : NULL;
}

/* Row permutation between Hugging Face's rotate-half order (to_gguf = 1:
 * source) and llama.cpp's interleaved pairs, applied to a rows × cols
 * matrix in place; rows must split into n_head heads of even size. */
int lora_permute_rows(float *w, int64_t rows, int64_t cols, int64_t n_head, int to_gguf) {
    if (n_head <= 0 || rows % (n_head * 2)) return -1;
    int64_t hd = rows / n_head, half = hd / 2;
    float *tmp = llmops_malloc((size_t)(rows * cols) * sizeof(float));
    if (!tmp) return -2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t gg = h * hd + i * 2 + j, hf = h * hd + j * half + i; /* GGUF row gg holds HF row hf */
                int64_t dst = to_gguf ? gg : hf, src = to_gguf ? hf : gg;
                memcpy(tmp + dst * cols, w + src * cols, (size_t)cols * sizeof(float));
            }
    memcpy(w, tmp, (size_t)(rows * cols) * sizeof(float));
    llmops_free(tmp);
    return 0;
}

/* 1 when the model keeps q/k rows in llama.cpp's permuted order. */
static int model_permuted(const llmops_model *m) {
    return !m->rope_neox && (m->arch.family == LLMOPS_ARCH_LLAMA || m->arch.family == LLMOPS_ARCH_MISTRAL);
}

/* ---- collecting factor pairs from a file ---------------------------------------------------- */

typedef struct {
    char base[88];      /* llama.cpp weight name, "blk.0.attn_q.weight" (+ ".lora_a" fits a tensor name) */
    char fa[160], fb[160]; /* names in the file, for messages               */
    float *a, *b;
    int64_t ar, ac, br, bc;
    int layer, kind;
} pair;

typedef struct {
    pair *p;
    size_t n, cap;
} pair_list;

static void pairs_free(pair_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        llmops_free(l->p[i].a);
        llmops_free(l->p[i].b);
    }
    llmops_free(l->p);
}

static pair *pairs_get(pair_list *l, const char *base, int layer, int kind, llmops_error *err) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].base, base)) return &l->p[i];
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        pair *np = llmops_reallocarray(l->p, nc, sizeof *np);
        if (!np) {
            llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            return NULL;
        }
        l->p = np;
        l->cap = nc;
    }
    pair *e = &l->p[l->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->base, sizeof e->base, "%s", base);
    e->layer = layer;
    e->kind = kind;
    return e;
}

/* Stores one factor (rows × cols floats converted from `type`) into its pair. */
static llmops_status pair_set(pair_list *l, const char *origin, const char *fname, const char *base, int layer, int kind,
                              int is_b, int type, const void *data, int64_t rows, int64_t cols, llmops_error *err) {
    pair *e = pairs_get(l, base, layer, kind, err);
    if (!e) return LLMOPS_ERR_NOMEM;
    if (is_b ? e->b != NULL : e->a != NULL)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' appears twice", origin, fname);
    float *buf = llmops_malloc((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(float));
    if (!buf) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for %s", fname);
    llmops_status st = llmops_dequantize_row(type, data, buf, (size_t)(rows * cols), err);
    if (st) {
        llmops_free(buf);
        return llmops_error_prefix(err, "%s: tensor '%s': ", origin, fname);
    }
    if (is_b) {
        e->b = buf;
        e->br = rows;
        e->bc = cols;
        snprintf(e->fb, sizeof e->fb, "%s", fname);
    } else {
        e->a = buf;
        e->ar = rows;
        e->ac = cols;
        snprintf(e->fa, sizeof e->fa, "%s", fname);
    }
    return LLMOPS_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* A PEFT module weight name ("model.layers.0.self_attn.q_proj.weight") → llama.cpp's. */
static int peft_to_gguf_name(const llmops_arch *a, const char *hf, char *out, size_t cap) {
    size_t n_names;
    const conv_name *names = conv_names(a->family, &n_names);
    if (a->family == LLMOPS_ARCH_GPT2 && !strncmp(hf, "transformer.", 12)) hf += 12;
    if (a->family == LLMOPS_ARCH_BERT && !strncmp(hf, "bert.", 5)) hf += 5;
    for (size_t k = 0; k < n_names; k++) {
        int layer;
        if (conv_match(names[k].hf, hf, &layer)) {
            conv_format(names[k].gguf, layer, out, cap);
            return 1;
        }
    }
    return 0;
}

static llmops_status read_peft(const llmops_model *m, const char *path, pair_list *l, float *alpha, int *rank,
                               int *rslora, llmops_error *err) {
    char *cfg_path = NULL, *st_path = NULL;
    json_t *cfg = NULL;
    llmops_safetensors *sf = NULL;
    llmops_status st = LLMOPS_OK;
    if (llmops_path_is_dir(path)) {
        cfg_path = llmops_path_join(path, "adapter_config.json");
        st_path = llmops_path_join(path, "adapter_model.safetensors");
    } else {
        /* a .safetensors file: the config sits beside it */
        char *dir = llmops_strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = '\0';
            cfg_path = llmops_path_join(slash ? dir : ".", "adapter_config.json");
        }
        llmops_free(dir);
        st_path = llmops_strdup(path);
    }
    if (!cfg_path || !st_path) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!llmops_path_is_file(cfg_path)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no adapter_config.json (not a PEFT adapter)", path);
        goto done;
    }
    if (!llmops_path_is_file(st_path)) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                              "%s: no adapter_model.safetensors (pickled adapter_model.bin files are not read: save "
                              "with safe_serialization=True)",
                              path);
        goto done;
    }
    if ((st = llmops_json_load_file(cfg_path, 1u << 24, &cfg, err))) goto done;
    if (!json_is_object(cfg)) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: expected a JSON object", cfg_path);
        goto done;
    }
    const char *peft_type = NULL;
    int64_t r = 0;
    double a = 8;
    int dora = 0, rs = 0;
    if ((st = llmops_json_opt_str(cfg, "peft_type", &peft_type, cfg_path, err)) ||
        (st = llmops_json_opt_int(cfg, "r", &r, cfg_path, err)) ||
        (st = llmops_json_opt_num(cfg, "lora_alpha", &a, cfg_path, err)) ||
        (st = llmops_json_opt_bool(cfg, "use_dora", &dora, cfg_path, err)) ||
        (st = llmops_json_opt_bool(cfg, "use_rslora", &rs, cfg_path, err)))
        goto done;
    if (peft_type && strcmp(peft_type, "LORA") != 0) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: peft_type is '%s'; only LORA adapters are supported",
                              cfg_path, peft_type);
        goto done;
    }
    if (r <= 0 || r > 65536) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: r must be a positive integer", cfg_path);
        goto done;
    }
    if (dora) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", cfg_path);
        goto done;
    }
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < 2; i++) {
        json_t *pj = json_object_get(cfg, patterns[i]);
        if (pj && json_is_object(pj) && json_object_size(pj) > 0) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: per-module %s is not supported", cfg_path, patterns[i]);
            goto done;
        }
    }
    *alpha = (float)a;
    *rank = (int)r;
    *rslora = rs;
    if ((st = llmops_safetensors_open(st_path, &sf, err))) goto done;
    for (size_t i = 0; i < llmops_safetensors_n_tensors(sf); i++) {
        const llmops_st_tensor *t = llmops_safetensors_tensor_at(sf, i);
        const char *nm = t->name;
        int is_b = ends_with(nm, ".lora_B.weight");
        if (!is_b && !ends_with(nm, ".lora_A.weight")) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                  "%s: tensor '%s' is not a LoRA factor (lora_A/lora_B); biases, embeddings and "
                                  "modules_to_save are not supported",
                                  st_path, nm);
            goto done;
        }
        if (strncmp(nm, "base_model.model.", 17) != 0 || strlen(nm) <= 17 + 14) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' lacks the 'base_model.model.' prefix", st_path, nm);
            goto done;
        }
        char hf[200], gn[96];
        size_t len = strlen(nm) - 17 - strlen(".lora_A.weight");
        snprintf(hf, sizeof hf, "%.*s.weight", (int)len, nm + 17);
        int layer, kind;
        if (!peft_to_gguf_name(&m->arch, hf, gn, sizeof gn) || !lora_kind_parse(gn, &layer, &kind)) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                  "%s: tensor '%s' adapts '%s', which is not a linear layer of a %s model", st_path, nm,
                                  hf, m->arch.hf_model_type);
            goto done;
        }
        if (t->n_dims != 2) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions; expected 2", st_path, nm,
                                  t->n_dims);
            goto done;
        }
        if ((st = pair_set(l, st_path, nm, gn, layer, kind, is_b, t->type, llmops_safetensors_data(sf, t),
                           (int64_t)t->shape[0], (int64_t)t->shape[1], err)))
            goto done;
    }
done:
    llmops_safetensors_free(sf);
    json_decref(cfg);
    llmops_free(cfg_path);
    llmops_free(st_path);
    return st;
}

static llmops_status read_gguf(const llmops_model *m, const char *path, pair_list *l, float *alpha, int *rank,
                               llmops_error *err) {
    llmops_gguf *g;
    llmops_status st = llmops_gguf_open(path, &g, err);
    if (st) return st;
    llmops_gguf_str s;
    if (llmops_gguf_get_str(g, "general.type", &s, NULL) || !llmops_gguf_str_eq(s, "adapter")) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: general.type is not 'adapter' (a model, not a LoRA adapter?)",
                              path);
        goto done;
    }
    if (llmops_gguf_get_str(g, "adapter.type", &s, NULL) || !llmops_gguf_str_eq(s, "lora")) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: adapter.type is not 'lora'", path);
        goto done;
    }
    const char *want = llmops_arch_gguf_name(m->arch.family);
    if (llmops_gguf_get_str(g, "general.architecture", &s, NULL) || !llmops_gguf_str_eq(s, want)) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: general.architecture is '%.*s' but the model is '%s'", path,
                              (int)(s.len < 64 ? s.len : 64), s.data ? s.data : "", want);
        goto done;
    }
    double a = 0;
    st = llmops_gguf_get_f64(g, "adapter.lora.alpha", &a, err);
    if (st == LLMOPS_ERR_NOT_FOUND) st = LLMOPS_OK;
    if (st) goto done;
    *alpha = (float)a;
    *rank = 0;
    for (size_t i = 0; i < llmops_gguf_n_tensors(g); i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char nm[160], base[160];
        snprintf(nm, sizeof nm, "%.*s", (int)(t->name.len < 159 ? t->name.len : 159), t->name.data);
        int is_b = ends_with(nm, ".lora_b");
        if (!is_b && !ends_with(nm, ".lora_a")) {
            if (ends_with(nm, "_norm.weight")) continue; /* as llama.cpp: norm deltas are not applied */
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' is not a LoRA factor (.lora_a/.lora_b)",
                                  path, nm);
            goto done;
        }
        snprintf(base, sizeof base, "%.*s", (int)(strlen(nm) - 7), nm);
        int layer, kind;
        if (!lora_kind_parse(base, &layer, &kind)) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                  "%s: tensor '%s' adapts '%s', which is not a linear layer the engine adapts", path, nm,
                                  base);
            goto done;
        }
        if (t->n_dims != 2) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions; expected 2", path, nm,
                                  t->n_dims);
            goto done;
        }
        /* ne[0] is the innermost dimension: lora_a [in, r] = r rows of in; lora_b [r, out] = out rows of r */
        if ((st = pair_set(l, path, nm, base, layer, kind, is_b, t->type, llmops_gguf_tensor_data(g, t),
                           (int64_t)t->ne[1], (int64_t)t->ne[0], err)))
            goto done;
    }
done:
    llmops_gguf_free(g);
    return st;
}

/* ---- the adapter ---------------------------------------------------------------------------- */

void llmops_adapter_free(llmops_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_ts; i++) llmops_free(a->ts[i].w);
    llmops_free(a->ts);
    llmops_free(a->w);
    llmops_free(a);
}

/* Checks every pair against the model and moves the factors into the adapter. */
static llmops_status adopt_pairs(llmops_adapter *ad, pair_list *l, int file_permuted, int config_rank, const char *origin,
                                 llmops_error *err) {
    const llmops_model *m = ad->m;
    ad->ts = llmops_calloc(l->n ? 2 * l->n : 1, sizeof *ad->ts);
    ad->w = llmops_calloc((size_t)m->arch.n_layers * LW_N, sizeof *ad->w);
    if (!ad->ts || !ad->w) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < l->n; i++) {
        pair *e = &l->p[i];
        const char *any = e->a ? e->fa : e->fb;
        if (!e->a || !e->b)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' has no matching %s", origin, any,
                                    e->a ? "lora_B / lora_b" : "lora_A / lora_a");
        if (e->layer >= m->arch.n_layers)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' is for layer %d but the model has %lld",
                                    origin, e->fa, e->layer, (long long)m->arch.n_layers);
        const mview *w = model_weight(m, e->layer, e->kind);
        if (!w)
            return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' adapts %s, which a %s model does not have",
                                    origin, e->fa, e->base, m->arch.hf_model_type);
        if (e->ac != w->cols)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: tensor '%s' is %lld × %lld but %s takes %lld inputs (expected r × %lld)", origin,
                                    e->fa, (long long)e->ar, (long long)e->ac, e->base, (long long)w->cols,
                                    (long long)w->cols);
        if (e->br != w->rows)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: tensor '%s' is %lld × %lld but %s has %lld outputs (expected %lld × r)", origin,
                                    e->fb, (long long)e->br, (long long)e->bc, e->base, (long long)w->rows,
                                    (long long)w->rows);
        if (e->bc != e->ar)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: rank mismatch: tensor '%s' has rank %lld but '%s' %lld",
                                    origin, e->fa, (long long)e->ar, e->fb, (long long)e->bc);
        if (config_rank > 0 && e->ar != config_rank)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: rank mismatch: tensor '%s' has rank %lld, the config says r = %d",
                                    origin, e->fa, (long long)e->ar, config_rank);
        if (config_rank <= 0) config_rank = (int)e->ar; /* GGUF: the first pair sets the rank; all must agree */
        if ((e->kind == LW_Q || e->kind == LW_K) && file_permuted != model_permuted(m)) {
            int64_t nh = e->kind == LW_Q ? m->arch.n_heads : m->arch.n_kv_heads;
            int rc = lora_permute_rows(e->b, e->br, e->bc, nh, !file_permuted);
            if (rc == -2) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            if (rc)
                return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s': %lld rows do not split into %lld heads",
                                        origin, e->fb, (long long)e->br, (long long)nh);
        }
        lora_w *lw = &ad->w[(size_t)e->layer * LW_N + (size_t)e->kind];
        *lw = (lora_w){e->a, e->b, e->ar, e->ac, e->br};
        llmops_train_tensor *ta = &ad->ts[ad->n_ts++], *tb = &ad->ts[ad->n_ts++];
        snprintf(ta->name, sizeof ta->name, "%s.lora_a", e->base);
        snprintf(tb->name, sizeof tb->name, "%s.lora_b", e->base);
        ta->rows = e->ar;
        ta->cols = e->ac;
        ta->w = e->a;
        tb->rows = e->br;
        tb->cols = e->bc;
        tb->w = e->b;
        ta->layer = tb->layer = e->layer;
        ta->decay = tb->decay = 1;
        e->a = e->b = NULL; /* owned by the adapter now */
    }
    if (l->n == 0) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: the adapter holds no LoRA factors", origin);
    ad->rank = config_rank;
    return LLMOPS_OK;
}

llmops_status llmops_adapter_load(const llmops_model *m, const char *path, llmops_adapter **out, llmops_error *err) {
    *out = NULL;
    llmops_adapter *ad = llmops_calloc(1, sizeof *ad);
    if (!ad) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    ad->m = m;
    pair_list l = {0};
    float alpha = 0;
    int rank = 0, rslora = 0, gguf = 0;
    llmops_status st;
    if (llmops_path_is_dir(path) || ends_with(path, ".safetensors")) {
        st = read_peft(m, path, &l, &alpha, &rank, &rslora, err);
    } else if (llmops_detect_format(path) == LLMOPS_FORMAT_GGUF) {
        gguf = 1;
        st = read_gguf(m, path, &l, &alpha, &rank, err);
    } else if (!llmops_path_is_file(path)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no such file or folder", path);
    } else {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: not a PEFT adapter folder or a GGUF LoRA file", path);
    }
    /* GGUF LoRA files of llama-family models hold q/k in llama.cpp's permuted order */
    int file_permuted = gguf && (m->arch.family == LLMOPS_ARCH_LLAMA || m->arch.family == LLMOPS_ARCH_MISTRAL);
    if (!st) st = adopt_pairs(ad, &l, file_permuted, rank, path, err);
    pairs_free(&l);
    if (st) {
        llmops_adapter_free(ad);
        return st;
    }
    ad->alpha = alpha;
    if (gguf) ad->scaling = alpha != 0 ? alpha / (float)ad->rank : 1.0f; /* llama.cpp: no alpha, no scaling */
    else ad->scaling = rslora ? alpha / sqrtf((float)ad->rank) : alpha / (float)ad->rank;
    *out = ad;
    return LLMOPS_OK;
}

float llmops_adapter_alpha(const llmops_adapter *a) { return a->alpha; }
int llmops_adapter_rank(const llmops_adapter *a) { return a->rank; }
size_t llmops_adapter_n_weights(const llmops_adapter *a) { return a->n_ts / 2; }
float llmops_adapter_scaling(const llmops_adapter *a) { return a->scaling; }

const llmops_model *lora_adapter_model(const llmops_adapter *a) { return a->m; }

const llmops_train_tensor *llmops_adapter_tensors(const llmops_adapter *a, size_t *n) {
    *n = a->n_ts;
    return a->ts;
}

/* ---- applying adapters in the forward pass ----------------------------------------------------- */

void lora_ctx_free(llmops_context *ctx) {
    llmops_free(ctx->lora);
    llmops_free(ctx->lora_scale);
    llmops_free(ctx->lora_tmp);
    ctx->lora = NULL;
    ctx->lora_scale = ctx->lora_tmp = NULL;
    ctx->n_lora = 0;
}

llmops_status llmops_context_set_adapters(llmops_context *ctx, llmops_adapter *const *a, const float *scales, size_t n,
                                          llmops_error *err) {
    int64_t r_max = 0;
    for (size_t i = 0; i < n; i++) {
        if (!a[i]) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter %zu is NULL", i);
        if (a[i]->m != ctx->m)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter %zu was loaded for another model", i);
        for (size_t k = 0; k < a[i]->n_ts; k += 2)
            if (a[i]->ts[k].rows > r_max) r_max = a[i]->ts[k].rows;
    }
    lora_ctx_free(ctx);
    if (n == 0) return LLMOPS_OK;
    ctx->lora = llmops_calloc(n, sizeof *ctx->lora);
    ctx->lora_scale = llmops_calloc(n, sizeof *ctx->lora_scale);
    ctx->lora_tmp = llmops_malloc((size_t)ctx->slice_tokens * (size_t)r_max * sizeof(float));
    if (!ctx->lora || !ctx->lora_scale || !ctx->lora_tmp) {
        lora_ctx_free(ctx);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        ctx->lora[i] = a[i];
        ctx->lora_scale[i] = scales ? scales[i] : 1.0f;
    }
    ctx->n_lora = n;
    return LLMOPS_OK;
}

void lora_apply(llmops_context *ctx, int layer, int kind, const float *X, size_t n, float *Y) {
    for (size_t i = 0; i < ctx->n_lora; i++) {
        const llmops_adapter *ad = ctx->lora[i];
        const lora_w *w = &ad->w[(size_t)layer * LW_N + (size_t)kind];
        if (!w->a) continue;
        float s = ctx->lora_scale[i] * ad->scaling;
        size_t r = (size_t)w->r, out = (size_t)w->out;
        float *t = ctx->lora_tmp; /* (n, r) = X Aᵀ */
        mm_matmul(LLMOPS_DTYPE_F32, w->a, r, (size_t)w->in, X, n, t, ctx->pool);
        for (size_t j = 0; j < n * r; j++) t[j] *= s;
        for (size_t k = 0; k < n; k++) {
            const float *tk = t + k * r;
            float *y = Y + k * out;
            for (size_t o = 0; o < out; o++) {
                const float *b = w->b + o * r;
                float acc = 0;
                for (size_t j = 0; j < r; j++) acc += b[j] * tk[j];
                y[o] += acc;
            }
        }
    }
}
