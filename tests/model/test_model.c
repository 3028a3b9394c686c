/*
 * The inference engine: the KV cache against recomputation, batches of
 * sequences against sequences alone, forked prefixes against fresh prefill,
 * the three weight layouts of one network against each other, and errors.
 * (Agreement with the independent PyTorch reference is in test_model_ref.c.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/convert.h"
#include "llmops/generate.h"
#include "llmops/model.h"

static const char *stories(void) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", test_repo_root());
    return path;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

static const int32_t k_tokens[] = {1, 403, 407, 261, 378, 270, 260, 261, 312, 498, 273, 304, 268, 356, 286, 332};
#define N_TOK (sizeof k_tokens / sizeof k_tokens[0])

static llmops_context *make_ctx(const llmops_model *m, uint32_t n_ctx, uint32_t n_seq, llmops_kv_type kv, int threads) {
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.kv_type = kv;
    cp.n_threads = threads;
    llmops_context *ctx = NULL;
    llmops_error err = {0};
    if (llmops_context_create(m, &cp, &ctx, &err)) fprintf(stderr, "context: %s\n", err.msg);
    return ctx;
}

/* Logits of every position with one prefill of the whole sequence. */
static float *prefill_all(llmops_context *ctx, const int32_t *toks, size_t n, int32_t seq, size_t vocab) {
    llmops_batch_item *b = calloc(n, sizeof *b);
    for (size_t i = 0; i < n; i++) b[i] = (llmops_batch_item){toks[i], (int32_t)i, seq, 1};
    llmops_error err = {0};
    float *out = NULL;
    if (llmops_decode(ctx, b, n, &err) == LLMOPS_OK) {
        out = malloc(n * vocab * sizeof(float));
        for (size_t i = 0; i < n; i++) memcpy(out + i * vocab, llmops_get_logits(ctx, i), vocab * sizeof(float));
    } else {
        fprintf(stderr, "decode: %s\n", err.msg);
    }
    free(b);
    return out;
}

TEST(model_kv_cache_equals_recompute) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    for (int kv = 0; kv < 2; kv++) {
        llmops_context *a = make_ctx(m, 64, 1, kv ? LLMOPS_KV_F32 : LLMOPS_KV_F16, 2);
        llmops_context *b = make_ctx(m, 64, 1, kv ? LLMOPS_KV_F32 : LLMOPS_KV_F16, 1);
        CHECK(a && b);
        float *full = prefill_all(a, k_tokens, N_TOK, 0, V);
        CHECK(full);
        /* one token at a time through the cache */
        for (size_t i = 0; i < N_TOK; i++) {
            llmops_batch_item it = {k_tokens[i], (int32_t)i, 0, 1};
            CHECK_OK(llmops_decode(b, &it, 1, &err), err);
            float d = max_abs_diff(llmops_get_logits(b, 0), full + i * V, V);
            CHECK_MSG(d < (kv ? 1e-4f : 2e-2f), "kv %s, position %zu: max |diff| %g", kv ? "f32" : "f16", i, d);
        }
        free(full);
        llmops_context_free(a);
        llmops_context_free(b);
    }
    llmops_model_free(m);
}

TEST(model_batch_of_sequences_equals_each_alone) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    /* three sequences of different lengths, interleaved in one batch */
    const size_t lens[3] = {5, 11, 14}; /* k_tokens + s holds at least lens[s] tokens */
    llmops_context *solo = make_ctx(m, 64, 1, LLMOPS_KV_F32, 1);
    llmops_context *multi = make_ctx(m, 128, 3, LLMOPS_KV_F32, 2);
    CHECK(solo && multi);
    float *ref[3];
    for (int s = 0; s < 3; s++) {
        llmops_kv_clear(solo);
        ref[s] = prefill_all(solo, k_tokens + s, lens[s], 0, V);
        CHECK(ref[s]);
    }
    llmops_batch_item b[64];
    size_t n = 0;
    for (size_t i = 0; i < 16; i++)
        for (int s = 0; s < 3; s++)
            if (i < lens[s]) b[n++] = (llmops_batch_item){k_tokens[s + (int)i], (int32_t)i, s, 1};
    CHECK_OK(llmops_decode(multi, b, n, &err), err);
    for (size_t k = 0; k < n; k++) {
        float d = max_abs_diff(llmops_get_logits(multi, k), ref[b[k].seq] + (size_t)b[k].pos * V, V);
        CHECK_MSG(d < 1e-4f, "seq %d pos %d: max |diff| %g", b[k].seq, b[k].pos, d);
    }
    /* one more decode step for all three at once (continuous batching) */
    llmops_batch_item step[3];
    for (int s = 0; s < 3; s++) step[s] = (llmops_batch_item){k_tokens[0], (int32_t)lens[s], s, 1};
    CHECK_OK(llmops_decode(multi, step, 3, &err), err);
    for (int s = 0; s < 3; s++) {
        int32_t toks[17];
        memcpy(toks, k_tokens + s, lens[s] * sizeof(int32_t));
        toks[lens[s]] = k_tokens[0];
        llmops_kv_clear(solo);
        float *r = prefill_all(solo, toks, lens[s] + 1, 0, V);
        CHECK(r);
        float d = max_abs_diff(llmops_get_logits(multi, (size_t)s), r + lens[s] * V, V);
        CHECK_MSG(d < 1e-4f, "step of seq %d: %g", s, d);
        free(r);
    }
    for (int s = 0; s < 3; s++) free(ref[s]);
    llmops_context_free(solo);
    llmops_context_free(multi);
    llmops_model_free(m);
}

