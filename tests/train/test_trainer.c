/*
 * The training core (include/llmops/train.h) against independent checks:
 * whole-model gradients against finite differences of the loss (Llama with
 * GQA, Mistral's sliding window, Qwen2 biases, GPT-2 LayerNorm + learned
 * positions + tied output), logits against the inference engine's
 * llmops_decode (itself checked against PyTorch), recompute against keeping
 * activations, QLoRA against the F32 base, a LoRA SGD loop on stories260K,
 * and the error paths.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/model.h"
#include "llmops/tensor.h"
#include "llmops/train.h"

#define PY "/usr/bin/python3"

static uint64_t g_rng = 777;

static double urand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

static int close_to(double a, double n, double atol, double rtol) { return fabs(a - n) <= atol + rtol * fabs(n); }

/* A tiny decoder of each family, for from-scratch trainers. */
static void tiny_arch(llmops_arch *a, llmops_arch_family fam) {
    llmops_arch_init(a);
    a->family = fam;
    snprintf(a->hf_model_type, sizeof a->hf_model_type, "%s", llmops_arch_family_name(fam));
    a->vocab_size = 29;
    a->hidden_size = 16;
    a->n_layers = 2;
    a->n_heads = 4;
    a->n_kv_heads = 2;
    a->head_dim = 4;
    a->ffn_size = 24;
    a->max_positions = 32;
    a->norm = LLMOPS_NORM_RMS;
    a->act = LLMOPS_ACT_SILU;
    a->gated_ffn = 1;
    a->pos = LLMOPS_POS_ROPE;
    a->rope_dim = 4;
    if (fam == LLMOPS_ARCH_QWEN2) a->qkv_bias = 1, a->rope_theta = 1e6, a->tie_embeddings = 1;
    if (fam == LLMOPS_ARCH_MISTRAL) a->sliding_window = 3;
    if (fam == LLMOPS_ARCH_GPT2) {
        a->n_kv_heads = 4;
        a->norm = LLMOPS_NORM_LAYER;
        a->norm_bias = 1;
        a->act = LLMOPS_ACT_GELU_TANH;
        a->gated_ffn = 0;
        a->pos = LLMOPS_POS_LEARNED;
        a->qkv_bias = a->attn_out_bias = a->mlp_bias = 1;
        a->fused_qkv = 1;
        a->tie_embeddings = 1;
    }
}

/* Spreads the trainable values so that every op carries signal (scratch init is N(0, 0.02)). */
static void perturb(llmops_trainer *t, double scale) {
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *e = llmops_trainer_tensor(t, i);
        int norm_w = strstr(e->name, "norm.weight") != NULL;
        for (int64_t k = 0; k < e->rows * e->cols; k++)
            e->w[k] = norm_w ? (float)(1.0 + 0.2 * (urand() - 0.5)) : (float)(scale * (2 * urand() - 1));
    }
}

static void make_batch(int32_t *tok, int32_t *tgt, int n, int64_t V, int ignore_every) {
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)(urand() * (double)V);
        tgt[i] = ignore_every && i % ignore_every == 0 ? -1 : (int32_t)(urand() * (double)V);
    }
}

static double eval_loss(llmops_trainer *t, const int32_t *tok, const int32_t *tgt, int S, int T) {
    double l = 0;
    int64_t c = 0;
    llmops_error err = {0};
    if (llmops_trainer_eval(t, tok, tgt, S, T, &l, &c, &err)) return NAN;
    return l;
}

/*
 * Analytic gradients of the summed cross-entropy against central differences
 * at `per` coordinates of every trainable tensor (rows of used tokens for the
 * embedding). Returns the number of mismatches (and reports the first few).
 */
static int fd_check(llmops_trainer *t, const int32_t *tok, const int32_t *tgt, int S, int T, int per, double eps,
                    double atol, double rtol) {
    llmops_error err = {0};
    double loss;
    int64_t cnt;
    llmops_trainer_zero_grad(t);
    if (llmops_trainer_forward_backward(t, tok, tgt, S, T, 1.0f, &loss, &cnt, &err)) {
        fprintf(stderr, "    forward_backward: %s\n", err.msg);
        return 1;
    }
    int bad = 0;
    double el = eval_loss(t, tok, tgt, S, T);
    if (!close_to(el, loss, 1e-4, 1e-5)) {
        fprintf(stderr, "    eval loss %.8g != training loss %.8g\n", el, loss);
        bad++;
    }
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *e = llmops_trainer_tensor(t, i);
        for (int c = 0; c < per; c++) {
            int64_t row = (int64_t)(urand() * (double)e->rows), col = (int64_t)(urand() * (double)e->cols);
            if (!strcmp(e->name, "token_embd.weight") && c > 0) row = tok[(int)(urand() * S * T)];
            if (!strcmp(e->name, "position_embd.weight")) row = (int64_t)(urand() * T);
            size_t k = (size_t)(row * e->cols + col);
            float w0 = e->w[k];
            e->w[k] = (float)(w0 + eps);
            double lp = eval_loss(t, tok, tgt, S, T);
            e->w[k] = (float)(w0 - eps);
            double lm = eval_loss(t, tok, tgt, S, T);
            e->w[k] = w0;
            double num = (lp - lm) / (2 * eps);
            if (!close_to(e->g[k], num, atol, rtol)) {
                if (bad < 6) fprintf(stderr, "    %s[%lld,%lld]: analytic %.6g, numeric %.6g\n", e->name, (long long)row, (long long)col, e->g[k], num);
                bad++;
            }
        }
    }
    return bad;
}

