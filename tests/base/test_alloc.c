/* Allocation: arenas, capped buffers, overflow checks, failure injection, hooks. */
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"

/* ---- arena ------------------------------------------------------------------- */

TEST(alloc_arena_alignment) {
    long live = llmops_alloc_live();
    llmops_arena *a = llmops_arena_create(256, 0);
    CHECK(a != NULL);
    static const size_t aligns[] = {1, 2, 4, 8, 16, 32, 64, 128, 4096};
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
            /* odd sizes push the next offset off every boundary */
            unsigned char *p = llmops_arena_alloc(a, (size_t)round * 7 + 1, aligns[i]);
            CHECK_MSG(p != NULL, "align %zu round %d", aligns[i], round);
            CHECK_MSG(((uintptr_t)p & (aligns[i] - 1)) == 0, "%p not aligned to %zu", (void *)p, aligns[i]);
            memset(p, 0xab, (size_t)round * 7 + 1); /* ASan: the whole range is ours */
        }
    }
    CHECK(llmops_arena_alloc(a, 8, 3) == NULL); /* not a power of two */
    CHECK(llmops_arena_alloc(a, 8, 0) != NULL); /* 0 means 1 */
    llmops_arena_free(a);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(alloc_arena_large_cap_reset_free) {
    long live = llmops_alloc_live();
    llmops_arena *a = llmops_arena_create(1024, 8192);
    CHECK(a != NULL);
    /* separate allocations never overlap and keep their contents */
    unsigned char *p[6];
    for (int i = 0; i < 6; i++) {
        p[i] = llmops_arena_alloc(a, 300, 8);
        CHECK(p[i] != NULL);
        memset(p[i], i + 1, 300);
    }
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 300; j++) CHECK_EQ_INT(p[i][j], i + 1);
    CHECK_EQ_INT(llmops_arena_used(a), 6 * 300);

    /* larger than a block: gets a block of its own */
    unsigned char *big = llmops_arena_alloc(a, 3000, 16);
    CHECK(big != NULL);
    memset(big, 0x5a, 3000);
    CHECK_EQ_INT(llmops_arena_used(a), 6 * 300 + 3000);

    /* the full big block is left behind: a new 1024-byte block, 6072 reserved */
    char *s = llmops_arena_strndup(a, "hello world", 5);
    CHECK(s != NULL);
    CHECK_EQ_STR(s, "hello");
    /* the cap counts reserved bytes: 6072 + 2000 fits under 8192, then nothing does */
    CHECK(llmops_arena_alloc(a, 2000, 1) != NULL);
    CHECK(llmops_arena_alloc(a, 3000, 1) == NULL);
    CHECK(llmops_arena_alloc(a, 200, 1) == NULL);
    CHECK(llmops_arena_alloc(a, 100000, 1) == NULL);
    CHECK(llmops_arena_alloc(a, SIZE_MAX, 1) == NULL);

    /* reset forgets everything and frees all but one block */
    llmops_arena_reset(a);
    CHECK_EQ_INT(llmops_arena_used(a), 0);
    CHECK_EQ_INT(llmops_alloc_live(), live + 2); /* the arena and one block */
    for (int i = 0; i < 6; i++) CHECK(llmops_arena_alloc(a, 1000, 1) != NULL);
    llmops_arena_free(a);
    CHECK_EQ_INT(llmops_alloc_live(), live);
    llmops_arena_free(NULL);
}

/* ---- capped buffer ------------------------------------------------------------- */

TEST(alloc_buf_append_printf_growth) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_buf b;
    llmops_buf_init(&b, 1 << 20);
    CHECK_OK(llmops_buf_puts(&b, "hello", &err), err);
    CHECK_OK(llmops_buf_append(&b, ", ", 2, &err), err);
    CHECK_OK(llmops_buf_printf(&b, &err, "%s #%d", "world", 42), err);
    CHECK_EQ_STR(b.data, "hello, world #42");
    CHECK_EQ_INT(b.len, 16);
    /* grow well past the first allocation; contents survive each realloc */
    for (int i = 0; i < 1000; i++) CHECK_OK(llmops_buf_printf(&b, &err, "%04d", i), err);
    CHECK_EQ_INT(b.len, 16 + 4000);
    CHECK(b.cap > b.len);
    CHECK(memcmp(b.data + 16, "000000010002", 12) == 0);
    CHECK(memcmp(b.data + b.len - 4, "0999", 4) == 0);
    CHECK_EQ_INT(b.data[b.len], '\0');
    size_t len = 0;
    char *d = llmops_buf_detach(&b, &len);
    CHECK(d != NULL);
    CHECK_EQ_INT(len, 4016);
    CHECK(b.data == NULL && b.len == 0);
    CHECK(strncmp(d, "hello, world #42", 16) == 0);
    llmops_free(d);
    /* detaching an empty buffer gives "" */
    d = llmops_buf_detach(&b, &len);
    CHECK(d != NULL);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_STR(d, "");
    llmops_free(d);
    llmops_buf_free(&b);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(alloc_buf_limit_exactly_at_cap) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_buf b;
    llmops_buf_init(&b, 10);
    CHECK_OK(llmops_buf_append(&b, "0123456789", 10, &err), err); /* exactly max: fine */
    CHECK_EQ_INT(b.len, 10);
    CHECK_ERR(llmops_buf_append(&b, "x", 1, &err), LLMOPS_ERR_LIMIT, err, "cap of 10 bytes");
    CHECK_EQ_STR(b.data, "0123456789"); /* unchanged by the failed append */
    CHECK_OK(llmops_buf_append(&b, "", 0, &err), err);
    llmops_buf_free(&b);

    llmops_buf_init(&b, 10);
    CHECK_OK(llmops_buf_printf(&b, &err, "%d", 12345), err);
    CHECK_ERR(llmops_buf_printf(&b, &err, "%d", 123456), LLMOPS_ERR_LIMIT, err, "cap");
    CHECK_OK(llmops_buf_printf(&b, &err, "%d", 67890), err);
    CHECK_EQ_STR(b.data, "1234567890");
    CHECK(b.cap <= 11); /* never allocates past the cap plus the terminator */
    llmops_buf_free(&b);

    /* a cap of SIZE_MAX means "unbounded" and must not wrap */
    llmops_buf_init(&b, SIZE_MAX);
    CHECK_OK(llmops_buf_puts(&b, "abc", &err), err);
    CHECK_EQ_STR(b.data, "abc");
    llmops_buf_free(&b);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- overflow ------------------------------------------------------------------ */

