/*
 * Model conversion. Tensors stream through llmops_gguf_fill_fn /
 * llmops_st_fill_fn callbacks, so only one tensor is in memory at a time.
 * Names, metadata keys and layouts follow llama.cpp's convert_hf_to_gguf.py
 * conventions so that llama.cpp loads what we write.
 */
#include "llmops/convert.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "formats/convert_names.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/kernels.h"
#include "llmops/llama2c.h"
#include "llmops/log.h"
#include "llmops/safetensors.h"
#include "llmops/tokenizer.h"

/* llama.cpp's LLAMA_FTYPE values for general.file_type */
enum { FTYPE_ALL_F32 = 0, FTYPE_MOSTLY_F16 = 1, FTYPE_MOSTLY_BF16 = 32 };

#define TRY(x)                                                                                     \
    do {                                                                                           \
        llmops_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                       \
    } while (0)

const char *llmops_model_format_name(llmops_model_format f) {
    switch (f) {
    case LLMOPS_FORMAT_GGUF: return "gguf";
    case LLMOPS_FORMAT_SAFETENSORS: return "safetensors";
    case LLMOPS_FORMAT_HF_DIR: return "hf";
    case LLMOPS_FORMAT_LLAMA2C: return "llama2c";
    default: return "unknown";
    }
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

llmops_model_format llmops_detect_format(const char *path) {
    if (llmops_path_is_dir(path)) {
        char *cfg = llmops_path_join(path, "config.json");
        int has = cfg && llmops_path_is_file(cfg);
        llmops_free(cfg);
        return has ? LLMOPS_FORMAT_HF_DIR : LLMOPS_FORMAT_UNKNOWN;
    }
    if (ends_with(path, ".safetensors.index.json")) return LLMOPS_FORMAT_SAFETENSORS;
    /* the file's first bytes and its size tell (read, not mapped: mapping a model prepares its pages) */
    FILE *fp = fopen(path, "rb");
    if (!fp) return LLMOPS_FORMAT_UNKNOWN;
    uint8_t head[512] = {0};
    size_t got = fread(head, 1, sizeof head, fp);
    long end = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    fclose(fp);
    if (end < 0 || (size_t)end < got) return LLMOPS_FORMAT_UNKNOWN;
    const size_t size = (size_t)end;
    llmops_model_format f = LLMOPS_FORMAT_UNKNOWN;
    if (size >= 4 && memcmp(head, "GGUF", 4) == 0) f = LLMOPS_FORMAT_GGUF;
    else if (size >= 9 && head[8] == '{') {
        uint64_t hl;
        memcpy(&hl, head, 8);
        if (hl <= size - 8) f = LLMOPS_FORMAT_SAFETENSORS;
    }
    if (f == LLMOPS_FORMAT_UNKNOWN && llmops_llama2c_sniff(head, size)) f = LLMOPS_FORMAT_LLAMA2C;
    return f;
}

void llmops_convert_opts_init(llmops_convert_opts *o) {
    memset(o, 0, sizeof *o);
    o->out_type = -1;
}

/* ---- tensor fill: rearrange rows, then convert the element type ------------- */

typedef struct {
    const void *src;
    int src_type;
    int dst_type;
    uint64_t rows, cols; /* the source viewed as rows × cols, row-major */
    conv_xform xf;
    int n_head;          /* for the permutations */
    int inverse;         /* GGUF → HF undoes the permutation */
} fill_ctx;

/* Row permutation between HF's rotate-half layout and interleaved pairs. */
static uint64_t permuted_row(uint64_t r, uint64_t rows, int n_head, int inverse) {
    uint64_t hd = rows / (uint64_t)n_head, half = hd / 2;
    uint64_t h = r / hd, k = r % hd;
    if (!inverse) {
        /* destination row k = i*2 + j comes from source row j*half + i */
        uint64_t i = k / 2, j = k % 2;
        return h * hd + j * half + i;
    }
    uint64_t j = k / half, i = k % half;
    return h * hd + i * 2 + j;
}

static llmops_status fill_tensor(void *vctx, void *dst, uint64_t nbytes, llmops_error *err) {
    fill_ctx *c = vctx;
    uint64_t n = c->rows * c->cols;
    const llmops_dtype_info *si = llmops_dtype_get(c->src_type);
    const uint8_t *s = c->src;
    int stype = c->src_type;
    float *deq = NULL;
    uint8_t *tmp = NULL;
    llmops_status st = LLMOPS_OK;
    (void)nbytes;
    if (si->quantized) {
        deq = llmops_malloc((size_t)n * sizeof(float));
        if (!deq) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory dequantising");
        if ((st = llmops_dequantize_row(c->src_type, c->src, deq, (size_t)n, err))) goto done;
        s = (const uint8_t *)deq;
        stype = LLMOPS_DTYPE_F32;
    }
    size_t es = llmops_dtype_get(stype)->type_size;
    if (c->xf != XF_NONE) {
        tmp = llmops_malloc((size_t)n * es);
        if (!tmp) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory rearranging a tensor");
            goto done;
        }
        if (c->xf == XF_TRANSPOSE) {
            for (uint64_t i = 0; i < c->rows; i++)
                for (uint64_t j = 0; j < c->cols; j++)
                    memcpy(tmp + (j * c->rows + i) * es, s + (i * c->cols + j) * es, es);
        } else {
            if (c->rows % ((uint64_t)c->n_head * 2)) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%llu rows do not split into %d heads of even size",
                                      (unsigned long long)c->rows, c->n_head);
                goto done;
            }
            for (uint64_t r = 0; r < c->rows; r++)
                memcpy(tmp + r * c->cols * es, s + permuted_row(r, c->rows, c->n_head, c->inverse) * c->cols * es,
                       (size_t)c->cols * es);
        }
        s = tmp;
    }
    st = llmops_convert_floats(stype, s, c->dst_type, dst, (size_t)n, err);
