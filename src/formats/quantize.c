/*
 * Model quantization: every weight matrix of a GGUF file is dequantized row by
 * row and quantized to the recipe's type (ggml's reference quantizers, so the
 * bytes are what llama.cpp's own quantizer writes for the same input).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "llmops/alloc.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/kernels.h"

/* llama.cpp's LLAMA_FTYPE values */
enum { FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q8_0 = 7, FT_Q4_K_M = 15, FT_Q6_K = 18, FT_BF16 = 32, FT_Q4_K_S = 14 };

typedef struct {
    const void *src;
    int src_type, dst_type;
    uint64_t rows, cols, src_row_bytes, dst_row_bytes;
} qjob;

static llmops_status fill_quantized(void *vctx, void *dst, uint64_t nbytes, llmops_error *err) {
    qjob *j = vctx;
    (void)nbytes;
    float *row = llmops_malloc((size_t)j->cols * sizeof(float));
    if (!row) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    llmops_status st = LLMOPS_OK;
    for (uint64_t r = 0; r < j->rows && !st; r++) {
        st = llmops_dequantize_row(j->src_type, (const uint8_t *)j->src + r * j->src_row_bytes, row, (size_t)j->cols, err);
        if (!st)
            st = llmops_quantize_row(j->dst_type, row, (uint8_t *)dst + r * j->dst_row_bytes, (size_t)j->cols, err);
    }
    llmops_free(row);
    return st;
}

static int parse_layer(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
static int more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static int type_for(const char *recipe_type, int mixed, const char *name, int layer, int n_layers, int base) {
    (void)recipe_type;
    if (!mixed) return base;
    if (!strcmp(name, "output.weight")) return LLMOPS_DTYPE_Q6_K;
    if ((strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight")) && layer >= 0 && more_bits(layer, n_layers))
        return LLMOPS_DTYPE_Q6_K;
    return base;
}

llmops_status llmops_quantize_model(const char *in, const char *out, const char *recipe, int n_threads,
                                    llmops_error *err) {
    (void)n_threads;
    struct {
        const char *name;
        int type, ftype, mixed;
    } recipes[] = {{"q8_0", LLMOPS_DTYPE_Q8_0, FT_Q8_0, 0}, {"q4_0", LLMOPS_DTYPE_Q4_0, FT_Q4_0, 0},
                   {"q4_k", LLMOPS_DTYPE_Q4_K, FT_Q4_K_S, 0}, {"q4_k_s", LLMOPS_DTYPE_Q4_K, FT_Q4_K_S, 0},
                   {"q4_k_m", LLMOPS_DTYPE_Q4_K, FT_Q4_K_M, 1}, {"q6_k", LLMOPS_DTYPE_Q6_K, FT_Q6_K, 0},
                   {"f16", LLMOPS_DTYPE_F16, FT_F16, 0},     {"bf16", LLMOPS_DTYPE_BF16, FT_BF16, 0},
                   {"f32", LLMOPS_DTYPE_F32, FT_F32, 0}};
    size_t ri;
    for (ri = 0; ri < sizeof recipes / sizeof recipes[0]; ri++)
        if (!strcasecmp(recipes[ri].name, recipe)) break;
    if (ri == sizeof recipes / sizeof recipes[0])
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "unknown quantization type '%s' (q8_0, q4_0, q4_k, q4_k_m, q6_k, f16, bf16, f32)", recipe);
    /* any other format goes through a temporary F32 GGUF first */
    char tmp[4096] = "";
    const char *src = in;
    llmops_status st;
    if (llmops_detect_format(in) != LLMOPS_FORMAT_GGUF) {
        snprintf(tmp, sizeof tmp, "%s.f32.tmp.%ld.gguf", out, (long)getpid());
        llmops_convert_opts o;
        llmops_convert_opts_init(&o);
        o.out_type = LLMOPS_DTYPE_F32;
        if ((st = llmops_convert(in, tmp, &o, err))) return st;
        src = tmp;
    }
    llmops_gguf *g = NULL;
    llmops_gguf_writer *w = NULL;
    qjob *jobs = NULL;
    if ((st = llmops_gguf_open(src, &g, err))) goto done;
    size_t nt = llmops_gguf_n_tensors(g);
    w = llmops_gguf_writer_create();
    jobs = llmops_calloc(nt ? nt : 1, sizeof *jobs);
    if (!w || !jobs) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < llmops_gguf_n_kv(g); i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        if ((st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, err))) goto done;
    }
    if ((st = llmops_gguf_writer_set_u32(w, "general.file_type", (uint32_t)recipes[ri].ftype, err)) ||
        (st = llmops_gguf_writer_set_u32(w, "general.quantization_version", 2, err)))
        goto done;
    uint64_t n_layers = 0;
    llmops_arch a;
    if (!llmops_arch_from_gguf(g, &a, NULL)) n_layers = (uint64_t)a.n_layers;
    for (size_t i = 0; i < nt; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 127 ? t->name.len : 127), t->name.data);
        const void *data = llmops_gguf_tensor_data(g, t);
        int keep = t->n_dims != 2 || !strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight") ||
                   !strcmp(name, "rope_freqs.weight");
        int dt = keep ? (int)t->type
                      : type_for(recipe, recipes[ri].mixed, name, parse_layer(name), (int)n_layers, recipes[ri].type);
        const llmops_dtype_info *di = llmops_dtype_get(dt);
        if (!keep && t->ne[0] % di->block_size) /* rows that do not split into blocks */
            dt = t->ne[0] % 32 == 0 ? LLMOPS_DTYPE_Q8_0 : LLMOPS_DTYPE_F16;
        if (dt == (int)t->type) {
            if ((st = llmops_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, data, err))) goto done;
            continue;
        }
        uint64_t srb, drb;
        if ((st = llmops_dtype_nbytes(t->type, t->ne[0], t->ne[0], &srb, err)) ||
            (st = llmops_dtype_nbytes(dt, t->ne[0], t->ne[0], &drb, err)))
            goto done;
        jobs[i] = (qjob){data, (int)t->type, dt, t->ne[1], t->ne[0], srb, drb};
        if ((st = llmops_gguf_writer_add_tensor_fn(w, name, (llmops_dtype)dt, t->n_dims, t->ne, fill_quantized, &jobs[i],
                                                   err)))
            goto done;
    }
    st = llmops_gguf_writer_write(w, out, err);
done:
    llmops_free(jobs);
    llmops_gguf_writer_free(w);
    llmops_gguf_free(g);
    if (tmp[0]) unlink(tmp);
    return st;
}
