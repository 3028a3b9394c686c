/*
 * tests/unit/test.h — the unit-test harness.
 *
 *     TEST(gguf_roundtrip) {
 *         CHECK(x == 1);
 *         CHECK_EQ_INT(n, 42);
 *         CHECK_OK(llmops_something(..., &err), err);
 *     }
 *
 * Each TEST registers itself; tests/unit/main.c runs them, each in a forked
 * child (so a crash fails one test, not the run), and prints
 * "N passed, N failed, N skipped".
 */
#ifndef LLMOPS_TEST_H
#define LLMOPS_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "llmops/status.h"

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, const char *file);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int test_failed(void);

/* Path of a file under ../shared/assets (or $LLMOPS_ASSETS); NULL if absent. */
const char *test_asset(const char *rel);
/* Path of the repository root (where the Makefile is). */
const char *test_repo_root(void);
/* A fresh empty directory for this test, removed after a passing test. */
const char *test_tmpdir(void);
/* Returns a path "tmpdir/name" in a static rotating buffer. */
const char *test_tmpfile(const char *name);
/* Runs a shell command and returns all of its stdout (malloc'd, NUL-terminated; the caller
 * frees), or NULL when it cannot start or exits non-zero. For driving the Python oracles. */
char *test_run_capture(const char *cmd);
/* The numbers in s (separated by spaces, newlines, commas), malloc'd; *n gets the count. */
float *test_parse_floats(const char *s, size_t *n);
/* Path of tests/oracle/SCRIPT (a static buffer, overwritten by the next call). */
const char *test_oracle(const char *script);

#define TEST(name)                                                                  \
    static void test_##name(void);                                                  \
    __attribute__((constructor)) static void test_reg_##name(void) {                \
        test_register(#name, test_##name, __FILE__);                                \
    }                                                                               \
    static void test_##name(void)

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                      \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define CHECK_MSG(cond, ...)                                                        \
    do {                                                                            \
        if (!(cond)) {                                                              \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                             \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                          \
    do {                                                                            \
        long long va_ = (long long)(a), vb_ = (long long)(b);                       \
        if (va_ != vb_) {                                                           \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, va_, vb_); \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                          \
    do {                                                                            \
        const char *sa_ = (a), *sb_ = (b);                                          \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,      \
                      sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                  \
            return;                                                                 \
        }                                                                           \
    } while (0)

/* The call must return LLMOPS_OK; otherwise the error message is shown. */
#define CHECK_OK(call, err)                                                         \
    do {                                                                            \
        llmops_status st_ = (call);                                                 \
        if (st_ != LLMOPS_OK) {                                                     \
            test_fail(__FILE__, __LINE__, "%s: %s: %s", #call,                      \
                      llmops_status_str(st_), (err).msg);                           \
            return;                                                                 \
        }                                                                           \
    } while (0)

/* The call must fail with `code` and its message must contain `needle`. */
#define CHECK_ERR(call, code, err, needle)                                          \
    do {                                                                            \
        llmops_status st_ = (call);                                                 \
        if (st_ != (code)) {                                                        \
            test_fail(__FILE__, __LINE__, "%s: expected %s, got %s (%s)", #call,    \
                      llmops_status_str(code), llmops_status_str(st_), (err).msg);  \
            return;                                                                 \
        }                                                                           \
        if (!strstr((err).msg, (needle))) {                                         \
            test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", #call, \
                      (err).msg, (needle));                                         \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define SKIP(...)                                                                   \
    do {                                                                            \
        test_skip(__VA_ARGS__);                                                     \
        return;                                                                     \
    } while (0)

#endif
