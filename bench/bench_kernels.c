/*
 * Matrix kernels: matvec throughput per weight type in GB/s of weights read,
 * against the memory bandwidth measured in the same run by a STREAM-style
 * triad (a[i] = b[i] + s·c[i] over 3 × 64 MiB, counted as 24 bytes/element
 * as STREAM does); matmul GFLOP/s for a 64-token prefill; and a 512-token
 * prefill on a small model's shapes per type and path.
 *
 * "cold" matvec rotates over enough copies of the weight (>= 256 MiB in all)
 * that each call streams from DRAM, as in decoding a model larger than the
 * caches; "hot" repeats one matrix, which may sit in L3. Best of several runs.
 *
 *     make BUILD=build/release bench && build/release/bench_kernels [threads [pp|tg]]
 *
 * "pp": only the prefill lines; "tg": only the one-token (decode) lines, Q8_0
 * and Q4_0 matvec GB/s on SmolLM-135M's and TinyLlama-1.1B's shapes, hot
 * (one matrix: L2-resident where it fits) and cold, on 1 and 2 threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmops/alloc.h"
#include "llmops/kernels.h"
#include "llmops/threadpool.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static float rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1p-53 * 2 - 1);
}

/* ---- STREAM triad ----------------------------------------------------------------- */

typedef struct {
    float *a;
    const float *b, *c;
    float s;
} triad_ctx;

static void triad(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    triad_ctx *t = ctx;
    for (size_t i = begin; i < end; i++) t->a[i] = t->b[i] + t->s * t->c[i];
}

/* STREAM triad GB/s, counting 24 bytes per element as STREAM does. */
static double triad_gbs(llmops_threadpool *pool) {
    const size_t n = 16u << 20; /* 64 MiB per array */
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    if (!a || !b || !c) return 0;
    for (size_t i = 0; i < n; i++) a[i] = 0, b[i] = 1, c[i] = 2;
    triad_ctx t = {a, b, c, 3.0f};
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now();
        llmops_threadpool_parallel_for(pool, n, 1u << 16, triad, &t);
        double dt = now() - t0;
        if (rep && dt < best) best = dt; /* the first run faults the pages in */
    }
    free(a), free(b), free(c);
    return 3.0 * 4 * (double)n / best / 1e9;
}

/* ---- kernels ---------------------------------------------------------------------- */

static size_t row_bytes(int type, size_t cols) {
    uint64_t b = 0;
    llmops_dtype_nbytes(type, cols, cols, &b, NULL);
    return (size_t)b;
}