TEST(alloc_calloc_overflow_returns_null) {
    long live = llmops_alloc_live();
    CHECK(llmops_calloc(SIZE_MAX / 2, 3) == NULL);
    CHECK(llmops_calloc((size_t)1 << 33, (size_t)1 << 33) == NULL);
    CHECK(llmops_reallocarray(NULL, SIZE_MAX, 2) == NULL);
    unsigned char *p = llmops_calloc(16, 4);
    CHECK(p != NULL);
    for (int i = 0; i < 64; i++) CHECK_EQ_INT(p[i], 0);
    llmops_free(p);
    CHECK_EQ_INT(llmops_alloc_live(), live);
    uint64_t r;
    CHECK(!llmops_mul_ok(UINT64_MAX, 2, &r));
    CHECK(llmops_mul_ok(1u << 31, 1u << 31, &r) && r == (uint64_t)1 << 62);
    CHECK(!llmops_add_ok(UINT64_MAX, 1, &r));
}

/* ---- failure injection ---------------------------------------------------------- */

TEST(alloc_fail_nth_fires_once) {
    long live = llmops_alloc_live();
    for (long n = 0; n < 5; n++) {
        llmops_alloc_fail_nth(n);
        CHECK(!llmops_alloc_failure_fired());
        void *p[8];
        for (long i = 0; i < 8; i++) {
            p[i] = llmops_malloc(16);
            /* only the n-th call fails, and the flag goes up exactly then */
            CHECK_MSG((p[i] == NULL) == (i == n), "n=%ld i=%ld", n, i);
            CHECK_EQ_INT(llmops_alloc_failure_fired(), i >= n);
        }
        for (int i = 0; i < 8; i++) llmops_free(p[i]);
        llmops_alloc_fail_nth(-1);
        CHECK(!llmops_alloc_failure_fired());
    }
    /* realloc counts as an allocation and leaves the old block alone on failure */
    char *s = llmops_strdup("keep");
    CHECK(s != NULL);
    llmops_alloc_fail_nth(0);
    CHECK(llmops_realloc(s, 1000) == NULL);
    CHECK(llmops_alloc_failure_fired());
    llmops_alloc_fail_nth(-1);
    CHECK_EQ_STR(s, "keep");
    llmops_free(s);
    /* -1 disables */
    void *q = llmops_malloc(1);
    CHECK(q != NULL);
    llmops_free(q);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* The pattern from alloc.h: every allocation of a path fails in turn, cleanly. */
TEST(alloc_fail_nth_sweep_buffer) {
    long live = llmops_alloc_live();
    int succeeded = 0;
    for (long n = 0; n < 50 && !succeeded; n++) {
        llmops_error err = {0};
        llmops_buf b;
        llmops_buf_init(&b, 1 << 16);
        llmops_alloc_fail_nth(n);
        llmops_status st = LLMOPS_OK;
        for (int i = 0; i < 200 && st == LLMOPS_OK; i++) st = llmops_buf_printf(&b, &err, "line %d\n", i);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_EQ_INT(st == LLMOPS_OK, !fired);
        if (st) CHECK_ERR(st, LLMOPS_ERR_NOMEM, err, "out of memory");
        else succeeded = 1;
        llmops_buf_free(&b);
        CHECK_EQ_INT(llmops_alloc_live(), live);
    }
    CHECK(succeeded);
}

/* ---- hooks ---------------------------------------------------------------------- */

typedef struct counting {
    long mallocs, reallocs, frees;
} counting;

static void *count_malloc(size_t n, void *user) {
    ((counting *)user)->mallocs++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *user) {
    ((counting *)user)->reallocs++;
    return realloc(p, n);
}
static void count_free(void *p, void *user) {
    ((counting *)user)->frees++;
    free(p);
}

TEST(alloc_custom_hooks) {
    counting c = {0};
    llmops_alloc_hooks h = {count_malloc, count_realloc, count_free, &c};
    llmops_alloc_set_hooks(&h);
    void *p = llmops_malloc(10);
    void *q = llmops_calloc(3, 5);
    p = llmops_realloc(p, 1000);
    char *s = llmops_strdup("x");
    llmops_free(p);
    llmops_free(q);
    llmops_free(s);
    llmops_free(NULL); /* does not reach the hook */
    llmops_alloc_set_hooks(NULL);
    CHECK_EQ_INT(c.mallocs, 3);
    CHECK_EQ_INT(c.reallocs, 1);
    CHECK_EQ_INT(c.frees, 3);
    /* back on the C library: the counter no longer moves */
    void *r = llmops_malloc(1);
    llmops_free(r);
    CHECK_EQ_INT(c.mallocs, 3);
}
