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

/*
 * Q8_0 and Q4_0 follow the scalar reference's float arithmetic exactly (per
 * block the integer sum, then sum = sum + (d_w·d_x)·isum), as the tiles
 * below do, so matmul equals the dot bit for bit on this path too.
 */
AVX2 static float dot_q8_0_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 34, b += 34) {
        int isum = hsum256_epi32(dot_i8x32(_mm256_loadu_si256((const __m256i *)(a + 2)),
                                           _mm256_loadu_si256((const __m256i *)(b + 2))));
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
}

AVX2 static float dot_q4_0_avx2(const void *w, const void *xq, size_t nb) {
    const uint8_t *a = w, *b = xq;
    const __m256i eight = _mm256_set1_epi8(8);
    float sum = 0;
    for (size_t i = 0; i < nb; i++, a += 18, b += 34) {
        __m256i q = _mm256_sub_epi8(unpack_nibbles(a + 2), eight);
        int isum = hsum256_epi32(dot_i8x32(q, _mm256_loadu_si256((const __m256i *)(b + 2))));
        sum += f16_at(a) * f16_at(b) * (float)isum;
    }
    return sum;
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

/* ---- Q8_0 / Q4_0 products on Q8S activations ------------------------------------------------
 *
 * Several tokens (prefill): as in the AVX-512 file, each group of 8 weight
 * rows is repacked once per call so that lane i of a register is row i —
 * per block, eight 32-byte groups (bytes 4g..4g+3 of each row's 32 quants),
 * for Q8_0 then the same groups' magnitudes, then the 8 scales as floats —
 * and a tile of 8 rows × Q8_TOK tokens broadcasts each token's activations
 * 4 bytes at a time. VPMADDUBSW takes unsigned × signed bytes into 16-bit
 * pair sums: Q4_0 nibbles (<= 15) × x stay below 2·15·127 per pair, so a
 * whole block is summed in 16 bits before one VPMADDWD, and −8·Σx (Q8S)
 * undoes the offset; Q8_0 uses |w| × sign(x, w) (pairs <= 2·128·127), widened
 * per group. The float step is the scalar reference's, block after block,
 * so the results equal it bit for bit.
 *
 * One token (decode) reads each row in place with the dot's arithmetic
 * (8-lane float sums, within the tolerance of kernels.h).
 */
enum { Q8_TOK = 8, Q8_PACK_BLOCK8 = 17 * 32 }; /* packed block: 8 + 8 groups of 32 bytes, 8 float scales */

AVX2 static void q8s_pack8(const uint8_t *W, size_t rb, size_t nr, size_t nb, uint8_t *P, const int q4) {
    const size_t bs = q4 ? 18 : 34;
    for (size_t b = 0; b < nb; b++, P += Q8_PACK_BLOCK8) {
        float sc[8];
        for (size_t i = 0; i < 8; i++) {
            const uint8_t *a = W + (i < nr ? i : nr - 1) * rb + b * bs;
            sc[i] = f16_at(a);
            if (!q4) {
                for (int g = 0; g < 8; g++) memcpy(P + 32 * g + 4 * i, a + 2 + 4 * g, 4);
            } else {
                for (int g = 0; g < 4; g++) {
                    uint32_t v, lo, hi;
                    memcpy(&v, a + 2 + 4 * g, 4);
                    lo = v & 0x0F0F0F0Fu, hi = (v >> 4) & 0x0F0F0F0Fu;
                    memcpy(P + 32 * g + 4 * i, &lo, 4);
                    memcpy(P + 32 * (g + 4) + 4 * i, &hi, 4);
                }
            }
        }
        if (!q4)
            for (int g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)(void *)(P + 256 + 32 * g),
                                   _mm256_abs_epi8(_mm256_load_si256((const __m256i *)(const void *)(P + 32 * g))));
        _mm256_store_ps((float *)(void *)(P + 512), _mm256_loadu_ps(sc));
    }
}

#define TILE_FN AVX2 __attribute__((always_inline)) static inline

