/*
 * AVX-512 kernels (F, BW, VL, VNNI): 512-bit FMA for the float weight types,
 * and VPDPBUSD (u8 × s8 → int32, four products per lane) for the quantized
 * ones (and, where the CPU also has VBMI and GFNI, VPERMT2B to pick Q4_0
 * nibbles in the decode kernel). Same contract as kernels_avx2.c: the integer block
 * sums equal the scalar reference's, and Q4_K/Q6_K results are identical to it; Q8_0/Q4_0
 * dots and multi-token products are identical to it too (see their section).
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <stdatomic.h>
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

/*
 * One 16-lane accumulator, 16 elements per step and a masked tail: decode
 * (one token) is memory bound, and one accumulator per (row, token) lets the
 * tiles below hold 4 rows × 6 tokens in registers.
 */
#define DEFINE_DOT512(name, T, load)                                                   \
    AVX512 static float name(const T *w, const float *x, size_t n) {                  \
        __m512 a0 = _mm512_setzero_ps();                                              \
        for (size_t i = 0; i < n; i += 16) {                                          \
            size_t left = n - i;                                                      \
            __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); \
            a0 = _mm512_fmadd_ps(load(w + i, k), _mm512_maskz_loadu_ps(k, x + i), a0); \
        }                                                                             \
        return _mm512_reduce_add_ps(a0);                                              \
    }

DEFINE_DOT512(dot_f32_avx512, float, load_f32)
DEFINE_DOT512(dot_f16_avx512, uint16_t, load_f16)
DEFINE_DOT512(dot_bf16_avx512, uint16_t, load_bf16)

/* ---- 32-element blocks ------------------------------------------------------------------ */

/*
 * Q8_0 and Q4_0 follow the scalar reference's float arithmetic exactly: per
 * block the integer sum, then sum = sum + (d_w·d_x)·(float)isum, block after
 * block. So every path and every tiling gives the same bits (the tiles below
 * keep one such running sum per row and token).
 */
AVX512 static float dot_q8_0_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 34, b += 34) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(a + 2)), x0 = _mm256_loadu_si256((const __m256i *)(b + 2));
        int isum = hsum256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0)));
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
}

/* Q4_0: Σ(q − 8)·x = Σ q·x − 8·Σ x, both as unsigned × signed VPDPBUSD. */
AVX512 static float dot_q4_0_avx512(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi8(8);
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 18, b += 34) {
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(b + 2));
        int isum = hsum256_epi32(_mm256_sub_epi32(_mm256_dpbusd_epi32(zero, unpack_nibbles(a + 2), x0),
                                                  _mm256_dpbusd_epi32(zero, eight, x0)));
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
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

/*
 * Lane r of the result: the sixteen lanes of a[r] combined by op (LANES_ADD: float sum, LANES_MAX,
 * LANES_ADD_I32: 32-bit integer sum), as a tree: lanes i and i + 8 combined, then i and i + 4, i + 2,
 * i + 1, four vectors at a time per instruction. For floats the order of additions is fixed: rotating a
 * vector's lanes maps each of these pairs onto another of the same step, and a + b = b + a, so its
 * result has the same bits for every rotation (the one-token streams rely on it).
 */
enum { LANES_ADD, LANES_MAX, LANES_ADD_I32 };

__attribute__((always_inline)) AVX512 static inline __m512 lanes_op(__m512 x, __m512 y, const int op) {
    if (op == LANES_MAX) return _mm512_max_ps(x, y);
    if (op == LANES_ADD_I32) return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(x), _mm512_castps_si512(y)));
    return _mm512_add_ps(x, y);
}

__attribute__((always_inline)) AVX512 static inline __m512 lanes16(const __m512 a[16], const int op) {
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) /* rows j, j + 8: lanes i + (i + 8) in halves 0, 1 */
        b[j] = lanes_op(_mm512_shuffle_f32x4(a[j], a[j + 8], 0x44), _mm512_shuffle_f32x4(a[j], a[j + 8], 0xEE), op);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) /* rows j, j + 8, j + 4, j + 12: + (i + 4) in quarters 0..3 */
        c[j] = lanes_op(_mm512_shuffle_f32x4(b[j], b[j + 4], 0x88), _mm512_shuffle_f32x4(b[j], b[j + 4], 0xDD), op);
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) /* + (i + 2): quarter k's lanes 0–1 from c[j], 2–3 from c[j + 2] */
        d[j] = lanes_op(_mm512_shuffle_ps(c[j], c[j + 2], 0x44), _mm512_shuffle_ps(c[j], c[j + 2], 0xEE), op);
    /* + (i + 1): quarter k's lane m is row {0, 2, 1, 3}[m] + {0, 8, 4, 12}[k] */
    __m512 e = lanes_op(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD), op);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15), e);
}

/* ---- activation quantizer ---------------------------------------------------------------
 *
 * Q8S (kernels.h) with the arithmetic of ggml's quantize_row_q8_0_ref, as
 * quant.c does it: amax, d = amax/127, id = 1/d, q = roundf(x·id) clamped to
 * int8 (NaN → 0), the scale through llmops_fp32_to_fp16. roundf (half away
 * from zero) is trunc(p) + sign(p) where |p − trunc(p)| >= 0.5, exact for
 * every float. A block holding a NaN goes to the portable quantizer: its amax
 * depends on where the NaN sits.
 */
/* x·id of 16 floats rounded half away from zero, clamped to int8 (NaN, from inf·0, to 0), in 32-bit lanes. */
__attribute__((always_inline)) AVX512 static inline __m512i q8s_round16(__m512 x, __m512 vid) {
    const __m512i sign = _mm512_set1_epi32(INT32_MIN), one = _mm512_castps_si512(_mm512_set1_ps(1.0f));
    const __m512 p = _mm512_mul_ps(x, vid), t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512i sgn_one = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(p), sign), one);
    __m512 r = _mm512_mask_add_ps(t, up, t, _mm512_castsi512_ps(sgn_one));
    r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r);
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f)));
}

/* Block b alone (amax by a reduction); a block holding a NaN by the portable quantizer. */
AVX512 static void quantize_q8s_block(const float *x, uint8_t *dst, size_t cols, size_t b) {
    const size_t nb = cols / 32;
    const float *xb = x + 32 * b;
    __m512 v[2] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)};
    if (_mm512_cmp_ps_mask(v[0], v[0], _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v[1], v[1], _CMP_UNORD_Q)) {
        uint8_t one_block[32 + 12 + 128];
        llmops_kern_quantize_q8s(xb, one_block, 32);
        memcpy(dst + 32 * b, one_block, 32);
        memcpy(dst + cols + 4 * b, one_block + 32, 4);
        memcpy(dst + cols + 4 * nb + 4 * b, one_block + 36, 4);
        memcpy(dst + cols + 8 * nb + 4 * b, one_block + 40, 4);
        return;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    const float ds = llmops_fp16_to_fp32(llmops_fp32_to_fp16(d));
    memcpy(dst + cols + 4 * b, &ds, 4);
    __m512i qsum = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m512i q32 = q8s_round16(v[h], _mm512_set1_ps(id));
        qsum = _mm512_add_epi32(qsum, q32);
        _mm_storeu_si128((__m128i *)(dst + 32 * b + 16 * h), _mm512_cvtepi32_epi8(q32));
    }
    int32_t sq = _mm512_reduce_add_epi32(qsum), c128 = -128 * sq, c8 = -8 * sq;
    memcpy(dst + cols + 4 * nb + 4 * b, &c128, 4);
    memcpy(dst + cols + 8 * nb + 4 * b, &c8, 4);
}

/*
 * Sixteen blocks at a time: their amax, scales, reciprocals and sums as vectors of 16 (lanes16's
 * reductions), not one block's reductions and scalar divisions after another (SmolLM decode spent 3% of
 * its time here); a group holding a NaN, and the blocks past the last whole group, one at a time.
 */
