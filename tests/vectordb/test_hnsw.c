/* The vector index: SIMD distances, exact search, HNSW recall, filters, deletes, persistence, OOM. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/hash.h"
#include "vectordb/index.h"

/* ---- data ----------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unif(rng *r) { return ((double)(rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double rng_normal(rng *r) {
    double u1 = rng_unif(r), u2 = rng_unif(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n points around `clusters` Gaussian centres (spread 1/sqrt(1 + j/8) in
 * dimension j, like the hnswlib anchor generator), noise sigma * (1 + j/8)^-decay
 * (a faster decay = a lower intrinsic dimension, as in real embeddings), each
 * point scaled by a factor in [0.9, 1.1] so norms differ (matters for IP and L2). */
static float *clustered_decay(size_t n, size_t dim, size_t clusters, double sigma, double decay, uint64_t seed) {
    rng r = {seed};
    float *c = malloc(clusters * dim * sizeof(float));
    float *x = malloc(n * dim * sizeof(float));
    for (size_t i = 0; i < clusters * dim; i++) c[i] = (float)(rng_normal(&r) / sqrt(1.0 + (double)(i % dim) / 8.0));
    for (size_t i = 0; i < n; i++) {
        size_t k = rng_u64(&r) % clusters;
        double scale = 0.9 + 0.2 * rng_unif(&r);
        for (size_t j = 0; j < dim; j++)
            x[i * dim + j] =
                (float)(scale * (c[k * dim + j] + sigma * rng_normal(&r) * pow(1.0 + (double)j / 8.0, -decay)));
    }
    free(c);
    return x;
}

static float *clustered(size_t n, size_t dim, size_t clusters, double sigma, uint64_t seed) {
    return clustered_decay(n, dim, clusters, sigma, 0.5, seed);
}

static uint64_t label_of(size_t i) { return (uint64_t)i * 7919u + 13u; }

