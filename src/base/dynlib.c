/* Shared libraries opened on first use (see dynlib.h). */
#include "base/dynlib.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

llmops_status dynlib_load(dynlib *lib, const dynlib_desc *d, llmops_error *err) {
    if (__atomic_load_n(&lib->ready, __ATOMIC_ACQUIRE)) return LLMOPS_OK; /* the trainer asks before each product */
    pthread_mutex_lock(&lib->lock);
    if (!lib->desc) { /* the first caller tries; everyone after gets its outcome */
        lib->desc = d;
        const char *over = d->env ? getenv(d->env) : NULL;
        const char *tried = over && *over ? over : d->names[0];
        int flags = RTLD_NOW | (d->global ? RTLD_GLOBAL : RTLD_LOCAL);
        if (over && *over) lib->handle = dlopen(over, flags);
        for (int i = 0; !(over && *over) && i < DYNLIB_MAX_NAMES && d->names[i] && !lib->handle; i++)
            lib->handle = dlopen(d->names[i], flags);
        if (!lib->handle) {
            const char *e = dlerror();
            llmops_error_set(&lib->err, LLMOPS_ERR_UNSUPPORTED,
                             "%s is needed for %s, but %s could not be loaded: %s (install %s%s%s)", d->what,
                             d->needed_for, tried, e ? e : "not found", d->package,
                             d->env ? ", or set " : "", d->env ? d->env : "");
        }
        for (int i = 0; lib->handle && i < DYNLIB_MAX_SYMS && d->syms[i]; i++) {
            if ((lib->sym[i] = dlsym(lib->handle, d->syms[i]))) continue;
            llmops_error_set(&lib->err, LLMOPS_ERR_UNSUPPORTED, "%s is needed for %s, but %s has no symbol %s",
                             d->what, d->needed_for, tried, d->syms[i]);
            dlclose(lib->handle);
            lib->handle = NULL;
            memset(lib->sym, 0, sizeof lib->sym);
        }
    }
    llmops_status st = LLMOPS_OK;
    if (!lib->handle) st = llmops_error_set(err, lib->err.code, "%s", lib->err.msg);
    else __atomic_store_n(&lib->ready, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lib->lock);
    return st;
}
