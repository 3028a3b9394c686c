/*
 * llmops bench: prompt processing and generation speed of a model, with the
 * machine's memory bandwidth measured in the same run (a STREAM-style triad)
 * and the resulting ratio of generation speed to its bandwidth bound (bytes
 * of weights one token reads).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/kernels.h"
#include "llmops/model.h"
#include "llmops/threadpool.h"

void usage_bench(FILE *out) {
    fprintf(out,
            "usage: llmops bench -m MODEL [-p 512] [-n 128] [--batch N] [--threads N] [--reps 3] [--json]\n\n"
            "Measures prompt processing (a batch of -p tokens) and generation (-n tokens one at a\n"
            "time) in tokens/s, best of --reps runs after one that warms up, and right after each\n"
            "generation run the memory bandwidth of a STREAM triad a[i] = b[i] + s*c[i] over arrays\n"
            "far larger than the caches, sustained for as long as the run took (bytes of all its\n"
            "passes over their time; the best pass is reported too); prints the generation speed as\n"
            "a fraction of the bound bandwidth / (weight bytes per token), the median over the runs\n"
            "of each run against its own triad. The same for the plain read bandwidth (b and c\n"
            "summed, nothing written), measured after each triad: generation reads its weights and\n"
            "writes almost nothing.\n"
            "Also prints the peak resident memory of the warm-up run (before the triad's arrays)\n"
            "beside what it cannot go below: the model file (memory-mapped) plus the KV cache.\n"
            "--batch N evaluates the prompt in passes of at most N tokens (the context's n_batch;\n"
            "default -p): fewer activations in memory, each weight read once per pass.\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    float *a, *b, *c;
    float s;
} triad_job;

static void triad(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const triad_job *j = ctx;
    float *restrict a = j->a;
    const float *restrict b = j->b, *restrict c = j->c;
    const float s = j->s;
    for (size_t i = begin; i < end; i++) a[i] = b[i] + s * c[i];
}

/*
 * The triad's arrays, 3 × 192 MiB, in huge pages as the weights are mapped (llmops_mmap_open): the bound
 * must not come from a smaller page size than the weights are read through (4 KiB pages read some 30%
 * slower here). Every page is touched once at allocation.
 */
enum { TRIAD_N = 48 << 20 };
#define TRIAD_BYTES ((size_t)TRIAD_N * sizeof(float))

/* 1 when all three arrays are there; triad_free frees whichever are, in either case. */
static int triad_alloc(triad_job *j) {
    *j = (triad_job){llmops_huge_alloc(TRIAD_BYTES), llmops_huge_alloc(TRIAD_BYTES), llmops_huge_alloc(TRIAD_BYTES), 3.0f};
    if (!j->a || !j->b || !j->c) return 0;
    for (size_t i = 0; i < TRIAD_N; i++) j->a[i] = 0, j->b[i] = 1, j->c[i] = 2;
    return 1;
}

static void triad_free(triad_job *j) {
    llmops_huge_free(j->a, TRIAD_BYTES), llmops_huge_free(j->b, TRIAD_BYTES), llmops_huge_free(j->c, TRIAD_BYTES);
}

/*
 * A bandwidth measured over as long as the generation run it is set against. Generation's speed is its
 * 128 tokens over the whole run; a pass of the triad lasts some 17 ms. This VM's bandwidth swings on
 * both scales, and the best of two short passes sat above what the same triad sustained for the length
 * of a run: 2.5 s of passes averaged 0.85-1.07 (median 0.94) of the best of two passes that followed
 * them. So `sustained` is the bytes of all the passes over their time, passes made for `seconds` after
 * one that warms up (two at least), and `peak` their best, reported beside it.
 */
typedef struct {
    double sustained, peak;
} anchor_bw;

typedef void (*anchor_pass)(void *ctx, size_t begin, size_t end, int ith);

/* The passes of fn over the arrays for `seconds` (after one not counted), bytes_per_elem a pass's
 * element; *passes (if not NULL): how many were counted. */
static anchor_bw anchor_run(llmops_threadpool *pool, anchor_pass fn, void *ctx, double bytes_per_elem, double seconds,
                            int *passes) {
    anchor_bw a = {0, 0};
    llmops_threadpool_parallel_for(pool, TRIAD_N, TRIAD_N / 256, fn, ctx);
    const double start = now_s();
    int n = 0;
    for (double t0 = start, t1; n < 2 || t0 - start < seconds; t0 = t1, n++) {
        llmops_threadpool_parallel_for(pool, TRIAD_N, TRIAD_N / 256, fn, ctx);
        t1 = now_s();
        const double bw = bytes_per_elem * (double)TRIAD_N / (t1 - t0);
        if (bw > a.peak) a.peak = bw;
    }
    a.sustained = bytes_per_elem * (double)TRIAD_N * n / (now_s() - start);
    if (passes) *passes = n;
    return a;
}