static void scratch_grad_check(llmops_arch_family fam, int recompute) {
    llmops_arch a;
    tiny_arch(&a, fam);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.n_threads = 2;
    p.recompute = recompute;
    llmops_trainer *t;
    llmops_error err = {0};
    CHECK_OK(llmops_trainer_create_scratch(&a, &p, &t, &err), err);
    perturb(t, 0.5);
    int32_t tok[2 * 7], tgt[2 * 7];
    make_batch(tok, tgt, 14, a.vocab_size, 3);
    int bad = fd_check(t, tok, tgt, 2, 7, 4, 1e-2, 3e-3, 3e-2);
    llmops_trainer_free(t);
    CHECK_MSG(bad == 0, "%d gradient mismatches", bad);
}

TEST(trainer_scratch_gradients_llama_gqa) { scratch_grad_check(LLMOPS_ARCH_LLAMA, 0); }
TEST(trainer_scratch_gradients_mistral_window_recompute) { scratch_grad_check(LLMOPS_ARCH_MISTRAL, 1); }
TEST(trainer_scratch_gradients_qwen2_biases_tied) { scratch_grad_check(LLMOPS_ARCH_QWEN2, 0); }
TEST(trainer_scratch_gradients_gpt2) { scratch_grad_check(LLMOPS_ARCH_GPT2, 0); }

TEST(trainer_scratch_tensor_names_order_and_init) {
    llmops_arch a;
    tiny_arch(&a, LLMOPS_ARCH_GPT2);
    llmops_trainer *t;
    llmops_error err = {0};
    CHECK_OK(llmops_trainer_create_scratch(&a, NULL, &t, &err), err);
    const char *want[] = {"token_embd.weight", "position_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_norm.bias",
                          "blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias", "blk.0.attn_output.weight",
                          "blk.0.attn_output.bias", "blk.0.ffn_norm.weight", "blk.0.ffn_norm.bias",
                          "blk.0.ffn_up.weight", "blk.0.ffn_up.bias", "blk.0.ffn_down.weight", "blk.0.ffn_down.bias"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) CHECK_EQ_STR(llmops_trainer_tensor(t, i)->name, want[i]);
    size_t n = llmops_trainer_n_tensors(t);
    CHECK_EQ_STR(llmops_trainer_tensor(t, n - 2)->name, "output_norm.weight");
    CHECK_EQ_STR(llmops_trainer_tensor(t, n - 1)->name, "output_norm.bias"); /* tied: no output.weight */
    CHECK(llmops_trainer_find(t, "output.weight") == NULL);
    llmops_train_tensor *qkv = llmops_trainer_find(t, "blk.1.attn_qkv.weight");
    CHECK(qkv && qkv->rows == 48 && qkv->cols == 16 && qkv->decay == 1 && qkv->layer == 1);
    llmops_train_tensor *nb = llmops_trainer_find(t, "blk.1.ffn_norm.bias");
    CHECK(nb && nb->rows == 1 && nb->cols == 16 && nb->decay == 0);
    for (int k = 0; k < 16; k++) CHECK(nb->w[k] == 0.0f && llmops_trainer_find(t, "blk.1.ffn_norm.weight")->w[k] == 1.0f);
    /* N(0, 0.02), residual projections N(0, 0.02/√(2L)) */
    double s2 = 0, r2 = 0;
    llmops_train_tensor *te = llmops_trainer_find(t, "token_embd.weight"), *down = llmops_trainer_find(t, "blk.0.ffn_down.weight");
    for (int64_t k = 0; k < te->rows * te->cols; k++) s2 += (double)te->w[k] * te->w[k];
    for (int64_t k = 0; k < down->rows * down->cols; k++) r2 += (double)down->w[k] * down->w[k];
    double sd = sqrt(s2 / (double)(te->rows * te->cols)), rd = sqrt(r2 / (double)(down->rows * down->cols));
    CHECK_MSG(sd > 0.017 && sd < 0.023, "embedding sd %g", sd);
    CHECK_MSG(rd > 0.0085 && rd < 0.0115, "residual projection sd %g", rd);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += (uint64_t)(llmops_trainer_tensor(t, i)->rows * llmops_trainer_tensor(t, i)->cols);
    CHECK(total == llmops_trainer_n_trainable(t));
    CHECK(llmops_trainer_rope_neox(t) == 1);
    CHECK(llmops_trainer_peak_bytes(t) >= total * 8);
    llmops_trainer_free(t);
}

