/* The ANN benchmark (see bench.h): same protocol and output as the hnswlib anchor harness. */
#include "vectordb/bench.h"

#include <string.h>
#include <time.h>

#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/threadpool.h"

void llmops_vdb_bench_opts_init(llmops_vdb_bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->M = 16;
    o->ef_construction = 200;
    static const uint32_t efs[] = {16, 32, 64, 128};
    memcpy(o->efs, efs, sizeof efs);
    o->n_efs = 4;
    o->k = 10;
    o->reps = 3;
    o->threads = 1;
    o->dist = LLMOPS_DIST_IP;
    o->flat = 1;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_loadavg(FILE *out, const char *when) {
    if (!out) return;
    char buf[128] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    }
    fprintf(out, "loadavg %s: %s", when, buf[0] ? buf : "n/a\n");
}

static int32_t rd32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One query batch over the pool. */
typedef struct qjob {
    const llmops_hnsw *h;
    const float *qs;
    size_t dim, k;
    int exact;
    uint64_t *labels; /* (nq, k) */
    size_t *found;    /* (nq)    */
    int failed;
} qjob;

static void run_queries(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    qjob *j = ctx;
    llmops_error err = {0};
    for (size_t i = begin; i < end; i++) {
        llmops_status st = j->exact ? llmops_hnsw_search_exact(j->h, j->qs + i * j->dim, j->k, NULL, NULL,
                                                               j->labels + i * j->k, NULL, &j->found[i], &err)
                                    : llmops_hnsw_search(j->h, j->qs + i * j->dim, j->k, NULL, NULL,
                                                         j->labels + i * j->k, NULL, &j->found[i], &err);
        if (st) j->failed = 1;
    }
}

static double recall_of(const qjob *j, size_t nq, const int32_t *gt, size_t gt_k) {
    size_t hits = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t a = 0; a < j->found[q]; a++)
            for (size_t b = 0; b < j->k; b++)
                if ((int64_t)j->labels[q * j->k + a] == gt[q * gt_k + b]) {
                    hits++;
                    break;
                }
    return (double)hits / ((double)nq * (double)j->k);
}

