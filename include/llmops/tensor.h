/*
 * llmops/tensor.h — element types and their storage layout.
 *
 * An llmops_dtype names how a tensor's elements are stored. GGML's types keep
 * GGML's numeric ids (so a GGUF type id is an llmops_dtype), and the types only
 * safetensors has (BOOL, U8, ...) sit above 100. Quantized types store blocks
 * of `block_size` elements in `type_size` bytes; a row's element count must be
 * a multiple of the block size.
 *
 *     const llmops_dtype_info *ti = llmops_dtype_get(LLMOPS_DTYPE_Q4_K);
 *     // ti->block_size == 256, ti->type_size == 144
 *     uint64_t bytes;
 *     llmops_dtype_row_bytes(LLMOPS_DTYPE_Q4_K, 4096, &bytes);   // 2304
 */
#ifndef LLMOPS_TENSOR_H
#define LLMOPS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_MAX_DIMS 8

typedef enum llmops_dtype {
    LLMOPS_DTYPE_F32 = 0,
    LLMOPS_DTYPE_F16 = 1,
    LLMOPS_DTYPE_Q4_0 = 2,
    LLMOPS_DTYPE_Q4_1 = 3,
    LLMOPS_DTYPE_Q5_0 = 6,
    LLMOPS_DTYPE_Q5_1 = 7,
    LLMOPS_DTYPE_Q8_0 = 8,
    LLMOPS_DTYPE_Q8_1 = 9,
    LLMOPS_DTYPE_Q2_K = 10,
    LLMOPS_DTYPE_Q3_K = 11,
    LLMOPS_DTYPE_Q4_K = 12,
    LLMOPS_DTYPE_Q5_K = 13,
    LLMOPS_DTYPE_Q6_K = 14,
    LLMOPS_DTYPE_Q8_K = 15,
    LLMOPS_DTYPE_IQ2_XXS = 16,
    LLMOPS_DTYPE_IQ2_XS = 17,
    LLMOPS_DTYPE_IQ3_XXS = 18,
    LLMOPS_DTYPE_IQ1_S = 19,
    LLMOPS_DTYPE_IQ4_NL = 20,
    LLMOPS_DTYPE_IQ3_S = 21,
    LLMOPS_DTYPE_IQ2_S = 22,
    LLMOPS_DTYPE_IQ4_XS = 23,
    LLMOPS_DTYPE_I8 = 24,
    LLMOPS_DTYPE_I16 = 25,
    LLMOPS_DTYPE_I32 = 26,
    LLMOPS_DTYPE_I64 = 27,
    LLMOPS_DTYPE_F64 = 28,
    LLMOPS_DTYPE_IQ1_M = 29,
    LLMOPS_DTYPE_BF16 = 30,
    LLMOPS_DTYPE_TQ1_0 = 34,
    LLMOPS_DTYPE_TQ2_0 = 35,
    LLMOPS_DTYPE_MXFP4 = 39,
    /* types that only safetensors stores */
    LLMOPS_DTYPE_BOOL = 100,
    LLMOPS_DTYPE_U8 = 101,
    LLMOPS_DTYPE_U16 = 102,
    LLMOPS_DTYPE_U32 = 103,
    LLMOPS_DTYPE_U64 = 104,
    LLMOPS_DTYPE_F8_E4M3 = 105,
    LLMOPS_DTYPE_F8_E5M2 = 106
} llmops_dtype;

typedef struct llmops_dtype_info {
    llmops_dtype type;
    const char *name;        /* GGML spelling: "F32", "Q4_K", "BF16"; "BOOL", "U8" ...   */
    const char *st_name;     /* safetensors dtype string, NULL if safetensors lacks it */
    uint32_t block_size;     /* elements per block (1 for plain types)                */
    uint32_t type_size;      /* bytes per block                                        */
    int quantized;
    int in_gguf;             /* a GGML type, valid in GGUF files                      */
} llmops_dtype_info;

/* Layout of `type`, or NULL for an id that is no known type. */
const llmops_dtype_info *llmops_dtype_get(int type);
/* Case-insensitive lookup by GGML name ("q4_k") or safetensors name ("F32"). */
const llmops_dtype_info *llmops_dtype_by_name(const char *name);
/* Same, only among safetensors dtype strings (exact case). */
const llmops_dtype_info *llmops_dtype_by_st_name(const char *name, size_t len);
const char *llmops_dtype_name(int type);

/*
 * Bytes that n_elements of `type` occupy, with `row_len` elements per row
 * (the innermost dimension) that must be a multiple of the block size.
 * Fails with FORMAT on a partial block and LIMIT on overflow.
 */
llmops_status llmops_dtype_nbytes(int type, uint64_t row_len, uint64_t n_elements,
                                  uint64_t *out, llmops_error *err);

/* ---- scalar conversions (round to nearest even, NaN stays NaN) -------------- */

uint16_t llmops_fp32_to_fp16(float f);
float llmops_fp16_to_fp32(uint16_t h);
uint16_t llmops_fp32_to_bf16(float f);
float llmops_bf16_to_fp32(uint16_t b);

/* n floats to halves, bit-identical to llmops_fp32_to_fp16 on each (F16C when the CPU has it).
 * src and dst may not overlap. */
void llmops_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n);

/* 1 when the CPU has F16C and AVX and the OS saves the ymm registers (x86-64), else 0; checked once.
 * (clang's __builtin_cpu_supports does not know "f16c".) */
int llmops_cpu_has_f16c(void);

/*
 * Converts n elements between the float types F32, F16, BF16 and F64
 * (source F64 only); returns UNSUPPORTED for other pairs. src and dst may not
 * overlap. Unaligned pointers are fine.
 */
llmops_status llmops_convert_floats(int src_type, const void *src, int dst_type, void *dst,
                                    size_t n, llmops_error *err);

/*
 * Reference dequantisation to F32 of n elements (a whole number of blocks):
 * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, and the float types. Other types are
 * UNSUPPORTED.
 */
llmops_status llmops_dequantize_ref(int type, const void *src, float *dst, size_t n, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