/* recompute = 1 reproduces the loss and every gradient of recompute = 0 (LoRA with dropout too). */
static void recompute_same(const llmops_model *m, const llmops_arch *a, llmops_train_method method, float dropout) {
    llmops_trainer *t[2];
    llmops_error err = {0};
    int32_t tok[3 * 9], tgt[3 * 9];
    int64_t V = m ? llmops_model_n_vocab(m) : a->vocab_size;
    make_batch(tok, tgt, 27, V, 4);
    double loss[2];
    for (int r = 0; r < 2; r++) {
        llmops_trainer_params p;
        llmops_trainer_params_init(&p);
        p.n_threads = 2;
        p.recompute = r;
        p.method = method;
        p.lora_dropout = dropout;
        p.lora_targets = 0xff;
        if (m) CHECK_OK(llmops_trainer_create(m, &p, &t[r], &err), err);
        else CHECK_OK(llmops_trainer_create_scratch(a, &p, &t[r], &err), err);
        for (size_t i = 0; i < llmops_trainer_n_tensors(t[r]); i++) { /* B nonzero */
            llmops_train_tensor *e = llmops_trainer_tensor(t[r], i);
            if (strstr(e->name, "lora_b"))
                for (int64_t k = 0; k < e->rows * e->cols; k++) e->w[k] = 0.01f * (float)((k * 37) % 11 - 5);
        }
        int64_t cnt;
        CHECK_OK(llmops_trainer_forward_backward(t[r], tok, tgt, 3, 9, 0.5f, &loss[r], &cnt, &err), err);
    }
    CHECK_MSG(close_to(loss[0], loss[1], 1e-6, 1e-6), "loss %.9g vs %.9g", loss[0], loss[1]);
    CHECK(llmops_trainer_n_tensors(t[0]) == llmops_trainer_n_tensors(t[1]));
    for (size_t i = 0; i < llmops_trainer_n_tensors(t[0]); i++) {
        llmops_train_tensor *e0 = llmops_trainer_tensor(t[0], i), *e1 = llmops_trainer_tensor(t[1], i);
        double nz = 0;
        for (int64_t k = 0; k < e0->rows * e0->cols; k++) {
            CHECK_MSG(close_to(e0->g[k], e1->g[k], 1e-6, 1e-4), "%s[%lld]: %g vs %g", e0->name, (long long)k, e0->g[k], e1->g[k]);
            nz += fabs(e0->g[k]);
        }
        CHECK_MSG(nz > 0, "%s has no gradient", e0->name);
    }
    CHECK(llmops_trainer_peak_bytes(t[1]) < llmops_trainer_peak_bytes(t[0]));
    llmops_trainer_free(t[0]);
    llmops_trainer_free(t[1]);
}

TEST(trainer_recompute_matches_stored_activations) {
    llmops_arch a;
    tiny_arch(&a, LLMOPS_ARCH_LLAMA);
    a.n_layers = 3;
    recompute_same(NULL, &a, LLMOPS_TRAIN_SCRATCH, 0);
    tiny_arch(&a, LLMOPS_ARCH_GPT2);
    recompute_same(NULL, &a, LLMOPS_TRAIN_SCRATCH, 0);
}

/* ---- loaded models -------------------------------------------------------------------------------- */

static const char *stories(void) {
    static char path[1024];
    const char *p = test_asset("models/stories260K/stories260K.bin");
    if (p) return p;
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", test_repo_root());
    return path;
}

static int have_numpy(void) { return system(PY " -c 'import numpy' >/dev/null 2>&1") == 0; }

/* A random Hugging Face model folder from tests/oracle/make_random_model.py; NULL on failure. */
static const char *random_model(const char *arch, const char *extra) {
    static char dirs[4][1024];
    static int k;
    char *dir = dirs[k++ % 4];
    snprintf(dir, 1024, "%s", test_tmpfile(arch));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " %s/tests/oracle/make_random_model.py --arch %s --out %s --size tiny %s >/dev/null",
             test_repo_root(), arch, dir, extra ? extra : "");
    return system(cmd) == 0 ? dir : NULL;
}

/* Every position's logits from the engine (F32 KV cache), one sequence at a time. */
static int engine_logits(const llmops_model *m, const int32_t *tok, int S, int T, float *out) {
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_ctx = (uint32_t)T;
    cp.n_batch = (uint32_t)T;
    cp.kv_type = LLMOPS_KV_F32;
    cp.n_threads = 2;
    llmops_context *ctx;
    llmops_error err = {0};
    if (llmops_context_create(m, &cp, &ctx, &err)) return -1;
    size_t V = (size_t)llmops_model_n_vocab(m);
    llmops_batch_item *it = calloc((size_t)T, sizeof *it);
    for (int s = 0; s < S; s++) {
        llmops_kv_clear(ctx);
        for (int i = 0; i < T; i++) it[i] = (llmops_batch_item){tok[s * T + i], i, 0, 1};
        if (llmops_decode(ctx, it, (size_t)T, &err)) {
            free(it);
            llmops_context_free(ctx);
            return -1;
        }
        for (int i = 0; i < T; i++) memcpy(out + ((size_t)s * T + i) * V, llmops_get_logits(ctx, (size_t)i), V * sizeof(float));
    }
    free(it);
    llmops_context_free(ctx);
    return 0;
}

/* Max |a − b| / max(1, max |b|). */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

