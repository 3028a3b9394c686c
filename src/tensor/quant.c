/*
 * Quantizers: F32 rows into GGML's block types, byte for byte what ggml's
 * reference quantizers (ggml/src/ggml-quants.c: quantize_row_*_ref) write.
 *
 * The K-quant searches (make_qkx2_quants for Q4_K, make_qx_quants for Q6_K)
 * are transcribed operation by operation: every sum is accumulated in the
 * same order, every product is grouped as ggml's C groups it, and nothing
 * here may be contracted into an FMA (this file is built with the project's
 * -std=c11, under which GCC does not contract, and with no -mfma). Change
 * the order of one addition and a scale can land on the other side of a
 * rounding boundary, which changes every nibble of its sub-block.
 *
 * The only intended departure from ggml: where ggml converts an infinite or
 * NaN float to an integer (undefined behaviour in C; it happens only when a
 * block's absolute maximum is below ~1e-38 so that 1/d overflows), these
 * functions clamp instead. Non-finite input is rejected up front.
 *
 * tests/tensor/ggml_quant_ref.py is an independent numpy transcription of
 * the same ggml functions; tests/tensor/test_kernels.c compares the bytes.
 */
#include <math.h>
#include <string.h>

#define LLMOPS_KERNELS_INTERNAL
#include "llmops/kernels.h"
#include "llmops/tensor.h"

#define QK 32
#define QK_K 256
#define GROUP_MAX_EPS 1e-15f

static void put_f16(uint8_t *p, float f) {
    uint16_t h = llmops_fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

static float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return llmops_fp16_to_fp32(h);
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/*
 * ggml's nearest_int: adding 1.5·2^23 leaves the integer part in the low
 * mantissa bits, rounded to nearest even by the addition itself. Exact for
 * |fval| <= 4194303; outside that (and for NaN) it yields some defined int.
 */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* (int8_t)r for r already rounded; clamps where C's conversion would be UB. */
static int8_t to_i8(float r) {
    if (r >= 127.0f) return 127;
    if (r <= -128.0f) return -128;
    if (r != r) return 0;
    return (int8_t)r;
}

/* ---- 32-element block types ------------------------------------------------------ */

/* quantize_row_q8_0_ref: d = amax/127, q = roundf(x/d). */
static void quantize_q8_0(const float *x, uint8_t *y, size_t nb) {
    for (size_t i = 0; i < nb; i++, x += QK, y += 2 + QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < QK; j++) y[2 + j] = (uint8_t)to_i8(roundf(x[j] * id));
    }
}

/* quantize_row_q4_0_ref: d = max/-8 (max = the signed value of largest magnitude). */
static void quantize_q4_0(const float *x, uint8_t *y, size_t nb) {
    for (size_t i = 0; i < nb; i++, x += QK, y += 2 + QK / 2) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < QK / 2; j++) {
            /* ggml: MIN(15, (int8_t)(x*id + 8.5f)), truncation toward zero */
            int q[2];
            for (int h = 0; h < 2; h++) {
                float v = x[j + h * QK / 2] * id + 8.5f;
                q[h] = to_i8(truncf(v));
                q[h] = imin(15, q[h]);
            }
            y[2 + j] = (uint8_t)((q[0] & 0xff) | (q[1] << 4));
        }
    }
}

/* ---- Q4_K -------------------------------------------------------------------------- */

/*
 * ggml's make_qkx2_quants: fit x ≈ scale·L + min with L in [0, nmax] and
 * min <= 0, trying nstep+1 candidate inverse scales around nmax/(max-min) and
 * keeping the weighted-least-squares fit with the smallest weighted squared
 * error. Returns the scale; *the_min = -min. (use_mad = false, as Q4_K uses it.)
 */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* quantize_row_q4_K_ref. Block: f16 d, f16 dmin, scales[12], qs[128]. */
