/*
 * The training core's kernels (src/train/train_ops.c): every backward pass
 * against central finite differences of its own forward pass, and every
 * forward pass against a direct double-precision evaluation of the op's
 * definition (softmax attention, RMSNorm, LayerNorm, HF's rotate_half RoPE,
 * GELU values, log-sum-exp).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/tensor.h"
#include "train/train_ops.h"

static uint64_t g_rng = 12345;

static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = scale * frand();
    return v;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* |a − n| within atol + rtol·|n| */
static int close_to(double a, double n, double atol, double rtol) { return fabs(a - n) <= atol + rtol * fabs(n); }

/* ---- norms ----------------------------------------------------------------------------------- */

TEST(train_ops_rmsnorm_forward_and_backward) {
    size_t n = 3, d = 16;
    float *x = rand_vec(n * d, 1.5f), *w = rand_vec(d, 1.0f), *R = rand_vec(n * d, 1.0f);
    float *y = malloc(n * d * 4), rs[3], *dx = calloc(n * d, 4), *dw = calloc(d, 4);
    tops_rmsnorm_fwd(x, w, y, rs, n, d, 1e-5);
    for (size_t t = 0; t < n; t++) { /* definition */
        double ss = 0;
        for (size_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
        double s = 1.0 / sqrt(ss / (double)d + 1e-5);
        for (size_t i = 0; i < d; i++) CHECK(close_to(y[t * d + i], x[t * d + i] * s * w[i], 1e-6, 1e-5));
    }
    tops_rmsnorm_bwd(x, w, rs, R, dx, dw, n, d);
    const float eps = 1e-2f;
    for (size_t k = 0; k < n * d; k++) {
        float x0 = x[k];
        x[k] = x0 + eps;
        tops_rmsnorm_fwd(x, w, y, rs, n, d, 1e-5);
        double lp = dot_d(y, R, n * d);
        x[k] = x0 - eps;
        tops_rmsnorm_fwd(x, w, y, rs, n, d, 1e-5);
        double lm = dot_d(y, R, n * d);
        x[k] = x0;
        CHECK_MSG(close_to(dx[k], (lp - lm) / (2 * eps), 2e-3, 1e-2), "dx[%zu] %g vs %g", k, dx[k], (lp - lm) / (2 * eps));
    }
    for (size_t k = 0; k < d; k++) {
        float w0 = w[k];
        w[k] = w0 + eps;
        tops_rmsnorm_fwd(x, w, y, rs, n, d, 1e-5);
        double lp = dot_d(y, R, n * d);
        w[k] = w0 - eps;
        tops_rmsnorm_fwd(x, w, y, rs, n, d, 1e-5);
        double lm = dot_d(y, R, n * d);
        w[k] = w0;
        CHECK_MSG(close_to(dw[k], (lp - lm) / (2 * eps), 2e-3, 1e-2), "dw[%zu]", k);
    }
    free(x), free(w), free(R), free(y), free(dx), free(dw);
}

TEST(train_ops_layernorm_with_bias_forward_and_backward) {
    size_t n = 3, d = 12;
    float *x = rand_vec(n * d, 2.0f), *w = rand_vec(d, 1.0f), *b = rand_vec(d, 0.5f), *R = rand_vec(n * d, 1.0f);
    for (size_t i = 0; i < n * d; i++) x[i] += 0.7f; /* a nonzero mean */
    float *y = malloc(n * d * 4), mu[3], rs[3], *dx = calloc(n * d, 4), *dw = calloc(d, 4), *db = calloc(d, 4);
    tops_layernorm_fwd(x, w, b, y, mu, rs, n, d, 1e-5);
    for (size_t t = 0; t < n; t++) {
        double m = 0, v = 0;
        for (size_t i = 0; i < d; i++) m += x[t * d + i];
        m /= (double)d;
        for (size_t i = 0; i < d; i++) v += (x[t * d + i] - m) * (x[t * d + i] - m);
        v /= (double)d;
        for (size_t i = 0; i < d; i++)
            CHECK(close_to(y[t * d + i], (x[t * d + i] - m) / sqrt(v + 1e-5) * w[i] + b[i], 1e-5, 1e-5));
    }
    tops_layernorm_bwd(x, w, mu, rs, R, dx, dw, db, n, d);
    const float eps = 1e-2f;
    float *params[3] = {x, w, b}, *grads[3] = {dx, dw, db};
    size_t sizes[3] = {n * d, d, d};
    for (int p = 0; p < 3; p++)
        for (size_t k = 0; k < sizes[p]; k++) {
            float v0 = params[p][k];
            params[p][k] = v0 + eps;
            tops_layernorm_fwd(x, w, b, y, mu, rs, n, d, 1e-5);
            double lp = dot_d(y, R, n * d);
            params[p][k] = v0 - eps;
            tops_layernorm_fwd(x, w, b, y, mu, rs, n, d, 1e-5);
            double lm = dot_d(y, R, n * d);
            params[p][k] = v0;
            double num = (lp - lm) / (2 * eps);
            CHECK_MSG(close_to(grads[p][k], num, 2e-3, 1e-2), "param %d [%zu]: %g vs %g", p, k, grads[p][k], num);
        }
    free(x), free(w), free(b), free(R), free(y), free(dx), free(dw), free(db);
}

/* ---- RoPE ------------------------------------------------------------------------------------- */

TEST(train_ops_rope_both_layouts) {
    int heads = 3, T = 5;
    int64_t hd = 8, rd = 8, half = rd / 2;
    float freqs[4];
    for (int i = 0; i < half; i++) freqs[i] = (float)(1.0 / pow(10000.0, 2.0 * i / (double)rd));
    float cs[5 * 4], sn[5 * 4];
    tops_rope_table(freqs, rd, T, cs, sn);
    for (int neox = 0; neox <= 1; neox++) {
        size_t nv = (size_t)heads * (size_t)hd;
        float *x = rand_vec(nv, 1.0f), *y = malloc(nv * 4), *R = rand_vec(nv, 1.0f), *g = malloc(nv * 4);
        int pos = 3;
        memcpy(y, x, nv * 4);
        tops_rope(y, heads, hd, rd, cs + pos * half, sn + pos * half, neox, 0);
        for (int h = 0; h < heads; h++) { /* definition: HF rotate_half (neox) or interleaved pairs */
            const float *xh = x + h * hd;
            for (int64_t i = 0; i < hd; i++) {
                int64_t j = neox ? i % half : i / 2;
                double th = (double)pos * freqs[j], c = cos(th), s = sin(th), ref;
                if (neox) ref = xh[i] * c + (i < half ? -xh[i + half] : xh[i - half]) * s;
                else ref = i % 2 == 0 ? xh[i] * c - xh[i + 1] * s : xh[i] * c + xh[i - 1] * s;
                CHECK_MSG(close_to(y[h * hd + i], ref, 1e-5, 1e-5), "neox %d head %d i %lld", neox, h, (long long)i);
            }
        }
        /* backward = inverse rotation of the upstream gradient */
        memcpy(g, R, nv * 4);
        tops_rope(g, heads, hd, rd, cs + pos * half, sn + pos * half, neox, 1);
        const float eps = 1e-2f;
        for (size_t k = 0; k < nv; k++) {
            float x0 = x[k];
            x[k] = x0 + eps;
            memcpy(y, x, nv * 4);
            tops_rope(y, heads, hd, rd, cs + pos * half, sn + pos * half, neox, 0);
            double lp = dot_d(y, R, nv);
            x[k] = x0 - eps;
            memcpy(y, x, nv * 4);
            tops_rope(y, heads, hd, rd, cs + pos * half, sn + pos * half, neox, 0);
            double lm = dot_d(y, R, nv);
            x[k] = x0;
            CHECK(close_to(g[k], (lp - lm) / (2 * eps), 1e-3, 1e-3));
        }
        free(x), free(y), free(R), free(g);
    }
}

/* ---- attention --------------------------------------------------------------------------------- */

/* Direct evaluation: per head, softmax over visible keys in double. */
static void attn_ref(const float *q, const float *k, const float *v, double *o, int T, int H, int G, int hd,
                     int64_t window) {
    int group = H / G;
    size_t ldq = (size_t)H * hd, ldkv = (size_t)G * hd;
    double *s = malloc((size_t)T * sizeof *s);
    for (int h = 0; h < H; h++) {
        int g = h / group;
        for (int i = 0; i < T; i++) {
            double mx = -1e300, sum = 0;
            for (int j = 0; j < T; j++) {
                int vis = j <= i && (window <= 0 || i - j < window);
                s[j] = vis ? dot_d(q + i * ldq + h * hd, k + j * ldkv + g * hd, (size_t)hd) / sqrt((double)hd) : -1e300;
                if (vis && s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < T; j++) {
                s[j] = s[j] == -1e300 ? 0 : exp(s[j] - mx);
                sum += s[j];
            }
            for (int c = 0; c < hd; c++) {
                double acc = 0;
                for (int j = 0; j < T; j++) acc += s[j] / sum * v[j * ldkv + g * hd + c];
                o[i * ldq + h * hd + c] = acc;
            }
        }
    }
    free(s);
}

static void attn_all(const float *q, const float *k, const float *v, float *o, int T, int H, int G, int hd,
                     int64_t window, float *scr) {
    size_t ldq = (size_t)H * hd, ldkv = (size_t)G * hd;
    for (int h = 0; h < H; h++) {
        int g = h / (H / G);
        tops_attn_fwd(q + h * hd, ldq, k + g * hd, v + g * hd, ldkv, o + h * hd, ldq, T, hd, window,
                      1.0f / sqrtf((float)hd), scr);
    }
}

static double attn_loss(const float *q, const float *k, const float *v, const float *R, float *o, int T, int H, int G,
                        int hd, int64_t window, float *scr) {
    attn_all(q, k, v, o, T, H, G, hd, window, scr);
    return dot_d(o, R, (size_t)T * (size_t)H * (size_t)hd);
}

TEST(train_ops_attention_gqa_causal_window) {
    /* T spans two query blocks; GQA 4 heads over 2 KV heads; no window, then a window of 5 */
    const int T = TOPS_ATTN_BLOCK + 6, H = 4, G = 2, hd = 8;
    size_t nq = (size_t)T * H * hd, nk = (size_t)T * G * hd;
    float *scr = malloc(tops_attn_scratch(T) * sizeof(float));
    for (int wi = 0; wi < 2; wi++) {
        int64_t window = wi ? 5 : 0;
        float *q = rand_vec(nq, 1.0f), *k = rand_vec(nk, 1.0f), *v = rand_vec(nk, 1.0f), *R = rand_vec(nq, 1.0f);
        float *o = malloc(nq * 4), *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
        double *ref = malloc(nq * sizeof *ref);
        attn_all(q, k, v, o, T, H, G, hd, window, scr);
        attn_ref(q, k, v, ref, T, H, G, hd, window);
        for (size_t i = 0; i < nq; i++) CHECK_MSG(close_to(o[i], ref[i], 1e-5, 1e-4), "o[%zu] %g vs %g", i, o[i], ref[i]);
        size_t ldq = (size_t)H * hd, ldkv = (size_t)G * hd;
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            tops_attn_bwd(q + h * hd, ldq, k + g * hd, v + g * hd, ldkv, R + h * hd, ldq, dq + h * hd, ldq, dk + g * hd,
                          dv + g * hd, ldkv, T, hd, window, 1.0f / sqrtf((float)hd), scr);
        }
        const float eps = 1e-2f;
        float *ps[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
        size_t ns[3] = {nq, nk, nk};
        for (int p = 0; p < 3; p++)
            for (size_t c = 0; c < 60; c++) {
                size_t idx = (c * 7919 + (size_t)p * 31) % ns[p];
                if (c < 4) idx = ns[p] - 1 - c; /* the last rows: the second block */
                float v0 = ps[p][idx];
                ps[p][idx] = v0 + eps;
                double lp = attn_loss(q, k, v, R, o, T, H, G, hd, window, scr);
                ps[p][idx] = v0 - eps;
                double lm = attn_loss(q, k, v, R, o, T, H, G, hd, window, scr);
                ps[p][idx] = v0;
                double num = (lp - lm) / (2 * eps);
                CHECK_MSG(close_to(gs[p][idx], num, 2e-3, 1e-2), "window %lld tensor %d [%zu]: %g vs %g",
                          (long long)window, p, idx, gs[p][idx], num);
            }
        free(q), free(k), free(v), free(R), free(o), free(dq), free(dk), free(dv), free(ref);
    }
    free(scr);
}

/* ---- activations ----------------------------------------------------------------------------------- */

TEST(train_ops_activations_values_and_derivatives) {
    /* published values: GELU(1) = Φ(1) = 0.841344746; tanh approximation 0.841191990; SiLU(1) = 1/(1+e^-1) */
    CHECK(fabsf(tops_act(LLMOPS_ACT_GELU, 1.0f) - 0.841344746f) < 1e-6f);
    CHECK(fabsf(tops_act(LLMOPS_ACT_GELU_TANH, 1.0f) - 0.841191990f) < 1e-6f);
    CHECK(fabsf(tops_act(LLMOPS_ACT_SILU, 1.0f) - 0.731058579f) < 1e-6f);
    llmops_act_kind kinds[] = {LLMOPS_ACT_SILU, LLMOPS_ACT_GELU, LLMOPS_ACT_GELU_TANH, LLMOPS_ACT_RELU};
    for (size_t k = 0; k < 4; k++)
        for (double x = -4.05; x <= 4.0; x += 0.1) {
            double eps = 1e-3;
            double num = ((double)tops_act(kinds[k], (float)(x + eps)) - (double)tops_act(kinds[k], (float)(x - eps))) / (2 * eps);
            CHECK_MSG(close_to(tops_act_grad(kinds[k], (float)x), num, 2e-3, 2e-3), "act %zu at %g", k, x);
        }
}

TEST(train_ops_swiglu_backward) {
    /* h = silu(g) · u, loss = Σ R·h: the gradients the trainer's MLP backward uses */
    size_t n = 40;
    float *g = rand_vec(n, 3.0f), *u = rand_vec(n, 2.0f), *R = rand_vec(n, 1.0f);
    for (size_t i = 0; i < n; i++) {
        float dg = R[i] * u[i] * tops_act_grad(LLMOPS_ACT_SILU, g[i]), du = R[i] * tops_act(LLMOPS_ACT_SILU, g[i]);
        double e = 1e-3;
        double ng = R[i] * u[i] * (tops_act(LLMOPS_ACT_SILU, (float)(g[i] + e)) - tops_act(LLMOPS_ACT_SILU, (float)(g[i] - e))) / (2 * e);
        double nu = R[i] * tops_act(LLMOPS_ACT_SILU, g[i]) * 1.0;
        CHECK(close_to(dg, ng, 2e-3, 2e-3));
        CHECK(close_to(du, nu, 1e-6, 1e-6));
    }
    free(g), free(u), free(R);
}

/* ---- linear -------------------------------------------------------------------------------------------- */

TEST(train_ops_linear_bias_forward_backward_and_panels) {
    size_t n = 5, in = 64, out = 40;
    float *X = rand_vec(n * in, 1.0f), *Wf = rand_vec(out * in, 0.5f), *b = rand_vec(out, 0.5f), *R = rand_vec(n * out, 1.0f);
    float *Y = malloc(n * out * 4), *Y16 = malloc(n * out * 4), *dX = calloc(n * in, 4), *gW = calloc(out * in, 4);
    float *gb = calloc(out, 4);
    uint16_t *W16 = malloc(out * in * 2);
    for (size_t i = 0; i < out * in; i++) W16[i] = llmops_fp32_to_fp16(Wf[i]);
    tops_mat W = {LLMOPS_DTYPE_F32, Wf, in * 4, (int64_t)out, (int64_t)in, gW};
    tops_mat H = {LLMOPS_DTYPE_F16, W16, in * 2, (int64_t)out, (int64_t)in, NULL};
    float *panel = malloc(tops_panel_rows((int64_t)in) * in * 4);
    tops_mm_ctx c = {NULL, NULL, panel, tops_panel_rows((int64_t)in) * in};
    tops_linear_fwd(&c, &W, X, in, n, Y, out, 0.0f);
    tops_bias_fwd(b, Y, out, n, out);
    tops_linear_fwd(&c, &H, X, in, n, Y16, out, 0.0f);
    for (size_t t = 0; t < n; t++)
        for (size_t r = 0; r < out; r++) {
            double ref = b[r], ref16 = 0;
            for (size_t k = 0; k < in; k++) {
                ref += (double)X[t * in + k] * Wf[r * in + k];
                ref16 += (double)X[t * in + k] * llmops_fp16_to_fp32(W16[r * in + k]);
            }
            CHECK(close_to(Y[t * out + r], ref, 1e-4, 1e-5));
            CHECK(close_to(Y16[t * out + r], ref16, 1e-4, 1e-5));
        }
    /* backward: dX through the F32 and the F16 (panel) paths agree with finite differences */
    tops_linear_bwd_x(&c, &W, R, out, n, dX, in);
    tops_linear_bwd_w(&c, &W, R, out, X, in, n);
    tops_bias_bwd(gb, R, out, n, out);
    float *dX16 = calloc(n * in, 4);
    tops_linear_bwd_x(&c, &H, R, out, n, dX16, in);
    const float eps = 1e-2f;
    float *ps[3] = {X, Wf, b}, *gs[3] = {dX, gW, gb};
    size_t ns[3] = {n * in, out * in, out};
    for (int p = 0; p < 3; p++)
        for (size_t k = 0; k < ns[p]; k += 7) {
            float v0 = ps[p][k];
            ps[p][k] = v0 + eps;
            tops_linear_fwd(&c, &W, X, in, n, Y, out, 0.0f);
            tops_bias_fwd(b, Y, out, n, out);
            double lp = dot_d(Y, R, n * out);
            ps[p][k] = v0 - eps;
            tops_linear_fwd(&c, &W, X, in, n, Y, out, 0.0f);
            tops_bias_fwd(b, Y, out, n, out);
            double lm = dot_d(Y, R, n * out);
            ps[p][k] = v0;
            CHECK_MSG(close_to(gs[p][k], (lp - lm) / (2 * eps), 2e-3, 1e-2), "param %d [%zu]", p, k);
        }
    for (size_t k = 0; k < n * in; k++) CHECK(close_to(dX16[k], dX[k], 2e-2, 1e-2)); /* W rounded to F16 */
    free(X), free(Wf), free(b), free(R), free(Y), free(Y16), free(dX), free(gW), free(gb), free(W16), free(panel), free(dX16);
}

/* ---- cross-entropy ------------------------------------------------------------------------------------- */

TEST(train_ops_cross_entropy_value_and_gradient) {
    int64_t V = 37;
    float *l = rand_vec((size_t)V, 4.0f), *g = malloc((size_t)V * 4);
    int32_t target = 11;
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    for (int64_t j = 0; j < V; j++) s += exp(l[j] - mx);
    double ref = log(s) + mx - l[target];
    CHECK(close_to(tops_ce_row(l, V, target, 1.0f, 0), ref, 1e-6, 1e-6));
    memcpy(g, l, (size_t)V * 4);
    double loss = tops_ce_row(g, V, target, 0.5f, 1);
    CHECK(close_to(loss, ref, 1e-6, 1e-6));
    for (int64_t j = 0; j < V; j++) {
        float v0 = l[j];
        const float eps = 1e-2f;
        l[j] = v0 + eps;
        double lp = tops_ce_row(l, V, target, 1.0f, 0);
        l[j] = v0 - eps;
        double lm = tops_ce_row(l, V, target, 1.0f, 0);
        l[j] = v0;
        CHECK_MSG(close_to(g[j], 0.5 * (lp - lm) / (2 * eps), 1e-4, 1e-3), "logit %lld", (long long)j);
    }
    free(l), free(g);
}

TEST(train_ops_act_both_matches_separate) {
    llmops_act_kind kinds[] = {LLMOPS_ACT_SILU, LLMOPS_ACT_GELU, LLMOPS_ACT_GELU_TANH, LLMOPS_ACT_RELU};
    for (size_t k = 0; k < 4; k++)
        for (float x = -6.0f; x <= 6.0f; x += 0.37f) {
            float a, g;
            tops_act_both(kinds[k], x, &a, &g);
            CHECK(fabsf(a - tops_act(kinds[k], x)) <= 1e-6f * (1 + fabsf(a)));
            CHECK(fabsf(g - tops_act_grad(kinds[k], x)) <= 1e-6f * (1 + fabsf(g)));
        }
}

TEST(train_ops_gemm_batch_split_over_threads_equals_one_call) {
    /* three products (both transpositions), two of them adding into the same C, split over 3 threads */
    llmops_threadpool *pool;
    llmops_error err = {0};
    CHECK_OK(llmops_threadpool_create(3, &pool, &err), err);
    size_t m = 37, n = 150, k = 70;
    float *A = rand_vec(m * k, 1.0f), *B1 = rand_vec(n * k, 1.0f), *B2 = rand_vec(k * n, 1.0f), *A3 = rand_vec(k * m, 1.0f);
    float *C = rand_vec(m * n, 1.0f), *C3 = rand_vec(n * n, 1.0f);
    float *R = malloc(m * n * 4), *R3 = malloc(n * n * 4);
    memcpy(R, C, m * n * 4);
    memcpy(R3, C3, n * n * 4);
    tops_gemm(0, 1, m, n, k, 1.0f, A, k, B1, k, 1.0f, R, n);
    tops_gemm(0, 0, m, n, k, 0.5f, A, k, B2, n, 1.0f, R, n);
    tops_gemm(1, 0, n, n, m, 1.0f, C, n, C, n, 0.0f, R3, n); /* uses C before the batch changes it */
    tops_gemm_desc d3 = {1, 0, n, n, m, 1.0f, C, n, C, n, 0.0f, C3, n};
    tops_gemm_batch(pool, &d3, 1);
    tops_gemm_desc d[2] = {{0, 1, m, n, k, 1.0f, A, k, B1, k, 1.0f, C, n}, {0, 0, m, n, k, 0.5f, A, k, B2, n, 1.0f, C, n}};
    tops_gemm_batch(pool, d, 2);
    for (size_t i = 0; i < m * n; i++) CHECK(close_to(C[i], R[i], 1e-4, 1e-5));
    for (size_t i = 0; i < n * n; i++) CHECK(close_to(C3[i], R3[i], 1e-4, 1e-5));
    llmops_threadpool_free(pool);
    free(A), free(B1), free(B2), free(A3), free(C), free(C3), free(R), free(R3);
}

/* ---- vectorised row loops (train_vec.c) -------------------------------------------------------- */

/* Distance in units in the last place between two finite floats of the same sign. */
static double ulps(float a, double ref) {
    float r = (float)ref;
    if (r == 0.0f) return a == 0.0f ? 0 : 1e9;
    return fabs((double)a - ref) / (double)(nextafterf(fabsf(r), INFINITY) - fabsf(r));
}

TEST(train_ops_vector_exp_within_2_ulp_of_libm) {
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        double u = ulps(tops_exp(x), exp((double)x));
        if (u > worst) worst = u;
    }
    CHECK_MSG(worst <= 2.0, "worst %.2f ulp", worst);
    CHECK(tops_exp(0.0f) == 1.0f);
    CHECK(tops_exp(-100.0f) < 1e-37f);
    CHECK(tops_exp(-INFINITY) == 0.0f);
    CHECK(tops_exp(1000.0f) > 1e38f);
    CHECK(isnan(tops_exp(NAN)));
    /* the SIMD body (rows of 8) and the tail give the same values as tops_exp; exp_sum against libm */
    size_t n = 1003;
    float *x = rand_vec(n, 30.0f), *y = malloc(n * sizeof *y);
    x[5] = NAN;
    memcpy(y, x, n * sizeof *y);
    tops_vec_exp_sum(y, n, 0.0f, 1);
    CHECK(isnan(y[5]));
    for (size_t i = 0; i < n; i++)
        if (i != 5) CHECK_MSG(y[i] == tops_exp(x[i]), "element %zu: %g vs %g", i, y[i], tops_exp(x[i]));
    x[5] = 0.0f;
    float mx = tops_vec_max(x, n);
    double ref = 0, refmax = -1e30;
    for (size_t i = 0; i < n; i++) refmax = x[i] > refmax ? x[i] : refmax;
    CHECK((double)mx == refmax);
    for (size_t i = 0; i < n; i++) ref += exp((double)x[i] - mx);
    CHECK_MSG(close_to(tops_vec_exp_sum(x, n, mx, 0), ref, 0, 1e-6), "exp sum");
    /* SiLU and its derivative against the double-precision definition, body and tail */
    float *a = malloc(n * sizeof *a), *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) x[i] = 12.0f * frand();
    tops_vec_silu(x, a, g, n);
    for (size_t i = 0; i < n; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        CHECK_MSG(close_to(a[i], x[i] * s, 1e-7, 1e-6), "silu(%g) = %g", x[i], a[i]);
        CHECK_MSG(close_to(g[i], s * (1 + x[i] * (1 - s)), 1e-7, 1e-6), "silu'(%g) = %g", x[i], g[i]);
        float sa, sg;
        tops_act_both(LLMOPS_ACT_SILU, x[i], &sa, &sg);
        CHECK(sa == a[i] && sg == g[i]);
    }
    free(x), free(y), free(a), free(g);
}
