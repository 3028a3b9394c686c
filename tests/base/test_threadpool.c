/* Thread pool: coverage of parallel_for, barrier phases, reductions, reuse. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/threadpool.h"

/* ---- parallel_for covers every index exactly once ---------------------------- */

typedef struct cover_ctx {
    atomic_int *hits;      /* (n) times each index was visited            */
    size_t grain;          /* every chunk must be at most this long       */
    int nth;
    atomic_int bad;        /* a chunk was empty, too long or out of range */
    atomic_int thread_seen[8];
} cover_ctx;

static void cover_body(void *arg, size_t begin, size_t end, int ith) {
    cover_ctx *c = arg;
    if (begin >= end || end - begin > c->grain || ith < 0 || ith >= c->nth) atomic_store(&c->bad, 1);
    if (ith >= 0 && ith < 8) atomic_store(&c->thread_seen[ith], 1);
    for (size_t i = begin; i < end; i++) atomic_fetch_add_explicit(&c->hits[i], 1, memory_order_relaxed);
}

TEST(threadpool_parallel_for_covers_each_index_once) {
    static const size_t sizes[] = {0, 1, 2, 3, 7, 63, 64, 65, 1000, 4097};
    static const size_t grains[] = {0, 1, 3, 64, 1000, 100000};
    atomic_int *hits = calloc(4097, sizeof *hits);
    CHECK(hits != NULL);
    for (int nth = 1; nth <= 8; nth++) {
        llmops_error err = {0};
        llmops_threadpool *pool = NULL;
        CHECK_OK(llmops_threadpool_create(nth, &pool, &err), err);
        CHECK_EQ_INT(llmops_threadpool_n_threads(pool), nth);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++) {
                size_t n = sizes[si];
                cover_ctx c = {.hits = hits, .nth = nth};
                /* grain 0 picks its own; any chunk is then at most n long */
                c.grain = grains[gi] ? grains[gi] : (n ? n : 1);
                for (size_t i = 0; i < n; i++) atomic_init(&hits[i], 0);
                CHECK_EQ_INT(llmops_threadpool_parallel_for(pool, n, grains[gi], cover_body, &c), LLMOPS_OK);
                CHECK_MSG(!atomic_load(&c.bad), "bad chunk: nth=%d n=%zu grain=%zu", nth, n, grains[gi]);
                for (size_t i = 0; i < n; i++)
                    CHECK_MSG(atomic_load(&hits[i]) == 1, "nth=%d n=%zu grain=%zu: index %zu hit %d times",
                              nth, n, grains[gi], i, atomic_load(&hits[i]));
            }
        }
        llmops_threadpool_free(pool);
    }
    free(hits);
}

/* ---- barrier phases ---------------------------------------------------------------- */

#define PHASES 1000

typedef struct phase_ctx {
    llmops_threadpool *pool;
    atomic_int phase[8];   /* the phase each thread last reached */
    atomic_int errors;
} phase_ctx;

static void phase_body(void *arg, int ith, int nth) {
    phase_ctx *c = arg;
    for (int k = 1; k <= PHASES; k++) {
        atomic_store_explicit(&c->phase[ith], k, memory_order_relaxed);
        llmops_threadpool_barrier(c->pool);
        /* everyone has written k and nobody can have written k+1 yet */
        for (int t = 0; t < nth; t++)
            if (atomic_load_explicit(&c->phase[t], memory_order_relaxed) != k) atomic_fetch_add(&c->errors, 1);
        llmops_threadpool_barrier(c->pool);
    }
}

TEST(threadpool_barrier_phases_repeated) {
    static const int counts[] = {1, 2, 3, 4, 8};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        llmops_error err = {0};
        phase_ctx c = {0};
        CHECK_OK(llmops_threadpool_create(counts[ci], &c.pool, &err), err);
        CHECK_OK(llmops_threadpool_run(c.pool, phase_body, &c), err);
        CHECK_MSG(atomic_load(&c.errors) == 0, "nth=%d: %d threads saw a wrong phase", counts[ci],
                  atomic_load(&c.errors));
        for (int t = 0; t < counts[ci]; t++) CHECK_EQ_INT(atomic_load(&c.phase[t]), PHASES);
        llmops_threadpool_free(c.pool);
    }
}