done:
    llmops_free(deq);
    llmops_free(tmp);
    return st;
}

static int is_float(int t) {
    return t == LLMOPS_DTYPE_F32 || t == LLMOPS_DTYPE_F16 || t == LLMOPS_DTYPE_BF16 || t == LLMOPS_DTYPE_F64;
}

/* The type a tensor is written in: 1-D tensors (norms, biases) stay F32, as in llama.cpp. */
static int out_type_for(int src_type, uint32_t n_dims, int requested) {
    if (n_dims <= 1) return LLMOPS_DTYPE_F32;
    if (requested >= 0) return requested;
    if (src_type == LLMOPS_DTYPE_F64) return LLMOPS_DTYPE_F32;
    return src_type;
}

static uint32_t file_type_of(int t) {
    return t == LLMOPS_DTYPE_F16 ? FTYPE_MOSTLY_F16 : t == LLMOPS_DTYPE_BF16 ? FTYPE_MOSTLY_BF16 : FTYPE_ALL_F32;
}

/* ---- architecture metadata ---------------------------------------------------- */

static llmops_status kv_u32(llmops_gguf_writer *w, const char *arch, const char *key, int64_t v, llmops_error *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return llmops_gguf_writer_set_u32(w, k, (uint32_t)v, err);
}

static llmops_status kv_f32(llmops_gguf_writer *w, const char *arch, const char *key, double v, llmops_error *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return llmops_gguf_writer_set_f32(w, k, (float)v, err);
}

static llmops_status write_arch_kv(llmops_gguf_writer *w, const llmops_arch *a, const char *name, int file_type,
                                   llmops_error *err) {
    const char *an = llmops_arch_gguf_name(a->family);
    TRY(llmops_gguf_writer_set_str(w, "general.architecture", an, err));
    if (name && *name) TRY(llmops_gguf_writer_set_str(w, "general.name", name, err));
    if (a->family == LLMOPS_ARCH_LLAMA || a->family == LLMOPS_ARCH_MISTRAL)
        TRY(kv_u32(w, an, "vocab_size", a->vocab_size, err));
    TRY(kv_u32(w, an, "context_length", a->max_positions, err));
    TRY(kv_u32(w, an, "embedding_length", a->hidden_size, err));
    TRY(kv_u32(w, an, "feed_forward_length", a->ffn_size, err));
    TRY(kv_u32(w, an, "block_count", a->n_layers, err));
    TRY(kv_u32(w, an, "attention.head_count", a->n_heads, err));
    if (a->pos == LLMOPS_POS_ROPE) {
        TRY(kv_u32(w, an, "attention.head_count_kv", a->n_kv_heads, err));
        TRY(kv_u32(w, an, "rope.dimension_count", a->rope_dim, err));
        TRY(kv_f32(w, an, "rope.freq_base", a->rope_theta, err));
        if (a->head_dim * a->n_heads != a->hidden_size) {
            TRY(kv_u32(w, an, "attention.key_length", a->head_dim, err));
            TRY(kv_u32(w, an, "attention.value_length", a->head_dim, err));
        }
        if (a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR || a->rope_scaling == LLMOPS_ROPE_SCALING_YARN) {
            char k[128];
            snprintf(k, sizeof k, "%s.rope.scaling.type", an);
            TRY(llmops_gguf_writer_set_str(w, k, a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR ? "linear" : "yarn", err));
            TRY(kv_f32(w, an, "rope.scaling.factor", a->rope_factor, err));
            if (a->rope_scaling == LLMOPS_ROPE_SCALING_YARN && a->rope_original_max_positions)
                TRY(kv_u32(w, an, "rope.scaling.original_context_length", a->rope_original_max_positions, err));
        }
    }
    if (a->norm == LLMOPS_NORM_RMS) TRY(kv_f32(w, an, "attention.layer_norm_rms_epsilon", a->norm_eps, err));
    else TRY(kv_f32(w, an, "attention.layer_norm_epsilon", a->norm_eps, err));
    if (a->family == LLMOPS_ARCH_BERT) {
        char k[128];
        snprintf(k, sizeof k, "%s.attention.causal", an);
        TRY(llmops_gguf_writer_set_bool(w, k, 0, err));
    }
    TRY(llmops_gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type, err));
    return LLMOPS_OK;
}

/* Llama 3 RoPE frequency factors, stored by llama.cpp as rope_freqs.weight. */
static void llama3_rope_factors(const llmops_arch *a, float *out, int64_t n) {
    double lo_wl = (double)a->rope_original_max_positions / a->rope_low_freq_factor;
    double hi_wl = (double)a->rope_original_max_positions / a->rope_high_freq_factor;
    for (int64_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(a->rope_theta, (double)(2 * i) / (double)a->rope_dim);
        double wl = 2.0 * M_PI / freq;
        if (wl < hi_wl) out[i] = 1.0f;
        else if (wl > lo_wl) out[i] = (float)a->rope_factor;
        else {
            double smooth = ((double)a->rope_original_max_positions / wl - a->rope_low_freq_factor) /
                            (a->rope_high_freq_factor - a->rope_low_freq_factor);
            out[i] = (float)(1.0 / ((1.0 - smooth) / a->rope_factor + smooth));
        }
    }
}