/* FULL and LoRA (B = 0) logits equal the engine's on the same model. */
static void logits_match_engine(const char *path) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(path, NULL, &m, &err), err);
    const int S = 2, T = 12;
    size_t V = (size_t)llmops_model_n_vocab(m);
    int32_t tok[2 * 12], tgt[2 * 12];
    make_batch(tok, tgt, S * T, (int64_t)V, 0);
    float *ref = malloc((size_t)S * T * V * sizeof(float)), *got = malloc((size_t)S * T * V * sizeof(float));
    CHECK(engine_logits(m, tok, S, T, ref) == 0);
    llmops_train_method methods[2] = {LLMOPS_TRAIN_FULL, LLMOPS_TRAIN_LORA};
    for (int k = 0; k < 2; k++) {
        llmops_trainer_params p;
        llmops_trainer_params_init(&p);
        p.method = methods[k];
        p.n_threads = 2;
        p.lora_targets = 0xff;
        llmops_trainer *t;
        CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
        CHECK_OK(llmops_trainer_logits(t, tok, S, T, got, &err), err);
        double rd = rel_diff(got, ref, (size_t)S * T * V);
        CHECK_MSG(rd < 1e-4, "%s %s: logits differ from the engine by %g (relative)", path, k ? "LORA" : "FULL", rd);
        /* the training loss equals the cross-entropy of those logits */
        double loss, want = 0;
        int64_t cnt;
        CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, S, T, 1.0f, &loss, &cnt, &err), err);
        for (int i = 0; i < S * T; i++) {
            const float *l = ref + (size_t)i * V;
            double mx = -1e300, s = 0;
            for (size_t j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
            for (size_t j = 0; j < V; j++) s += exp(l[j] - mx);
            want += log(s) + mx - l[tgt[i]];
        }
        CHECK(cnt == S * T);
        CHECK_MSG(close_to(loss, want, 1e-3, 1e-4), "loss %.6f vs %.6f", loss, want);
        llmops_trainer_free(t);
    }
    free(ref);
    free(got);
    llmops_model_free(m);
}

TEST(trainer_logits_match_engine_stories260k) { logits_match_engine(stories()); }

TEST(trainer_logits_match_engine_random_hf_models) {
    if (!have_numpy()) SKIP("python3 with numpy is not installed");
    const char *archs[][2] = {{"llama", NULL}, {"llama3", NULL}, {"qwen2", NULL}, {"gpt2", NULL},
                              {"mistral", "--sliding-window 5"}};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        const char *dir = random_model(archs[i][0], archs[i][1]);
        CHECK_MSG(dir != NULL, "make_random_model.py --arch %s failed", archs[i][0]);
        logits_match_engine(dir);
        if (test_failed()) return;
    }
}

TEST(trainer_rejects_loaded_bert) {
    if (!have_numpy()) SKIP("python3 with numpy is not installed");
    const char *dir = random_model("bert", NULL);
    CHECK(dir != NULL);
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, NULL, &m, &err), err);
    llmops_trainer *t = NULL;
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.method = LLMOPS_TRAIN_FULL;
    CHECK_ERR(llmops_trainer_create(m, &p, &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "decoder models only");
    CHECK(t == NULL);
    llmops_model_free(m);
}

/* FULL and LoRA gradients of loaded models against finite differences. */
static void model_grad_check(const char *path, int per) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(path, NULL, &m, &err), err);
    int32_t tok[2 * 6], tgt[2 * 6];
    make_batch(tok, tgt, 12, llmops_model_n_vocab(m), 4);
    llmops_train_method methods[2] = {LLMOPS_TRAIN_FULL, LLMOPS_TRAIN_LORA};
    for (int k = 0; k < 2; k++) {
        llmops_trainer_params p;
        llmops_trainer_params_init(&p);
        p.method = methods[k];
        p.n_threads = 2;
        p.lora_targets = 0xff;
        p.lora_rank = 4;
        llmops_trainer *t;
        CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
        if (k == 1) perturb(t, 0.1); /* B nonzero so that A has gradients */
        int bad = fd_check(t, tok, tgt, 2, 6, per, 1e-2, 3e-3, 3e-2);
        llmops_trainer_free(t);
        CHECK_MSG(bad == 0, "%s %s: %d gradient mismatches", path, k ? "LORA" : "FULL", bad);
    }
    llmops_model_free(m);
}

TEST(trainer_gradients_random_hf_models) {
    if (!have_numpy()) SKIP("python3 with numpy is not installed");
    const char *archs[] = {"llama", "qwen2", "gpt2"};
    for (size_t i = 0; i < 3; i++) {
        const char *dir = random_model(archs[i], NULL);
        CHECK_MSG(dir != NULL, "make_random_model.py --arch %s failed", archs[i]);
        model_grad_check(dir, 2);
        if (test_failed()) return;
    }
}

TEST(trainer_gradients_stories260k_adjacent_pair_rope) { model_grad_check(stories(), 2); }

