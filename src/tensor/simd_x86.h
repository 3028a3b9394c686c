/*
 * Small x86 SIMD helpers shared by the kernel files, each of which compiles
 * its functions for its own instruction set with a target attribute (the
 * project builds without -mavx2 so that one binary runs everywhere). The
 * including file defines SIMD_FN as its attribute plus `static inline`:
 *
 *     #define SIMD_FN __attribute__((target("avx2,fma,f16c"))) static inline
 *     #include "tensor/simd_x86.h"
 *
 * The f16/nibble/Q4_K helpers need F16C and AVX2; hsum256_ps needs AVX.
 */
#ifndef LLMOPS_SIMD_X86_H
#define LLMOPS_SIMD_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifndef SIMD_FN
#error "define SIMD_FN (the target attribute and static inline) before including simd_x86.h"
#endif

/* An IEEE half at an unaligned address, as a float. */
SIMD_FN float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

SIMD_FN float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SIMD_FN int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* 16 bytes of packed 4-bit values → 32 bytes: low nibbles first, then high nibbles (Q4_0 order). */
SIMD_FN __m256i unpack_nibbles(const uint8_t *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/*
 * Q4_K scales and mins (ggml-common.h's 6-bit packing) unpacked with 32-bit
 * masks: sc[0..7] receives the scales; returns Σ_j m_j·(bsums[2j] + bsums[2j+1]),
 * the Q8_K sums of each 32-element sub-block weighted by its min.
 */
/* The 12 packed bytes of Q4_K's 6-bit scales and mins as 16 bytes: u[0..1] the eight scales,
 * u[2..3] the eight mins. */
SIMD_FN void q4_K_unpack(const uint8_t *packed, uint32_t u[4]) {
    memcpy(u, packed, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    const uint32_t mins_lo = u[1] & k1;
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    u[2] = mins_lo;
    u[0] &= k1;
}

SIMD_FN int q4_K_scales(const uint8_t *packed, const int16_t *bsums, uint8_t *sc) {
    uint32_t u[4];
    q4_K_unpack(packed, u);
    memcpy(sc, u, 8);
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(u + 2)));
    __m128i b0 = _mm_loadu_si128((const __m128i *)bsums), b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i pairs = _mm_hadd_epi16(b0, b1); /* bsums[2j] + bsums[2j+1], |.| <= 4064 */
    __m128i s = _mm_madd_epi16(m, pairs);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* ---- exp ------------------------------------------------------------------
 *
 * exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 split
 * in two so that n·ln2_hi is exact), |r| <= ln2/2, e^r by its Taylor series
 * to r^7, 2^n put into the exponent bits. Results that would be subnormal
 * are 0, overflow is +inf, NaN stays NaN. Callers send tails through an
 * 8-float copy, so an element's value does not depend on where it sits.
 * Needs AVX2 and FMA. Used by the kernels and by the trainer (train_vec.c).
 */
SIMD_FN __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* n in [-126, 128]: 2^n as two factors so that n = 128 does not overflow the exponent field */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
    e = _mm256_andnot_ps(under, e);
    e = _mm256_blendv_ps(e, _mm256_set1_ps(__builtin_inff()), over);
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN */
}

#endif
