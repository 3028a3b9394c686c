/*
 * Shared libraries that only some paths need (libcurl for fetching datasets,
 * OpenBLAS for the trainer's products, libmpi for multi-rank training) are
 * opened on first use instead of being linked, so that the inference engine
 * does not map and relocate them: their pages and their start-up allocations
 * are several MB of a small model's resident memory.
 *
 *     static dynlib g_blas = DYNLIB_INIT;
 *     static const dynlib_desc blas = {"LLMOPS_BLAS_LIB", {"libopenblas.so.0", "libopenblas.so"},
 *                                      "OpenBLAS", "the trainer's matrix products", "libopenblas0", 0,
 *                                      {"cblas_sgemm"}};
 *     if ((st = dynlib_load(&g_blas, &blas, err))) return st;
 *     sgemm_fn sgemm = (sgemm_fn)g_blas.sym[0];
 */
#ifndef LLMOPS_BASE_DYNLIB_H
#define LLMOPS_BASE_DYNLIB_H

#include <pthread.h>

#include "llmops/status.h"

enum { DYNLIB_MAX_NAMES = 4, DYNLIB_MAX_SYMS = 16 };

typedef struct dynlib_desc {
    const char *env;                      /* an environment variable naming the file to open instead, or NULL */
    const char *names[DYNLIB_MAX_NAMES];  /* sonames tried in order (NULL-terminated)                   */
    const char *what;                     /* "libcurl"                                                      */
    const char *needed_for;               /* "http(s):// and s3:// dataset sources"                        */
    const char *package;                  /* the Debian package that provides it, for the hint              */
    int global;                           /* 1: RTLD_GLOBAL (Open MPI's components resolve against it)      */
    const char *syms[DYNLIB_MAX_SYMS];    /* symbols to resolve (NULL-terminated), all required             */
} dynlib_desc;

typedef struct dynlib {
    pthread_mutex_t lock;
    const dynlib_desc *desc;
    void *handle;                 /* NULL: not loaded (see err)           */
    void *sym[DYNLIB_MAX_SYMS];   /* desc->syms[i]'s address              */
    llmops_error err;             /* why the load failed, replayed to every caller */
    int ready;                    /* 1 once loaded: later calls skip the lock (atomic) */
} dynlib;

#define DYNLIB_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, {NULL}, {LLMOPS_OK, {0}}, 0}

/*
 * Opens the library described by `d` once per process (thread-safe; later
 * calls return the first outcome) and resolves all its symbols into lib->sym.
 * On failure returns LLMOPS_ERR_UNSUPPORTED with a message that names the
 * library, what needs it, the loader's reason and the package to install.
 * The library stays loaded until the process ends.
 */
llmops_status dynlib_load(dynlib *lib, const dynlib_desc *d, llmops_error *err);

#endif