AVX512 static void quantize_q8s_avx512(const float *x, uint8_t *dst, size_t cols) {
    const size_t nb = cols / 32;
    size_t b0 = 0;
    for (; b0 + 16 <= nb; b0 += 16) {
        const float *xb = x + 32 * b0;
        __m512 m[16];
        __mmask16 nan = 0;
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            const __m512 v0 = _mm512_loadu_ps(xb + 32 * j), v1 = _mm512_loadu_ps(xb + 32 * j + 16);
            nan |= _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q);
            m[j] = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
        }
        if (nan) {
            for (size_t b = b0; b < b0 + 16; b++) quantize_q8s_block(x, dst, cols, b);
            continue;
        }
        const __m512 d = _mm512_div_ps(lanes16(m, LANES_MAX), _mm512_set1_ps((1 << 7) - 1));
        const __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ), _mm512_set1_ps(1.0f), d);
        _mm512_storeu_ps((float *)(void *)(dst + cols + 4 * b0), _mm512_cvtph_ps(_mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT)));
        __m512 qs[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            const __m512 vid = _mm512_permutexvar_ps(_mm512_set1_epi32(j), id);
            const __m512i q0 = q8s_round16(_mm512_loadu_ps(xb + 32 * j), vid), q1 = q8s_round16(_mm512_loadu_ps(xb + 32 * j + 16), vid);
            _mm_storeu_si128((__m128i *)(dst + 32 * (b0 + j)), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(dst + 32 * (b0 + j) + 16), _mm512_cvtepi32_epi8(q1));
            qs[j] = _mm512_castsi512_ps(_mm512_add_epi32(q0, q1));
        }
        const __m512i sq = _mm512_castps_si512(lanes16(qs, LANES_ADD_I32));
        _mm512_storeu_si512((void *)(dst + cols + 4 * nb + 4 * b0), _mm512_mullo_epi32(sq, _mm512_set1_epi32(-128)));
        _mm512_storeu_si512((void *)(dst + cols + 8 * nb + 4 * b0), _mm512_mullo_epi32(sq, _mm512_set1_epi32(-8)));
    }
    for (; b0 < nb; b0++) quantize_q8s_block(x, dst, cols, b0);
    llmops_kern_q8s_fill_x4(dst, cols);
}

/* ---- tiled products (llmops_kern_mm_fn) ----------------------------------------------------
 *
 * Each kernel keeps a tile of R weight rows × T tokens: the weight blocks are
 * loaded (and unpacked) once per tile step and used for T tokens, the
 * activations once and used for R rows. Per (row, token) pair the tile keeps
 * exactly the accumulators the dot above keeps, lane for lane, and updates
 * them with the same operations in the same order, so every result is bit
 * for bit the dot's:
 *  - F32/F16/BF16: the dot's one 16-lane accumulator, 16 elements per step,
 *    the tail masked;
 *  - Q8_0/Q4_0: see their own section below (16 rows per register);
 *  - Q4_K, Q6_K: the super-block's integers (sumi, and summ or the −32
 *    offset), then the same float expression.
 * R and T are compile-time constants at every call (always_inline), so the
 * accumulator arrays live in registers.
 */
#define TILE_FN AVX512 __attribute__((always_inline)) static inline

enum { TILE_RMAX = 4, TILE_TMAX = 8 };

/*
 * R rows × T tokens of F32/F16/BF16 weights (kind 0/1/2) against F32
 * activations: per pair the dot's one accumulator over 16-element steps, the
 * last one masked.
 */
TILE_FN __m512 load_w(const uint8_t *p, __mmask16 k, int kind) {
    return kind == 0 ? load_f32(p, k) : kind == 1 ? load_f16(p, k) : load_bf16(p, k);
}

TILE_FN void f_tile(const uint8_t *W, size_t rb, const uint8_t *A, size_t as, size_t n, float *Y, size_t ldy,
                    const int R, const int T, const int kind) {
    const size_t es = kind == 0 ? 4 : 2;
    __m512 acc[TILE_RMAX][TILE_TMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 w[TILE_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) w[r] = load_w(W + (size_t)r * rb + i * es, k, kind);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512 x = _mm512_maskz_loadu_ps(k, (const float *)(A + (size_t)t * as) + i);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) Y[(size_t)t * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][t]);
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
            q4_K_unpack(a + 4, u);
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
 * R rows × T tokens of Q6_K weights against Q8_K activations. Per
 * super-block and row the 6-bit quants are rebuilt once, both 128-element
 * halves side by side in a register (q_j: the dot's q1..q4), and per token
 * VPMADDUBSW (pairs <= 2·63·127) then VPDPWSSD with the 16-element groups'
 * scales gives the dot's Σ sc·Σ q·x exactly; −32·Σ sc·bsum and the float
 * step are the dot's.
 */
TILE_FN void q6k_tile(const uint8_t *W, size_t rb, const uint8_t *A, size_t as, size_t cols, float *Y, size_t ldy,
                      const int R, const int T) {
    const size_t nsb = cols / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    float sum[TILE_RMAX][TILE_TMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) sum[r][t] = 0;
    for (size_t sb = 0; sb < nsb; sb++) {
        __m512i acc[TILE_RMAX][TILE_TMAX], sc16[TILE_RMAX];
        __m256i sc8[TILE_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *a = W + (size_t)r * rb + sb * 210;
            sc8[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + 192)));
            sc16[r] = _mm512_castsi256_si512(sc8[r]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i q[TILE_RMAX], s16[TILE_RMAX];
            const __m512i idx = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(2 * j))),
                                                               _mm_set1_epi16((short)(2 * j + 1)), 1)),
                _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(8 + 2 * j))),
                                        _mm_set1_epi16((short)(9 + 2 * j)), 1),
                1);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *a = W + (size_t)r * rb + sb * 210;
                const int lj = j & 1; /* q1, q3 from ql[0..32); q2, q4 from ql[32..64) of each half */
                __m512i l = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 32 * lj))),
                                               _mm256_loadu_si256((const __m256i *)(a + 64 + 32 * lj)), 1);
                __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 128))),
                                                _mm256_loadu_si256((const __m256i *)(a + 160)), 1);
                __m512i lo = j < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
                __m512i hi;
                if (j == 0) hi = _mm512_slli_epi16(_mm512_and_si512(hb, _mm512_set1_epi8(0x03)), 4);
                else if (j == 1) hi = _mm512_slli_epi16(_mm512_and_si512(hb, _mm512_set1_epi8(0x0C)), 2);
                else if (j == 2) hi = _mm512_and_si512(hb, _mm512_set1_epi8(0x30));
                else hi = _mm512_srli_epi16(_mm512_and_si512(hb, _mm512_set1_epi8((char)0xC0)), 2);
                q[r] = _mm512_or_si512(lo, hi);
                s16[r] = _mm512_permutexvar_epi16(idx, sc16[r]);
            }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const uint8_t *x = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES + 4 + 32 * j;
                __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x)),
                                                _mm256_loadu_si256((const __m256i *)(x + 128)), 1);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
                    acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_maddubs_epi16(q[r], xv), s16[r]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES;
            float dx;
            memcpy(&dx, xb, 4);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(xb + 260));
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                int off = hsum256_epi32(_mm256_madd_epi16(sc8[r], bs));
                int sumi = _mm512_reduce_add_epi32(acc[r][t]) - 32 * off;
                sum[r][t] += f16_at(W + (size_t)r * rb + sb * 210 + 208) * dx * (float)sumi;
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


/* Fewer tokens than FP_MIN_TOK (below): the dot's arithmetic, 4 rows × 6 tokens per tile. */
#define F32_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 0)
#define F16_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 1)
#define BF16_TILE(W, rb, A, as, cols, Y, ldy, R, T) f_tile(W, rb, A, as, cols, Y, ldy, R, T, 2)
DEFINE_MM(mm_f32_dots, F32_TILE, 4, 6)
DEFINE_MM(mm_f16_dots, F16_TILE, 4, 6)
DEFINE_MM(mm_bf16_dots, BF16_TILE, 4, 6)
DEFINE_MM(mm_q4_K_avx512, q4k_tile, 2, 4)
DEFINE_MM(mm_q6_K_avx512, q6k_tile, 2, 4)

/* ---- float weights, several tokens ------------------------------------------------------
 *
 * Prefill with F32/F16/BF16 weights is compute bound, so the rows go along
 * the lanes and no horizontal sums are needed: each group of 32 rows is
 * widened to F32 once per call into a panel P[k][32] (scratch memory, in L2),
 * and a tile of 32 rows × FP_TOK tokens keeps 2·FP_TOK 16-lane accumulators
 * in registers; per column k it loads the panel's two vectors and broadcasts
 * each token's x[k] into two FMAs. Per (row, token) that is one float chain
 * acc = fma(w_k, x_k, acc) over k in order — llmops_kern_dot_f_chain's
 * arithmetic (kernels.c), which the tests hold these tiles to bit for bit.
 * Under FP_MIN_TOK tokens (decode, short prompts) the widening does not pay
 * for itself: those stay with the dot (single thread, 1536 × 576 weights hot
 * in L3, GFLOP/s dots/chain: 2 tokens 66/24, 8 tokens 78/53, 16 tokens
 * 82/71, 20 tokens 81/83, 28 tokens 82/89, 512 tokens 79/103).
 */
enum { FP_ROWS = 32, FP_TOK = 12, FP_MIN_TOK = 20 };

/* v[c] = column c of the 16 × 16 floats whose row i is v[i] (four rounds of shuffles). */
TILE_FN void transpose16x16(__m512 *v) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    /* u[4i + j], 128-bit lane L: column 4L + j of rows 4i..4i+3 */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512 s1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), s2 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        const __m512 s3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), s4 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        v[j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
        v[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
        v[4 + j] = _mm512_shuffle_f32x4(s2, s4, 0x88);
        v[12 + j] = _mm512_shuffle_f32x4(s2, s4, 0xDD);
    }
}

