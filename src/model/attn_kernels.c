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

/* S[r·lds + j] = Σ_i Q[r·hd + i] · Kt[i·16 + j] for r < nq, j < 16 (Kt: 16 keys, transposed). */
static void qk16_ref(const float *Q, size_t nq, size_t hd, const float *Kt, float *S, size_t lds) {
    for (size_t r = 0; r < nq; r++)
        for (size_t j = 0; j < 16; j++) {
            float s = 0;
            for (size_t i = 0; i < hd; i++) s += Q[r * hd + i] * Kt[i * 16 + j];
            S[r * lds + j] = s;
        }
}

/* O[r·hd + i] += Σ_{c < nc} P[r·lds + c] · V[c·hd + i] for r < nq. */
static void pv_ref(const float *P, size_t lds, size_t nq, const float *V, size_t nc, size_t hd, float *O) {
    for (size_t r = 0; r < nq; r++)
        for (size_t c = 0; c < nc; c++) {
            float p = P[r * lds + c];
            for (size_t i = 0; i < hd; i++) O[r * hd + i] += p * V[c * hd + i];
        }
}

static void cvt_f16_ref(const void *src, float *dst, size_t n) {
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++) dst[i] = llmops_fp16_to_fp32(h[i]);
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

/* Four query rows at a time against 16 keys: 8 accumulators, each key row loaded once for the four. */
__attribute__((target("avx2,fma,f16c"))) static void qk16_avx2(const float *Q, size_t nq, size_t hd, const float *Kt,
                                                                float *S, size_t lds) {
    size_t r = 0;
    for (; r + 4 <= nq; r += 4) {
        const float *q0 = Q + r * hd, *q1 = q0 + hd, *q2 = q1 + hd, *q3 = q2 + hd;
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (size_t i = 0; i < hd; i++) {
            __m256 k0 = _mm256_loadu_ps(Kt + i * 16), k1 = _mm256_loadu_ps(Kt + i * 16 + 8);
            __m256 b = _mm256_broadcast_ss(q0 + i);
            a00 = _mm256_fmadd_ps(b, k0, a00);
            a01 = _mm256_fmadd_ps(b, k1, a01);
            b = _mm256_broadcast_ss(q1 + i);
            a10 = _mm256_fmadd_ps(b, k0, a10);
            a11 = _mm256_fmadd_ps(b, k1, a11);
            b = _mm256_broadcast_ss(q2 + i);
            a20 = _mm256_fmadd_ps(b, k0, a20);
            a21 = _mm256_fmadd_ps(b, k1, a21);
            b = _mm256_broadcast_ss(q3 + i);
            a30 = _mm256_fmadd_ps(b, k0, a30);
            a31 = _mm256_fmadd_ps(b, k1, a31);
        }
        float *s = S + r * lds;
        _mm256_storeu_ps(s, a00), _mm256_storeu_ps(s + 8, a01);
        _mm256_storeu_ps(s + lds, a10), _mm256_storeu_ps(s + lds + 8, a11);
        _mm256_storeu_ps(s + 2 * lds, a20), _mm256_storeu_ps(s + 2 * lds + 8, a21);
        _mm256_storeu_ps(s + 3 * lds, a30), _mm256_storeu_ps(s + 3 * lds + 8, a31);
    }
    for (; r < nq; r++) {
        const float *q0 = Q + r * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (size_t i = 0; i < hd; i++) {
            __m256 b = _mm256_broadcast_ss(q0 + i);
            a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(Kt + i * 16), a0);
            a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(Kt + i * 16 + 8), a1);
        }
        _mm256_storeu_ps(S + r * lds, a0);
        _mm256_storeu_ps(S + r * lds + 8, a1);
    }
}

/* Each output row in slices of 32 (then 8) columns held in registers over the nc values. */
__attribute__((target("avx2,fma,f16c"))) static void pv_avx2(const float *P, size_t lds, size_t nq, const float *V,
                                                              size_t nc, size_t hd, float *O) {
    if (hd % 8) {
        pv_ref(P, lds, nq, V, nc, hd, O);
        return;
    }
    for (size_t r = 0; r < nq; r++) {
        const float *p = P + r * lds;
        float *o = O + r * hd;
        size_t i = 0;
        for (; i + 32 <= hd; i += 32) {
            __m256 a0 = _mm256_loadu_ps(o + i), a1 = _mm256_loadu_ps(o + i + 8), a2 = _mm256_loadu_ps(o + i + 16),
                   a3 = _mm256_loadu_ps(o + i + 24);
            for (size_t c = 0; c < nc; c++) {
                __m256 b = _mm256_broadcast_ss(p + c);
                const float *v = V + c * hd + i;
                a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(v), a0);
                a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(v + 8), a1);
                a2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(v + 16), a2);
                a3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(v + 24), a3);
            }
            _mm256_storeu_ps(o + i, a0), _mm256_storeu_ps(o + i + 8, a1);
            _mm256_storeu_ps(o + i + 16, a2), _mm256_storeu_ps(o + i + 24, a3);
        }
        for (; i < hd; i += 8) {
            __m256 a0 = _mm256_loadu_ps(o + i);
            for (size_t c = 0; c < nc; c++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + c), _mm256_loadu_ps(V + c * hd + i), a0);
            _mm256_storeu_ps(o + i, a0);
        }
    }
}

__attribute__((target("avx2,fma,f16c"))) static void cvt_f16_avx2(const void *src, float *dst, size_t n) {
    const uint16_t *h = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) dst[i] = llmops_fp16_to_fp32(h[i]);
}
#endif

static attn_kernels g_kernels;
static int g_ready;

const attn_kernels *attn_kernels_get(int force_scalar) {
    static const attn_kernels scalar = {dot_f32_ref, dot_f16_ref, axpy_f32_ref, axpy_f16_ref, qk16_ref, pv_ref, cvt_f16_ref};
    if (force_scalar) return &scalar;
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) {
        attn_kernels k = scalar;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
            k = (attn_kernels){dot_f32_avx2, dot_f16_avx2, axpy_f32_avx2, axpy_f16_avx2, qk16_avx2, pv_avx2, cvt_f16_avx2};
#endif
        g_kernels = k;
        __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
    }
    return &g_kernels;
}
