/*
 * The engine against the independent PyTorch reference (tests/oracle/
 * torch_ref.py, written from the published architectures): stories260K
 * greedy decoding token for token, and the logits of random models of real
 * shapes — Llama with GQA, Llama 3 RoPE scaling, Mistral, Qwen2 biases,
 * GPT-2 (HF Conv1D layout and tiny-random-gpt2), BERT embeddings — loaded
 * from the Hugging Face folder and from its GGUF conversion.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/convert.h"
#include "llmops/generate.h"
#include "llmops/model.h"

#define PY "/usr/bin/python3"

static int have_torch(void) {
    return system(PY " -c 'import torch, numpy' >/dev/null 2>&1") == 0;
}
TEST(model_ref_stories260k_greedy_matches_pytorch) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    char model[1024], cmd[4096];
    snprintf(model, sizeof model, "%s/models/stories260K/stories260K.bin", test_repo_root());
    snprintf(cmd, sizeof cmd, PY " %s generate --model %s --tokens 1 -n 200 --greedy", test_oracle("torch_ref.py"), model);
    char *out = test_run_capture(cmd);
    CHECK_MSG(out != NULL, "%s failed", cmd);
    size_t n_ref;
    float *ref = test_parse_floats(out, &n_ref);
    CHECK(n_ref == 200);
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(model, NULL, &m, &err), err);
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_threads = 2;
    llmops_context *ctx;
    CHECK_OK(llmops_context_create(m, &cp, &ctx, &err), err);
    int32_t tok = 1;
    for (int32_t i = 0; i < 200; i++) {
        llmops_batch_item b = {tok, i, 0, 1};
        CHECK_OK(llmops_decode(ctx, &b, 1, &err), err);
        const float *l = llmops_get_logits(ctx, 0);
        int32_t best = 0;
        for (int32_t v = 1; v < 512; v++)
            if (l[v] > l[best]) best = v;
        CHECK_MSG(best == (int32_t)ref[i], "token %d: engine %d, PyTorch %d", i, best, (int32_t)ref[i]);
        tok = best;
    }
    free(ref);
    free(out);
    llmops_context_free(ctx);
    llmops_model_free(m);
}

static const int32_t k_toks[] = {1, 17, 42, 99, 7, 250, 3, 31, 64, 128, 200, 5, 77, 150, 9, 300, 12, 240, 88, 190};
#define N_TOKS (sizeof k_toks / sizeof k_toks[0])

/* Logits of k_toks from the engine, for the model at `path`. */
static float *engine_logits(const char *path, size_t *vocab, llmops_kv_type kv, llmops_error *err) {
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    if (llmops_model_load(path, &mp, &m, err)) return NULL;
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_threads = 2;
    cp.kv_type = kv;
    llmops_context *ctx;
    if (llmops_context_create(m, &cp, &ctx, err)) {
        llmops_model_free(m);
        return NULL;
    }
    *vocab = (size_t)llmops_model_n_vocab(m);
    llmops_batch_item b[N_TOKS];
    /* the first half as one prefill batch, the rest one token at a time */
    for (size_t i = 0; i < N_TOKS; i++) b[i] = (llmops_batch_item){k_toks[i], (int32_t)i, 0, 1};
    float *out = malloc(N_TOKS * *vocab * sizeof(float));
    if (llmops_decode(ctx, b, N_TOKS / 2, err)) {
        free(out);
        out = NULL;
    }
    for (size_t i = 0; out && i < N_TOKS / 2; i++) memcpy(out + i * *vocab, llmops_get_logits(ctx, i), *vocab * sizeof(float));
    for (size_t i = N_TOKS / 2; out && i < N_TOKS; i++) {
        if (llmops_decode(ctx, &b[i], 1, err)) {
            free(out);
            out = NULL;
            break;
        }
        memcpy(out + i * *vocab, llmops_get_logits(ctx, 0), *vocab * sizeof(float));
    }
    llmops_context_free(ctx);
    llmops_model_free(m);
    return out;
}

static float *torch_logits(const char *path, size_t *n) {
    char cmd[4096], toks[512];
    size_t o = 0;
    for (size_t i = 0; i < N_TOKS; i++) o += (size_t)snprintf(toks + o, sizeof toks - o, i ? ",%d" : "%d", k_toks[i]);
    snprintf(cmd, sizeof cmd, PY " %s logits --model %s --tokens %s", test_oracle("torch_ref.py"), path, toks);
    char *out = test_run_capture(cmd);
    if (!out) return NULL;
    float *v = test_parse_floats(out, n);
    free(out);
    return v;
}