llmops_status llmops_vdb_bench_run(const llmops_vdb_bench_opts *o, llmops_vdb_bench_result *r, llmops_error *err) {
    memset(r, 0, sizeof *r);
    if (!o || !o->ds_path || o->k == 0 || o->n_efs > LLMOPS_VDB_BENCH_MAX_EF || o->reps < 1)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "vdb bench: bad options");
    FILE *out = o->out;
    llmops_mmap ds = {0}, gtm = {0};
    llmops_hnsw *h = NULL;
    llmops_threadpool *pool = NULL;
    int32_t *gt = NULL;
    qjob job = {0};
    llmops_status st;
    print_loadavg(out, "start");
    double t0 = wall_now();
    if ((st = llmops_mmap_open(o->ds_path, &ds, err))) goto done;
    if (ds.size < 12) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: too short for a header", o->ds_path);
        goto done;
    }
    int32_t n = rd32(ds.data), dim = rd32(ds.data + 4), nq = rd32(ds.data + 8);
    uint64_t want = 12;
    if (n <= 0 || dim <= 0 || dim > (int32_t)LLMOPS_HNSW_MAX_DIM || nq <= 0 ||
        (want += 4ull * (uint64_t)dim * ((uint64_t)n + (uint64_t)nq)) != ds.size) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header n=%d dim=%d nq=%d does not match %zu bytes",
                              o->ds_path, n, dim, nq, ds.size);
        goto done;
    }
    const float *base = (const float *)(ds.data + 12), *qs = base + (size_t)n * (size_t)dim;
    r->n = (size_t)n;
    r->dim = (size_t)dim;
    r->nq = (size_t)nq;
    r->k = o->k;
    size_t k = o->k, gt_k = k;
    if (o->gt_path) {
        if ((st = llmops_mmap_open(o->gt_path, &gtm, err))) goto done;
        if (gtm.size < 8 || rd32(gtm.data) != nq || rd32(gtm.data + 4) < (int32_t)k ||
            gtm.size != 8 + 4ull * (uint64_t)nq * (uint64_t)rd32(gtm.data + 4)) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: not a ground truth for %d queries with k >= %zu",
                                  o->gt_path, nq, k);
            goto done;
        }
        gt_k = (size_t)rd32(gtm.data + 4);
        gt = llmops_malloc((size_t)nq * gt_k * sizeof(int32_t));
        if (!gt) goto nomem;
        memcpy(gt, gtm.data + 8, (size_t)nq * gt_k * sizeof(int32_t));
    }
    r->read_s = wall_now() - t0;
    if (out) fprintf(out, "loaded %s: n=%d dim=%d nq=%d (%.2fs)\n", o->ds_path, n, dim, nq, r->read_s);

    llmops_hnsw_params p;
    llmops_hnsw_params_init(&p);
    p.M = o->M;
    p.ef_construction = o->ef_construction;
    if ((st = llmops_hnsw_create((uint32_t)dim, o->dist, &p, &h, err))) goto done;
    if ((st = llmops_hnsw_reserve(h, (size_t)n, err))) goto done;
    int threads = o->threads < 1 ? 1 : o->threads;
    if ((st = llmops_threadpool_create(threads, &pool, err))) goto done;
    job.h = h;
    job.qs = qs;
    job.dim = (size_t)dim;
    job.k = k;
    job.labels = llmops_calloc((size_t)nq * k, sizeof(uint64_t));
    job.found = llmops_calloc((size_t)nq, sizeof(size_t));
    if (!job.labels || !job.found) goto nomem;

    /* build: single thread, insertion order 0..n-1 */
    t0 = wall_now();
    double c0 = cpu_now();
    if (o->load_path) {
        llmops_hnsw *g = NULL;
        if ((st = llmops_hnsw_load(o->load_path, &g, NULL, err))) goto done;
        if (llmops_hnsw_dim(g) != (uint32_t)dim || llmops_hnsw_count(g) != (size_t)n) {
            llmops_hnsw_free(g);
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: not an index of %s", o->load_path, o->ds_path);
            goto done;
        }
        llmops_hnsw_free(h);
        h = g;
        job.h = g;
    } else {
        for (int32_t i = 0; i < n; i++)
            if ((st = llmops_hnsw_add(h, (uint64_t)i, base + (size_t)i * (size_t)dim, err))) goto done;
    }
    r->build_wall_s = wall_now() - t0;
    r->build_cpu_s = cpu_now() - c0;
    r->index_bytes = llmops_hnsw_memory(h);

    if (!gt) { /* ground truth from the exact scan over the same vectors */
        gt = llmops_malloc((size_t)nq * k * sizeof(int32_t));
        if (!gt) goto nomem;
        job.exact = 1;
        llmops_threadpool_parallel_for(pool, (size_t)nq, 1, run_queries, &job);
        for (size_t i = 0; i < (size_t)nq * k; i++) gt[i] = (int32_t)job.labels[i];
        job.exact = 0;
    }
    if (o->flat) {
        job.exact = 1;
        t0 = wall_now();
        c0 = cpu_now();
        llmops_threadpool_parallel_for(pool, (size_t)nq, 1, run_queries, &job);
        double tw = wall_now() - t0, tc = cpu_now() - c0;
        job.exact = 0;
        r->flat_qps_wall = nq / tw;
        r->flat_qps_cpu = nq / tc;
        r->flat_recall = recall_of(&job, (size_t)nq, gt, gt_k);
        if (out)
            fprintf(out, "flat SIMD scan (float32, %d thread%s, %s): wall %.1f QPS (%.3f ms/query), cpu %.1f QPS, recall@%zu=%.4f\n",
                    threads, threads > 1 ? "s" : "", llmops_simd_name(llmops_simd_best()), r->flat_qps_wall,
                    1000.0 * tw / nq, r->flat_qps_cpu, k, r->flat_recall);
    }
    if (out)
        fprintf(out,
                o->load_path ? "llmops load (no build): M=%u ef_construction=%u: wall %.2fs (%.0f nodes/s), cpu %.2fs (%.0f nodes/s), index ~%.1f MiB (vectors %.1f MiB)\n" : "llmops build: M=%u ef_construction=%u: wall %.2fs (%.0f inserts/s), cpu %.2fs (%.0f inserts/s), index ~%.1f MiB (vectors %.1f MiB)\n",
                o->M, o->ef_construction, r->build_wall_s, n / r->build_wall_s, r->build_cpu_s, n / r->build_cpu_s,
                (double)r->index_bytes / 1048576.0, (double)n * dim * 4 / 1048576.0);
    if (o->save_path) {
        t0 = wall_now();
        if ((st = llmops_hnsw_save(h, o->save_path, 1, err))) goto done;
        r->save_s = wall_now() - t0;
        llmops_hnsw *g = NULL;
        t0 = wall_now();
        if ((st = llmops_hnsw_load(o->save_path, &g, NULL, err))) goto done;
        r->load_s = wall_now() - t0;
        llmops_hnsw_free(h);
        h = g;
        job.h = g;
        if (out) fprintf(out, "saved %s in %.2fs, reloaded in %.2fs (searches below use the reloaded index)\n",
                         o->save_path, r->save_s, r->load_s);
    }

    if (out) fprintf(out, "%-8s %-10s %-12s %-10s %-12s\n", "ef", "recall@k", "QPS(wall)", "ms/query", "QPS(cpu)");
    for (size_t e = 0; e < o->n_efs; e++) {
        llmops_hnsw_set_ef(h, o->efs[e]);
        llmops_threadpool_parallel_for(pool, (size_t)nq, 1, run_queries, &job); /* warm-up */
        double best = 1e30, best_cpu = 1e30;
        for (int rep = 0; rep < o->reps; rep++) {
            t0 = wall_now();
            c0 = cpu_now();
            llmops_threadpool_parallel_for(pool, (size_t)nq, 16, run_queries, &job);
            double tw = wall_now() - t0, tc = cpu_now() - c0;
            if (tw < best) best = tw;
            if (tc < best_cpu) best_cpu = tc;
        }
        if (job.failed) {
            st = llmops_error_set(err, LLMOPS_ERR_INTERNAL, "vdb bench: a search failed");
            goto done;
        }
        llmops_vdb_bench_row *row = &r->rows[r->n_rows++];
        row->ef = o->efs[e];
        row->recall = recall_of(&job, (size_t)nq, gt, gt_k);
        row->qps_wall = nq / best;
        row->ms_per_query = 1000.0 * best / nq;
        row->qps_cpu = nq / best_cpu;
        if (out)
            fprintf(out, "%-8u %-10.4f %-12.1f %-10.4f %-12.1f\n", row->ef, row->recall, row->qps_wall,
                    row->ms_per_query, row->qps_cpu);
    }
    print_loadavg(out, "end");
    st = LLMOPS_OK;
    goto done;
nomem:
    st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb bench: out of memory");
done:
    llmops_free(job.labels);
    llmops_free(job.found);
    llmops_free(gt);
    llmops_threadpool_free(pool);
    llmops_hnsw_free(h);
    llmops_mmap_close(&gtm);
    llmops_mmap_close(&ds);
    return st;
}
