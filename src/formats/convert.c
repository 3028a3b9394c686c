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
#include "llmops/llama2c.h"
#include "llmops/log.h"
#include "llmops/safetensors.h"

/* llama.cpp's token types (llama_token_type / gguf TokenType) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };
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
    llmops_mmap m;
    if (llmops_mmap_open(path, &m, NULL)) return LLMOPS_FORMAT_UNKNOWN;
    llmops_model_format f = LLMOPS_FORMAT_UNKNOWN;
    if (m.size >= 4 && memcmp(m.data, "GGUF", 4) == 0) f = LLMOPS_FORMAT_GGUF;
    else if (m.size >= 9 && m.data[8] == '{') {
        uint64_t hl;
        memcpy(&hl, m.data, 8);
        if (hl <= m.size - 8) f = LLMOPS_FORMAT_SAFETENSORS;
    }
    if (f == LLMOPS_FORMAT_UNKNOWN && llmops_llama2c_sniff(m.data, m.size)) f = LLMOPS_FORMAT_LLAMA2C;
    llmops_mmap_close(&m);
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
        if ((st = llmops_dequantize_ref(c->src_type, c->src, deq, (size_t)n, err))) goto done;
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

/* ---- tokenizers into GGUF ------------------------------------------------------- */

/* llama2.c wrote SentencePiece pieces with '▁' turned into ' ' and BOS/EOS as
 * "\n<s>\n" / "\n</s>\n"; this restores the SentencePiece spelling. */
static llmops_status vocab_from_llama2c(llmops_gguf_writer *w, const llmops_llama2c_vocab *v, llmops_error *err) {
    size_t n = v->n;
    char **toks = llmops_calloc(n ? n : 1, sizeof *toks);
    size_t *lens = llmops_calloc(n ? n : 1, sizeof *lens);
    int32_t *types = llmops_calloc(n ? n : 1, sizeof *types);
    llmops_status st = LLMOPS_OK;
    if (!toks || !lens || !types) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory converting the vocabulary");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = v->pieces[i];
        uint32_t len = v->lens[i];
        if (i == 1 && strcmp(p, "\n<s>\n") == 0) p = "<s>", len = 3;
        else if (i == 2 && strcmp(p, "\n</s>\n") == 0) p = "</s>", len = 4;
        /* each ' ' becomes the 3-byte '▁' */
        size_t spaces = 0;
        for (uint32_t k = 0; k < len; k++) spaces += p[k] == ' ';
        toks[i] = llmops_malloc(len + spaces * 2 + 1);
        if (!toks[i]) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory converting the vocabulary");
            goto done;
        }
        size_t o = 0;
        for (uint32_t k = 0; k < len; k++) {
            if (p[k] == ' ') {
                memcpy(toks[i] + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                toks[i][o++] = p[k];
            }
        }
        toks[i][o] = '\0';
        lens[i] = o;
        unsigned byte;
        char tail;
        if (i == 0) types[i] = TT_UNKNOWN;
        else if (i == 1 || i == 2 || len == 0) types[i] = TT_CONTROL;
        else if (len == 6 && sscanf(p, "<0x%2X>%c", &byte, &tail) == 1) types[i] = TT_BYTE;
        else types[i] = TT_NORMAL;
    }
    if ((st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err)) ||
        (st = llmops_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, lens, n, err)) ||
        (st = llmops_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LLMOPS_GGUF_FLOAT32, v->scores, n, err)) ||
        (st = llmops_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LLMOPS_GGUF_INT32, types, n, err)) ||
        (st = llmops_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err)) ||
        (st = llmops_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err)) ||
        (st = llmops_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err)) ||
        (st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1, err)) ||
        (st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 0, err)))
        goto done;
done:
    if (toks)
        for (size_t i = 0; i < n; i++) llmops_free(toks[i]);
    llmops_free(toks);
    llmops_free(lens);
    llmops_free(types);
    return st;
}