static void quantize_q4_K(const float *x, uint8_t *y, size_t nb) {
    uint8_t L[QK_K];
    uint8_t Laux[32];
    float weights[32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];

    for (size_t i = 0; i < nb; i++, x += QK_K, y += 144) {
        uint8_t *ysc = y + 4;
        float max_scale = 0;
        float max_min = 0;
        for (int j = 0; j < QK_K / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]); /* ggml truncates to 8 bits too */
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                ysc[j] = ls;
                ysc[j + 4] = lm;
            } else {
                ysc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                ysc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                ysc[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        put_f16(y, max_scale / 63.f);
        put_f16(y + 2, max_min / 63.f);

        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t sc, m;
            llmops_kern_scale_min_k4(j, ysc, &sc, &m);
            const float d = get_f16(y) * sc;
            if (!d) continue; /* L keeps what make_qkx2_quants chose, as in ggml */
            const float dm = get_f16(y + 2) * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (uint8_t)imax(0, imin(15, l));
            }
        }

        uint8_t *q = y + 16;
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}

/* ---- Q6_K -------------------------------------------------------------------------- */

/*
 * ggml's make_qx_quants with rmse_type 1 and no importance weights: symmetric
 * quantization to [-nmax, nmax-1] with weights x², trying 18 inverse scales
 * around -nmax/max and keeping the best weighted-least-squares fit.
 * L receives l + nmax.
 */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* quantize_row_q6_K_ref. Block: ql[128], qh[64], int8 scales[16], f16 d. */
