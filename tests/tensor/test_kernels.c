/*
 * Weight formats and matrix kernels:
 *  - the quantizers against an independent numpy transcription of ggml's
 *    reference quantizers (tests/tensor/ggml_quant_ref.py), byte for byte;
 *  - hand-built Q4_K / Q6_K / Q8_K blocks against ggml's layout;
 *  - dequantize(quantize(x)) error bounds;
 *  - every SIMD path against the scalar reference, per kernel;
 *  - vec_dot, matvec and matmul against a double-precision loop over the
 *    dequantized weights, within the tolerance kernels.h states, for odd
 *    shapes and 1 and 2 threads.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../unit/test.h"
#define LLMOPS_KERNELS_INTERNAL
#include "llmops/alloc.h"
#include "llmops/kernels.h"
#include "llmops/threadpool.h"

/* ---- helpers ---------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }

static double rng_gauss(uint64_t *s) {
    double u = rng_unit(s), v = rng_unit(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/*
 * A row whose 32-element stretches cycle through shapes that exercise the
 * quantizers' branches: gaussian, wide dynamic range, all positive (min
 * clamped to 0), all negative, constant, zero, sparse, an outlier, values
 * so small the f16 scale underflows, half-integers (rounding ties), large.
 */
static void gen_varied(uint64_t *s, float *x, size_t n) {
    for (size_t b = 0; b < n; b += 32) {
        int mode = (int)(rng_next(s) % 11);
        double scale = pow(10.0, rng_unit(s) * 4 - 2);
        double c = rng_gauss(s) * scale;
        for (size_t i = b; i < b + 32 && i < n; i++) {
            double g = rng_gauss(s), v;
            switch (mode) {
            case 0: v = g; break;
            case 1: v = g * scale; break;
            case 2: v = fabs(g) * scale + 0.1 * scale; break;
            case 3: v = -fabs(g) * scale; break;
            case 4: v = c; break;
            case 5: v = 0; break;
            case 6: v = rng_unit(s) < 0.1 ? g * 10 : 0; break;
            case 7: v = (i == b + 5) ? 50 * scale : g * scale; break;
            case 8: v = g * 1e-7; break;
            case 9: v = round(g * 8) / 2; break;
            default: v = g * 3000; break;
            }
            x[i] = (float)v;
        }
    }
}

static void gen_gauss(uint64_t *s, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_gauss(s);
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static long read_bytes(const char *path, void *p, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t r = fread(p, 1, cap, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return extra ? -1 : (long)r;
}

static size_t row_bytes(int type, size_t n) {
    uint64_t b = 0;
    llmops_dtype_nbytes(type, n, n, &b, NULL);
    return (size_t)b;
}

/* ---- quantizers against the numpy transcription of ggml ---------------------------------- */

/* Runs the oracle; 1 ok, 0 skip (why says), -1 failure (why says). */
static int run_quant_oracle(const char *kind, const float *x, size_t n, void *out, size_t out_len, char *why,
                            size_t why_len) {
    const char *py = "/usr/bin/python3";
    if (access(py, X_OK) != 0) {
        snprintf(why, why_len, "%s is not installed", py);
        return 0;
    }
    if (!write_bytes(test_tmpfile("x.f32"), x, n * 4)) {
        snprintf(why, why_len, "cannot write the oracle input");
        return -1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/tensor/ggml_quant_ref.py' %s '%s' '%s' 2>&1", py, test_repo_root(), kind,
             test_tmpfile("x.f32"), test_tmpfile("q.bin"));
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_len, "popen failed");
        return -1;
    }
    char msg[1024] = "";
    size_t got = fread(msg, 1, sizeof msg - 1, p);
    msg[got] = '\0';
    int status = pclose(p);
    if (!strncmp(msg, "skip: ", 6)) {
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(why, why_len, "%s", msg + 6);
        return 0;
    }
    if (status != 0 || strncmp(msg, "ok", 2)) {
        snprintf(why, why_len, "oracle failed (status %d): %s", status, msg);
        return -1;
    }
    long r = read_bytes(test_tmpfile("q.bin"), out, out_len);
    if (r != (long)out_len) {
        snprintf(why, why_len, "oracle wrote %ld bytes, expected %zu", r, out_len);
        return -1;
    }
    return 1;
}

TEST(kernels_quantize_matches_ggml_reference) {
    static const struct {
        int type;
        const char *kind;
    } k[] = {
        {LLMOPS_DTYPE_Q8_0, "q8_0"}, {LLMOPS_DTYPE_Q4_0, "q4_0"}, {LLMOPS_DTYPE_Q4_K, "q4_K"},
        {LLMOPS_DTYPE_Q6_K, "q6_K"}, {LLMOPS_DTYPE_Q8_K, "q8_K"}, {LLMOPS_DTYPE_F16, "f16"},
        {LLMOPS_DTYPE_BF16, "bf16"},
    };
    enum { N = 96 * 256 };
    float *x = malloc(N * sizeof(float));
    uint8_t *mine = malloc(N * 4), *ref = malloc(N * 4);
    CHECK(x && mine && ref);
    uint64_t seed = 0x5eed1234abcdULL;
    gen_varied(&seed, x, N / 2);
    gen_gauss(&seed, x + N / 2, N / 2);
    llmops_error err = {0};
    for (size_t t = 0; t < sizeof k / sizeof k[0]; t++) {
        size_t nb = row_bytes(k[t].type, N);
        char why[1200];
        int r = run_quant_oracle(k[t].kind, x, N, ref, nb, why, sizeof why);
        if (r == 0) {
            free(x), free(mine), free(ref);
            SKIP("%s", why);
        }
        if (r != 1) {
            test_fail(__FILE__, __LINE__, "%s: %s", k[t].kind, why);
            break;
        }
        if (llmops_quantize_row(k[t].type, x, mine, N, &err)) {
            test_fail(__FILE__, __LINE__, "%s: %s", k[t].kind, err.msg);
            break;
        }
        if (memcmp(mine, ref, nb) != 0) {
            size_t i = 0;
            while (mine[i] == ref[i]) i++;
            const llmops_dtype_info *ti = llmops_dtype_get(k[t].type);
            test_fail(__FILE__, __LINE__, "%s: byte %zu (block %zu, offset %zu) is 0x%02x, ggml's is 0x%02x",
                      k[t].kind, i, i / ti->type_size, i % ti->type_size, mine[i], ref[i]);
            break;
        }
    }
    free(x), free(mine), free(ref);
}

/* ---- dequantization against ggml's layout, by hand ------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

TEST(kernels_dequantize_q4_K_layout) {
    /* d = 0.5, dmin = 0.25; sub-block j has scale j+1 and min 2j+3 (6-bit packing of
     * ggml-common.h: scales[0..3] low 6 bits = sc 0..3, [4..7] = m 0..3, [8..11] nibbles of
     * sc/m 4..7 with their top 2 bits in the top bits of [0..7]); element i of sub-block j
     * holds nibble (i*7 + j) & 15, sub-blocks 2k/2k+1 in the low/high nibbles of qs[32k..]. */
    uint8_t b[144] = {0};
    put16(b, llmops_fp32_to_fp16(0.5f));
    put16(b + 2, llmops_fp32_to_fp16(0.25f));
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) sc[j] = (uint8_t)(j + 1), mn[j] = (uint8_t)(2 * j + 3);
    sc[7] = 63, mn[6] = 60; /* exercise the top bits */
    for (int j = 0; j < 4; j++) {
        b[4 + j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b[8 + j] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b[12 + j] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++) b[16 + 32 * (j / 2) + i] |= (uint8_t)(((i * 7 + j) & 15) << (4 * (j & 1)));
    float y[256];
    llmops_error err = {0};
    CHECK_OK(llmops_dequantize_row(LLMOPS_DTYPE_Q4_K, b, y, 256, &err), err);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++) {
            float want = 0.5f * sc[j] * (float)((i * 7 + j) & 15) - 0.25f * mn[j];
            CHECK_MSG(y[32 * j + i] == want, "element %d: %g != %g", 32 * j + i, (double)y[32 * j + i],
                      (double)want);
        }
}

