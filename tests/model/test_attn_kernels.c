/* The attention inner loops: the SIMD path equals the scalar reference. */
#include <math.h>
#include <stdlib.h>

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

/* The tiled kernels of prefill/decode attention: SIMD equals scalar, head dims with and without tails. */
TEST(attn_tile_kernels_simd_equal_scalar) {
    const attn_kernels *fast = attn_kernels_get(0), *ref = attn_kernels_get(1);
    uint64_t s = 777;
    static const size_t hds[] = {8, 12, 32, 64, 80, 128};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
        size_t hd = hds[hi], lds = 40;
        for (size_t nq = 1; nq <= 11; nq += 3) {
            float Q[11 * 128], Kt[128 * 16], S1[11 * 40], S2[11 * 40], V[16 * 128], O1[11 * 128], O2[11 * 128];
            uint16_t h[128];
            float c1[128], c2[128];
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
            fast->qk16(Q, nq, hd, Kt, S1, lds);
            ref->qk16(Q, nq, hd, Kt, S2, lds);
            for (size_t r = 0; r < nq; r++)
                for (size_t j = 0; j < 16; j++) {
                    double mag = 0;
                    for (size_t i = 0; i < hd; i++) mag += fabs((double)Q[r * hd + i] * Kt[i * 16 + j]);
                    CHECK_MSG(fabs(S1[r * lds + j] - S2[r * lds + j]) <= 1e-5 * mag + 1e-7, "qk16 hd=%zu nq=%zu", hd, nq);
                    S1[r * lds + j] = S2[r * lds + j] = 1.0f / (1.0f + (float)j + (float)r); /* weights for pv */
                }
            for (size_t nc = 1; nc <= 16; nc += 5) {
                fast->pv(S1, lds, nq, V, nc, hd, O1);
                ref->pv(S2, lds, nq, V, nc, hd, O2);
                for (size_t i = 0; i < nq * hd; i++)
                    CHECK_MSG(fabsf(O1[i] - O2[i]) <= 1e-5f * (1 + fabsf(O2[i])), "pv hd=%zu nq=%zu nc=%zu", hd, nq, nc);
            }
            for (size_t i = 0; i < hd; i++) h[i] = llmops_fp32_to_fp16(V[i]);
            fast->cvt_f16(h, c1, hd);
            ref->cvt_f16(h, c2, hd);
            for (size_t i = 0; i < hd; i++) CHECK_MSG(c1[i] == c2[i], "cvt_f16 hd=%zu", hd);
        }
    }
}