/* The distance in double precision, straight from the definitions. */
static double ref_dist(llmops_distance d, const float *a, const float *b, size_t dim) {
    double s = 0, na = 0, nb = 0;
    for (size_t i = 0; i < dim; i++) {
        if (d == LLMOPS_DIST_L2) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        else s += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (d == LLMOPS_DIST_L2) return s;
    if (d == LLMOPS_DIST_IP) return 1.0 - s;
    return (na > 0 && nb > 0) ? 1.0 - s / (sqrt(na) * sqrt(nb)) : 1.0;
}

static llmops_hnsw *build(size_t n, size_t dim, llmops_distance d, const float *x, uint32_t M, uint32_t efc) {
    llmops_hnsw_params p;
    llmops_hnsw_params_init(&p);
    p.M = M;
    p.ef_construction = efc;
    llmops_hnsw *h = NULL;
    llmops_error err = {0};
    if (llmops_hnsw_create((uint32_t)dim, d, &p, &h, &err)) return NULL;
    for (size_t i = 0; i < n; i++)
        if (llmops_hnsw_add(h, label_of(i), x + i * dim, &err)) {
            llmops_hnsw_free(h);
            return NULL;
        }
    return h;
}

/* ---- distances ---------------------------------------------------------------------- */

TEST(hnsw_simd_kernels_match_reference) {
    rng r = {7};
    float a[1100], b[1100];
    int tested = 0;
    for (int s = 0; s < LLMOPS_SIMD_N; s++) {
        if (!llmops_simd_supported((llmops_simd)s)) continue;
        tested++;
        llmops_dist_kernel l2 = llmops_kernel_l2sq((llmops_simd)s), dot = llmops_kernel_dot((llmops_simd)s);
        CHECK(l2 && dot);
        for (size_t dim = 0; dim <= 1100; dim += dim < 130 ? 1 : 97) {
            for (size_t i = 0; i < dim; i++) {
                a[i] = (float)rng_normal(&r);
                b[i] = (float)rng_normal(&r);
            }
            double mag_l2 = 0, mag_dot = 0;
            for (size_t i = 0; i < dim; i++) {
                mag_l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
                mag_dot += fabs((double)a[i] * b[i]);
            }
            float rl = llmops_l2sq_ref(a, b, dim), rd = llmops_dot_ref(a, b, dim);
            float gl = l2(a, b, dim), gd = dot(a, b, dim);
            CHECK_MSG(fabs(gl - rl) <= 1e-5 * mag_l2 + 1e-6, "%s l2sq dim %zu: %.9g vs ref %.9g",
                      llmops_simd_name((llmops_simd)s), dim, gl, rl);
            CHECK_MSG(fabs(gd - rd) <= 1e-5 * mag_dot + 1e-6, "%s dot dim %zu: %.9g vs ref %.9g",
                      llmops_simd_name((llmops_simd)s), dim, gd, rd);
            /* misaligned pointers */
            if (dim > 1) {
                float g2 = dot(a + 1, b + 1, dim - 1), r2 = llmops_dot_ref(a + 1, b + 1, dim - 1);
                CHECK_MSG(fabs(g2 - r2) <= 1e-5 * mag_dot + 1e-6, "%s dot+1 dim %zu", llmops_simd_name((llmops_simd)s),
                          dim);
            }
        }
    }
    CHECK(tested >= 1);
    /* the dispatched evaluator against the double-precision definitions */
    for (int d = 0; d < 3; d++)
        for (size_t dim = 1; dim < 300; dim += 13) {
            for (size_t i = 0; i < dim; i++) {
                a[i] = (float)rng_normal(&r);
                b[i] = (float)rng_normal(&r);
            }
            double want = ref_dist((llmops_distance)d, a, b, dim);
            float got = llmops_distance_eval((llmops_distance)d, a, b, dim);
            CHECK_MSG(fabs(got - want) <= 1e-4 * (fabs(want) + (double)dim), "%s dim %zu: %g vs %g",
                      llmops_distance_name((llmops_distance)d), dim, got, want);
        }
    float z[4] = {0}, o[4] = {1, 2, 3, 4};
    CHECK(llmops_distance_eval(LLMOPS_DIST_COSINE, z, o, 4) == 1.0f);
    printf("    simd: best path %s\n", llmops_simd_name(llmops_simd_best()));
}

/* ---- exact search ------------------------------------------------------------------------ */

TEST(hnsw_exact_matches_bruteforce_double) {
    const size_t n = 1500, dim = 37, nq = 40, k = 10;
    float *x = clustered(n, dim, 20, 0.5, 11), *q = clustered(nq, dim, 20, 0.5, 12);
    for (int d = 0; d < 3; d++) {
        llmops_hnsw *h = build(n, dim, (llmops_distance)d, x, 8, 40);
        CHECK(h);
        llmops_error err = {0};
        for (size_t j = 0; j < nq; j++) {
            const float *qv = q + j * dim;
            uint64_t labels[10];
            float dists[10];
            size_t nf = 0;
            CHECK_OK(llmops_hnsw_search_exact(h, qv, k, NULL, NULL, labels, dists, &nf, &err), err);
            CHECK_EQ_INT(nf, k);
            /* brute force in double: the k-th best distance */
            double best[10];
            for (size_t t = 0; t < k; t++) best[t] = INFINITY;
            for (size_t i = 0; i < n; i++) {
                double dd = ref_dist((llmops_distance)d, qv, x + i * dim, dim);
                if (dd < best[k - 1]) {
                    size_t t = k - 1;
                    while (t > 0 && best[t - 1] > dd) {
                        best[t] = best[t - 1];
                        t--;
                    }
                    best[t] = dd;
                }
            }
            double tol = d == LLMOPS_DIST_L2 ? 1e-3 * (1 + best[k - 1]) : 1e-4;
            for (size_t t = 0; t < k; t++) {
                CHECK_MSG(fabs(dists[t] - best[t]) <= tol, "%s q%zu rank %zu: %g vs %g",
                          llmops_distance_name((llmops_distance)d), j, t, dists[t], best[t]);
                CHECK(t == 0 || dists[t] >= dists[t - 1]);
                size_t i = (size_t)((labels[t] - 13) / 7919);
                CHECK(label_of(i) == labels[t] && i < n);
                double true_d = ref_dist((llmops_distance)d, qv, x + i * dim, dim);
                CHECK_MSG(fabs(true_d - dists[t]) <= tol, "label %llu: reported %g, true %g",
                          (unsigned long long)labels[t], dists[t], true_d);
            }
        }
        llmops_hnsw_free(h);
    }
    free(x);
    free(q);
}

/* ---- recall ---------------------------------------------------------------------------------- */

TEST(hnsw_recall_clustered_all_distances) {
    const size_t n = 20000, dim = 64, nq = 200, k = 10;
    /* recall is limited by the data as much as by the index: on 64 dims of
     * near-isotropic noise hnswlib itself reaches only 0.91 at ef 64; this
     * decay (intrinsic dimension ~10) with overlapping clusters gives 0.98 */
    float *x = clustered_decay(n, dim, 100, 2.0, 2.0, 21), *q = clustered_decay(nq, dim, 100, 2.0, 2.0, 22);
    for (int d = 0; d < 3; d++) {
        llmops_hnsw *h = build(n, dim, (llmops_distance)d, x, 16, 200);
        CHECK(h);
        CHECK_EQ_INT(llmops_hnsw_count(h), n);
        llmops_hnsw_set_ef(h, 64);
        llmops_error err = {0};
        size_t hits = 0;
        for (size_t j = 0; j < nq; j++) {
            uint64_t got[10], want[10];
            float dg[10], dw[10];
            size_t ng = 0, nw = 0;
            CHECK_OK(llmops_hnsw_search(h, q + j * dim, k, NULL, NULL, got, dg, &ng, &err), err);
            CHECK_OK(llmops_hnsw_search_exact(h, q + j * dim, k, NULL, NULL, want, dw, &nw, &err), err);
            CHECK_EQ_INT(ng, k);
            for (size_t a = 0; a < k; a++)
                for (size_t b = 0; b < k; b++)
                    if (got[a] == want[b]) {
                        hits++;
                        break;
                    }
        }
        double recall = (double)hits / (double)(nq * k);
        printf("    %s: recall@10 = %.4f at ef 64 (20k x 64, 100 clusters), %.1f MiB\n",
               llmops_distance_name((llmops_distance)d), recall, (double)llmops_hnsw_memory(h) / 1048576.0);
        CHECK_MSG(recall > 0.95, "%s recall %.4f", llmops_distance_name((llmops_distance)d), recall);
        llmops_hnsw_free(h);
    }
    free(x);
    free(q);
}

/* ---- filters ---------------------------------------------------------------------------------- */

typedef struct pct_filter {
    uint64_t mod;  /* label passes when (label / 7919) % mod < keep */
    uint64_t keep;
    long calls;
} pct_filter;

static int pass_pct(void *ctx, uint64_t label) {
    pct_filter *f = ctx;
    f->calls++;
    return ((label - 13) / 7919) % f->mod < f->keep;
}

TEST(hnsw_filtered_search_returns_min_k_matches) {
    const size_t n = 6000, dim = 32, nq = 30, k = 10;
    float *x = clustered(n, dim, 30, 0.5, 31), *q = clustered(nq, dim, 30, 0.5, 32);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_L2, x, 12, 100);
    CHECK(h);
    llmops_hnsw_set_ef(h, 32);
    llmops_error err = {0};
    /* 1%, 10%, 50% pass; then 3 and 0 matches in the whole index */
    pct_filter fs[] = {{100, 1, 0}, {10, 1, 0}, {2, 1, 0}, {2000, 1, 0}, {1, 0, 0}};
    for (size_t fi = 0; fi < sizeof fs / sizeof fs[0]; fi++) {
        size_t matches = 0;
        for (size_t i = 0; i < n; i++) matches += (size_t)pass_pct(&fs[fi], label_of(i));
        size_t want_n = matches < k ? matches : k, hits = 0;
        for (size_t j = 0; j < nq; j++) {
            uint64_t got[10], ex[10];
            float dg[10], de[10];
            size_t ng = 99, ne = 99;
            CHECK_OK(llmops_hnsw_search(h, q + j * dim, k, pass_pct, &fs[fi], got, dg, &ng, &err), err);
            CHECK_OK(llmops_hnsw_search_exact(h, q + j * dim, k, pass_pct, &fs[fi], ex, de, &ne, &err), err);
            CHECK_MSG(ng == want_n, "filter %zu: %zu results, want %zu", fi, ng, want_n);
            CHECK_EQ_INT(ne, want_n);
            for (size_t t = 0; t < ng; t++) {
                CHECK_MSG(pass_pct(&fs[fi], got[t]), "label %llu fails the filter", (unsigned long long)got[t]);
                CHECK(t == 0 || dg[t] >= dg[t - 1]);
                for (size_t u = 0; u < ne; u++)
                    if (ex[u] == got[t]) {
                        hits++;
                        break;
                    }
            }
        }
        double recall = want_n ? (double)hits / (double)(nq * want_n) : 1.0;
        printf("    filter pass %zu/%zu: recall %.3f vs exact filtered\n", matches, n, recall);
        CHECK_MSG(recall > 0.9, "filtered recall %.3f", recall);
    }
    llmops_hnsw_free(h);
    free(x);
    free(q);
}

