/*
 * LoRA adapter export (PEFT folder, llama.cpp GGUF LoRA) and merging of
 * adapters into a base model (GGUF, or a Hugging Face folder through the
 * converters of src/formats/convert.c).
 *
 * Factor layouts: trainer/engine tensors are row-major A (r, in) and B (out, r).
 * PEFT stores the same shapes (lora_A.weight [r, in], lora_B.weight [out, r]),
 * also for GPT-2's Conv1D layers (fan_in_fan_out only changes how PEFT
 * merges). GGUF stores ne = [in, r] and [r, out]: the same bytes.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "formats/convert_names.h"
#include "llmops/adapter.h"
#include "llmops/alloc.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/gguf.h"
#include "llmops/kernels.h"
#include "llmops/safetensors.h"
#include "model/model_internal.h"

void llmops_adapter_export_params_init(llmops_adapter_export_params *p) {
    memset(p, 0, sizeof *p);
    p->rope_neox = 1;
    p->rank = 8;
    p->alpha = 16.0f;
    p->out_type = LLMOPS_DTYPE_F32;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const unsigned k_kind_bits[LW_N] = {LLMOPS_LORA_Q,  LLMOPS_LORA_K,    LLMOPS_LORA_V,  LLMOPS_LORA_QKV,
                                           LLMOPS_LORA_O,  LLMOPS_LORA_GATE, LLMOPS_LORA_UP, LLMOPS_LORA_DOWN};

static int llama_like(const llmops_arch *a) {
    return a->family == LLMOPS_ARCH_LLAMA || a->family == LLMOPS_ARCH_MISTRAL;
}

/* The Hugging Face module path of llama.cpp weight `gguf_name` ("model.layers.0.self_attn.q_proj"). */
static int hf_module(const llmops_arch *a, const char *gguf_name, char *out, size_t cap) {
    size_t n_names;
    const conv_name *names = conv_names(a->family, &n_names);
    for (size_t k = 0; k < n_names; k++) {
        int layer;
        if (!conv_match(names[k].gguf, gguf_name, &layer)) continue;
        char hf[128];
        conv_format(names[k].hf, layer, hf, sizeof hf);
        size_t n = strlen(hf);
        if (n < 7 || strcmp(hf + n - 7, ".weight")) return 0;
        hf[n - 7] = '\0';
        snprintf(out, cap, "%s%s", a->family == LLMOPS_ARCH_GPT2 ? "transformer." : "", hf);
        return 1;
    }
    return 0;
}

/* One adapted weight gathered from the tensor list. */
typedef struct {
    const llmops_train_tensor *a, *b;
    char base[96];
    int layer, kind;
    float *bperm; /* B in the file's row order when it differs from the tensors' (owned) */
} xpair;

static void xpairs_free(xpair *x, size_t n) {
    for (size_t i = 0; x && i < n; i++) llmops_free(x[i].bperm);
    llmops_free(x);
}