/* ---- tokenizer into GGUF ---------------------------------------------------------------- */

/* Loads the tokenizer at `path` and writes its tokenizer.ggml.* keys. */
static llmops_status vocab_into(llmops_gguf_writer *w, const char *path, llmops_error *err) {
    llmops_tokenizer *tok;
    llmops_status st = llmops_tokenizer_load(path, &tok, err);
    if (st) return st;
    st = llmops_tokenizer_to_gguf(tok, w, err);
    llmops_tokenizer_free(tok);
    return st;
}

/* ---- llama2.c → GGUF ------------------------------------------------------------- */

typedef struct {
    fill_ctx *fills;
    size_t n, cap;
} fill_pool;

/* The writer keeps pointers to the contexts, so the pool is sized up front and never moves. */
static fill_ctx *pool_add(fill_pool *p) { return p->n < p->cap ? &p->fills[p->n++] : NULL; }

/* Adds a tensor that the writer fills from `src` (row-major rows × cols). */
static llmops_status add_fill(llmops_gguf_writer *w, fill_pool *pool, const char *name, const void *src, int src_type,
                              uint32_t n_dims, uint64_t rows, uint64_t cols, int requested, conv_xform xf, int n_head,
                              int *out_type, llmops_error *err) {
    fill_ctx *c = pool_add(pool);
    if (!c) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    /* llama.cpp keeps position and token-type embeddings in F32 whatever the output type */
    int keep_f32 = !strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight");
    int dt = out_type_for(src_type, keep_f32 ? 1 : n_dims, requested);
    *c = (fill_ctx){src, src_type, dt, rows, cols, xf, n_head, 0};
    uint64_t ne[2];
    if (xf == XF_TRANSPOSE) {
        ne[0] = rows;
        ne[1] = cols;
    } else {
        ne[0] = cols;
        ne[1] = rows;
    }
    if (out_type) *out_type = dt;
    return n_dims <= 1 ? llmops_gguf_writer_add_tensor_fn(w, name, (llmops_dtype)dt, 1, &rows, fill_tensor, c, err)
                       : llmops_gguf_writer_add_tensor_fn(w, name, (llmops_dtype)dt, 2, ne, fill_tensor, c, err);
}

static char *default_name(const char *path) {
    char *copy = llmops_strdup(path);
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = '\0';
    char *b = basename(copy);
    char *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = '\0';
    char *r = llmops_strdup(b);
    llmops_free(copy);
    return r;
}

static char *find_llama2c_vocab(const char *ckpt, int32_t vocab_size) {
    char *copy = llmops_strdup(ckpt);
    if (!copy) return NULL;
    char *dir = dirname(copy);
    char tok[64];
    snprintf(tok, sizeof tok, "tok%d.bin", vocab_size);
    const char *cands[] = {tok, "tokenizer.bin"};
    char *found = NULL;
    for (size_t i = 0; i < 2 && !found; i++) {
        char *p = llmops_path_join(dir, cands[i]);
        if (p && llmops_path_is_file(p)) found = p;
        else llmops_free(p);
    }
    llmops_free(copy);
    return found;
}

static llmops_status llama2c_to_gguf(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err) {
    llmops_llama2c *m = NULL;
    llmops_gguf_writer *w = NULL;
    fill_pool pool = {0};
    char *vocab_path = NULL, *name = NULL;
    llmops_status st = llmops_llama2c_open(in, &m, err);
    if (st) return st;
    vocab_path = o->vocab_path ? llmops_strdup(o->vocab_path) : find_llama2c_vocab(in, m->vocab_size);
    if (!vocab_path) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND,
                              "%s: no tokenizer.bin or tok%d.bin beside the checkpoint; pass the vocabulary with --vocab",
                              in, m->vocab_size);
        goto done;
    }
    llmops_arch a;
    llmops_llama2c_arch(m, &a);
    w = llmops_gguf_writer_create();
    name = o->name ? llmops_strdup(o->name) : default_name(in);
    /* the pool must not move after the first tensor: size it up front */
    pool.cap = (size_t)m->n_layers * 9 + 4;
    pool.fills = llmops_malloc(pool.cap * sizeof *pool.fills);
    if (!w || !name || !pool.fills) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    int req = o->out_type;
    if ((st = write_arch_kv(w, &a, name, (int)file_type_of(req < 0 ? LLMOPS_DTYPE_F32 : req), err))) goto done;
    {
        llmops_tokenizer *tok;
        if ((st = llmops_tokenizer_load(vocab_path, &tok, err))) goto done;
        if (llmops_tokenizer_n_vocab(tok) != (size_t)m->vocab_size)
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s holds %zu tokens but %s has a vocabulary of %d", vocab_path,
                                  llmops_tokenizer_n_vocab(tok), in, m->vocab_size);
        else
            st = llmops_tokenizer_to_gguf(tok, w, err);
        llmops_tokenizer_free(tok);
        if (st) goto done;
    }
    uint64_t d = (uint64_t)m->dim, h = (uint64_t)m->hidden_dim, V = (uint64_t)m->vocab_size;
    uint64_t kv = d * (uint64_t)m->n_kv_heads / (uint64_t)m->n_heads;