/* ---- deletes and replacement ---------------------------------------------------------------- */

TEST(hnsw_remove_never_returned) {
    const size_t n = 3000, dim = 16, k = 20;
    float *x = clustered(n, dim, 10, 0.4, 41);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_COSINE, x, 8, 60);
    CHECK(h);
    llmops_error err = {0};
    for (size_t i = 0; i < n; i += 2) CHECK_OK(llmops_hnsw_remove(h, label_of(i), &err), err);
    CHECK_EQ_INT(llmops_hnsw_count(h), n / 2);
    CHECK_EQ_INT(llmops_hnsw_deleted(h), n / 2);
    CHECK(!llmops_hnsw_contains(h, label_of(0)));
    CHECK(llmops_hnsw_contains(h, label_of(1)));
    CHECK_ERR(llmops_hnsw_remove(h, label_of(0), &err), LLMOPS_ERR_NOT_FOUND, err, "not in the index");
    CHECK_ERR(llmops_hnsw_remove(h, 424242, &err), LLMOPS_ERR_NOT_FOUND, err, "424242");
    for (size_t j = 0; j < n; j += 7) {
        uint64_t got[20];
        size_t ng = 0;
        CHECK_OK(llmops_hnsw_search(h, x + j * dim, k, NULL, NULL, got, NULL, &ng, &err), err);
        CHECK_EQ_INT(ng, k);
        for (size_t t = 0; t < ng; t++) CHECK_MSG(((got[t] - 13) / 7919) % 2 == 1, "removed label returned");
    }
    /* remove everything: searches return nothing; re-adding works */
    for (size_t i = 1; i < n; i += 2) CHECK_OK(llmops_hnsw_remove(h, label_of(i), &err), err);
    size_t ng = 9;
    CHECK_OK(llmops_hnsw_search(h, x, k, NULL, NULL, NULL, NULL, &ng, &err), err);
    CHECK_EQ_INT(ng, 0);
    CHECK_OK(llmops_hnsw_add(h, 5, x + 5 * dim, &err), err);
    uint64_t l = 0;
    CHECK_OK(llmops_hnsw_search(h, x, k, NULL, NULL, &l, NULL, &ng, &err), err);
    CHECK_EQ_INT(ng, 1);
    CHECK_EQ_INT(l, 5);
    llmops_hnsw_free(h);
    free(x);
}

TEST(hnsw_readd_replaces_vector) {
    const size_t n = 500, dim = 8;
    float *x = clustered(n, dim, 5, 0.5, 51);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_L2, x, 8, 50);
    CHECK(h);
    llmops_error err = {0};
    float far[8];
    for (size_t i = 0; i < dim; i++) far[i] = 100.0f + (float)i;
    uint64_t lab = label_of(17);
    CHECK_OK(llmops_hnsw_add(h, lab, x + 17 * dim, &err), err); /* identical: no-op */
    CHECK_EQ_INT(llmops_hnsw_deleted(h), 0);
    CHECK_OK(llmops_hnsw_add(h, lab, far, &err), err);
    CHECK_EQ_INT(llmops_hnsw_count(h), n);
    CHECK_EQ_INT(llmops_hnsw_deleted(h), 1);
    float back[8];
    CHECK_OK(llmops_hnsw_get_vector(h, lab, back, &err), err);
    CHECK(!memcmp(back, far, sizeof far));
    uint64_t got[3];
    float d[3];
    size_t ng = 0;
    CHECK_OK(llmops_hnsw_search(h, far, 3, NULL, NULL, got, d, &ng, &err), err);
    CHECK_EQ_INT(got[0], lab);
    CHECK(d[0] == 0.0f);
    /* the old vector no longer finds the label at distance 0 */
    CHECK_OK(llmops_hnsw_search(h, x + 17 * dim, 3, NULL, NULL, got, d, &ng, &err), err);
    for (size_t t = 0; t < ng; t++) CHECK(got[t] != lab);
    llmops_hnsw_free(h);
    free(x);
}

TEST(hnsw_rejects_bad_input) {
    llmops_error err = {0};
    llmops_hnsw *h = NULL;
    CHECK_ERR(llmops_hnsw_create(0, LLMOPS_DIST_L2, NULL, &h, &err), LLMOPS_ERR_INVALID_ARG, err, "dim");
    llmops_hnsw_params p;
    llmops_hnsw_params_init(&p);
    p.M = 1;
    CHECK_ERR(llmops_hnsw_create(4, LLMOPS_DIST_L2, &p, &h, &err), LLMOPS_ERR_INVALID_ARG, err, "M 1");
    CHECK_OK(llmops_hnsw_create(4, LLMOPS_DIST_L2, NULL, &h, &err), err);
    float v[4] = {1, 2, NAN, 4};
    CHECK_ERR(llmops_hnsw_add(h, 1, v, &err), LLMOPS_ERR_INVALID_ARG, err, "NaN");
    size_t nf = 7;
    CHECK_OK(llmops_hnsw_search(h, v, 5, NULL, NULL, NULL, NULL, &nf, &err), err); /* empty index */
    CHECK_EQ_INT(nf, 0);
    v[2] = 3;
    CHECK_OK(llmops_hnsw_add(h, 1, v, &err), err);
    v[0] = INFINITY;
    CHECK_ERR(llmops_hnsw_search(h, v, 5, NULL, NULL, NULL, NULL, &nf, &err), LLMOPS_ERR_INVALID_ARG, err, "NaN");
    v[0] = 1;
    uint64_t l[5];
    CHECK_OK(llmops_hnsw_search(h, v, 5, NULL, NULL, l, NULL, &nf, &err), err);
    CHECK_EQ_INT(nf, 1);
    llmops_hnsw_free(h);
    llmops_hnsw_free(NULL);
}

/* ---- concurrency -------------------------------------------------------------------------------- */

typedef struct conc_ctx {
    const llmops_hnsw *h;
    const float *q;
    size_t nq, dim;
    uint64_t *out; /* (nq, 10) */
    int fail;
} conc_ctx;

static void *conc_worker(void *arg) {
    conc_ctx *c = arg;
    llmops_error err = {0};
    for (int rep = 0; rep < 3; rep++)
        for (size_t j = 0; j < c->nq; j++) {
            size_t nf;
            if (llmops_hnsw_search(c->h, c->q + j * c->dim, 10, NULL, NULL, c->out + j * 10, NULL, &nf, &err))
                c->fail = 1;
        }
    return NULL;
}

TEST(hnsw_concurrent_searches_agree) {
    const size_t n = 4000, dim = 24, nq = 200;
    float *x = clustered(n, dim, 20, 0.5, 61), *q = clustered(nq, dim, 20, 0.5, 62);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_IP, x, 10, 80);
    CHECK(h);
    uint64_t *serial = calloc(nq * 10, 8), *par[4];
    conc_ctx c0 = {h, q, nq, dim, serial, 0};
    conc_worker(&c0);
    pthread_t th[4];
    conc_ctx cs[4];
    for (int t = 0; t < 4; t++) {
        par[t] = calloc(nq * 10, 8);
        cs[t] = (conc_ctx){h, q, nq, dim, par[t], 0};
        pthread_create(&th[t], NULL, conc_worker, &cs[t]);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 4; t++) {
        CHECK(!cs[t].fail);
        CHECK(!memcmp(par[t], serial, nq * 10 * 8));
        free(par[t]);
    }
    free(serial);
    llmops_hnsw_free(h);
    free(x);
    free(q);
}

/* ---- persistence -------------------------------------------------------------------------------------- */

TEST(hnsw_save_load_identical_results) {
    const size_t n = 3000, dim = 24, nq = 100;
    float *x = clustered(n + 200, dim, 20, 0.5, 71), *q = clustered(nq, dim, 20, 0.5, 72);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_COSINE, x, 10, 80);
    CHECK(h);
    llmops_error err = {0};
    for (size_t i = 0; i < n; i += 10) CHECK_OK(llmops_hnsw_remove(h, label_of(i), &err), err);
    llmops_hnsw_set_ef(h, 40);
    const char *path = test_tmpfile("idx.hnsw");
    CHECK_OK(llmops_hnsw_save(h, path, 0x123456789abcULL, &err), err);
    llmops_hnsw *g = NULL;
    uint64_t gen = 0;
    CHECK_OK(llmops_hnsw_load(path, &g, &gen, &err), err);
    CHECK_EQ_INT(gen, 0x123456789abcULL);
    CHECK_EQ_INT(llmops_hnsw_count(g), llmops_hnsw_count(h));
    CHECK_EQ_INT(llmops_hnsw_deleted(g), llmops_hnsw_deleted(h));
    llmops_hnsw_params pa, pb;
    llmops_hnsw_get_params(h, &pa);
    llmops_hnsw_get_params(g, &pb);
    CHECK(pa.M == pb.M && pa.ef_construction == pb.ef_construction && pa.ef_search == pb.ef_search &&
          pa.seed == pb.seed);
    /* both keep inserting identically: the level generator state travels in the file */
    for (size_t i = n; i < n + 200; i++) {
        CHECK_OK(llmops_hnsw_add(h, label_of(i), x + i * dim, &err), err);
        CHECK_OK(llmops_hnsw_add(g, label_of(i), x + i * dim, &err), err);
    }
    for (size_t j = 0; j < nq; j++) {
        uint64_t la[10], lb[10];
        float da[10], db[10];
        size_t na, nb;
        CHECK_OK(llmops_hnsw_search(h, q + j * dim, 10, NULL, NULL, la, da, &na, &err), err);
        CHECK_OK(llmops_hnsw_search(g, q + j * dim, 10, NULL, NULL, lb, db, &nb, &err), err);
        CHECK_EQ_INT(na, nb);
        CHECK(!memcmp(la, lb, na * 8) && !memcmp(da, db, na * 4));
    }
    /* a second save of both gives byte-identical files */
    const char *p1 = test_tmpfile("a.hnsw"), *p2 = test_tmpfile("b.hnsw");
    CHECK_OK(llmops_hnsw_save(h, p1, 1, &err), err);
    CHECK_OK(llmops_hnsw_save(g, p2, 1, &err), err);
    uint8_t d1[32], d2[32];
    CHECK_OK(llmops_sha256_file(p1, d1, &err), err);
    CHECK_OK(llmops_sha256_file(p2, d2, &err), err);
    CHECK(!memcmp(d1, d2, 32));
    llmops_hnsw_free(g);
    CHECK_ERR(llmops_hnsw_load(test_tmpfile("missing.hnsw"), &g, &gen, &err), LLMOPS_ERR_IO, err, "missing.hnsw");
    CHECK(g == NULL);
    llmops_hnsw_free(h);
    free(x);
    free(q);
}

/* A small saved index as bytes (caller frees). */
static uint8_t *small_index_bytes(size_t *size) {
    const size_t n = 60, dim = 5;
    float *x = clustered(n, dim, 4, 0.5, 81);
    llmops_hnsw *h = build(n, dim, LLMOPS_DIST_L2, x, 4, 20);
    free(x);
    if (!h) return NULL;
    llmops_error err = {0};
    llmops_hnsw_remove(h, label_of(3), &err);
    const char *path = test_tmpfile("small.hnsw");
    llmops_status st = llmops_hnsw_save(h, path, 9, &err);
    llmops_hnsw_free(h);
    if (st) return NULL;
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(1 << 20);
    *size = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Recomputes the trailing digest so that structural checks, not the checksum, must catch the fault. */
static void fix_digest(uint8_t *b, size_t size) { llmops_sha256(b, size - 32, b + size - 32); }

static llmops_status try_load(const uint8_t *b, size_t size, llmops_error *err) {
    llmops_hnsw *h = NULL;
    uint64_t gen = 0;
    llmops_status st = llmops_hnsw_load_buffer(b, size, "t.hnsw", &h, &gen, err);
    if (st == LLMOPS_OK) llmops_hnsw_free(h);
    return st;
}

TEST(hnsw_load_rejects_corruption) {
    size_t size = 0;
    uint8_t *good = small_index_bytes(&size);
    CHECK(good && size > 200);
    uint8_t *b = malloc(size);
    llmops_error err = {0};
    long live = llmops_alloc_live();
    CHECK_OK(try_load(good, size, &err), err);
    /* every prefix */
    for (size_t len = 0; len < size; len++) {
        memcpy(b, good, len);
        llmops_status st = try_load(len ? b : NULL, len, &err);
        CHECK_MSG(st == LLMOPS_ERR_FORMAT, "prefix %zu: %s", len, llmops_status_str(st));
        CHECK(err.msg[0] && strstr(err.msg, "t.hnsw"));
    }
    /* every single-bit flip (one bit per byte, rotating) */
    for (size_t i = 0; i < size; i++) {
        memcpy(b, good, size);
        b[i] ^= (uint8_t)(1u << (i % 8));
        llmops_status st = try_load(b, size, &err);
        CHECK_MSG(st != LLMOPS_OK, "flip at %zu accepted", i);
    }
    /* header faults, named in the message */
    memcpy(b, good, size);
    b[0] = 'X';
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "bad magic");
    memcpy(b, good, size);
    b[8] = 2;
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_UNSUPPORTED, err, "version 2");
    memcpy(b, good, size);
    uint64_t huge = 1ull << 40;
    memcpy(b + 96, &huge, 8);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "node count");
    huge = 1000;
    memcpy(b + 96, &huge, 8);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "header implies");
    memcpy(b, good, size);
    huge = ~0ull / 3;
    memcpy(b + 112, &huge, 8);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "overflow");
    memcpy(b, good, size);
    uint32_t bigdim = 1u << 30;
    memcpy(b + 16, &bigdim, 4);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "dim");
    memcpy(b, good, size);
    b[size - 1] ^= 1;
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "checksum");
    /* structural faults behind a valid digest */
    const size_t n = 60, dim = 5, M0 = 8;
    const size_t off_labels = 128, off_vecs = off_labels + n * 8, off_l0 = off_vecs + n * dim * 4;
    memcpy(b, good, size);
    uint32_t bad_id = 1000; /* node 0's first level-0 link */
    memcpy(b + off_l0 + 4, &bad_id, 4);
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "link to 1000");
    memcpy(b, good, size);
    uint32_t bad_cnt = (uint32_t)M0 + 1;
    memcpy(b + off_l0 + (1 + M0) * 4 * 2, &bad_cnt, 4);
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "links, at most");
    memcpy(b, good, size);
    float nan = NAN;
    memcpy(b + off_vecs + 4 * 7, &nan, 4);
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "not finite");
    memcpy(b, good, size);
    memcpy(b + off_labels + 8 * 5, b + off_labels + 8 * 6, 8); /* two live nodes share a label */
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "live twice");
    memcpy(b, good, size);
    b[size - 32 - 1] = 3; /* last node's flags */
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "flags");
    memcpy(b, good, size);
    uint32_t entry = 77;
    memcpy(b + 40, &entry, 4);
    fix_digest(b, size);
    CHECK_ERR(try_load(b, size, &err), LLMOPS_ERR_FORMAT, err, "entry point");
    CHECK_EQ_INT(llmops_alloc_live(), live);
    free(b);
    free(good);
}

