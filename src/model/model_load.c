/*
 * Model loading: the weights of a GGUF file, a Hugging Face folder or a
 * llama2.c checkpoint become views into the memory-mapped files, named with
 * llama.cpp's tensor names so that one set of code checks and runs them.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "formats/convert_names.h"
#include "llmops/alloc.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/kernels.h"
#include "model/model_internal.h"

/* ---- the source of named tensors ---------------------------------------------------- */

typedef struct {
    char name[96];   /* llama.cpp's name */
    mview v;
    int transpose;   /* HF Conv1D: stored [in, out] */
} named;

typedef struct {
    named *t;
    size_t n, cap;
} name_list;

static llmops_status list_add(name_list *l, const char *name, mview v, int transpose, llmops_error *err) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        named *n = llmops_reallocarray(l->t, nc, sizeof *n);
        if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        l->t = n;
        l->cap = nc;
    }
    named *e = &l->t[l->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->v = v;
    e->transpose = transpose;
    return LLMOPS_OK;
}

static const named *list_find(const name_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->t[i].name, name)) return &l->t[i];
    return NULL;
}

static mview make_view(int type, int64_t rows, int64_t cols, const void *data) {
    mview v = {type, rows, cols, 0, data};
    uint64_t rb = 0;
    llmops_dtype_nbytes(type, (uint64_t)cols, (uint64_t)cols, &rb, NULL);
    v.row_bytes = (size_t)rb;
    return v;
}

