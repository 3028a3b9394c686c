/*
 * Vectorised row loops of the training core: the exponentials of the softmax
 * and the cross-entropy, and the SiLU of the gated MLP. The project builds for
 * baseline x86-64, so each loop has an AVX2+FMA body (chosen once from CPUID)
 * and a plain one. The AVX2 body uses the kernels' exponential (exp256 in
 * src/tensor/simd_x86.h: within 2 ulp, 0 below -87.3, +inf above 88.7); tails
 * go through an 8-float copy and tops_exp through one lane, so every element's
 * value is the same wherever it sits. Without AVX2 everything uses libm's expf.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "train/train_ops.h"

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define SIMD_FN AVX2 static inline
#include "tensor/simd_x86.h"
#endif

static int use_avx2(void) {
#if defined(__x86_64__)
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); /* (F16C: not used here) */
    return cached;
#else
    return 0;
#endif
}

static float max_plain(const float *x, size_t n) {
    float mx = -FLT_MAX;
    for (size_t j = 0; j < n; j++)
        if (x[j] > mx) mx = x[j];
    return mx;
}

static double exp_sum_plain(float *x, size_t n, float mx, int store) {
    double sum = 0;
    for (size_t j = 0; j < n; j++) {
        float e = expf(x[j] - mx);
        if (store) x[j] = e;
        sum += e;
    }
    return sum;
}

static void scale_plain(float *x, size_t n, float f) {
    for (size_t j = 0; j < n; j++) x[j] *= f;
}

static void silu_plain(const float *x, float *a, float *g, size_t n) {
    for (size_t j = 0; j < n; j++) {
        float s = 1.0f / (1.0f + expf(-x[j]));
        a[j] = x[j] * s;
        if (g) g[j] = s * (1.0f + x[j] * (1.0f - s));
    }
}

#if defined(__x86_64__)
AVX2 static float exp_avx2(float x) {
    float t[8];
    _mm256_storeu_ps(t, exp256(_mm256_set1_ps(x)));
    return t[0];
}

AVX2 static float max_avx2(const float *x, size_t n) {
    __m256 m0 = _mm256_set1_ps(-FLT_MAX), m1 = m0;
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_max_ps(m0, m1));
    float mx = max_plain(t, 8), rest = max_plain(x + j, n - j);
    return rest > mx ? rest : mx;
}

/* e^(x − mx) of 8 values; with store, written back. Returns them for the sum. */
AVX2 static inline __m256 exp_store8(float *x, __m256 m, int store) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x), m));
    if (store) _mm256_storeu_ps(x, e);
    return e;
}

AVX2 static double exp_sum_avx2(float *x, size_t n, float mx, int store) {
    const __m256 m = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp_store8(x + j, m, store);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double sum = (t[0] + t[1]) + (t[2] + t[3]);
    if (j < n) { /* the tail through a padded copy: the same values as in the body */
        float buf[8], e[8];
        for (size_t k = 0; k < 8; k++) buf[k] = j + k < n ? x[j + k] : mx;
        _mm256_storeu_ps(e, exp_store8(buf, m, 1));
        for (size_t k = 0; j + k < n; k++) {
            if (store) x[j + k] = e[k];
            sum += e[k];
        }
    }
    return sum;
}

AVX2 static void scale_avx2(float *x, size_t n, float f) {
    const __m256 v = _mm256_set1_ps(f);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), v));
    scale_plain(x + j, n - j, f);
}

AVX2 static inline void silu8(const float *x, float *a, float *g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 v = _mm256_loadu_ps(x);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    _mm256_storeu_ps(a, _mm256_mul_ps(v, s));
    if (g) _mm256_storeu_ps(g, _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(v, _mm256_sub_ps(one, s)))));
}

AVX2 static void silu_avx2(const float *x, float *a, float *g, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) silu8(x + j, a + j, g ? g + j : NULL);
    if (j < n) {
        float bx[8] = {0}, ba[8], bg[8];
        memcpy(bx, x + j, (n - j) * sizeof(float));
        silu8(bx, ba, bg);
        memcpy(a + j, ba, (n - j) * sizeof(float));
        if (g) memcpy(g + j, bg, (n - j) * sizeof(float));
    }
}
#endif

float tops_exp(float x) {
#if defined(__x86_64__)
    if (use_avx2()) return exp_avx2(x);
#endif
    return expf(x);
}

float tops_vec_max(const float *x, size_t n) {
#if defined(__x86_64__)
    if (use_avx2()) return max_avx2(x, n);
#endif
    return max_plain(x, n);
}

double tops_vec_exp_sum(float *x, size_t n, float mx, int store) {
#if defined(__x86_64__)
    if (use_avx2()) return exp_sum_avx2(x, n, mx, store);
#endif
    return exp_sum_plain(x, n, mx, store);
}

void tops_vec_scale(float *x, size_t n, float f) {
#if defined(__x86_64__)
    if (use_avx2()) {
        scale_avx2(x, n, f);
        return;
    }
#endif
    scale_plain(x, n, f);
}

void tops_vec_silu(const float *x, float *a, float *g, size_t n) {
#if defined(__x86_64__)
    if (use_avx2()) {
        silu_avx2(x, a, g, n);
        return;
    }
#endif
    silu_plain(x, a, g, n);
}
