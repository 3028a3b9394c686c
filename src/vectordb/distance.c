/*
 * Distance kernels: the scalar reference, a scalar fallback, and run-time
 * dispatch to the AVX2+FMA and AVX-512 versions (distance_avx2.c,
 * distance_avx512.c). Every path computes the same sums in a different
 * order, so results agree to rounding (tests/vectordb/test_hnsw.c checks
 * each against the reference).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vectordb/index.h"

/* ---- reference: one accumulator, in order ---------------------------------------- */

float llmops_l2sq_ref(const float *a, const float *b, size_t dim) {
    float s = 0.0f;
    for (size_t i = 0; i < dim; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

float llmops_dot_ref(const float *a, const float *b, size_t dim) {
    float s = 0.0f;
    for (size_t i = 0; i < dim; i++) s += a[i] * b[i];
    return s;
}

/* ---- scalar fallback: four independent accumulators ------------------------------- */

static float l2sq_scalar(const float *a, const float *b, size_t dim) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < dim; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

static float dot_scalar(const float *a, const float *b, size_t dim) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < dim; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* ---- dispatch ------------------------------------------------------------------------ */

int llmops_simd_supported(llmops_simd s) {
    switch (s) {
    case LLMOPS_SIMD_SCALAR: return 1;
#if defined(__x86_64__)
    case LLMOPS_SIMD_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case LLMOPS_SIMD_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

const char *llmops_simd_name(llmops_simd s) {
    switch (s) {
    case LLMOPS_SIMD_SCALAR: return "scalar";
    case LLMOPS_SIMD_AVX2: return "avx2";
    case LLMOPS_SIMD_AVX512: return "avx512";
    default: return "?";
    }
}

llmops_dist_kernel llmops_kernel_l2sq(llmops_simd s) {
    if (!llmops_simd_supported(s)) return NULL;
#if defined(__x86_64__)
    if (s == LLMOPS_SIMD_AVX512) return llmops_l2sq_avx512;
    if (s == LLMOPS_SIMD_AVX2) return llmops_l2sq_avx2;
#endif
    return l2sq_scalar;
}

llmops_dist_kernel llmops_kernel_dot(llmops_simd s) {
    if (!llmops_simd_supported(s)) return NULL;
#if defined(__x86_64__)
    if (s == LLMOPS_SIMD_AVX512) return llmops_dot_avx512;
    if (s == LLMOPS_SIMD_AVX2) return llmops_dot_avx2;
#endif
    return dot_scalar;
}

static llmops_simd g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void pick_best(void) {
    llmops_simd best = LLMOPS_SIMD_SCALAR;
    for (int s = LLMOPS_SIMD_N - 1; s > LLMOPS_SIMD_SCALAR; s--)
        if (llmops_simd_supported((llmops_simd)s)) {
            best = (llmops_simd)s;
            break;
        }
    const char *env = getenv("LLMOPS_SIMD");
    if (env && *env) {
        for (int s = 0; s < LLMOPS_SIMD_N; s++)
            if (!strcmp(env, llmops_simd_name((llmops_simd)s)) && s <= (int)best &&
                llmops_simd_supported((llmops_simd)s))
                best = (llmops_simd)s;
    }
    g_best = best;
}

llmops_simd llmops_simd_best(void) {
    pthread_once(&g_once, pick_best);
    return g_best;
}

const char *llmops_distance_name(llmops_distance d) {
    switch (d) {
    case LLMOPS_DIST_L2: return "l2";
    case LLMOPS_DIST_COSINE: return "cosine";
    case LLMOPS_DIST_IP: return "ip";
    default: return "?";
    }
}

float llmops_distance_eval(llmops_distance d, const float *a, const float *b, size_t dim) {
    llmops_simd s = llmops_simd_best();
    switch (d) {
    case LLMOPS_DIST_L2: return llmops_kernel_l2sq(s)(a, b, dim);
    case LLMOPS_DIST_IP: return 1.0f - llmops_kernel_dot(s)(a, b, dim);
    case LLMOPS_DIST_COSINE: {
        llmops_dist_kernel dot = llmops_kernel_dot(s);
        float na = dot(a, a, dim), nb = dot(b, b, dim);
        if (!(na > 0.0f) || !(nb > 0.0f)) return 1.0f;
        return 1.0f - dot(a, b, dim) / (sqrtf(na) * sqrtf(nb));
    }
    default: return NAN;
    }
}