/* Pairs up and checks the LoRA factors of ts; permutes q/k B rows into the file's order. */
static llmops_status gather(const llmops_adapter_export_params *p, const llmops_train_tensor *ts, size_t n,
                            int file_permuted, xpair **out, size_t *n_out, unsigned *kinds, llmops_error *err) {
    const llmops_arch *a = p->arch;
    xpair *x = llmops_calloc(n ? n : 1, sizeof *x);
    size_t nx = 0;
    *kinds = 0;
    if (!x) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const llmops_train_tensor *t = &ts[i];
        if (!ends_with(t->name, ".lora_a")) {
            if (ends_with(t->name, ".lora_b")) {
                char want[128];
                snprintf(want, sizeof want, "%.*s.lora_a", (int)(strlen(t->name) - 7), t->name);
                size_t k;
                for (k = 0; k < n && strcmp(ts[k].name, want); k++) {}
                if (k == n) st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' has no matching lora_a", t->name);
            }
            continue;
        }
        xpair *e = &x[nx];
        snprintf(e->base, sizeof e->base, "%.*s", (int)(strlen(t->name) - 7), t->name);
        char bn[128];
        snprintf(bn, sizeof bn, "%s.lora_b", e->base);
        e->a = t;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(ts[k].name, bn)) e->b = &ts[k];
        if (!e->b) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' has no matching lora_b", t->name);
            break;
        }
        if (!lora_kind_parse(e->base, &e->layer, &e->kind) || e->layer >= a->n_layers) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' is not a LoRA factor of a %s model", t->name,
                                  a->hf_model_type);
            break;
        }
        if (p->targets && !(p->targets & k_kind_bits[e->kind])) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' adapts %s, which is not among the targets",
                                  t->name, lora_kind_name(e->kind));
            break;
        }
        if (!e->a->w || !e->b->w) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' has no data", e->a->w ? bn : t->name);
            break;
        }
        if (e->a->rows != p->rank || e->b->cols != p->rank) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                  "rank mismatch: tensors '%s' (%lld × %lld) and '%s' (%lld × %lld) for rank %d", t->name,
                                  (long long)e->a->rows, (long long)e->a->cols, bn, (long long)e->b->rows,
                                  (long long)e->b->cols, p->rank);
            break;
        }
        int tensors_permuted = !p->rope_neox && llama_like(a);
        if ((e->kind == LW_Q || e->kind == LW_K) && tensors_permuted != file_permuted) {
            size_t nb = (size_t)(e->b->rows * e->b->cols);
            e->bperm = llmops_malloc(nb * sizeof(float));
            if (!e->bperm) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                break;
            }
            memcpy(e->bperm, e->b->w, nb * sizeof(float));
            int64_t nh = e->kind == LW_Q ? a->n_heads : a->n_kv_heads;
            if (lora_permute_rows(e->bperm, e->b->rows, e->b->cols, nh, file_permuted)) {
                st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': %lld rows do not split into %lld heads",
                                      bn, (long long)e->b->rows, (long long)nh);
                nx++;
                break;
            }
        }
        *kinds |= 1u << e->kind;
        nx++;
    }
    if (!st && nx == 0) st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no LoRA factors (.lora_a/.lora_b) to export");
    if (st) {
        xpairs_free(x, nx);
        return st;
    }
    *out = x;
    *n_out = nx;
    return LLMOPS_OK;
}

/* Factor data in the output type: F32 as is, F16 converted into a buffer kept in *keep. */
static llmops_status typed(const float *w, size_t n, int type, const void **out, void **keep, llmops_error *err) {
    *keep = NULL;
    if (type == LLMOPS_DTYPE_F32) {
        *out = w;
        return LLMOPS_OK;
    }
    *keep = llmops_malloc(n * 2 + 1);
    if (!*keep) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    *out = *keep;
    return llmops_convert_floats(LLMOPS_DTYPE_F32, w, type, *keep, n, err);
}

