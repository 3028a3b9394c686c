/*
 * llmops/kernels.h — weight formats and matrix kernels of the CPU inference engine.
 *
 * Weights are stored in GGML's block layouts (bit-compatible with GGUF), rows
 * contiguous; activations are F32. One call multiplies a whole weight matrix:
 *
 *     // W: 4096 rows × 4096 columns of Q4_K, straight from a GGUF mapping
 *     const void *W = llmops_gguf_tensor_data(g, t);
 *     float x[4096], y[4096];
 *     llmops_matvec(LLMOPS_DTYPE_Q4_K, W, 4096, 4096, x, y, pool, &err);     // y = W x
 *
 *     // prefill: 17 tokens at once, Y[17 × 4096] = X[17 × 4096] · Wᵀ
 *     llmops_matmul(LLMOPS_DTYPE_Q4_K, W, 4096, 4096, X, 17, Y, pool, &err);
 *
 *     // making weights: quantize a row exactly as ggml's reference quantizer does
 *     uint8_t q[16 * 144];                                   // 16 Q4_K blocks
 *     llmops_quantize_row(LLMOPS_DTYPE_Q4_K, row, q, 4096, &err);
 *     llmops_dequantize_row(LLMOPS_DTYPE_Q4_K, q, back, 4096, &err);
 *
 * Paths. Every kernel has a portable scalar reference (kernels.c) and, on
 * x86-64, AVX2+FMA+F16C and AVX-512 (F/BW/VL + VNNI) versions chosen at run
 * time by CPUID; the library is built without -mavx2, so it runs on any
 * x86-64 and builds on other architectures (scalar only). LLMOPS_ISA=scalar,
 * avx2 or avx512 in the environment caps the choice (read once, on first
 * use); llmops_kernels_set_isa does the same from code.
 *
 * Accuracy. F32, F16 and BF16 weights are multiplied with the F32
 * activations as they are. For the quantized weight types the activation
 * vector is quantized once per call, as ggml does — to Q8_0 for Q8_0/Q4_0
 * weights and to Q8_K for Q4_K/Q6_K — and the block dot products are done in
 * integers. Let ŵ be the dequantized weight row (llmops_dequantize_row), x the
 * activations, amax_b the largest |x_i| in the activation block b (32 or 256
 * elements) that holds element i, and S = Σ|ŵ_i·x_i|. Then
 *
 *     F32, F16, BF16: |dot − Σ ŵ_i x_i| <= 1e-5 · S                        (n <= 65536)
 *     Q4_K, Q6_K:     |dot − Σ ŵ_i x_i| <= Σ |ŵ_i| · amax_b / 224 + 1e-5 · S
 *     Q8_0, Q4_0:     |dot − Σ ŵ_i x_i| <= Σ |ŵ_i| · (amax_b / 224 + 4e-6) + 1e-5 · S
 *
 * Rounding x to 8 bits moves each x_i by at most amax_b/254; Q8_0 stores the
 * activation scale amax_b/127 as f16, which adds amax_b/2048 while it is a
 * normal f16 and up to 127·2^-25 < 4e-6 where it is subnormal (activation
 * blocks with amax_b < 8e-3); the 1e-5·S term covers float accumulation.
 * Activations must stay below 8e6 in magnitude for Q8_0/Q4_0 weights (f16
 * overflow), as in ggml. Every
 * SIMD path computes the same integer block sums as the scalar reference;
 * Q4_K and Q6_K results are identical across paths, F32/F16/BF16 results
 * agree within 1e-5·S (different float summation order). Q8_0 and Q4_0:
 * every path's dot and product of several tokens (llmops_matmul, n >= 2)
 * equal the scalar reference bit for bit (block after block,
 * sum + (d_w·d_x)·isum); the SIMD one-token product (decode) groups the
 * float sums for speed and agrees within 1e-5·S.
 */
#ifndef LLMOPS_KERNELS_H
#define LLMOPS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"
#include "llmops/tensor.h"
#include "llmops/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Quantizes n floats (a whole number of blocks) into dst, which must hold
 * llmops_dtype_nbytes(type, n, n) bytes. Types: Q8_0, Q4_0, Q4_K, Q6_K, Q8_K
 * (byte for byte ggml's quantize_row_*_ref), F16, BF16 (round to nearest
 * even, as ggml) and F32 (a copy). Fails with INVALID_ARG on a partial block
 * or a non-finite input, UNSUPPORTED for other types.
 */