TEST(model_forked_prefix_equals_fresh_prefill) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    llmops_context *ctx = make_ctx(m, 64, 2, LLMOPS_KV_F32, 1);
    llmops_context *fresh = make_ctx(m, 64, 1, LLMOPS_KV_F32, 1);
    CHECK(ctx && fresh);
    /* prefix of 8 on seq 0, shared with seq 1, then different continuations */
    float *p = prefill_all(ctx, k_tokens, 8, 0, V);
    CHECK(p);
    free(p);
    llmops_kv_seq_cp(ctx, 0, 1, 0, -1);
    CHECK_EQ_INT(llmops_kv_used(ctx), 8);
    CHECK_EQ_INT(llmops_kv_seq_pos_max(ctx, 1), 7);
    llmops_batch_item b[2] = {{k_tokens[8], 8, 0, 1}, {k_tokens[12], 8, 1, 1}};
    CHECK_OK(llmops_decode(ctx, b, 2, &err), err);
    for (int s = 0; s < 2; s++) {
        int32_t toks[9];
        memcpy(toks, k_tokens, 8 * sizeof(int32_t));
        toks[8] = b[s].token;
        llmops_kv_clear(fresh);
        float *r = prefill_all(fresh, toks, 9, 0, V);
        CHECK(r);
        float d = max_abs_diff(llmops_get_logits(ctx, (size_t)s), r + 8 * V, V);
        CHECK_MSG(d < 1e-4f, "seq %d: %g", s, d);
        free(r);
    }
    /* removing seq 0's tail keeps the prefix seq 1 still uses */
    llmops_kv_seq_rm(ctx, 0, 0, -1);
    CHECK_EQ_INT(llmops_kv_seq_pos_max(ctx, 0), -1);
    CHECK_EQ_INT(llmops_kv_seq_pos_max(ctx, 1), 8);
    CHECK_EQ_INT(llmops_kv_used(ctx), 9);
    llmops_context_free(ctx);
    llmops_context_free(fresh);
    llmops_model_free(m);
}

/* A prompt longer than one slice of the batched path (for a model this small the chunk runs 64 tokens at a
 * time, see alloc_scratch) and not a multiple of it, as one batch and as chunks of 100 (n_batch), gives the
 * logits of the same tokens decoded one at a time. */
TEST(model_prefill_across_slices_equals_decode) {
    enum { N = 150 };
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    int32_t toks[N];
    for (size_t i = 0; i < N; i++) toks[i] = i ? (int32_t)(3 + (i * 131 + 7) % (V - 3)) : 1;
    llmops_context *one = make_ctx(m, 256, 1, LLMOPS_KV_F32, 1);
    CHECK(one != NULL);
    float *ref = malloc(N * V * sizeof(float));
    for (size_t i = 0; i < N; i++) {
        llmops_batch_item it = {toks[i], (int32_t)i, 0, 1};
        CHECK_OK(llmops_decode(one, &it, 1, &err), err);
        memcpy(ref + i * V, llmops_get_logits(one, 0), V * sizeof(float));
    }
    for (int chunked = 0; chunked < 2; chunked++) {
        llmops_context_params cp;
        llmops_context_params_init(&cp);
        cp.n_ctx = 256;
        cp.n_batch = chunked ? 100 : 512;
        cp.kv_type = LLMOPS_KV_F32;
        cp.n_threads = 2;
        llmops_context *ctx = NULL;
        CHECK_OK(llmops_context_create(m, &cp, &ctx, &err), err);
        float *all = prefill_all(ctx, toks, N, 0, V);
        CHECK(all != NULL);
        for (size_t i = 0; i < N; i++) {
            float d = max_abs_diff(all + i * V, ref + i * V, V);
            CHECK_MSG(d < 1e-4f, "n_batch %u, position %zu: max |diff| %g", cp.n_batch, i, d);
        }
        free(all);
        llmops_context_free(ctx);
    }
    free(ref);
    llmops_context_free(one);
    llmops_model_free(m);
}