/*
 * P[k·32 + i] = row i of W, column k, as a float, for k < n and i < 32 (rows
 * past nr, 1..32, repeat the last; with nr <= 16 only i < 16 is written):
 * 16 rows × 16 columns at a time, widened, then transposed in registers.
 */
TILE_FN void f_pack32(const uint8_t *W, size_t rb, size_t nr, size_t n, float *P, const int kind) {
    const size_t es = kind == 0 ? 4 : 2;
    for (size_t h = 0; h < (nr > 16 ? 2u : 1u); h++) {
        const uint8_t *row[16];
        for (size_t i = 0; i < 16; i++) row[i] = W + (16 * h + i < nr ? 16 * h + i : nr - 1) * rb;
        for (size_t c = 0; c < n; c += 16) {
            const size_t left = n - c;
            const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 v[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) v[i] = load_w(row[i] + c * es, k, kind);
            transpose16x16(v);
            float *pc = P + c * FP_ROWS + 16 * h;
            if (left >= 16) {
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++) _mm512_store_ps(pc + (size_t)j * FP_ROWS, v[j]);
            } else {
                for (size_t j = 0; j < left; j++) _mm512_store_ps(pc + j * FP_ROWS, v[j]);
            }
        }
    }
}

/* RV (1..2) row vectors of the panel × T tokens; Y[t·ldy + 16v + i] for the lanes i in m[v]. */
TILE_FN void f_ptile(const float *P, size_t n, const uint8_t *A, size_t as, float *Y, size_t ldy, __mmask16 m0,
                     __mmask16 m1, const int RV, const int T) {
    __m512 acc[2][FP_TOK];
    const float *x[FP_TOK];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
        x[t] = (const float *)(const void *)(A + (size_t)t * as);
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (size_t k = 0; k < n; k++) {
        const __m512 w0 = _mm512_load_ps(P + k * FP_ROWS);
        const __m512 w1 = RV > 1 ? _mm512_load_ps(P + k * FP_ROWS + 16) : w0;
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m512 xb = _mm512_set1_ps(x[t][k]);
            acc[0][t] = _mm512_fmadd_ps(w0, xb, acc[0][t]);
            if (RV > 1) acc[1][t] = _mm512_fmadd_ps(w1, xb, acc[1][t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
        _mm512_mask_storeu_ps(Y + (size_t)t * ldy, m0, acc[0][t]);
        if (RV > 1) _mm512_mask_storeu_ps(Y + (size_t)t * ldy + 16, m1, acc[1][t]);
    }
}

/*
 * All tokens against one panel: full tiles, then the rest as 8 + 4 + 2 + 1.
 * Between full tiles, the bytes [pf, pf + pf_len) (the next panel's rows,
 * contiguous in W) are prefetched into L2 a share at a time, so that
 * widening the next panel does not wait on memory.
 */
TILE_FN void f_ptiles(const float *P, size_t n, const uint8_t *A, size_t as, size_t nt, float *Y, size_t ldy,
                      __mmask16 m0, __mmask16 m1, const uint8_t *pf, size_t pf_len, const int RV) {
    const size_t n_full = nt / FP_TOK, share = n_full ? (pf_len / n_full + 64) & ~(size_t)63 : 0;
    size_t t = 0, done = 0;
    for (; t + FP_TOK <= nt; t += FP_TOK) {
        for (size_t e = done + share; done < pf_len && done < e; done += 64) _mm_prefetch((const char *)(pf + done), _MM_HINT_T1);
        f_ptile(P, n, A + t * as, as, Y + t * ldy, ldy, m0, m1, RV, FP_TOK);
    }
    if (nt - t >= 8) f_ptile(P, n, A + t * as, as, Y + t * ldy, ldy, m0, m1, RV, 8), t += 8;
    if (nt - t >= 4) f_ptile(P, n, A + t * as, as, Y + t * ldy, ldy, m0, m1, RV, 4), t += 4;
    if (nt - t >= 2) f_ptile(P, n, A + t * as, as, Y + t * ldy, ldy, m0, m1, RV, 2), t += 2;
    if (nt - t >= 1) f_ptile(P, n, A + t * as, as, Y + t * ldy, ldy, m0, m1, RV, 1);
}

/*
 * Fewer than FP_MIN_TOK tokens: the dot per pair (the 4 × 6 tiles), since
 * widening the panels would cost more than it saves. More: each group of 32
 * rows widened once and run over every token.
 */
TILE_FN void f_mm(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt, size_t cols,
                  float *Y, size_t ldy, const int kind) {
    if (nt < FP_MIN_TOK) {
        if (kind == 0) mm_f32_dots(W, rb, nr, act, as, nt, cols, Y, ldy);
        else if (kind == 1) mm_f16_dots(W, rb, nr, act, as, nt, cols, Y, ldy);
        else mm_bf16_dots(W, rb, nr, act, as, nt, cols, Y, ldy);
        return;
    }
    static const int types[3] = {LLMOPS_DTYPE_F32, LLMOPS_DTYPE_F16, LLMOPS_DTYPE_BF16};
    float *P = (float *)(void *)llmops_kern_scratch(cols * FP_ROWS * sizeof(float));
    for (size_t r = 0; r < nr; r += FP_ROWS) {
        const size_t k = nr - r < FP_ROWS ? nr - r : FP_ROWS;
        if (!P) { /* no scratch memory: the same arithmetic, pair by pair */
            for (size_t i = 0; i < k; i++)
                for (size_t t = 0; t < nt; t++)
                    Y[t * ldy + r + i] = llmops_kern_dot_f_chain(types[kind], W + (r + i) * rb,
                                                                 (const float *)(const void *)(act + t * as), cols);
            continue;
        }
        f_pack32(W + r * rb, rb, k, cols, P, kind);
        const __mmask16 m0 = k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << k) - 1);
        const __mmask16 m1 = k >= 32 ? (__mmask16)0xFFFF : k > 16 ? (__mmask16)((1u << (k - 16)) - 1) : 0;
        const size_t next = nr - r - k < FP_ROWS ? nr - r - k : FP_ROWS; /* rows in the next panel */
        const uint8_t *pf = W + (r + k) * rb;
        if (k > 16) f_ptiles(P, cols, act, as, nt, Y + r, ldy, m0, m1, pf, next * rb, 2);
        else f_ptiles(P, cols, act, as, nt, Y + r, ldy, m0, m1, pf, next * rb, 1);
    }
}

AVX512 static void mm_f32_avx512(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                                 size_t cols, float *Y, size_t ldy) {
    f_mm(W, rb, nr, act, as, nt, cols, Y, ldy, 0);
}

AVX512 static void mm_f16_avx512(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                                 size_t cols, float *Y, size_t ldy) {
    f_mm(W, rb, nr, act, as, nt, cols, Y, ldy, 1);
}

AVX512 static void mm_bf16_avx512(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                                  size_t cols, float *Y, size_t ldy) {
    f_mm(W, rb, nr, act, as, nt, cols, Y, ldy, 2);
}

/* ---- Q8_0 / Q4_0 products --------------------------------------------------------------
 *
 * Several tokens (prefill) are compute bound. Each group of 16 weight rows
 * is repacked once per call into [block][4-byte group][row] order, with the
 * scales widened to floats, so that lane i of a 16-lane register belongs to
 * row i: one 64-byte load then serves all 16 rows, the activations are
 * broadcast 4 bytes at a time, and a tile of 16 rows × Q8_TOK tokens keeps
 * its 16-lane running sums in registers, each weight register used for
 * every token of the tile. The per-block float step of the scalar
 * reference, sum = sum + (d_w·d_x)·isum, runs for 16 rows at once, so every
 * result equals the scalar one bit for bit. The weights are the unsigned
 * operand of VPDPBUSD (Q8_0 quants + 128, Q4_0 nibbles as stored); the Q8S
 * activations carry the matching corrections −128·Σx and −8·Σx per block,
 * so the integer sums are exact.
 *
 * One token (decode) is memory bound and reads the weights where they lie,
 * row by row (q8s_rows_dot).
 */
enum { Q8_TOK = 16, Q8_PACK_BLOCK = 9 * 64 }; /* packed block: 8 × 64 bytes of quants, 16 float scales */

/*
 * Where the f16 scales of 16 consecutive blocks sit among 16-bit words: word
 * 17k (Q8_0, 34-byte blocks) or 9k (Q4_0, 18 bytes), gathered from 128-byte
 * windows m by VPERMT2W with these indices into result lanes k (SCALE_PICK).
 */