TEST(trainer_lora_names_and_init) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    CHECK(llmops_trainer_rope_neox(t) == 0);
    CHECK_EQ_INT(llmops_trainer_n_tensors(t), 4 * 5);
    const char *want[] = {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.0.attn_v.weight.lora_a",
                          "blk.0.attn_v.weight.lora_b", "blk.1.attn_q.weight.lora_a"};
    for (size_t i = 0; i < 5; i++) CHECK_EQ_STR(llmops_trainer_tensor(t, i)->name, want[i]);
    llmops_train_tensor *A = llmops_trainer_find(t, "blk.2.attn_v.weight.lora_a"), *B = llmops_trainer_find(t, "blk.2.attn_v.weight.lora_b");
    CHECK(A && A->rows == 8 && A->cols == 64 && A->decay == 1 && A->layer == 2);
    CHECK(B && B->rows == 32 && B->cols == 8); /* stories260K: 4 KV heads of 8 */
    double mx = 0, s = 0;
    for (int64_t k = 0; k < A->rows * A->cols; k++) {
        mx = fabs(A->w[k]) > mx ? fabs(A->w[k]) : mx;
        s += A->w[k];
    }
    CHECK(mx <= 1.0 / 8.0 && mx > 0.1); /* U(−1/√64, 1/√64) */
    CHECK(fabs(s / (double)(A->rows * A->cols)) < 0.02);
    for (int64_t k = 0; k < B->rows * B->cols; k++) CHECK(B->w[k] == 0.0f);
    uint64_t want_n = 5 * ((uint64_t)8 * 64 + 64 * 8 + 8 * 64 + 32 * 8);
    CHECK_EQ_INT(llmops_trainer_n_trainable(t), want_n);
    llmops_trainer_free(t);
    llmops_model_free(m);
}

/* Dropout: the mask follows the RNG state, and the gradient is that of the masked function. */
TEST(trainer_lora_dropout_rng_state) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.lora_dropout = 0.3f;
    p.n_threads = 2;
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    perturb(t, 0.2);
    int32_t tok[16], tgt[16];
    make_batch(tok, tgt, 16, 512, 0);
    uint64_t s0 = llmops_trainer_rng_get(t);
    double l1, l2, l3;
    int64_t c;
    CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 8, 1.0f, &l1, &c, &err), err);
    CHECK(llmops_trainer_rng_get(t) != s0);
    CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 8, 1.0f, &l2, &c, &err), err);
    CHECK(l1 != l2); /* another mask */
    llmops_trainer_rng_set(t, s0);
    llmops_trainer_zero_grad(t);
    CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 8, 1.0f, &l3, &c, &err), err);
    CHECK(l3 == l1);
    /* finite differences of the loss with the same mask */
    llmops_train_tensor *A = llmops_trainer_find(t, "blk.1.attn_q.weight.lora_a");
    float *g0 = malloc((size_t)(A->rows * A->cols) * sizeof *g0); /* the FD calls below accumulate more */
    memcpy(g0, A->g, (size_t)(A->rows * A->cols) * sizeof *g0);
    for (int k = 0; k < 6; k++) {
        size_t i = (size_t)(urand() * (double)(A->rows * A->cols));
        float w0 = A->w[i], g = g0[i];
        double lp, lm;
        A->w[i] = w0 + 1e-2f;
        llmops_trainer_rng_set(t, s0);
        CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 8, 1.0f, &lp, &c, &err), err);
        A->w[i] = w0 - 1e-2f;
        llmops_trainer_rng_set(t, s0);
        CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 8, 1.0f, &lm, &c, &err), err);
        A->w[i] = w0;
        CHECK_MSG(close_to(g, (lp - lm) / 2e-2, 3e-3, 3e-2), "A[%zu]: %g vs %g", i, g, (lp - lm) / 2e-2);
    }
    free(g0);
    double le;
    CHECK_OK(llmops_trainer_eval(t, tok, tgt, 2, 8, &le, &c, &err), err);
    CHECK(le != l1); /* eval runs without dropout */
    llmops_trainer_free(t);
    llmops_model_free(m);
}

TEST(trainer_recompute_lora_dropout_stories260k) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    recompute_same(m, NULL, LLMOPS_TRAIN_LORA, 0.2f);
    recompute_same(m, NULL, LLMOPS_TRAIN_FULL, 0.0f);
    llmops_model_free(m);
}

/* ---- QLoRA ---------------------------------------------------------------------------------------------- */

/* QLoRA on base_type: logits within `tol` (relative to the largest) of the F32 base, LoRA gradients by finite differences. */
static void qlora_case(const char *dir, int type, double tol) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, NULL, &m, &err), err);
    const int S = 2, T = 10;
    size_t V = (size_t)llmops_model_n_vocab(m), n = (size_t)S * T * V;
    int32_t tok[20], tgt[20];
    make_batch(tok, tgt, 20, (int64_t)V, 5);
    float *ref = malloc(n * 4), *got = malloc(n * 4);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.n_threads = 2;
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    CHECK_OK(llmops_trainer_logits(t, tok, S, T, ref, &err), err);
    uint64_t lora_peak = llmops_trainer_peak_bytes(t);
    llmops_trainer_free(t);
    p.method = LLMOPS_TRAIN_QLORA;
    p.base_type = type;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    CHECK_OK(llmops_trainer_logits(t, tok, S, T, got, &err), err);
    double rd = rel_diff(got, ref, n);
    CHECK_MSG(rd < tol && rd > 0, "QLoRA %s: logits differ by %g", llmops_dtype_name(type), rd);
    CHECK(llmops_trainer_peak_bytes(t) > lora_peak); /* the quantized copies are the trainer's */
    perturb(t, 0.1);
    int bad = fd_check(t, tok, tgt, S, T, 2, 1e-2, 3e-3, 3e-2);
    CHECK_MSG(bad == 0, "QLoRA %s: %d gradient mismatches", llmops_dtype_name(type), bad);
    llmops_trainer_free(t);
    free(ref);
    free(got);
    llmops_model_free(m);
}

