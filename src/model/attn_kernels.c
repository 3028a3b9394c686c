/*
 * The attention inner loops: dot products of a query with cached keys and
 * weighted sums of cached values, for F16 and F32 caches, with AVX2+F16C and
 * AVX-512 paths chosen at run time and a scalar reference for each.
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

/* S[r·lds + c] = Σ_i Q[r·hd + i] · K[c·ldk + i] for r < nq, c < nc (K: nc F16 key rows ldk apart). */
static void qk_f16_ref(const uint16_t *K, size_t ldk, size_t nc, const float *Q, size_t nq, size_t hd, float *S,
                       size_t lds) {
    for (size_t r = 0; r < nq; r++)
        for (size_t c = 0; c < nc; c++) S[r * lds + c] = dot_f16_ref(K + c * ldk, Q + r * hd, hd);
}

/* O[r·hd + i] += Σ_{c < nc} P[r·lds + c] · V[c·ldv + i] for r < nq (V: nc F16 value rows ldv apart). */
static void pv_f16_ref(const float *P, size_t lds, size_t nq, const uint16_t *V, size_t ldv, size_t nc, size_t hd,
                       float *O) {
    for (size_t r = 0; r < nq; r++)
        for (size_t c = 0; c < nc; c++) axpy_f16_ref(V + c * ldv, P[r * lds + c], O + r * hd, hd);
}

static void cvt_f16_ref(const void *src, float *dst, size_t n) {
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++) dst[i] = llmops_fp16_to_fp32(h[i]);
}

#if defined(__x86_64__)
#include <immintrin.h>

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

/* Decode (a few query rows): each row against each key or value row straight from the cache; the rows are
 * read from L1 after the first. */
__attribute__((target("avx2,fma,f16c"))) static void qk_f16_avx2(const uint16_t *K, size_t ldk, size_t nc,
                                                                  const float *Q, size_t nq, size_t hd, float *S,
                                                                  size_t lds) {
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < nq; r++) S[r * lds + c] = dot_f16_avx2(K + c * ldk, Q + r * hd, hd);
}

__attribute__((target("avx2,fma,f16c"))) static void pv_f16_avx2(const float *P, size_t lds, size_t nq,
                                                                  const uint16_t *V, size_t ldv, size_t nc, size_t hd,
                                                                  float *O) {
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < nq; r++) axpy_f16_avx2(V + c * ldv, P[r * lds + c], O + r * hd, hd);
}

/*
 * AVX-512 (Zen 4 runs 512-bit ops as two halves, so the win is fewer
 * instructions and loads per FMA, not width): a key block row Kt[i·16..+16]
 * is exactly one zmm, so qk16 keeps up to 12 query rows in registers and loads
 * each key row once for all of them, with the query element broadcast from
 * memory into the FMA; pv keeps up to 6 rows × 64 columns (24 accumulators)
 * and loads each value slice once for the 6. Head dims that are not a multiple
 * of 16 use masked loads and stores, so every shape stays on this path.
 */
#define A512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define A512_INLINE A512 __attribute__((always_inline)) static inline

enum { QK_ROWS = 12, PV_ROWS = 6 };

/* nr (a constant after inlining) query rows against the 16 keys. */
A512_INLINE void qk16_rows512(const float *Q, size_t nr, size_t hd, const float *Kt, float *S, size_t lds) {
    __m512 a[QK_ROWS];
#pragma GCC unroll 12
    for (size_t r = 0; r < nr; r++) a[r] = _mm512_setzero_ps();
    for (size_t i = 0; i < hd; i++) {
        __m512 k = _mm512_loadu_ps(Kt + i * 16);
#pragma GCC unroll 12
        for (size_t r = 0; r < nr; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(Q[r * hd + i]), k, a[r]);
    }
#pragma GCC unroll 12
    for (size_t r = 0; r < nr; r++) _mm512_storeu_ps(S + r * lds, a[r]);
}

/* The next chunk of `left` rows when they go in near-equal chunks of at most max (30 by 12 → 10+10+10,
 * not 12+12+6). */
static inline size_t even_chunk(size_t left, size_t max) {
    size_t chunks = (left + max - 1) / max;
    return (left + chunks - 1) / chunks;
}

/* The rows in near-equal chunks of at most QK_ROWS. */
A512 static void qk16_avx512(const float *Q, size_t nq, size_t hd, const float *Kt, float *S, size_t lds) {
    size_t r = 0;
    while (r < nq) {
        size_t nr = even_chunk(nq - r, QK_ROWS);
        const float *q = Q + r * hd;
        float *s = S + r * lds;
        switch (nr) {
        case 12: qk16_rows512(q, 12, hd, Kt, s, lds); break;
        case 11: qk16_rows512(q, 11, hd, Kt, s, lds); break;
        case 10: qk16_rows512(q, 10, hd, Kt, s, lds); break;
        case 9: qk16_rows512(q, 9, hd, Kt, s, lds); break;
        case 8: qk16_rows512(q, 8, hd, Kt, s, lds); break;
        case 7: qk16_rows512(q, 7, hd, Kt, s, lds); break;
        case 6: qk16_rows512(q, 6, hd, Kt, s, lds); break;
        case 5: qk16_rows512(q, 5, hd, Kt, s, lds); break;
        case 4: qk16_rows512(q, 4, hd, Kt, s, lds); break;
        case 3: qk16_rows512(q, 3, hd, Kt, s, lds); break;
        case 2: qk16_rows512(q, 2, hd, Kt, s, lds); break;
        default: qk16_rows512(q, 1, hd, Kt, s, lds); break;
        }
        r += nr;
    }
}