TEST(kernels_dequantize_q6_K_and_q8_K_layout) {
    /* Q6_K element e (0..255): half h = e/128, r = e%128, quarter k = r/32, l = r%32;
     * low nibble in ql[64h + l + 32(k&1)] (high half of the byte when k >= 2), 2 high
     * bits at qh[32h + l] >> 2k; scale sc[e/16]; value d·sc·(q − 32). */
    uint8_t b[210] = {0};
    int q[256];
    for (int e = 0; e < 256; e++) q[e] = (e * 37 + 11) % 64;
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
        b[64 * h + l + 32 * (k & 1)] |= (uint8_t)((q[e] & 15) << (k >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
    }
    for (int g = 0; g < 16; g++) b[192 + g] = (uint8_t)(int8_t)(g * 9 - 70);
    put16(b + 208, llmops_fp32_to_fp16(0.125f));
    float y[256];
    llmops_error err = {0};
    CHECK_OK(llmops_dequantize_row(LLMOPS_DTYPE_Q6_K, b, y, 256, &err), err);
    for (int e = 0; e < 256; e++) {
        float want = 0.125f * (float)(e / 16 * 9 - 70) * (float)(q[e] - 32);
        CHECK_MSG(y[e] == want, "Q6_K element %d: %g != %g", e, (double)y[e], (double)want);
    }
    uint8_t k8[292] = {0};
    float d = -0.75f;
    memcpy(k8, &d, 4);
    for (int e = 0; e < 256; e++) k8[4 + e] = (uint8_t)(int8_t)(e - 128);
    CHECK_OK(llmops_dequantize_row(LLMOPS_DTYPE_Q8_K, k8, y, 256, &err), err);
    for (int e = 0; e < 256; e++) CHECK(y[e] == -0.75f * (float)(e - 128));
}

/* ---- round trip ---------------------------------------------------------------------- */

TEST(kernels_roundtrip_error) {
    static const struct {
        int type;
        double max_rel_rms;
    } k[] = {
        {LLMOPS_DTYPE_Q8_0, 0.01}, {LLMOPS_DTYPE_Q4_0, 0.12},  {LLMOPS_DTYPE_Q4_K, 0.10},
        {LLMOPS_DTYPE_Q6_K, 0.03}, {LLMOPS_DTYPE_Q8_K, 0.01},  {LLMOPS_DTYPE_F16, 0.001},
        {LLMOPS_DTYPE_BF16, 0.005}, {LLMOPS_DTYPE_F32, 0.0},
    };
    enum { N = 64 * 256 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    CHECK(x && y && q);
    uint64_t seed = 42;
    gen_gauss(&seed, x, N);
    llmops_error err = {0};
    for (size_t t = 0; t < sizeof k / sizeof k[0]; t++) {
        CHECK_OK(llmops_quantize_row(k[t].type, x, q, N, &err), err);
        CHECK_OK(llmops_dequantize_row(k[t].type, q, y, N, &err), err);
        double e2 = 0, x2 = 0;
        for (size_t i = 0; i < N; i++) {
            e2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            x2 += (double)x[i] * x[i];
        }
        double rel = sqrt(e2 / x2);
        CHECK_MSG(rel <= k[t].max_rel_rms, "%s: relative RMS error %.4f > %.4f", llmops_dtype_name(k[t].type), rel,
                  k[t].max_rel_rms);
    }
    free(x), free(y), free(q);
}

TEST(kernels_argument_errors) {
    llmops_error err = {0};
    float x[256] = {0}, y[256];
    uint8_t q[512];
    CHECK_ERR(llmops_quantize_row(LLMOPS_DTYPE_Q4_K, x, q, 100, &err), LLMOPS_ERR_INVALID_ARG, err, "Q4_K");
    CHECK_ERR(llmops_quantize_row(LLMOPS_DTYPE_Q2_K, x, q, 256, &err), LLMOPS_ERR_UNSUPPORTED, err, "Q2_K");
    CHECK_ERR(llmops_quantize_row(77, x, q, 256, &err), LLMOPS_ERR_UNSUPPORTED, err, "77");
    x[3] = NAN;
    CHECK_ERR(llmops_quantize_row(LLMOPS_DTYPE_Q8_0, x, q, 32, &err), LLMOPS_ERR_INVALID_ARG, err, "element 3");
    x[3] = INFINITY;
    CHECK_ERR(llmops_quantize_row(LLMOPS_DTYPE_Q6_K, x, q, 256, &err), LLMOPS_ERR_INVALID_ARG, err, "not finite");
    x[3] = 0;
    CHECK_ERR(llmops_dequantize_row(LLMOPS_DTYPE_IQ2_XXS, q, y, 256, &err), LLMOPS_ERR_UNSUPPORTED, err, "IQ2_XXS");
    CHECK(isnan(llmops_vec_dot(LLMOPS_DTYPE_Q4_0, q, x, 33)));
    CHECK(isnan(llmops_vec_dot(LLMOPS_DTYPE_Q5_K, q, x, 256)));
    CHECK_ERR(llmops_matvec(LLMOPS_DTYPE_Q5_K, q, 1, 256, x, y, NULL, &err), LLMOPS_ERR_UNSUPPORTED, err, "Q5_K");
    CHECK_ERR(llmops_matvec(LLMOPS_DTYPE_Q8_0, q, 1, 48, x, y, NULL, &err), LLMOPS_ERR_INVALID_ARG, err, "48");
    CHECK_ERR(llmops_matmul(LLMOPS_DTYPE_F32, NULL, 2, 8, x, 1, y, NULL, &err), LLMOPS_ERR_INVALID_ARG, err, "NULL");
    CHECK_ERR(llmops_matmul(LLMOPS_DTYPE_F32, q, SIZE_MAX / 2, 64, x, 3, y, NULL, &err), LLMOPS_ERR_LIMIT, err,
              "overflow");
    CHECK_ERR(llmops_kernels_set_isa("neon9", &err), LLMOPS_ERR_INVALID_ARG, err, "neon9");
    CHECK(llmops_kernels_isa_available("scalar"));
    CHECK_OK(llmops_kernels_set_isa("scalar", &err), err);
    CHECK_EQ_STR(llmops_kernels_isa(), "scalar");
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

TEST(kernels_isa_env_override) {
    if (getenv("TEST_NOFORK")) SKIP("needs a fresh process (the variable is read on first use)");
    setenv("LLMOPS_ISA", "scalar", 1);
    CHECK_EQ_STR(llmops_kernels_isa(), "scalar");
    unsetenv("LLMOPS_ISA");
}

/* ---- SIMD paths against the scalar reference --------------------------------------------- */

static const char *const k_isas[] = {"avx2", "avx512"};

static const llmops_kernel_table *table_for(const char *isa) {
#if defined(__x86_64__)
    if (!strcmp(isa, "avx2")) return &llmops_kernels_avx2;
    if (!strcmp(isa, "avx512")) return &llmops_kernels_avx512;
#endif
    (void)isa;
    return NULL;
}

/* Random weight blocks: random bytes, then finite scales (1.0 when unit). */
static void gen_weight_blocks(uint64_t *s, int type, uint8_t *w, size_t nb, int unit) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    for (size_t i = 0; i < nb * ti->type_size; i++) w[i] = (uint8_t)rng_next(s);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = w + b * ti->type_size;
        float d1 = unit ? 1.0f : (float)(rng_gauss(s) * 0.01), d2 = unit ? 1.0f : (float)(rng_unit(s) * 0.01);
        switch (type) {
        case LLMOPS_DTYPE_Q8_0:
        case LLMOPS_DTYPE_Q4_0: put16(p, llmops_fp32_to_fp16(d1)); break;
        case LLMOPS_DTYPE_Q4_K:
            put16(p, llmops_fp32_to_fp16(fabsf(d1)));
            put16(p + 2, llmops_fp32_to_fp16(d2));
            break;
        case LLMOPS_DTYPE_Q6_K: put16(p + 208, llmops_fp32_to_fp16(d1)); break;
        default: break;
        }
    }
}

/* Random activation blocks (Q8_0 or Q8_K) with consistent bsums; quants in [-lim, lim]. */
static void gen_act_blocks(uint64_t *s, int k_blocks, uint8_t *a, size_t nb, int unit, int lim) {
    for (size_t b = 0; b < nb; b++) {
        if (!k_blocks) {
            uint8_t *p = a + b * LLMOPS_Q8_0_BYTES;
            put16(p, llmops_fp32_to_fp16(unit ? 1.0f : (float)(rng_unit(s) * 0.05)));
            for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)(int8_t)((int)(rng_next(s) % (2 * lim + 1)) - lim);
        } else {
            uint8_t *p = a + b * LLMOPS_Q8_K_BYTES;
            float d = unit ? 1.0f : (float)(rng_unit(s) * 0.05);
            memcpy(p, &d, 4);
            int8_t *q = (int8_t *)(p + 4);
            for (int i = 0; i < 256; i++) q[i] = (int8_t)((int)(rng_next(s) % (2 * lim + 1)) - lim);
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += q[16 * g + i];
                int16_t s16 = (int16_t)sum;
                memcpy(p + 260 + 2 * g, &s16, 2);
            }
        }
    }
}