llmops_status llmops_quantize_row(int type, const float *x, void *dst, size_t n, llmops_error *err);

/*
 * Dequantizes n elements (a whole number of blocks) of F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K or Q8_K into dst, with ggml's
 * dequantize_row_* arithmetic (so results match ggml bit for bit).
 */
llmops_status llmops_dequantize_row(int type, const void *src, float *dst, size_t n, llmops_error *err);

/*
 * Dot product of one weight row (n elements of F32, F16, BF16, Q8_0, Q4_0,
 * Q4_K or Q6_K) with n F32 activations, within the tolerance above. n must be
 * a whole number of blocks. Returns NAN for an unsupported type or a partial
 * block. Quantizes x into a small stack buffer chunk by chunk; for many rows
 * against one x, llmops_matvec quantizes x only once.
 */
float llmops_vec_dot(int type, const void *w_row, const float *x, size_t n);

/*
 * y[r] = Σ_c W[r][c]·x[c] for r < rows: W is rows × cols in `type` (any type
 * llmops_vec_dot takes), row-major, rows contiguous (row r starts at byte
 * r · row_bytes(type, cols)). cols must be a whole number of blocks. Rows are
 * split across the pool's threads; pool may be NULL (the calling thread does
 * it all). y must not overlap x or W. Fails with INVALID_ARG or UNSUPPORTED
 * (nothing written), or NOMEM for the activation buffer.
 */
llmops_status llmops_matvec(int type, const void *W, size_t rows, size_t cols, const float *x, float *y,
                            llmops_threadpool *pool, llmops_error *err);

/*
 * Y[t][r] = Σ_c X[t][c]·W[r][c] for n tokens: X is n × cols F32, Y is
 * n × rows F32 (both row-major), W as for llmops_matvec. The activations
 * are prepared once per call; each thread takes one contiguous range of
 * rows and runs it over the tokens a block at a time, with micro-kernels
 * that hold a few weight rows × a few tokens in registers (weights unpacked
 * once per tile, activations reused across its rows; Q8_0/Q4_0: 16 (AVX-512)
 * or 8 (AVX2) rows repacked once, tiles of 16 × 16 or 8 × 8). Each Y element
 * equals, bit for bit, what llmops_vec_dot returns for that row when
 * cols <= 8192, on every path, and what llmops_matvec computes for that
 * token — except for Q8_0/Q4_0 on the SIMD paths, whose matvec has a decode
 * kernel of its own (within the tolerance above).
 */
llmops_status llmops_matmul(int type, const void *W, size_t rows, size_t cols, const float *X, size_t n,
                            float *Y, llmops_threadpool *pool, llmops_error *err);

/*
 * Several products of one X (prefill's q, k and v; gate and up): part p
 * computes Y_p (n × rows_p) = X · W_pᵀ as llmops_matmul does, bit for bit,
 * with the activations prepared once when the parts take the same format
 * and all the parts' rows split across the threads in one parallel region.
 * Fails as llmops_matmul does (nothing is written on INVALID_ARG or
 * UNSUPPORTED).
 */
typedef struct llmops_matmul_part {
    int type;
    const void *W; /* rows × cols of type */
    size_t rows;
    float *Y;      /* (n, rows) */
} llmops_matmul_part;
llmops_status llmops_matmul_multi(const llmops_matmul_part *parts, size_t n_parts, size_t cols, const float *X,
                                  size_t n, llmops_threadpool *pool, llmops_error *err);

/*
 * Matrix × vector with the activations prepared once for several weights
 * (decode, where one normalized vector meets q, k and v, or gate and up):
 * llmops_act_format(type) names how `type` takes its activations (-1: no
 * kernel; weights of equal format can share one preparation);
 * llmops_act_prepare writes the prepared form of x into dst, which holds
 * llmops_act_bytes(type, cols) bytes and is 64-byte aligned (0 bytes: the
 * format is F32 and x itself is used); llmops_matvec_prepared then computes
 * y = W x on the calling thread, bit for bit what llmops_matvec returns. Its
 * arguments are not checked: rows > 0, cols a whole number of blocks.
 */
