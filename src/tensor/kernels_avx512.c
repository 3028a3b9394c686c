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
#define SIMD_FN AVX512 static inline
#include "tensor/simd_x86.h"




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

/* ---- activation quantizer ---------------------------------------------------------------
 *
 * Q8U (kernels.h) with the arithmetic of ggml's quantize_row_q8_0_ref, as
 * quant.c does it: amax, d = amax/127, id = 1/d, q = roundf(x·id) clamped to
 * int8 (NaN → 0), the scale through llmops_fp32_to_fp16. roundf (half away
 * from zero) is trunc(p) + sign(p) where |p − trunc(p)| >= 0.5, exact for
 * every float. A block holding a NaN goes to the scalar quantizer: its amax
 * depends on where the NaN sits.
 */
AVX512 static void quantize_q8u_avx512(const float *x, uint8_t *dst, size_t cols) {
    const __m512i sign = _mm512_set1_epi32(INT32_MIN), one = _mm512_castps_si512(_mm512_set1_ps(1.0f));
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (size_t b = 0; b < cols / 32; b++) {
        const float *xb = x + 32 * b;
        __m512 v[2] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)};
        if (_mm512_cmp_ps_mask(v[0], v[0], _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v[1], v[1], _CMP_UNORD_Q)) {
            uint8_t one_block[36];
            llmops_kern_quantize_q8u(xb, one_block, 32);
            memcpy(dst + 32 * b, one_block, 32);
            memcpy(dst + cols + 4 * b, one_block + 32, 4);
            continue;
        }
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        const float ds = llmops_fp16_to_fp32(llmops_fp32_to_fp16(d));
        memcpy(dst + cols + 4 * b, &ds, 4);
        const __m512 vid = _mm512_set1_ps(id);
        for (int h = 0; h < 2; h++) {
            __m512 p = _mm512_mul_ps(v[h], vid);
            __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p, t)), half, _CMP_GE_OQ);
            __m512i sgn_one = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(p), sign), one);
            __m512 r = _mm512_mask_add_ps(t, up, t, _mm512_castsi512_ps(sgn_one));
            r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r); /* NaN (inf·0) → 0 */
            r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            __m128i q = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r));
            _mm_storeu_si128((__m128i *)(dst + 32 * b + 16 * h), _mm_xor_si128(q, flip));
        }
    }
}

/* ---- tiled products (llmops_kern_mm_fn) ----------------------------------------------------
 *
 * Each kernel keeps a tile of R weight rows × T tokens: the weight blocks are
 * loaded (and unpacked) once per tile step and used for T tokens, the
 * activations once and used for R rows. Per (row, token) pair the tile keeps
 * exactly the accumulators the dot above keeps, lane for lane, and updates
 * them with the same operations in the same order, so every result is bit
 * for bit the dot's:
 *  - F32/F16/BF16: the four 16-lane accumulators a0..a3 (64 lanes), and the
 *    masked tail into a0;
 *  - Q8_0/Q4_0: the dot's acc0 (even blocks) and acc1 (odd blocks) side by
 *    side in one 512-bit register, two blocks per step; each lane gets
 *    fma(d_w·d_x, (float)Σ of its 4 products); the integer sums are the same
 *    integers however they are formed;
 *  - Q4_K: the super-block's integers sumi and summ, then the same float
 *    expression.
 * R and T are compile-time constants at every call (always_inline), so the
 * accumulator arrays live in registers.
 */
#define TILE_FN AVX512 __attribute__((always_inline)) static inline

AVX512 static inline float hsum_pair_ps(__m512 acc) {
    __m256 lo = _mm512_castps512_ps256(acc), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    return hsum256_ps(_mm256_add_ps(lo, hi));
}

/* [f16 at p0 as float ×8 | f16 at p1 as float ×8] */
TILE_FN __m512 f16_pair(const uint8_t *p0, const uint8_t *p1, __m512i pidx) {
    uint16_t h0, h1;
    memcpy(&h0, p0, 2);
    memcpy(&h1, p1, 2);
    __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    return _mm512_permutexvar_ps(pidx, _mm512_castps128_ps512(v));
}

