/*
 * Fine-tuning speed: optimizer steps of LoRA (rank 8, alpha 16 on q,v) or
 * full fine-tuning of a loaded model on random token batches, as tokens/s and
 * peak resident memory, printed as one JSON object. bench/bench_train_torch.py
 * runs the same loop in PyTorch; bench/run_train_bench.sh runs both.
 *
 *     bench_train MODEL.gguf [--method lora|full] [--batch 4] [--seq 256] [--warmup 2] [--steps 4]
 *                            [--threads N] [--recompute] [--seed S]
 *
 * One step = zero_grad, forward_backward of batch × seq tokens (every position
 * counted, mean loss), clip_grad_norm(1.0), AdamW (lr 1e-4). Tokens come from
 * a 64-bit LCG that bench_train_torch.py reproduces, so both sides see the same
 * batches and, given the same weights, print the same losses.
 *
 * Besides tokens/s (measured steps only) and peak RSS (getrusage), the JSON
 * holds the mean forward+backward and clip+AdamW times, one forward pass alone
 * (forward_only_s), and gemm_floor_s: what OpenBLAS alone takes for the step's
 * weight products at these shapes (forward, dX, and dW when full) — the part of
 * a step that no loop around this BLAS avoids; lora_gemm_s is the rank-8 part.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "llmops/model.h"
#include "llmops/train.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* The batch generator shared with bench_train_torch.py: per row, seq + 1 tokens of an LCG stream;
 * inputs are the first seq, targets the last seq. */
static void make_batch(uint64_t *s, int64_t vocab, int b, int T, int32_t *tok, int32_t *tgt) {
    int32_t *row = malloc(((size_t)T + 1) * sizeof *row);
    for (int i = 0; i < b; i++) {
        for (int j = 0; j <= T; j++) {
            *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
            row[j] = (int32_t)((*s >> 33) % (uint64_t)vocab);
        }
        memcpy(tok + (size_t)i * T, row, (size_t)T * sizeof *row);
        memcpy(tgt + (size_t)i * T, row + 1, (size_t)T * sizeof *row);
    }
    free(row);
}

void openblas_set_num_threads(int num_threads); /* OpenBLAS's; not in every cblas.h */

/* Seconds of one sgemm C (m×n) = op(A) op(B) with k inner, best of 3 after a warm-up call. */
static double gemm_s(int ta, int tb, size_t m, size_t n, size_t k, float *A, float *B, float *C) {
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double a = now();
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, 1.0f, A, ta ? (int)m : (int)k, B, tb ? (int)k : (int)n, 1.0f, C, (int)n);
        double d = now() - a;
        if (r && d < best) best = d;
    }
    return best;
}

/* The time OpenBLAS alone needs for the weight products of one step (n tokens): forward X·Wᵀ and
 * backward dY·W of every linear and of the LM head, plus dYᵀ·X for trainable weights (full); LoRA
 * factors and attention left out. A floor for the step that any implementation on this BLAS pays. */
