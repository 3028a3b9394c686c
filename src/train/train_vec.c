/*
 * Vectorised row loops of the training core: the exponentials of the softmax
 * and the cross-entropy, and the SiLU of the gated MLP. The project builds for
 * baseline x86-64, so each loop has an AVX2+FMA body (chosen once from CPUID)
 * and a plain one; both use the exponential below, so a machine without AVX2
 * computes the same functions, only slower.
 *
 * exp(x): x = k·ln2 + r with k = round(x/ln2) and |r| ≤ ln2/2 (ln2 split in a
 * high part exact in float and a low correction), exp(r) by its Taylor series
 * to r⁷/7! (truncation below 2e-9 relative), times 2^k built in the exponent
 * bits. Below -87.3 the result is 0 (float underflow), above 88.37 it is capped
 * at e^88.37 (k ≤ 127). Measured against the double-precision exp over
 * [-87, 88]: at most 2 ulp.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "train/train_ops.h"

#define EXP_HI 88.37f /* k ≤ 127 */
#define EXP_LO -87.33f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f        /* exact in 9 bits */
#define LN2_LO -2.12194440e-4f     /* ln 2 − LN2_HI */

static float exp_one(float x) {
    if (!(x >= EXP_LO)) return x != x ? x : 0.0f; /* NaN stays NaN */
    if (x > EXP_HI) x = EXP_HI;
    float k = nearbyintf(x * LOG2E);
    float r = fmaf(k, -LN2_HI, x);
    r = fmaf(k, -LN2_LO, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t e = ((int32_t)k + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

float tops_exp(float x) { return exp_one(x); }

static float max_plain(const float *x, size_t n) {
    float mx = -FLT_MAX;
    for (size_t j = 0; j < n; j++)
        if (x[j] > mx) mx = x[j];
    return mx;
}

static double exp_sum_plain(float *x, size_t n, float mx, int store) {
    double sum = 0;
    for (size_t j = 0; j < n; j++) {
        float e = exp_one(x[j] - mx);
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
        float s = 1.0f / (1.0f + exp_one(-x[j]));
        a[j] = x[j] * s;
        if (g) g[j] = s * (1.0f + x[j] * (1.0f - s));
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_LO);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q), x0 = x;
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(EXP_HI));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(-LN2_HI), x);
    r = _mm256_fmadd_ps(k, _mm256_set1_ps(-LN2_LO), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    y = _mm256_andnot_ps(under, y);
    return _mm256_blendv_ps(y, x0, nan); /* NaN in, NaN out */
}

AVX2 static float max_avx2(const float *x, size_t n) {
    __m256 m0 = _mm256_set1_ps(-FLT_MAX), m1 = m0;
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    m0 = _mm256_max_ps(m0, m1);
    float t[8];
    _mm256_storeu_ps(t, m0);
    float mx = max_plain(t, 8), rest = max_plain(x + j, n - j);
    return rest > mx ? rest : mx;
}

AVX2 static double exp_sum_avx2(float *x, size_t n, float mx, int store) {
    const __m256 m = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
        if (store) _mm256_storeu_ps(x + j, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    return (t[0] + t[1]) + (t[2] + t[3]) + exp_sum_plain(x + j, n - j, mx, store);
}

AVX2 static void scale_avx2(float *x, size_t n, float f) {
    const __m256 v = _mm256_set1_ps(f);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), v));
    scale_plain(x + j, n - j, f);
}

AVX2 static void silu_avx2(const float *x, float *a, float *g, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v))));
        _mm256_storeu_ps(a + j, _mm256_mul_ps(v, s));
        if (g) _mm256_storeu_ps(g + j, _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(v, _mm256_sub_ps(one, s)))));
    }
    silu_plain(x + j, a + j, g ? g + j : NULL, n - j);
}
#endif

static int use_avx2(void) {
#if defined(__x86_64__)
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cached;
#else
    return 0;
#endif
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