int llmops_act_format(int type);
size_t llmops_act_bytes(int type, size_t cols);
void llmops_act_prepare(int type, const float *x, size_t cols, void *dst);
void llmops_matvec_prepared(int type, const void *W, size_t rows, size_t cols, const void *act, const float *x,
                            float *y);

/*
 * Vector helpers of the forward pass, on the same paths as the matrix
 * kernels. llmops_vec_softmax: over the n scores s[i] with keep[i] != 0,
 * s[i] = exp(s[i] − max) (0 where keep[i] == 0, and everywhere when none is
 * kept); returns Σ s[i]. llmops_vec_silu_mul: y[i] *= g[i] / (1 + exp(−g[i]))
 * (SwiGLU). The SIMD exp is within 2 ulp of expf (subnormal results may
 * flush to 0); each element's value does not depend on its position or on n.
 */
float llmops_vec_softmax(float *s, const uint8_t *keep, size_t n);
void llmops_vec_silu_mul(float *y, const float *g, size_t n);
/*
 * Σ x[i]² of n floats, accumulated in double (each path adds in its own
 * order: within n·2⁻⁵² of the exact sum, relatively). Vector loads keep many
 * lines in flight: the norms of a decode step read a residual half of which
 * another core has just written.
 */
double llmops_vec_sumsq(const float *x, size_t n);

/* The path in use: "avx512vnni", "avx2" or "scalar". */
const char *llmops_kernels_isa(void);

/*
 * Selects a path by name ("scalar", "avx2", "avx512"/"avx512vnni", or "auto"
 * for the best this CPU has). UNSUPPORTED when the CPU lacks it. Not
 * synchronized with running kernels: call it between calls (tests, benches).
 */
llmops_status llmops_kernels_set_isa(const char *name, llmops_error *err);

/* Whether this CPU (and build) can run the path named as for set_isa. */
int llmops_kernels_isa_available(const char *name);

#ifdef LLMOPS_KERNELS_INTERNAL
/* ---- internal: shared by src/tensor/{quant,kernels,kernels_avx2,kernels_avx512}.c ---- */

#define LLMOPS_Q8_0_BYTES 34  /* f16 d; int8 qs[32]                 */
#define LLMOPS_Q8_K_BYTES 292 /* float d; int8 qs[256]; int16 bsums[16] */

typedef void (*llmops_kern_mm_fn)(const uint8_t *W, size_t row_bytes, size_t nr, const uint8_t *act,
                                  size_t act_stride, size_t nt, size_t cols, float *Y, size_t ldy);

/*
 * Q8S: a Q8_0-quantized activation vector laid out for the tiled Q8_0/Q4_0
 * kernels — cols bytes of the signed Q8_0 quants, then per 32-element block
 * b (nb = cols/32): nb floats d_b (the Q8_0 scale widened from f16), nb
 * int32 −128·Σq and nb int32 −8·Σq (Σq: the sum of the block's quants). The
 * two sums undo the offsets that let VPDPBUSD take the weights as its
 * unsigned operand: Q8_0 quants + 128, Q4_0 nibbles (q − 8 + 8). Then the
 * quants again in Q4_0's nibble order, 128 bytes per 4 blocks: the first 16
 * quants of each of the 4 blocks, then their last 16 (zeros past the last
 * block). Same values as llmops_kern_quantize_q8_0.
 */
static inline size_t llmops_kern_q8s_bytes(size_t cols) { return cols + cols / 32 * 12 + (cols / 32 + 3) / 4 * 128; }
void llmops_kern_quantize_q8s(const float *x, uint8_t *dst, size_t cols);
/* Writes the nibble-order copy of a Q8S vector whose quants are in place. */
void llmops_kern_q8s_fill_x4(uint8_t *dst, size_t cols);

/*
 * A 64-byte aligned scratch buffer of at least `bytes` owned by the calling
 * thread (grown on demand, freed when the thread exits), for kernels that
 * repack weights; NULL when it cannot be had (the kernel then works without).
 * Distinct from the activation buffer the drivers use.
 */
