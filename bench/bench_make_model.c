/*
 * Writes a Llama-architecture GGUF with random weights of a given shape, for
 * the speed benchmarks (no tokenizer: `llmops bench` does not need one).
 *
 *     bench_make_model OUT.gguf smollm-135m|tinyllama-1.1b|HIDDEN,LAYERS,HEADS,KV,FFN,VOCAB [f16|f32]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/gguf.h"
#include "llmops/tensor.h"

typedef struct {
    uint64_t seed;
    int type;
    float scale, offset;
} fill_ctx;

static llmops_status fill(void *vctx, void *dst, uint64_t nbytes, llmops_error *err) {
    (void)err;
    fill_ctx *c = vctx;
    uint64_t s = c->seed;
    size_t es = c->type == LLMOPS_DTYPE_F32 ? 4 : 2, n = (size_t)(nbytes / es);
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* a sum of two uniforms: roughly bell-shaped in [-scale, scale] */
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f + (float)((s >> 16) & 0xffffff) / 16777216.0f - 1.0f;
        float v = c->offset + c->scale * u;
        if (c->type == LLMOPS_DTYPE_F32) memcpy((char *)dst + i * 4, &v, 4);
        else {
            uint16_t h = llmops_fp32_to_fp16(v);
            memcpy((char *)dst + i * 2, &h, 2);
        }
    }
    return LLMOPS_OK;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_make_model OUT.gguf smollm-135m|tinyllama-1.1b|H,L,HEADS,KV,FFN,VOCAB [f16|f32]\n");
        return 2;
    }
    long h, L, nh, nkv, f, V;
    int tied;
    if (!strcmp(argv[2], "smollm-135m")) h = 576, L = 30, nh = 9, nkv = 3, f = 1536, V = 49152, tied = 1;
    else if (!strcmp(argv[2], "tinyllama-1.1b")) h = 2048, L = 22, nh = 32, nkv = 4, f = 5632, V = 32000, tied = 0;
    else if (sscanf(argv[2], "%ld,%ld,%ld,%ld,%ld,%ld", &h, &L, &nh, &nkv, &f, &V) == 6) tied = 0;
    else {
        fprintf(stderr, "bench_make_model: unknown shape '%s'\n", argv[2]);
        return 2;
    }
    int type = argc > 3 && !strcmp(argv[3], "f32") ? LLMOPS_DTYPE_F32 : LLMOPS_DTYPE_F16;
    long hd = h / nh, kvd = hd * nkv;
    llmops_error err = {0};
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    size_t n_t = (size_t)(3 + 9 * L), k = 0;
    fill_ctx *ctxs = calloc(n_t, sizeof *ctxs);
#define KV(call)                                                                                   \
    if (call) goto fail
    KV(llmops_gguf_writer_set_str(w, "general.architecture", "llama", &err));
    KV(llmops_gguf_writer_set_str(w, "general.name", argv[2], &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.context_length", 2048, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)h, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)f, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)L, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)nh, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)nkv, &err));
    KV(llmops_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd, &err));
    KV(llmops_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &err));
    KV(llmops_gguf_writer_set_u32(w, "general.file_type", type == LLMOPS_DTYPE_F32 ? 0 : 1, &err));
#define T(name, t, cols, rows, sc, off)                                                            \
    do {                                                                                           \
        uint64_t ne_[2] = {(uint64_t)(cols), (uint64_t)(rows)};                                    \
        ctxs[k] = (fill_ctx){0x9e3779b97f4a7c15ull * (k + 1), t, sc, off};                         \
        KV(llmops_gguf_writer_add_tensor_fn(w, name, t, (rows) > 1 ? 2 : 1, ne_, fill, &ctxs[k], &err)); \
        k++;                                                                                       \
    } while (0)
    T("token_embd.weight", type, h, V, 0.02f, 0);
    for (long l = 0; l < L; l++) {
        char nm[64];
#define LT(suffix, t, cols, rows, sc, off)                                                         \
    snprintf(nm, sizeof nm, "blk.%ld.%s", l, suffix);                                              \
    T(nm, t, cols, rows, sc, off)
        LT("attn_norm.weight", LLMOPS_DTYPE_F32, h, 1, 0.1f, 1.0f);
        LT("attn_q.weight", type, h, h, 0.02f, 0);
        LT("attn_k.weight", type, h, kvd, 0.02f, 0);
        LT("attn_v.weight", type, h, kvd, 0.02f, 0);
        LT("attn_output.weight", type, h, h, 0.02f, 0);
        LT("ffn_norm.weight", LLMOPS_DTYPE_F32, h, 1, 0.1f, 1.0f);
        LT("ffn_gate.weight", type, h, f, 0.02f, 0);
        LT("ffn_up.weight", type, h, f, 0.02f, 0);
        LT("ffn_down.weight", type, f, h, 0.02f, 0);
    }
    T("output_norm.weight", LLMOPS_DTYPE_F32, h, 1, 0.1f, 1.0f);
    if (!tied) T("output.weight", type, h, V, 0.02f, 0);
    KV(llmops_gguf_writer_write(w, argv[1], &err));
    llmops_gguf_writer_free(w);
    free(ctxs);
    return 0;
fail:
    fprintf(stderr, "bench_make_model: %s\n", err.msg);
    llmops_gguf_writer_free(w);
    free(ctxs);
    return 1;
}
