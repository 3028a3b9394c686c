/*
 * A persistent pthread pool. Design notes:
 *
 * - Dispatch: the caller publishes fn/ctx, sets `pending` to the worker
 *   count and bumps `job_gen` under `lock`, then broadcasts `wake`. Workers
 *   spin on job_gen for a short while, then sleep on `wake`; because the bump
 *   happens under the mutex that a sleeper holds while it re-checks job_gen,
 *   no wakeup is lost.
 * - Completion: each worker decrements `pending`; the one that takes it to
 *   zero broadcasts `done` under `lock`. The caller (thread 0) runs its share,
 *   then spins and sleeps on `done` the same way.
 * - Barrier: a counter plus a generation number (the generalised "sense").
 *   The last thread to arrive resets the counter and bumps the generation;
 *   the others spin on it, then sleep on `bar_cv`. The releaser takes
 *   `bar_lock` only when a sleeper announced itself in `bar_sleepers`; both
 *   sides use sequentially consistent operations (sleeper: announce, then
 *   re-read the generation; releaser: bump, then read the announcement), so
 *   at least one of them sees the other.
 */
#include "llmops/threadpool.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmops/alloc.h"

/* Iterations of the busy-wait before a thread goes to sleep. Kept short so an
 * oversubscribed machine (more threads than cores) does not waste slices. */
#define SPIN_ITERS 1024

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct worker {
    llmops_threadpool *pool;
    int ith;
    pthread_t tid;
} worker;

struct llmops_threadpool {
    int n_threads;
    int n_started;            /* workers successfully started             */
    worker *workers;          /* (n_threads - 1)                           */

    pthread_mutex_t run_lock; /* serializes callers of run/parallel_for   */

    /* dispatch and completion */
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* workers: a new job or stop               */
    pthread_cond_t done;      /* caller: pending reached zero             */
    llmops_threadpool_fn fn;  /* the current job; read after job_gen      */
    void *ctx;
    atomic_uint job_gen;
    atomic_int stop;
    atomic_int pending;       /* workers still running the current job    */
    char pad0[64];

    /* barrier */
    atomic_int bar_count;
    atomic_uint bar_gen;
    atomic_int bar_sleepers;
    pthread_mutex_t bar_lock;
    pthread_cond_t bar_cv;
    char pad1[64];
};

/* The pool whose job this thread is running, to reject nested calls. */
static _Thread_local llmops_threadpool *tl_current;

/* ---- physical core detection ---------------------------------------------- */

/* Reads a small sysfs file into buf; 0 on failure. */
static int read_small_file(const char *path, char *buf, size_t cap) {
    FILE *fp = fopen(path, "re");
    if (!fp) return 0;
    size_t n = fread(buf, 1, cap - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return n > 0;
}

/*
 * Parses a kernel cpu list ("0-3,8,10-11") and returns the lowest CPU in it
 * that is also in `mask` (any CPU when mask is NULL); -1 when none or when
 * the list is malformed.
 */
static long lowest_cpu_in_list(const char *s, const cpu_set_t *mask) {
    long best = -1;
    while (*s && *s != '\n') {
        char *end;
        errno = 0;
        long lo = strtol(s, &end, 10);
        if (end == s || errno || lo < 0) return -1;
        long hi = lo;
        s = end;
        if (*s == '-') {
            s++;
            hi = strtol(s, &end, 10);
            if (end == s || errno || hi < lo) return -1;
            s = end;
        }
        for (long c = lo; c <= hi && c < CPU_SETSIZE; c++) {
            if (mask && !CPU_ISSET((int)c, mask)) continue;
            if (best < 0 || c < best) best = c;
            break; /* the first allowed CPU of an ascending range is its lowest */
        }
        if (*s == ',') s++;
        else if (*s && *s != '\n') return -1;
    }
    return best;
}

int llmops_cpu_physical_cores(void) {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    int have_mask = sched_getaffinity(0, sizeof mask, &mask) == 0;
    int cores = 0;
    DIR *d = opendir("/sys/devices/system/cpu");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            const char *name = de->d_name;
            if (strncmp(name, "cpu", 3) != 0 || !isdigit((unsigned char)name[3])) continue;
            char *end;
            long id = strtol(name + 3, &end, 10);
            if (*end != '\0' || id < 0) continue;
            if (have_mask && (id >= CPU_SETSIZE || !CPU_ISSET((int)id, &mask))) continue;
            /* a CPU counts as a core when it is the lowest allowed CPU among its SMT siblings */
            char path[PATH_MAX], list[4096];
            snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/core_cpus_list", name);
            int ok = read_small_file(path, list, sizeof list);
            if (!ok) {
                snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/thread_siblings_list",
                         name);
                ok = read_small_file(path, list, sizeof list);
            }
            long lowest = ok ? lowest_cpu_in_list(list, have_mask ? &mask : NULL) : -1;
            if (lowest < 0 || lowest == id) cores++;
        }
        closedir(d);
    }
    if (cores <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        cores = have_mask ? CPU_COUNT(&mask) : (online > 0 && online < INT_MAX ? (int)online : 1);
    }
    return cores > 0 ? cores : 1;
}