/* 16 values of a row from V + off: F32, or F16 converted in the register (f16 is a constant after inlining). */
A512_INLINE __m512 ld_v512(const void *V, size_t off, __mmask16 m, int f16) {
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)V + off));
    return _mm512_maskz_loadu_ps(m, (const float *)V + off);
}

/* nr (a constant after inlining) output rows, value rows ldv apart: 64 columns at a time, then masked slices of 16. */
A512_INLINE void pv_rows512(const float *P, size_t lds, size_t nr, const void *V, size_t ldv, int f16, size_t nc,
                            size_t hd, float *O) {
    size_t i = 0;
    for (; i + 64 <= hd; i += 64) {
        __m512 a[PV_ROWS][4];
#pragma GCC unroll 6
        for (size_t r = 0; r < nr; r++)
#pragma GCC unroll 4
            for (size_t j = 0; j < 4; j++) a[r][j] = _mm512_loadu_ps(O + r * hd + i + 16 * j);
        for (size_t c = 0; c < nc; c++) {
            size_t v = c * ldv + i;
            __m512 v0 = ld_v512(V, v, 0xffff, f16), v1 = ld_v512(V, v + 16, 0xffff, f16),
                   v2 = ld_v512(V, v + 32, 0xffff, f16), v3 = ld_v512(V, v + 48, 0xffff, f16);
#pragma GCC unroll 6
            for (size_t r = 0; r < nr; r++) {
                __m512 b = _mm512_set1_ps(P[r * lds + c]);
                a[r][0] = _mm512_fmadd_ps(b, v0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(b, v1, a[r][1]);
                a[r][2] = _mm512_fmadd_ps(b, v2, a[r][2]);
                a[r][3] = _mm512_fmadd_ps(b, v3, a[r][3]);
            }
        }
#pragma GCC unroll 6
        for (size_t r = 0; r < nr; r++)
#pragma GCC unroll 4
            for (size_t j = 0; j < 4; j++) _mm512_storeu_ps(O + r * hd + i + 16 * j, a[r][j]);
    }
    for (; i < hd; i += 16) {
        __mmask16 m = hd - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hd - i)) - 1);
        __m512 a[PV_ROWS];
#pragma GCC unroll 6
        for (size_t r = 0; r < nr; r++) a[r] = _mm512_maskz_loadu_ps(m, O + r * hd + i);
        for (size_t c = 0; c < nc; c++) {
            __m512 v = ld_v512(V, c * ldv + i, m, f16);
#pragma GCC unroll 6
            for (size_t r = 0; r < nr; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(P[r * lds + c]), v, a[r]);
        }
#pragma GCC unroll 6
        for (size_t r = 0; r < nr; r++) _mm512_mask_storeu_ps(O + r * hd + i, m, a[r]);
    }
}

A512_INLINE void pv_any512(const float *P, size_t lds, size_t nq, const void *V, size_t ldv, int f16, size_t nc,
                           size_t hd, float *O) {
    size_t r = 0;
    while (r < nq) {
        size_t nr = even_chunk(nq - r, PV_ROWS);
        const float *p = P + r * lds;
        float *o = O + r * hd;
        switch (nr) {
        case 6: pv_rows512(p, lds, 6, V, ldv, f16, nc, hd, o); break;
        case 5: pv_rows512(p, lds, 5, V, ldv, f16, nc, hd, o); break;
        case 4: pv_rows512(p, lds, 4, V, ldv, f16, nc, hd, o); break;
        case 3: pv_rows512(p, lds, 3, V, ldv, f16, nc, hd, o); break;
        case 2: pv_rows512(p, lds, 2, V, ldv, f16, nc, hd, o); break;
        default: pv_rows512(p, lds, 1, V, ldv, f16, nc, hd, o); break;
        }
        r += nr;
    }
}

A512 static void pv_avx512(const float *P, size_t lds, size_t nq, const float *V, size_t nc, size_t hd, float *O) {
    pv_any512(P, lds, nq, V, hd, 0, nc, hd, O);
}

/* Decode: the values straight from the cache, converted in registers (no pass through a buffer). */
A512 static void pv_f16_avx512(const float *P, size_t lds, size_t nq, const uint16_t *V, size_t ldv, size_t nc,
                               size_t hd, float *O) {
    pv_any512(P, lds, nq, V, ldv, 1, nc, hd, O);
}

/* The four sums of a, b, c, d (lane-wise adds, then across the four 128-bit lanes). */
A512_INLINE __m128 hsum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    __m512 t = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)), _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

