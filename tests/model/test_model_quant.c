/*
 * Quantized models against their F32 original: on stories260K (a real model)
 * the next-token distributions of Q8_0 / Q4_0 / Q4_K_M files stay within
 * stated KL-divergence bounds and agree on the most likely token at nearly
 * every position. Quantized files are written by llmops_quantize_model.
 * Bounds (mean KL per position, top-1 agreement): this model's width is 64,
 * so a 4-bit weight error weighs more than in a 7B model — measured here
 * about 5e-4 / 1.0 for Q8_0 and 0.07 for Q4_0; Q4_K_M falls back to Q8_0 on
 * rows of 64 and 172 (not multiples of 256).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/convert.h"
#include "llmops/model.h"
#include "llmops/tokenizer.h"

static const char *stories(void) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", test_repo_root());
    return path;
}

static const char k_text[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. "
    "One day, Lily saw a big red ball under a tree. She wanted to play with it, so she ran to get it. Her mom said, "
    "\"Be careful, Lily!\" Lily smiled and said, \"I will, mom.\" They played with the ball all day long.";

/* Logits for every position of k_text. */
static float *all_logits(const char *path, size_t *n_tok, size_t *vocab, llmops_error *err) {
    llmops_model *m;
    if (llmops_model_load(path, NULL, &m, err)) return NULL;
    llmops_context *ctx;
    if (llmops_context_create(m, NULL, &ctx, err)) {
        llmops_model_free(m);
        return NULL;
    }
    llmops_tokens ids = {0};
    llmops_tokenize(llmops_model_tokenizer(m), k_text, strlen(k_text), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, err);
    llmops_batch_item *b = calloc(ids.n, sizeof *b);
    for (size_t i = 0; i < ids.n; i++) b[i] = (llmops_batch_item){ids.ids[i], (int32_t)i, 0, 1};
    *vocab = (size_t)llmops_model_n_vocab(m);
    float *out = NULL;
    if (!llmops_decode(ctx, b, ids.n, err)) {
        out = malloc(ids.n * *vocab * sizeof(float));
        for (size_t i = 0; i < ids.n; i++) memcpy(out + i * *vocab, llmops_get_logits(ctx, i), *vocab * sizeof(float));
        *n_tok = ids.n;
    }
    free(b);
    llmops_tokens_free(&ids);
    llmops_context_free(ctx);
    llmops_model_free(m);
    return out;
}

static void softmax(const float *l, double *p, size_t n) {
    double mx = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    for (size_t i = 0; i < n; i++) s += p[i] = exp(l[i] - mx);
    for (size_t i = 0; i < n; i++) p[i] /= s;
}

static void compare(const char *recipe, double max_kl, double min_top1) {
    llmops_error err = {0};
    char q[1024];
    snprintf(q, sizeof q, "%s/%s.gguf", test_tmpdir(), recipe);
    CHECK_OK(llmops_quantize_model(stories(), q, recipe, 0, &err), err);
    size_t n, n2, V, V2;
    float *ref = all_logits(stories(), &n, &V, &err);
    CHECK_MSG(ref, "%s", err.msg);
    float *got = all_logits(q, &n2, &V2, &err);
    CHECK_MSG(got, "%s", err.msg);
    CHECK(n == n2 && V == V2 && n > 50);
    double *p = malloc(V * sizeof *p), *r = malloc(V * sizeof *r), kl = 0;
    size_t agree = 0;
    for (size_t t = 0; t < n; t++) {
        softmax(ref + t * V, p, V);
        softmax(got + t * V, r, V);
        size_t a = 0, b = 0;
        for (size_t i = 0; i < V; i++) {
            if (p[i] > 0) kl += p[i] * log(p[i] / (r[i] > 1e-300 ? r[i] : 1e-300));
            if (p[i] > p[a]) a = i;
            if (r[i] > r[b]) b = i;
        }
        agree += a == b;
    }
    kl /= (double)n;
    double top1 = (double)agree / (double)n;
    CHECK_MSG(kl < max_kl, "%s: mean KL %.3g >= %.3g", recipe, kl, max_kl);
    CHECK_MSG(top1 >= min_top1, "%s: top-1 agreement %.3f < %.3f", recipe, top1, min_top1);
    fprintf(stderr, "    %s: mean KL %.3g, top-1 agreement %.3f over %zu positions\n", recipe, kl, top1, n);
    free(p);
    free(r);
    free(ref);
    free(got);
}

TEST(model_quant_q8_0_close_to_f32) { compare("q8_0", 1e-3, 0.97); }
TEST(model_quant_q4_0_close_to_f32) { compare("q4_0", 0.1, 0.8); }
TEST(model_quant_q4_k_m_close_to_f32) { compare("q4_k_m", 1e-3, 0.97); }
TEST(model_quant_f16_close_to_f32) { compare("f16", 1e-5, 0.99); }

TEST(model_quant_errors) {
    llmops_error err = {0};
    CHECK_ERR(llmops_quantize_model(stories(), test_tmpfile("x.gguf"), "q3_xs", 0, &err), LLMOPS_ERR_INVALID_ARG, err,
              "unknown quantization type 'q3_xs'");
    CHECK_ERR(llmops_quantize_model("/nonexistent.gguf", test_tmpfile("x.gguf"), "q8_0", 0, &err), LLMOPS_ERR_NOT_FOUND,
              err, "no such file");
}
