/* The attention inner loops: the SIMD path equals the scalar reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/tensor.h"
#include "model/model_internal.h"

TEST(attn_kernels_simd_equal_scalar) {
    const attn_kernels *fast = attn_kernels_get(0), *ref = attn_kernels_get(1);
    uint64_t s = 12345;
    for (size_t n = 1; n <= 260; n += (n < 40 ? 1 : 37)) {
        float q[260], k32[260], y1[260], y2[260];
        uint16_t k16[260];
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            q[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            k32[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 22);
            k16[i] = llmops_fp32_to_fp16(k32[i]);
            y1[i] = y2[i] = q[i] * 0.5f;
        }
        double mag = 0;
        for (size_t i = 0; i < n; i++) mag += fabs((double)q[i] * k32[i]);
        CHECK_MSG(fabs(fast->dot_f32(k32, q, n) - ref->dot_f32(k32, q, n)) <= 1e-5 * mag + 1e-7, "dot f32 n=%zu", n);
        CHECK_MSG(fabs(fast->dot_f16(k16, q, n) - ref->dot_f16(k16, q, n)) <= 1e-5 * mag + 1e-7, "dot f16 n=%zu", n);
        fast->axpy_f16(k16, 0.37f, y1, n);
        ref->axpy_f16(k16, 0.37f, y2, n);
        for (size_t i = 0; i < n; i++) CHECK_MSG(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + fabsf(y2[i])), "axpy f16 n=%zu", n);
        fast->axpy_f32(k32, -1.5f, y1, n);
        ref->axpy_f32(k32, -1.5f, y2, n);
        for (size_t i = 0; i < n; i++) CHECK_MSG(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + fabsf(y2[i])), "axpy f32 n=%zu", n);
    }
}

/* The tiled kernels of prefill/decode attention at one level (0 = best, 2 = best without AVX-512):
 * SIMD equals scalar over head dims with and without tails (odd ones too: the AVX-512 kernels mask
 * them) and query counts that hit every row-chunk size, value counts 1..16. */
static void check_tiles(int level) {
    const attn_kernels *fast = attn_kernels_get(level), *ref = attn_kernels_get(1);
    uint64_t s = 777;
    static const size_t hds[] = {1, 7, 8, 12, 17, 32, 48, 64, 80, 96, 100, 128};
    enum { NQ = 37, HD = 128, LDS = 40 };
    static float Q[NQ * HD], S1[NQ * LDS], S2[NQ * LDS], O1[NQ * HD], O2[NQ * HD];
    static float Kt[HD * 16], V[16 * HD], c1[16 * HD], c2[16 * HD];
    static uint16_t h[16 * HD];
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
        size_t hd = hds[hi], lds = LDS;
        for (size_t nq = 1; nq <= NQ; nq += (nq < 14 ? 1 : 4)) {
            for (size_t i = 0; i < nq * hd; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                Q[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
                O1[i] = O2[i] = Q[i] * 0.25f;
            }
            for (size_t i = 0; i < hd * 16; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                Kt[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 22);
                V[i] = Kt[i] * -0.5f;
            }
            for (size_t i = 0; i < nq * lds; i++) S1[i] = S2[i] = -7.0f; /* columns ≥ 16 must stay untouched */
            fast->qk16(Q, nq, hd, Kt, S1, lds);
            ref->qk16(Q, nq, hd, Kt, S2, lds);
            for (size_t r = 0; r < nq; r++) {
                for (size_t j = 0; j < 16; j++) {
                    double mag = 0;
                    for (size_t i = 0; i < hd; i++) mag += fabs((double)Q[r * hd + i] * Kt[i * 16 + j]);
                    CHECK_MSG(fabs(S1[r * lds + j] - S2[r * lds + j]) <= 1e-5 * mag + 1e-7, "qk16 level %d hd=%zu nq=%zu",
                              level, hd, nq);
                    S1[r * lds + j] = S2[r * lds + j] = 1.0f / (1.0f + (float)j + (float)r); /* weights for pv */
                }
                for (size_t j = 16; j < lds; j++) CHECK_MSG(S1[r * lds + j] == -7.0f, "qk16 wrote past 16, hd=%zu", hd);
            }
            for (size_t nc = 1; nc <= 16; nc += (nq < 4 ? 1 : 5)) {
                fast->pv(S1, lds, nq, V, nc, hd, O1);
                ref->pv(S2, lds, nq, V, nc, hd, O2);
                for (size_t i = 0; i < nq * hd; i++)
                    CHECK_MSG(fabsf(O1[i] - O2[i]) <= 1e-5f * (1 + fabsf(O2[i])), "pv level %d hd=%zu nq=%zu nc=%zu", level,
                              hd, nq, nc);
            }
        }
        /* conversion: exact, every length up to 16 rows of hd, nothing written past n */
        for (size_t i = 0; i < 16 * hd; i++) h[i] = llmops_fp32_to_fp16(V[i] * (i % 5 ? 1.0f : 1e-6f));
        h[0] = 0x7c00, h[hd > 1 ? 1 : 0] = 0xfe01; /* inf, a NaN */
        for (size_t n = 0; n <= 16 * hd; n += (n < 40 ? 1 : hd)) {
            for (size_t i = 0; i < 16 * hd; i++) c1[i] = c2[i] = 3.0f;
            fast->cvt_f16(h, c1, n);
            ref->cvt_f16(h, c2, n);
            CHECK_MSG(!memcmp(c1, c2, sizeof c1), "cvt_f16 level %d n=%zu", level, n);
        }
    }
}

