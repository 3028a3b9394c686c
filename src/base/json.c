#include "base/json.h"

#include <math.h>

#include <pthread.h>
#include <string.h>

#include "llmops/fileio.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/*
 * jansson does not always report a failed allocation: its lexer can drop a
 * character it failed to store and go on. So every allocation it makes is
 * watched, and a call during which one failed is turned into NOMEM.
 */
static _Thread_local int g_alloc_failed;

static void *watched_malloc(size_t n) {
    void *p = llmops_malloc(n);
    if (!p) g_alloc_failed = 1;
    return p;
}

static void set_funcs(void) { json_set_alloc_funcs(watched_malloc, llmops_free); }

void llmops_json_init(void) { pthread_once(&g_once, set_funcs); }

llmops_status llmops_json_parse(const char *data, size_t len, const char *origin, json_t **out,
                                llmops_error *err) {
    llmops_json_init();
    json_error_t je;
    g_alloc_failed = 0;
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (g_alloc_failed) {
        json_decref(*out);
        *out = NULL;
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory parsing JSON", origin);
    }
    if (!*out) {
        if (strstr(je.text, "out of memory") || je.text[0] == '\0')
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory parsing JSON", origin);
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s:%d:%d: %s (byte %d)", origin, je.line,
                                je.column, je.text, je.position);
    }
    return LLMOPS_OK;
}

llmops_status llmops_json_load_file(const char *path, size_t max, json_t **out, llmops_error *err) {
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    llmops_status st = llmops_file_read_all(path, max, &data, &len, err);
    if (st) return st;
    st = llmops_json_parse(data, len, path, out, err);
    llmops_free(data);
    return st;
}

typedef struct {
    llmops_buf *b;
    llmops_error *err;
    llmops_status st;
} dump_ctx;

static int dump_cb(const char *buffer, size_t size, void *data) {
    dump_ctx *c = data;
    if (c->st) return -1;
    c->st = llmops_buf_append(c->b, buffer, size, c->err);
    return c->st ? -1 : 0;
}

llmops_status llmops_json_dump(const json_t *j, int indent, llmops_buf *b, llmops_error *err) {
    llmops_json_init();
    dump_ctx c = {b, err, LLMOPS_OK};
    size_t flags = JSON_PRESERVE_ORDER | (indent > 0 ? JSON_INDENT(indent) : JSON_COMPACT);
    g_alloc_failed = 0;
    int r = json_dump_callback(j, dump_cb, &c, flags);
    if (c.st) return c.st;
    if (r != 0 || g_alloc_failed) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory writing JSON");
    return LLMOPS_OK;
}

llmops_status llmops_json_write_file(const json_t *j, const char *path, int indent, llmops_error *err) {
    llmops_buf b;
    llmops_buf_init(&b, (size_t)1 << 30);
    llmops_status st = llmops_json_dump(j, indent, &b, err);
    if (!st) st = llmops_buf_puts(&b, "\n", err);
    if (!st) st = llmops_file_write_atomic(path, b.data, b.len, err);
    llmops_buf_free(&b);
    return st;
}

const char *llmops_json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static llmops_status wrong_type(const json_t *v, const char *key, const char *want,
                                const char *origin, llmops_error *err) {
    return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"%s\": expected %s, got %s", origin, key,
                            want, llmops_json_type_name(v));
}

llmops_status llmops_json_opt_int(const json_t *obj, const char *key, int64_t *out,
                                  const char *origin, llmops_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return LLMOPS_OK;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return LLMOPS_OK;
    }
    /* 1e5 or 4096.0 written by Python: accept when integral */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= -0x1p63 && d < 0x1p63 && d == (double)(int64_t)d) { /* the cast is UB outside int64 */
            *out = (int64_t)d;
            return LLMOPS_OK;
        }
    }
    return wrong_type(v, key, "an integer", origin, err);
}

llmops_status llmops_json_opt_num(const json_t *obj, const char *key, double *out,
                                  const char *origin, llmops_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return LLMOPS_OK;
    if (!json_is_number(v)) return wrong_type(v, key, "a number", origin, err);
    *out = json_number_value(v);
    return LLMOPS_OK;
}

llmops_status llmops_json_opt_bool(const json_t *obj, const char *key, int *out,
                                   const char *origin, llmops_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return LLMOPS_OK;
    if (!json_is_boolean(v)) return wrong_type(v, key, "true or false", origin, err);
    *out = json_is_true(v);
    return LLMOPS_OK;
}

llmops_status llmops_json_opt_str(const json_t *obj, const char *key, const char **out,
                                  const char *origin, llmops_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return LLMOPS_OK;
    if (!json_is_string(v)) return wrong_type(v, key, "a string", origin, err);
    *out = json_string_value(v);
    return LLMOPS_OK;
}

json_t *llmops_json_num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }
