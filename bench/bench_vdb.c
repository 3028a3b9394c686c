/*
 * HNSW build and query throughput on the hnswlib anchor harness's files
 * (../shared/bench/ann: ds.bin / gt.bin), printed in the same shape as
 * hnsw_bench so the two can be compared in one session on one machine.
 *
 *     make bench
 *     build/release/bench_vdb --ds /tmp/ann/ann-data/ds.bin --gt /tmp/ann/ann-data/gt.bin
 *         [--M 16 --efc 200 --efs 16,32,64,128 --k 10 --reps 3 --threads 1
 *          --dist ip|cosine|l2 --no-flat --save FILE --load FILE]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectordb/bench.h"

static int parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > 0xffffffffUL) return 0;
    *out = (uint32_t)v;
    return 1;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_vdb --ds FILE [--gt FILE] [--M 16] [--efc 200] [--efs 16,32,64,128] [--k 10]\n"
                    "                 [--reps 3] [--threads 1] [--dist ip|cosine|l2] [--no-flat] [--save FILE] [--load FILE]\n");
}

int main(int argc, char **argv) {
    llmops_vdb_bench_opts o;
    llmops_vdb_bench_opts_init(&o);
    o.out = stdout;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint32_t u = 0;
        if (!strcmp(a, "--no-flat")) {
            o.flat = 0;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--ds")) o.ds_path = v;
        else if (!strcmp(a, "--gt")) o.gt_path = v;
        else if (!strcmp(a, "--save")) o.save_path = v;
        else if (!strcmp(a, "--load")) o.load_path = v;
        else if (!strcmp(a, "--dist")) {
            if (!strcmp(v, "ip")) o.dist = LLMOPS_DIST_IP;
            else if (!strcmp(v, "cosine")) o.dist = LLMOPS_DIST_COSINE;
            else if (!strcmp(v, "l2")) o.dist = LLMOPS_DIST_L2;
            else {
                usage();
                return 2;
            }
        } else if (!strcmp(a, "--efs")) {
            o.n_efs = 0;
            for (const char *t = v; *t;) {
                char *end;
                errno = 0;
                unsigned long e = strtoul(t, &end, 10);
                if (errno || end == t || e == 0 || e > 65536 || o.n_efs == LLMOPS_VDB_BENCH_MAX_EF ||
                    (*end && *end != ',')) {
                    usage();
                    return 2;
                }
                o.efs[o.n_efs++] = (uint32_t)e;
                t = *end ? end + 1 : end;
            }
        } else if (parse_u32(v, &u)) {
            if (!strcmp(a, "--M")) o.M = u;
            else if (!strcmp(a, "--efc")) o.ef_construction = u;
            else if (!strcmp(a, "--k")) o.k = u;
            else if (!strcmp(a, "--reps")) o.reps = (int)u;
            else if (!strcmp(a, "--threads")) o.threads = (int)u;
            else {
                usage();
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    if (!o.ds_path) {
        usage();
        return 2;
    }
    llmops_vdb_bench_result r;
    llmops_error err = {0};
    if (llmops_vdb_bench_run(&o, &r, &err)) {
        fprintf(stderr, "bench_vdb: %s\n", err.msg);
        return 1;
    }
    return 0;
}
