#include "llmops/llama2c.h"

#include <string.h>

#include "llmops/alloc.h"
#include "llmops/fileio.h"

#define AK42_MAGIC 0x616b3432u
#define V1_HEADER 256

typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_config;

static int plausible(const l2c_config *c) {
    if (c->vocab_size == INT32_MIN) return 0; /* its negation overflows */
    int32_t v = c->vocab_size < 0 ? -c->vocab_size : c->vocab_size;
    return c->dim > 0 && c->hidden_dim > 0 && c->n_layers > 0 && c->n_heads > 0 && c->n_kv_heads > 0 && v > 0 &&
           c->seq_len > 0 && c->dim <= (1 << 16) && c->hidden_dim <= (1 << 18) && c->n_layers <= 1024 &&
           c->n_heads <= 1024 && c->n_kv_heads <= c->n_heads && v <= (1 << 24) && c->seq_len <= (1 << 24) &&
           c->dim % c->n_heads == 0 && c->n_heads % c->n_kv_heads == 0;
}

/* Float counts of each weight group, in llama2.c's order for the layout `version`. */
typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t shape[3];
} l2c_spec;

static size_t layout(const l2c_config *c, int version, int shared, l2c_spec *out) {
    uint64_t L = (uint64_t)c->n_layers, d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim;
    uint64_t V = (uint64_t)(c->vocab_size < 0 ? -c->vocab_size : c->vocab_size);
    uint64_t hs = d / (uint64_t)c->n_heads, kv = d * (uint64_t)c->n_kv_heads / (uint64_t)c->n_heads;
    uint64_t S = (uint64_t)c->seq_len;
    size_t n = 0;
#define ADD(nm, nd, a, b, cc) out[n++] = (l2c_spec){nm, nd, {a, b, cc}}
    if (version == 0) {
        ADD("token_embedding_table", 2, V, d, 0);
        ADD("rms_att_weight", 2, L, d, 0);
        ADD("wq", 3, L, d, d);
        ADD("wk", 3, L, kv, d);
        ADD("wv", 3, L, kv, d);
        ADD("wo", 3, L, d, d);
        ADD("rms_ffn_weight", 2, L, d, 0);
        ADD("w1", 3, L, h, d);
        ADD("w2", 3, L, d, h);
        ADD("w3", 3, L, h, d);
        ADD("rms_final_weight", 1, d, 0, 0);
        ADD("freq_cis_real", 2, S, hs / 2, 0);
        ADD("freq_cis_imag", 2, S, hs / 2, 0);
    } else {
        /* export.py version1_export: the norms first, then the embedding */
        ADD("rms_att_weight", 2, L, d, 0);
        ADD("rms_ffn_weight", 2, L, d, 0);
        ADD("rms_final_weight", 1, d, 0, 0);
        ADD("token_embedding_table", 2, V, d, 0);
        ADD("wq", 3, L, d, d);
        ADD("wk", 3, L, kv, d);
        ADD("wv", 3, L, kv, d);
        ADD("wo", 3, L, d, d);
        ADD("w1", 3, L, h, d);
        ADD("w2", 3, L, d, h);
        ADD("w3", 3, L, h, d);
    }
    if (!shared) ADD("wcls", 2, V, d, 0);
#undef ADD
    return n;
}

static uint64_t spec_floats(const l2c_spec *s) {
    uint64_t n = 1;
    for (uint32_t i = 0; i < s->n_dims; i++) n *= s->shape[i];
    return n;
}

static uint64_t total_floats(const l2c_spec *s, size_t n) {
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t += spec_floats(&s[i]);
    return t;
}

/* Reads the header; returns 0 if this is not a llama2.c checkpoint. */
static int read_header(const uint8_t *p, size_t size, l2c_config *c, int *version, int *shared, size_t *hdr) {
    if (size >= V1_HEADER) {
        uint32_t magic;
        int32_t ver;
        memcpy(&magic, p, 4);
        memcpy(&ver, p + 4, 4);
        if (magic == AK42_MAGIC) {
            memcpy(c, p + 8, sizeof *c);
            *version = ver;
            *shared = p[8 + sizeof *c] != 0;
            *hdr = V1_HEADER;
            return 1;
        }
    }
    if (size < sizeof *c) return 0;
    memcpy(c, p, sizeof *c);
    *version = 0;
    *shared = c->vocab_size > 0;
    *hdr = sizeof *c;
    return 1;
}

