/* Libraries opened on first use (src/base/dynlib.c), and what the engine leaves unmapped. */
#include <math.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "base/dynlib.h"
#include "llmops/model.h"

TEST(dynlib_loads_and_resolves) {
    static dynlib lib = DYNLIB_INIT;
    static const dynlib_desc d = {NULL, {"libllmops-no-such-lib.so.9", "libm.so.6", NULL}, "libm", "a test", "libc6", 0,
                                  {"cos", "sqrt", NULL}};
    llmops_error err = {0};
    CHECK_OK(dynlib_load(&lib, &d, &err), err); /* the second name loads */
    double (*c)(double) = (double (*)(double))lib.sym[0];
    CHECK(c && fabs(c(0.0) - 1.0) < 1e-12);
    CHECK_OK(dynlib_load(&lib, &d, &err), err); /* and stays loaded */
}

TEST(dynlib_missing_library_names_it_and_its_use) {
    static dynlib lib = DYNLIB_INIT;
    static const dynlib_desc d = {"LLMOPS_TEST_NO_SUCH_ENV", {"libllmops-no-such-lib.so.9", NULL}, "libnosuch",
                                  "the frobnication of widgets", "libnosuch9", 0, {"frob", NULL}};
    llmops_error err = {0};
    CHECK_EQ_INT(dynlib_load(&lib, &d, &err), LLMOPS_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "libnosuch is needed for the frobnication of widgets"));
    CHECK(strstr(err.msg, "libllmops-no-such-lib.so.9"));
    CHECK(strstr(err.msg, "install libnosuch9, or set LLMOPS_TEST_NO_SUCH_ENV"));
    /* every later caller gets the same answer (the load is tried once) */
    llmops_error err2 = {0};
    CHECK_EQ_INT(dynlib_load(&lib, &d, &err2), LLMOPS_ERR_UNSUPPORTED);
    CHECK_EQ_STR(err2.msg, err.msg);
    CHECK_EQ_INT(dynlib_load(&lib, &d, NULL), LLMOPS_ERR_UNSUPPORTED);
}

TEST(dynlib_missing_symbol_and_env_override) {
    static dynlib lib = DYNLIB_INIT, lib2 = DYNLIB_INIT;
    static const dynlib_desc d = {NULL, {"libm.so.6", NULL}, "libm", "a test", "libc6", 0,
                                  {"cos", "llmops_no_such_symbol", NULL}};
    llmops_error err = {0};
    CHECK_EQ_INT(dynlib_load(&lib, &d, &err), LLMOPS_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "has no symbol llmops_no_such_symbol"));
    /* the environment variable names the file instead of the sonames */
    static const dynlib_desc e = {"LLMOPS_TEST_DYNLIB", {"libm.so.6", NULL}, "libm", "a test", "libc6", 0, {"cos", NULL}};
    setenv("LLMOPS_TEST_DYNLIB", "/nonexistent/libm.so.6", 1);
    CHECK_EQ_INT(dynlib_load(&lib2, &e, &err), LLMOPS_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "/nonexistent/libm.so.6"));
    unsetenv("LLMOPS_TEST_DYNLIB");
}

/* The engine alone (load, prefill, decode) maps none of the libraries only training and fetching use.
 * Each test runs in a fresh child of the runner, so other tests' loads are not seen here. */
TEST(engine_maps_no_training_or_network_libraries) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", test_repo_root());
    llmops_error err = {0};
    llmops_model *m = NULL;
    llmops_context *ctx = NULL;
    CHECK_OK(llmops_model_load(path, NULL, &m, &err), err);
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_ctx = 64;
    CHECK_OK(llmops_context_create(m, &cp, &ctx, &err), err);
    llmops_batch_item b[8];
    for (int i = 0; i < 8; i++) b[i] = (llmops_batch_item){1 + i, i, 0, i == 7};
    CHECK_OK(llmops_decode(ctx, b, 8, &err), err);
    llmops_batch_item one = {3, 8, 0, 1};
    CHECK_OK(llmops_decode(ctx, &one, 1, &err), err);
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) {
        test_skip("no /proc/self/maps");
    } else {
        char line[4096];
        const char *heavy[] = {"libcurl", "libmpi", "libopen-pal", "libopenblas", "libgfortran"};
        while (fgets(line, sizeof line, f))
            for (size_t i = 0; i < sizeof heavy / sizeof heavy[0]; i++)
                CHECK_MSG(!strstr(line, heavy[i]), "mapped: %s", line);
        fclose(f);
    }
    llmops_context_free(ctx);
    llmops_model_free(m);
}