/* The PEFT module names of the targeted kinds, in a JSON array. */
static json_t *target_modules(const llmops_arch *a, unsigned kinds) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    int gpt2 = a->family == LLMOPS_ARCH_GPT2;
    static const char *const llama_names[LW_N] = {"q_proj", "k_proj", "v_proj", NULL, "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};
    for (int k = 0; k < LW_N; k++) {
        if (!(kinds & (1u << k))) continue;
        const char *nm;
        if (gpt2) {
            /* c_proj names both attn.c_proj and mlp.c_proj: qualify it unless both are adapted */
            int both = (kinds & (1u << LW_O)) && (kinds & (1u << LW_DOWN));
            if (k == LW_QKV) nm = "c_attn";
            else if (k == LW_UP) nm = "c_fc";
            else if (k == LW_O) nm = both ? "c_proj" : "attn.c_proj";
            else if (k == LW_DOWN) {
                if (both) continue;
                nm = "mlp.c_proj";
            } else continue;
        } else {
            nm = llama_names[k];
            if (!nm) continue;
        }
        if (json_array_append_new(arr, json_string(nm))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static llmops_status export_peft(const llmops_adapter_export_params *p, xpair *x, size_t nx, unsigned kinds,
                                 const char *dir, llmops_error *err) {
    const llmops_arch *a = p->arch;
    llmops_st_writer *w = llmops_st_writer_create();
    void **keep = llmops_calloc(2 * nx, sizeof *keep);
    json_t *cfg = NULL;
    char *path = NULL;
    llmops_status st = LLMOPS_OK;
    if (!w || !keep) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nx && !st; i++) {
        char mod[160], nm[224];
        if (!hf_module(a, x[i].base, mod, sizeof mod)) {
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "tensor '%s.lora_a' has no Hugging Face module in a %s model",
                                  x[i].base, a->hf_model_type);
            break;
        }
        const void *d = NULL;
        uint64_t sa[2] = {(uint64_t)x[i].a->rows, (uint64_t)x[i].a->cols};
        uint64_t sb[2] = {(uint64_t)x[i].b->rows, (uint64_t)x[i].b->cols};
        snprintf(nm, sizeof nm, "base_model.model.%s.lora_A.weight", mod);
        if ((st = typed(x[i].a->w, (size_t)(sa[0] * sa[1]), p->out_type, &d, &keep[2 * i], err)) ||
            (st = llmops_st_writer_add(w, nm, (llmops_dtype)p->out_type, 2, sa, d, err)))
            break;
        snprintf(nm, sizeof nm, "base_model.model.%s.lora_B.weight", mod);
        if ((st = typed(x[i].bperm ? x[i].bperm : x[i].b->w, (size_t)(sb[0] * sb[1]), p->out_type, &d, &keep[2 * i + 1],
                        err)) ||
            (st = llmops_st_writer_add(w, nm, (llmops_dtype)p->out_type, 2, sb, d, err)))
            break;
    }
    if (st) goto done;
    if ((st = llmops_st_writer_set_metadata(w, "format", "pt", err)) || (st = llmops_mkdirs(dir, err))) goto done;
    path = llmops_path_join(dir, "adapter_model.safetensors");
    if (!path) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = llmops_st_writer_write(w, path, err))) goto done;
    cfg = json_object();
    json_t *tm = target_modules(a, kinds);
    int bad = !cfg || !tm;
    if (!bad) {
#define SET(k, v) bad |= json_object_set_new(cfg, k, v)
        SET("alpha_pattern", json_object());
        SET("auto_mapping", json_null());
        SET("base_model_name_or_path", json_string(p->base_model ? p->base_model : ""));
        SET("bias", json_string("none"));
        SET("fan_in_fan_out", json_boolean(a->family == LLMOPS_ARCH_GPT2));
        SET("inference_mode", json_true());
        SET("init_lora_weights", json_true());
        SET("layers_pattern", json_null());
        SET("layers_to_transform", json_null());
        SET("lora_alpha", json_real(p->alpha));
        SET("lora_dropout", json_real(p->dropout));
        SET("modules_to_save", json_null());
        SET("peft_type", json_string("LORA"));
        SET("r", json_integer(p->rank));
        SET("rank_pattern", json_object());
        SET("revision", json_null());
        SET("target_modules", tm);
        tm = NULL;
        SET("task_type", json_string(a->family == LLMOPS_ARCH_BERT ? "FEATURE_EXTRACTION" : "CAUSAL_LM"));
        SET("use_dora", json_false());
        SET("use_rslora", json_false());
#undef SET
    }
    json_decref(tm);
    if (bad) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    llmops_free(path);
    path = llmops_path_join(dir, "adapter_config.json");
    st = path ? llmops_json_write_file(cfg, path, 2, err) : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
done:
    json_decref(cfg);
    llmops_free(path);
    for (size_t i = 0; keep && i < 2 * nx; i++) llmops_free(keep[i]);
    llmops_free(keep);
    llmops_st_writer_free(w);
    return st;
}