int llmops_llama2c_sniff(const void *data, size_t size) {
    l2c_config c;
    int version, shared;
    size_t hdr;
    if (!read_header(data, size, &c, &version, &shared, &hdr) || !plausible(&c)) return 0;
    if (version != 0 && version != 1) return 0;
    l2c_spec s[16];
    size_t n = layout(&c, version, shared, s);
    return hdr + total_floats(s, n) * 4 == size;
}

llmops_status llmops_llama2c_parse(const void *data, size_t size, const char *origin, llmops_llama2c **out,
                                   llmops_error *err) {
    *out = NULL;
    l2c_config c;
    int version, shared;
    size_t hdr;
    if (!read_header(data, size, &c, &version, &shared, &hdr))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c checkpoint", origin,
                                size);
    if (version != 0 && version != 1)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: llama2.c checkpoint version %d is not supported (legacy and version 1 are)", origin,
                                version);
    if (!plausible(&c))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: header (dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d "
                                "seq_len=%d) is not a valid llama2.c configuration",
                                origin, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                                c.seq_len);
    l2c_spec s[16];
    size_t n = layout(&c, version, shared, s);
    uint64_t want = hdr + total_floats(s, n) * 4;
    if (want != size)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: the header describes %llu bytes of weights but the file holds %zu bytes (truncated, "
                                "or not a llama2.c checkpoint)",
                                origin, (unsigned long long)want, size);
    llmops_llama2c *m = llmops_calloc(1, sizeof *m);
    if (!m) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    m->version = version;
    m->dim = c.dim;
    m->hidden_dim = c.hidden_dim;
    m->n_layers = c.n_layers;
    m->n_heads = c.n_heads;
    m->n_kv_heads = c.n_kv_heads;
    m->vocab_size = c.vocab_size < 0 ? -c.vocab_size : c.vocab_size;
    m->seq_len = c.seq_len;
    m->shared_classifier = shared;
    m->data = data;
    m->size = size;
    uint64_t off = hdr;
    for (size_t i = 0; i < n; i++) {
        llmops_llama2c_tensor *t = &m->tensors[i];
        t->name = s[i].name;
        t->n_dims = s[i].n_dims;
        memcpy(t->shape, s[i].shape, sizeof t->shape);
        t->offset = off;
        t->data = (const float *)(const void *)((const uint8_t *)data + off);
        off += spec_floats(&s[i]) * 4;
    }
    m->n_tensors = n;
    *out = m;
    return LLMOPS_OK;
}

llmops_status llmops_llama2c_open(const char *path, llmops_llama2c **out, llmops_error *err) {
    llmops_mmap *map = llmops_malloc(sizeof *map);
    *out = NULL;
    if (!map) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", path);
    llmops_status st = llmops_mmap_open(path, map, err);
    if (st) {
        llmops_free(map);
        return st;
    }
    st = llmops_llama2c_parse(map->data, map->size, path, out, err);
    if (st) {
        llmops_mmap_close(map);
        llmops_free(map);
        return st;
    }
    (*out)->map_ = map;
    return LLMOPS_OK;
}

void llmops_llama2c_free(llmops_llama2c *m) {
    if (!m) return;
    if (m->map_) {
        llmops_mmap_close(m->map_);
        llmops_free(m->map_);
    }
    llmops_free(m);
}