static const uint16_t SCALE_IDX17[4][32] = {
    {0, 17, 34, 51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 4, 21, 38, 55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 8, 25, 42, 59, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 29, 46, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
static const uint16_t SCALE_IDX9[3][32] = {
    {0, 9, 18, 27, 36, 45, 54, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 8, 17, 26, 35, 44, 53, 62, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
static const uint32_t SCALE_PICK17[4] = {0xf, 0xf0, 0xf00, 0xf000};
static const uint32_t SCALE_PICK9[3] = {0xff, 0x7f00, 0x8000};

/*
 * The 16 products d_w·d_x of blocks b0..b0+kb−1 of one row (kb <= 16; lanes
 * past kb zero): the f16 scales are words 17k (Q8_0) or 9k (Q4_0) of the
 * run of blocks, picked out of 128-byte windows by VPERMT2W; loads stop at
 * the run's last byte.
 */
TILE_FN __m512 q8s_scales16(const uint8_t *a, const float *dx, unsigned kb, const int q4) {
    const unsigned sw = q4 ? 9 : 17, valid = kb * 2 * sw;
    const __mmask16 km = (__mmask16)((1u << kb) - 1);
    __m512i hw = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (unsigned m = 0; m < 4; m++) {
        if (q4 && m == 3) break;
        const unsigned o = 128 * m;
        unsigned left = valid > o ? valid - o : 0;
        __mmask64 ml = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        __mmask64 mh = left >= 128 ? ~(__mmask64)0 : left <= 64 ? 0 : (((__mmask64)1 << (left - 64)) - 1);
        __m512i lo = _mm512_maskz_loadu_epi8(ml, a + o), hi = _mm512_maskz_loadu_epi8(mh, a + o + 64);
        const __m512i idx = _mm512_loadu_si512((const void *)(q4 ? SCALE_IDX9[m] : SCALE_IDX17[m]));
        hw = _mm512_mask_mov_epi16(hw, q4 ? SCALE_PICK9[m] : SCALE_PICK17[m], _mm512_permutex2var_epi16(lo, idx, hi));
    }
    return _mm512_mul_ps(_mm512_maskz_cvtph_ps(km, _mm512_castsi512_si256(hw)), _mm512_maskz_loadu_ps(km, dx));
}

/*
 * One row · one Q8S vector, for decoding: memory bound, so it reads the row
 * front to back with as few instructions per block as it can. Two blocks
 * share a 512-bit VPDPBUSD (the weights as unsigned: Q8_0 quants + 128, Q4_0
 * nibbles), one FMA scales both by their products d_w·d_x, formed 16 blocks
 * at a time; the offsets' terms (−128·Σx or −8·Σx per block) are scaled and
 * summed apart, 16 blocks per FMA. The float sums are grouped differently
 * from the reference, so the result is within the tolerance of kernels.h,
 * not bit for bit the tiles' (unlike every other product of this file).
 */
TILE_FN __m512i q8s_row_pair(const uint8_t *ab, unsigned p, int two, const int q4) {
    __m512i w;
    if (!q4) {
        w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(ab + 68 * p + 2))),
                               _mm256_maskz_loadu_epi8(two ? ~(__mmask32)0 : 0, ab + 68 * p + 36), 1);
        return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
    }
    __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ab + 36 * p + 2)));
    __m256i hi = _mm256_broadcastsi128_si256(_mm_maskz_loadu_epi8(two ? (__mmask16)0xFFFF : 0, ab + 36 * p + 20));
    w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_and_si512(_mm512_mask_srli_epi16(w, (__mmask32)0xFF00FF00u, w, 4), _mm512_set1_epi8(0x0F));
}

/*
 * R rows (1..4, rb bytes apart) side by side over a run of 16 blocks: their
 * products as one vector per row, the offsets' terms in one FMA; the
 * activations are loaded once for the R rows, and the rows' independent
 * sums keep the FMA units busy.
 */
TILE_FN void q8s_rows_run16(const uint8_t *ab, size_t rb, const uint8_t *xb, const uint8_t *x4, const float *dx,
                            const int32_t *cr, __m512 *acc0, __m512 *acc1, const int R, const int q4) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512 corr = _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)cr));
    __m512 s16[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        s16[r] = q8s_scales16(ab + (size_t)r * rb, dx, 16, q4);
        acc1[r] = _mm512_fmadd_ps(s16[r], corr, acc1[r]);
    }
    if (q4) { /* four blocks per register: their nibbles against the nibble-order copy x4 */
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
#pragma GCC unroll 4
        for (unsigned g = 0; g < 4; g++) {
            const __m512i xl = _mm512_loadu_si512((const void *)(x4 + 128 * g));
            const __m512i xh = _mm512_loadu_si512((const void *)(x4 + 128 * g + 64));
            const __m512i idx = _mm512_add_epi32(quarter, _mm512_set1_epi32((int)(4 * g)));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *q = ab + (size_t)r * rb + 72 * g + 2;
                __m512i raw = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
                raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(q + 18)), 1);
                raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(q + 36)), 2);
                raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(q + 54)), 3);
                __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
                __m512 v = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xl), hi, xh));
                __m512 sc = _mm512_permutexvar_ps(idx, s16[r]);
                if (g & 1) acc1[r] = _mm512_fmadd_ps(v, sc, acc1[r]);
                else acc0[r] = _mm512_fmadd_ps(v, sc, acc0[r]);
            }
        }
        return;
    }
#pragma GCC unroll 8
    for (unsigned p = 0; p < 8; p++) {
        const __m512i x = _mm512_loadu_si512((const void *)(xb + 64 * p));
        const __m512i idx = _mm512_add_epi32(half, _mm512_set1_epi32((int)(2 * p)));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 sc = _mm512_permutexvar_ps(idx, s16[r]);
            __m512 v = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, q8s_row_pair(ab + (size_t)r * rb, p, 1, q4), x));
            if (p & 1) acc1[r] = _mm512_fmadd_ps(v, sc, acc1[r]);
            else acc0[r] = _mm512_fmadd_ps(v, sc, acc0[r]);
        }
    }
}

/*
 * The last kb < 16 blocks, inline and a group at a time (Q4_0: four blocks per
 * register, against x4, which is zero past the vector's last block; Q8_0: two):
 * the group's products d_w·d_x from its f16 scales in one 128-bit vector, the
 * offsets' terms added with one 128-bit FMA.
 */
TILE_FN void q8s_row_tail(const uint8_t *ab, const uint8_t *xb, const uint8_t *x4, const float *dx, const int32_t *cr,
                          unsigned kb, __m512 *acc0, const int q4) {
    const __m512i zero = _mm512_setzero_si512();
    const unsigned bs = q4 ? 18 : 34, per = q4 ? 4 : 2;
    for (unsigned b = 0; b < kb; b += per) {
        const unsigned left = kb - b < per ? kb - b : per;
        const __mmask8 km = (__mmask8)((1u << left) - 1);
        uint16_t h[4] = {0, 0, 0, 0};
        for (unsigned j = 0; j < left; j++) memcpy(&h[j], ab + bs * (b + j), 2);
        __m128 s4 = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)h)),
                               _mm_maskz_loadu_ps(km, dx + b));
        __m128 c4 = _mm_mul_ps(s4, _mm_cvtepi32_ps(_mm_maskz_loadu_epi32(km, cr + b)));
        *acc0 = _mm512_add_ps(*acc0, _mm512_zextps128_ps512(c4));
        __m512i v;
        __m512 sc;
        if (q4) {
            const uint8_t *q = ab + bs * b + 2;
            __m512i raw = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
            raw = _mm512_inserti32x4(raw, _mm_maskz_loadu_epi8(left > 1 ? (__mmask16)0xFFFF : 0, q + 18), 1);
            raw = _mm512_inserti32x4(raw, _mm_maskz_loadu_epi8(left > 2 ? (__mmask16)0xFFFF : 0, q + 36), 2);
            raw = _mm512_inserti32x4(raw, _mm_maskz_loadu_epi8(left > 3 ? (__mmask16)0xFFFF : 0, q + 54), 3);
            const __m512i m4 = _mm512_set1_epi8(0x0F);
            __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            const __m512i xl = _mm512_loadu_si512((const void *)(x4 + 32 * b)), xh = _mm512_loadu_si512((const void *)(x4 + 32 * b + 64));
            v = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xl), hi, xh);
            sc = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                       _mm512_castps128_ps512(s4));
        } else {
            const int two = left > 1;
            __m512i x = _mm512_maskz_loadu_epi8(two ? ~(__mmask64)0 : 0xFFFFFFFFu, xb + 32 * b);
            v = _mm512_dpbusd_epi32(zero, q8s_row_pair(ab + bs * b, 0, two, 0), x);
            sc = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                       _mm512_castps128_ps512(s4));
        }
        *acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, *acc0);
    }
}