/* Two Q8_0 (q4 = 0) or Q4_0 (q4 = 1) weight blocks as 64 signed quants. */
TILE_FN __m512i weight_pair(const uint8_t *a, int q4) {
    if (!q4)
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                  _mm256_loadu_si256((const __m256i *)(a + 36)), 1);
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + 2))),
                                        _mm_loadu_si128((const __m128i *)(a + 20)), 1);
    __m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(q));
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xFF00FF00u, z, 4); /* [lo0 | hi0 | lo1 | hi1] nibbles */
    return _mm512_sub_epi8(_mm512_and_si512(z, _mm512_set1_epi8(0x0F)), _mm512_set1_epi8(8));
}

TILE_FN __m256i weight_one(const uint8_t *a, int q4) {
    if (!q4) return _mm256_loadu_si256((const __m256i *)(a + 2));
    return _mm256_sub_epi8(unpack_nibbles(a + 2), _mm256_set1_epi8(8));
}

enum { TILE_RMAX = 4, TILE_TMAX = 8 };

/*
 * R rows × T tokens of Q8_0/Q4_0 weights against Q8U activations. With the
 * activations offset to unsigned (x + 128), VPDPBUSD started from
 * −128·Σ_lane w (once per row) yields Σ_lane x·w exactly.
 */
TILE_FN void q8_tile(const uint8_t *W, size_t rb, const uint8_t *A, size_t as, size_t cols, float *Y, size_t ldy,
                     const int R, const int T, const int q4) {
    const size_t nb = cols / 32, bs = q4 ? 18 : 34;
    const __m512i pidx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i off = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    __m512 acc[TILE_RMAX][TILE_TMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i w[TILE_RMAX], c[TILE_RMAX];
        __m512 dw[TILE_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *a = W + (size_t)r * rb + b * bs;
            w[r] = weight_pair(a, q4);
            c[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, off, w[r]));
            dw[r] = f16_pair(a, a + bs, pidx);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *x = A + (size_t)t * as;
            __m512i xu = _mm512_loadu_si512((const void *)(x + 32 * b));
            __m512 dx = _mm512_permutexvar_ps(
                pidx, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *)(x + cols + 4 * b)))));
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                __m512i si = _mm512_dpbusd_epi32(c[r], xu, w[r]);
                acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw[r], dx), _mm512_cvtepi32_ps(si), acc[r][t]);
            }
        }
    }
    if (b < nb) { /* an odd block: into acc0, the low half */
        const __m256i off8 = _mm256_set1_epi8((char)0x80), zero8 = _mm256_setzero_si256();
        __m256i w[TILE_RMAX], c[TILE_RMAX];
        float dw[TILE_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *a = W + (size_t)r * rb + b * bs;
            w[r] = weight_one(a, q4);
            c[r] = _mm256_sub_epi32(zero8, _mm256_dpbusd_epi32(zero8, off8, w[r]));
            dw[r] = f16_at(a);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *x = A + (size_t)t * as;
            __m256i xu = _mm256_loadu_si256((const __m256i *)(x + 32 * b));
            float dx;
            memcpy(&dx, x + cols + 4 * b, 4);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                __m256i si = _mm256_dpbusd_epi32(c[r], xu, w[r]);
                acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(dw[r] * dx),
                                                  _mm512_cvtepi32_ps(_mm512_zextsi256_si512(si)), acc[r][t], 0x00FF);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) Y[(size_t)t * ldy + (size_t)r] = hsum_pair_ps(acc[r][t]);
}

/*
 * R rows × T tokens of F32/F16/BF16 weights (kind 0/1/2) against F32
 * activations: per pair the dot's a0..a3 over 64-element steps, then its
 * masked 16-element tail into a0.
 */
TILE_FN __m512 load_w(const uint8_t *p, __mmask16 k, int kind) {
    return kind == 0 ? load_f32(p, k) : kind == 1 ? load_f16(p, k) : load_bf16(p, k);
}