const llmops_llama2c_tensor *llmops_llama2c_find(const llmops_llama2c *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void llmops_llama2c_arch(const llmops_llama2c *m, llmops_arch *a) {
    llmops_arch_init(a);
    a->family = LLMOPS_ARCH_LLAMA;
    strcpy(a->hf_model_type, "llama");
    strcpy(a->hf_architecture, "LlamaForCausalLM");
    a->vocab_size = m->vocab_size;
    a->hidden_size = m->dim;
    a->n_layers = m->n_layers;
    a->n_heads = m->n_heads;
    a->n_kv_heads = m->n_kv_heads;
    a->head_dim = m->dim / m->n_heads;
    a->ffn_size = m->hidden_dim;
    a->max_positions = m->seq_len;
    a->norm_eps = 1e-5;     /* run.c */
    a->norm = LLMOPS_NORM_RMS;
    a->act = LLMOPS_ACT_SILU;
    a->gated_ffn = 1;
    a->pos = LLMOPS_POS_ROPE;
    a->rope_theta = 10000.0;
    a->rope_dim = a->head_dim;
    a->tie_embeddings = m->shared_classifier;
    a->bos_token_id = 1;
    a->eos_token_id = 2;
}

/* ---- tokenizer.bin ------------------------------------------------------------ */

void llmops_llama2c_vocab_free(llmops_llama2c_vocab *v) {
    if (!v) return;
    if (v->pieces)
        for (size_t i = 0; i < v->n; i++) llmops_free(v->pieces[i]);
    llmops_free(v->pieces);
    llmops_free(v->lens);
    llmops_free(v->scores);
    memset(v, 0, sizeof *v);
}

llmops_status llmops_llama2c_vocab_parse(const void *data, size_t size, const char *origin, size_t expect,
                                         llmops_llama2c_vocab *v, llmops_error *err) {
    memset(v, 0, sizeof *v);
    const uint8_t *p = data;
    if (size < 4)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset 0: too short for a llama2.c tokenizer", origin);
    memcpy(&v->max_token_length, p, 4);
    if (v->max_token_length <= 0 || v->max_token_length > 65536)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset 0: max_token_length %d is not plausible", origin,
                                v->max_token_length);
    /* first pass: count and validate, second: copy */
    size_t count = 0, pos = 4;
    while (pos < size) {
        int32_t len;
        if (size - pos < 8)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset %zu: entry %zu is truncated", origin, pos, count);
        memcpy(&len, p + pos + 4, 4);
        if (len < 0 || len > v->max_token_length || (size_t)len > size - pos - 8)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: offset %zu: entry %zu has length %d (max_token_length %d, %zu bytes left)",
                                    origin, pos + 4, count, len, v->max_token_length, size - pos - 8);
        pos += 8 + (size_t)len;
        count++;
    }
    if (expect && count != expect)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: holds %zu tokens but the model has a vocabulary of %zu",
                                origin, count, expect);
    v->pieces = llmops_calloc(count ? count : 1, sizeof *v->pieces);
    v->lens = llmops_calloc(count ? count : 1, sizeof *v->lens);
    v->scores = llmops_calloc(count ? count : 1, sizeof *v->scores);
    if (!v->pieces || !v->lens || !v->scores) goto oom;
    v->n = count;
    pos = 4;
    for (size_t i = 0; i < count; i++) {
        int32_t len;
        memcpy(&v->scores[i], p + pos, 4);
        memcpy(&len, p + pos + 4, 4);
        v->pieces[i] = llmops_malloc((size_t)len + 1);
        if (!v->pieces[i]) goto oom;
        memcpy(v->pieces[i], p + pos + 8, (size_t)len);
        v->pieces[i][len] = '\0';
        v->lens[i] = (uint32_t)len;
        pos += 8 + (size_t)len;
    }
    return LLMOPS_OK;
oom:
    llmops_llama2c_vocab_free(v);
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
}

llmops_status llmops_llama2c_vocab_load(const char *path, size_t expect, llmops_llama2c_vocab *v, llmops_error *err) {
    llmops_mmap m;
    memset(v, 0, sizeof *v);
    llmops_status st = llmops_mmap_open(path, &m, err);
    if (st) return st;
    st = llmops_llama2c_vocab_parse(m.data, m.size, path, expect, v, err);
    llmops_mmap_close(&m);
    return st;
}
