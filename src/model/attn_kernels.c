/*
 * The attention inner loops: dot products of a query with cached keys and
 * weighted sums of cached values, for F16 and F32 caches, with AVX2+F16C and
 * AVX-512 paths chosen at run time and a scalar reference.
 */
#include <string.h>

#include "model/model_internal.h"

static float dot_f32_ref(const void *k, const float *q, size_t n) {
    const float *r = k;
    float s = 0;
    for (size_t i = 0; i < n; i++) s += r[i] * q[i];
    return s;
}

static float dot_f16_ref(const void *k, const float *q, size_t n) {
    const uint16_t *r = k;
    float s = 0;
    for (size_t i = 0; i < n; i++) s += llmops_fp16_to_fp32(r[i]) * q[i];
    return s;
}

static void axpy_f32_ref(const void *v, float a, float *y, size_t n) {
    const float *r = v;
    for (size_t i = 0; i < n; i++) y[i] += a * r[i];
}

static void axpy_f16_ref(const void *v, float a, float *y, size_t n) {
    const uint16_t *r = v;
    for (size_t i = 0; i < n; i++) y[i] += a * llmops_fp16_to_fp32(r[i]);
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* F16C is CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c"). */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

__attribute__((target("avx2,fma,f16c"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f32_avx2(const void *k, const float *q, size_t n) {
    const float *r = k;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(q + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + i + 8), _mm256_loadu_ps(q + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(q + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += r[i] * q[i];
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const void *k, const float *q, size_t n) {
    const uint16_t *r = k;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i)));
        __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i + 8)));
        acc0 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q + i), acc0);
        acc1 = _mm256_fmadd_ps(k1, _mm256_loadu_ps(q + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i))), _mm256_loadu_ps(q + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += llmops_fp16_to_fp32(r[i]) * q[i];
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f32_avx2(const void *v, float a, float *y, size_t n) {
    const float *r = v;
    __m256 av = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(r + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * r[i];
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f16_avx2(const void *v, float a, float *y, size_t n) {
    const uint16_t *r = v;
    __m256 av = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, x, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * llmops_fp16_to_fp32(r[i]);
}
#endif

static attn_kernels g_kernels;
static int g_ready;

const attn_kernels *attn_kernels_get(int force_scalar) {
    static const attn_kernels scalar = {dot_f32_ref, dot_f16_ref, axpy_f32_ref, axpy_f16_ref};
    if (force_scalar) return &scalar;
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) {
        attn_kernels k = scalar;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
            k = (attn_kernels){dot_f32_avx2, dot_f16_avx2, axpy_f32_avx2, axpy_f16_avx2};
#endif
        g_kernels = k;
        __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
    }
    return &g_kernels;
}
