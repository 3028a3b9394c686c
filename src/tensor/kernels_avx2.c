/*
 * AVX2 + FMA + F16C kernels. Only functions carry the target attribute, so
 * this file builds with the project's flags and its code runs only after
 * kernels.c has checked CPUID. See kernels.c for the scalar reference each
 * one reproduces: the integer block sums are the same; Q4_K and Q6_K also
 * finish each super-block with the same float expression, so their results
 * are identical to the scalar ones.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define LLMOPS_KERNELS_INTERNAL
#include "llmops/kernels.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define SIMD_FN AVX2 static inline
#include "tensor/simd_x86.h"




/* ---- float weights --------------------------------------------------------------- */

AVX2 static float dot_f32_avx2(const float *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

AVX2 static inline __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

AVX2 static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static float dot_f16_avx2(const uint16_t *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f16_at((const uint8_t *)(w + i)) * x[i];
    return s;
}

AVX2 static float dot_bf16_avx2(const uint16_t *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) {
        uint16_t b;
        memcpy(&b, w + i, 2);
        s += llmops_bf16_to_fp32(b) * x[i];
    }
    return s;
}

/* ---- 32-element blocks ------------------------------------------------------------- */

/* Σ over 32 signed bytes a·b as 8 int32 lanes (|a| may be 128; |b| <= 127). */
AVX2 static inline __m256i dot_i8x32(__m256i a, __m256i b) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

AVX2 static float dot_q8_0_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++, a += 34, b += 34) {
        __m256 d = _mm256_set1_ps(f16_at(a) * f16_at(b));
        __m256i s = dot_i8x32(_mm256_loadu_si256((const __m256i *)(a + 2)),
                              _mm256_loadu_si256((const __m256i *)(b + 2)));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    }
    return hsum256_ps(acc);
}


AVX2 static float dot_q4_0_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    __m256 acc = _mm256_setzero_ps();
    const __m256i eight = _mm256_set1_epi8(8);
    for (size_t i = 0; i < nb; i++, a += 18, b += 34) {
        __m256 d = _mm256_set1_ps(f16_at(a) * f16_at(b));
        __m256i q = _mm256_sub_epi8(unpack_nibbles(a + 2), eight);
        __m256i s = dot_i8x32(q, _mm256_loadu_si256((const __m256i *)(b + 2)));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
    }
    return hsum256_ps(acc);
}

/* ---- 256-element super-blocks -------------------------------------------------------- */


AVX2 static float dot_q4_K_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 144, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        uint8_t sc[8];
        int summ = q4_K_scales(a + 4, (const int16_t *)(b + 260), sc);
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(a + 16 + 32 * j));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(x + 64 * j)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 64 * j + 32)));
            p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * j]));
            p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * j + 1]));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p0, p1));
        }
        int sumi = hsum256_epi32(acc);
        const float d = f16_at(a) * dx, dmin = f16_at(a + 2) * dx;
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

/* int16 lanes: s0 in the low 128 bits, s1 in the high 128 bits. */
AVX2 static inline __m256i scale_pair(int s0, int s1) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)s0)), _mm_set1_epi16((short)s1), 1);
}

AVX2 static float dot_q6_K_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 210, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        const int8_t *sc = (const int8_t *)(a + 192);
        /* Σ_g sc_g·bsum_g: the −32 offset of every quant, applied once */
        int off = hsum256_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
                                              _mm256_loadu_si256((const __m256i *)(b + 260))));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a + 64 * h, *qh = a + 128 + 32 * h;
            const int8_t *xs = x + 128 * h;
            const int8_t *s = sc + 8 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x03)), 4));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x0C)), 2));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                         _mm256_and_si256(hb, _mm256_set1_epi8(0x30)));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8((char)0xC0)), 2));
            __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(xs + 0)));
            __m256i p2 = _mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(xs + 32)));
            __m256i p3 = _mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(xs + 64)));
            __m256i p4 = _mm256_maddubs_epi16(q4, _mm256_loadu_si256((const __m256i *)(xs + 96)));
            p1 = _mm256_madd_epi16(p1, scale_pair(s[0], s[1]));
            p2 = _mm256_madd_epi16(p2, scale_pair(s[2], s[3]));
            p3 = _mm256_madd_epi16(p3, scale_pair(s[4], s[5]));
            p4 = _mm256_madd_epi16(p4, scale_pair(s[6], s[7]));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_add_epi32(p1, p2), _mm256_add_epi32(p3, p4)));
        }
        int sumi = hsum256_epi32(acc) - 32 * off;
        sum += f16_at(a + 208) * dx * (float)sumi;
    }
    return sum;
}

const llmops_kernel_table llmops_kernels_avx2 = {
    .name = "avx2",
    .dot_f32 = dot_f32_avx2,
    .dot_f16 = dot_f16_avx2,
    .dot_bf16 = dot_bf16_avx2,
    .dot_q8_0 = dot_q8_0_avx2,
    .dot_q4_0 = dot_q4_0_avx2,
    .dot_q4_K = dot_q4_K_avx2,
    .dot_q6_K = dot_q6_K_avx2,
};

#else
typedef int llmops_kernels_avx2_unused; /* non-x86: nothing here */
#endif