/* Σ|ŵ·x̂| over the dequantized blocks: the scale of the float rounding. */
static double abs_dot(int wtype, const uint8_t *w, int k_blocks, const uint8_t *a, size_t n) {
    float *wf = malloc(n * sizeof(float)), *af = malloc(n * sizeof(float));
    llmops_dequantize_row(wtype, w, wf, n, NULL);
    llmops_dequantize_row(k_blocks ? LLMOPS_DTYPE_Q8_K : LLMOPS_DTYPE_Q8_0, a, af, n, NULL);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)wf[i] * af[i]);
    free(wf), free(af);
    return s;
}

TEST(kernels_simd_match_scalar_quantized) {
    static const int types[] = {LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q6_K};
    const llmops_kernel_table *ref = &llmops_kernels_scalar;
    int ran = 0;
    uint8_t *w = malloc(8 * 256 * 2), *a = malloc(8 * LLMOPS_Q8_K_BYTES + 64 * LLMOPS_Q8_0_BYTES);
    CHECK(w && a);
    for (size_t p = 0; p < sizeof k_isas / sizeof k_isas[0]; p++) {
        const llmops_kernel_table *kt = table_for(k_isas[p]);
        if (!kt || !llmops_kernels_isa_available(k_isas[p])) continue;
        ran++;
        uint64_t s = 7 + p;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            int type = types[t], kb = type == LLMOPS_DTYPE_Q4_K || type == LLMOPS_DTYPE_Q6_K;
            float (*f_ref)(const void *, const void *, size_t) =
                type == LLMOPS_DTYPE_Q8_0 ? ref->dot_q8_0
                : type == LLMOPS_DTYPE_Q4_0 ? ref->dot_q4_0
                : type == LLMOPS_DTYPE_Q4_K ? ref->dot_q4_K : ref->dot_q6_K;
            float (*f)(const void *, const void *, size_t) =
                type == LLMOPS_DTYPE_Q8_0 ? kt->dot_q8_0
                : type == LLMOPS_DTYPE_Q4_0 ? kt->dot_q4_0
                : type == LLMOPS_DTYPE_Q4_K ? kt->dot_q4_K : kt->dot_q6_K;
            for (int trial = 0; trial < 200; trial++) {
                size_t nb = kb ? 1 + trial % 4 : 1 + trial % 9; /* odd counts: the 2-block unrolls' tails */
                int unit = trial % 2 == 0;
                /* unit scales: every partial sum is an integer below 2^24, so any summation
                 * order gives the same float: the integer parts must agree exactly */
                gen_weight_blocks(&s, type, w, nb, unit);
                gen_act_blocks(&s, kb, a, nb, unit, unit && kb ? 31 : 127);
                float r = f_ref(w, a, nb), v = f(w, a, nb);
                if (unit || kb) {
                    CHECK_MSG(r == v, "%s %s trial %d (%zu blocks, unit %d): %.9g != scalar %.9g", k_isas[p],
                              llmops_dtype_name(type), trial, nb, unit, (double)v, (double)r);
                } else {
                    double tol = 1e-5 * abs_dot(type, w, kb, a, nb * (kb ? 256 : 32)) + 1e-30;
                    CHECK_MSG(fabs((double)r - v) <= tol, "%s %s trial %d: %.9g vs scalar %.9g (tol %g)", k_isas[p],
                              llmops_dtype_name(type), trial, (double)v, (double)r, tol);
                }
            }
        }
    }
    free(w), free(a);
    if (!ran) SKIP("no SIMD path on this machine");
}

TEST(kernels_simd_match_scalar_float) {
    const llmops_kernel_table *ref = &llmops_kernels_scalar;
    int ran = 0;
    enum { NMAX = 1100 };
    float *x = malloc(NMAX * 4), *wf = malloc(NMAX * 4);
    uint16_t *wh = malloc(NMAX * 2), *wb = malloc(NMAX * 2);
    CHECK(x && wf && wh && wb);
    static const size_t ns[] = {1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1000, 1100};
    for (size_t p = 0; p < sizeof k_isas / sizeof k_isas[0]; p++) {
        const llmops_kernel_table *kt = table_for(k_isas[p]);
        if (!kt || !llmops_kernels_isa_available(k_isas[p])) continue;
        ran++;
        uint64_t s = 99;
        for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++) {
            size_t n = ns[in];
            gen_gauss(&s, x, n);
            gen_gauss(&s, wf, n);
            llmops_convert_floats(LLMOPS_DTYPE_F32, wf, LLMOPS_DTYPE_F16, wh, n, NULL);
            llmops_convert_floats(LLMOPS_DTYPE_F32, wf, LLMOPS_DTYPE_BF16, wb, n, NULL);
            for (int kind = 0; kind < 3; kind++) {
                float r, v;
                double S = 0;
                for (size_t i = 0; i < n; i++) {
                    float wi = kind == 0 ? wf[i] : kind == 1 ? llmops_fp16_to_fp32(wh[i]) : llmops_bf16_to_fp32(wb[i]);
                    S += fabs((double)wi * x[i]);
                }
                if (kind == 0) r = ref->dot_f32(wf, x, n), v = kt->dot_f32(wf, x, n);
                else if (kind == 1) r = ref->dot_f16(wh, x, n), v = kt->dot_f16(wh, x, n);
                else r = ref->dot_bf16(wb, x, n), v = kt->dot_bf16(wb, x, n);
                CHECK_MSG(fabs((double)r - v) <= 1e-5 * S, "%s %s n=%zu: %.9g vs scalar %.9g", k_isas[p],
                          kind == 0 ? "F32" : kind == 1 ? "F16" : "BF16", n, (double)v, (double)r);
            }
        }
    }
    free(x), free(wf), free(wh), free(wb);
    if (!ran) SKIP("no SIMD path on this machine");
}

/* ---- against double precision, through the public API ------------------------------------ */

static const int k_wtypes[] = {LLMOPS_DTYPE_F32,  LLMOPS_DTYPE_F16,  LLMOPS_DTYPE_BF16, LLMOPS_DTYPE_Q8_0,
                               LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q6_K};

/* Activation block size the type's dot quantizes x to (0: x used as is). */
static size_t act_block(int type) {
    if (type == LLMOPS_DTYPE_Q8_0 || type == LLMOPS_DTYPE_Q4_0) return 32;
    if (type == LLMOPS_DTYPE_Q4_K || type == LLMOPS_DTYPE_Q6_K) return 256;
    return 0;
}

/* The tolerance kernels.h states, and the exact dot, for one dequantized row. */
static double exact_dot(const float *w, const float *x, size_t n, int type, double *tol) {
    size_t B = act_block(type);
    double dot = 0, S = 0, Q = 0;
    for (size_t b = 0; b < n; b += B ? B : n) {
        size_t e = B ? b + B : n;
        double amax = 0, wsum = 0;
        for (size_t i = b; i < e; i++) {
            dot += (double)w[i] * x[i];
            S += fabs((double)w[i] * x[i]);
            wsum += fabs((double)w[i]);
            amax = fabs((double)x[i]) > amax ? fabs((double)x[i]) : amax;
        }
        Q += wsum * (amax / 224 + (B == 32 ? 4e-6 : 0));
    }
    *tol = (B ? Q : 0) + 1e-5 * S + 1e-30;
    return dot;
}

/* rows × cols weights of `type` quantized from gaussians, and their dequantized values. */
static int make_weights(uint64_t *s, int type, size_t rows, size_t cols, uint8_t **W, float **Wf) {
    size_t rb = row_bytes(type, cols);
    float *src = malloc(rows * cols * sizeof(float));
    *W = malloc(rows * rb > 0 ? rows * rb : 1); /* exact: a read past the last row is an ASan error */
    *Wf = malloc(rows * cols * sizeof(float));
    if (!src || !*W || !*Wf) return 0;
    gen_gauss(s, src, rows * cols);
    for (size_t r = 0; r < rows; r++) {
        if (llmops_quantize_row(type, src + r * cols, *W + r * rb, cols, NULL)) return 0;
        if (llmops_dequantize_row(type, *W + r * rb, *Wf + r * cols, cols, NULL)) return 0;
    }
    free(src);
    return 1;
}

static int n_paths(const char **names) {
    static const char *const all[] = {"scalar", "avx2", "avx512"};
    int k = 0;
    for (int i = 0; i < 3; i++)
        if (llmops_kernels_isa_available(all[i])) names[k++] = all[i];
    return k;
}