TILE_FN void q8s_tile8(const uint8_t *P, size_t nb, const uint8_t *A, size_t as, size_t cols, float *Y, size_t ldy,
                       size_t nr, const int T, const int q4) {
    const size_t coff = cols + 8 * nb; /* −8·Σx (Q4_0) */
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 F[Q8_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) F[t] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++, P += Q8_PACK_BLOCK8) {
        const __m256 dw = _mm256_load_ps((const float *)(const void *)(P + 512));
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *x = A + (size_t)t * as;
            int32_t xg[8];
            float dx;
            memcpy(xg, x + 32 * b, 32);
            memcpy(&dx, x + cols + 4 * b, 4);
            __m256i acc;
            if (q4) {
                __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++)
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(const void *)(P + 32 * g)),
                                                                     _mm256_set1_epi32(xg[g])));
                int32_t c;
                memcpy(&c, x + coff + 4 * b, 4);
                acc = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(c));
            } else {
                acc = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m256i w = _mm256_load_si256((const __m256i *)(const void *)(P + 32 * g));
                    const __m256i aw = _mm256_load_si256((const __m256i *)(const void *)(P + 256 + 32 * g));
                    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(xg[g]), w));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
                }
            }
            F[t] = _mm256_add_ps(F[t], _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(acc)));
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        if (nr == 8) {
            _mm256_storeu_ps(Y + (size_t)t * ldy, F[t]);
        } else {
            float v[8];
            _mm256_storeu_ps(v, F[t]);
            memcpy(Y + (size_t)t * ldy, v, nr * sizeof(float));
        }
    }
}

TILE_FN void q8s_tiles8(const uint8_t *P, size_t nb, const uint8_t *A, size_t as, size_t nt, size_t cols, float *Y,
                        size_t ldy, size_t nr, const int q4) {
    size_t t = 0;
    for (; t + Q8_TOK <= nt; t += Q8_TOK) q8s_tile8(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, nr, Q8_TOK, q4);
    if (nt - t >= 4) q8s_tile8(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, nr, 4, q4), t += 4;
    if (nt - t >= 2) q8s_tile8(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, nr, 2, q4), t += 2;
    if (nt - t >= 1) q8s_tile8(P, nb, A + t * as, as, cols, Y + t * ldy, ldy, nr, 1, q4);
}

/* One row · one Q8S vector (decode, and the fallback without scratch memory): the dot's arithmetic. */
AVX2 static float q8s_row_dot_avx2(const uint8_t *a, const uint8_t *A, size_t cols, const int q4) {
    const size_t nb = cols / 32, bs = q4 ? 18 : 34;
    const float *dx = (const float *)(const void *)(A + cols);
    const int32_t *c8 = (const int32_t *)(const void *)(A + cols + 8 * nb);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0;
    for (size_t b = 0; b < nb; b++, a += bs) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(A + 32 * b));
        float d = f16_at(a) * dx[b];
        __m256i s;
        if (q4) {
            s = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(a + 2), x), ones);
            corr += d * (float)c8[b];
        } else {
            s = dot_i8x32(_mm256_loadu_si256((const __m256i *)(a + 2)), x);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum256_ps(acc) + corr;
}

TILE_FN void q8s_mm8(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt, size_t cols,
                     float *Y, size_t ldy, const int q4) {
    const size_t nb = cols / 32;
    uint8_t *P = nt > 1 ? llmops_kern_scratch(nb * Q8_PACK_BLOCK8) : NULL;
    if (!P) {
        for (size_t r = 0; r < nr; r++)
            for (size_t t = 0; t < nt; t++) Y[t * ldy + r] = q8s_row_dot_avx2(W + r * rb, act + t * as, cols, q4);
        return;
    }
    for (size_t r = 0; r < nr; r += 8) {
        size_t k = nr - r < 8 ? nr - r : 8;
        q8s_pack8(W + r * rb, rb, k, nb, P, q4);
        q8s_tiles8(P, nb, act, as, nt, cols, Y + r, ldy, k, q4);
    }
}

AVX2 static void mm_q8_0_avx2(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                              size_t cols, float *Y, size_t ldy) {
    q8s_mm8(W, rb, nr, act, as, nt, cols, Y, ldy, 0);
}

AVX2 static void mm_q4_0_avx2(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                              size_t cols, float *Y, size_t ldy) {
    q8s_mm8(W, rb, nr, act, as, nt, cols, Y, ldy, 1);
}

/* ---- Q4_K / Q6_K products on Q8_K activations ----------------------------------------------
 *
 * Several tokens: a tile of one weight row × KQ_TOK tokens. Per super-block
 * the row's quants are unpacked and its scales decoded once and used for
 * every token of the tile; per token and 32 elements, VPMADDUBSW, VPMADDWD
 * with the sub-block's scale and a 32-bit add — the dot's integer sums
 * (sumi, summ, the −32 offset), exactly. The tile's per-token sums are
 * reduced together (VPHADDD across the accumulators), and the dot's float
 * step runs for the tile's tokens at once, lane t for token t, with the same
 * operations in the same order: each result is the dot's (and the scalar
 * reference's) bit for bit. The driver hands at most 32 tokens per call, so
 * a row's super-blocks stay in L1 across its tiles. One token: the dot.
 */