static llmops_status export_gguf(const llmops_adapter_export_params *p, xpair *x, size_t nx, const char *path,
                                 llmops_error *err) {
    const llmops_arch *a = p->arch;
    const char *an = llmops_arch_gguf_name(a->family);
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    void **keep = llmops_calloc(2 * nx, sizeof *keep);
    llmops_status st = LLMOPS_OK;
    char k[128];
    if (!w || !keep) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
#define TRYK(call)                                                                                 \
    do {                                                                                           \
        if ((st = (call))) goto done;                                                              \
    } while (0)
    TRYK(llmops_gguf_writer_set_str(w, "general.architecture", an, err));
    TRYK(llmops_gguf_writer_set_str(w, "general.type", "adapter", err));
    if (p->base_model && *p->base_model) TRYK(llmops_gguf_writer_set_str(w, "general.name", p->base_model, err));
    TRYK(llmops_gguf_writer_set_str(w, "adapter.type", "lora", err));
    TRYK(llmops_gguf_writer_set_f32(w, "adapter.lora.alpha", p->alpha, err));
    TRYK(llmops_gguf_writer_set_u32(w, "general.file_type", p->out_type == LLMOPS_DTYPE_F16 ? 1u : 0u, err));
    /* the base model's shape, as llama.cpp's convert_lora_to_gguf.py records it */
    snprintf(k, sizeof k, "%s.block_count", an);
    TRYK(llmops_gguf_writer_set_u32(w, k, (uint32_t)a->n_layers, err));
    snprintf(k, sizeof k, "%s.embedding_length", an);
    TRYK(llmops_gguf_writer_set_u32(w, k, (uint32_t)a->hidden_size, err));
    snprintf(k, sizeof k, "%s.feed_forward_length", an);
    TRYK(llmops_gguf_writer_set_u32(w, k, (uint32_t)a->ffn_size, err));
    snprintf(k, sizeof k, "%s.attention.head_count", an);
    TRYK(llmops_gguf_writer_set_u32(w, k, (uint32_t)a->n_heads, err));
    if (a->pos == LLMOPS_POS_ROPE) {
        snprintf(k, sizeof k, "%s.attention.head_count_kv", an);
        TRYK(llmops_gguf_writer_set_u32(w, k, (uint32_t)a->n_kv_heads, err));
    }
    for (size_t i = 0; i < nx; i++) {
        const void *d = NULL;
        char nm[128];
        uint64_t na[2] = {(uint64_t)x[i].a->cols, (uint64_t)x[i].a->rows}; /* ne = [in, r] */
        uint64_t nb[2] = {(uint64_t)x[i].b->cols, (uint64_t)x[i].b->rows}; /* ne = [r, out] */
        snprintf(nm, sizeof nm, "%s.lora_a", x[i].base);
        TRYK(typed(x[i].a->w, (size_t)(na[0] * na[1]), p->out_type, &d, &keep[2 * i], err));
        TRYK(llmops_gguf_writer_add_tensor(w, nm, (llmops_dtype)p->out_type, 2, na, d, err));
        snprintf(nm, sizeof nm, "%s.lora_b", x[i].base);
        TRYK(typed(x[i].bperm ? x[i].bperm : x[i].b->w, (size_t)(nb[0] * nb[1]), p->out_type, &d, &keep[2 * i + 1], err));
        TRYK(llmops_gguf_writer_add_tensor(w, nm, (llmops_dtype)p->out_type, 2, nb, d, err));
    }
#undef TRYK
    st = llmops_gguf_writer_write(w, path, err);
done:
    for (size_t i = 0; keep && i < 2 * nx; i++) llmops_free(keep[i]);
    llmops_free(keep);
    llmops_gguf_writer_free(w);
    return st;
}

llmops_status llmops_adapter_export(const llmops_adapter_export_params *p, const llmops_train_tensor *ts, size_t n,
                                    llmops_adapter_format format, const char *path, llmops_error *err) {
    if (!p || !p->arch) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter export: the architecture is required");
    if (p->out_type != LLMOPS_DTYPE_F32 && p->out_type != LLMOPS_DTYPE_F16)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter export: the output type must be f32 or f16");
    if (p->rank <= 0) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter export: rank must be positive");
    if (format != LLMOPS_ADAPTER_PEFT && format != LLMOPS_ADAPTER_GGUF)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "adapter export: unknown format %d", (int)format);
    /* PEFT holds Hugging Face row order; GGUF LoRA files of llama-family models llama.cpp's */
    int file_permuted = format == LLMOPS_ADAPTER_GGUF && llama_like(p->arch);
    xpair *x;
    size_t nx;
    unsigned kinds;
    llmops_status st = gather(p, ts, n, file_permuted, &x, &nx, &kinds, err);
    if (st) return st;
    st = format == LLMOPS_ADAPTER_PEFT ? export_peft(p, x, nx, kinds, path, err) : export_gguf(p, x, nx, path, err);
    xpairs_free(x, nx);
    if (st) llmops_error_prefix(err, "%s: ", path);
    return st;
}

llmops_status llmops_adapter_save(const llmops_adapter *a, llmops_adapter_format format, const char *path, int out_type,
                                  llmops_error *err) {
    const llmops_model *m = lora_adapter_model(a);
    size_t nt;
    const llmops_train_tensor *ts = llmops_adapter_tensors(a, &nt);
    llmops_adapter_export_params ep;
    llmops_adapter_export_params_init(&ep);
    ep.arch = llmops_model_arch(m);
    ep.rope_neox = m->rope_neox; /* the factors are in the model's row order */
    ep.rank = llmops_adapter_rank(a);
    ep.alpha = llmops_adapter_scaling(a) * (float)ep.rank;
    ep.out_type = out_type;
    return llmops_adapter_export(&ep, ts, nt, format, path, err);
}

/* ---- merge ------------------------------------------------------------------------------ */

