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