#define T(nm) llmops_llama2c_find(m, nm)->data
    if ((st = add_fill(w, &pool, "token_embd.weight", T("token_embedding_table"), LLMOPS_DTYPE_F32, 2, V, d, req, XF_NONE, 0,
                       NULL, err)))
        goto done;
    for (int32_t l = 0; l < m->n_layers; l++) {
        char nm[64];
        uint64_t L = (uint64_t)l;
        struct {
            const char *suffix;
            const float *src;
            uint32_t nd;
            uint64_t rows, cols;
        } parts[] = {
            {"attn_norm.weight", T("rms_att_weight") + L * d, 1, d, 1},
            {"attn_q.weight", T("wq") + L * d * d, 2, d, d},
            {"attn_k.weight", T("wk") + L * kv * d, 2, kv, d},
            {"attn_v.weight", T("wv") + L * kv * d, 2, kv, d},
            {"attn_output.weight", T("wo") + L * d * d, 2, d, d},
            {"ffn_norm.weight", T("rms_ffn_weight") + L * d, 1, d, 1},
            {"ffn_gate.weight", T("w1") + L * h * d, 2, h, d},
            {"ffn_down.weight", T("w2") + L * d * h, 2, d, h},
            {"ffn_up.weight", T("w3") + L * h * d, 2, h, d},
        };
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s", l, parts[k].suffix);
            if ((st = add_fill(w, &pool, nm, parts[k].src, LLMOPS_DTYPE_F32, parts[k].nd, parts[k].rows, parts[k].cols,
                               req, XF_NONE, 0, NULL, err)))
                goto done;
        }
    }
    if ((st = add_fill(w, &pool, "output_norm.weight", T("rms_final_weight"), LLMOPS_DTYPE_F32, 1, d, 1, req, XF_NONE,
                       0, NULL, err)))
        goto done;
    if (!m->shared_classifier &&
        (st = add_fill(w, &pool, "output.weight", T("wcls"), LLMOPS_DTYPE_F32, 2, V, d, req, XF_NONE, 0, NULL, err)))
        goto done;
#undef T
    st = llmops_gguf_writer_write(w, out, err);
done:
    llmops_gguf_writer_free(w);
    llmops_free(pool.fills);
    llmops_llama2c_free(m);
    llmops_free(vocab_path);
    llmops_free(name);
    return st;
}

/* ---- Hugging Face folder → GGUF ---------------------------------------------------- */

/* Strips the prefixes some checkpoints carry ("transformer.", "bert.", "model." for GPT-2/BERT). */
static const char *strip_prefix(const char *name, llmops_arch_family f) {
    if (f == LLMOPS_ARCH_GPT2 && strncmp(name, "transformer.", 12) == 0) return name + 12;
    if (f == LLMOPS_ARCH_BERT && strncmp(name, "bert.", 5) == 0) return name + 5;
    if (f == LLMOPS_ARCH_BERT && strncmp(name, "model.", 6) == 0) return name + 6;
    return name;
}

static llmops_status hf_to_gguf(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err) {
    llmops_arch a;
    llmops_st_model *sm = NULL;
    llmops_gguf_writer *w = NULL;
    fill_pool pool = {0};
    char *name = NULL, *cfg = llmops_path_join(in, "config.json");
    float *rope_factors = NULL;
    if (!cfg) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    llmops_status st = llmops_arch_from_hf_config_file(cfg, &a, err);
    llmops_free(cfg);
    if (st) return st;
    if ((st = llmops_st_model_open(in, &sm, err))) return st;
    size_t n_names;
    const conv_name *names = conv_names(a.family, &n_names);
    size_t nt = llmops_st_model_n_tensors(sm);
    w = llmops_gguf_writer_create();
    name = o->name ? llmops_strdup(o->name) : default_name(in);
    pool.cap = nt + 2;
    pool.fills = llmops_malloc(pool.cap * sizeof *pool.fills);
    if (!w || !name || !pool.fills) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* the file type follows the first 2-D weight's output type */
    int req = o->out_type, main_type = -1;
    for (size_t i = 0; i < nt && main_type < 0; i++) {
        const llmops_st_tensor *t = llmops_st_model_tensor_at(sm, i, NULL);
        if (t->n_dims >= 2 && is_float(t->type)) main_type = out_type_for(t->type, t->n_dims, req);
    }
    if ((st = write_arch_kv(w, &a, name, (int)file_type_of(main_type), err))) goto done;
    if ((st = vocab_into(w, in, err))) goto done;
    int have_output = 0;
    const void *embd_src = NULL;
    const llmops_st_tensor *embd_t = NULL;
    for (size_t i = 0; i < nt; i++) {
        const llmops_safetensors *shard;
        const llmops_st_tensor *t = llmops_st_model_tensor_at(sm, i, &shard);
        const char *hn = strip_prefix(t->name, a.family);
        if (conv_hf_ignored(hn)) continue;
        size_t k;
        int layer = -1;
        for (k = 0; k < n_names; k++)
            if (conv_match(names[k].hf, hn, &layer)) break;
        if (k == n_names) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' has no GGUF name for %s models", in,
                                  t->name, a.hf_model_type);
            goto done;
        }
        if (layer >= a.n_layers) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' is for layer %d but the model has %lld", in,
                                  t->name, layer, (long long)a.n_layers);
            goto done;
        }
        if (!is_float(t->type)) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; only float tensors convert",
                                  in, t->name, llmops_dtype_name(t->type));
            goto done;
        }
        if (t->n_dims < 1 || t->n_dims > 2) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions; expected 1 or 2", in,
                                  t->name, t->n_dims);
            goto done;
        }
        char gn[128];
        conv_format(names[k].gguf, layer, gn, sizeof gn);
        conv_xform xf = names[k].xf;
        int nh = xf == XF_PERMUTE_Q ? (int)a.n_heads : (int)a.n_kv_heads;
        uint64_t rows = t->shape[0], cols = t->n_dims == 2 ? t->shape[1] : 1;
        const void *src = llmops_safetensors_data(shard, t);
        if ((st = add_fill(w, &pool, gn, src, t->type, t->n_dims, rows, cols, req, xf, nh, NULL, err))) goto done;
        if (strcmp(gn, "output.weight") == 0) have_output = 1;
        if (strcmp(gn, "token_embd.weight") == 0) {
            embd_src = src;
            embd_t = t;
        }
    }
    /* GPT-2's output is tied to wte; llama.cpp's converter writes it out as output.weight */
    if (a.family == LLMOPS_ARCH_GPT2 && !have_output && embd_t &&
        (st = add_fill(w, &pool, "output.weight", embd_src, embd_t->type, 2, embd_t->shape[0], embd_t->shape[1], req,
                       XF_NONE, 0, NULL, err)))
        goto done;
    if (a.rope_scaling == LLMOPS_ROPE_SCALING_LLAMA3) {
        int64_t nf = a.rope_dim / 2;
        rope_factors = llmops_malloc((size_t)nf * sizeof(float));
        if (!rope_factors) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
        llama3_rope_factors(&a, rope_factors, nf);
        uint64_t ne = (uint64_t)nf;
        if ((st = llmops_gguf_writer_add_tensor(w, "rope_freqs.weight", LLMOPS_DTYPE_F32, 1, &ne, rope_factors, err)))
            goto done;
    }
    st = llmops_gguf_writer_write(w, out, err);