/* A special token in tokenizer_config.json is "text" or {"content": "text"}. */
static const char *special_content(const json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int has_type(const json_t *node, const char *type) {
    if (!json_is_object(node)) return 0;
    json_t *t = json_object_get(node, "type");
    if (json_is_string(t) && strcmp(json_string_value(t), type) == 0) return 1;
    json_t *seq = json_object_get(node, "pretokenizers");
    if (!seq) seq = json_object_get(node, "decoders");
    size_t i;
    json_t *e;
    json_array_foreach(seq, i, e) if (has_type(e, type)) return 1;
    return 0;
}

typedef struct {
    char **toks;
    size_t *lens;
    int32_t *types;
    size_t n;
} hf_vocab;

static void hf_vocab_free(hf_vocab *v) {
    if (v->toks)
        for (size_t i = 0; i < v->n; i++) llmops_free(v->toks[i]);
    llmops_free(v->toks);
    llmops_free(v->lens);
    llmops_free(v->types);
}

static llmops_status set_tok(hf_vocab *v, int64_t id, const char *text, size_t len, int32_t type, const char *origin,
                             llmops_error *err) {
    if (id < 0 || (uint64_t)id >= v->n)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: token '%s' has id %lld outside the vocabulary of %zu",
                                origin, text, (long long)id, v->n);
    char *c = llmops_strndup(text, len);
    if (!c) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    llmops_free(v->toks[id]);
    v->toks[id] = c;
    v->lens[id] = len;
    v->types[id] = type;
    return LLMOPS_OK;
}

static int64_t find_token(const hf_vocab *v, const char *text) {
    size_t n = strlen(text);
    for (size_t i = 0; i < v->n; i++)
        if (v->toks[i] && v->lens[i] == n && memcmp(v->toks[i], text, n) == 0) return (int64_t)i;
    return -1;
}

/*
 * tokenizer.json (+ tokenizer_config.json) → tokenizer.ggml.*: byte-level BPE
 * becomes llama.cpp's "gpt2" model with merges, WordPiece its "bert" model
 * (with llama.cpp's phantom-space spelling). Ids missing from the vocabulary
 * up to the model's vocab_size are filled with "[PAD<id>]" (UNUSED).
 */