/* y[r] = row r · the Q8S vector A for r < R (1..4), the rows rb bytes apart. */
TILE_FN void q8s_rows_dot(const uint8_t *a, size_t rb, const uint8_t *A, size_t cols, float *y, const int R,
                          const int q4) {
    const size_t nb = cols / 32, bs = q4 ? 18 : 34;
    const float *dx = (const float *)(const void *)(A + cols);
    const int32_t *cr = (const int32_t *)(const void *)(A + cols + (q4 ? 8 : 4) * nb);
    __m512 acc0[4], acc1[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    size_t b0 = 0;
    const uint8_t *x4 = A + cols + 12 * nb;
    for (; b0 + 16 <= nb; b0 += 16)
        q8s_rows_run16(a + b0 * bs, rb, A + 32 * b0, x4 + 4 * b0 * 8, dx + b0, cr + b0, acc0, acc1, R, q4);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        if (b0 < nb)
            q8s_row_tail(a + (size_t)r * rb + b0 * bs, A + 32 * b0, x4 + 32 * b0, dx + b0, cr + b0, (unsigned)(nb - b0),
                         &acc0[r], q4);
        __m512 t = _mm512_add_ps(acc0[r], acc1[r]);
        y[r] = hsum256_ps(_mm256_add_ps(_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))));
    }
}

/*
 * Repacks nr (1..16) rows into P: per block, eight 64-byte groups (group g:
 * bytes 4g..4g+3 of each row's 32 unsigned quants, row i at 4i), then the 16
 * scales as floats. Rows past nr repeat the last one.
 */
AVX512 static void q8s_pack16(const uint8_t *W, size_t rb, size_t nr, size_t nb, uint8_t *P, const int q4) {
    const size_t bs = q4 ? 18 : 34;
    int off[16];
    for (int i = 0; i < 16; i++) off[i] = (int)(((size_t)i < nr ? (size_t)i : nr - 1) * rb);
    const __m512i gidx = _mm512_loadu_si512((const void *)off);
    const __m512i m4 = _mm512_set1_epi32(0x0F0F0F0F), flip = _mm512_set1_epi32((int)0x80808080u);
    for (size_t b = 0; b < nb; b++, P += Q8_PACK_BLOCK) {
        const uint8_t *wb = W + b * bs + 2;
        if (!q4) {
            /* z[i] = rows i and i + 8 (8 dwords each); an 8 × 8 dword transposition in each half */
            __m512i z[8], t[8], u[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(wb + off[i]))),
                                          _mm256_loadu_si256((const __m256i *)(wb + off[i + 8])), 1);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                t[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
            }
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) { /* rows 4h..4h+3 of each half */
                u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
            }
            /* u[j] chunk 2h + c: dword 4c + j of rows 8h..8h+3; u[4 + j]: of rows 8h+4..8h+7 */
#pragma GCC unroll 2
            for (int c = 0; c < 2; c++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const __m512i idx = _mm512_setr_epi64(2 * c, 2 * c + 1, 8 + 2 * c, 9 + 2 * c, 4 + 2 * c, 5 + 2 * c,
                                                          12 + 2 * c, 13 + 2 * c);
                    __m512i g = _mm512_permutex2var_epi64(u[j], idx, u[4 + j]);
                    _mm512_store_si512((void *)(P + 64 * (4 * c + j)), _mm512_xor_si512(g, flip));
                }
        } else {
            /* z[i] = rows i, i + 4, i + 8, i + 12 (4 packed dwords each); a 4 × 4 transposition per chunk */
            __m512i z[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(wb + off[i])));
                v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(wb + off[i + 4])), 1);
                v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(wb + off[i + 8])), 2);
                z[i] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(wb + off[i + 12])), 3);
            }
            __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
            __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
            __m512i u[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                            _mm512_unpackhi_epi64(t1, t3)};
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) { /* u[g]: packed dword g of the 16 rows, row i in lane i */
                _mm512_store_si512((void *)(P + 64 * g), _mm512_and_si512(u[g], m4));
                _mm512_store_si512((void *)(P + 64 * (g + 4)), _mm512_and_si512(_mm512_srli_epi32(u[g], 4), m4));
            }
        }
        __m512i dwi = _mm512_i32gather_epi32(gidx, (const void *)(wb - 2), 1);
        _mm512_store_ps((void *)(P + 512), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dwi)));
    }
}

/* T tokens (1..Q8_TOK) against one packed row group; Y[t·ldy + i] for the rows in mask m. */
TILE_FN void q8s_tile(const uint8_t *P, size_t nb, const uint8_t *A, size_t as, size_t cols, float *Y, size_t ldy,
                      __mmask16 m, const int T, const int q4) {
    const size_t coff = cols + (q4 ? 8 : 4) * nb;
    __m512 F[Q8_TOK];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) F[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++, P += Q8_PACK_BLOCK) {
        __m512i w[8];
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) w[g] = _mm512_load_si512((const void *)(P + 64 * g));
        const __m512 dw = _mm512_load_ps((const void *)(P + 512));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const uint8_t *x = A + (size_t)t * as;
            int32_t c, xg[8];
            float dx;
            memcpy(&c, x + coff + 4 * b, 4);
            memcpy(&dx, x + cols + 4 * b, 4);
            memcpy(xg, x + 32 * b, 32);
            __m512i acc = _mm512_set1_epi32(c);
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) acc = _mm512_dpbusd_epi32(acc, w[g], _mm512_set1_epi32(xg[g]));
            F[t] = _mm512_add_ps(F[t], _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(acc)));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(Y + (size_t)t * ldy, m, F[t]);
}

/* All tokens against one packed row group: full tiles, then the rest as 8 + 4 + 2 + 1. */
TILE_FN void q8s_tiles(const uint8_t *P, size_t nb, const uint8_t *A, size_t as, size_t nt, size_t cols, float *Y,
                       size_t ldy, __mmask16 m, const int q4) {
    size_t t = 0;
    for (; t + Q8_TOK <= nt; t += Q8_TOK) q8s_tile(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, m, Q8_TOK, q4);
    if (nt - t >= 8) q8s_tile(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, m, 8, q4), t += 8;
    if (nt - t >= 4) q8s_tile(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, m, 4, q4), t += 4;
    if (nt - t >= 2) q8s_tile(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, m, 2, q4), t += 2;
    if (nt - t >= 1) q8s_tile(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, m, 1, q4);
}

/* The scalar reference's arithmetic on Q8S activations, one (row, token) pair: the tiles' result. */
AVX512 static float q8s_dot_exact(const uint8_t *a, const uint8_t *A, size_t cols, const int q4) {
    const size_t nb = cols / 32;
    const uint8_t *corr = A + cols + (q4 ? 8 : 4) * nb;
    float sum = 0;
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *wb = a + b * (q4 ? 18 : 34);
        __m256i w = q4 ? unpack_nibbles(wb + 2)
                       : _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 2)), _mm256_set1_epi8((char)0x80));
        int32_t c;
        float dx;
        memcpy(&c, corr + 4 * b, 4);
        memcpy(&dx, A + cols + 4 * b, 4);
        int isum = hsum256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w,
                                                     _mm256_loadu_si256((const __m256i *)(A + 32 * b)))) + c;
        sum += f16_at(wb) * dx * (float)isum;
    }
    return sum;
}

/*
 * How far ahead of the row it reads one-token products prefetch the weights, for rows of at most
 * Q8S_PREFETCH_ROW bytes: on short rows (SmolLM's 576 columns) the hardware prefetcher starts late at each
 * row chunk and decode stalled on those lines; on long rows (TinyLlama's 2048 columns) it keeps up, and
 * the extra prefetches cost CPU time instead (Q8_0: 70 -> 85 ms of CPU per token on 2 threads).
 * The streams (qs_prefetch) prefetch twice: into L1 Q8S_PREFETCH ahead and into L2 (T1)
 * Q8S_PREFETCH_FAR ahead. With the weights in huge pages, one L1 prefetch 4 KiB ahead kept too few
 * lines in flight to hide the kernel's arithmetic: SmolLM decoding, medians of 8-10 alternating
 * rounds, Q4_0 1.09-1.16x and Q8_0 1.02-1.03x for 1 KiB + 8 KiB against 4 KiB alone (T1 alone 8 KiB
 * ahead 1.07-1.09x, 1 KiB + 16 KiB 1.06x, 2 KiB + 8 KiB 1.13x).
 */
enum { Q8S_PREFETCH = 1024, Q8S_PREFETCH_FAR = 8192, Q8S_PREFETCH_ROW = 1024 };