/* ---- allocation failure ------------------------------------------------------------------------------ */

/* Labels of the failure-injection scenario: in sequence (dense mode until the
 * replacement) or scattered (general mode from the second add). */
static uint64_t oom_label(int dense, size_t i) { return dense ? 100 + i : label_of(i); }

static llmops_status oom_scenario(const float *x, size_t n, size_t dim, const char *path, int dense) {
    llmops_error err = {0};
    llmops_hnsw_params p;
    llmops_hnsw_params_init(&p);
    p.M = 6;
    p.ef_construction = 30;
    llmops_hnsw *h = NULL, *g = NULL;
    llmops_status st = llmops_hnsw_create((uint32_t)dim, LLMOPS_DIST_COSINE, &p, &h, &err);
    for (size_t i = 0; !st && i < n; i++) st = llmops_hnsw_add(h, oom_label(dense, i), x + i * dim, &err);
    if (!st) st = llmops_hnsw_remove(h, oom_label(dense, 1), &err);
    if (!st) st = llmops_hnsw_add(h, oom_label(dense, 2), x + 5 * dim, &err); /* replace */
    uint64_t l[5];
    size_t nf = 0;
    if (!st) st = llmops_hnsw_search(h, x, 5, NULL, NULL, l, NULL, &nf, &err);
    if (!st) st = llmops_hnsw_search_exact(h, x, 5, NULL, NULL, l, NULL, &nf, &err);
    if (!st) st = llmops_hnsw_save(h, path, 3, &err);
    if (!st) st = llmops_hnsw_load(path, &g, NULL, &err);
    if (!st) st = llmops_hnsw_search(g, x, 5, NULL, NULL, l, NULL, &nf, &err);
    if (st && st != LLMOPS_ERR_NOMEM) fprintf(stderr, "    unexpected: %s\n", err.msg);
    if (st && !err.msg[0]) st = LLMOPS_ERR_INTERNAL;
    llmops_hnsw_free(g);
    llmops_hnsw_free(h);
    return st;
}

TEST(hnsw_alloc_failure_injection) {
    const size_t n = 150, dim = 6;
    float *x = clustered(n, dim, 5, 0.5, 91);
    const char *path = test_tmpfile("oom.hnsw");
    for (int dense = 0; dense < 2; dense++) {
    long live = llmops_alloc_live();
    int ok = 0;
    long nth;
    for (nth = 0; nth < 100000; nth++) {
        llmops_alloc_fail_nth(nth);
        llmops_status st = oom_scenario(x, n, dim, path, dense);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_MSG(st == LLMOPS_OK || st == LLMOPS_ERR_NOMEM, "fail_nth %ld: %s", nth, llmops_status_str(st));
        CHECK_MSG(llmops_alloc_live() == live, "fail_nth %ld: %ld live, %ld at start", nth, llmops_alloc_live(), live);
        if (!fired) {
            CHECK_MSG(st == LLMOPS_OK, "fail_nth %ld: %s without a failure", nth, llmops_status_str(st));
            ok = 1;
            break;
        }
    }
    CHECK(ok);
    printf("    %ld allocation sites failed cleanly (%s labels)\n", nth, dense ? "dense" : "scattered");
    }
    free(x);
}

/*
 * Labels handed out in sequence (base + i) need neither a label array nor a
 * map: the index built that way must behave exactly like one built with
 * scattered labels (same vectors, same order, so the same graph), through
 * removals, a save and load, and the switch to general mode that the first
 * out-of-sequence label or replacement causes. The base wraps around 2^64.
 */