enum { KQ_TOK = 8 };

/* Lane t: the sum of the 8 int32 lanes of v[t]. */
TILE_FN __m256i hsum8x8_epi32(const __m256i *v) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    /* a: v0..v3 over lanes 0-3 in its low half, over lanes 4-7 in its high half; b: v4..v7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* The tile's results, lane t → Y[t·ldy]. */
TILE_FN void kq_store(__m256 sum, float *Y, size_t ldy, const int T) {
    float v[KQ_TOK];
    _mm256_storeu_ps(v, sum);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) Y[(size_t)t * ldy] = v[t];
}

/* Row a (nsb Q4_K super-blocks) × T tokens of Q8_K activations (as bytes apart). */
TILE_FN void q4k_tile8(const uint8_t *a, const uint8_t *A, size_t as, size_t nsb, float *Y, size_t ldy, const int T) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 sum = _mm256_setzero_ps();
    for (size_t sb = 0; sb < nsb; sb++, a += 144) {
        uint32_t u[4];
        q4_K_unpack(a + 4, u);
        uint8_t sc[8];
        memcpy(sc, u, 8);
        __m256i acc[KQ_TOK], mn[KQ_TOK];
#pragma GCC unroll 8
        for (int t = 0; t < KQ_TOK; t++) acc[t] = mn[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(a + 16 + 32 * j));
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const uint8_t *x = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES + 4 + 64 * j;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)x)), s0);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 32))), s1);
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(p0, p1));
            }
        }
        /* summ = Σ_j m_j·(bsums[2j] + bsums[2j+1]): each min twice, against the 16 bsums */
        const __m128i m8 = _mm_loadl_epi64((const __m128i *)(u + 2));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
        float dx[KQ_TOK] = {0};
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES;
            memcpy(&dx[t], xb, 4);
            mn[t] = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)(xb + 260)));
        }
        const __m256 dxv = _mm256_loadu_ps(dx);
        const __m256 d = _mm256_mul_ps(_mm256_set1_ps(f16_at(a)), dxv), dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(a + 2)), dxv);
        sum = _mm256_add_ps(sum, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(hsum8x8_epi32(acc))),
                                               _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(hsum8x8_epi32(mn)))));
    }
    kq_store(sum, Y, ldy, T);
}

/* Row a (nsb Q6_K super-blocks) × T tokens: the dot's q1..q4 per half, its scale pairs, −32·Σ sc·bsum. */
TILE_FN void q6k_tile8(const uint8_t *a, const uint8_t *A, size_t as, size_t nsb, float *Y, size_t ldy, const int T) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 sum = _mm256_setzero_ps();
    for (size_t sb = 0; sb < nsb; sb++, a += 210) {
        const int8_t *sc = (const int8_t *)(a + 192);
        __m256i acc[KQ_TOK];
#pragma GCC unroll 8
        for (int t = 0; t < KQ_TOK; t++) acc[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(a + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(a + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(a + 128 + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i q;
                if (k == 0) q = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x03)), 4));
                else if (k == 1) q = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x0C)), 2));
                else if (k == 2) q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, _mm256_set1_epi8(0x30)));
                else q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8((char)0xC0)), 2));
                const __m256i sp = scale_pair(sc[8 * h + 2 * k], sc[8 * h + 2 * k + 1]);
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    const uint8_t *x = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES + 4 + 128 * h + 32 * k;
                    acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)x)), sp));
                }
            }
        }
        /* sumi − 32·Σ_g sc_g·bsum_g, lane-wise before the sum (exact in int32) */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        float dx[KQ_TOK] = {0};
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = A + (size_t)t * as + sb * LLMOPS_Q8_K_BYTES;
            memcpy(&dx[t], xb, 4);
            const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(xb + 260)));
            acc[t] = _mm256_sub_epi32(acc[t], _mm256_slli_epi32(off, 5));
        }
        const __m256 dd = _mm256_mul_ps(_mm256_set1_ps(f16_at(a + 208)), _mm256_loadu_ps(dx));
        sum = _mm256_add_ps(sum, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(hsum8x8_epi32(acc))));
    }
    kq_store(sum, Y, ldy, T);
}