TILE_FN void f_tile(const uint8_t *W, size_t rb, const uint8_t *A, size_t as, size_t n, float *Y, size_t ldy,
                    const int R, const int T, const int kind) {
    const size_t es = kind == 0 ? 4 : 2;
    const __mmask16 all = 0xFFFF;
    __m512 acc[TILE_RMAX][TILE_TMAX][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[r][t][q] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            __m512 w[TILE_RMAX];
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) w[r] = load_w(W + (size_t)r * rb + (i + 16 * (size_t)q) * es, all, kind);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                __m512 x = _mm512_loadu_ps((const float *)(A + (size_t)t * as) + i + 16 * q);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) acc[r][t][q] = _mm512_fmadd_ps(w[r], x, acc[r][t][q]);
            }
        }
    }
    for (; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 k = left >= 16 ? all : (__mmask16)((1u << left) - 1);
        __m512 w[TILE_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) w[r] = load_w(W + (size_t)r * rb + i * es, k, kind);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512 x = _mm512_maskz_loadu_ps(k, (const float *)(A + (size_t)t * as) + i);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t][0] = _mm512_fmadd_ps(w[r], x, acc[r][t][0]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            Y[(size_t)t * ldy + (size_t)r] = _mm512_reduce_add_ps(
                _mm512_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]), _mm512_add_ps(acc[r][t][2], acc[r][t][3])));
}

/*
 * R rows × T tokens of Q4_K weights against Q8_K activations. Per 64
 * elements (sub-blocks 2j and 2j+1): VPMADDUBSW of the nibbles with the
 * activations (pairs: |.| <= 2·15·128), then VPDPWSSD with the sub-block
 * scales — the dot's sumi, exactly; summ and the float step as in the dot.
 */
TILE_FN void q4k_tile(const uint8_t *W, size_t rb, const uint8_t *A, size_t as, size_t cols, float *Y, size_t ldy,
                      const int R, const int T) {
    const size_t nsb = cols / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum[TILE_RMAX][TILE_TMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) sum[r][t] = 0;
    for (size_t sb = 0; sb < nsb; sb++) {
        __m128i scw[TILE_RMAX], mnw[TILE_RMAX];
        __m512i acc[TILE_RMAX][TILE_TMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *a = W + (size_t)r * rb + sb * 144;
            uint32_t u[4];
            memcpy(u, a + 4, 12);
            const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
            u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
            const uint32_t mins_lo = u[1] & k1;
            u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
            u[2] = mins_lo;
            u[0] &= k1;
            scw[r] = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)u));
            mnw[r] = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(u + 2)));
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i w[TILE_RMAX], s16[TILE_RMAX];
            const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * j))),
                                                   _mm256_set1_epi16((short)(2 * j + 1)), 1);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(W + (size_t)r * rb + sb * 144 + 16 + 32 * j));
                w[r] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, m4)),
                                          _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), 1);
                s16[r] = _mm512_permutexvar_epi16(idx, _mm512_castsi128_si512(scw[r]));
            }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                __m512i x = _mm512_loadu_si512((const void *)(A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES + 4 + 64 * j));
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
                    acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_maddubs_epi16(w[r], x), s16[r]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES;
            float dx;
            memcpy(&dx, xb, 4);
            __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(xb + 260)),
                                           _mm_loadu_si128((const __m128i *)(xb + 276)));
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *a = W + (size_t)r * rb + sb * 144;
                __m128i s = _mm_madd_epi16(mnw[r], pairs);
                s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
                s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
                int summ = _mm_cvtsi128_si32(s), sumi = _mm512_reduce_add_epi32(acc[r][t]);
                const float d = f16_at(a) * dx, dmin = f16_at(a + 2) * dx;
                sum[r][t] += d * (float)sumi - dmin * (float)summ;
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) Y[(size_t)t * ldy + (size_t)r] = sum[r][t];
}

/*
 * The drivers: full R × T tiles, then the leftover tokens and rows in
 * smaller tiles. CALL_T picks the instantiation for 1..8 tokens.
 */