TEST(hnsw_dense_labels_match_general) {
    const size_t n = 2000, dim = 12, nq = 60, k = 10;
    const uint64_t bases[2] = {1, UINT64_MAX - 700};
    float *x = clustered(n + 20, dim, 12, 0.5, 101), *q = clustered(nq, dim, 12, 0.5, 102);
    llmops_error err = {0};
    for (int b = 0; b < 2; b++) {
        const uint64_t base = bases[b];
        llmops_hnsw *g = build(n, dim, LLMOPS_DIST_COSINE, x, 8, 60); /* scattered labels */
        llmops_hnsw_params p;
        llmops_hnsw_params_init(&p);
        p.M = 8;
        p.ef_construction = 60;
        llmops_hnsw *h = NULL;
        CHECK_OK(llmops_hnsw_create((uint32_t)dim, LLMOPS_DIST_COSINE, &p, &h, &err), err);
        CHECK(g && h);
        for (size_t i = 0; i < n; i++) CHECK_OK(llmops_hnsw_add(h, base + i, x + i * dim, &err), err);
        CHECK_MSG(llmops_hnsw_memory(h) + n * 8 <= llmops_hnsw_memory(g), "dense %zu B, scattered %zu B",
                  llmops_hnsw_memory(h), llmops_hnsw_memory(g));
        for (size_t i = 0; i < n; i += 9) {
            CHECK_OK(llmops_hnsw_remove(h, base + i, &err), err);
            CHECK_OK(llmops_hnsw_remove(g, label_of(i), &err), err);
        }
        CHECK(!llmops_hnsw_contains(h, base + 9) && llmops_hnsw_contains(h, base + 10));
        CHECK(!llmops_hnsw_contains(h, base + n) && !llmops_hnsw_contains(h, base - 1));
        CHECK_ERR(llmops_hnsw_remove(h, base + 18, &err), LLMOPS_ERR_NOT_FOUND, err, "not in the index");
        float v[12];
        CHECK_OK(llmops_hnsw_get_vector(h, base + 11, v, &err), err);
        const char *path = test_tmpfile("dense.hnsw");
        CHECK_OK(llmops_hnsw_save(h, path, 5, &err), err);
        llmops_hnsw *r = NULL;
        CHECK_OK(llmops_hnsw_load(path, &r, NULL, &err), err);
        CHECK_EQ_INT(llmops_hnsw_memory(r) <= llmops_hnsw_memory(h), 1);
        /* step 0: as built; 1: one more label in sequence (still dense);
         * 2: a replacement and a removed label re-added (general mode) */
        for (int step = 0; step < 3; step++) {
            if (step == 1) {
                CHECK_OK(llmops_hnsw_add(h, base + n, x + n * dim, &err), err); /* in sequence */
                CHECK_OK(llmops_hnsw_add(r, base + n, x + n * dim, &err), err);
                CHECK_OK(llmops_hnsw_add(g, label_of(n), x + n * dim, &err), err);
            }
            if (step == 2) {
                CHECK_OK(llmops_hnsw_add(h, base + 5, x + (n + 1) * dim, &err), err); /* replace */
                CHECK_OK(llmops_hnsw_add(r, base + 5, x + (n + 1) * dim, &err), err);
                CHECK_OK(llmops_hnsw_add(g, label_of(5), x + (n + 1) * dim, &err), err);
                CHECK_OK(llmops_hnsw_add(h, base + 9, x + (n + 2) * dim, &err), err); /* removed before */
                CHECK_OK(llmops_hnsw_add(r, base + 9, x + (n + 2) * dim, &err), err);
                CHECK_OK(llmops_hnsw_add(g, label_of(9), x + (n + 2) * dim, &err), err);
                CHECK(llmops_hnsw_contains(h, base + 9) && llmops_hnsw_contains(r, base + 9));
                CHECK_OK(llmops_hnsw_remove(h, base + 10, &err), err);
                CHECK_OK(llmops_hnsw_remove(r, base + 10, &err), err);
                CHECK_OK(llmops_hnsw_remove(g, label_of(10), &err), err);
            }
            CHECK_EQ_INT(llmops_hnsw_count(h), llmops_hnsw_count(g));
            CHECK_EQ_INT(llmops_hnsw_count(r), llmops_hnsw_count(g));
            for (size_t j = 0; j < nq; j++) {
                uint64_t la[10], lb[10], lc[10];
                float da[10], db[10], dc[10];
                size_t na, nb, nc;
                CHECK_OK(llmops_hnsw_search(h, q + j * dim, k, NULL, NULL, la, da, &na, &err), err);
                CHECK_OK(llmops_hnsw_search(r, q + j * dim, k, NULL, NULL, lc, dc, &nc, &err), err);
                CHECK_OK(llmops_hnsw_search(g, q + j * dim, k, NULL, NULL, lb, db, &nb, &err), err);
                CHECK_EQ_INT(na, nb);
                CHECK_EQ_INT(nc, nb);
                CHECK(!memcmp(da, db, na * 4) && !memcmp(dc, db, na * 4));
                for (size_t t = 0; t < na; t++) {
                    /* distances may tie: compare the sets of node positions at equal distance */
                    uint64_t ia = la[t] - base, ic = lc[t] - base, ib = (lb[t] - 13) / 7919;
                    CHECK_MSG(ia == ib || (t + 1 < na && da[t] == da[t + 1]) || (t > 0 && da[t] == da[t - 1]),
                              "base %llu step %d query %zu rank %zu: %llu vs %llu", (unsigned long long)base, step,
                              j, t, (unsigned long long)ia, (unsigned long long)ib);
                    CHECK(ic == ia || (t + 1 < na && da[t] == da[t + 1]) || (t > 0 && da[t] == da[t - 1]));
                }
            }
        }
        llmops_hnsw_free(r);
        llmops_hnsw_free(h);
        llmops_hnsw_free(g);
    }
    free(x);
    free(q);
}
