/*
 * llmops/threadpool.h — a persistent pthread pool for data-parallel kernels.
 *
 * The pool starts n-1 worker threads once and reuses them for every job; the
 * calling thread takes part as thread 0, so a pool of n threads runs a job
 * on n threads with n-1 extra ones. Between jobs the workers spin briefly,
 * then sleep on a condition variable, so an idle pool costs no CPU.
 *
 *     llmops_threadpool *pool = NULL;
 *     if (llmops_threadpool_create(0, &pool, &err)) return err.code;  // 0: physical cores
 *
 *     static void scale(void *ctx, size_t begin, size_t end, int ith) {
 *         float *x = ctx;
 *         for (size_t i = begin; i < end; i++) x[i] *= 2.0f;
 *     }
 *     llmops_threadpool_parallel_for(pool, n, 4096, scale, x);
 *
 *     static void two_phase(void *ctx, int ith, int nth) {
 *         ... phase 1, rows ith, ith+nth, ... ...
 *         llmops_threadpool_barrier(pool_of(ctx));   // every thread must reach it
 *         ... phase 2 reads what phase 1 wrote ...
 *     }
 *     llmops_threadpool_run(pool, two_phase, ctx);
 *
 *     llmops_threadpool_free(pool);
 *
 * Concurrency. Jobs from different caller threads are serialized by a mutex:
 * a second caller blocks until the running job ends. A nested call — run or
 * parallel_for on a pool from inside one of that same pool's jobs — would
 * deadlock, so it is rejected with LLMOPS_ERR_INVALID_ARG. (A job may use a
 * *different* pool.)
 */
#ifndef LLMOPS_THREADPOOL_H
#define LLMOPS_THREADPOOL_H

#include <stddef.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hard cap on threads per pool. */
#define LLMOPS_THREADPOOL_MAX_THREADS 512

typedef struct llmops_threadpool llmops_threadpool;

/* A job body: runs once on each of the nth threads, ith in [0, nth). */
typedef void (*llmops_threadpool_fn)(void *ctx, int ith, int nth);
/* A parallel_for body: handles items [begin, end); ith names the thread. */
typedef void (*llmops_threadpool_range_fn)(void *ctx, size_t begin, size_t end, int ith);

/*
 * Number of physical cores this process may run on: CPUs in the affinity
 * mask, counting SMT siblings (from /sys/devices/system/cpu/cpuN/topology/
 * core_cpus_list, or thread_siblings_list on older kernels) once. Falls back
 * to sysconf(_SC_NPROCESSORS_ONLN) when sysfs is unreadable. Always >= 1.
 */
int llmops_cpu_physical_cores(void);

/*
 * Creates a pool of n_threads threads in total, the caller included
 * (0 = llmops_cpu_physical_cores(); capped at LLMOPS_THREADPOOL_MAX_THREADS).
 * A pool of 1 thread starts no threads and runs every job inline.
 * *out is owned by the caller: free it with llmops_threadpool_free.
 */
llmops_status llmops_threadpool_create(int n_threads, llmops_threadpool **out, llmops_error *err);

/* Stops and joins the workers. NULL is a no-op. Must not be called from a job. */
void llmops_threadpool_free(llmops_threadpool *pool);

/* Threads in the pool, the caller included (>= 1). */
int llmops_threadpool_n_threads(const llmops_threadpool *pool);

/*
 * Runs fn(ctx, ith, nth) once on every thread of the pool (nth = n_threads)
 * and returns when all have finished. Memory written by any thread before it
 * returns from fn is visible to the caller afterwards.
 * Fails with INVALID_ARG for a NULL pool or fn, or a nested call.
 */
llmops_status llmops_threadpool_run(llmops_threadpool *pool, llmops_threadpool_fn fn, void *ctx);

/*
 * Waits until all nth threads of the running job have called it; usable any
 * number of times within a job (a sense-reversing barrier that spins briefly,
 * then sleeps). Writes before the barrier are visible to every thread after
 * it. Only meaningful inside a job of `pool`; every thread must call it the
 * same number of times, or the job deadlocks.
 */
void llmops_threadpool_barrier(llmops_threadpool *pool);

/*
 * Calls fn(ctx, begin, end, ith) over [0, n_items) in chunks of at most
 * `grain` items (0 = pick one from n_items and the thread count), handed out
 * dynamically through an atomic counter, so uneven chunks balance. Every
 * index is covered exactly once; fn is not called when n_items is 0. fn must
 * not call llmops_threadpool_barrier (threads take differing chunk counts).
 */
llmops_status llmops_threadpool_parallel_for(llmops_threadpool *pool, size_t n_items, size_t grain,
                                             llmops_threadpool_range_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