void llmops_merge_params_init(llmops_merge_params *p) { p->out_type = -1; }

typedef struct {
    const float *a, *b; /* (r, in), (out, r) in the GGUF file's row order */
    int64_t r;
    float s;            /* user scale × adapter scaling */
} mdelta;

typedef struct {
    const llmops_gguf *g;
    const llmops_gguf_tensor *t;
    int dst_type;
    const mdelta *d;
    size_t nd;
} mfill;

/* W + Σ s · B A for one tensor, converted to the output type. */
static llmops_status merge_fill(void *vctx, void *dst, uint64_t nbytes, llmops_error *err) {
    mfill *f = vctx;
    (void)nbytes;
    int64_t cols = (int64_t)f->t->ne[0], rows = (int64_t)f->t->ne[1];
    size_t n = (size_t)(rows * cols);
    float *w = llmops_malloc(n * sizeof(float));
    if (!w) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory merging a tensor");
    llmops_status st = llmops_dequantize_row(f->t->type, llmops_gguf_tensor_data(f->g, f->t), w, n, err);
    for (size_t i = 0; !st && i < f->nd; i++) {
        const mdelta *d = &f->d[i];
        for (int64_t r = 0; r < rows; r++) {
            float *wr = w + r * cols;
            for (int64_t k = 0; k < d->r; k++) {
                float c = d->s * d->b[r * d->r + k];
                const float *ak = d->a + k * cols;
                for (int64_t j = 0; j < cols; j++) wr[j] += c * ak[j];
            }
        }
    }
    if (!st) st = llmops_quantize_row(f->dst_type, w, dst, n, err);
    llmops_free(w);
    return st;
}

static int is_float_type(int t) { return t == LLMOPS_DTYPE_F32 || t == LLMOPS_DTYPE_F16 || t == LLMOPS_DTYPE_BF16; }

/* GGUF base → merged GGUF. */
static llmops_status merge_gguf(const char *base, const char *const *paths, const float *scales, size_t n,
                                const char *out, int out_type, llmops_error *err) {
    llmops_gguf *g = NULL;
    llmops_model *m = NULL;
    llmops_adapter **ad = NULL;
    llmops_gguf_writer *w = NULL;
    mfill *fills = NULL;
    mdelta *deltas = NULL;
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_status st;
    if ((st = llmops_gguf_open(base, &g, err)) || (st = llmops_model_load(base, &mp, &m, err))) goto done;
    ad = llmops_calloc(n ? n : 1, sizeof *ad);
    size_t nt = llmops_gguf_n_tensors(g);
    fills = llmops_calloc(nt ? nt : 1, sizeof *fills);
    deltas = llmops_calloc((nt ? nt : 1) * (n ? n : 1), sizeof *deltas);
    w = llmops_gguf_writer_create();
    if (!ad || !fills || !deltas || !w) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if ((st = llmops_adapter_load(m, paths[i], &ad[i], err))) goto done;
    for (size_t i = 0; i < llmops_gguf_n_kv(g); i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        if ((st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, err))) goto done;
    }
    if (out_type >= 0 &&
        (st = llmops_gguf_writer_set_u32(w, "general.file_type", out_type == LLMOPS_DTYPE_F16 ? 1u : 0u, err)))
        goto done;
    size_t used = 0;
    for (size_t i = 0; i < nt; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char tn[128];
        snprintf(tn, sizeof tn, "%.*s", (int)(t->name.len < 127 ? t->name.len : 127), t->name.data);
        mfill *f = &fills[i];
        *f = (mfill){g, t, 0, deltas + used, 0};
        char an[140];
        snprintf(an, sizeof an, "%s.lora_a", tn);
        for (size_t k = 0; k < n; k++) {
            size_t nts;
            const llmops_train_tensor *ts = llmops_adapter_tensors(ad[k], &nts);
            for (size_t j = 0; j + 1 < nts; j += 2)
                if (!strcmp(ts[j].name, an)) {
                    mdelta *d = &deltas[used++];
                    *d = (mdelta){ts[j].w, ts[j + 1].w, ts[j].rows,
                                  (scales ? scales[k] : 1.0f) * llmops_adapter_scaling(ad[k])};
                    f->nd++;
                }
        }
        int keep_type = t->n_dims < 2 || !strcmp(tn, "position_embd.weight") || !strcmp(tn, "token_types.weight");
        if (f->nd == 0 && (out_type < 0 || keep_type || !(is_float_type(t->type) || llmops_dtype_get(t->type)->quantized))) {
            st = llmops_gguf_writer_add_tensor(w, tn, t->type, t->n_dims, t->ne, llmops_gguf_tensor_data(g, t), err);
        } else {
            f->dst_type = out_type >= 0 ? out_type : is_float_type(t->type) ? (int)t->type : LLMOPS_DTYPE_F32;
            st = llmops_gguf_writer_add_tensor_fn(w, tn, (llmops_dtype)f->dst_type, t->n_dims, t->ne, merge_fill, f, err);
        }
        if (st) goto done;
    }
    st = llmops_gguf_writer_write(w, out, err);