/* ---- workers ------------------------------------------------------------------- */

static void *worker_main(void *arg) {
    worker *w = arg;
    llmops_threadpool *pool = w->pool;
    unsigned seen = 0; /* job_gen is 0 when the workers start */
    for (;;) {
        unsigned gen = atomic_load_explicit(&pool->job_gen, memory_order_acquire);
        for (int i = 0; gen == seen && i < SPIN_ITERS; i++) {
            cpu_relax();
            gen = atomic_load_explicit(&pool->job_gen, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->lock);
            while ((gen = atomic_load(&pool->job_gen)) == seen) pthread_cond_wait(&pool->wake, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = gen;
        if (atomic_load(&pool->stop)) break;
        tl_current = pool;
        pool->fn(pool->ctx, w->ith, pool->n_threads);
        tl_current = NULL;
        if (atomic_fetch_sub(&pool->pending, 1) == 1) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_broadcast(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return NULL;
}

/* Wakes the workers for the job (or stop) already published in the pool. */
static void publish(llmops_threadpool *pool) {
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->job_gen, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
}

static void stop_workers(llmops_threadpool *pool) {
    atomic_store(&pool->stop, 1);
    publish(pool);
    for (int i = 0; i < pool->n_started; i++) pthread_join(pool->workers[i].tid, NULL);
    pool->n_started = 0;
}

static void destroy(llmops_threadpool *pool) {
    pthread_mutex_destroy(&pool->run_lock);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->bar_lock);
    pthread_cond_destroy(&pool->bar_cv);
    llmops_free(pool->workers);
    llmops_free(pool);
}

llmops_status llmops_threadpool_create(int n_threads, llmops_threadpool **out, llmops_error *err) {
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "threadpool: NULL output pointer");
    *out = NULL;
    if (n_threads < 0)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "threadpool: negative thread count %d",
                                n_threads);
    if (n_threads == 0) n_threads = llmops_cpu_physical_cores();
    if (n_threads > LLMOPS_THREADPOOL_MAX_THREADS) n_threads = LLMOPS_THREADPOOL_MAX_THREADS;

    llmops_threadpool *pool = llmops_calloc(1, sizeof *pool);
    if (!pool) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "threadpool: out of memory");
    pool->n_threads = n_threads;
    if (n_threads > 1) {
        pool->workers = llmops_calloc((size_t)n_threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            llmops_free(pool);
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "threadpool: out of memory");
        }
    }
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pthread_mutex_init(&pool->bar_lock, NULL);
    pthread_cond_init(&pool->bar_cv, NULL);
    atomic_init(&pool->job_gen, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->bar_count, 0);
    atomic_init(&pool->bar_gen, 0);
    atomic_init(&pool->bar_sleepers, 0);

    for (int i = 0; i < n_threads - 1; i++) {
        worker *w = &pool->workers[i];
        w->pool = pool;
        w->ith = i + 1;
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            stop_workers(pool);
            destroy(pool);
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "threadpool: cannot start thread %d of %d: %s",
                                    i + 1, n_threads, strerror(rc));
        }
        pool->n_started++;
    }
    *out = pool;
    return LLMOPS_OK;
}

void llmops_threadpool_free(llmops_threadpool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->run_lock); /* let a job from another thread finish */
    stop_workers(pool);
    pthread_mutex_unlock(&pool->run_lock);
    destroy(pool);
}

int llmops_threadpool_n_threads(const llmops_threadpool *pool) { return pool ? pool->n_threads : 1; }