static double gemm_floor(const llmops_arch *A, size_t n, int full, int threads, double *lora_s) {
    size_t d = (size_t)A->hidden_size, f = (size_t)A->ffn_size, V = (size_t)A->vocab_size;
    size_t qd = (size_t)(A->head_dim * A->n_heads), kvd = (size_t)(A->head_dim * A->n_kv_heads);
    size_t big = V * d > n * f ? V * d : n * f;
    if (n * V > big) big = n * V;
    float *X = calloc(big, sizeof(float)), *W = calloc(big, sizeof(float)), *Y = calloc(big, sizeof(float));
    if (!X || !W || !Y) {
        free(X), free(W), free(Y);
        return 0;
    }
    openblas_set_num_threads(threads > 0 ? threads : 1);
    struct { size_t out, in; } lin[] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd}, {f, d}, {f, d}, {d, f}};
    double layer = 0;
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        layer += gemm_s(0, 1, n, lin[i].out, lin[i].in, X, W, Y); /* forward */
        layer += gemm_s(0, 0, n, lin[i].in, lin[i].out, Y, W, X); /* dX */
        if (full) layer += gemm_s(1, 0, lin[i].out, lin[i].in, n, Y, X, W); /* dW */
    }
    double head = gemm_s(0, 1, n, V, d, X, W, Y) + gemm_s(0, 0, n, d, V, Y, W, X);
    if (full) head += gemm_s(1, 0, V, d, n, Y, X, W);
    /* the rank-r products of LoRA on q and v (r = 8): u = X·Aᵀ, Y += u·Bᵀ; du = dY·B, dB += dYᵀ·u,
     * dA += duᵀ·X, dX += du·A */
    *lora_s = 0;
    if (!full) {
        size_t r = 8, outs[2] = {qd, kvd};
        for (int i = 0; i < 2; i++) {
            size_t o = outs[i];
            *lora_s += gemm_s(0, 1, n, r, d, X, W, Y) + gemm_s(0, 1, n, o, r, Y, W, X) + gemm_s(0, 0, n, r, o, Y, W, X) +
                       gemm_s(1, 0, o, r, n, Y, X, W) + gemm_s(1, 0, r, d, n, Y, X, W) + gemm_s(0, 0, n, d, r, Y, W, X);
        }
        *lora_s *= (double)A->n_layers;
    }
    free(X), free(W), free(Y);
    return layer * (double)A->n_layers + head;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_train MODEL.gguf [--method lora|full] [--batch 4] [--seq 256] [--warmup 2] "
                    "[--steps 4] [--threads N] [--recompute] [--seed S]\n");
}