/* max |a-b| relative to max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

/* Makes a random model, converts it to GGUF, and compares both with PyTorch. */
static void random_model_paths(const char *arch, const char *extra, double tol, int with_gguf) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    const char *dir = test_tmpfile(arch);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " %s --arch %s --out %s --size tiny --seed 3 %s >/dev/null", test_oracle("make_random_model.py"),
             arch, dir, extra);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    size_t n_ref;
    float *ref = torch_logits(dir, &n_ref);
    CHECK(ref != NULL);
    char gguf[1200];
    snprintf(gguf, sizeof gguf, "%s.gguf", dir);
    llmops_error err = {0};
    if (with_gguf) CHECK_OK(llmops_convert(dir, gguf, NULL, &err), err);
    const char *paths[2] = {dir, gguf};
    for (int k = 0; k < 1 + with_gguf; k++) {
        size_t V;
        float *got = engine_logits(paths[k], &V, LLMOPS_KV_F32, &err);
        CHECK_MSG(got != NULL, "%s: %s", paths[k], err.msg);
        CHECK_EQ_INT(n_ref, N_TOKS * V);
        double e = rel_err(got, ref, n_ref);
        CHECK_MSG(e < tol, "%s (%s): relative max error %.3g > %.3g", arch, k ? "GGUF" : "HF folder", e, tol);
        free(got);
    }
    free(ref);
}

static void random_model(const char *arch, const char *extra, double tol) { random_model_paths(arch, extra, tol, 1); }
/* GGUF has no key for a Mistral window (llama.cpp's converter writes none): HF folders only */
static void random_model_hf_only(const char *arch, const char *extra, double tol) {
    random_model_paths(arch, extra, tol, 0);
}

TEST(model_ref_llama_gqa) { random_model("llama", "", 1e-4); }
TEST(model_ref_llama3_rope_scaling) { random_model("llama3", "", 1e-4); }
TEST(model_ref_mistral) { random_model("mistral", "", 1e-4); }
TEST(model_ref_qwen2_biases) { random_model("qwen2", "", 1e-4); }
TEST(model_ref_gpt2) { random_model("gpt2", "", 1e-4); }
TEST(model_ref_llama_bf16_weights) { random_model("llama", "--dtype bf16", 1e-4); }
/* a window shorter than the 20 test tokens, so it changes the logits */
TEST(model_ref_mistral_sliding_window) { random_model_hf_only("mistral", "--sliding-window 6", 1e-4); }

/* A prompt of 150 tokens, one batch: longer than one slice of the batched path (64 tokens for models this
 * small, see alloc_scratch in model_eval.c) and not a multiple of it. */