/* The triad's bandwidth in bytes/s (12 bytes moved per element: two reads, one write). */
static anchor_bw triad_bw(llmops_threadpool *pool, triad_job *j, double seconds) {
    return anchor_run(pool, triad, j, 12.0, seconds, NULL);
}

/* Sums of b's and c's 64-bit words (read, nothing written), four independent sums in registers so that
 * the loads, not the adds, set the pace (a vectorized sum of 32-bit words kept its partial sums on the
 * stack and read no more than 22 GB/s per thread). */
typedef struct {
    const triad_job *t;
    uint64_t sum[LLMOPS_THREADPOOL_MAX_THREADS];
} read_job;

static void read_words(void *ctx, size_t begin, size_t end, int ith) {
    read_job *j = ctx;
    const uint64_t *b = (const uint64_t *)(const void *)j->t->b, *c = (const uint64_t *)(const void *)j->t->c;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = begin / 2; i < end / 2; i += 4) { /* element i of the arrays is word i / 2 */
        s0 += b[i] + c[i];
        s1 += b[i + 1] + c[i + 1];
        s2 += b[i + 2] + c[i + 2];
        s3 += b[i + 3] + c[i + 3];
    }
    if (ith >= 0 && ith < LLMOPS_THREADPOOL_MAX_THREADS) j->sum[ith] += s0 + s1 + s2 + s3;
}

/* The machine's read bandwidth in bytes/s (8 bytes per element: b and c): what the weights see in
 * generation, whose stream writes almost nothing. Measured as the triad; zeros if the sums are not
 * what the arrays hold (b all 1.0f, c all 2.0f: the reads happened). */
