/*
 * AVX-512 kernels (F, BW, VL, VNNI): 512-bit FMA for the float weight types,
 * and VPDPBUSD (u8 × s8 → int32, four products per lane) at 256-bit width
 * for the quantized ones, since a 32-element block is 32 bytes. Same
 * contract as kernels_avx2.c: the integer block sums equal the scalar
 * reference's, and Q4_K/Q6_K results are identical to it.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define LLMOPS_KERNELS_INTERNAL
#include "llmops/kernels.h"

#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

AVX512 static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX512 static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX512 static inline int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* ---- float weights: 64 elements per iteration, masked tail ------------------------------ */

AVX512 static inline __m512 load_f32(const void *p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }

AVX512 static inline __m512 load_f16(const void *p, __mmask16 k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

AVX512 static inline __m512 load_bf16(const void *p, __mmask16 k) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

#define DEFINE_DOT512(name, T, load)                                                               \
    AVX512 static float name(const T *w, const float *x, size_t n) {                              \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
        const __mmask16 all = 0xFFFF;                                                             \
        size_t i = 0;                                                                             \
        for (; i + 64 <= n; i += 64) {                                                            \
            a0 = _mm512_fmadd_ps(load(w + i, all), _mm512_loadu_ps(x + i), a0);                    \
            a1 = _mm512_fmadd_ps(load(w + i + 16, all), _mm512_loadu_ps(x + i + 16), a1);         \
            a2 = _mm512_fmadd_ps(load(w + i + 32, all), _mm512_loadu_ps(x + i + 32), a2);         \
            a3 = _mm512_fmadd_ps(load(w + i + 48, all), _mm512_loadu_ps(x + i + 48), a3);         \
        }                                                                                         \
        for (; i < n; i += 16) {                                                                  \
            size_t left = n - i;                                                                  \
            __mmask16 k = left >= 16 ? all : (__mmask16)((1u << left) - 1);                       \
            a0 = _mm512_fmadd_ps(load(w + i, k), _mm512_maskz_loadu_ps(k, x + i), a0);             \
        }                                                                                         \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

DEFINE_DOT512(dot_f32_avx512, float, load_f32)
DEFINE_DOT512(dot_f16_avx512, uint16_t, load_f16)
DEFINE_DOT512(dot_bf16_avx512, uint16_t, load_bf16)

/* ---- 32-element blocks ------------------------------------------------------------------ */

AVX512 static float dot_q8_0_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 2 <= nb; i += 2, a += 68, b += 68) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(a + 2)), x0 = _mm256_loadu_si256((const __m256i *)(b + 2));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(a + 36)), x1 = _mm256_loadu_si256((const __m256i *)(b + 36));
        __m256i s0 = _mm256_dpbusd_epi32(zero, _mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0));
        __m256i s1 = _mm256_dpbusd_epi32(zero, _mm256_abs_epi8(w1), _mm256_sign_epi8(x1, w1));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a) * f16_at(b)), _mm256_cvtepi32_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a + 34) * f16_at(b + 34)), _mm256_cvtepi32_ps(s1), acc1);
    }
    if (i < nb) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(a + 2)), x0 = _mm256_loadu_si256((const __m256i *)(b + 2));
        __m256i s0 = _mm256_dpbusd_epi32(zero, _mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a) * f16_at(b)), _mm256_cvtepi32_ps(s0), acc0);
    }
    return hsum256_ps(_mm256_add_ps(acc0, acc1));
}

/* 16 bytes of nibbles → 32 bytes: low nibbles (elements 0..15), then high nibbles. */
AVX512 static inline __m256i unpack_nibbles(const uint8_t *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Q4_0: Σ(q − 8)·x = Σ q·x − Σ 8·x, both as unsigned × signed VPDPBUSD. */
AVX512 static float dot_q4_0_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi8(8);
    size_t i = 0;
    for (; i + 2 <= nb; i += 2, a += 36, b += 68) {
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(b + 2)), x1 = _mm256_loadu_si256((const __m256i *)(b + 36));
        __m256i s0 = _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, unpack_nibbles(a + 2), x0),
                                      _mm256_dpbusd_epi32(zero, eight, x0));
        __m256i s1 = _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, unpack_nibbles(a + 20), x1),
                                      _mm256_dpbusd_epi32(zero, eight, x1));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a) * f16_at(b)), _mm256_cvtepi32_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a + 18) * f16_at(b + 34)), _mm256_cvtepi32_ps(s1), acc1);
    }
    if (i < nb) {
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(b + 2));
        __m256i s0 = _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, unpack_nibbles(a + 2), x0),
                                      _mm256_dpbusd_epi32(zero, eight, x0));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(a) * f16_at(b)), _mm256_cvtepi32_ps(s0), acc0);
    }
    return hsum256_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- 256-element super-blocks ---------------------------------------------------------- */