/* ---- a reduction: per-thread partial sums, then thread 0 combines after a barrier ---- */

typedef struct sum_ctx {
    llmops_threadpool *pool;
    const uint32_t *x;     /* (n) */
    size_t n;
    uint64_t partial[8];   /* one slot per thread, plain memory: the barrier orders it */
    uint64_t total;
} sum_ctx;

static void sum_body(void *arg, int ith, int nth) {
    sum_ctx *c = arg;
    uint64_t s = 0;
    for (size_t i = (size_t)ith; i < c->n; i += (size_t)nth) s += c->x[i];
    c->partial[ith] = s;
    llmops_threadpool_barrier(c->pool);
    if (ith == 0) {
        uint64_t t = 0;
        for (int k = 0; k < nth; k++) t += c->partial[k];
        c->total = t;
    }
}

typedef struct range_sum_ctx {
    const uint32_t *x;
    atomic_uint_fast64_t total;
} range_sum_ctx;

static void range_sum_body(void *arg, size_t begin, size_t end, int ith) {
    (void)ith;
    range_sum_ctx *c = arg;
    uint64_t s = 0;
    for (size_t i = begin; i < end; i++) s += c->x[i];
    atomic_fetch_add(&c->total, s);
}

TEST(threadpool_reduction) {
    enum { N = 100003 };
    uint32_t *x = malloc(N * sizeof *x);
    CHECK(x != NULL);
    uint64_t expect = 0, state = 12345;
    for (size_t i = 0; i < N; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (uint32_t)(state >> 40);
        expect += x[i];
    }
    for (int nth = 1; nth <= 8; nth++) {
        llmops_error err = {0};
        sum_ctx c = {.x = x, .n = N};
        CHECK_OK(llmops_threadpool_create(nth, &c.pool, &err), err);
        CHECK_OK(llmops_threadpool_run(c.pool, sum_body, &c), err);
        CHECK_EQ_INT(c.total, expect);
        range_sum_ctx r = {.x = x};
        atomic_init(&r.total, 0);
        CHECK_OK(llmops_threadpool_parallel_for(c.pool, N, 1000, range_sum_body, &r), err);
        CHECK_EQ_INT(atomic_load(&r.total), expect);
        llmops_threadpool_free(c.pool);
    }
    free(x);
}

/* ---- reuse: many small jobs on one pool; every thread runs each job once ---------- */

typedef struct count_ctx {
    atomic_int calls[8];
} count_ctx;

static void count_body(void *arg, int ith, int nth) {
    count_ctx *c = arg;
    if (nth == 4) atomic_fetch_add(&c->calls[ith], 1);
}

TEST(threadpool_reuse_many_runs) {
    llmops_error err = {0};
    llmops_threadpool *pool = NULL;
    CHECK_OK(llmops_threadpool_create(4, &pool, &err), err);
    count_ctx c = {0};
    for (int r = 0; r < 5000; r++) CHECK_OK(llmops_threadpool_run(pool, count_body, &c), err);
    for (int t = 0; t < 4; t++) CHECK_EQ_INT(atomic_load(&c.calls[t]), 5000);
    llmops_threadpool_free(pool);
}

/* ---- the calling thread is thread 0; workers are distinct and persistent ------------ */

typedef struct ident_ctx {
    pthread_t ids[4];
} ident_ctx;

static void ident_body(void *arg, int ith, int nth) {
    (void)nth;
    ((ident_ctx *)arg)->ids[ith] = pthread_self();
}

TEST(threadpool_caller_is_thread0_workers_persist) {
    llmops_error err = {0};
    llmops_threadpool *pool = NULL;
    CHECK_OK(llmops_threadpool_create(4, &pool, &err), err);
    ident_ctx a = {0}, b = {0};
    CHECK_OK(llmops_threadpool_run(pool, ident_body, &a), err);
    CHECK_OK(llmops_threadpool_run(pool, ident_body, &b), err);
    CHECK(pthread_equal(a.ids[0], pthread_self()));
    for (int i = 1; i < 4; i++) {
        CHECK(!pthread_equal(a.ids[i], pthread_self()));
        CHECK(pthread_equal(a.ids[i], b.ids[i])); /* same worker both times */
        for (int j = 1; j < i; j++) CHECK(!pthread_equal(a.ids[i], a.ids[j]));
    }
    llmops_threadpool_free(pool);
}