done:
    llmops_gguf_writer_free(w);
    llmops_free(pool.fills);
    llmops_free(rope_factors);
    llmops_st_model_free(sm);
    llmops_free(name);
    return st;
}

/* ---- GGUF → Hugging Face folder ---------------------------------------------------- */

static llmops_status gguf_u(const llmops_gguf *g, const char *arch, const char *key, int64_t *out, int required,
                            llmops_error *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint64_t v;
    llmops_status st = llmops_gguf_get_u64(g, k, &v, err);
    if (st == LLMOPS_ERR_NOT_FOUND && !required) return LLMOPS_OK;
    if (st) return st;
    *out = (int64_t)v;
    return LLMOPS_OK;
}

static llmops_status gguf_f(const llmops_gguf *g, const char *arch, const char *key, double *out, llmops_error *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    llmops_status st = llmops_gguf_get_f64(g, k, out, err);
    return st == LLMOPS_ERR_NOT_FOUND ? LLMOPS_OK : st;
}

llmops_status llmops_arch_from_gguf(const llmops_gguf *g, llmops_arch *a, llmops_error *err) {
    llmops_arch_init(a);
    llmops_gguf_str an;
    TRY(llmops_gguf_get_str(g, "general.architecture", &an, err));
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)(an.len < 31 ? an.len : 31), an.data);
    if (!strcmp(arch, "llama")) a->family = LLMOPS_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) a->family = LLMOPS_ARCH_QWEN2;
    else if (!strcmp(arch, "gpt2")) a->family = LLMOPS_ARCH_GPT2;
    else if (!strcmp(arch, "bert")) a->family = LLMOPS_ARCH_BERT;
    else return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "GGUF architecture '%s' is not supported", arch);
    snprintf(a->hf_model_type, sizeof a->hf_model_type, "%s", arch);
    TRY(gguf_u(g, arch, "context_length", &a->max_positions, 1, err));
    TRY(gguf_u(g, arch, "embedding_length", &a->hidden_size, 1, err));
    TRY(gguf_u(g, arch, "block_count", &a->n_layers, 1, err));
    TRY(gguf_u(g, arch, "feed_forward_length", &a->ffn_size, 1, err));
    TRY(gguf_u(g, arch, "attention.head_count", &a->n_heads, 1, err));
    a->n_kv_heads = a->n_heads;
    TRY(gguf_u(g, arch, "attention.head_count_kv", &a->n_kv_heads, 0, err));
    a->head_dim = a->n_heads ? a->hidden_size / a->n_heads : 0;
    TRY(gguf_u(g, arch, "attention.key_length", &a->head_dim, 0, err));
    const llmops_gguf_tensor *emb = llmops_gguf_find_tensor(g, "token_embd.weight");
    llmops_gguf_array toks;
    if (emb) a->vocab_size = (int64_t)emb->ne[1];
    else if (!llmops_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks, NULL)) a->vocab_size = (int64_t)toks.n;
    TRY(gguf_u(g, arch, "vocab_size", &a->vocab_size, 0, err));
    int bos = -1, eos = -1;
    uint64_t id;
    if (!llmops_gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &id, NULL)) bos = (int)id;
    if (!llmops_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &id, NULL)) eos = (int)id;
    a->bos_token_id = bos;
    a->eos_token_id = eos;
    if (!llmops_gguf_get_u64(g, "tokenizer.ggml.padding_token_id", &id, NULL) && id <= INT32_MAX)
        a->pad_token_id = (int64_t)id;
    a->tie_embeddings = llmops_gguf_find_tensor(g, "output.weight") == NULL;
    switch (a->family) {
    case LLMOPS_ARCH_LLAMA:
    case LLMOPS_ARCH_QWEN2:
        strcpy(a->hf_architecture, a->family == LLMOPS_ARCH_LLAMA ? "LlamaForCausalLM" : "Qwen2ForCausalLM");
        a->norm = LLMOPS_NORM_RMS;
        a->act = LLMOPS_ACT_SILU;
        a->gated_ffn = 1;
        a->pos = LLMOPS_POS_ROPE;
        TRY(gguf_f(g, arch, "attention.layer_norm_rms_epsilon", &a->norm_eps, err));
        TRY(gguf_f(g, arch, "rope.freq_base", &a->rope_theta, err));
        a->rope_dim = a->head_dim;
        TRY(gguf_u(g, arch, "rope.dimension_count", &a->rope_dim, 0, err));
        a->qkv_bias = llmops_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
        a->attn_out_bias = llmops_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
        {
            char k[128];
            llmops_gguf_str s;
            snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
            if (!llmops_gguf_get_str(g, k, &s, NULL)) {
                if (llmops_gguf_str_eq(s, "linear")) a->rope_scaling = LLMOPS_ROPE_SCALING_LINEAR;
                else if (llmops_gguf_str_eq(s, "yarn")) a->rope_scaling = LLMOPS_ROPE_SCALING_YARN;
                TRY(gguf_f(g, arch, "rope.scaling.factor", &a->rope_factor, err));
                TRY(gguf_u(g, arch, "rope.scaling.original_context_length", &a->rope_original_max_positions, 0, err));
            }
        }
        break;
    case LLMOPS_ARCH_GPT2:
        strcpy(a->hf_architecture, "GPT2LMHeadModel");
        a->norm = LLMOPS_NORM_LAYER;
        a->norm_bias = 1;
        a->pos = LLMOPS_POS_LEARNED;
        a->act = LLMOPS_ACT_GELU_TANH;
        a->qkv_bias = a->attn_out_bias = a->mlp_bias = 1;
        a->fused_qkv = 1;
        TRY(gguf_f(g, arch, "attention.layer_norm_epsilon", &a->norm_eps, err));
        /* llama.cpp writes GPT-2's tied output as a copy; equal bytes mean tied */
        {
            const llmops_gguf_tensor *out = llmops_gguf_find_tensor(g, "output.weight");
            a->tie_embeddings = !out || (emb && out->type == emb->type && out->nbytes == emb->nbytes &&
                                         memcmp(llmops_gguf_tensor_data(g, out), llmops_gguf_tensor_data(g, emb),
                                                (size_t)out->nbytes) == 0);
        }
        break;
    case LLMOPS_ARCH_BERT:
        strcpy(a->hf_architecture, "BertModel");
        a->norm = LLMOPS_NORM_LAYER;
        a->norm_bias = 1;
        a->pos = LLMOPS_POS_LEARNED;
        a->act = LLMOPS_ACT_GELU;
        a->qkv_bias = a->attn_out_bias = a->mlp_bias = 1;
        a->causal = 0;
        TRY(gguf_f(g, arch, "attention.layer_norm_epsilon", &a->norm_eps, err));
        {
            const llmops_gguf_tensor *tt = llmops_gguf_find_tensor(g, "token_types.weight");
            a->type_vocab_size = tt ? (int64_t)tt->ne[1] : 2;
        }
        break;
    default: break;
    }
    TRY(llmops_arch_validate(a, err));
    return LLMOPS_OK;
}

