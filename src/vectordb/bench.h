/*
 * src/vectordb/bench.h — the ANN benchmark of the vector index, shared by
 * bench/bench_vdb.c and `llmops vdb bench`.
 *
 * It reads the files of the hnswlib anchor harness (../shared/bench/ann):
 *     ds.bin  int32 n, int32 dim, int32 nq, float32 base[n][dim], float32 queries[nq][dim]
 *     gt.bin  int32 nq, int32 k, int32 ids[nq][k]   (exact top-k, best first)
 * builds an HNSW index over base (label = row number), then for each ef
 * measures recall@k against gt.bin and queries per second (wall and process
 * CPU time), best of `reps` runs after one warm-up pass — the same protocol
 * and the same printed table as hnsw_bench, so the two can be compared line
 * by line on the same machine.
 *
 *     llmops_vdb_bench_opts o;
 *     llmops_vdb_bench_opts_init(&o);
 *     o.ds_path = "ann-data/ds.bin"; o.gt_path = "ann-data/gt.bin"; o.out = stdout;
 *     llmops_vdb_bench_result r;
 *     if (llmops_vdb_bench_run(&o, &r, &err)) fprintf(stderr, "%s\n", err.msg);
 */
#ifndef LLMOPS_VECTORDB_BENCH_H
#define LLMOPS_VECTORDB_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llmops/status.h"
#include "vectordb/index.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_VDB_BENCH_MAX_EF 16

typedef struct llmops_vdb_bench_opts {
    const char *ds_path;          /* required                                            */
    const char *gt_path;          /* NULL: recall is computed against exact search       */
    uint32_t M;                   /* 16                                                  */
    uint32_t ef_construction;     /* 200                                                 */
    uint32_t efs[LLMOPS_VDB_BENCH_MAX_EF]; /* 16, 32, 64, 128                            */
    size_t n_efs;
    size_t k;                     /* 10                                                  */
    int reps;                     /* 3                                                   */
    int threads;                  /* query threads, 1                                    */
    llmops_distance dist;         /* IP: the files hold unit vectors, gt is by dot       */
    int flat;                     /* 1: also time an exact scan (1 pass)                 */
    const char *save_path;        /* non-NULL: save the index there and time a reload    */
    const char *load_path;        /* non-NULL: load this index instead of building one   */
    FILE *out;                    /* progress and the table; NULL = silent               */
} llmops_vdb_bench_opts;

typedef struct llmops_vdb_bench_row {
    uint32_t ef;
    double recall;
    double qps_wall, ms_per_query, qps_cpu;
} llmops_vdb_bench_row;

typedef struct llmops_vdb_bench_result {
    size_t n, dim, nq, k;
    double read_s;
    double flat_qps_wall, flat_qps_cpu, flat_recall; /* when opts.flat */
    double build_wall_s, build_cpu_s;
    double save_s, load_s;                            /* when opts.save_path */
    size_t index_bytes;
    size_t n_rows;
    llmops_vdb_bench_row rows[LLMOPS_VDB_BENCH_MAX_EF];
} llmops_vdb_bench_result;

void llmops_vdb_bench_opts_init(llmops_vdb_bench_opts *o);

/* Runs the benchmark; fills *r. Errors: IO / FORMAT for the files, NOMEM. */
llmops_status llmops_vdb_bench_run(const llmops_vdb_bench_opts *o, llmops_vdb_bench_result *r, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