/*
 * One token on short rows (16 < nb <= QS_NB_MAX blocks). Row by row, a row
 * whose block count is not a multiple of 16 (SmolLM's 576 columns: 18 blocks)
 * ends in a short run (q8s_row_tail), and with its horizontal sum that costs
 * about as much as its full run. The rows of a call are instead one stream
 * of nr·nb blocks (rows are contiguous: row_bytes = nb blocks), read in full
 * runs of 16 blocks whatever the row boundaries (nb > 16: at most one inside
 * a run); only the call's last run is short. Block p of the run at stream
 * block S meets activation block (S + p) mod nb: a copy of the activations
 * followed by their first 16 blocks again (qs_act, on the stack: QS_NB_MAX
 * bounds nb) makes those 16 contiguous. Q8_0 takes it where nb % 16 != 0 (elsewhere it measured no
 * faster). Q4_0 with VBMI takes it there and where nb <= QS_Q4_WHOLE_MAX
 * (SmolLM's 1536 columns): its per-block sums and 16 rows' horizontal sums
 * at once beat q4_row_dot_vbmi on whole runs too while the weights come from
 * the caches (576x1536 L2-resident, 1 thread: 26 -> 36 GB/s), but on
 * TinyLlama's 2048 and 5632 columns decoding from DRAM measured some 10%
 * slower (2 threads: 34-38 against 41-45 tokens/s).
 *
 * Per block the exact integer sum (its 32-bit lanes added up, the offset's
 * term added), then one FMA by d_w·d_x into the accumulator of the block's
 * row, lane = the block's place in its run; a row's lanes end where the next
 * row's begin (masks). A row's result must not depend on where its call
 * starts (the threads split the rows): its first block lands in lane
 * ρ = (its first stream block) mod 16 and its block j in lane (ρ + j) mod 16,
 * each lane's blocks added in row order from zero, so its accumulator is the
 * same for every ρ but rotated by ρ lanes, and the horizontal sum (qs_hsum16)
 * does not see rotations. Within kernels.h's tolerance, not the tiles' bits.
 */
enum { QS_NB_MAX = 256, QS_Q4_WHOLE_MAX = 48 };

/* A stream's activations, blocks 0 .. nb − 1 then 0 .. 15 again: quants (Q8_0: 32 bytes per
 * block; Q4_0: the first 16 of every block, then from a->q + 32·nb the last 16), scales, offset terms. */
typedef struct qs_act {
    _Alignas(64) uint8_t q[2 * QS_NB_MAX * 32];
    float dx[2 * QS_NB_MAX];
    int32_t cr[2 * QS_NB_MAX];
} qs_act;

static inline void qs_act_fill(qs_act *a, const uint8_t *act, size_t nb, int q4) {
    /*
     * Blocks nb .. nb + 15 repeat 0 .. 15 (a run starts at a block below nb; nb > 16). The fill is part
     * of every call, and calls of 16 rows spent a fifth of their time in it block by block: here in
     * copies of 64 bytes, each running past its region's end into the repeat, which comes after (the
     * reads past a region stay inside the prepared vector) and copies from the prepared vector, not
     * from the stores just made, which would stall its loads.
     */
    const size_t cols = 32 * nb;
    if (q4) { /* x4 holds the first and last 16 bytes of four blocks in turn: 64 of one, 64 of the other */
        const uint8_t *x4 = act + cols + 12 * nb;
        uint8_t *lo = a->q, *hi = a->q + 32 * nb;
        for (size_t g = 0; g < (nb + 3) / 4; g++) memcpy(lo + 64 * g, x4 + 128 * g, 64), memcpy(hi + 64 * g, x4 + 128 * g + 64, 64);
        for (size_t g = 0; g < 4; g++)
            memcpy(lo + 16 * nb + 64 * g, x4 + 128 * g, 64), memcpy(hi + 16 * nb + 64 * g, x4 + 128 * g + 64, 64);
    } else {
        for (size_t k = 0; k < cols; k += 64) memcpy(a->q + k, act + k, 64);
        for (size_t k = 0; k < 512; k += 64) memcpy(a->q + cols + k, act + k, 64);
    }
    const uint8_t *dx = act + cols, *cr = act + cols + (q4 ? 8 : 4) * nb;
    for (size_t k = 0; k < nb; k += 16) memcpy(a->dx + k, dx + 4 * k, 64), memcpy(a->cr + k, cr + 4 * k, 64);
    memcpy(a->dx + nb, dx, 64), memcpy(a->cr + nb, cr, 64);
}

/* The sums of 16 finished rows' accumulators a[r], row r's in lane r (the same bits for every rotation). */
TILE_FN __m512 qs_hsum16(const __m512 a[16]) { return lanes16(a, LANES_ADD); }

/*
 * The lines of the bytes Q8S_PREFETCH past a run of n bytes at ab (as q8s_mm,
 * on rows of at most Q8S_PREFETCH_ROW bytes) into L1, and of those
 * Q8S_PREFETCH_FAR past it into L2: a line every 64 bytes from its start
 * covers them but for the one of its last n % 64 bytes, which the next run's
 * first covers. Prefetches past the weights' end do nothing (they do not
 * fault); the addresses are formed as integers, not pointers past them.
 */
TILE_FN void qs_prefetch(const uint8_t *ab, unsigned n) {
    const uintptr_t at = (uintptr_t)ab + Q8S_PREFETCH, far = (uintptr_t)ab + Q8S_PREFETCH_FAR;
#pragma GCC unroll 9
    for (unsigned k = 0; k < n; k += 64) _mm_prefetch((const char *)(at + k), _MM_HINT_T0);
#pragma GCC unroll 9
    for (unsigned k = 0; k < n; k += 64) _mm_prefetch((const char *)(far + k), _MM_HINT_T1);
}

/* Before the first run: the first Q8S_PREFETCH of the call's `bytes`, which no run prefetches (as q8s_mm's
 * first row does). */
TILE_FN void qs_prefetch_start(const uint8_t *W, size_t bytes) {
    for (size_t k = 0; k < Q8S_PREFETCH && k < bytes; k += 64) _mm_prefetch((const char *)(W + k), _MM_HINT_T0);
}

/* The rows of a stream: the current row's accumulator, where it ends (stream block), finished rows. */
typedef struct qs_rows {
    __m512 acc, fin[16];
    size_t nb, row_end, y; /* y: the first finished row not yet stored */
    unsigned nf;
} qs_rows;

/* fin is left as it is: zeroing it (an initializer) and returning the struct cost 13% of a call of 16 rows */
TILE_FN void qs_rows_init(qs_rows *r, size_t nb) {
    r->acc = _mm512_setzero_ps();
    r->nb = nb, r->row_end = nb, r->y = 0, r->nf = 0;
}

/* The run at stream block S: its blocks' integer sums xi (as floats) times their d_w·d_x (sc). */
TILE_FN void qs_rows_run(qs_rows *r, __m512 xi, __m512 sc, size_t S, float *Y) {
    if (r->row_end >= S + 16) {
        r->acc = _mm512_fmadd_ps(xi, sc, r->acc);
        if (r->row_end == S + 16) r->fin[r->nf++] = r->acc, r->acc = _mm512_setzero_ps(), r->row_end += r->nb;
    } else { /* the row ends at run block row_end − S; the next begins there */
        const __mmask16 mine = (__mmask16)((1u << (r->row_end - S)) - 1);
        r->fin[r->nf++] = _mm512_mask3_fmadd_ps(xi, sc, r->acc, mine);
        r->acc = _mm512_maskz_fmadd_ps((__mmask16)~mine, xi, sc, _mm512_setzero_ps());
        r->row_end += r->nb;
    }
    if (r->nf == 16) _mm512_storeu_ps(Y + r->y, qs_hsum16(r->fin)), r->y += 16, r->nf = 0;
}

TILE_FN void qs_rows_end(qs_rows *r, float *Y) {
    if (!r->nf) return;
    for (unsigned i = r->nf; i < 16; i++) r->fin[i] = _mm512_setzero_ps();
    _mm512_mask_storeu_ps(Y + r->y, (__mmask16)((1u << r->nf) - 1), qs_hsum16(r->fin));
}

/*
 * The stream for Q8_0: 16 blocks' (at ab, 544 bytes) exact integer sums
 * Σ((q_w + 128)·x) − 128·Σx, block p in lane p. Two blocks per VPDPBUSD as in
 * q8s_rows_run16; their eight 32-bit partial sums each (|·| up to 4·255·128:
 * no room to pack them to 16 bits) added across the eight registers.
 */
TILE_FN __m512i q8_isum16(const uint8_t *ab, const uint8_t *xq, const int32_t *cr) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i p[8], c[4], e[2];
#pragma GCC unroll 8
    for (unsigned k = 0; k < 8; k++)
        p[k] = _mm512_dpbusd_epi32(zero, q8s_row_pair(ab, k, 1, 0), _mm512_loadu_si512((const void *)(xq + 64 * k)));
    /* p[k]: block 2k in lanes 0..7, 2k + 1 in 8..15. Pairs of neighbours: 128-bit lane i of c[j]
     * holds (p[2j] lanes 4i, 4i + 1), (p[2j + 1] 4i, 4i + 1), (p[2j] 4i + 2, 4i + 3), (p[2j + 1] 4i + 2, 4i + 3) */
#pragma GCC unroll 4
    for (unsigned j = 0; j < 4; j++)
        c[j] = _mm512_add_epi32(_mm512_mask_shuffle_epi32(p[2 * j], 0xAAAA, p[2 * j + 1], _MM_PERM_CDAB),
                                _mm512_mask_shuffle_epi32(p[2 * j + 1], 0x5555, p[2 * j], _MM_PERM_CDAB));
    /* then halves of 128-bit lanes: lane 4i + m of e[j] is a half of block 2(4j + m) + (i >= 2) */
