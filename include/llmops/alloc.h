/*
 * llmops/alloc.h — allocation hooks, arenas and capped buffers.
 *
 * All heap memory of libllmops goes through llmops_malloc/realloc/free, so
 * that an embedding application can supply its own allocator and tests can
 * make the N-th allocation fail and check that every path cleans up:
 *
 *     for (long n = 0;; n++) {
 *         llmops_alloc_fail_nth(n);          // the n-th allocation fails
 *         st = parse(...);                   // must fail cleanly or succeed
 *         llmops_alloc_fail_nth(-1);
 *         assert(llmops_alloc_live() == live_before);   // nothing leaked
 *         if (st == LLMOPS_OK) break;        // n passed every allocation
 *     }
 */
#ifndef LLMOPS_ALLOC_H
#define LLMOPS_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- hooks ---------------------------------------------------------------- */

typedef struct llmops_alloc_hooks {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} llmops_alloc_hooks;

/* Installs `hooks` (NULL restores the C library allocator). Not thread-safe:
 * call before any other libllmops function. */
void llmops_alloc_set_hooks(const llmops_alloc_hooks *hooks);

void *llmops_malloc(size_t size);
/* Zeroed; NULL when n*size overflows. */
void *llmops_calloc(size_t n, size_t size);
/* realloc(NULL, n) allocates; size 0 is treated as 1. */
void *llmops_realloc(void *ptr, size_t size);
/* n*size bytes, NULL on overflow. */
void *llmops_reallocarray(void *ptr, size_t n, size_t size);
void llmops_free(void *ptr);
char *llmops_strdup(const char *s);
char *llmops_strndup(const char *s, size_t n);

/* ---- failure injection and accounting (tests) ------------------------------ */

/* Makes the n-th allocation from now (0-based) fail, once; -1 disables. */
void llmops_alloc_fail_nth(long n);
/* True when an injected failure has fired since the last llmops_alloc_fail_nth. */
int llmops_alloc_failure_fired(void);
/* Number of live allocations made through llmops_malloc & co. */
long llmops_alloc_live(void);

/* ---- checked arithmetic ---------------------------------------------------- */

/* *out = a*b; returns 0 on overflow. */
static inline int llmops_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int llmops_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- arena ----------------------------------------------------------------- */

/*
 * An arena hands out memory from large blocks and frees it all at once.
 * `cap` bounds the total bytes the arena may reserve (0 = unbounded).
 */
typedef struct llmops_arena llmops_arena;

llmops_arena *llmops_arena_create(size_t block_size, size_t cap);
/* NULL when the cap is reached or memory runs out. align must be a power of 2. */
void *llmops_arena_alloc(llmops_arena *a, size_t size, size_t align);
char *llmops_arena_strndup(llmops_arena *a, const char *s, size_t n);
/* Bytes handed out so far. */
size_t llmops_arena_used(const llmops_arena *a);
/* Forgets every allocation but keeps the first block. */
void llmops_arena_reset(llmops_arena *a);
void llmops_arena_free(llmops_arena *a);

/* ---- growable buffer with a hard cap --------------------------------------- */

typedef struct llmops_buf {
    char *data;     /* always NUL-terminated when non-NULL                     */
    size_t len;     /* bytes in use, excluding the terminator                  */
    size_t cap;     /* bytes allocated                                         */
    size_t max;     /* hard cap on len; appending past it fails with LIMIT     */
} llmops_buf;

/* An empty buffer that may hold at most `max` bytes. */
void llmops_buf_init(llmops_buf *b, size_t max);
llmops_status llmops_buf_reserve(llmops_buf *b, size_t extra, llmops_error *err);
llmops_status llmops_buf_append(llmops_buf *b, const void *data, size_t n, llmops_error *err);
llmops_status llmops_buf_puts(llmops_buf *b, const char *s, llmops_error *err);
llmops_status llmops_buf_printf(llmops_buf *b, llmops_error *err, const char *fmt, ...)
    LLMOPS_PRINTF(3, 4);
/* Hands the bytes to the caller (free with llmops_free) and empties b. */
char *llmops_buf_detach(llmops_buf *b, size_t *len);
void llmops_buf_free(llmops_buf *b);

#ifdef __cplusplus
}
#endif
#endif