TEST(trainer_qlora_close_to_f32_base) {
    if (!have_numpy()) SKIP("python3 with numpy is not installed");
    const char *tiny = random_model("llama", NULL);
    CHECK(tiny != NULL);
    /* Q8_0 within 2% of the largest logit, 4-bit within 25% (random weights are hard on 4 bits) */
    qlora_case(tiny, LLMOPS_DTYPE_Q8_0, 2e-2);
    qlora_case(tiny, LLMOPS_DTYPE_Q4_0, 0.25);
    /* Q4_K needs rows of 256: the small shape (hidden 256; ffn_down's rows of 704 fall back to Q8_0) */
    char cmd[2048], small[1024];
    snprintf(small, sizeof small, "%s", test_tmpfile("small"));
    snprintf(cmd, sizeof cmd, PY " %s/tests/oracle/make_random_model.py --arch qwen2 --size small --out %s >/dev/null",
             test_repo_root(), small);
    CHECK(system(cmd) == 0);
    qlora_case(small, LLMOPS_DTYPE_Q4_K, 0.25);
}

/* ---- training lowers the loss ------------------------------------------------------------------------------ */

TEST(trainer_lora_sgd_lowers_loss_stories260k) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.n_threads = 2;
    p.lora_targets = LLMOPS_LORA_Q | LLMOPS_LORA_K | LLMOPS_LORA_V | LLMOPS_LORA_O;
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    /* a fixed batch: two rows of 32 tokens, predicting the next token */
    const int S = 2, T = 32;
    int32_t tok[64], tgt[64];
    for (int i = 0; i < S * T; i++) tok[i] = (int32_t)((i * 37 + 11) % 500 + 5);
    for (int i = 0; i < S * T; i++) tgt[i] = i % T == T - 1 ? -1 : tok[i + 1];
    double first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        double loss;
        int64_t cnt;
        llmops_trainer_zero_grad(t);
        CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, S, T, 1.0f / 62, &loss, &cnt, &err), err);
        CHECK(cnt == 62);
        if (step == 0) first = loss / (double)cnt;
        last = loss / (double)cnt;
        for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
            llmops_train_tensor *e = llmops_trainer_tensor(t, i);
            for (int64_t k = 0; k < e->rows * e->cols; k++) e->w[k] -= 0.5f * e->g[k];
        }
    }
    CHECK_MSG(last < first - 0.5, "mean loss %.4f -> %.4f", first, last);
    llmops_trainer_free(t);
    llmops_model_free(m);
}

/* ---- errors ------------------------------------------------------------------------------------------------- */

TEST(trainer_errors) {
    llmops_error err = {0};
    llmops_trainer *t = NULL;
    llmops_arch a;
    tiny_arch(&a, LLMOPS_ARCH_BERT);
    a.causal = 0;
    CHECK_ERR(llmops_trainer_create_scratch(&a, NULL, &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "decoder");
    CHECK(t == NULL);
    tiny_arch(&a, LLMOPS_ARCH_LLAMA);
    a.n_kv_heads = 3;
    CHECK(llmops_trainer_create_scratch(&a, NULL, &t, &err) != LLMOPS_OK);
    tiny_arch(&a, LLMOPS_ARCH_LLAMA);
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.lora_rank = 0;
    CHECK_ERR(llmops_trainer_create(m, &p, &t, &err), LLMOPS_ERR_INVALID_ARG, err, "rank");
    llmops_trainer_params_init(&p);
    p.method = LLMOPS_TRAIN_QLORA;
    p.base_type = LLMOPS_DTYPE_Q6_K;
    CHECK_ERR(llmops_trainer_create(m, &p, &t, &err), LLMOPS_ERR_INVALID_ARG, err, "QLoRA");
    llmops_trainer_params_init(&p);
    p.n_threads = 1;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    int32_t tok[4] = {1, 2, 3, 512}, tgt[4] = {2, 3, -1, 5};
    double loss;
    int64_t cnt;
    CHECK_ERR(llmops_trainer_forward_backward(t, tok, tgt, 1, 4, 1.0f, &loss, &cnt, &err), LLMOPS_ERR_INVALID_ARG, err,
              "vocabulary");
    tok[3] = 4;
    tgt[1] = 600;
    CHECK_ERR(llmops_trainer_eval(t, tok, tgt, 1, 4, &loss, &cnt, &err), LLMOPS_ERR_INVALID_ARG, err, "target");
    tgt[1] = -1;
    CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 1, 4, 1.0f, &loss, &cnt, &err), err);
    CHECK(cnt == 2);
    /* nothing counted: loss 0, gradients untouched */
    int32_t none[4] = {-1, -1, -1, -1};
    llmops_trainer_zero_grad(t);
    CHECK_OK(llmops_trainer_forward_backward(t, tok, none, 1, 4, 1.0f, &loss, &cnt, &err), err);
    CHECK(cnt == 0 && loss == 0.0);
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *e = llmops_trainer_tensor(t, i);
        for (int64_t k = 0; k < e->rows * e->cols; k++) CHECK(e->g[k] == 0.0f);
    }
    int32_t *big = calloc(513, sizeof *big);
    CHECK_ERR(llmops_trainer_forward_backward(t, big, big, 1, 513, 1.0f, &loss, &cnt, &err), LLMOPS_ERR_LIMIT, err,
              "context length");
    CHECK_ERR(llmops_trainer_logits(t, big, 0, 4, (float *)big, &err), LLMOPS_ERR_INVALID_ARG, err, "at least 1");
    free(big);
    llmops_trainer_free(t);
    llmops_model_free(m);
}