/* The llama2.c file, its GGUF (interleaved RoPE) and its Hugging Face export
 * (rotate-half RoPE on permuted weights) are the same network. */
TEST(model_layouts_agree) {
    llmops_error err = {0};
    const char *g = test_tmpfile("s.gguf"), *g16 = test_tmpfile("s16.gguf"), *hf = test_tmpfile("hf");
    llmops_convert_opts o;
    llmops_convert_opts_init(&o);
    CHECK_OK(llmops_convert(stories(), g, &o, &err), err);
    o.out_type = LLMOPS_DTYPE_F16;
    CHECK_OK(llmops_convert(stories(), g16, &o, &err), err);
    o.out_type = -1;
    CHECK_OK(llmops_convert(g, hf, &o, &err), err);
    const char *paths[] = {stories(), g, hf, g16};
    float *ref = NULL;
    size_t V = 0;
    for (int k = 0; k < 4; k++) {
        llmops_model_params mp;
        llmops_model_params_init(&mp);
        mp.load_tokenizer = k != 2; /* the HF export carries no tokenizer */
        llmops_model *m;
        CHECK_OK(llmops_model_load(paths[k], &mp, &m, &err), err);
        V = (size_t)llmops_model_n_vocab(m);
        llmops_context *ctx = make_ctx(m, 64, 1, LLMOPS_KV_F32, 2);
        float *l = prefill_all(ctx, k_tokens, N_TOK, 0, V);
        CHECK(l);
        if (!ref) ref = l;
        else {
            float d = max_abs_diff(ref, l, N_TOK * V);
            CHECK_MSG(d < (k == 3 ? 5e-2f : 1e-4f), "%s: max |diff| %g", paths[k], d);
            free(l);
        }
        llmops_context_free(ctx);
        llmops_model_free(m);
    }
    free(ref);
}

TEST(model_errors_are_clear) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_ERR(llmops_model_load("/nonexistent/model.gguf", NULL, &m, &err), LLMOPS_ERR_NOT_FOUND, err, "no such file");
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_context *ctx = make_ctx(m, 8, 1, LLMOPS_KV_F16, 1);
    CHECK(ctx);
    llmops_batch_item bad_tok = {512, 0, 0, 1}, bad_seq = {1, 0, 1, 1}, bad_pos = {1, 512, 0, 1};
    CHECK_ERR(llmops_decode(ctx, &bad_tok, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "outside the vocabulary");
    CHECK_ERR(llmops_decode(ctx, &bad_seq, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "sequence 1");
    CHECK_ERR(llmops_decode(ctx, &bad_pos, 1, &err), LLMOPS_ERR_LIMIT, err, "context length 512");
    llmops_batch_item b[9];
    for (int i = 0; i < 9; i++) b[i] = (llmops_batch_item){1, i, 0, 0};
    CHECK_ERR(llmops_decode(ctx, b, 9, &err), LLMOPS_ERR_LIMIT, err, "context full");
    llmops_context_free(ctx);
    /* a checkpoint cut short is a format error naming the sizes */
    const char *cut = test_tmpfile("cut.bin");
    FILE *in = fopen(stories(), "rb"), *out = fopen(cut, "wb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    llmops_model *m2;
    CHECK_ERR(llmops_model_load(cut, NULL, &m2, &err), LLMOPS_ERR_UNSUPPORTED, err, "not a GGUF file");
    llmops_model_free(m);
}

static int collect(void *user, const char *text, size_t len, int32_t token, const llmops_sample_result *r) {
    (void)token;
    (void)r;
    strncat(user, text, len);
    return 0;
}

TEST(model_generate_stop_strings_and_seed) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_context *ctx = make_ctx(m, 256, 1, LLMOPS_KV_F16, 1);
    llmops_gen_params gp;
    llmops_gen_params_init(&gp);
    gp.n_predict = 60;
    gp.sampling.temperature = 0;
    char greedy[4096] = "", stopped[4096] = "";
    llmops_gen_stats st;
    CHECK_OK(llmops_generate(m, ctx, "", &gp, collect, greedy, &st, &err), err);
    CHECK_EQ_INT(st.n_gen, 60);
    const char *stop[] = {"Lily"};
    gp.stop = stop;
    gp.n_stop = 1;
    CHECK_OK(llmops_generate(m, ctx, "", &gp, collect, stopped, &st, &err), err);
    CHECK_EQ_INT(st.stop, LLMOPS_STOP_STRING);
    const char *at = strstr(greedy, "Lily");
    CHECK(at != NULL);
    CHECK_EQ_INT(strlen(stopped), (size_t)(at - greedy));
    CHECK(strncmp(stopped, greedy, strlen(stopped)) == 0);
    /* sampling: the same seed gives the same text, another seed another */
    gp.n_stop = 0;
    gp.sampling.temperature = 1.0f;
    char s1[4096] = "", s2[4096] = "", s3[4096] = "";
    gp.sampling.seed = 7;
    CHECK_OK(llmops_generate(m, ctx, "Once", &gp, collect, s1, &st, &err), err);
    CHECK_OK(llmops_generate(m, ctx, "Once", &gp, collect, s2, &st, &err), err);
    gp.sampling.seed = 8;
    CHECK_OK(llmops_generate(m, ctx, "Once", &gp, collect, s3, &st, &err), err);
    CHECK_EQ_STR(s1, s2);
    CHECK(strcmp(s1, s3) != 0);
    llmops_context_free(ctx);
    llmops_model_free(m);
}

/* Copies `src` into `dst` leaving out tensor `drop`, reshaping tensor `reshape`
 * (ne[1] halved), and overriding key `key` with string `val` (any may be NULL). */
static llmops_status rewrite(const char *src, const char *dst, const char *drop, const char *reshape, const char *key,
                             const char *val, llmops_error *err) {
    llmops_gguf *g;
    llmops_status st = llmops_gguf_open(src, &g, err);
    if (st) return st;
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    for (size_t i = 0; i < llmops_gguf_n_kv(g) && !st; i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, err);
    }
    if (!st && key) st = llmops_gguf_writer_set_str(w, key, val, err);
    for (size_t i = 0; i < llmops_gguf_n_tensors(g) && !st; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.data);
        if (drop && !strcmp(name, drop)) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (reshape && !strcmp(name, reshape)) ne[1] /= 2;
        st = llmops_gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, llmops_gguf_tensor_data(g, t), err);
    }
    if (!st) st = llmops_gguf_writer_write(w, dst, err);
    llmops_gguf_writer_free(w);
    llmops_gguf_free(g);
    return st;
}

