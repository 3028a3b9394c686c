/* The unit-test runner: see test.h. Usage: test_unit [SUBSTRING...] */
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 4096

typedef struct {
    const char *name;
    test_fn fn;
    const char *file;
} test_case;

static test_case g_tests[MAX_TESTS];
static int g_ntests;
static int g_failed;
static int g_skipped;
static char g_tmpdir[PATH_MAX];

void test_register(const char *name, test_fn fn, const char *file) {
    if (g_ntests < MAX_TESTS) g_tests[g_ntests++] = (test_case){name, fn, file};
}

int test_failed(void) { return g_failed; }

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_failed = 1;
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    skipped: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_skipped = 1;
}

static char g_root[PATH_MAX];

const char *test_repo_root(void) {
    if (g_root[0]) return g_root;
    const char *env = getenv("LLMOPS_REPO_ROOT");
    if (env) {
        snprintf(g_root, sizeof g_root, "%s", env);
        return g_root;
    }
    /* walk up from the working directory until a Makefile and src/ appear */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return ".";
    for (;;) {
        char probe[PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/src/base", cwd);
        struct stat sb;
        if (stat(probe, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            snprintf(g_root, sizeof g_root, "%s", cwd);
            return g_root;
        }
        char *slash = strrchr(cwd, '/');
        if (!slash || slash == cwd) return ".";
        *slash = '\0';
    }
}

const char *test_asset(const char *rel) {
    static char bufs[8][PATH_MAX];
    static int next;
    char *out = bufs[next++ % 8];
    const char *env = getenv("LLMOPS_ASSETS");
    if (env) snprintf(out, PATH_MAX, "%s/%s", env, rel);
    else snprintf(out, PATH_MAX, "%s/../shared/assets/%s", test_repo_root(), rel);
    struct stat sb;
    return stat(out, &sb) == 0 ? out : NULL;
}

const char *test_tmpdir(void) {
    if (!g_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s/llmops-test-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(g_tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return g_tmpdir;
}

const char *test_tmpfile(const char *name) {
    static char bufs[8][PATH_MAX + 256];
    static int next;
    char *out = bufs[next++ % 8];
    snprintf(out, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return out;
}

char *test_run_capture(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    int rc = pclose(p);
    if (!buf || rc != 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

float *test_parse_floats(const char *s, size_t *n) {
    size_t cap = 1024;
    float *v = malloc(cap * sizeof *v);
    *n = 0;
    char *end;
    for (const char *p = s; v; p = end) {
        while (*p == ',') p++;
        float f = strtof(p, &end);
        if (end == p) break;
        if (*n == cap) {
            float *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) free(v);
            v = nv;
            if (!v) break;
        }
        v[(*n)++] = f;
    }
    return v;
}

const char *test_oracle(const char *script) {
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/tests/oracle/%s", test_repo_root(), script);
    return path;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void cleanup_tmpdir(void) {
    if (g_tmpdir[0]) nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_tmpdir[0] = '\0';
}

static int selected(const char *name, int argc, char **argv) {
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

/* Runs one test in this process; returns 0 pass, 1 fail, 2 skip. */
static int run_inline(test_case *t) {
    g_failed = g_skipped = 0;
    t->fn();
    int r = g_failed ? 1 : (g_skipped ? 2 : 0);
    if (r != 1) cleanup_tmpdir();
    else if (g_tmpdir[0]) fprintf(stderr, "    kept %s\n", g_tmpdir);
    g_tmpdir[0] = '\0';
    return r;
}

int main(int argc, char **argv) {
    int nofork = getenv("TEST_NOFORK") != NULL;
    int passed = 0, failed = 0, skipped = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < g_ntests; i++) {
        test_case *t = &g_tests[i];
        if (!selected(t->name, argc, argv)) continue;
        int r;
        if (nofork) {
            r = run_inline(t);
        } else {
            fflush(stdout);
            fflush(stderr);
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 2;
            }
            if (pid == 0) exit(run_inline(t)); /* exit, not _exit: LeakSanitizer runs at exit */
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            if (WIFEXITED(status) && WEXITSTATUS(status) <= 2) r = WEXITSTATUS(status);
            else {
                fprintf(stderr, "    crashed (%s %d)\n", WIFSIGNALED(status) ? "signal" : "exit",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                r = 1;
            }
        }
        const char *word = r == 0 ? "ok  " : r == 1 ? "FAIL" : "skip";
        printf("%s %s (%s)\n", word, t->name, t->file);
        if (r == 0) passed++;
        else if (r == 1) failed++;
        else skipped++;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