uint8_t *llmops_kern_scratch(size_t bytes);

/*
 * One path's kernels. The quantized dots take nb weight blocks and the
 * activations already quantized (Q8_0 blocks for q8_0/q4_0, Q8_K blocks for
 * q4_K/q6_K), one activation block per 32 (Q8_0) or 256 (Q8_K) elements.
 */
typedef struct llmops_kernel_table {
    const char *name;
    float (*dot_f32)(const float *w, const float *x, size_t n);
    float (*dot_f16)(const uint16_t *w, const float *x, size_t n);
    float (*dot_bf16)(const uint16_t *w, const float *x, size_t n);
    float (*dot_q8_0)(const void *w, const void *xq, size_t nb);
    float (*dot_q4_0)(const void *w, const void *xq, size_t nb);
    float (*dot_q4_K)(const void *w, const void *xq, size_t nb);
    float (*dot_q6_K)(const void *w, const void *xq, size_t nb);
    /*
     * Tiled products: Y[t·ldy + r] = row r of W · activation t, for r < nr and
     * t < nt, each exactly (bit for bit) what the dot above returns for that
     * pair. W rows are row_bytes apart; activation t starts at act + t·act_stride
     * in the layout the kernel takes: F32 rows for mm_f32/f16/bf16, Q8S (above)
     * for mm_q8_0/q4_0, Q8_K blocks for mm_q4_K/q6_K. mm_q8_0/q4_0 are called once
     * per thread with all the tokens (they block rows and tokens themselves);
     * the others with at most 32 tokens at a time. NULL: the driver calls the
     * dot for each pair instead, on standard Q8_0/Q8_K activation blocks.
     * Exception: where f_chain is nonzero, mm_f32/f16/bf16 get all the tokens
     * too, and with f_chain or more tokens give each pair
     * llmops_kern_dot_f_chain's result instead of the dot's (fewer: the dot).
     */
    llmops_kern_mm_fn mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_K, mm_q6_K;
    int f_chain;
    /* llmops_kern_quantize_q8s, byte for byte (NULL: that portable one is used) */
    void (*quantize_q8s)(const float *x, uint8_t *dst, size_t cols);
    /* llmops_vec_softmax's exponentials: s[i] = keep[i] ? exp(s[i] − mx) : 0, returns the sum (mx finite) */
    float (*exp_sum)(float *s, const uint8_t *keep, size_t n, float mx);
    /* llmops_vec_silu_mul */
    void (*silu_mul)(float *y, const float *g, size_t n);
    /* llmops_vec_sumsq */
    double (*sumsq)(const float *x, size_t n);
} llmops_kernel_table;

extern const llmops_kernel_table llmops_kernels_scalar;
#if defined(__x86_64__)
extern const llmops_kernel_table llmops_kernels_avx2;
extern const llmops_kernel_table llmops_kernels_avx512;
/*
 * Whether the AVX-512 path decodes Q4_0 (one token) with its AVX512_VBMI
 * kernel: 1 yes (the CPU must have VBMI and GFNI), 0 no (the VNNI-only kernel), −1 as
 * the CPU allows (the default, decided on first use). For tests.
 */
void llmops_kern_avx512_vbmi(int on);
#endif

/*
 * The float weights' multi-token order where a path sets f_chain (with at
 * least f_chain tokens): one float accumulator per (row, token),
 * acc = fmaf(w[i], x[i], acc) for i = 0..n−1 in order from acc = 0 (w
 * widened exactly from type F32/F16/BF16). The plain-C reference those
 * tiles are tested against bit for bit.
 */
float llmops_kern_dot_f_chain(int type, const void *w, const float *x, size_t n);

/* Activation quantizers (ggml's quantize_row_q8_0_ref / _q8_K_ref), nb blocks. */
void llmops_kern_quantize_q8_0(const float *x, void *dst, size_t nb);
void llmops_kern_quantize_q8_K(const float *x, void *dst, size_t nb);

/* ggml's get_scale_min_k4: 6-bit scale and min of Q4_K sub-block j (0..7). */
static inline void llmops_kern_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}
#endif /* LLMOPS_KERNELS_INTERNAL */

#ifdef __cplusplus
}
#endif
#endif