static json_t *hf_config_json(const llmops_arch *a) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
#define SET(k, v) bad |= json_object_set_new(o, k, v)
    SET("architectures", json_pack("[s]", a->hf_architecture));
    SET("model_type", json_string(a->hf_model_type));
    if (a->family == LLMOPS_ARCH_GPT2) {
        SET("n_embd", json_integer(a->hidden_size));
        SET("n_layer", json_integer(a->n_layers));
        SET("n_head", json_integer(a->n_heads));
        SET("n_positions", json_integer(a->max_positions));
        SET("n_ctx", json_integer(a->max_positions));
        SET("n_inner", json_integer(a->ffn_size));
        SET("layer_norm_epsilon", json_real(a->norm_eps));
        SET("activation_function", json_string("gelu_new"));
    } else {
        SET("hidden_size", json_integer(a->hidden_size));
        SET("intermediate_size", json_integer(a->ffn_size));
        SET("num_hidden_layers", json_integer(a->n_layers));
        SET("num_attention_heads", json_integer(a->n_heads));
        SET("max_position_embeddings", json_integer(a->max_positions));
        if (a->family == LLMOPS_ARCH_BERT) {
            SET("layer_norm_eps", json_real(a->norm_eps));
            SET("hidden_act", json_string("gelu"));
            SET("type_vocab_size", json_integer(a->type_vocab_size));
        } else {
            SET("num_key_value_heads", json_integer(a->n_kv_heads));
            SET("head_dim", json_integer(a->head_dim));
            SET("rms_norm_eps", json_real(a->norm_eps));
            SET("rope_theta", json_real(a->rope_theta));
            SET("hidden_act", json_string("silu"));
            if (a->family == LLMOPS_ARCH_LLAMA) SET("attention_bias", json_boolean(a->qkv_bias));
            if (a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR || a->rope_scaling == LLMOPS_ROPE_SCALING_YARN) {
                json_t *rs = json_object();
                bad |= !rs;
                if (rs) {
                    bad |= json_object_set_new(rs, "rope_type",
                                               json_string(a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR ? "linear" : "yarn"));
                    bad |= json_object_set_new(rs, "factor", json_real(a->rope_factor));
                    if (a->rope_original_max_positions)
                        bad |= json_object_set_new(rs, "original_max_position_embeddings",
                                                   json_integer(a->rope_original_max_positions));
                }
                SET("rope_scaling", rs);
            }
        }
    }
    SET("vocab_size", json_integer(a->vocab_size));
    SET("tie_word_embeddings", json_boolean(a->tie_embeddings));
    if (a->bos_token_id >= 0) SET("bos_token_id", json_integer(a->bos_token_id));
    if (a->eos_token_id >= 0) SET("eos_token_id", json_integer(a->eos_token_id));
    if (a->pad_token_id >= 0) SET("pad_token_id", json_integer(a->pad_token_id));
    SET("torch_dtype", json_string("float32"));