static double time_matvec(int type, uint8_t *const *copies, int n_copies, size_t rows, size_t cols,
                          const float *x, float *y, llmops_threadpool *pool, int reps) {
    double best = 1e30;
    llmops_error err = {0};
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        if (llmops_matvec(type, copies[rep % n_copies], rows, cols, x, y, pool, &err)) {
            fprintf(stderr, "matvec: %s\n", err.msg);
            exit(1);
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

enum { PP_TOK = 512 };

/* Best-of-10 GFLOP/s of W (rows x cols, from src) times PP_TOK tokens. */
static double pp_gflops(int type, const float *src, size_t rows, size_t cols, const float *X, float *Y,
                        llmops_threadpool *pool, double *secs) {
    size_t rb = row_bytes(type, cols);
    uint8_t *W = malloc(rows * rb);
    if (!W) exit(1);
    for (size_t r = 0; r < rows; r++) llmops_quantize_row(type, src + r * cols, W + r * rb, cols, NULL);
    double best = 1e30;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = now();
        llmops_matmul(type, W, rows, cols, X, PP_TOK, Y, pool, NULL);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    free(W);
    *secs = best;
    return 2.0 * (double)rows * (double)cols * PP_TOK / best / 1e9;
}

static void pp_line(int type, const float *src, const float *X, float *Y, llmops_threadpool *pool) {
    /* SmolLM-135M; for the 256-element super-blocks, widths 768 and 2048 (576 is not a multiple of 256) */
    static const size_t smol[3][2] = {{576, 576}, {1536, 576}, {576, 1536}}, wide[3][2] = {{768, 768}, {2048, 768}, {768, 2048}};
    /* per layer: q, o; k, v (a third of q's rows each, counted as 2/3 of one); gate, up; down */
    static const double count[3] = {2 + 2.0 / 3, 2, 1};
    const size_t(*shapes)[2] = llmops_dtype_get(type)->block_size == 256 ? wide : smol;
    printf("  %-11s %-5s", llmops_kernels_isa(), llmops_dtype_name(type));
    double flops = 0, secs = 0;
    for (int s = 0; s < 3; s++) {
        double dt, g = pp_gflops(type, src, shapes[s][0], shapes[s][1], X, Y, pool, &dt);
        flops += count[s] * 2.0 * (double)shapes[s][0] * (double)shapes[s][1] * PP_TOK;
        secs += count[s] * dt;
        printf(" %8.1f", g);
    }
    printf(" %8.1f\n", flops / secs / 1e9);
}

/* The prefill lines, on each SIMD path this CPU has. */
static void pp_section(const float *src, llmops_threadpool *pool) {
    static const char *const paths[] = {"avx2", "avx512"};
    /* prefill on a small model's shapes: SmolLM-135M's q/o (576x576), gate/up (1536x576) and down (576x1536) */
    printf("\nprefill n=%d, GFLOP/s: rows x cols 576x576, 1536x576, 576x1536 (SmolLM-135M; K-quants 768x768,\n"
           "2048x768, 768x2048), and all three weighted as in a layer:\n", PP_TOK);
    static const int pptypes[] = {LLMOPS_DTYPE_F16, LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0, LLMOPS_DTYPE_Q4_K,
                                  LLMOPS_DTYPE_Q6_K};
    float *PX = malloc((size_t)PP_TOK * 2048 * sizeof(float)), *PY = malloc((size_t)PP_TOK * 2048 * sizeof(float));
    if (!PX || !PY) exit(1);
    for (size_t i = 0; i < (size_t)PP_TOK * 2048; i++) PX[i] = rnd();
    for (size_t p = 0; p < 2; p++) {
        if (!llmops_kernels_isa_available(paths[p])) continue;
        llmops_kernels_set_isa(paths[p], NULL);
        for (size_t t = 0; t < sizeof pptypes / sizeof pptypes[0]; t++)
            pp_line(pptypes[t], src, PX, PY, pool);
    }
    llmops_kernels_set_isa("auto", NULL);
    free(PX), free(PY);
}

/* ---- one token: the decode shapes ------------------------------------------------------ */

/* Best GB/s of matvec on rows x cols of `type`, hot (one matrix) and cold (copies >= 256 MiB in all). */
static void tg_shape(int type, const float *src, size_t rows, size_t cols, const float *x, float *y,
                     llmops_threadpool *pool, double *hot, double *cold) {
    size_t rb = row_bytes(type, cols), bytes = rows * rb, n_copies = ((size_t)256 << 20) / bytes + 1;
    uint8_t *all = malloc(n_copies * bytes);
    if (!all) exit(1);
    for (size_t r = 0; r < rows; r++) /* rows past the source's 4096x4096 floats wrap around */
        llmops_quantize_row(type, src + r * cols % (4096 * 4096 - cols), all + r * rb, cols, NULL);
    for (size_t c = 1; c < n_copies; c++) memcpy(all + c * bytes, all, bytes);
    double best_hot = 1e30, best_cold = 1e30;
    for (int pass = 0; pass < 2; pass++) {
        size_t reps = pass ? 2 * n_copies : ((size_t)64 << 20) / bytes + 20;
        for (size_t rep = 0; rep < reps; rep++) {
            double t0 = now();
            llmops_matvec(type, all + (pass ? rep % n_copies * bytes : 0), rows, cols, x, y, pool, NULL);
            double dt = now() - t0, *best = pass ? &best_cold : &best_hot;
            if (dt < *best) *best = dt;
        }
    }
    *hot = (double)bytes / 1e9 / best_hot;
    *cold = (double)bytes / 1e9 / best_cold;
    free(all);
}

/* The decode lines: per type and shape, hot and cold GB/s on 1 thread and on the pool's. */
static void tg_section(const float *src, llmops_threadpool *pool, double bw) {
    static const size_t shapes[][2] = {{576, 576},  {1536, 576},   {576, 1536},  {49152, 576},
                                       {2048, 2048}, {5632, 2048}, {2048, 5632}};
    static const int types[] = {LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0};
    float *x = malloc(8192 * sizeof(float)), *y = malloc(65536 * sizeof(float));
    if (!x || !y) exit(1);
    for (size_t i = 0; i < 8192; i++) x[i] = rnd();
    int nth = llmops_threadpool_n_threads(pool);
    printf("one token (matvec), GB/s of weights: hot (one matrix) and cold (from DRAM), 1 and %d threads;\n"
           "cold/triad on %d threads:\n", nth, nth);
    printf("  %-5s %12s %8s %8s %8s %8s %10s\n", "type", "rows x cols", "hot 1", "cold 1", "hot n", "cold n",
           "cold/triad");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            double h1, c1, hn, cn;
            tg_shape(types[t], src, shapes[s][0], shapes[s][1], x, y, NULL, &h1, &c1);
            tg_shape(types[t], src, shapes[s][0], shapes[s][1], x, y, pool, &hn, &cn);
            printf("  %-5s %5zux%-6zu %8.1f %8.1f %8.1f %8.1f %10.2f\n", llmops_dtype_name(types[t]), shapes[s][0],
                   shapes[s][1], h1, c1, hn, cn, cn / bw);
        }
    free(x), free(y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 0;
    llmops_threadpool *pool = NULL;
    llmops_error err = {0};
    if (llmops_threadpool_create(threads, &pool, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    int nth = llmops_threadpool_n_threads(pool);
    const int pp_only = argc > 2 && !strcmp(argv[2], "pp"), tg_only = argc > 2 && !strcmp(argv[2], "tg");
    double bw = triad_gbs(pool);
    printf("kernels: %s, %d threads; STREAM triad %.1f GB/s\n\n", llmops_kernels_isa(), nth, bw);

    static const int types[] = {LLMOPS_DTYPE_F32,  LLMOPS_DTYPE_F16,  LLMOPS_DTYPE_BF16, LLMOPS_DTYPE_Q8_0,
                                LLMOPS_DTYPE_Q6_K, LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q4_0};
    const size_t N = 4096 * 4096, MM_TOK = 64;
    float *src = malloc(N * sizeof(float)), *x = malloc(8192 * sizeof(float)), *y = malloc(8192 * sizeof(float));
    float *X = malloc(MM_TOK * 4096 * sizeof(float)), *Y = malloc(MM_TOK * 4096 * sizeof(float));
    if (!src || !x || !y || !X || !Y) return 1;
    for (size_t i = 0; i < N; i++) src[i] = rnd();
    for (size_t i = 0; i < 8192; i++) x[i] = rnd();
    for (size_t i = 0; i < MM_TOK * 4096; i++) X[i] = rnd();
    if (pp_only) { /* bench_kernels THREADS pp: only the prefill lines */
        printf("kernels: %d threads\n", nth);
        pp_section(src, pool);
        return 0;
    }
    if (tg_only) {
        tg_section(src, pool, bw);
        return 0;
    }

    printf("%-5s %8s | %-28s | %-28s | %10s\n", "", "", "matvec 4096x4096", "matvec 2048x8192", "matmul n=64");
    printf("%-5s %8s | %8s %8s %10s | %8s %8s %10s | %10s\n", "type", "MiB", "cold", "hot", "cold/triad", "cold",
           "hot", "cold/triad", "GFLOP/s");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int type = types[t];
        /* one 4096x4096 matrix; its bytes are also a valid 2048x8192 one (rows are whole blocks) */
        size_t bytes = 4096 * row_bytes(type, 4096);
        int n_copies = (int)((256u << 20) / bytes) + 1;
        if (n_copies < 2) n_copies = 2;
        uint8_t *copies[64];
        for (int c = 0; c < n_copies; c++) {
            copies[c] = malloc(bytes);
            if (!copies[c]) return 1;
        }
        for (size_t r = 0; r < 4096; r++)
            if (llmops_quantize_row(type, src + r * 4096, copies[0] + r * row_bytes(type, 4096), 4096, &err)) {
                fprintf(stderr, "quantize: %s\n", err.msg);
                return 1;
            }
        for (int c = 1; c < n_copies; c++) memcpy(copies[c], copies[0], bytes);

        double gb = (double)bytes / 1e9;
        printf("%-5s %8.1f |", llmops_dtype_name(type), (double)bytes / (1 << 20));
        static const size_t shapes[2][2] = {{4096, 4096}, {2048, 8192}};
        for (int s = 0; s < 2; s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1];
            double cold = time_matvec(type, copies, n_copies, rows, cols, x, y, pool, 3 * n_copies);
            double hot = time_matvec(type, copies, 1, rows, cols, x, y, pool, 20);
            printf(" %8.1f %8.1f %10.2f |", gb / cold, gb / hot, gb / cold / bw);
        }
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            if (llmops_matmul(type, copies[0], 4096, 4096, X, MM_TOK, Y, pool, &err)) {
                fprintf(stderr, "matmul: %s\n", err.msg);
                return 1;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf(" %10.1f\n", 2.0 * 4096 * 4096 * MM_TOK / best / 1e9);
        for (int c = 0; c < n_copies; c++) free(copies[c]);
    }

    /* the same matvec and matmul on each path this CPU has */
    printf("\nper path, Q4_K, Q8_0 and Q4_0 4096x4096 (cold matvec GB/s, matmul n=64 GFLOP/s):\n");
    static const char *const paths[] = {"scalar", "avx2", "avx512"};
    static const int ptypes[] = {LLMOPS_DTYPE_Q4_K, LLMOPS_DTYPE_Q8_0, LLMOPS_DTYPE_Q4_0};
    for (size_t p = 0; p < 3; p++) {
        if (!llmops_kernels_isa_available(paths[p])) continue;
        llmops_kernels_set_isa(paths[p], NULL);
        printf("  %-11s", llmops_kernels_isa());
        for (size_t t = 0; t < sizeof ptypes / sizeof ptypes[0]; t++) {
            int type = ptypes[t];
            size_t bytes = 4096 * row_bytes(type, 4096);
            int n_copies = (int)((256u << 20) / bytes) + 1;
            uint8_t *copies[64];
            for (int c = 0; c < n_copies; c++) {
                copies[c] = malloc(bytes);
                if (!copies[c]) return 1;
            }
            for (size_t r = 0; r < 4096; r++)
                llmops_quantize_row(type, src + r * 4096, copies[0] + r * row_bytes(type, 4096), 4096, NULL);
            for (int c = 1; c < n_copies; c++) memcpy(copies[c], copies[0], bytes);
            double cold = time_matvec(type, copies, n_copies, 4096, 4096, x, y, pool, 2 * n_copies);
            double t0 = now();
            llmops_matmul(type, copies[0], 4096, 4096, X, MM_TOK, Y, pool, NULL);
            double dt = now() - t0;
            printf("  %s %6.1f GB/s %7.1f GFLOP/s", llmops_dtype_name(type), (double)bytes / 1e9 / cold,
                   2.0 * 4096 * 4096 * MM_TOK / dt / 1e9);
            for (int c = 0; c < n_copies; c++) free(copies[c]);
        }
        printf("\n");
    }
    llmops_kernels_set_isa("auto", NULL);

    pp_section(src, pool);
    free(src), free(x), free(y), free(X), free(Y);
    llmops_threadpool_free(pool);
    return 0;
}