/* Runs a job; the caller has checked the arguments and holds no pool lock. */
static void run_job(llmops_threadpool *pool, llmops_threadpool_fn fn, void *ctx) {
    llmops_threadpool *outer = tl_current;
    pthread_mutex_lock(&pool->run_lock);
    tl_current = pool;
    if (pool->n_threads == 1) {
        fn(ctx, 0, 1);
    } else {
        pool->fn = fn;
        pool->ctx = ctx;
        atomic_store(&pool->pending, pool->n_threads - 1);
        publish(pool);
        fn(ctx, 0, pool->n_threads);
        int left = atomic_load_explicit(&pool->pending, memory_order_acquire);
        for (int i = 0; left != 0 && i < SPIN_ITERS; i++) {
            cpu_relax();
            left = atomic_load_explicit(&pool->pending, memory_order_acquire);
        }
        if (left != 0) {
            pthread_mutex_lock(&pool->lock);
            while (atomic_load(&pool->pending) != 0) pthread_cond_wait(&pool->done, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    tl_current = outer;
    pthread_mutex_unlock(&pool->run_lock);
}

llmops_status llmops_threadpool_run(llmops_threadpool *pool, llmops_threadpool_fn fn, void *ctx) {
    if (!pool || !fn) return LLMOPS_ERR_INVALID_ARG;
    if (tl_current == pool) return LLMOPS_ERR_INVALID_ARG; /* nested: would deadlock */
    run_job(pool, fn, ctx);
    return LLMOPS_OK;
}

void llmops_threadpool_barrier(llmops_threadpool *pool) {
    int nth = pool->n_threads;
    if (nth <= 1) return;
    unsigned gen = atomic_load(&pool->bar_gen);
    if (atomic_fetch_add(&pool->bar_count, 1) == nth - 1) {
        /* last to arrive: reset for the next phase, then release this one */
        atomic_store(&pool->bar_count, 0);
        atomic_fetch_add(&pool->bar_gen, 1);
        if (atomic_load(&pool->bar_sleepers) > 0) {
            pthread_mutex_lock(&pool->bar_lock);
            pthread_cond_broadcast(&pool->bar_cv);
            pthread_mutex_unlock(&pool->bar_lock);
        }
        return;
    }
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&pool->bar_gen, memory_order_acquire) != gen) return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->bar_lock);
    atomic_fetch_add(&pool->bar_sleepers, 1);
    while (atomic_load(&pool->bar_gen) == gen) pthread_cond_wait(&pool->bar_cv, &pool->bar_lock);
    atomic_fetch_sub(&pool->bar_sleepers, 1);
    pthread_mutex_unlock(&pool->bar_lock);
}

/* ---- parallel_for ------------------------------------------------------------------ */

typedef struct pfor_job {
    llmops_threadpool_range_fn fn;
    void *ctx;
    size_t n;
    size_t grain;
    atomic_size_t next; /* first item not yet handed out */
} pfor_job;

static void pfor_body(void *arg, int ith, int nth) {
    (void)nth;
    pfor_job *j = arg;
    for (;;) {
        size_t begin = atomic_fetch_add_explicit(&j->next, j->grain, memory_order_relaxed);
        if (begin >= j->n) break;
        size_t end = j->n - begin < j->grain ? j->n : begin + j->grain;
        j->fn(j->ctx, begin, end, ith);
    }
}

llmops_status llmops_threadpool_parallel_for(llmops_threadpool *pool, size_t n_items, size_t grain,
                                             llmops_threadpool_range_fn fn, void *ctx) {
    if (!pool || !fn) return LLMOPS_ERR_INVALID_ARG;
    if (tl_current == pool) return LLMOPS_ERR_INVALID_ARG; /* nested: would deadlock */
    if (n_items == 0) return LLMOPS_OK;
    size_t nth = (size_t)pool->n_threads;
    if (grain == 0) {
        /* about 8 chunks per thread: enough to balance, few enough to be cheap */
        grain = n_items / (nth * 8);
        if (grain == 0) grain = 1;
    }
    if (grain > n_items) grain = n_items;
    if (nth == 1 || grain == n_items) {
        /* one thread or one chunk: no need to wake anybody */
        llmops_threadpool *outer = tl_current;
        tl_current = pool;
        for (size_t b = 0; b < n_items;) {
            size_t e = n_items - b < grain ? n_items : b + grain;
            fn(ctx, b, e, 0);
            b = e;
        }
        tl_current = outer;
        return LLMOPS_OK;
    }
    /* every thread overshoots the counter by at most one grain */
    if (grain > (SIZE_MAX - n_items) / nth) return LLMOPS_ERR_INVALID_ARG;
    pfor_job job = {.fn = fn, .ctx = ctx, .n = n_items, .grain = grain};
    atomic_init(&job.next, 0);
    run_job(pool, pfor_body, &job);
    return LLMOPS_OK;
}
