/*
 * Reference (scalar) dequantisation of GGML's 32-element block types.
 * Block layouts follow ggml-common.h: Q8_0 = {f16 d; int8 qs[32]},
 * Q4_0 = {f16 d; uint8 qs[16]} with low nibbles for elements 0..15 and high
 * nibbles for 16..31, offset by 8; Q4_1 adds f16 m; Q5_* add 32 high bits.
 */
#include <string.h>

#include "llmops/tensor.h"

static float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return llmops_fp16_to_fp32(h);
}

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0x0f) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0x0f) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

static void deq_q5(const uint8_t *b, float *y, int has_min) {
    float d = h2f(b), m = has_min ? h2f(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh;
    memcpy(&qh, p, 4);
    const uint8_t *qs = p + 4;
    int off = has_min ? 0 : 16;
    for (int j = 0; j < 16; j++) {
        int h0 = (int)((qh >> j) << 4) & 0x10;
        int h1 = (int)(qh >> (j + 12)) & 0x10;
        y[j] = d * (float)(((qs[j] & 0x0f) | h0) - off) + m;
        y[j + 16] = d * (float)(((qs[j] >> 4) | h1) - off) + m;
    }
}


llmops_status llmops_dequantize_ref(int type, const void *src, float *dst, size_t n, llmops_error *err) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti) return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "unknown tensor type %d", type);
    if (!ti->quantized) return llmops_convert_floats(type, src, LLMOPS_DTYPE_F32, dst, n, err);
    if (n % ti->block_size)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%zu elements is not a whole number of %s blocks", n,
                                ti->name);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / ti->block_size; i++, b += ti->type_size, dst += ti->block_size) {
        switch (type) {
        case LLMOPS_DTYPE_Q8_0: deq_q8_0(b, dst); break;
        case LLMOPS_DTYPE_Q4_0: deq_q4_0(b, dst); break;
        case LLMOPS_DTYPE_Q4_1: deq_q4_1(b, dst); break;
        case LLMOPS_DTYPE_Q5_0: deq_q5(b, dst, 0); break;
        case LLMOPS_DTYPE_Q5_1: deq_q5(b, dst, 1); break;
        default:
            return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "dequantising %s is not supported", ti->name);
        }
    }
    return LLMOPS_OK;
}
