#include <math.h>
#include <string.h>
#include <strings.h>

#include "llmops/alloc.h"
#include "llmops/tensor.h"

#define QK 32
#define QKK 256

/* Block layouts are GGML's (ggml-common.h): e.g. Q4_K = d, dmin (2×f16),
 * 12 bytes of 6-bit scales, 128 bytes of nibbles → 144 bytes per 256. */
static const llmops_dtype_info k_types[] = {
    {LLMOPS_DTYPE_F32, "F32", "F32", 1, 4, 0, 1},
    {LLMOPS_DTYPE_F16, "F16", "F16", 1, 2, 0, 1},
    {LLMOPS_DTYPE_Q4_0, "Q4_0", NULL, QK, 2 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_Q4_1, "Q4_1", NULL, QK, 4 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_Q5_0, "Q5_0", NULL, QK, 2 + 4 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_Q5_1, "Q5_1", NULL, QK, 4 + 4 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_Q8_0, "Q8_0", NULL, QK, 2 + QK, 1, 1},
    {LLMOPS_DTYPE_Q8_1, "Q8_1", NULL, QK, 4 + QK, 1, 1},
    {LLMOPS_DTYPE_Q2_K, "Q2_K", NULL, QKK, QKK / 16 + QKK / 4 + 4, 1, 1},
    {LLMOPS_DTYPE_Q3_K, "Q3_K", NULL, QKK, QKK / 8 + QKK / 4 + 12 + 2, 1, 1},
    {LLMOPS_DTYPE_Q4_K, "Q4_K", NULL, QKK, 4 + 12 + QKK / 2, 1, 1},
    {LLMOPS_DTYPE_Q5_K, "Q5_K", NULL, QKK, 4 + 12 + QKK / 8 + QKK / 2, 1, 1},
    {LLMOPS_DTYPE_Q6_K, "Q6_K", NULL, QKK, QKK / 2 + QKK / 4 + QKK / 16 + 2, 1, 1},
    {LLMOPS_DTYPE_Q8_K, "Q8_K", NULL, QKK, 4 + QKK + QKK / 16 * 2, 1, 1},
    {LLMOPS_DTYPE_IQ2_XXS, "IQ2_XXS", NULL, QKK, 2 + QKK / 4, 1, 1},
    {LLMOPS_DTYPE_IQ2_XS, "IQ2_XS", NULL, QKK, 2 + QKK / 4 + QKK / 32, 1, 1},
    {LLMOPS_DTYPE_IQ3_XXS, "IQ3_XXS", NULL, QKK, 2 + 3 * QKK / 8, 1, 1},
    {LLMOPS_DTYPE_IQ1_S, "IQ1_S", NULL, QKK, 2 + QKK / 8 + QKK / 16, 1, 1},
    {LLMOPS_DTYPE_IQ4_NL, "IQ4_NL", NULL, QK, 2 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_IQ3_S, "IQ3_S", NULL, QKK, 2 + QKK / 4 + QKK / 8 + QKK / 32 + 4, 1, 1},
    {LLMOPS_DTYPE_IQ2_S, "IQ2_S", NULL, QKK, 2 + QKK / 4 + QKK / 16, 1, 1},
    {LLMOPS_DTYPE_IQ4_XS, "IQ4_XS", NULL, QKK, 2 + 2 + QKK / 64 + QKK / 2, 1, 1},
    {LLMOPS_DTYPE_I8, "I8", "I8", 1, 1, 0, 1},
    {LLMOPS_DTYPE_I16, "I16", "I16", 1, 2, 0, 1},
    {LLMOPS_DTYPE_I32, "I32", "I32", 1, 4, 0, 1},
    {LLMOPS_DTYPE_I64, "I64", "I64", 1, 8, 0, 1},
    {LLMOPS_DTYPE_F64, "F64", "F64", 1, 8, 0, 1},
    {LLMOPS_DTYPE_IQ1_M, "IQ1_M", NULL, QKK, QKK / 8 + QKK / 16 + QKK / 32, 1, 1},
    {LLMOPS_DTYPE_BF16, "BF16", "BF16", 1, 2, 0, 1},
    {LLMOPS_DTYPE_TQ1_0, "TQ1_0", NULL, QKK, 2 + 4 * 13, 1, 1},
    {LLMOPS_DTYPE_TQ2_0, "TQ2_0", NULL, QKK, 2 + 64, 1, 1},
    {LLMOPS_DTYPE_MXFP4, "MXFP4", NULL, QK, 1 + QK / 2, 1, 1},
    {LLMOPS_DTYPE_BOOL, "BOOL", "BOOL", 1, 1, 0, 0},
    {LLMOPS_DTYPE_U8, "U8", "U8", 1, 1, 0, 0},
    {LLMOPS_DTYPE_U16, "U16", "U16", 1, 2, 0, 0},
    {LLMOPS_DTYPE_U32, "U32", "U32", 1, 4, 0, 0},
    {LLMOPS_DTYPE_U64, "U64", "U64", 1, 8, 0, 0},
    {LLMOPS_DTYPE_F8_E4M3, "F8_E4M3", "F8_E4M3", 1, 1, 0, 0},
    {LLMOPS_DTYPE_F8_E5M2, "F8_E5M2", "F8_E5M2", 1, 1, 0, 0},
};

#define N_TYPES (sizeof k_types / sizeof k_types[0])

const llmops_dtype_info *llmops_dtype_get(int type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if ((int)k_types[i].type == type) return &k_types[i];
    return NULL;
}

const llmops_dtype_info *llmops_dtype_by_name(const char *name) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcasecmp(k_types[i].name, name) == 0) return &k_types[i];
    return NULL;
}