#define KQ_CALL(tile, tt, ...)                 \
    switch (tt) {                              \
    case 1: tile(__VA_ARGS__, 1); break;       \
    case 2: tile(__VA_ARGS__, 2); break;       \
    case 3: tile(__VA_ARGS__, 3); break;       \
    case 4: tile(__VA_ARGS__, 4); break;       \
    case 5: tile(__VA_ARGS__, 5); break;       \
    case 6: tile(__VA_ARGS__, 6); break;       \
    case 7: tile(__VA_ARGS__, 7); break;       \
    default: tile(__VA_ARGS__, KQ_TOK); break; \
    }

AVX2 static void mm_q4_K_avx2(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                              size_t cols, float *Y, size_t ldy) {
    for (size_t r = 0; r < nr; r++) {
        if (nt == 1) { /* decode: the dot */
            Y[r] = dot_q4_K_avx2(W + r * rb, act, cols / 256);
            continue;
        }
        for (size_t t = 0; t < nt; t += KQ_TOK) {
            size_t tt = nt - t < KQ_TOK ? nt - t : KQ_TOK;
            KQ_CALL(q4k_tile8, tt, W + r * rb, act + t * as, as, cols / 256, Y + t * ldy + r, ldy)
        }
    }
}

AVX2 static void mm_q6_K_avx2(const uint8_t *W, size_t rb, size_t nr, const uint8_t *act, size_t as, size_t nt,
                              size_t cols, float *Y, size_t ldy) {
    for (size_t r = 0; r < nr; r++) {
        if (nt == 1) {
            Y[r] = dot_q6_K_avx2(W + r * rb, act, cols / 256);
            continue;
        }
        for (size_t t = 0; t < nt; t += KQ_TOK) {
            size_t tt = nt - t < KQ_TOK ? nt - t : KQ_TOK;
            KQ_CALL(q6k_tile8, tt, W + r * rb, act + t * as, as, cols / 256, Y + t * ldy + r, ldy)
        }
    }
}

/* ---- exp: softmax and SiLU (exp256 is in simd_x86.h) ---------------------------------------- */

AVX2 static float exp_sum_avx2(float *s, const uint8_t *keep, size_t n, float mx) {
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        size_t m = n - i < 8 ? n - i : 8;
        float buf[8] = {0};
        uint8_t kb[8] = {0};
        const float *src = s + i;
        if (m < 8) memcpy(buf, s + i, m * sizeof(float)), memcpy(kb, keep + i, m), src = buf;
        else memcpy(kb, keep + i, 8);
        __m256i k32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)kb));
        __m256 kmask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k32, _mm256_setzero_si256()));
        __m256 e = _mm256_and_ps(kmask, exp256(_mm256_sub_ps(_mm256_loadu_ps(src), vmx)));
        sum = _mm256_add_ps(sum, e);
        if (m < 8) {
            _mm256_storeu_ps(buf, e);
            memcpy(s + i, buf, m * sizeof(float));
        } else {
            _mm256_storeu_ps(s + i, e);
        }
    }
    return hsum256_ps(sum);
}

AVX2 static void silu_mul_avx2(float *y, const float *g, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 8) {
        size_t m = n - i < 8 ? n - i : 8;
        float yb[8] = {0}, gb[8] = {0};
        float *yp = y + i;
        const float *gp = g + i;
        if (m < 8) memcpy(yb, y + i, m * sizeof(float)), memcpy(gb, g + i, m * sizeof(float)), yp = yb, gp = gb;
        __m256 gv = _mm256_loadu_ps(gp);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        _mm256_storeu_ps(yp, _mm256_mul_ps(_mm256_loadu_ps(yp), _mm256_div_ps(gv, _mm256_add_ps(one, e))));
        if (m < 8) memcpy(y + i, yb, m * sizeof(float));
    }
}

/* Four chains of four doubles; the last n % 16 floats one at a time into the first. */
AVX2 static double sumsq_avx2(const float *x, size_t n) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * j));
            a[j] = _mm256_fmadd_pd(v, v, a[j]);
        }
    __m256d t = _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3]));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
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
    .mm_q8_0 = mm_q8_0_avx2,
    .mm_q4_0 = mm_q4_0_avx2,
    .mm_q4_K = mm_q4_K_avx2,
    .mm_q6_K = mm_q6_K_avx2,
    .exp_sum = exp_sum_avx2,
    .silu_mul = silu_mul_avx2,
    .sumsq = sumsq_avx2,
};

#else
typedef int llmops_kernels_avx2_unused; /* non-x86: nothing here */
#endif