static llmops_status vocab_from_hf(llmops_gguf_writer *w, const char *dir, const llmops_arch *a, llmops_error *err) {
    char *tj_path = llmops_path_join(dir, "tokenizer.json");
    char *tc_path = llmops_path_join(dir, "tokenizer_config.json");
    char *ct_path = llmops_path_join(dir, "chat_template.jinja");
    json_t *tj = NULL, *tc = NULL;
    hf_vocab v = {0};
    char **merges = NULL;
    size_t n_merges = 0;
    char *template_text = NULL;
    llmops_status st = LLMOPS_OK;
    if (!tj_path || !tc_path || !ct_path) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!llmops_path_is_file(tj_path)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no tokenizer.json: a GGUF model needs its vocabulary", dir);
        goto done;
    }
    if ((st = llmops_json_load_file(tj_path, 256u << 20, &tj, err))) goto done;
    if (llmops_path_is_file(tc_path) && (st = llmops_json_load_file(tc_path, 64u << 20, &tc, err))) goto done;
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = json_object_get(model, "vocab");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(vocab) || !mtype) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"model\" needs a \"type\" and a \"vocab\" object", tj_path);
        goto done;
    }
    int bpe = strcmp(mtype, "BPE") == 0, wordpiece = strcmp(mtype, "WordPiece") == 0;
    int byte_level = has_type(json_object_get(tj, "pre_tokenizer"), "ByteLevel") ||
                     has_type(json_object_get(tj, "decoder"), "ByteLevel");
    if (!(bpe && byte_level) && !wordpiece) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                              "%s: model type %s%s is not converted; supported: byte-level BPE and WordPiece", tj_path,
                              mtype, bpe ? " without a ByteLevel pre-tokenizer (SentencePiece-style)" : "");
        goto done;
    }
    /* the id space: the model's vocab_size, grown to cover every id seen */
    int64_t n = a->vocab_size;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: model.vocab[\"%s\"] must be a token id", tj_path, key);
            goto done;
        }
        if (json_integer_value(val) >= n) n = json_integer_value(val) + 1;
    }
    json_t *added = json_object_get(tj, "added_tokens");
    size_t ai;
    json_t *at;
    json_array_foreach(added, ai, at) {
        json_t *id = json_object_get(at, "id");
        if (json_is_integer(id) && json_integer_value(id) >= n && json_integer_value(id) < (1 << 24))
            n = json_integer_value(id) + 1;
    }
    v.n = (size_t)n;
    v.toks = llmops_calloc(v.n, sizeof *v.toks);
    v.lens = llmops_calloc(v.n, sizeof *v.lens);
    v.types = llmops_calloc(v.n, sizeof *v.types);
    if (!v.toks || !v.lens || !v.types) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_object_foreach(vocab, key, val) {
        char buf[1024];
        const char *text = key;
        size_t len = strlen(key);
        if (wordpiece && !(key[0] == '[' && key[len ? len - 1 : 0] == ']')) {
            /* llama.cpp's BERT vocab: "##x" → "x", otherwise "▁" + word */
            if (strncmp(key, "##", 2) == 0) text = key + 2, len -= 2;
            else if (len + 4 < sizeof buf) {
                snprintf(buf, sizeof buf, "\xe2\x96\x81%s", key);
                text = buf;
                len += 3;
            }
        }
        if ((st = set_tok(&v, json_integer_value(val), text, len, TT_NORMAL, tj_path, err))) goto done;
    }
    json_array_foreach(added, ai, at) {
        json_t *id = json_object_get(at, "id"), *content = json_object_get(at, "content");
        if (!json_is_integer(id) || !json_is_string(content)) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: added_tokens[%zu] needs \"id\" and \"content\"", tj_path, ai);
            goto done;
        }
        int special = json_is_true(json_object_get(at, "special"));
        if ((st = set_tok(&v, json_integer_value(id), json_string_value(content), json_string_length(content),
                          special ? TT_CONTROL : TT_USER_DEFINED, tj_path, err)))
            goto done;
    }
    for (size_t i = 0; i < v.n; i++) {
        if (v.toks[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        if ((st = set_tok(&v, (int64_t)i, pad, strlen(pad), TT_UNUSED, tj_path, err))) goto done;
    }
    if (wordpiece)
        for (size_t i = 0; i < v.n; i++)
            if (v.types[i] == TT_NORMAL && v.lens[i] > 2 && v.toks[i][0] == '[' && v.toks[i][v.lens[i] - 1] == ']')
                v.types[i] = TT_CONTROL;
    if (bpe) {
        json_t *jm = json_object_get(model, "merges");
        n_merges = json_array_size(jm);
        merges = llmops_calloc(n_merges ? n_merges : 1, sizeof *merges);
        if (!merges) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n_merges; i++) {
            json_t *m = json_array_get(jm, i);
            if (json_is_string(m)) merges[i] = llmops_strdup(json_string_value(m));
            else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                     json_is_string(json_array_get(m, 1))) {
                const char *l = json_string_value(json_array_get(m, 0)), *r = json_string_value(json_array_get(m, 1));
                size_t ml = strlen(l) + strlen(r) + 2;
                merges[i] = llmops_malloc(ml);
                if (merges[i]) snprintf(merges[i], ml, "%s %s", l, r);
            } else {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: model.merges[%zu] must be \"a b\" or [a, b]", tj_path, i);
                goto done;
            }
            if (!merges[i]) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    }
    const char *pre = a->family == LLMOPS_ARCH_GPT2    ? "gpt-2"
                      : a->family == LLMOPS_ARCH_QWEN2 ? "qwen2"
                      : a->family == LLMOPS_ARCH_LLAMA ? "llama-bpe"
                                                       : "default";
    if ((st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.model", wordpiece ? "bert" : "gpt2", err))) goto done;
    if (bpe && (st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, err))) goto done;
    if (wordpiece && (st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default", err))) goto done;
    if ((st = llmops_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.toks, v.lens, v.n, err)) ||
        (st = llmops_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LLMOPS_GGUF_INT32, v.types, v.n, err)))
        goto done;
    if (bpe && (st = llmops_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL,
                                                    n_merges, err)))
        goto done;
    /* special token ids: by text from tokenizer_config.json, else config.json's ids */
    static const struct {
        const char *cfg_key, *gguf_key;
    } specials[] = {{"bos_token", "tokenizer.ggml.bos_token_id"},      {"eos_token", "tokenizer.ggml.eos_token_id"},
                    {"unk_token", "tokenizer.ggml.unknown_token_id"},  {"sep_token", "tokenizer.ggml.seperator_token_id"},
                    {"pad_token", "tokenizer.ggml.padding_token_id"},  {"cls_token", "tokenizer.ggml.cls_token_id"},
                    {"mask_token", "tokenizer.ggml.mask_token_id"}};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        const char *text = tc ? special_content(tc, specials[i].cfg_key) : NULL;
        int64_t id = text ? find_token(&v, text) : -1;
        if (id < 0 && i == 0) id = a->bos_token_id;
        if (id < 0 && i == 1) id = a->eos_token_id;
        if (id < 0 && i == 4) id = a->pad_token_id;
        if (id >= 0 && (uint64_t)id < v.n &&
            (st = llmops_gguf_writer_set_u32(w, specials[i].gguf_key, (uint32_t)id, err)))
            goto done;
    }
    if (tc) {
        json_t *ab = json_object_get(tc, "add_bos_token"), *ae = json_object_get(tc, "add_eos_token");
        if (json_is_boolean(ab) && (st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(ab), err)))
            goto done;
        if (json_is_boolean(ae) && (st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", json_is_true(ae), err)))
            goto done;
    }
    /* chat template: chat_template.jinja, or tokenizer_config.json's chat_template
     * (a string, or a list of {name, template} whose "default" is the main one) */
    const char *tmpl = NULL;
    if (llmops_path_is_file(ct_path)) {
        if ((st = llmops_file_read_all(ct_path, 4u << 20, &template_text, NULL, err))) goto done;
        tmpl = template_text;
    } else if (tc) {
        json_t *ct = json_object_get(tc, "chat_template");
        if (json_is_string(ct)) tmpl = json_string_value(ct);
        size_t ci;
        json_t *ce;
        json_array_foreach(ct, ci, ce) {
            const char *nm = json_string_value(json_object_get(ce, "name"));
            const char *tx = json_string_value(json_object_get(ce, "template"));
            if (!nm || !tx) continue;
            if (strcmp(nm, "default") == 0) tmpl = tx;
            else {
                char k[160];
                snprintf(k, sizeof k, "tokenizer.chat_template.%s", nm);
                if ((st = llmops_gguf_writer_set_str(w, k, tx, err))) goto done;
            }
        }
    }
    if (tmpl && (st = llmops_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl, err))) goto done;
done:
    if (merges)
        for (size_t i = 0; i < n_merges; i++) llmops_free(merges[i]);
    llmops_free(merges);
    hf_vocab_free(&v);
    llmops_free(template_text);
    json_decref(tj);
    json_decref(tc);
    llmops_free(tj_path);
    llmops_free(tc_path);
    llmops_free(ct_path);
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
    llmops_llama2c_vocab v = {0};
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
    if ((st = llmops_llama2c_vocab_load(vocab_path, (size_t)m->vocab_size, &v, err))) goto done;
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
    if ((st = vocab_from_llama2c(w, &v, err))) goto done;
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
    llmops_llama2c_vocab_free(&v);
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
    if ((st = vocab_from_hf(w, in, &a, err))) goto done;
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