#pragma GCC unroll 2
    for (unsigned j = 0; j < 2; j++)
        e[j] = _mm512_add_epi32(_mm512_mask_shuffle_epi32(c[2 * j], 0xCCCC, c[2 * j + 1], _MM_PERM_BADC),
                                _mm512_mask_shuffle_epi32(c[2 * j + 1], 0x3333, c[2 * j], _MM_PERM_BADC));
    /* then 128-bit lanes 0 + 1 and 2 + 3: lane 4i + m is block 2m + (i & 1) + 8·(i >> 1) */
    __m512i z = _mm512_add_epi32(_mm512_shuffle_i32x4(e[0], e[1], 0x88), _mm512_shuffle_i32x4(e[0], e[1], 0xDD));
    z = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), z);
    return _mm512_add_epi32(z, _mm512_loadu_si512((const void *)cr));
}

AVX512 static void q8_mv_stream(const uint8_t *W, size_t nr, const uint8_t *act, size_t nb, float *Y) {
    qs_act a;
    qs_act_fill(&a, act, nb, 0);
    const size_t total = nr * nb, rb = 34 * nb;
    qs_rows r;
    qs_rows_init(&r, nb);
    if (rb <= Q8S_PREFETCH_ROW) qs_prefetch_start(W, nr * rb);
    for (size_t S = 0, o = 0; S < total; S += 16, o = o + 16 < nb ? o + 16 : o + 16 - nb) {
        const uint8_t *ab = W + 34 * S;
        if (rb <= Q8S_PREFETCH_ROW) qs_prefetch(ab, 544);
        _Alignas(64) uint8_t last[16 * 34];
        if (total - S < 16) { /* the call's last run: its blocks, then zeros (no reads past the weights) */
            memset(last, 0, sizeof last);
            memcpy(last, ab, 34 * (total - S));
            ab = last;
        }
        const __m512 sc = q8s_scales16(ab, a.dx + o, 16, 0);
        qs_rows_run(&r, _mm512_cvtepi32_ps(q8_isum16(ab, a.q + 32 * o, a.cr + o)), sc, S, Y);
    }
    qs_rows_end(&r, Y);
}

/*
 * One token: the stream (q8_mv_stream) or row by row (q8s_rows_dot).
 * Several: each group of 16 rows is repacked once and run against all the
 * tokens (exact; without scratch memory, one exact dot per pair).
 */
TILE_FN void q8s_mm(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt, size_t cols,
                    float *Y, size_t ldy, const int q4) {
    const size_t nb = cols / 32;
    if (nt == 1 && !q4 && nb > 16 && nb % 16 && nb <= QS_NB_MAX) {
        q8_mv_stream(W, nr, act, nb, Y);
        return;
    }
    if (nt == 1) { /* one row at a time: interleaving rows (even 4) upsets the hardware prefetcher */
        const uint8_t *pf = W, *end = W + nr * rb;
        for (size_t r = 0; r < nr; r++) {
            for (const uint8_t *stop = W + (r + 1) * rb + Q8S_PREFETCH; rb <= Q8S_PREFETCH_ROW && pf < stop && pf < end;
                 pf += 64)
                _mm_prefetch((const char *)pf, _MM_HINT_T0);
            q8s_rows_dot(W + r * rb, rb, act, cols, Y + r, 1, q4);
        }
        return;
    }
    uint8_t *P = 15 * rb < (size_t)INT32_MAX ? llmops_kern_scratch(nb * Q8_PACK_BLOCK) : NULL;
    for (size_t r = 0; r < nr; r += 16) {
        size_t k = nr - r < 16 ? nr - r : 16;
        if (!P) {
            for (size_t i = 0; i < k; i++)
                for (size_t t = 0; t < nt; t++) Y[t * ldy + r + i] = q8s_dot_exact(W + (r + i) * rb, act + t * as, cols, q4);
            continue;
        }
        q8s_pack16(W + r * rb, rb, k, nb, P, q4);
        q8s_tiles(P, nb, act, as, nt, cols, Y + r, ldy, (__mmask16)((1u << k) - 1), q4);
    }
}

/*
 * Q4_0 decode with AVX512_VBMI and GFNI (Ice Lake, Zen 4 and later; Cascade Lake has
 * VNNI without them): a run of 16 blocks (288 bytes) is read as four 64-byte
 * vectors and a 32-byte one, and each group of four blocks (bytes 72g..72g+71,
 * inside the 128-byte window at 64g) has its 64 nibble bytes picked by one
 * VPERMT2B instead of four 16-byte loads and three inserts; the scales come
 * from the same vectors, and the row's last run (fewer than 16 blocks) goes
 * the same way with masked loads rather than q8s_row_tail's group-by-group
 * scalar scale gathering: on SmolLM's 576 columns (16 + 2 blocks) that tail
 * cost about as much as the run. The per-block arithmetic is q8s_rows_dot's,
 * the float sums grouped alike but for the last run: within the tolerance of
 * kernels.h. Chosen at run time (llmops_kern_avx512_vbmi).
 */
#define AVX512VBMI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,gfni")))

/*
 * kb (1..16) blocks from ab against x4 groups xg: their products into acc0/acc1.
 * A short run (the row's last, kb < 16) loads with masks that stop at its last
 * byte; x4 is zero past the vector's last block, and so are the products.
 */
#define TILE_VBMI AVX512VBMI __attribute__((always_inline)) static inline

/*
 * The high nibble of each byte, x >> 4, in one GF2P8AFFINEQB (GFNI, which
 * every CPU with VBMI but Cannon Lake has) instead of a shift and a mask: bit
 * i of the result is bit i + 4 of x, the matrix's byte 7 − i selecting it.
 */
#define Q4_HI_NIBBLE _mm512_set1_epi64(0x1020408000000000)

/*
 * The 288 bytes of a run of kb (1..16) blocks at ab into v[0..4] (past 18·kb
 * bytes zero: the loads stop at the run's last byte), and the run's f16
 * scales as floats (lanes past kb zero).
 */
TILE_VBMI __m512 q4_load_run(const uint8_t *ab, unsigned kb, __m512i v[5]) {
    __mmask16 km = 0xFFFF;
    if (kb == 16) {
        v[0] = _mm512_loadu_si512((const void *)ab), v[1] = _mm512_loadu_si512((const void *)(ab + 64));
        v[2] = _mm512_loadu_si512((const void *)(ab + 128)), v[3] = _mm512_loadu_si512((const void *)(ab + 192));
        v[4] = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(ab + 256)));
    } else {
        const unsigned len = 18 * kb;
        km = (__mmask16)((1u << kb) - 1);
#pragma GCC unroll 5
        for (unsigned k = 0; k < 5; k++) {
            const unsigned left = len > 64 * k ? len - 64 * k : 0;
            v[k] = _mm512_maskz_loadu_epi8(left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1), ab + 64 * k);
        }
    }
    __m512i hw = _mm512_permutex2var_epi16(v[0], _mm512_loadu_si512((const void *)SCALE_IDX9[0]), v[1]);
    hw = _mm512_mask_mov_epi16(hw, SCALE_PICK9[1],
                               _mm512_permutex2var_epi16(v[2], _mm512_loadu_si512((const void *)SCALE_IDX9[1]), v[3]));
    hw = _mm512_mask_mov_epi16(hw, SCALE_PICK9[2],
                               _mm512_permutexvar_epi16(_mm512_loadu_si512((const void *)SCALE_IDX9[2]), v[4]));
    return _mm512_maskz_cvtph_ps(km, _mm512_castsi512_si256(hw));
}

/* Group g's (blocks 4g..4g+3 of the run in v) 64 nibble bytes, block j's sixteen at 16j. */
TILE_VBMI __m512i q4_group_nibbles(const __m512i v[5], unsigned g) {
    /* group 0's nibble bytes in its window: block j's sixteen at 18j + 2; group g's 8g further */
    const __m512i nib = _mm512_set_epi8(
        71, 70, 69, 68, 67, 66, 65, 64, 63, 62, 61, 60, 59, 58, 57, 56, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42,
        41, 40, 39, 38, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 17, 16, 15, 14, 13, 12, 11, 10,
        9, 8, 7, 6, 5, 4, 3, 2);
    return _mm512_permutex2var_epi8(v[g], _mm512_add_epi8(nib, _mm512_set1_epi8((char)(8 * g))), v[g + 1]);
}

/*
 * kb (1..16) blocks from ab against x4 groups xg: their products into acc0/acc1.
 * A short run (the row's last, kb < 16) loads with masks that stop at its last
 * byte; x4 is zero past the vector's last block, and so are the products.
 */