TEST(model_malformed_models_name_the_problem) {
    llmops_error err = {0};
    const char *good = test_tmpfile("good.gguf"), *bad = test_tmpfile("bad.gguf");
    CHECK_OK(llmops_convert(stories(), good, NULL, &err), err);
    llmops_model *m = NULL;
    CHECK_OK(rewrite(good, bad, "blk.3.ffn_up.weight", NULL, NULL, NULL, &err), err);
    CHECK_ERR(llmops_model_load(bad, NULL, &m, &err), LLMOPS_ERR_FORMAT, err, "tensor 'blk.3.ffn_up.weight' is missing");
    CHECK_OK(rewrite(good, bad, NULL, "blk.1.attn_k.weight", NULL, NULL, &err), err);
    CHECK_ERR(llmops_model_load(bad, NULL, &m, &err), LLMOPS_ERR_FORMAT, err, "'blk.1.attn_k.weight' is 16 × 64, expected 32 × 64");
    CHECK_OK(rewrite(good, bad, NULL, NULL, "general.architecture", "mamba", &err), err);
    CHECK_ERR(llmops_model_load(bad, NULL, &m, &err), LLMOPS_ERR_UNSUPPORTED, err, "architecture 'mamba'");
    /* a vocabulary larger than the embedding table */
    CHECK_OK(rewrite(good, bad, NULL, "token_embd.weight", NULL, NULL, &err), err);
    CHECK_ERR(llmops_model_load(bad, NULL, &m, &err), LLMOPS_ERR_FORMAT, err,
              "'token_embd.weight' is 256 × 64, expected 512 × 64");
    CHECK(m == NULL);
}

/* One token at a time (the single-region path) gives the same logits bit for bit on 1, 2 and 3 threads,
 * with F16 and F32 caches. */
TEST(model_decode_threads_bit_equal) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    size_t V = (size_t)llmops_model_n_vocab(m);
    for (int kv = 0; kv < 2; kv++) {
        llmops_context *c[3];
        for (int t = 0; t < 3; t++) {
            c[t] = make_ctx(m, 64, 1, kv ? LLMOPS_KV_F32 : LLMOPS_KV_F16, t + 1);
            CHECK(c[t] != NULL);
        }
        for (size_t i = 0; i < N_TOK; i++) {
            llmops_batch_item it = {k_tokens[i], (int32_t)i, 0, 1};
            for (int t = 0; t < 3; t++) CHECK_OK(llmops_decode(c[t], &it, 1, &err), err);
            for (int t = 1; t < 3; t++)
                CHECK_MSG(memcmp(llmops_get_logits(c[0], 0), llmops_get_logits(c[t], 0), V * sizeof(float)) == 0,
                          "kv %d, position %zu: %d threads differ from 1", kv, i, t + 1);
        }
        for (int t = 0; t < 3; t++) llmops_context_free(c[t]);
    }
    llmops_model_free(m);
}