TEST(attn_tile_kernels_simd_equal_scalar) { check_tiles(0); }
TEST(attn_tile_kernels_avx2_equal_scalar) { check_tiles(2); }

/* The decode kernels that read an F16 cache in place, at one level: SIMD equals scalar for head dims with
 * and without tails, 1..6 query rows (every row-chunk size), key/value counts that are and are not whole
 * groups of 4, rows further apart than hd. The rows end exactly at the end of their allocation (a read
 * past the last one is an ASan error in the debug build), and no score past nc is written. */
static void check_decode(int level) {
    const attn_kernels *fast = attn_kernels_get(level), *ref = attn_kernels_get(1);
    uint64_t s = 4242;
    static const size_t hds[] = {1, 7, 16, 17, 48, 64, 80, 128};
    enum { NQ = 6, HD = 128, NC = 37, LDS = 48 };
    static float Q[NQ * HD], S1[NQ * LDS], S2[NQ * LDS], O1[NQ * HD], O2[NQ * HD];
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
        size_t hd = hds[hi], ld = 3 * hd + 5;
        for (size_t nc = 1; nc <= NC; nc += (nc < 9 ? 1 : 7)) {
            size_t n = (nc - 1) * ld + hd;
            uint16_t *K = malloc(n * sizeof *K), *V = malloc(n * sizeof *V);
            CHECK(K && V);
            for (size_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                float x = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 22);
                K[i] = llmops_fp32_to_fp16(x);
                V[i] = llmops_fp32_to_fp16(x * -0.75f);
            }
            for (size_t nq = 1; nq <= NQ; nq++) {
                for (size_t i = 0; i < nq * hd; i++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    Q[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
                    O1[i] = O2[i] = Q[i] * 0.25f;
                }
                for (size_t i = 0; i < nq * LDS; i++) S1[i] = S2[i] = -7.0f;
                fast->qk_f16(K, ld, nc, Q, nq, hd, S1, LDS);
                ref->qk_f16(K, ld, nc, Q, nq, hd, S2, LDS);
                for (size_t r = 0; r < nq; r++) {
                    for (size_t c = 0; c < nc; c++) {
                        double mag = 0;
                        for (size_t i = 0; i < hd; i++) mag += fabs((double)Q[r * hd + i] * llmops_fp16_to_fp32(K[c * ld + i]));
                        CHECK_MSG(fabs(S1[r * LDS + c] - S2[r * LDS + c]) <= 1e-5 * mag + 1e-7,
                                  "qk_f16 level %d hd=%zu nq=%zu nc=%zu", level, hd, nq, nc);
                        S1[r * LDS + c] = S2[r * LDS + c] = 1.0f / (1.0f + (float)c + (float)r); /* weights for pv */
                    }
                    for (size_t c = nc; c < LDS; c++)
                        CHECK_MSG(S1[r * LDS + c] == -7.0f, "qk_f16 wrote past nc, hd=%zu nc=%zu", hd, nc);
                }
                fast->pv_f16(S1, LDS, nq, V, ld, nc, hd, O1);
                ref->pv_f16(S2, LDS, nq, V, ld, nc, hd, O2);
                for (size_t i = 0; i < nq * hd; i++)
                    CHECK_MSG(fabsf(O1[i] - O2[i]) <= 1e-5f * (1 + fabsf(O2[i])), "pv_f16 level %d hd=%zu nq=%zu nc=%zu",
                              level, hd, nq, nc);
            }
            free(K);
            free(V);
        }
    }
}

TEST(attn_decode_kernels_simd_equal_scalar) { check_decode(0); }
TEST(attn_decode_kernels_avx2_equal_scalar) { check_decode(2); }