int main(int argc, char **argv) {
    const char *path = NULL, *method = "lora";
    int batch = 4, T = 256, warmup = 2, steps = 4, threads = 0, recompute = 0;
    uint64_t seed = 1234;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--method") && has) method = argv[++i];
        else if (!strcmp(a, "--batch") && has) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--seq") && has) T = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && has) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && has) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--seed") && has) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--recompute")) recompute = 1;
        else if (a[0] != '-' && !path) path = a;
        else {
            usage();
            return 2;
        }
    }
    int full = !strcmp(method, "full");
    if (!path || (!full && strcmp(method, "lora")) || batch < 1 || T < 1 || warmup < 0 || steps < 1) {
        usage();
        return 2;
    }

    llmops_error err = {0};
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m = NULL;
    double t0 = now();
    if (llmops_model_load(path, &mp, &m, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    llmops_trainer_params tp;
    llmops_trainer_params_init(&tp); /* LoRA r=8, alpha=16 on q,v */
    tp.method = full ? LLMOPS_TRAIN_FULL : LLMOPS_TRAIN_LORA;
    tp.n_threads = threads;
    tp.recompute = recompute;
    llmops_trainer *t = NULL;
    llmops_adamw *opt = NULL;
    if (llmops_trainer_create(m, &tp, &t, &err)) goto fail;
    llmops_adamw_params ap;
    llmops_adamw_params_init(&ap);
    if (llmops_adamw_create(t, &ap, &opt, &err)) goto fail;
    double setup_s = now() - t0;

    const llmops_arch *A = llmops_trainer_arch(t);
    int64_t V = A->vocab_size;
    size_t n = (size_t)batch * (size_t)T;
    int32_t *tok = malloc(n * sizeof *tok), *tgt = malloc(n * sizeof *tgt);
    double *dt = malloc((size_t)(warmup + steps) * sizeof *dt);
    double *fb = malloc((size_t)(warmup + steps) * sizeof *fb);
    double *losses = malloc((size_t)(warmup + steps) * sizeof *losses);
    if (!tok || !tgt || !dt || !fb || !losses) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    uint64_t rng = seed;
    double fb_sum = 0, opt_sum = 0;
    for (int s = 0; s < warmup + steps; s++) {
        make_batch(&rng, V, batch, T, tok, tgt);
        double a = now();
        llmops_trainer_zero_grad(t);
        double loss = 0;
        int64_t cnt = 0;
        if (llmops_trainer_forward_backward(t, tok, tgt, batch, T, 1.0f / (float)n, &loss, &cnt, &err)) goto fail;
        double b = now();
        llmops_adamw_clip_step(opt, 1e-4f, 1.0);
        double c = now();
        dt[s] = c - a;
        fb[s] = b - a;
        losses[s] = loss / (double)(cnt ? cnt : 1);
        if (s >= warmup) fb_sum += b - a, opt_sum += c - b;
        fprintf(stderr, "bench_train %s: step %d%s loss %.5f  %.2f s (forward+backward %.2f s)\n", method, s + 1,
                s < warmup ? " (warm-up)" : "", losses[s], dt[s], fb[s]);
    }
    /* a forward pass alone on the last batch, for the forward/backward split */
    double e0 = now(), eloss = 0;
    int64_t ecnt = 0;
    if (llmops_trainer_eval(t, tok, tgt, batch, T, &eloss, &ecnt, &err)) goto fail;
    double fwd_s = now() - e0;
    double rss = peak_rss_mib(), lora_s = 0; /* before the GEMM timing's buffers */
    double floor_s = gemm_floor(llmops_trainer_arch(t), (size_t)batch * (size_t)T, full, threads, &lora_s);

    double total = 0;
    for (int s = warmup; s < warmup + steps; s++) total += dt[s];
    qsort(dt + warmup, (size_t)steps, sizeof *dt, cmp_d);
    double tps = (double)n * steps / total;
    /* matrix FLOPs per token: forward 2·(weights used per token) + attention; backward of the
     * frozen base computes dX only (1×), a trainable weight adds dW (2×) */
    double d = (double)A->hidden_size, f = (double)A->ffn_size, L = (double)A->n_layers;
    double hd = (double)A->head_dim, qd = hd * (double)A->n_heads, kvd = hd * (double)A->n_kv_heads;
    double lin = d * qd * 2 + d * kvd * 2 + 3 * d * f, head = d * (double)V;
    double attn = 2.0 * 2.0 * (double)T / 2.0 * qd; /* QKᵀ and PV over the causal half */
    double fwd = 2.0 * (L * lin + head) + L * attn;
    double per_tok = full ? 3.0 * fwd : 2.0 * fwd;
    printf("{\"impl\":\"llmops\",\"method\":\"%s\",\"model\":\"%s\",\"threads\":%d,\"batch\":%d,\"seq\":%d,"
           "\"warmup\":%d,\"steps\":%d,\"recompute\":%d,\"trainable\":%llu,\"tokens_per_s\":%.2f,"
           "\"step_s_median\":%.3f,\"step_s_min\":%.3f,\"fwd_bwd_s_mean\":%.3f,\"clip_adamw_s_mean\":%.3f,"
           "\"forward_only_s\":%.3f,\"gemm_floor_s\":%.3f,\"lora_gemm_s\":%.3f,\"gflops\":%.1f,"
           "\"loss_first\":%.5f,\"loss_last\":%.5f,\"setup_s\":%.2f,\"trainer_peak_mib\":%.1f,"
           "\"peak_rss_mib\":%.1f}\n",
           method, path, threads, batch, T, warmup, steps, recompute,
           (unsigned long long)llmops_trainer_n_trainable(t), tps, dt[warmup + steps / 2], dt[warmup],
           fb_sum / steps, opt_sum / steps, fwd_s, floor_s, lora_s, tps * per_tok / 1e9, losses[0],
           losses[warmup + steps - 1], setup_s, (double)llmops_trainer_peak_bytes(t) / 1048576.0, rss);
    free(tok);
    free(tgt);
    free(dt);
    free(fb);
    free(losses);
    llmops_adamw_free(opt);
    llmops_trainer_free(t);
    llmops_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_train: %s\n", err.msg);
    llmops_adamw_free(opt);
    llmops_trainer_free(t);
    llmops_model_free(m);
    return 1;
}