const llmops_dtype_info *llmops_dtype_by_st_name(const char *name, size_t len) {
    for (size_t i = 0; i < N_TYPES; i++) {
        const char *s = k_types[i].st_name;
        if (s && strlen(s) == len && memcmp(s, name, len) == 0) return &k_types[i];
    }
    return NULL;
}

const char *llmops_dtype_name(int type) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    return ti ? ti->name : "?";
}

llmops_status llmops_dtype_nbytes(int type, uint64_t row_len, uint64_t n_elements,
                                  uint64_t *out, llmops_error *err) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti) return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "unknown tensor type id %d", type);
    if (row_len % ti->block_size != 0)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "row length %llu is not a multiple of the %s block size %u",
                                (unsigned long long)row_len, ti->name, ti->block_size);
    uint64_t blocks = n_elements / ti->block_size;
    if (!llmops_mul_ok(blocks, ti->type_size, out))
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "tensor byte size overflows 64 bits");
    return LLMOPS_OK;
}

/* ---- half-precision conversions -------------------------------------------- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t llmops_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) /* inf or NaN; NaN keeps a quiet payload bit */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow → inf */
    if (e <= 0) {
        /* subnormal half (or zero): shift the full mantissa, round to nearest even */
        if (e < -10) return (uint16_t)sign;
        uint32_t m = man | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into inf: correct */
    return (uint16_t)(sign | h);
}

/*
 * A row of floats to halves, bit-identical to llmops_fp32_to_fp16 on every
 * input: F16C's vcvtps2ph with immediate rounding 0 rounds to nearest even,
 * sends overflow to ±inf, flushes nothing (DAZ/FTZ do not apply to it) and
 * turns a NaN into sign | 0x7e00 | payload >> 13, as the scalar code does.
 */
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("avx,f16c"))) static void fp32_to_fp16_row_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), a);
        _mm_storeu_si128((__m128i *)(dst + i + 8), b);
    }
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = llmops_fp32_to_fp16(src[i]);
}
#endif

void llmops_fp32_to_fp16_row(const float *src, uint16_t *dst, size_t n) {
#if defined(__x86_64__)
    if (llmops_cpu_has_f16c()) {
        fp32_to_fp16_row_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = llmops_fp32_to_fp16(src[i]);
}

/* AVX (CPUID.1:ECX bit 28, with the OS saving the ymm state: OSXSAVE bit 27 and XCR0 bits 1-2) and F16C (bit 29). */
int llmops_cpu_has_f16c(void) {
#if defined(__x86_64__)
    static int known = -1; /* racing threads compute the same answer */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        unsigned a, b, c, d;
        k = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27)) && (c & (1u << 28)) && (c & (1u << 29))) {
            uint32_t lo, hi;
            __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            k = (lo & 6u) == 6u;
        }
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
#else
    return 0;
#endif
}

float llmops_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

uint16_t llmops_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float llmops_bf16_to_fp32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

static int is_float_type(int t) {
    return t == LLMOPS_DTYPE_F32 || t == LLMOPS_DTYPE_F16 || t == LLMOPS_DTYPE_BF16 ||
           t == LLMOPS_DTYPE_F64;
}

static float load_float(int t, const uint8_t *p) {
    switch (t) {
    case LLMOPS_DTYPE_F32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case LLMOPS_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return llmops_fp16_to_fp32(h);
    }
    case LLMOPS_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return llmops_bf16_to_fp32(h);
    }
    default: {
        double d;
        memcpy(&d, p, 8);
        return (float)d;
    }
    }
}

/*
 * F64 → F16/BF16 through float must not round twice (1 + 2^-11 + 2^-40 would
 * land on a half tie and go to even). Narrowing to float with round-to-odd
 * keeps the information the second rounding needs: float has 13 more bits
 * than F16 and 16 more than BF16, so the final RNE is the correct one.
 */
static float f64_to_f32_odd(const uint8_t *p) {
    double d;
    memcpy(&d, p, 8);
    float f = (float)d;
    if (!isfinite(f) || (double)f == d) return f;
    uint32_t u = f32_bits(f);
    if (fabs((double)f) > fabs(d)) u--; /* rounded away from zero: step back toward it */
    return bits_f32(u | 1u);
}

llmops_status llmops_convert_floats(int src_type, const void *src, int dst_type, void *dst,
                                    size_t n, llmops_error *err) {
    if (!is_float_type(src_type) || !is_float_type(dst_type) || dst_type == LLMOPS_DTYPE_F64)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "cannot convert %s to %s",
                                llmops_dtype_name(src_type), llmops_dtype_name(dst_type));
    const uint8_t *s = src;
    uint8_t *d = dst;
    size_t ss = llmops_dtype_get(src_type)->type_size;
    size_t ds = llmops_dtype_get(dst_type)->type_size;
    if (src_type == dst_type) {
        memcpy(dst, src, n * ss);
        return LLMOPS_OK;
    }
    for (size_t i = 0; i < n; i++) {
        float f = src_type == LLMOPS_DTYPE_F64 && dst_type != LLMOPS_DTYPE_F32 ? f64_to_f32_odd(s + i * ss)
                                                                              : load_float(src_type, s + i * ss);
        if (dst_type == LLMOPS_DTYPE_F32) {
            memcpy(d + i * ds, &f, 4);
        } else {
            uint16_t h = dst_type == LLMOPS_DTYPE_F16 ? llmops_fp32_to_fp16(f) : llmops_fp32_to_bf16(f);
            memcpy(d + i * ds, &h, 2);
        }
    }
    return LLMOPS_OK;
}