#undef SET
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static const char *torch_dtype_name(int t) {
    return t == LLMOPS_DTYPE_F16 ? "float16" : t == LLMOPS_DTYPE_BF16 ? "bfloat16" : "float32";
}

static llmops_status gguf_to_hf(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err) {
    llmops_gguf *g = NULL;
    llmops_st_writer *sw = NULL;
    fill_ctx *fills = NULL;
    json_t *cfg = NULL;
    char *cfg_path = NULL;
    llmops_status st = llmops_gguf_open(in, &g, err);
    if (st) return st;
    llmops_arch a;
    if ((st = llmops_arch_from_gguf(g, &a, err))) {
        llmops_error_prefix(err, "%s: ", in);
        goto done;
    }
    size_t n_names;
    const conv_name *names = conv_names(a.family, &n_names);
    size_t nt = llmops_gguf_n_tensors(g);
    sw = llmops_st_writer_create();
    fills = llmops_calloc(nt ? nt : 1, sizeof *fills);
    if (!sw || !fills) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    int main_type = -1;
    for (size_t i = 0; i < nt; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)(t->name.len < 127 ? t->name.len : 127), t->name.data);
        if (!strcmp(tn, "rope_freqs.weight")) continue; /* derived from config.json's rope_scaling */
        if (!strcmp(tn, "output.weight") && a.tie_embeddings) continue;
        size_t k;
        int layer = -1;
        for (k = 0; k < n_names; k++)
            if (conv_match(names[k].gguf, tn, &layer)) break;
        if (k == n_names) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' has no Hugging Face name for %s", in, tn,
                                  a.hf_model_type);
            goto done;
        }
        if (t->n_dims > 2) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions", in, tn, t->n_dims);
            goto done;
        }
        const llmops_dtype_info *ti = llmops_dtype_get(t->type);
        int src_float = is_float(t->type);
        if (!src_float && !ti->quantized) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot be exported", in, tn,
                                  ti->name);
            goto done;
        }
        /* export keeps the source float type unless asked; quantized tensors become F32 (or the requested type) */
        int dt = o->out_type >= 0 ? o->out_type : src_float ? (int)t->type : LLMOPS_DTYPE_F32;
        if (t->n_dims == 2 && main_type < 0) main_type = dt;
        uint64_t rows = t->n_dims == 2 ? t->ne[1] : t->ne[0], cols = t->n_dims == 2 ? t->ne[0] : 1;
        conv_xform xf = names[k].xf;
        fill_ctx *c = &fills[i];
        *c = (fill_ctx){llmops_gguf_tensor_data(g, t), (int)t->type, dt, rows, cols, xf,
                        xf == XF_PERMUTE_Q ? (int)a.n_heads : (int)a.n_kv_heads, 1};
        uint64_t shape[2];
        if (xf == XF_TRANSPOSE) {
            /* GGUF rows × cols back to Conv1D's [in, out] = [cols, rows]: transpose of the GGUF view */
            shape[0] = cols;
            shape[1] = rows;
        } else {
            shape[0] = rows;
            shape[1] = cols;
        }
        char hn[160];
        conv_format(names[k].hf, layer, hn, sizeof hn);
        if ((st = llmops_st_writer_add_fn(sw, hn, (llmops_dtype)dt, t->n_dims, shape, fill_tensor, c, err))) goto done;
    }
    if ((st = llmops_st_writer_set_metadata(sw, "format", "pt", err))) goto done;
    if ((st = llmops_st_writer_write_dir(sw, out, o->max_shard_bytes ? o->max_shard_bytes : 5000000000ull, err)))
        goto done;
    cfg = hf_config_json(&a);
    if (!cfg || json_object_set_new(cfg, "torch_dtype", json_string(torch_dtype_name(main_type)))) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    cfg_path = llmops_path_join(out, "config.json");
    st = cfg_path ? llmops_json_write_file(cfg, cfg_path, 2, err) : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
done:
    json_decref(cfg);
    llmops_free(cfg_path);
    llmops_free(fills);
    llmops_st_writer_free(sw);
    llmops_gguf_free(g);
    return st;
}

/* ---- GGUF → GGUF (type change) ----------------------------------------------------- */