static void quantize_q6_K(const float *x, uint8_t *y, size_t nb) {
    int8_t L[QK_K];
    float scales[QK_K / 16];

    for (size_t i = 0; i < nb; i++, x += QK_K, y += 210) {
        int8_t *ysc = (int8_t *)(y + 192);
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, 210);
            continue;
        }

        float iscale = -128.f / max_scale;
        put_f16(y + 208, 1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ++ib) ysc[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));

        for (int j = 0; j < QK_K / 16; ++j) {
            float d = get_f16(y + 208) * ysc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = imax(-32, imin(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }

        uint8_t *ql = y;
        uint8_t *qh = y + 128;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* ---- Q8_K (activations) -------------------------------------------------------------- */

/*
 * quantize_row_q8_K_ref: d = max/-127 (float), q = nearest_int(x/d) capped at
 * 127, bsums = sums of 16 consecutive q. For an all-zero block ggml leaves
 * bsums as they were; here they are zeroed.
 */
static void quantize_q8_K(const float *x, uint8_t *y, size_t nb) {
    for (size_t i = 0; i < nb; i++, x += QK_K, y += LLMOPS_Q8_K_BYTES) {
        float max = 0;
        float amax = 0;
        for (int j = 0; j < QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(y, 0, LLMOPS_Q8_K_BYTES);
            continue;
        }
        const float iscale = -127.f / max;
        int8_t *qs = (int8_t *)(y + 4);
        for (int j = 0; j < QK_K; ++j) qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += qs[j * 16 + ii];
            int16_t s = (int16_t)sum;
            memcpy(y + 4 + QK_K + 2 * j, &s, 2);
        }
        float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

void llmops_kern_quantize_q8_0(const float *x, void *dst, size_t nb) { quantize_q8_0(x, dst, nb); }

void llmops_kern_quantize_q8_K(const float *x, void *dst, size_t nb) { quantize_q8_K(x, dst, nb); }

/* ---- dequantizers of the 256-element super-blocks ---------------------------------------
 * ggml's dequantize_row_q4_K / _q6_K / _q8_K, the same float operations in the
 * same order; the 32-element types are llmops_dequantize_ref's (quant_ref.c). */

/* Q4_K: f16 d, f16 dmin, scales[12] (8 × 6-bit scale and min), qs[128]. */
static void deq_q4_k(const uint8_t *b, float *y) {
    const float d = get_f16(b), min = get_f16(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int j = 0; j < 4; j++, q += 32) {
        uint8_t s1, m1, s2, m2;
        if (j < 2) {
            s1 = sc[2 * j] & 63, m1 = sc[2 * j + 4] & 63;
            s2 = sc[2 * j + 1] & 63, m2 = sc[2 * j + 5] & 63;
        } else {
            int a = 2 * j, c = 2 * j + 1;
            s1 = (uint8_t)((sc[a + 4] & 0xF) | ((sc[a - 4] >> 6) << 4));
            m1 = (uint8_t)((sc[a + 4] >> 4) | ((sc[a] >> 6) << 4));
            s2 = (uint8_t)((sc[c + 4] & 0xF) | ((sc[c - 4] >> 6) << 4));
            m2 = (uint8_t)((sc[c + 4] >> 4) | ((sc[c] >> 6) << 4));
        }
        const float d1 = d * s1, mm1 = min * m1, d2 = d * s2, mm2 = min * m2;
        for (int l = 0; l < 32; l++) y[64 * j + l] = d1 * (q[l] & 0xF) - mm1;
        for (int l = 0; l < 32; l++) y[64 * j + 32 + l] = d2 * (q[l] >> 4) - mm2;
    }
}

/* Q6_K: ql[128] low nibbles, qh[64] high 2-bit pairs, int8 scales[16], f16 d. */
static void deq_q6_k(const uint8_t *b, float *y) {
    const float d = get_f16(b + 208);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

/* Q8_K: float d, int8 qs[256], int16 bsums[16] (not needed here). */
static void deq_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

/* ---- public entry points --------------------------------------------------------------- */

llmops_status llmops_quantize_row(int type, const float *x, void *dst, size_t n, llmops_error *err) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti) return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "unknown tensor type %d", type);
    if (n % ti->block_size)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%zu elements is not a whole number of %s blocks (%u)",
                                n, ti->name, ti->block_size);
    if (n && (!x || !dst)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "NULL buffer");
    switch (type) {
    case LLMOPS_DTYPE_F32: memcpy(dst, x, n * sizeof(float)); return LLMOPS_OK;
    case LLMOPS_DTYPE_F16:
    case LLMOPS_DTYPE_BF16: return llmops_convert_floats(LLMOPS_DTYPE_F32, x, type, dst, n, err);
    case LLMOPS_DTYPE_Q8_0:
    case LLMOPS_DTYPE_Q4_0:
    case LLMOPS_DTYPE_Q4_K:
    case LLMOPS_DTYPE_Q6_K:
    case LLMOPS_DTYPE_Q8_K: break;
    default: return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "quantizing to %s is not supported", ti->name);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "element %zu is not finite (%g)", i, (double)x[i]);
    size_t nb = n / ti->block_size;
    switch (type) {
    case LLMOPS_DTYPE_Q8_0: quantize_q8_0(x, dst, nb); break;
    case LLMOPS_DTYPE_Q4_0: quantize_q4_0(x, dst, nb); break;
    case LLMOPS_DTYPE_Q4_K: quantize_q4_K(x, dst, nb); break;
    case LLMOPS_DTYPE_Q6_K: quantize_q6_K(x, dst, nb); break;
    default: quantize_q8_K(x, dst, nb); break;
    }
    return LLMOPS_OK;
}

llmops_status llmops_dequantize_row(int type, const void *src, float *dst, size_t n, llmops_error *err) {
    if (n && (!src || !dst)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "NULL buffer");
    void (*deq)(const uint8_t *, float *) = type == LLMOPS_DTYPE_Q4_K   ? deq_q4_k
                                            : type == LLMOPS_DTYPE_Q6_K ? deq_q6_k
                                            : type == LLMOPS_DTYPE_Q8_K ? deq_q8_k
                                                                        : NULL;
    if (!deq) return llmops_dequantize_ref(type, src, dst, n, err);
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (n % QK_K)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%zu elements is not a whole number of %s blocks", n,
                                ti->name);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / QK_K; i++) deq(b + i * ti->type_size, dst + i * QK_K);
    return LLMOPS_OK;
}