static anchor_bw read_bw(llmops_threadpool *pool, const triad_job *t, double seconds) {
    read_job j = {t, {0}};
    int n;
    anchor_bw a = anchor_run(pool, read_words, &j, 8.0, seconds, &n);
    uint64_t all = 0;
    for (int i = 0; i < LLMOPS_THREADPOOL_MAX_THREADS; i++) all += j.sum[i];
    const uint64_t pair = 0x3F8000003F800000ull + 0x4000000040000000ull; /* a word of b plus one of c */
    return all == (uint64_t)(n + 1) * (uint64_t)(TRIAD_N / 2) * pair ? a : (anchor_bw){0, 0};
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(const double *v, int n) {
    double t[64];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/*
 * Of the model's mapped pages, the fraction mapped through huge pages: over the read-only file mappings of
 * 2 MiB or more (the weights; not the program's and libraries' small ones), FilePmdMapped against Rss in
 * /proc/self/smaps. Against what the runs touched, not the file's size: a token embedding that is not
 * also the output (TinyLlama) is read a few rows at a time. −1 where it cannot be told.
 */
static double weights_huge_fraction(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    double rss = 0, pmd = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, inode;
        char perms[8], dev[16];
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, &off, dev, &inode) == 6) {
            in = inode != 0 && perms[0] == 'r' && perms[1] == '-' && perms[2] == '-' && hi - lo >= (2ul << 20);
            continue;
        }
        if (in && !strncmp(line, "Rss:", 4)) rss += strtod(line + 4, NULL);
        else if (in && !strncmp(line, "FilePmdMapped:", 14)) pmd += strtod(line + 14, NULL);
    }
    fclose(f);
    return rss > 0 ? (pmd >= rss ? 1 : pmd / rss) : -1;
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
                                         {"n-gen", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
                                         {"reps", required_argument, 0, 'r'},  {"json", no_argument, 0, 'j'},
                                         {"batch", required_argument, 0, 'b'}, {0, 0, 0, 0}};
    const char *model = NULL;
    int pp = 512, tg = 128, threads = 0, reps = 3, json = 0, batch = 0, c;
    while ((c = getopt_long(argc, argv, "m:p:n:b:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': pp = atoi(optarg); break;
        case 'n': tg = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'j': json = 1; break;
        case 'b': batch = atoi(optarg); break;
        default: return cli_usage_error("bench", "unknown option");
        }
    }
    if (!model || pp < 1 || tg < 1 || reps < 1 || reps > 64 || batch < 0)
        return cli_usage_error("bench", "need -m MODEL; -p, -n positive, --reps 1 to 64, --batch not negative");
    llmops_error err = {0};
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m = NULL;
    llmops_context *ctx = NULL;
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_ctx = (uint32_t)(pp > tg ? pp : tg) + 8;
    cp.n_batch = (uint32_t)(batch > 0 && batch < pp ? batch : pp);
    cp.n_threads = threads;
    if (llmops_model_load(model, &mp, &m, &err) || llmops_context_create(m, &cp, &ctx, &err)) {
        llmops_model_free(m);
        return cli_fail("%s", err.msg);
    }
    llmops_threadpool *pool = NULL;
    if (llmops_threadpool_create(threads, &pool, &err)) {
        llmops_context_free(ctx);
        llmops_model_free(m);
        return cli_fail("%s", err.msg);
    }
    int n_threads = llmops_threadpool_n_threads(pool);
    int64_t vocab = llmops_model_n_vocab(m);
    llmops_batch_item *b = llmops_malloc((size_t)pp * sizeof *b);
    double best_pp = 0, best_tg = 0, tg_rep[64], peak = 0;
    double bw_rep[64], bwp_rep[64], rd_rep[64], rdp_rep[64]; /* sustained and peak triads and reads */
    triad_job tj = {0};
    int r = 0, have_triad = 0;
    uint64_t seed = 1;
    /*
     * Each generation run is followed by a triad, then a read, each for as long as the run took: this
     * machine's bandwidth swings within seconds, and a triad taken once for all the runs (a fraction of a
     * second) measured a state the runs did not see as often as not (SmolLM Q4_0: fractions of 0.54-0.95
     * in runs whose generation speed varied by a tenth). The fraction of the bound is the median over the
     * runs of each against its own.
     */
    for (int rep = -1; rep < reps && !r; rep++) { /* run −1 warms up (first touches, as llama-bench's) and is not counted */
        llmops_kv_clear(ctx);
        for (int i = 0; i < pp; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            b[i] = (llmops_batch_item){(int32_t)((seed >> 33) % (uint64_t)vocab), i, 0, i == pp - 1};
        }
        double t0 = now_s();
        if (llmops_decode(ctx, b, (size_t)pp, &err)) r = cli_fail("%s", err.msg);
        double t = now_s() - t0;
        if (!r && rep >= 0 && pp / t > best_pp) best_pp = pp / t;
        llmops_kv_clear(ctx);
        t0 = now_s();
        for (int i = 0; i < tg && !r; i++) {
            llmops_batch_item one = {b[i % pp].token, i, 0, 1};
            if (llmops_decode(ctx, &one, 1, &err)) r = cli_fail("%s", err.msg);
        }
        t = now_s() - t0;
        if (r) break;
        if (rep < 0) {
            /* peak memory of the warm-up run, before the triad's arrays exist (the later runs allocate
             * nothing): against the mapped file plus the KV cache */
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            peak = (double)ru.ru_maxrss * 1024.0; /* KiB on Linux */
            have_triad = triad_alloc(&tj);
            continue;
        }
        tg_rep[rep] = tg / t;
        if (tg_rep[rep] > best_tg) best_tg = tg_rep[rep];
        const anchor_bw tb = have_triad ? triad_bw(pool, &tj, t) : (anchor_bw){0, 0};
        const anchor_bw rb = have_triad ? read_bw(pool, &tj, t) : (anchor_bw){0, 0};
        bw_rep[rep] = tb.sustained, bwp_rep[rep] = tb.peak, rd_rep[rep] = rb.sustained, rdp_rep[rep] = rb.peak;
    }
    triad_free(&tj);
    const double huge_frac = weights_huge_fraction();
    struct stat sb;
    double mapped = stat(model, &sb) == 0 && S_ISREG(sb.st_mode) ? (double)sb.st_size
                                                                  : (double)llmops_model_weight_bytes(m);
    const llmops_arch *a = llmops_model_arch(m);
    double kv = 2.0 * (double)a->n_layers * (double)llmops_context_n_ctx(ctx) * (double)(a->n_kv_heads * a->head_dim) *
                (cp.kv_type == LLMOPS_KV_F32 ? 4.0 : 2.0);
    const double bytes = (double)llmops_model_weight_bytes(m);
    /* medians over the runs: of each anchor, and of each run's speed against its own anchor's bound */
    const double *anc[4] = {bw_rep, bwp_rep, rd_rep, rdp_rep};
    double med[4] = {0}, fr[4] = {0};
    for (int k = 0; k < 4 && !r; k++) {
        double f[64];
        for (int i = 0; i < reps; i++) f[i] = anc[k][i] > 0 && bytes > 0 ? tg_rep[i] * bytes / anc[k][i] : 0;
        med[k] = median_of(anc[k], reps), fr[k] = median_of(f, reps);
    }
    const double bw = med[0], bound = bytes > 0 ? bw / bytes : 0, frac = fr[0], rd = med[2], rfrac = fr[2];
    if (!r && json) {
        printf("{\"model\": \"%s\", \"desc\": \"%s\", \"threads\": %d, \"isa\": \"%s\", \"pp\": %d, \"pp_tokens_per_s\": %.2f, "
               "\"n_batch\": %u, \"tg\": %d, \"tg_tokens_per_s\": %.2f, \"weight_bytes_per_token\": %.0f, \"triad_bytes_per_s\": %.0f, "
               "\"tg_bound_tokens_per_s\": %.2f, \"tg_fraction_of_bound\": %.3f, \"peak_rss_bytes\": %.0f, "
               "\"mapped_bytes\": %.0f, \"kv_bytes\": %.0f, \"memory_ratio\": %.3f, \"weights_huge_page_fraction\": %.3f, "
               "\"read_bytes_per_s\": %.0f, \"tg_fraction_of_read\": %.3f, \"triad_peak_bytes_per_s\": %.0f, "
               "\"tg_fraction_of_peak_bound\": %.3f, \"read_peak_bytes_per_s\": %.0f, \"tg_fraction_of_read_peak\": %.3f",
               model, llmops_model_desc(m), n_threads, llmops_kernels_isa(), pp, best_pp, cp.n_batch, tg, best_tg, bytes, bw, bound,
               frac, peak, mapped, kv, peak / (mapped + kv), huge_frac, rd, rfrac, med[1], fr[1], med[3], fr[3]);
        const char *key[5] = {"tg_tokens_per_s_per_run", "triad_bytes_per_s_per_run", "triad_peak_bytes_per_s_per_run",
                              "read_bytes_per_s_per_run", "read_peak_bytes_per_s_per_run"};
        const double *val[5] = {tg_rep, bw_rep, bwp_rep, rd_rep, rdp_rep};
        for (int k = 0; k < 5; k++) {
            printf(", \"%s\": [", key[k]);
            for (int i = 0; i < reps; i++) printf(k ? "%s%.0f" : "%s%.2f", i ? ", " : "", val[k][i]);
            printf("]");
        }
        printf("}\n");
    } else if (!r) {
        printf("model      %s (%s)\n", model, llmops_model_desc(m));
        printf("threads    %d, kernels %s\n", n_threads, llmops_kernels_isa());
        printf("pp%-7d  %9.2f tokens/s (passes of at most %u tokens)\n", pp, best_pp, cp.n_batch);
        printf("tg%-7d  %9.2f tokens/s\n", tg, best_tg);
        printf("bandwidth  %9.2f GB/s (STREAM triad after each generation run for as long as it, median); "
               "best passes %.2f GB/s\n", bw / 1e9, med[1] / 1e9);
        printf("weights    %9.2f MB read per generated token\n", bytes / 1e6);
        printf("bound      %9.2f tokens/s; generation at %.0f%% of it (median of the runs, each against its triad)\n",
               bound, 100.0 * frac);
        printf("read       %9.2f GB/s (plain read after each triad, median); generation at %.0f%% of its bound\n",
               rd / 1e9, 100.0 * rfrac);
        printf("peaks      generation at %.0f%% of the best triad passes' bound, %.0f%% of the best reads'\n",
               100.0 * fr[1], 100.0 * fr[3]);
        if (huge_frac >= 0) printf("huge pages %8.0f%% of the weights' mapped pages\n", 100.0 * huge_frac);
        printf("memory     %9.2f MB peak resident; model file %.2f MB + KV cache %.2f MB = %.2f MB (ratio %.2f)\n",
               peak / 1e6, mapped / 1e6, kv / 1e6, (mapped + kv) / 1e6, peak / (mapped + kv));
    }
    llmops_free(b);
    llmops_threadpool_free(pool);
    llmops_context_free(ctx);
    llmops_model_free(m);
    return r;
}