/* ---- nested calls are rejected; concurrent callers are serialized ------------------ */

typedef struct nested_ctx {
    llmops_threadpool *pool;
    atomic_int rejected;
} nested_ctx;

static void nop_range(void *arg, size_t b, size_t e, int ith) { (void)arg; (void)b; (void)e; (void)ith; }
static void nop_job(void *arg, int ith, int nth) { (void)arg; (void)ith; (void)nth; }

static void nested_body(void *arg, int ith, int nth) {
    (void)nth;
    (void)ith;
    nested_ctx *c = arg;
    if (llmops_threadpool_run(c->pool, nop_job, NULL) == LLMOPS_ERR_INVALID_ARG &&
        llmops_threadpool_parallel_for(c->pool, 10, 1, nop_range, NULL) == LLMOPS_ERR_INVALID_ARG)
        atomic_fetch_add(&c->rejected, 1);
}

TEST(threadpool_nested_call_rejected) {
    for (int nth = 1; nth <= 3; nth++) {
        llmops_error err = {0};
        nested_ctx c = {0};
        CHECK_OK(llmops_threadpool_create(nth, &c.pool, &err), err);
        CHECK_OK(llmops_threadpool_run(c.pool, nested_body, &c), err);
        CHECK_EQ_INT(atomic_load(&c.rejected), nth);
        /* the pool still works afterwards */
        CHECK_OK(llmops_threadpool_run(c.pool, nop_job, NULL), err);
        llmops_threadpool_free(c.pool);
    }
    CHECK_EQ_INT(llmops_threadpool_run(NULL, nop_job, NULL), LLMOPS_ERR_INVALID_ARG);
}

typedef struct serial_ctx {
    llmops_threadpool *pool;
    atomic_int inside;     /* callers currently inside a job */
    atomic_int overlap;
    atomic_int sum;
} serial_ctx;

static void serial_body(void *arg, int ith, int nth) {
    serial_ctx *c = arg;
    if (ith == 0 && atomic_fetch_add(&c->inside, 1) != 0) atomic_store(&c->overlap, 1);
    llmops_threadpool_barrier(c->pool);
    atomic_fetch_add(&c->sum, 1);
    llmops_threadpool_barrier(c->pool);
    if (ith == 0) atomic_fetch_sub(&c->inside, 1);
    (void)nth;
}

static void *serial_caller(void *arg) {
    serial_ctx *c = arg;
    for (int i = 0; i < 200; i++) llmops_threadpool_run(c->pool, serial_body, c);
    return NULL;
}

TEST(threadpool_concurrent_callers_serialized) {
    llmops_error err = {0};
    serial_ctx c = {0};
    CHECK_OK(llmops_threadpool_create(3, &c.pool, &err), err);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, serial_caller, &c) == 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(!atomic_load(&c.overlap));
    CHECK_EQ_INT(atomic_load(&c.sum), 2 * 200 * 3);
    llmops_threadpool_free(c.pool);
}

/* ---- creation ------------------------------------------------------------------------- */

TEST(threadpool_create_defaults_and_errors) {
    CHECK(llmops_cpu_physical_cores() >= 1);
    llmops_error err = {0};
    long live = llmops_alloc_live();
    llmops_threadpool *pool = NULL;
    CHECK_OK(llmops_threadpool_create(0, &pool, &err), err);
    CHECK_EQ_INT(llmops_threadpool_n_threads(pool), llmops_cpu_physical_cores());
    llmops_threadpool_free(pool);
    llmops_threadpool_free(NULL);
    CHECK_ERR(llmops_threadpool_create(-1, &pool, &err), LLMOPS_ERR_INVALID_ARG, err, "negative");
    CHECK(pool == NULL);
    /* allocation failure is a clean error */
    llmops_alloc_fail_nth(1);
    llmops_status st = llmops_threadpool_create(4, &pool, &err);
    llmops_alloc_fail_nth(-1);
    CHECK_EQ_INT(st, LLMOPS_ERR_NOMEM);
    CHECK(pool == NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}