#define TMIN(k, TT) ((k) < (TT) ? (k) : (TT))
#define CALL_T(tile, R, TT, tt, ...)                         \
    switch (tt) {                                            \
    case 1: tile(__VA_ARGS__, R, 1); break;                  \
    case 2: tile(__VA_ARGS__, R, TMIN(2, TT)); break;        \
    case 3: tile(__VA_ARGS__, R, TMIN(3, TT)); break;        \
    case 4: tile(__VA_ARGS__, R, TMIN(4, TT)); break;        \
    case 5: tile(__VA_ARGS__, R, TMIN(5, TT)); break;        \
    case 6: tile(__VA_ARGS__, R, TMIN(6, TT)); break;        \
    case 7: tile(__VA_ARGS__, R, TMIN(7, TT)); break;        \
    default: tile(__VA_ARGS__, R, TMIN(8, TT)); break;       \
    }

#define DEFINE_MM(name, tile, RT, TT)                                                                          \
    AVX512 static void name(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt, \
                            size_t cols, float *Y, size_t ldy) {                                               \
        if (nt == 1) { /* matvec: one row stream at a time reads memory fastest */                             \
            for (size_t r = 0; r < nr; r++) tile(W + r * rb, rb, act, as, cols, Y + r, ldy, 1, 1);             \
            return;                                                                                            \
        }                                                                                                      \
        for (size_t r = 0; r < nr; r += RT) {                                                                  \
            for (size_t t = 0; t < nt; t += TT) {                                                              \
                size_t tt = nt - t < TT ? nt - t : TT;                                                         \
                const uint8_t *w = W + r * rb, *a = act + t * as;                                              \
                float *y = Y + t * ldy + r;                                                                    \
                if (nr - r >= RT) {                                                                            \
                    CALL_T(tile, RT, TT, tt, w, rb, a, as, cols, y, ldy)                                           \
                } else {                                                                                       \
                    CALL_T(tile, 1, TT, tt, w, rb, a, as, cols, y, ldy)                                            \
                    if (nr - r > 1) {                                                                          \
                        CALL_T(tile, 1, TT, tt, w + rb, rb, a, as, cols, y + 1, ldy)                               \
                    }                                                                                          \
                    if (nr - r > 2) {                                                                          \
                        CALL_T(tile, 1, TT, tt, w + 2 * rb, rb, a, as, cols, y + 2, ldy)                           \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

#define Q8_TILE(W, rb, A, as, cols, Y, ldy, R, T) q8_tile(W, rb, A, as, cols, Y, ldy, R, T, 0)
#define Q4_TILE(W, rb, A, as, cols, Y, ldy, R, T) q8_tile(W, rb, A, as, cols, Y, ldy, R, T, 1)
#define F32_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 0)
#define F16_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 1)
#define BF16_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 2)

DEFINE_MM(mm_q8_0_avx512, Q8_TILE, 2, 8)
DEFINE_MM(mm_q4_0_avx512, Q4_TILE, 2, 8)
DEFINE_MM(mm_f32_avx512, F32_TILE, 2, 3)
DEFINE_MM(mm_f16_avx512, F16_TILE, 2, 3)
DEFINE_MM(mm_bf16_avx512, BF16_TILE, 2, 3)
DEFINE_MM(mm_q4_K_avx512, q4k_tile, 2, 4)

const llmops_kernel_table llmops_kernels_avx512 = {
    .name = "avx512vnni",
    .dot_f32 = dot_f32_avx512,
    .dot_f16 = dot_f16_avx512,
    .dot_bf16 = dot_bf16_avx512,
    .dot_q8_0 = dot_q8_0_avx512,
    .dot_q4_0 = dot_q4_0_avx512,
    .dot_q4_K = dot_q4_K_avx512,
    .dot_q6_K = dot_q6_K_avx512,
    .mm_f32 = mm_f32_avx512,
    .mm_f16 = mm_f16_avx512,
    .mm_bf16 = mm_bf16_avx512,
    .mm_q8_0 = mm_q8_0_avx512,
    .mm_q4_0 = mm_q4_0_avx512,
    .mm_q4_K = mm_q4_K_avx512,
    .quantize_q8u = quantize_q8u_avx512,
};

#else
typedef int llmops_kernels_avx512_unused; /* non-x86: nothing here */
#endif