static llmops_status names_from_gguf(const llmops_gguf *g, name_list *l, llmops_error *err) {
    for (size_t i = 0; i < llmops_gguf_n_tensors(g); i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        if (t->n_dims > 2) continue;
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 95 ? t->name.len : 95), t->name.data);
        int64_t cols = (int64_t)t->ne[0], rows = t->n_dims == 2 ? (int64_t)t->ne[1] : 1;
        llmops_status st = list_add(l, name, make_view(t->type, rows, cols, llmops_gguf_tensor_data(g, t)), 0, err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

static llmops_status names_from_hf(const llmops_st_model *sm, const llmops_arch *a, name_list *l, llmops_error *err) {
    size_t n_names;
    const conv_name *names = conv_names(a->family, &n_names);
    for (size_t i = 0; i < llmops_st_model_n_tensors(sm); i++) {
        const llmops_safetensors *shard;
        const llmops_st_tensor *t = llmops_st_model_tensor_at(sm, i, &shard);
        const char *hn = t->name;
        if (a->family == LLMOPS_ARCH_GPT2 && !strncmp(hn, "transformer.", 12)) hn += 12;
        if (a->family == LLMOPS_ARCH_BERT && !strncmp(hn, "bert.", 5)) hn += 5;
        if (conv_hf_ignored(hn)) continue;
        size_t k;
        int layer = -1;
        for (k = 0; k < n_names; k++)
            if (conv_match(names[k].hf, hn, &layer)) break;
        if (k == n_names) continue; /* heads we do not run (pooler, MLM) */
        if (t->n_dims < 1 || t->n_dims > 2)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "tensor '%s' has %u dimensions", t->name, t->n_dims);
        char gn[96];
        conv_format(names[k].gguf, layer, gn, sizeof gn);
        int64_t rows = t->n_dims == 2 ? (int64_t)t->shape[0] : 1, cols = t->n_dims == 2 ? (int64_t)t->shape[1] : (int64_t)t->shape[0];
        llmops_status st = list_add(l, gn, make_view(t->type, rows, cols, llmops_safetensors_data(shard, t)),
                                    names[k].xf == XF_TRANSPOSE, err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

static llmops_status names_from_llama2c(const llmops_llama2c *c, name_list *l, llmops_error *err) {
    int64_t d = c->dim, h = c->hidden_dim, V = c->vocab_size, kv = (int64_t)c->dim * c->n_kv_heads / c->n_heads;
#define T(nm) llmops_llama2c_find(c, nm)->data
    llmops_status st = list_add(l, "token_embd.weight", make_view(LLMOPS_DTYPE_F32, V, d, T("token_embedding_table")), 0, err);
    for (int32_t i = 0; !st && i < c->n_layers; i++) {
        struct {
            const char *suffix, *src;
            int64_t rows, cols;
        } parts[] = {{"attn_norm.weight", "rms_att_weight", 1, d}, {"attn_q.weight", "wq", d, d},
                     {"attn_k.weight", "wk", kv, d},               {"attn_v.weight", "wv", kv, d},
                     {"attn_output.weight", "wo", d, d},           {"ffn_norm.weight", "rms_ffn_weight", 1, d},
                     {"ffn_gate.weight", "w1", h, d},              {"ffn_down.weight", "w2", d, h},
                     {"ffn_up.weight", "w3", h, d}};
        for (size_t k = 0; !st && k < sizeof parts / sizeof parts[0]; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s", i, parts[k].suffix);
            const float *base = T(parts[k].src) + (size_t)i * (size_t)(parts[k].rows * parts[k].cols);
            st = list_add(l, nm, make_view(LLMOPS_DTYPE_F32, parts[k].rows, parts[k].cols, base), 0, err);
        }
    }
    if (!st) st = list_add(l, "output_norm.weight", make_view(LLMOPS_DTYPE_F32, 1, d, T("rms_final_weight")), 0, err);
    if (!st && !c->shared_classifier) st = list_add(l, "output.weight", make_view(LLMOPS_DTYPE_F32, V, d, T("wcls")), 0, err);
#undef T
    return st;
}

/* ---- binding ------------------------------------------------------------------------- */

typedef struct {
    llmops_model *m;
    const name_list *l;
    const char *origin;
    llmops_error *err;
} binder;

/* GPT-2's Conv1D weights are [in, out]: make a transposed F32 copy once. */
static llmops_status transposed_copy(binder *b, const named *e, mview *out) {
    int64_t in = e->v.rows, outn = e->v.cols;
    float *buf = llmops_malloc((size_t)(in * outn) * sizeof(float));
    float *row = llmops_malloc((size_t)outn * sizeof(float));
    if (!buf || !row) {
        llmops_free(buf);
        llmops_free(row);
        return llmops_error_set(b->err, LLMOPS_ERR_NOMEM, "out of memory transposing %s", e->name);
    }
    for (int64_t i = 0; i < in; i++) {
        llmops_status st = llmops_dequantize_row(e->v.type, (const uint8_t *)e->v.data + (size_t)i * e->v.row_bytes, row,
                                                 (size_t)outn, b->err);
        if (st) {
            llmops_free(buf);
            llmops_free(row);
            return st;
        }
        for (int64_t j = 0; j < outn; j++) buf[j * in + i] = row[j];
    }
    llmops_free(row);
    void **no = llmops_reallocarray(b->m->owned, b->m->n_owned + 1, sizeof *no);
    if (!no) {
        llmops_free(buf);
        return llmops_error_set(b->err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    b->m->owned = no;
    b->m->owned[b->m->n_owned++] = buf;
    *out = make_view(LLMOPS_DTYPE_F32, outn, in, buf);
    return LLMOPS_OK;
}

/* Binds `name` (with %d = layer) into *v, checking its shape; a missing
 * optional tensor leaves v->data NULL. rows/cols < 0: not checked. */
static llmops_status bind(binder *b, mview *v, const char *pattern, int layer, int64_t rows, int64_t cols, int required) {
    char name[96];
    if (layer >= 0) conv_format(pattern, layer, name, sizeof name);
    else snprintf(name, sizeof name, "%s", pattern);
    memset(v, 0, sizeof *v);
    const named *e = list_find(b->l, name);
    if (!e) {
        if (required)
            return llmops_error_set(b->err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' is missing", b->origin, name);
        return LLMOPS_OK;
    }
    mview t = e->v;
    if (e->transpose) {
        llmops_status st = transposed_copy(b, e, &t);
        if (st) return st;
    }
    if ((rows >= 0 && t.rows != rows) || (cols >= 0 && t.cols != cols))
        return llmops_error_set(b->err, LLMOPS_ERR_FORMAT,
                                "%s: tensor '%s' is %lld × %lld, expected %lld × %lld", b->origin, name,
                                (long long)t.rows, (long long)t.cols, (long long)(rows >= 0 ? rows : t.rows),
                                (long long)(cols >= 0 ? cols : t.cols));
    const llmops_dtype_info *ti = llmops_dtype_get(t.type);
    if (!ti || (!ti->quantized && t.type != LLMOPS_DTYPE_F32 && t.type != LLMOPS_DTYPE_F16 && t.type != LLMOPS_DTYPE_BF16))
        return llmops_error_set(b->err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which the engine does not run",
                                b->origin, name, llmops_dtype_name(t.type));
    *v = t;
    b->m->n_params += (uint64_t)(t.rows * t.cols);
    b->m->weight_bytes += (uint64_t)t.rows * t.row_bytes;
    return LLMOPS_OK;
}

#define BIND(v, name, layer, rows, cols, req)                                                     \
    do {                                                                                          \
        llmops_status st_ = bind(&b, v, name, layer, rows, cols, req);                            \
        if (st_) return st_;                                                                      \
    } while (0)

static llmops_status bind_all(llmops_model *m, const name_list *l, const char *origin, llmops_error *err) {
    binder b = {m, l, origin, err};
    const llmops_arch *a = &m->arch;
    int64_t d = a->hidden_size, V = a->vocab_size, hd = a->head_dim, qd = a->n_heads * hd, kvd = a->n_kv_heads * hd;
    int64_t f = a->ffn_size;
    int bert = a->family == LLMOPS_ARCH_BERT, gpt2 = a->family == LLMOPS_ARCH_GPT2;
    BIND(&m->tok_embd, "token_embd.weight", -1, V, d, 1);
    if (a->pos == LLMOPS_POS_LEARNED) BIND(&m->pos_embd, "position_embd.weight", -1, -1, d, 1);
    if (m->pos_embd.data && m->pos_embd.rows < a->max_positions)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: position_embd has %lld rows for a context of %lld", origin,
                                (long long)m->pos_embd.rows, (long long)a->max_positions);
    if (bert) {
        BIND(&m->type_embd, "token_types.weight", -1, -1, d, 0);
        BIND(&m->embd_norm, "token_embd_norm.weight", -1, 1, d, 1);
        BIND(&m->embd_norm_b, "token_embd_norm.bias", -1, 1, d, 1);
    } else {
        BIND(&m->output_norm, "output_norm.weight", -1, 1, d, 1);
        BIND(&m->output_norm_b, "output_norm.bias", -1, 1, d, a->norm == LLMOPS_NORM_LAYER);
        BIND(&m->output, "output.weight", -1, V, d, 0);
        if (!m->output.data) m->output = m->tok_embd; /* tied */
    }
    m->layers = llmops_calloc((size_t)a->n_layers, sizeof *m->layers);
    if (!m->layers) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    int layer_norm = a->norm == LLMOPS_NORM_LAYER;
    for (int i = 0; i < (int)a->n_layers; i++) {
        mlayer *L = &m->layers[i];
        if (!bert) {
            BIND(&L->attn_norm, "blk.%d.attn_norm.weight", i, 1, d, 1);
            BIND(&L->attn_norm_b, "blk.%d.attn_norm.bias", i, 1, d, layer_norm);
        }
        if (gpt2) {
            BIND(&L->wqkv, "blk.%d.attn_qkv.weight", i, qd + 2 * kvd, d, 1);
            BIND(&L->bqkv, "blk.%d.attn_qkv.bias", i, 1, qd + 2 * kvd, 0);
        } else {
            BIND(&L->wq, "blk.%d.attn_q.weight", i, qd, d, 1);
            BIND(&L->wk, "blk.%d.attn_k.weight", i, kvd, d, 1);
            BIND(&L->wv, "blk.%d.attn_v.weight", i, kvd, d, 1);
            BIND(&L->bq, "blk.%d.attn_q.bias", i, 1, qd, 0);
            BIND(&L->bk, "blk.%d.attn_k.bias", i, 1, kvd, 0);
            BIND(&L->bv, "blk.%d.attn_v.bias", i, 1, kvd, 0);
        }
        BIND(&L->wo, "blk.%d.attn_output.weight", i, d, qd, 1);
        BIND(&L->bo, "blk.%d.attn_output.bias", i, 1, d, 0);
        if (bert) {
            BIND(&L->attn_out_norm, "blk.%d.attn_output_norm.weight", i, 1, d, 1);
            BIND(&L->attn_out_norm_b, "blk.%d.attn_output_norm.bias", i, 1, d, 1);
            BIND(&L->out_norm, "blk.%d.layer_output_norm.weight", i, 1, d, 1);
            BIND(&L->out_norm_b, "blk.%d.layer_output_norm.bias", i, 1, d, 1);
        } else {
            BIND(&L->ffn_norm, "blk.%d.ffn_norm.weight", i, 1, d, 1);
            BIND(&L->ffn_norm_b, "blk.%d.ffn_norm.bias", i, 1, d, layer_norm);
        }
        if (a->gated_ffn) BIND(&L->w_gate, "blk.%d.ffn_gate.weight", i, f, d, 1);
        BIND(&L->w_up, "blk.%d.ffn_up.weight", i, f, d, 1);
        BIND(&L->w_down, "blk.%d.ffn_down.weight", i, d, f, 1);
        BIND(&L->b_up, "blk.%d.ffn_up.bias", i, 1, f, 0);
        BIND(&L->b_down, "blk.%d.ffn_down.bias", i, 1, d, 0);
        BIND(&L->b_gate, "blk.%d.ffn_gate.bias", i, 1, f, 0);
    }
    /* a decode step reads one row of each embedding table, unless the table is also the output */
    const mview *tables[] = {&m->tok_embd, &m->pos_embd, &m->type_embd};
    for (size_t i = 0; i < 3; i++) {
        const mview *t = tables[i];
        if (!t->data || (i == 0 && m->output.data == m->tok_embd.data)) continue;
        m->weight_bytes -= (uint64_t)(t->rows - 1) * t->row_bytes;
    }
    /* extra tensors in the file that we do not run are fine; a missing one is not */
    return LLMOPS_OK;
}

/* RoPE frequencies of each rotated pair, with the model's scaling. */
static llmops_status rope_table(llmops_model *m, const name_list *l, llmops_error *err) {
    const llmops_arch *a = &m->arch;
    if (a->pos != LLMOPS_POS_ROPE) return LLMOPS_OK;
    int64_t half = a->rope_dim / 2;
    m->rope_freqs = llmops_malloc((size_t)half * sizeof(float));
    if (!m->rope_freqs) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    const named *ff = list_find(l, "rope_freqs.weight");
    for (int64_t i = 0; i < half; i++) {
        double freq = 1.0 / pow(a->rope_theta, (double)(2 * i) / (double)a->rope_dim);
        if (a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR) freq /= a->rope_factor;
        else if (a->rope_scaling == LLMOPS_ROPE_SCALING_LLAMA3) {
            double lo = (double)a->rope_original_max_positions / a->rope_low_freq_factor;
            double hi = (double)a->rope_original_max_positions / a->rope_high_freq_factor;
            double wl = 2.0 * M_PI / freq;
            if (wl > lo) freq /= a->rope_factor;
            else if (wl >= hi) {
                double smooth = ((double)a->rope_original_max_positions / wl - a->rope_low_freq_factor) /
                                (a->rope_high_freq_factor - a->rope_low_freq_factor);
                freq = (1.0 - smooth) * freq / a->rope_factor + smooth * freq;
            }
        } else if (ff && ff->v.type == LLMOPS_DTYPE_F32 && ff->v.cols == half) {
            /* llama.cpp stores Llama 3 factors as rope_freqs.weight: divide by them */
            freq /= (double)((const float *)ff->v.data)[i];
        }
        m->rope_freqs[i] = (float)freq;
    }
    return LLMOPS_OK;
}

void llmops_model_params_init(llmops_model_params *p) {
    memset(p, 0, sizeof *p);
    p->load_tokenizer = 1;
}

void llmops_model_free(llmops_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) llmops_free(m->owned[i]);
    llmops_free(m->owned);
    llmops_free(m->layers);
    llmops_free(m->rope_freqs);
    llmops_tokenizer_free(m->tok);
    llmops_gguf_free(m->gguf);
    llmops_llama2c_free(m->l2c);
    llmops_st_model_free(m->st);
    llmops_free(m);
}

llmops_status llmops_model_load(const char *path, const llmops_model_params *p, llmops_model **out, llmops_error *err) {
    *out = NULL;
    llmops_model_params defaults;
    if (!p) {
        llmops_model_params_init(&defaults);
        p = &defaults;
    }
    llmops_model *m = llmops_calloc(1, sizeof *m);
    if (!m) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    name_list l = {0};
    llmops_status st;
    switch (llmops_detect_format(path)) {
    case LLMOPS_FORMAT_GGUF:
        if ((st = llmops_gguf_open(path, &m->gguf, err))) goto fail;
        if ((st = llmops_arch_from_gguf(m->gguf, &m->arch, err))) {
            llmops_error_prefix(err, "%s: ", path);
            goto fail;
        }
        m->rope_neox = m->arch.family == LLMOPS_ARCH_QWEN2;
        if ((st = names_from_gguf(m->gguf, &l, err))) goto fail;
        if (p->load_tokenizer && (st = llmops_tokenizer_from_gguf(m->gguf, path, &m->tok, err))) goto fail;
        break;
    case LLMOPS_FORMAT_HF_DIR: {
        char *cfg = llmops_path_join(path, "config.json");
        if (!cfg) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        st = llmops_arch_from_hf_config_file(cfg, &m->arch, err);
        llmops_free(cfg);
        if (st) goto fail;
        m->rope_neox = 1; /* Hugging Face keeps q/k in rotate-half order */
        if ((st = llmops_st_model_open(path, &m->st, err))) goto fail;
        if ((st = names_from_hf(m->st, &m->arch, &l, err))) goto fail;
        if (p->load_tokenizer && (st = llmops_tokenizer_load(path, &m->tok, err))) goto fail;
        break;
    }
    case LLMOPS_FORMAT_LLAMA2C:
        if ((st = llmops_llama2c_open(path, &m->l2c, err))) goto fail;
        llmops_llama2c_arch(m->l2c, &m->arch);
        m->rope_neox = 0;
        if ((st = names_from_llama2c(m->l2c, &l, err))) goto fail;
        if (p->load_tokenizer && (st = llmops_tokenizer_load(path, &m->tok, err))) goto fail;
        break;
    default:
        st = llmops_path_is_file(path) || llmops_path_is_dir(path)
                 ? llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                    "%s: not a GGUF file, Hugging Face folder or llama2.c checkpoint", path)
                 : llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no such file or folder", path);
        goto fail;
    }
    if ((st = bind_all(m, &l, path, err))) goto fail;
    if ((st = rope_table(m, &l, err))) goto fail;
    if (m->tok && (int64_t)llmops_tokenizer_n_vocab(m->tok) > m->arch.vocab_size) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: the tokenizer has %zu tokens but the embedding only %lld rows",
                              path, llmops_tokenizer_n_vocab(m->tok), (long long)m->arch.vocab_size);
        goto fail;
    }
    double np = (double)m->n_params;
    snprintf(m->desc, sizeof m->desc, "%s, %lld layers, width %lld, %s, %.1f%s parameters",
             llmops_arch_family_name(m->arch.family), (long long)m->arch.n_layers, (long long)m->arch.hidden_size,
             llmops_dtype_name(m->layers[0].w_down.type), np >= 1e9 ? np / 1e9 : np >= 1e6 ? np / 1e6 : np / 1e3,
             np >= 1e9 ? "B" : np >= 1e6 ? "M" : "K");
    llmops_free(l.t);
    *out = m;
    return LLMOPS_OK;
fail:
    llmops_free(l.t);
    llmops_model_free(m);
    return st;
}

const llmops_arch *llmops_model_arch(const llmops_model *m) { return &m->arch; }
const llmops_tokenizer *llmops_model_tokenizer(const llmops_model *m) { return m->tok; }
int64_t llmops_model_n_vocab(const llmops_model *m) { return m->arch.vocab_size; }
uint64_t llmops_model_weight_bytes(const llmops_model *m) { return m->weight_bytes; }
uint64_t llmops_model_n_params(const llmops_model *m) { return m->n_params; }
const char *llmops_model_desc(const llmops_model *m) { return m->desc; }