/*
 * Whether a path's one-token product is its tiles' arithmetic. The SIMD
 * Q8_0/Q4_0 matvec has a decode kernel of its own (grouped float sums,
 * within the tolerance of kernels.h); everything else is bit for bit.
 */
static int matvec_is_tiles(const char *path, int type) {
    return !strcmp(path, "scalar") || !(type == LLMOPS_DTYPE_Q8_0 || type == LLMOPS_DTYPE_Q4_0);
}

/*
 * Whether a path's n-token float products follow llmops_kern_dot_f_chain (one
 * fmaf chain per pair, kernels.h) instead of its dot: where the table sets
 * f_chain, for F32/F16/BF16 weights and at least f_chain tokens.
 */
static int tiles_are_chain(const char *path, int type, size_t n) {
    const llmops_kernel_table *kt = table_for(path);
    return kt && kt->f_chain && n >= (size_t)kt->f_chain && act_block(type) == 0;
}

TEST(kernels_vec_dot_within_tolerance) {
    const char *paths[3];
    int np = n_paths(paths);
    llmops_error err = {0};
    uint64_t s = 2024;
    for (int p = 0; p < np; p++) {
        CHECK_OK(llmops_kernels_set_isa(paths[p], &err), err);
        for (size_t t = 0; t < sizeof k_wtypes / sizeof k_wtypes[0]; t++) {
            int type = k_wtypes[t];
            size_t bs = llmops_dtype_get(type)->block_size;
            size_t sizes[] = {bs, 3 * bs, bs == 1 ? 1001 : 16 * bs, bs == 1 ? 9000 : 40 * bs};
            for (size_t k = 0; k < 4; k++) {
                size_t n = sizes[k];
                uint8_t *W;
                float *Wf, *x = malloc(n * sizeof(float));
                CHECK(x && make_weights(&s, type, 1, n, &W, &Wf));
                gen_varied(&s, x, n);
                double tol, want = exact_dot(Wf, x, n, type, &tol);
                float got = llmops_vec_dot(type, W, x, n);
                CHECK_MSG(fabs(got - want) <= tol, "%s %s n=%zu: %.9g, exact %.9g, tol %.3g", paths[p],
                          llmops_dtype_name(type), n, (double)got, want, tol);
                free(W), free(Wf), free(x);
            }
        }
    }
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

TEST(kernels_matvec_matmul_odd_shapes) {
    const char *paths[3];
    int np = n_paths(paths);
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    uint64_t s = 77;
    static const size_t row_counts[] = {1, 7, 33, 67};
    for (size_t t = 0; t < sizeof k_wtypes / sizeof k_wtypes[0]; t++) {
        int type = k_wtypes[t];
        size_t cols = llmops_dtype_get(type)->block_size == 256 ? 512 : 96;
        size_t rows = row_counts[t % 4] + 16 * t; /* 1..163: not multiples of the tiles or the threads */
        uint8_t *W;
        float *Wf;
        CHECK(make_weights(&s, type, rows, cols, &W, &Wf));
        float *X = malloc(17 * cols * sizeof(float)), *Y = malloc(17 * rows * sizeof(float)),
              *y1 = malloc(rows * sizeof(float));
        double *tol = malloc(17 * rows * sizeof(double)), *want = malloc(17 * rows * sizeof(double));
        CHECK(X && Y && y1 && tol && want);
        gen_varied(&s, X, 17 * cols);
        for (size_t tok = 0; tok < 17; tok++)
            for (size_t r = 0; r < rows; r++)
                want[tok * rows + r] = exact_dot(Wf + r * cols, X + tok * cols, cols, type, &tol[tok * rows + r]);
        for (int p = 0; p < np; p++) {
            CHECK_OK(llmops_kernels_set_isa(paths[p], &err), err);
            for (int th = 1; th <= 2; th++) {
                llmops_threadpool *pool = th == 1 ? NULL : pool2;
                for (size_t n = 1; n <= 17; n += (n < 4 ? 1 : 6)) {
                    memset(Y, 0xff, n * rows * sizeof(float));
                    CHECK_OK(llmops_matmul(type, W, rows, cols, X, n, Y, pool, &err), err);
                    for (size_t tok = 0; tok < n; tok++) {
                        CHECK_OK(llmops_matvec(type, W, rows, cols, X + tok * cols, y1, pool, &err), err);
                        for (size_t r = 0; r < rows; r++) {
                            size_t i = tok * rows + r;
                            CHECK_MSG(fabs(Y[i] - want[i]) <= tol[i],
                                      "%s %s %zux%zu n=%zu threads=%d: Y[%zu][%zu] = %.9g, exact %.9g, tol %.3g",
                                      paths[p], llmops_dtype_name(type), rows, cols, n, th, tok, r, (double)Y[i],
                                      want[i], tol[i]);
                            if ((matvec_is_tiles(paths[p], type) && !tiles_are_chain(paths[p], type, n)) || n == 1)
                                CHECK_MSG(Y[i] == y1[r], "%s %s: matmul %.9g != matvec %.9g", paths[p],
                                          llmops_dtype_name(type), (double)Y[i], (double)y1[r]);
                            else
                                CHECK_MSG(fabs(y1[r] - want[i]) <= tol[i], "%s %s: matvec %.9g, exact %.9g, tol %.3g",
                                          paths[p], llmops_dtype_name(type), (double)y1[r], want[i], tol[i]);
                        }
                    }
                }
            }
        }
        free(W), free(Wf), free(X), free(Y), free(y1), free(tol), free(want);
    }
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

/*
 * The float tiles of an f_chain path (rows along the lanes, a panel of 32
 * rows widened per call) against the plain-C fmaf chain, bit for bit, on
 * shapes around the panel and tile sizes: 1..70 rows, 1..65 columns (odd
 * counts, partial 16-column blocks of the widening), 20..41 tokens (from the
 * path's f_chain on), 1 and 2 threads. The chain itself is held to the error bound of a
 * recursive sum, n·2^-24·Σ|w·x|, around the double-precision dot.
 */
TEST(kernels_float_tiles_equal_chain_reference) {
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    static const int types[] = {LLMOPS_DTYPE_F32, LLMOPS_DTYPE_F16, LLMOPS_DTYPE_BF16};
    static const size_t row_opts[] = {1, 15, 16, 17, 31, 32, 33, 70}, col_opts[] = {1, 2, 3, 17, 65},
                        n_opts[] = {20, 21, 24, 25, 41};
    enum { NMAX = 41, RMAX = 70, CMAX = 65 };
    uint64_t s = 99;
    float *X = malloc(NMAX * CMAX * sizeof(float)), *Y = malloc(NMAX * RMAX * sizeof(float)),
          *ref = malloc(NMAX * RMAX * sizeof(float));
    CHECK(X && Y && ref);
    gen_varied(&s, X, NMAX * CMAX);
    int ran = 0;
    for (size_t p = 0; p < sizeof k_isas / sizeof k_isas[0]; p++) {
        const llmops_kernel_table *kt = table_for(k_isas[p]);
        if (!kt || !kt->f_chain || !llmops_kernels_isa_available(k_isas[p])) continue;
        ran = 1;
        CHECK_OK(llmops_kernels_set_isa(k_isas[p], &err), err);
        for (size_t ti = 0; ti < 3; ti++)
            for (size_t ci = 0; ci < sizeof col_opts / sizeof col_opts[0]; ci++)
                for (size_t ri = 0; ri < sizeof row_opts / sizeof row_opts[0]; ri++) {
                    int type = types[ti];
                    size_t cols = col_opts[ci], rows = row_opts[ri], rb = row_bytes(type, cols);
                    uint8_t *W;
                    float *Wf;
                    CHECK(make_weights(&s, type, rows, cols, &W, &Wf));
                    for (size_t t = 0; t < NMAX; t++)
                        for (size_t r = 0; r < rows; r++) {
                            const float *x = X + t * cols;
                            float c = llmops_kern_dot_f_chain(type, W + r * rb, x, cols);
                            double S = 0, want = 0;
                            for (size_t i = 0; i < cols; i++) {
                                want += (double)Wf[r * cols + i] * x[i];
                                S += fabs((double)Wf[r * cols + i] * x[i]);
                            }
                            CHECK_MSG(fabs(c - want) <= (double)cols * 0x1p-24 * S + 1e-30,
                                      "chain %s row %zu: %.9g, exact %.9g", llmops_dtype_name(type), r, (double)c, want);
                            ref[t * rows + r] = c;
                        }
                    for (size_t ni = 0; ni < sizeof n_opts / sizeof n_opts[0]; ni++)
                        for (int th = 1; th <= 2; th++) {
                            size_t n = n_opts[ni];
                            if (n < (size_t)kt->f_chain) continue; /* fewer tokens: the dot (tested elsewhere) */
                            memset(Y, 0xff, n * rows * sizeof(float));
                            CHECK_OK(llmops_matmul(type, W, rows, cols, X, n, Y, th == 1 ? NULL : pool2, &err), err);
                            for (size_t i = 0; i < n * rows; i++)
                                if (memcmp(&Y[i], &ref[i], sizeof(float))) {
                                    test_fail(__FILE__, __LINE__, "%s %s %zux%zu n=%zu threads=%d: Y[%zu][%zu] = %.9g, chain %.9g",
                                              k_isas[p], llmops_dtype_name(type), rows, cols, n, th, i / rows, i % rows,
                                              (double)Y[i], (double)ref[i]);
                                    break;
                                }
                        }
                    free(W), free(Wf);
                }
    }
    free(X), free(Y), free(ref);
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
    if (!ran) SKIP("no path with chained float tiles on this machine");
}

/*
 * matmul and matvec, on every path, give exactly (bit for bit) what that
 * path's dot kernel gives for each (row, token) pair on the activations
 * quantized the standard way: the tiled kernels reproduce the dots' float
 * operations, not just their tolerance. Shapes cover full and partial tiles
 * (rows and tokens), odd block counts and the float kernels' masked tails.
 * Where a path's float tiles follow the fmaf chain (f_chain), several tokens
 * give llmops_kern_dot_f_chain's result instead, bit for bit.
 */
TEST(kernels_matmul_bit_identical_to_dot) {
    const char *paths[3];
    int np = n_paths(paths);
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    uint64_t s = 4242;
    for (size_t ti = 0; ti < sizeof k_wtypes / sizeof k_wtypes[0]; ti++) {
        int type = k_wtypes[ti];
        size_t bs = llmops_dtype_get(type)->block_size;
        size_t col_opts[3];
        if (bs == 1) col_opts[0] = 64, col_opts[1] = 100, col_opts[2] = 1003;
        else if (bs == 32) col_opts[0] = 32, col_opts[1] = 64, col_opts[2] = 19 * 32;
        else col_opts[0] = 256, col_opts[1] = 512, col_opts[2] = 768;
        for (int ci = 0; ci < 3; ci++) {
            size_t cols = col_opts[ci], rows = 37, nmax = 21;
            uint8_t *W;
            float *Wf;
            CHECK(make_weights(&s, type, rows, cols, &W, &Wf));
            size_t rb = row_bytes(type, cols);
            float *X = malloc(nmax * cols * sizeof(float)), *Y = malloc(nmax * rows * sizeof(float)),
                  *y1 = malloc(rows * sizeof(float)), *ref = malloc(nmax * rows * sizeof(float)),
                  *chain = malloc(nmax * rows * sizeof(float));
            uint8_t *xq = malloc(cols / 32 * LLMOPS_Q8_0_BYTES + cols / 256 * LLMOPS_Q8_K_BYTES + 64);
            CHECK(X && Y && y1 && ref && chain && xq);
            gen_varied(&s, X, nmax * cols);
            for (int p = 0; p < np; p++) {
                const llmops_kernel_table *kt = !strcmp(paths[p], "scalar") ? &llmops_kernels_scalar : table_for(paths[p]);
                CHECK(kt != NULL);
                for (size_t t = 0; t < nmax; t++) {
                    const float *x = X + t * cols;
                    if (act_block(type) == 32) llmops_kern_quantize_q8_0(x, xq, cols / 32);
                    else if (act_block(type) == 256) llmops_kern_quantize_q8_K(x, xq, cols / 256);
                    for (size_t r = 0; r < rows; r++) {
                        const uint8_t *w = W + r * rb;
                        float v;
                        switch (type) {
                        case LLMOPS_DTYPE_F32: v = kt->dot_f32((const float *)w, x, cols); break;
                        case LLMOPS_DTYPE_F16: v = kt->dot_f16((const uint16_t *)w, x, cols); break;
                        case LLMOPS_DTYPE_BF16: v = kt->dot_bf16((const uint16_t *)w, x, cols); break;
                        case LLMOPS_DTYPE_Q8_0: v = kt->dot_q8_0(w, xq, cols / 32); break;
                        case LLMOPS_DTYPE_Q4_0: v = kt->dot_q4_0(w, xq, cols / 32); break;
                        case LLMOPS_DTYPE_Q4_K: v = kt->dot_q4_K(w, xq, cols / 256); break;
                        default: v = kt->dot_q6_K(w, xq, cols / 256); break;
                        }
                        ref[t * rows + r] = v;
                        if (act_block(type) == 0) chain[t * rows + r] = llmops_kern_dot_f_chain(type, w, x, cols);
                    }
                }
                CHECK_OK(llmops_kernels_set_isa(paths[p], &err), err);
                static const size_t ns[] = {1, 2, 3, 8, 9, 19, 20, 21};
                for (int th = 1; th <= 2; th++) {
                    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
                        size_t n = ns[k];
                        memset(Y, 0xff, n * rows * sizeof(float));
                        CHECK_OK(llmops_matmul(type, W, rows, cols, X, n, Y, th == 1 ? NULL : pool2, &err), err);
                        if (n == 1 && !matvec_is_tiles(paths[p], type)) continue; /* the decode kernel: below */
                        /* several tokens of float weights on an f_chain path: the fmaf chain, not the dot */
                        const float *want = tiles_are_chain(paths[p], type, n) ? chain : ref;
                        for (size_t i = 0; i < n * rows; i++) {
                            if (memcmp(&Y[i], &want[i], sizeof(float))) {
                                test_fail(__FILE__, __LINE__, "%s %s %zux%zu n=%zu threads=%d: Y[%zu][%zu] = %.9g, %s %.9g",
                                          paths[p], llmops_dtype_name(type), rows, cols, n, th, i / rows, i % rows,
                                          (double)Y[i], want == ref ? "dot" : "chain", (double)want[i]);
                                break;
                            }
                        }
                    }
                    CHECK_OK(llmops_matvec(type, W, rows, cols, X + 5 * cols, y1, th == 1 ? NULL : pool2, &err), err);
                    if (matvec_is_tiles(paths[p], type)) {
                        CHECK_MSG(!memcmp(y1, ref + 5 * rows, rows * sizeof(float)), "%s %s matvec differs from the dot",
                                  paths[p], llmops_dtype_name(type));
                    } else {
                        for (size_t r = 0; r < rows; r++) {
                            double tol, want = exact_dot(Wf + r * cols, X + 5 * cols, cols, type, &tol);
                            CHECK_MSG(fabs(y1[r] - want) <= tol, "%s %s %zu cols: matvec row %zu %.9g, exact %.9g",
                                      paths[p], llmops_dtype_name(type), cols, r, (double)y1[r], want);
                        }
                    }
                }
            }
            free(W), free(Wf), free(X), free(Y), free(y1), free(ref), free(chain), free(xq);
        }
    }
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

/*
 * Q4_K/Q6_K products on every path (the AVX2 and AVX-512 tiles, the scalar
 * dots) equal the scalar reference's dot bit for bit, on random blocks (all
 * scale and min bits random, random f16 scales): odd row counts, 1..5
 * super-blocks, token counts around the tiles (8 on AVX2, 4 on AVX-512) and
 * past the driver's 32-token blocks, 1 and 2 threads.
 */
TEST(kernels_kquant_tiles_equal_scalar_reference) {
    static const int types[] = {LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q6_K};
    static const size_t row_opts[] = {1, 2, 7, 33}, sb_opts[] = {1, 2, 5}, tok_opts[] = {2, 3, 7, 8, 9, 17, 33, 41};
    static const char *paths[] = {"scalar", "avx2", "avx512"};
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    uint64_t s = 31415;
    const size_t nmax = 41;
    for (size_t ti = 0; ti < 2; ti++)
        for (size_t si = 0; si < sizeof sb_opts / sizeof sb_opts[0]; si++)
            for (size_t ri = 0; ri < sizeof row_opts / sizeof row_opts[0]; ri++) {
                const int type = types[ti];
                const size_t cols = 256 * sb_opts[si], rows = row_opts[ri], rb = row_bytes(type, cols);
                uint8_t *W = malloc(rows * rb), *xq = malloc(cols / 256 * LLMOPS_Q8_K_BYTES);
                float *X = malloc(nmax * cols * sizeof(float)), *Y = malloc(nmax * rows * sizeof(float));
                float *ref = malloc(nmax * rows * sizeof(float));
                CHECK(W && xq && X && Y && ref);
                gen_weight_blocks(&s, type, W, rows * cols / 256, 0);
                gen_varied(&s, X, nmax * cols);
                for (size_t t = 0; t < nmax; t++) {
                    llmops_kern_quantize_q8_K(X + t * cols, xq, cols / 256);
                    for (size_t r = 0; r < rows; r++)
                        ref[t * rows + r] = type == LLMOPS_DTYPE_Q4_K
                                                ? llmops_kernels_scalar.dot_q4_K(W + r * rb, xq, cols / 256)
                                                : llmops_kernels_scalar.dot_q6_K(W + r * rb, xq, cols / 256);
                }
                for (size_t p = 0; p < 3; p++) {
                    if (!llmops_kernels_isa_available(paths[p])) continue;
                    CHECK_OK(llmops_kernels_set_isa(paths[p], &err), err);
                    for (int th = 1; th <= 2; th++)
                        for (size_t k = 0; k < sizeof tok_opts / sizeof tok_opts[0]; k++) {
                            size_t n = tok_opts[k], bad = SIZE_MAX;
                            memset(Y, 0xff, n * rows * sizeof(float));
                            CHECK_OK(llmops_matmul(type, W, rows, cols, X, n, Y, th == 1 ? NULL : pool2, &err), err);
                            for (size_t i = 0; i < n * rows && bad == SIZE_MAX; i++)
                                if (memcmp(&Y[i], &ref[i], sizeof(float))) bad = i;
                            CHECK_MSG(bad == SIZE_MAX, "%s %s %zux%zu n=%zu threads=%d: Y[%zu][%zu] = %.9g, scalar %.9g",
                                      paths[p], llmops_dtype_name(type), rows, cols, n, th, bad / rows, bad % rows,
                                      (double)Y[bad], (double)ref[bad]);
                        }
                }
                free(W), free(xq), free(X), free(Y), free(ref);
            }
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

/*
 * The Q8_0/Q4_0 tiles (16 rows per register, tokens in tiles of 16, the
 * weights repacked per row group) give the scalar reference's dot bit for
 * bit on every path: rows, blocks and tokens that are not multiples of the
 * tiles, runs of blocks past 16, one and two threads; and the one-token
 * decode kernel stays within kernels.h's tolerance on the same shapes.
 */
TEST(kernels_q8_tiles_equal_scalar_reference) {
    static const int types[] = {LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0};
    static const size_t row_opts[] = {1, 15, 17, 45}, blk_opts[] = {1, 3, 16, 18, 19, 23, 48, 50, 64};
    static const size_t tok_opts[] = {2, 3, 15, 16, 17, 40};
    static const char *paths[] = {"scalar", "avx2", "avx512"};
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    uint64_t s = 2718;
    const size_t nmax = 40;
    for (size_t ti = 0; ti < 2; ti++)
        for (size_t bi = 0; bi < sizeof blk_opts / sizeof blk_opts[0]; bi++) {
            int type = types[ti];
            size_t cols = 32 * blk_opts[bi], rows = row_opts[(ti + bi) % 4], rb = row_bytes(type, cols);
            uint8_t *W, *xq = malloc(cols / 32 * LLMOPS_Q8_0_BYTES);
            float *Wf, *X = malloc(nmax * cols * sizeof(float)), *Y = malloc(nmax * rows * sizeof(float));
            float *ref = malloc(nmax * rows * sizeof(float));
            CHECK(xq && X && Y && ref && make_weights(&s, type, rows, cols, &W, &Wf));
            gen_varied(&s, X, nmax * cols);
            for (size_t t = 0; t < nmax; t++) {
                llmops_kern_quantize_q8_0(X + t * cols, xq, cols / 32);
                for (size_t r = 0; r < rows; r++)
                    ref[t * rows + r] = type == LLMOPS_DTYPE_Q8_0 ? llmops_kernels_scalar.dot_q8_0(W + r * rb, xq, cols / 32)
                                                                  : llmops_kernels_scalar.dot_q4_0(W + r * rb, xq, cols / 32);
            }
            for (size_t p = 0; p < 3; p++) {
                if (!llmops_kernels_isa_available(paths[p])) continue;
                CHECK_OK(llmops_kernels_set_isa(paths[p], &err), err);
                const llmops_kernel_table *kt = p ? table_for(paths[p]) : NULL;
                const int exact = !p || (kt && kt->mm_q8_0);
                for (int th = 1; th <= 2; th++)
                    for (size_t k = 0; k < sizeof tok_opts / sizeof tok_opts[0]; k++) {
                        size_t n = tok_opts[k], bad = SIZE_MAX;
                        memset(Y, 0xff, n * rows * sizeof(float));
                        CHECK_OK(llmops_matmul(type, W, rows, cols, X, n, Y, th == 1 ? NULL : pool2, &err), err);
                        for (size_t i = 0; i < n * rows && bad == SIZE_MAX; i++) {
                            if (!exact) { /* a path without these tiles: its dots, within tolerance */
                                double tol, want = exact_dot(Wf + i % rows * cols, X + i / rows * cols, cols, type, &tol);
                                if (fabs(Y[i] - want) > tol) bad = i;
                            } else if (memcmp(&Y[i], &ref[i], sizeof(float))) {
                                bad = i;
                            }
                        }
                        CHECK_MSG(bad == SIZE_MAX, "%s %s %zux%zu n=%zu threads=%d: Y[%zu][%zu] = %.9g, scalar %.9g",
                                  paths[p], llmops_dtype_name(type), rows, cols, n, th, bad / rows, bad % rows,
                                  (double)Y[bad], (double)ref[bad]);
                    }
                /* one token; on the AVX-512 path, with its VBMI Q4_0 kernel (where the CPU has it) and without */
                for (int vb = 1; vb >= (p == 2 ? 0 : 1); vb--) {
#if defined(__x86_64__)
                    if (p == 2) llmops_kern_avx512_vbmi(vb ? -1 : 0);
#endif
                    for (size_t t = 0; t < 3; t++) {
                        CHECK_OK(llmops_matvec(type, W, rows, cols, X + t * cols, Y, pool2, &err), err);
                        for (size_t r = 0; r < rows; r++) {
                            double tol, want = exact_dot(Wf + r * cols, X + t * cols, cols, type, &tol);
                            CHECK_MSG(fabs(Y[r] - want) <= tol,
                                      "%s%s %s %zux%zu matvec row %zu: %.9g, exact %.9g, tol %.3g", paths[p],
                                      vb ? "" : " (no VBMI)", llmops_dtype_name(type), rows, cols, r, (double)Y[r],
                                      want, tol);
                        }
                    }
                }
#if defined(__x86_64__)
                if (p == 2) llmops_kern_avx512_vbmi(-1);
#endif
            }
            free(W), free(Wf), free(xq), free(X), free(Y), free(ref);
        }
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

/*
 * The SIMD one-token Q8_0/Q4_0 products (the decode kernels, nt = 1) on
 * random blocks, called directly on every row count 1..40 and block count
 * 1..70, and 176, 256 and 257 (runs of 16 blocks with and without a short
 * one, row boundaries at every place in a run, the stream kernels' largest
 * rows and the next): each row within 1e-5·S of the scalar dot
 * (kernels.h), and each row the same bits whatever rows share its call, as
 * when the threads split the rows — the calls on the first k rows and on
 * the last k rows (which end exactly at the end of the weights: a read past
 * the last row is an ASan error) give every row the bits the call on all 40
 * gives it. On the AVX-512 path with its VBMI Q4_0 kernel (where the CPU
 * has it) and without.
 */
TEST(kernels_q8_decode_any_rows_within_tolerance) {
    enum { ROWS = 40, NB_ALL = 70 };
    static const int types[] = {LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0};
    static const size_t nb_more[] = {176, 256, 257};
    uint64_t s = 1618;
    for (size_t ti = 0; ti < 2; ti++)
        for (size_t k = 0; k < NB_ALL + sizeof nb_more / sizeof nb_more[0]; k++) {
            const int type = types[ti];
            const size_t nb = k < NB_ALL ? k + 1 : nb_more[k - NB_ALL];
            const size_t cols = 32 * nb, rb = row_bytes(type, cols), ab = llmops_kern_q8s_bytes(cols);
            uint8_t *W = malloc(ROWS * rb), *xq = malloc(nb * LLMOPS_Q8_0_BYTES), *act = malloc(ab);
            float *x = malloc(cols * sizeof(float)), ref[ROWS], all[ROWS], Y[ROWS];
            double S[ROWS];
            CHECK(W && xq && act && x);
            gen_weight_blocks(&s, type, W, ROWS * nb, 0);
            gen_varied(&s, x, cols);
            llmops_kern_quantize_q8_0(x, xq, nb);
            llmops_kern_quantize_q8s(x, act, cols);
            for (size_t r = 0; r < ROWS; r++) {
                ref[r] = type == LLMOPS_DTYPE_Q8_0 ? llmops_kernels_scalar.dot_q8_0(W + r * rb, xq, nb)
                                                   : llmops_kernels_scalar.dot_q4_0(W + r * rb, xq, nb);
                S[r] = abs_dot(type, W + r * rb, 0, xq, cols);
            }
            for (int path = 0; path < 3; path++) {
#if defined(__x86_64__)
                const llmops_kernel_table *kt = table_for(path ? "avx512" : "avx2");
                if (!llmops_kernels_isa_available(path ? "avx512" : "avx2")) continue;
                if (path == 2 && type == LLMOPS_DTYPE_Q8_0) continue; /* VBMI: Q4_0 only */
                llmops_kern_mm_fn mm = type == LLMOPS_DTYPE_Q8_0 ? kt->mm_q8_0 : kt->mm_q4_0;
                if (!mm) continue;
                llmops_kern_avx512_vbmi(path == 1 ? 0 : -1);
                const char *name = path == 0 ? "avx2" : path == 1 ? "avx512 (no VBMI)" : "avx512";
                mm(W, rb, ROWS, act, ab, 1, cols, all, ROWS);
                for (size_t r = 0; r < ROWS; r++)
                    CHECK_MSG(fabs((double)all[r] - ref[r]) <= 1e-5 * S[r] + 1e-30,
                              "%s %s %zu blocks row %zu: %.9g, scalar %.9g, S %.3g", name, llmops_dtype_name(type),
                              nb, r, (double)all[r], (double)ref[r], S[r]);
                for (size_t n = 1; n <= ROWS; n++)
                    for (int last = 0; last < 2; last++) {
                        const size_t r0 = last ? ROWS - n : 0;
                        mm(W + r0 * rb, rb, n, act, ab, 1, cols, Y, ROWS);
                        for (size_t i = 0; i < n; i++)
                            CHECK_MSG(!memcmp(&Y[i], &all[r0 + i], sizeof(float)),
                                      "%s %s %zu blocks, rows %zu..%zu: row %zu %.9g, in all %.9g", name,
                                      llmops_dtype_name(type), nb, r0, r0 + n - 1, r0 + i, (double)Y[i],
                                      (double)all[r0 + i]);
                    }
#else
                (void)path;
#endif
            }
#if defined(__x86_64__)
            llmops_kern_avx512_vbmi(-1);
#endif
            free(W), free(xq), free(act), free(x);
        }
}

/* |a − b| within `ulps` units in the last place of b (both finite), or both the same non-finite. */
static int close_ulps(float a, float b, float ulps) {
    if (!isfinite(b)) return isnan(b) ? isnan(a) : a == b;
    if (b == 0) return fabsf(a) <= 1e-37f;
    return fabsf(a - b) <= ulps * (nextafterf(fabsf(b), INFINITY) - fabsf(b)) || fabsf(a - b) <= 1e-37f;
}

/*
 * The softmax exponentials and SwiGLU's SiLU on each path against the
 * scalar reference (expf): within 3 ulp per element over the whole float
 * range (subnormal results may be 0), masked cells 0, NaN kept; and an
 * element's value the same wherever it sits in the array (tails included).
 */
TEST(kernels_vec_exp_simd_match_scalar) {
    enum { N = 203 };
    float x[N], g[N], y0[N], ref[N], got[N], pos[N];
    uint8_t keep[N];
    uint64_t s = 555;
    for (int i = 0; i < N; i++) {
        x[i] = (float)(rng_gauss(&s) * (i % 3 == 0 ? 40 : 4));
        g[i] = (float)((rng_unit(&s) * 2 - 1) * (i % 4 == 0 ? 120 : 12));
        y0[i] = (float)rng_gauss(&s);
        keep[i] = (uint8_t)(rng_unit(&s) < 0.8);
    }
    x[7] = -INFINITY, keep[7] = 1, x[9] = -200, x[11] = 85, keep[11] = 1;
    g[3] = NAN, g[5] = INFINITY, g[6] = -INFINITY, g[8] = 0, g[10] = -87.5f, g[12] = 88.9f, g[14] = -103.5f;
    int ran = 0;
    for (size_t p = 0; p < sizeof k_isas / sizeof k_isas[0]; p++) {
        const llmops_kernel_table *kt = table_for(k_isas[p]);
        if (!kt || !kt->exp_sum || !llmops_kernels_isa_available(k_isas[p])) continue;
        ran++;
        for (size_t n = 0; n <= N; n += (n < 40 ? 1 : 27)) {
            float mx = 85; /* the row's maximum: no term above 1 */
            memcpy(ref, x, sizeof x), memcpy(got, x, sizeof x);
            float rs = llmops_kernels_scalar.exp_sum(ref, keep, n, mx), gs = kt->exp_sum(got, keep, n, mx);
            for (size_t i = 0; i < n; i++)
                CHECK_MSG(close_ulps(got[i], ref[i], 3) && (keep[i] || got[i] == 0), "%s exp_sum n=%zu [%zu]: %.9g vs %.9g",
                          k_isas[p], n, i, (double)got[i], (double)ref[i]);
            CHECK_MSG(fabsf(gs - rs) <= 1e-6f * rs + 1e-37f, "%s exp_sum n=%zu: sum %.9g vs %.9g", k_isas[p], n, (double)gs,
                      (double)rs);
            memcpy(ref, y0, sizeof y0), memcpy(got, y0, sizeof y0);
            llmops_kernels_scalar.silu_mul(ref, g, n);
            kt->silu_mul(got, g, n);
            for (size_t i = 0; i < n; i++)
                CHECK_MSG(close_ulps(got[i], ref[i], 4), "%s silu_mul n=%zu [%zu] g=%g: %.9g vs %.9g", k_isas[p], n, i,
                          (double)g[i], (double)got[i], (double)ref[i]);
        }
        /* position independence: the same element computed from every offset */
        memcpy(ref, y0, sizeof y0);
        kt->silu_mul(ref, g, N);
        for (size_t off = 1; off < 20; off++) {
            memcpy(pos, y0, sizeof y0);
            kt->silu_mul(pos + off, g + off, N - off - off % 7);
            for (size_t i = off; i < N - off % 7; i++)
                CHECK_MSG(!memcmp(&pos[i], &ref[i], sizeof(float)) || (isnan(pos[i]) && isnan(ref[i])),
                          "%s silu_mul offset %zu [%zu]: %.9g vs %.9g", k_isas[p], off, i, (double)pos[i], (double)ref[i]);
        }
    }
    /* llmops_vec_softmax: nothing kept gives zeros and a zero sum */
    float z[5] = {1, 2, 3, 4, 5};
    uint8_t none[5] = {0};
    CHECK(llmops_vec_softmax(z, none, 5) == 0 && z[0] == 0 && z[4] == 0);
    if (!ran) SKIP("no SIMD path on this machine");
}

/* llmops_vec_sumsq on every path against a long-double sum, for every length to 70 and SmolLM's 576, values
 * over twelve orders of magnitude (a float sum would lose the small ones), and at offsets (no alignment). */
TEST(kernels_vec_sumsq_matches_exact) {
    enum { N = 600 };
    static float x[N + 8];
    uint64_t s = 77;
    for (size_t i = 0; i < N + 8; i++) x[i] = (float)((rng_unit(&s) * 2 - 1) * pow(10.0, (double)(i % 13) - 6));
    const llmops_kernel_table *paths[3] = {&llmops_kernels_scalar, NULL, NULL};
    const char *names[3] = {"scalar", "avx2", "avx512"};
    for (size_t p = 1; p < 3; p++)
        if (llmops_kernels_isa_available(names[p])) paths[p] = table_for(names[p]);
    for (size_t p = 0; p < 3; p++) {
        if (!paths[p]) continue;
        for (size_t off = 0; off < 8; off += 3)
            for (size_t n = 0; n <= N; n += (n < 70 ? 1 : n == 70 ? 506 : 24)) {
                long double e = 0;
                for (size_t i = 0; i < n; i++) e += (long double)x[off + i] * x[off + i];
                double got = paths[p]->sumsq(x + off, n);
                CHECK_MSG(fabsl((long double)got - e) <= e * (long double)n * 0x1p-52L, "%s sumsq n=%zu off=%zu: %.17g vs %.17Lg",
                          names[p], n, off, got, e);
            }
    }
    double d = llmops_vec_sumsq(x, 576);
    CHECK(d > 0 && llmops_vec_sumsq(x, 0) == 0);
}

/* llmops_matmul_multi (one X prepared once for several weights) equals one llmops_matmul per weight, bit
 * for bit, on every path: weights sharing an activation format and weights that do not, odd row counts. */
TEST(kernels_matmul_multi_equals_separate) {
    static const char *paths[] = {"scalar", "avx2", "avx512"};
    static const int sets[3][3] = {{LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_Q8_0},
                                   {LLMOPS_DTYPE_F16, LLMOPS_DTYPE_F32, LLMOPS_DTYPE_BF16},
                                   {LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_F16, LLMOPS_DTYPE_Q4_K}};
    static const size_t rows[3] = {37, 16, 5};
    enum { COLS = 512, N = 19 };
    llmops_error err = {0};
    llmops_threadpool *pool2 = NULL;
    CHECK_OK(llmops_threadpool_create(2, &pool2, &err), err);
    uint64_t s = 8080;
    float *X = malloc(N * COLS * sizeof(float));
    CHECK(X);
    gen_varied(&s, X, N * COLS);
    for (int si = 0; si < 3; si++) {
        uint8_t *W[3];
        float *Wf[3], *Y1[3], *Y2[3];
        for (int p = 0; p < 3; p++) {
            CHECK(make_weights(&s, sets[si][p], rows[p], COLS, &W[p], &Wf[p]));
            Y1[p] = malloc(N * rows[p] * sizeof(float)), Y2[p] = malloc(N * rows[p] * sizeof(float));
            CHECK(Y1[p] && Y2[p]);
        }
        for (size_t pi = 0; pi < 3; pi++) {
            if (!llmops_kernels_isa_available(paths[pi])) continue;
            CHECK_OK(llmops_kernels_set_isa(paths[pi], &err), err);
            for (int th = 1; th <= 2; th++)
                for (size_t n = 1; n <= N; n += 9) {
                    llmops_matmul_part parts[3];
                    for (int p = 0; p < 3; p++) {
                        CHECK_OK(llmops_matmul(sets[si][p], W[p], rows[p], COLS, X, n, Y1[p], th == 1 ? NULL : pool2, &err),
                                 err);
                        memset(Y2[p], 0xff, n * rows[p] * sizeof(float));
                        parts[p] = (llmops_matmul_part){sets[si][p], W[p], rows[p], Y2[p]};
                    }
                    CHECK_OK(llmops_matmul_multi(parts, 3, COLS, X, n, th == 1 ? NULL : pool2, &err), err);
                    for (int p = 0; p < 3; p++)
                        CHECK_MSG(!memcmp(Y1[p], Y2[p], n * rows[p] * sizeof(float)), "%s set %d part %d n=%zu threads=%d",
                                  paths[pi], si, p, n, th);
                }
        }
        for (int p = 0; p < 3; p++) free(W[p]), free(Wf[p]), free(Y1[p]), free(Y2[p]);
    }
    free(X);
    llmops_threadpool_free(pool2);
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
}

/* Each path's Q8S activation quantizer writes the portable one's bytes, specials included. */
TEST(kernels_quantize_q8s_simd_matches_portable) {
    enum { N = 64 * 32 };
    float *x = malloc(N * sizeof(float));
    uint8_t *ref = malloc(llmops_kern_q8s_bytes(N)), *got = malloc(llmops_kern_q8s_bytes(N));
    CHECK(x && ref && got);
    uint64_t s = 31337;
    gen_varied(&s, x, N);
    /* blocks with NaN (first, middle, last element), ±inf, subnormal and huge values; the last block too */
    x[0] = NAN, x[32 + 17] = NAN, x[64 + 31] = NAN, x[96 + 3] = INFINITY, x[128 + 9] = -INFINITY;
    for (int i = 0; i < 32; i++) x[160 + i] = (float)(i - 16) * 1e-41f, x[192 + i] = (float)(i + 1) * 1e37f;
    x[224] = 1e-45f, x[N - 1] = NAN, x[N - 40] = 3e38f;
    /* the same kinds (NaN aside) in blocks 20-25, which the AVX-512 quantizer takes sixteen at a time from
     * x + 512 on (second pass): ±inf, subnormals, huge values, a zero block, a scale below f16's normals */
    x[640 + 5] = INFINITY, x[672 + 30] = -INFINITY;
    for (int i = 0; i < 32; i++)
        x[704 + i] = (float)(i - 16) * 1e-41f, x[736 + i] = (float)(i + 1) * -1e37f, x[768 + i] = 0, x[800 + i] = (float)(i - 7) * 3e-7f;
    int ran = 0;
    for (size_t p = 0; p < sizeof k_isas / sizeof k_isas[0]; p++) {
        const llmops_kernel_table *kt = table_for(k_isas[p]);
        if (!kt || !kt->quantize_q8s || !llmops_kernels_isa_available(k_isas[p])) continue;
        ran++;
        static const size_t col_counts[] = {32, 96, N, 576, 1536, N - 512};
        for (size_t ci = 0; ci < 6; ci++) {
            size_t cols = col_counts[ci], off = ci < 3 ? 0 : 512;
            llmops_kern_quantize_q8s(x + off, ref, cols);
            memset(got, 0x5a, llmops_kern_q8s_bytes(N));
            kt->quantize_q8s(x + off, got, cols);
            size_t nb = llmops_kern_q8s_bytes(cols), i = 0;
            while (i < nb && got[i] == ref[i]) i++;
            CHECK_MSG(i == nb, "%s cols=%zu from %zu: byte %zu is 0x%02x, portable 0x%02x", k_isas[p], cols, off, i,
                      i < nb ? got[i] : 0, i < nb ? ref[i] : 0);
        }
    }
    free(x), free(ref), free(got);
    if (!ran) SKIP("no SIMD quantizer on this machine");
}

/* llmops_matvec_prepared (activations prepared once, shared by weights of one format) equals llmops_matvec
 * bit for bit, on every path, for whole matrices and row ranges. */
TEST(kernels_matvec_prepared_equals_matvec) {
    static const int types[] = {LLMOPS_DTYPE_F32, LLMOPS_DTYPE_F16, LLMOPS_DTYPE_BF16, LLMOPS_DTYPE_Q8_0,
                                LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q6_K};
    static const char *isas[] = {"scalar", "avx2", "avx512"};
    enum { ROWS = 37, COLS = 512 };
    llmops_error err = {0};
    float *w = malloc(ROWS * COLS * sizeof(float)), x[COLS], y1[ROWS], y2[ROWS];
    uint8_t *wq = malloc(ROWS * COLS * 4), *act = aligned_alloc(64, 64 * 1024);
    uint64_t s = 99;
    for (size_t i = 0; i < ROWS * COLS; i++) w[i] = (float)((int64_t)(rng_next(&s) >> 40) - (1 << 23)) / (float)(1 << 23);
    for (size_t i = 0; i < COLS; i++) x[i] = (float)((int64_t)(rng_next(&s) >> 40) - (1 << 23)) / (float)(1 << 21);
    for (size_t ii = 0; ii < 3; ii++) {
        if (!llmops_kernels_isa_available(isas[ii])) continue;
        CHECK_OK(llmops_kernels_set_isa(isas[ii], &err), err);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            int t = types[ti];
            uint64_t rb = 0;
            CHECK_OK(llmops_dtype_nbytes(t, COLS, COLS, &rb, &err), err);
            for (size_t r = 0; r < ROWS; r++) CHECK_OK(llmops_quantize_row(t, w + r * COLS, wq + r * rb, COLS, &err), err);
            CHECK(llmops_act_format(t) >= 0 && llmops_act_bytes(t, COLS) <= 64 * 1024);
            llmops_act_prepare(t, x, COLS, act);
            CHECK_OK(llmops_matvec(t, wq, ROWS, COLS, x, y1, NULL, &err), err);
            memset(y2, 0, sizeof y2);
            llmops_matvec_prepared(t, wq, 20, COLS, act, x, y2);
            llmops_matvec_prepared(t, wq + 20 * rb, ROWS - 20, COLS, act, x, y2 + 20);
            CHECK_MSG(memcmp(y1, y2, sizeof y1) == 0, "%s type %d: prepared differs", isas[ii], t);
        }
    }
    CHECK_OK(llmops_kernels_set_isa("auto", &err), err);
    free(w);
    free(wq);
    free(act);
}