done:
    llmops_gguf_writer_free(w);
    for (size_t i = 0; ad && i < n; i++) llmops_adapter_free(ad[i]);
    llmops_free(ad);
    llmops_free(deltas);
    llmops_free(fills);
    llmops_model_free(m);
    llmops_gguf_free(g);
    return st;
}

/* Copies the tokenizer files of a Hugging Face folder into the merged one. */
static llmops_status copy_tokenizer_files(const char *from, const char *to, llmops_error *err) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "vocab.txt", "tokenizer.model", "merges.txt",
                                        "vocab.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *src = llmops_path_join(from, files[i]), *dst = llmops_path_join(to, files[i]);
        char *data = NULL;
        size_t len = 0;
        llmops_status st = LLMOPS_OK;
        if (!src || !dst) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        else if (llmops_path_is_file(src) && !(st = llmops_file_read_all(src, (size_t)1 << 30, &data, &len, err)))
            st = llmops_file_write_atomic(dst, data, len, err);
        llmops_free(data);
        llmops_free(src);
        llmops_free(dst);
        if (st) return st;
    }
    return LLMOPS_OK;
}

static char *tmp_name(const char *out, const char *what) {
    size_t n = strlen(out) + 64;
    char *s = llmops_malloc(n);
    if (!s) return NULL;
    size_t k = strlen(out);
    while (k > 1 && out[k - 1] == '/') k--;
    snprintf(s, n, "%.*s.%s.%ld.tmp.gguf", (int)k, out, what, (long)getpid());
    return s;
}

llmops_status llmops_adapter_merge(const char *base, const char *const *adapters, const float *scales, size_t n,
                                   const char *out, const llmops_merge_params *p, llmops_error *err) {
    llmops_merge_params def;
    if (!p) {
        llmops_merge_params_init(&def);
        p = &def;
    }
    if (p->out_type >= 0 && p->out_type != LLMOPS_DTYPE_F32 && p->out_type != LLMOPS_DTYPE_F16)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "merge: the output type must be f32 or f16");
    llmops_model_format f = llmops_detect_format(base);
    if (f == LLMOPS_FORMAT_UNKNOWN || f == LLMOPS_FORMAT_SAFETENSORS)
        return llmops_error_set(err, llmops_path_is_dir(base) || llmops_path_is_file(base) ? LLMOPS_ERR_UNSUPPORTED
                                                                                          : LLMOPS_ERR_NOT_FOUND,
                                "%s: not a GGUF file, Hugging Face folder or llama2.c checkpoint", base);
    int to_gguf = ends_with(out, ".gguf");
    char *tmp_base = NULL, *tmp_out = NULL;
    const char *gbase = base, *gout = out;
    llmops_status st = LLMOPS_OK;
    if (f != LLMOPS_FORMAT_GGUF) {
        tmp_base = tmp_name(out, "base");
        if (!tmp_base) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        if ((st = llmops_convert(base, tmp_base, NULL, err))) goto done;
        gbase = tmp_base;
    }
    if (!to_gguf) {
        tmp_out = tmp_name(out, "merged");
        if (!tmp_out) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
        gout = tmp_out;
    }
    if ((st = merge_gguf(gbase, adapters, scales, n, gout, p->out_type, err))) goto done;
    if (!to_gguf) {
        llmops_convert_opts o;
        llmops_convert_opts_init(&o);
        if ((st = llmops_convert(gout, out, &o, err))) goto done;
        if (f == LLMOPS_FORMAT_HF_DIR) st = copy_tokenizer_files(base, out, err);
    }
done:
    if (tmp_base) unlink(tmp_base);
    if (tmp_out) unlink(tmp_out);
    llmops_free(tmp_base);
    llmops_free(tmp_out);
    return st;
}