enum { QKD_ROWS = 4, QKD_CELLS = 4 };

/* nr (a constant after inlining) query rows against the keys, four at a time: each key converted in
 * registers once for all the rows, the 4 × 4 sums reduced together. The last group repeats its last key
 * (within the cache) and stores only the real ones. */
A512_INLINE void qk_f16_rows512(const uint16_t *K, size_t ldk, size_t nc, const float *Q, size_t nr, size_t hd,
                                float *S, size_t lds) {
    for (size_t c = 0; c < nc; c += QKD_CELLS) {
        size_t mc = nc - c < QKD_CELLS ? nc - c : QKD_CELLS;
        const uint16_t *k[QKD_CELLS];
#pragma GCC unroll 4
        for (size_t j = 0; j < QKD_CELLS; j++) k[j] = K + (c + (j < mc ? j : mc - 1)) * ldk;
        __m512 a[QKD_ROWS][QKD_CELLS];
#pragma GCC unroll 4
        for (size_t r = 0; r < nr; r++)
#pragma GCC unroll 4
            for (size_t j = 0; j < QKD_CELLS; j++) a[r][j] = _mm512_setzero_ps();
        for (size_t i = 0; i < hd; i += 16) {
            __mmask16 m = hd - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hd - i)) - 1);
            __m512 kv[QKD_CELLS];
#pragma GCC unroll 4
            for (size_t j = 0; j < QKD_CELLS; j++) kv[j] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, k[j] + i));
#pragma GCC unroll 4
            for (size_t r = 0; r < nr; r++) {
                __m512 q = _mm512_maskz_loadu_ps(m, Q + r * hd + i);
#pragma GCC unroll 4
                for (size_t j = 0; j < QKD_CELLS; j++) a[r][j] = _mm512_fmadd_ps(q, kv[j], a[r][j]);
            }
        }
        __mmask8 sm = (__mmask8)((1u << mc) - 1);
#pragma GCC unroll 4
        for (size_t r = 0; r < nr; r++) _mm_mask_storeu_ps(S + r * lds + c, sm, hsum4_512(a[r][0], a[r][1], a[r][2], a[r][3]));
    }
}

A512 static void qk_f16_avx512(const uint16_t *K, size_t ldk, size_t nc, const float *Q, size_t nq, size_t hd, float *S,
                               size_t lds) {
    for (size_t r = 0; r < nq;) {
        size_t nr = nq - r < QKD_ROWS ? nq - r : QKD_ROWS;
        const float *q = Q + r * hd;
        float *s = S + r * lds;
        switch (nr) {
        case 4: qk_f16_rows512(K, ldk, nc, q, 4, hd, s, lds); break;
        case 3: qk_f16_rows512(K, ldk, nc, q, 3, hd, s, lds); break;
        case 2: qk_f16_rows512(K, ldk, nc, q, 2, hd, s, lds); break;
        default: qk_f16_rows512(K, ldk, nc, q, 1, hd, s, lds); break;
        }
        r += nr;
    }
}

A512 static void cvt_f16_avx512(const void *src, float *dst, size_t n) {
    const uint16_t *h = src;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)));
    }
}
#endif

static attn_kernels g_kernels;
static int g_ready;

/*
 * The best kernels this CPU runs (force_scalar 0), the scalar references (1),
 * or, for the tests, the best without AVX-512 (2), so that the AVX2 kernels
 * stay covered on machines that would otherwise pick the AVX-512 ones.
 */
const attn_kernels *attn_kernels_get(int force_scalar) {
    static const attn_kernels scalar = {dot_f32_ref, dot_f16_ref, axpy_f32_ref, axpy_f16_ref, qk16_ref,
                                         pv_ref,      cvt_f16_ref, qk_f16_ref,   pv_f16_ref};
    if (force_scalar == 1) return &scalar;
    if (force_scalar == 2) {
#if defined(__x86_64__)
        static const attn_kernels avx2 = {dot_f32_avx2, dot_f16_avx2, axpy_f32_avx2, axpy_f16_avx2, qk16_avx2,
                                          pv_avx2,      cvt_f16_avx2, qk_f16_avx2,   pv_f16_avx2};
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && llmops_cpu_has_f16c()) return &avx2;
#endif
        return &scalar;
    }
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) {
        attn_kernels k = scalar;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && llmops_cpu_has_f16c())
            k = (attn_kernels){dot_f32_avx2, dot_f16_avx2, axpy_f32_avx2, axpy_f16_avx2, qk16_avx2,
                               pv_avx2,      cvt_f16_avx2, qk_f16_avx2,   pv_f16_avx2};
        /* an F32 cache's decode dot stays AVX2: one row of 64 is too short for the wider vectors to pay */
        if (k.qk16 == qk16_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            k.qk16 = qk16_avx512, k.pv = pv_avx512, k.cvt_f16 = cvt_f16_avx512, k.qk_f16 = qk_f16_avx512,
            k.pv_f16 = pv_f16_avx512;
#endif
        g_kernels = k;
        __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
    }
    return &g_kernels;
}