static void long_prompt(const char *arch) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    enum { N = 150 };
    const char *dir = test_tmpfile(arch);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, PY " %s --arch %s --out %s --size tiny --seed 4 >/dev/null", test_oracle("make_random_model.py"),
             arch, dir);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    int32_t toks[N];
    char list[N * 8];
    size_t o = 0;
    for (size_t i = 0; i < N; i++) {
        toks[i] = (int32_t)((i * 37 + 11) % 300);
        o += (size_t)snprintf(list + o, sizeof list - o, i ? ",%d" : "%d", toks[i]);
    }
    snprintf(cmd, sizeof cmd, PY " %s logits --model %s --tokens %s", test_oracle("torch_ref.py"), dir, list);
    char *text = test_run_capture(cmd);
    CHECK(text != NULL);
    size_t n_ref;
    float *ref = test_parse_floats(text, &n_ref);
    free(text);
    llmops_error err = {0};
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, &mp, &m, &err), err);
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_threads = 2;
    cp.kv_type = LLMOPS_KV_F32;
    llmops_context *ctx;
    CHECK_OK(llmops_context_create(m, &cp, &ctx, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    CHECK_EQ_INT(n_ref, N * V);
    llmops_batch_item b[N];
    for (size_t i = 0; i < N; i++) b[i] = (llmops_batch_item){toks[i], (int32_t)i, 0, 1};
    CHECK_OK(llmops_decode(ctx, b, N, &err), err);
    float *got = malloc(N * V * sizeof(float));
    for (size_t i = 0; i < N; i++) memcpy(got + i * V, llmops_get_logits(ctx, i), V * sizeof(float));
    double e = rel_err(got, ref, n_ref);
    CHECK_MSG(e < 1e-4, "%s, %d tokens: relative max error %.3g", arch, N, e);
    free(got);
    free(ref);
    llmops_context_free(ctx);
    llmops_model_free(m);
}

TEST(model_ref_llama_long_prompt) { long_prompt("llama"); }
/* the fused QKV product */
TEST(model_ref_gpt2_long_prompt) { long_prompt("gpt2"); }

TEST(model_ref_tiny_random_gpt2) {
    const char *dir = test_asset("hf/tiny-random-gpt2");
    if (!dir) SKIP("hf/tiny-random-gpt2 not in ../shared/assets");
    if (!have_torch()) SKIP("python3-torch is not installed");
    size_t n_ref, V;
    float *ref = torch_logits(dir, &n_ref);
    CHECK(ref != NULL);
    llmops_error err = {0};
    float *got = engine_logits(dir, &V, LLMOPS_KV_F32, &err);
    CHECK_MSG(got != NULL, "%s", err.msg);
    CHECK_EQ_INT(n_ref, N_TOKS * V);
    double e = rel_err(got, ref, n_ref);
    CHECK_MSG(e < 1e-4, "relative max error %.3g", e);
    /* the F16 KV cache stays close */
    float *h = engine_logits(dir, &V, LLMOPS_KV_F16, &err);
    CHECK(h != NULL);
    CHECK_MSG(rel_err(h, ref, n_ref) < 1e-2, "f16 cache: %.3g", rel_err(h, ref, n_ref));
    free(h);
    free(got);
    free(ref);
}

TEST(model_ref_bert_embeddings) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    const char *dir = test_tmpfile("bert");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " %s --arch bert --out %s --size tiny --seed 5 >/dev/null", test_oracle("make_random_model.py"), dir);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, NULL, &m, &err), err);
    llmops_context *ctx;
    CHECK_OK(llmops_context_create(m, NULL, &ctx, &err), err);
    /* a short text, and one longer than a slice of the batched path (64 tokens for this model, see
     * alloc_scratch in model_eval.c) */
    char long_text[256];
    for (int i = 0; i < 90; i++) { /* one token per letter, digit or mark, in no repeating order */
        long_text[2 * i] = "abcdefghijklmnopqrstuvwxyz0123456789.,!?"[(i * 7 + i / 40) % 40];
        long_text[2 * i + 1] = ' ';
    }
    long_text[179] = 0;
    const char *texts[2] = {"hello world", long_text};
    size_t d = (size_t)llmops_model_arch(m)->hidden_size;
    float *mine = malloc(d * sizeof(float));
    for (int k = 0; k < 2; k++) {
    const char *text = texts[k];
    llmops_tokens ids = {0};
    CHECK_OK(llmops_tokenize(llmops_model_tokenizer(m), text, strlen(text), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err), err);
    CHECK(ids.n >= (k ? 65u : 3u) && ids.ids[0] == 101);
    char toks[2048];
    size_t o = 0;
    for (size_t i = 0; i < ids.n; i++) o += (size_t)snprintf(toks + o, sizeof toks - o, i ? ",%d" : "%d", ids.ids[i]);
    for (int pooling = 0; pooling < 2; pooling++) {
        snprintf(cmd, sizeof cmd, PY " %s embed --model %s --tokens %s --pooling %s", test_oracle("torch_ref.py"), dir, toks,
                 pooling ? "cls" : "mean");
        char *out = test_run_capture(cmd);
        CHECK(out != NULL);
        size_t n;
        float *ref = test_parse_floats(out, &n);
        free(out);
        CHECK_EQ_INT(n, d);
        CHECK_OK(llmops_embed(m, ctx, text, pooling ? LLMOPS_POOLING_CLS : LLMOPS_POOLING_MEAN, 1, mine, &err), err);
        double e = rel_err(mine, ref, d);
        CHECK_MSG(e < 1e-4, "%zu tokens, %s pooling: relative max error %.3g", ids.n, pooling ? "cls" : "mean", e);
        free(ref);
    }
    llmops_tokens_free(&ids);
    }
    free(mine);
    llmops_context_free(ctx);
    llmops_model_free(m);
}