TILE_VBMI void q4_run_vbmi(const uint8_t *ab, const uint8_t *xg, const float *dx, const int32_t *cr, unsigned kb,
                           __m512 *acc0, __m512 *acc1) {
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __mmask16 km = kb == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kb) - 1);
    __m512i v[5];
    const __m512 s16 = _mm512_mul_ps(q4_load_run(ab, kb, v), _mm512_maskz_loadu_ps(km, dx));
    *acc1 = _mm512_fmadd_ps(s16, _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(km, cr)), *acc1);
#pragma GCC unroll 4
    for (unsigned g = 0; g < 4; g++) {
        if (4 * g >= kb) break;
        const __m512i raw = q4_group_nibbles(v, g);
        const __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_gf2p8affine_epi64_epi8(raw, Q4_HI_NIBBLE, 0);
        const __m512i xl = _mm512_loadu_si512((const void *)(xg + 128 * g));
        const __m512i xh = _mm512_loadu_si512((const void *)(xg + 128 * g + 64));
        __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xl), hi, xh));
        __m512 sc = _mm512_permutexvar_ps(_mm512_add_epi32(quarter, _mm512_set1_epi32((int)(4 * g))), s16);
        if (g & 1) *acc1 = _mm512_fmadd_ps(p, sc, *acc1);
        else *acc0 = _mm512_fmadd_ps(p, sc, *acc0);
    }
}

TILE_VBMI float q4_row_dot_vbmi(const uint8_t *a, const uint8_t *A, size_t cols) {
    const size_t nb = cols / 32;
    const float *dx = (const float *)(const void *)(A + cols);
    const int32_t *cr = (const int32_t *)(const void *)(A + cols + 8 * nb);
    const uint8_t *x4 = A + cols + 12 * nb;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t b0 = 0;
    for (; b0 + 16 <= nb; b0 += 16) q4_run_vbmi(a + 18 * b0, x4 + 32 * b0, dx + b0, cr + b0, 16, &acc0, &acc1);
    if (b0 < nb) q4_run_vbmi(a + 18 * b0, x4 + 32 * b0, dx + b0, cr + b0, (unsigned)(nb - b0), &acc0, &acc1);
    __m512 t = _mm512_add_ps(acc0, acc1);
    return hsum256_ps(_mm256_add_ps(_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))));
}

/* The stream (qs_rows, above) for Q4_0: 16 blocks' exact integer sums Σ(q_w·x) − 8·Σx, block p in lane p. */
TILE_VBMI __m512i q4_isum16_vbmi(const __m512i v[5], const uint8_t *xl, const uint8_t *xh, const int32_t *cr) {
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0F);
    __m512i p[4];
#pragma GCC unroll 4
    for (unsigned g = 0; g < 4; g++) {
        const __m512i raw = q4_group_nibbles(v, g);
        const __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_gf2p8affine_epi64_epi8(raw, Q4_HI_NIBBLE, 0);
        p[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, _mm512_loadu_si512((const void *)(xl + 64 * g))), hi,
                                   _mm512_loadu_si512((const void *)(xh + 64 * g)));
    }
    /* p[g], 128-bit lane i: block 4g + i's four partial sums, each of eight products
     * |q·x| <= 15·128: they and their pairs' sums fit 16 bits, so packing to 16 bits and
     * adding pairs (VPMADDWD by ones) twice sums them exactly */
    const __m512i one = _mm512_set1_epi16(1);
    __m512i z = _mm512_madd_epi16(_mm512_packs_epi32(_mm512_madd_epi16(_mm512_packs_epi32(p[0], p[1]), one),
                                                     _mm512_madd_epi16(_mm512_packs_epi32(p[2], p[3]), one)),
                                  one);
    /* z lane 4i + g: block 4g + i */
    z = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
    return _mm512_add_epi32(z, _mm512_loadu_si512((const void *)cr));
}

AVX512VBMI static void q4_mv_stream(const uint8_t *W, size_t nr, const uint8_t *act, size_t nb, float *Y) {
    qs_act a;
    qs_act_fill(&a, act, nb, 1);
    const size_t total = nr * nb, rb = 18 * nb;
    qs_rows r;
    qs_rows_init(&r, nb);
    if (rb <= Q8S_PREFETCH_ROW) qs_prefetch_start(W, nr * rb);
    for (size_t S = 0, o = 0; S < total; S += 16, o = o + 16 < nb ? o + 16 : o + 16 - nb) {
        const uint8_t *ab = W + 18 * S;
        if (rb <= Q8S_PREFETCH_ROW) qs_prefetch(ab, 288);
        __m512i v[5];
        const __m512 sc = _mm512_mul_ps(q4_load_run(ab, total - S < 16 ? (unsigned)(total - S) : 16, v),
                                        _mm512_loadu_ps(a.dx + o));
        const __m512i is = q4_isum16_vbmi(v, a.q + 16 * o, a.q + 32 * nb + 16 * o, a.cr + o);
        qs_rows_run(&r, _mm512_cvtepi32_ps(is), sc, S, Y);
    }
    qs_rows_end(&r, Y);
}

/* The stream above (q8s_mm's, for Q4_0), or q8s_mm's one-token loop (same prefetch) over q4_row_dot_vbmi. */
AVX512VBMI static void q4_mv_vbmi(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t cols, float *Y) {
    const size_t nb = cols / 32;
    if (nb > 16 && nb <= QS_NB_MAX && (nb % 16 || nb <= QS_Q4_WHOLE_MAX)) {
        q4_mv_stream(W, nr, act, nb, Y);
        return;
    }
    const uint8_t *pf = W, *end = W + nr * rb;
    for (size_t r = 0; r < nr; r++) {
        for (const uint8_t *stop = W + (r + 1) * rb + Q8S_PREFETCH; rb <= Q8S_PREFETCH_ROW && pf < stop && pf < end;
             pf += 64)
            _mm_prefetch((const char *)pf, _MM_HINT_T0);
        Y[r] = q4_row_dot_vbmi(W + r * rb, act, cols);
    }
}

/* 1: Q4_0 decode by q4_mv_vbmi; 0: by q8s_mm; −1: not yet decided (the CPU decides). */
static _Atomic int g_q4_vbmi = -1;

void llmops_kern_avx512_vbmi(int on) {
    if (on < 0) {
        __builtin_cpu_init();
        on = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
    }
    atomic_store_explicit(&g_q4_vbmi, on, memory_order_relaxed);
}

AVX512 static void mm_q8_0_avx512(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                                  size_t cols, float *Y, size_t ldy) {
    q8s_mm(W, rb, nr, act, as, nt, cols, Y, ldy, 0);
}

AVX512 static void mm_q4_0_avx512(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                                  size_t cols, float *Y, size_t ldy) {
    if (nt == 1) {
        if (atomic_load_explicit(&g_q4_vbmi, memory_order_relaxed) < 0) llmops_kern_avx512_vbmi(-1);
        if (atomic_load_explicit(&g_q4_vbmi, memory_order_relaxed)) {
            q4_mv_vbmi(W, rb, nr, act, cols, Y);
            return;
        }
    }
    q8s_mm(W, rb, nr, act, as, nt, cols, Y, ldy, 1);
}

/* ---- exp: softmax and SiLU ------------------------------------------------------------------
 *
 * exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 split
 * in two so that n·ln2_hi is exact), |r| <= ln2/2, e^r by its Taylor series
 * to r^7 (truncation below 6e-9 relative), 2^n applied by VSCALEFPS, which
 * also gives the subnormal, zero and infinite results. NaN stays NaN.
 */
AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 tail_mask16(size_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

AVX512 static float exp_sum_avx512(float *s, const uint8_t *keep, size_t n, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask16(n - i);
        __m128i kb = _mm_maskz_loadu_epi8(m, keep + i);
        __mmask16 kk = _mm_test_epi8_mask(kb, kb);
        __m512 e = _mm512_maskz_mov_ps(kk, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

AVX512 static void silu_mul_avx512(float *y, const float *g, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask16(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 yv = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_div_ps(gv, _mm512_add_ps(one, e)));
        _mm512_mask_storeu_ps(y + i, m, yv);
    }
}

/* Four chains of eight doubles; the last n % 32 floats eight at a time with masked loads (zeros past n). */
AVX512 static double sumsq_avx512(const float *x, size_t n) {
    __m512d a[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * j));
            a[j] = _mm512_fmadd_pd(v, v, a[j]);
        }
    for (int j = 0; i < n; i += 8, j++) {
        __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1), x + i));
        a[j] = _mm512_fmadd_pd(v, v, a[j]);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a[0], a[1]), _mm512_add_pd(a[2], a[3])));
}

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
    .mm_q6_K = mm_q6_K_avx512,
    .f_chain = FP_MIN_TOK,
    .quantize_q8s = quantize_q8s_avx512,
    .exp_sum = exp_sum_avx512,
    .silu_mul = silu_mul_avx512,
    .sumsq = sumsq_avx512,
};

#else
typedef int llmops_kernels_avx512_unused; /* non-x86: nothing here */
#endif