/* Every allocation of create and of the first pass may fail: NOMEM comes back, nothing leaks, nothing crashes. */
TEST(trainer_allocation_failures) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    int32_t tok[8] = {1, 5, 9, 200, 3, 4, 7, 8}, tgt[8] = {5, 9, 200, 3, -1, 7, 8, 2};
    llmops_train_method methods[3] = {LLMOPS_TRAIN_LORA, LLMOPS_TRAIN_QLORA, LLMOPS_TRAIN_FULL};
    for (int k = 0; k < 3; k++) {
        int done = 0;
        for (long n = 0; n < 1000 && !done; n++) {
            long live = llmops_alloc_live();
            llmops_trainer_params p;
            llmops_trainer_params_init(&p);
            p.method = methods[k];
            p.n_threads = 1;
            p.recompute = (int)(n & 1);
            llmops_trainer *t = NULL;
            llmops_alloc_fail_nth(n);
            llmops_status st = llmops_trainer_create(m, &p, &t, &err);
            double loss;
            int64_t cnt;
            if (!st) st = llmops_trainer_forward_backward(t, tok, tgt, 2, 4, 1.0f, &loss, &cnt, &err);
            int fired = llmops_alloc_failure_fired();
            llmops_alloc_fail_nth(-1);
            if (st) CHECK_MSG(st == LLMOPS_ERR_NOMEM, "method %d, failure %ld: %s: %s", k, n, llmops_status_str(st), err.msg);
            else done = !fired;
            llmops_trainer_free(t);
            CHECK_MSG(llmops_alloc_live() == live, "method %d, failure %ld: %ld allocations leaked", k, n,
                      llmops_alloc_live() - live);
        }
        CHECK(done);
    }
    llmops_model_free(m);
}

/* An evaluation of a larger batch grows only the buffers it uses, not every layer's activations. */
TEST(trainer_eval_of_larger_batch_keeps_memory_bounded) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    int32_t tok[8 * 16], tgt[8 * 16];
    make_batch(tok, tgt, 8 * 16, 512, 0);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.n_threads = 1;
    llmops_trainer *a, *b;
    CHECK_OK(llmops_trainer_create(m, &p, &a, &err), err);
    CHECK_OK(llmops_trainer_create(m, &p, &b, &err), err);
    double la, lb, l1, l2;
    int64_t c;
    CHECK_OK(llmops_trainer_forward_backward(a, tok, tgt, 1, 16, 1.0f, &la, &c, &err), err);
    CHECK_OK(llmops_trainer_eval(a, tok, tgt, 8, 16, &l1, &c, &err), err);
    CHECK_OK(llmops_trainer_forward_backward(b, tok, tgt, 8, 16, 1.0f, &lb, &c, &err), err);
    CHECK_OK(llmops_trainer_eval(b, tok, tgt, 8, 16, &l2, &c, &err), err);
    CHECK(l1 == l2);
    CHECK_MSG(llmops_trainer_peak_bytes(a) < llmops_trainer_peak_bytes(b), "%llu vs %llu",
              (unsigned long long)llmops_trainer_peak_bytes(a), (unsigned long long)llmops_trainer_peak_bytes(b));
    /* training again on the small batch after the large evaluation still works */
    CHECK_OK(llmops_trainer_forward_backward(a, tok, tgt, 1, 16, 1.0f, &l1, &c, &err), err);
    CHECK(l1 == la);
    llmops_trainer_free(a);
    llmops_trainer_free(b);
    llmops_model_free(m);
}

/* Split products, batched q/k/v and gate/up, parallel attention: 3 threads give the 1-thread results. */
TEST(trainer_threads_agree_stories260k) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    int32_t tok[3 * 40], tgt[3 * 40];
    make_batch(tok, tgt, 3 * 40, 512, 7);
    llmops_train_method methods[2] = {LLMOPS_TRAIN_FULL, LLMOPS_TRAIN_LORA};
    for (int k = 0; k < 2; k++) {
        llmops_trainer *t[2];
        double loss[2];
        for (int i = 0; i < 2; i++) {
            llmops_trainer_params p;
            llmops_trainer_params_init(&p);
            p.method = methods[k];
            p.n_threads = i ? 3 : 1;
            p.lora_targets = 0xff;
            CHECK_OK(llmops_trainer_create(m, &p, &t[i], &err), err);
            uint64_t keep = g_rng;
            g_rng = 99; /* the same factors for both */
            if (k) perturb(t[i], 0.05);
            g_rng = keep;
            int64_t c;
            CHECK_OK(llmops_trainer_forward_backward(t[i], tok, tgt, 3, 40, 1.0f, &loss[i], &c, &err), err);
        }
        CHECK_MSG(close_to(loss[0], loss[1], 1e-4, 2e-5), "method %d: %.9g vs %.9g", k, loss[0], loss[1]);
        for (size_t i = 0; i < llmops_trainer_n_tensors(t[0]); i++) {
            llmops_train_tensor *a = llmops_trainer_tensor(t[0], i), *b = llmops_trainer_tensor(t[1], i);
            double mx = 0;
            for (int64_t j = 0; j < a->rows * a->cols; j++) mx = fabs(a->g[j]) > mx ? fabs(a->g[j]) : mx;
            for (int64_t j = 0; j < a->rows * a->cols; j++)
                CHECK_MSG(close_to(b->g[j], a->g[j], 1e-5 * (1 + mx), 1e-4), "%s[%lld]: %g vs %g", a->name, (long long)j,
                          b->g[j], a->g[j]);
        }
        llmops_trainer_free(t[0]);
        llmops_trainer_free(t[1]);
    }
    llmops_model_free(m);
}

