#include "llmops/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(size_t size, void *user) { (void)user; return malloc(size); }
static void *libc_realloc(void *p, size_t size, void *user) { (void)user; return realloc(p, size); }
static void libc_free(void *p, void *user) { (void)user; free(p); }

static llmops_alloc_hooks g_hooks = {libc_malloc, libc_realloc, libc_free, NULL};
static atomic_long g_live;
static atomic_long g_fail_countdown = -1; /* allocations left before the injected failure */
static atomic_int g_fired;

void llmops_alloc_set_hooks(const llmops_alloc_hooks *hooks) {
    if (hooks) g_hooks = *hooks;
    else g_hooks = (llmops_alloc_hooks){libc_malloc, libc_realloc, libc_free, NULL};
}

void llmops_alloc_fail_nth(long n) {
    atomic_store(&g_fired, 0);
    atomic_store(&g_fail_countdown, n);
}

int llmops_alloc_failure_fired(void) { return atomic_load(&g_fired); }

long llmops_alloc_live(void) { return atomic_load(&g_live); }

/* True when this allocation is the one chosen to fail. */
static int should_fail(void) {
    long c = atomic_load(&g_fail_countdown);
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &c, c - 1)) {
            if (c == 0) {
                atomic_store(&g_fired, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void *llmops_malloc(size_t size) {
    if (size == 0) size = 1;
    if (should_fail()) return NULL;
    void *p = g_hooks.malloc_fn(size, g_hooks.user);
    if (p) atomic_fetch_add(&g_live, 1);
    return p;
}

void *llmops_calloc(size_t n, size_t size) {
    uint64_t total;
    if (!llmops_mul_ok(n, size, &total) || total > SIZE_MAX) return NULL;
    void *p = llmops_malloc((size_t)total);
    if (p) memset(p, 0, (size_t)total);
    return p;
}

void *llmops_realloc(void *ptr, size_t size) {
    if (!ptr) return llmops_malloc(size);
    if (size == 0) size = 1;
    if (should_fail()) return NULL;
    return g_hooks.realloc_fn(ptr, size, g_hooks.user);
}

void *llmops_reallocarray(void *ptr, size_t n, size_t size) {
    uint64_t total;
    if (!llmops_mul_ok(n, size, &total) || total > SIZE_MAX) return NULL;
    return llmops_realloc(ptr, (size_t)total);
}

void llmops_free(void *ptr) {
    if (!ptr) return;
    atomic_fetch_sub(&g_live, 1);
    g_hooks.free_fn(ptr, g_hooks.user);
}

char *llmops_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = llmops_malloc(len + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *llmops_strdup(const char *s) { return llmops_strndup(s, SIZE_MAX); }

/* ---- arena ------------------------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t size;  /* usable bytes after the header */
    size_t used;
    _Alignas(max_align_t) unsigned char data[];
} arena_block;

struct llmops_arena {
    arena_block *head;   /* current block, newest first */
    size_t block_size;
    size_t cap;
    size_t reserved;     /* bytes of all blocks */
    size_t handed_out;
};

llmops_arena *llmops_arena_create(size_t block_size, size_t cap) {
    llmops_arena *a = llmops_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->cap = cap;
    return a;
}

void *llmops_arena_alloc(llmops_arena *a, size_t size, size_t align) {
    if (align == 0) align = 1;
    if (align & (align - 1)) return NULL;
    arena_block *b = a->head;
    if (b) {
        /* align the address, not the offset: align may exceed the block's own alignment */
        uintptr_t base = (uintptr_t)b->data;
        size_t off = (size_t)(((base + b->used + align - 1) & ~(uintptr_t)(align - 1)) - base);
        if (off <= b->size && size <= b->size - off) {
            b->used = off + size;
            a->handed_out += size;
            return b->data + off;
        }
    }
    /* a fresh block is max_align_t-aligned; larger alignments need slack */
    size_t slack = align > _Alignof(max_align_t) ? align - 1 : 0;
    if (size > SIZE_MAX - slack) return NULL;
    size_t want = size + slack > a->block_size ? size + slack : a->block_size;
    if (want > SIZE_MAX - sizeof(arena_block)) return NULL;
    if (a->cap && (a->reserved > a->cap || want > a->cap - a->reserved)) return NULL;
    arena_block *nb = llmops_malloc(sizeof(arena_block) + want);
    if (!nb) return NULL;
    uintptr_t base = (uintptr_t)nb->data;
    size_t off = (size_t)(((base + align - 1) & ~(uintptr_t)(align - 1)) - base);
    nb->size = want;
    nb->used = off + size;
    nb->next = a->head;
    a->head = nb;
    a->reserved += want;
    a->handed_out += size;
    return nb->data + off;
}

char *llmops_arena_strndup(llmops_arena *a, const char *s, size_t n) {
    char *d = llmops_arena_alloc(a, n + 1, 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

size_t llmops_arena_used(const llmops_arena *a) { return a->handed_out; }

void llmops_arena_reset(llmops_arena *a) {
    arena_block *b = a->head;
    if (!b) return;
    /* keep the oldest block: it is the one sized block_size */
    while (b->next) {
        arena_block *n = b->next;
        a->reserved -= b->size;
        llmops_free(b);
        b = n;
    }
    b->used = 0;
    a->head = b;
    a->handed_out = 0;
}

void llmops_arena_free(llmops_arena *a) {
    if (!a) return;
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        llmops_free(b);
        b = n;
    }
    llmops_free(a);
}

/* ---- capped buffer ----------------------------------------------------------- */

void llmops_buf_init(llmops_buf *b, size_t max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

llmops_status llmops_buf_reserve(llmops_buf *b, size_t extra, llmops_error *err) {
    if (extra > b->max || b->len > b->max - extra)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT,
                                "buffer would grow past its cap of %zu bytes", b->max);
    if (b->len + extra == SIZE_MAX) /* no room for the terminator (max == SIZE_MAX) */
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "buffer would grow past SIZE_MAX");
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return LLMOPS_OK;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (b->max < SIZE_MAX && ncap > b->max + 1) ncap = b->max + 1;
    char *nd = llmops_realloc(b->data, ncap);
    if (!nd) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory growing a buffer to %zu bytes", ncap);
    b->data = nd;
    b->cap = ncap;
    return LLMOPS_OK;
}

llmops_status llmops_buf_append(llmops_buf *b, const void *data, size_t n, llmops_error *err) {
    llmops_status st = llmops_buf_reserve(b, n, err);
    if (st) return st;
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LLMOPS_OK;
}

llmops_status llmops_buf_puts(llmops_buf *b, const char *s, llmops_error *err) {
    return llmops_buf_append(b, s, strlen(s), err);
}

llmops_status llmops_buf_printf(llmops_buf *b, llmops_error *err, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "bad format string");
    }
    llmops_status st = llmops_buf_reserve(b, (size_t)n, err);
    if (st) {
        va_end(ap2);
        return st;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return LLMOPS_OK;
}

char *llmops_buf_detach(llmops_buf *b, size_t *len) {
    char *d = b->data;
    if (len) *len = b->len;
    if (!d) d = llmops_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void llmops_buf_free(llmops_buf *b) {
    llmops_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