/*
 * Q4_K scales and mins (ggml-common.h's 6-bit packing) unpacked with 32-bit
 * masks, as ggml's SIMD kernels do: sc[0..7] receives the scales; returns
 * Σ_j m_j·(bsums[2j] + bsums[2j+1]), the Q8_K sums of each 32-element sub-block.
 */
AVX512 static inline int q4_K_scales(const uint8_t *packed, const int16_t *bsums, uint8_t *sc) {
    uint32_t u[4];
    memcpy(u, packed, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    const uint32_t mins_lo = u[1] & k1;
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    u[2] = mins_lo;
    u[0] &= k1;
    memcpy(sc, u, 8);
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(u + 2)));
    __m128i b0 = _mm_loadu_si128((const __m128i *)bsums), b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i pairs = _mm_hadd_epi16(b0, b1); /* bsums[2j] + bsums[2j+1], |.| <= 4064 */
    __m128i s = _mm_madd_epi16(m, pairs);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

AVX512 static float dot_q4_K_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 144, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        uint8_t sc[8];
        int summ = q4_K_scales(a + 4, (const int16_t *)(b + 260), sc);
        __m256i acc = zero;
        for (int j = 0; j < 4; j++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(a + 16 + 32 * j));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            __m256i p0 = _mm256_dpbusd_epi32(zero, lo, _mm256_loadu_si256((const __m256i *)(x + 64 * j)));
            __m256i p1 = _mm256_dpbusd_epi32(zero, hi, _mm256_loadu_si256((const __m256i *)(x + 64 * j + 32)));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p0, _mm256_set1_epi32(sc[2 * j])));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p1, _mm256_set1_epi32(sc[2 * j + 1])));
        }
        int sumi = hsum256_epi32(acc);
        const float d = f16_at(a) * dx, dmin = f16_at(a + 2) * dx;
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

/* int32 lanes: s0 in the low 128 bits, s1 in the high 128 bits. */
AVX512 static inline __m256i scale_pair32(int s0, int s1) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(s0)), _mm_set1_epi32(s1), 1);
}

AVX512 static float dot_q6_K_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 210, b += LLMOPS_Q8_K_BYTES) {
        float dx;
        memcpy(&dx, b, 4);
        const int8_t *x = (const int8_t *)(b + 4);
        const int8_t *sc = (const int8_t *)(a + 192);
        /* Σ_g sc_g·bsum_g: the −32 offset of every quant, applied once */
        int off = hsum256_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
                                              _mm256_loadu_si256((const __m256i *)(b + 260))));
        __m256i acc = zero;
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
            __m256i p1 = _mm256_dpbusd_epi32(zero, q1, _mm256_loadu_si256((const __m256i *)(xs + 0)));
            __m256i p2 = _mm256_dpbusd_epi32(zero, q2, _mm256_loadu_si256((const __m256i *)(xs + 32)));
            __m256i p3 = _mm256_dpbusd_epi32(zero, q3, _mm256_loadu_si256((const __m256i *)(xs + 64)));
            __m256i p4 = _mm256_dpbusd_epi32(zero, q4, _mm256_loadu_si256((const __m256i *)(xs + 96)));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p1, scale_pair32(s[0], s[1])));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p2, scale_pair32(s[2], s[3])));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p3, scale_pair32(s[4], s[5])));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p4, scale_pair32(s[6], s[7])));
        }
        int sumi = hsum256_epi32(acc) - 32 * off;
        sum += f16_at(a + 208) * dx * (float)sumi;
    }
    return sum;
}

const llmops_kernel_table llmops_kernels_avx512 = {
    "avx512vnni",    dot_f32_avx512,  dot_f16_avx512,  dot_bf16_avx512,
    dot_q8_0_avx512, dot_q4_0_avx512, dot_q4_K_avx512, dot_q6_K_avx512,
};

#else
typedef int llmops_kernels_avx512_unused; /* non-x86: nothing here */
#endif