/* The fused clip + AdamW pass (what `llmops finetune` runs) gives the same weights and moments, bit
 * for bit, as clipping then stepping (what the PyTorch AdamW comparison checks), on steps where the
 * clip bites and where it does not: each step runs both ways from the same saved state. */
typedef struct {
    float **w, **m, **v, **g;
} opt_state;

static void state_copy(llmops_trainer *t, llmops_adamw *o, opt_state *st, int save) {
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t b = (size_t)(x->rows * x->cols) * sizeof(float);
        float *live[4] = {x->w, llmops_adamw_m(o, i), llmops_adamw_v(o, i), x->g};
        float **keep[4] = {st->w, st->m, st->v, st->g};
        for (int k = 0; k < 4; k++) {
            if (save && !keep[k][i]) keep[k][i] = malloc(b);
            if (save) memcpy(keep[k][i], live[k], b);
            else memcpy(live[k], keep[k][i], b);
        }
    }
}

TEST(trainer_fused_clip_adamw_equals_clip_then_step) {
    llmops_error err = {0};
    llmops_model *m;
    CHECK_OK(llmops_model_load(stories(), NULL, &m, &err), err);
    int32_t tok[2 * 32], tgt[2 * 32];
    make_batch(tok, tgt, 2 * 32, 512, 11);
    llmops_trainer_params p;
    llmops_trainer_params_init(&p);
    p.method = LLMOPS_TRAIN_FULL;
    p.n_threads = 3;
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &p, &t, &err), err);
    llmops_adamw_params ap;
    llmops_adamw_params_init(&ap);
    ap.weight_decay = 0.1f;
    llmops_adamw *o;
    CHECK_OK(llmops_adamw_create(t, &ap, &o, &err), err);
    size_t nt = llmops_trainer_n_tensors(t);
    opt_state st = {calloc(nt, sizeof(float *)), calloc(nt, sizeof(float *)), calloc(nt, sizeof(float *)),
                    calloc(nt, sizeof(float *))};
    float **sep_w = calloc(nt, sizeof(float *)), **sep_m = calloc(nt, sizeof(float *));
    double clip = 0;
    for (int s = 0; s < 4; s++) {
        llmops_trainer_zero_grad(t);
        double loss;
        int64_t c;
        CHECK_OK(llmops_trainer_forward_backward(t, tok, tgt, 2, 32, 1.0f / 64, &loss, &c, &err), err);
        if (s == 0) clip = 0.7 * llmops_grad_norm(t);
        double max_norm = s == 2 ? 1e9 : clip; /* step 2: no clipping */
        state_copy(t, o, &st, 1);
        int64_t steps = llmops_adamw_steps(o);
        double n0 = llmops_clip_grad_norm(t, max_norm);
        llmops_adamw_step(o, 1e-3f);
        for (size_t i = 0; i < nt; i++) {
            llmops_train_tensor *x = llmops_trainer_tensor(t, i);
            size_t b = (size_t)(x->rows * x->cols) * sizeof(float);
            if (!sep_w[i]) sep_w[i] = malloc(b), sep_m[i] = malloc(b);
            memcpy(sep_w[i], x->w, b);
            memcpy(sep_m[i], llmops_adamw_m(o, i), b);
        }
        state_copy(t, o, &st, 0);
        llmops_adamw_set_steps(o, steps);
        double n1 = llmops_adamw_clip_step(o, 1e-3f, max_norm);
        CHECK_MSG(n0 == n1, "step %d: norm %.17g vs %.17g", s, n0, n1);
        size_t diff = 0, moved = 0;
        for (size_t i = 0; i < nt; i++) {
            llmops_train_tensor *x = llmops_trainer_tensor(t, i);
            for (int64_t j = 0; j < x->rows * x->cols; j++) {
                diff += x->w[j] != sep_w[i][j] || llmops_adamw_m(o, i)[j] != sep_m[i][j];
                moved += x->w[j] != st.w[i][j];
            }
        }
        CHECK_MSG(diff == 0, "step %d: %zu weights or moments differ", s, diff);
        CHECK(moved > 1000);
    }
    for (size_t i = 0; i < nt; i++) free(st.w[i]), free(st.m[i]), free(st.v[i]), free(st.g[i]), free(sep_w[i]), free(sep_m[i]);
    free(st.w), free(st.m), free(st.v), free(st.g), free(sep_w), free(sep_m);
    llmops_adamw_free(o);
    llmops_trainer_free(t);
    llmops_model_free(m);
}