static llmops_status gguf_to_gguf(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err) {
    llmops_gguf *g = NULL;
    llmops_gguf_writer *w = NULL;
    fill_ctx *fills = NULL;
    llmops_status st = llmops_gguf_open(in, &g, err);
    if (st) return st;
    size_t nt = llmops_gguf_n_tensors(g);
    w = llmops_gguf_writer_create();
    fills = llmops_calloc(nt ? nt : 1, sizeof *fills);
    if (!w || !fills) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < llmops_gguf_n_kv(g); i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        if ((st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, err))) goto done;
    }
    if (o->out_type >= 0 &&
        (st = llmops_gguf_writer_set_u32(w, "general.file_type", file_type_of(o->out_type), err)))
        goto done;
    for (size_t i = 0; i < nt; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)(t->name.len < 127 ? t->name.len : 127), t->name.data);
        const void *src = llmops_gguf_tensor_data(g, t);
        if (o->out_type < 0 || !is_float(t->type)) {
            if ((st = llmops_gguf_writer_add_tensor(w, tn, t->type, t->n_dims, t->ne, src, err))) goto done;
            continue;
        }
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
        int dt = out_type_for(t->type, t->n_dims, o->out_type);
        fills[i] = (fill_ctx){src, (int)t->type, dt, n, 1, XF_NONE, 0, 0};
        if ((st = llmops_gguf_writer_add_tensor_fn(w, tn, (llmops_dtype)dt, t->n_dims, t->ne, fill_tensor, &fills[i], err)))
            goto done;
    }
    st = llmops_gguf_writer_write(w, out, err);
done:
    llmops_free(fills);
    llmops_gguf_writer_free(w);
    llmops_gguf_free(g);
    return st;
}

llmops_status llmops_convert(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err) {
    llmops_convert_opts def;
    if (!o) {
        llmops_convert_opts_init(&def);
        o = &def;
    }
    if (o->out_type >= 0 && o->out_type != LLMOPS_DTYPE_F32 && o->out_type != LLMOPS_DTYPE_F16 &&
        o->out_type != LLMOPS_DTYPE_BF16)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "output type must be f32, f16 or bf16");
    llmops_model_format f = llmops_detect_format(in);
    int to_gguf = ends_with(out, ".gguf");
    switch (f) {
    case LLMOPS_FORMAT_LLAMA2C:
        if (!to_gguf) break;
        return llama2c_to_gguf(in, out, o, err);
    case LLMOPS_FORMAT_HF_DIR:
        if (!to_gguf) break;
        return hf_to_gguf(in, out, o, err);
    case LLMOPS_FORMAT_GGUF:
        return to_gguf ? gguf_to_gguf(in, out, o, err) : gguf_to_hf(in, out, o, err);
    case LLMOPS_FORMAT_SAFETENSORS:
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: a bare safetensors file has no config.json; convert its Hugging Face folder", in);
    default:
        if (!llmops_path_is_dir(in) && !llmops_path_is_file(in))
            return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no such file or folder", in);
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: not a GGUF file, Hugging Face folder (config.json) or llama2.c checkpoint", in);
    }
    return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                            "%s (%s) converts to GGUF only: give an output path ending in .gguf", in,
                            llmops_model_format_name(f));
}

/* ---- a model from tensors in memory ------------------------------------------------- */

llmops_status llmops_gguf_write_model(const llmops_arch *a, const llmops_tokenizer *tok, const char *name,
                                      const llmops_named_f32 *ts, size_t n, int hf_row_order, int out_type,
                                      const char *path, llmops_error *err) {
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    fill_pool pool = {0};
    float *rope_factors = NULL;
    llmops_status st = LLMOPS_OK;
    pool.cap = n + 1;
    pool.fills = llmops_malloc(pool.cap * sizeof *pool.fills);
    if (!w || !pool.fills) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    int req = out_type < 0 ? LLMOPS_DTYPE_F32 : out_type;
    if ((st = write_arch_kv(w, a, name, (int)file_type_of(req), err))) goto done;
    if (tok && (st = llmops_tokenizer_to_gguf(tok, w, err))) goto done;
    int permute = hf_row_order && (a->family == LLMOPS_ARCH_LLAMA || a->family == LLMOPS_ARCH_MISTRAL);
    for (size_t i = 0; i < n; i++) {
        const char *nm = ts[i].name;
        size_t len = strlen(nm);
        conv_xform xf = XF_NONE;
        int nh = 0;
        if (permute && len > 14 && !strcmp(nm + len - 14, ".attn_q.weight")) {
            xf = XF_PERMUTE_Q;
            nh = (int)a->n_heads;
        } else if (permute && len > 14 && !strcmp(nm + len - 14, ".attn_k.weight")) {
            xf = XF_PERMUTE_K;
            nh = (int)a->n_kv_heads;
        }
        uint32_t nd = ts[i].rows <= 1 ? 1 : 2;
        uint64_t rows = nd == 1 ? (uint64_t)ts[i].cols : (uint64_t)ts[i].rows, cols = nd == 1 ? 1 : (uint64_t)ts[i].cols;
        if ((st = add_fill(w, &pool, nm, ts[i].data, LLMOPS_DTYPE_F32, nd, rows, cols, req, xf, nh, NULL, err)))
            goto done;
    }
    if (a->rope_scaling == LLMOPS_ROPE_SCALING_LLAMA3) {
        int64_t nf = a->rope_dim / 2;
        rope_factors = llmops_malloc((size_t)nf * sizeof(float));
        if (!rope_factors) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
        llama3_rope_factors(a, rope_factors, nf);
        uint64_t ne = (uint64_t)nf;
        if ((st = llmops_gguf_writer_add_tensor(w, "rope_freqs.weight", LLMOPS_DTYPE_F32, 1, &ne, rope_factors, err)))
            goto done;
    }
    st = llmops_gguf_writer_write(w, path, err);
done:
    llmops_gguf_writer_free(w);
    llmops_free(pool.fills);
    llmops_free(rope_factors);
    return st;
}
