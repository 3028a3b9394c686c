/*
 * libFuzzer target: bytes -> llmops_gguf_parse -> every accessor. Any input must give OK
 * or an error status with a message, never a crash, a hang or a leak. After a successful
 * parse every key, value (nested arrays included) and tensor is walked, the typed getters
 * run on every key, the first and last byte of every tensor are read, and every value is
 * deep-copied into a writer (the path that re-exports a parsed file).
 */
// make fuzz && build/fuzz/fuzz_gguf -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/fuzz_gguf
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/gguf.h"

static size_t walk_value(const llmops_gguf_value *v, int depth) {
    size_t s = (size_t)v->type;
    if (depth > 64) abort(); /* the reader caps nesting at 8 */
    if (v->type == LLMOPS_GGUF_STRING) {
        if (v->v.str.len) s += (uint8_t)v->v.str.data[0] + (uint8_t)v->v.str.data[v->v.str.len - 1];
    } else if (v->type == LLMOPS_GGUF_ARRAY) {
        const llmops_gguf_array *a = &v->v.arr;
        for (uint64_t i = 0; i < a->n; i++) {
            if (a->type == LLMOPS_GGUF_STRING) {
                if (a->strs[i].len) s += (uint8_t)a->strs[i].data[a->strs[i].len - 1];
            } else if (a->type == LLMOPS_GGUF_ARRAY) {
                s += walk_value(&a->items[i], depth + 1);
            } else {
                s += (size_t)llmops_gguf_arr_u64(a, i) + (size_t)llmops_gguf_arr_i64(a, i);
                double d = llmops_gguf_arr_f64(a, i);
                s += d == d;
            }
        }
    } else if (llmops_gguf_type_size(v->type) == 0) {
        abort(); /* the reader never hands out an unknown type */
    }
    return s;
}

/* A NUL-terminated copy of a file string, or NULL when it holds a NUL or is long. */
static const char *cstr(llmops_gguf_str s, char *buf, size_t cap) {
    if (s.len >= cap || memchr(s.data, '\0', (size_t)s.len)) return NULL;
    memcpy(buf, s.data, (size_t)s.len);
    buf[s.len] = '\0';
    return buf;
}

static size_t exercise(const llmops_gguf *g, size_t size) {
    size_t s = llmops_gguf_version(g);
    uint32_t align = llmops_gguf_alignment(g);
    if (!align || (align & (align - 1))) abort();
    uint64_t data_off = llmops_gguf_data_offset(g);
    if (data_off % align || llmops_gguf_file_size(g) != size) abort();
    char key[256];
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    for (size_t i = 0; i < llmops_gguf_n_kv(g); i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        s += (size_t)kv->key.len + walk_value(&kv->value, 0);
        const char *k = cstr(kv->key, key, sizeof key);
        if (k) {
            if (llmops_gguf_find_kv(g, k) != kv) abort(); /* keys are unique */
            llmops_error err = {0};
            uint64_t u;
            int64_t i64;
            double d;
            int b;
            llmops_gguf_str str;
            llmops_gguf_array arr;
            llmops_status st[6] = {llmops_gguf_get_u64(g, k, &u, &err), llmops_gguf_get_i64(g, k, &i64, &err),
                                   llmops_gguf_get_f64(g, k, &d, &err),  llmops_gguf_get_bool(g, k, &b, &err),
                                   llmops_gguf_get_str(g, k, &str, &err), llmops_gguf_get_arr(g, k, &arr, &err)};
            for (int j = 0; j < 6; j++)
                if (st[j] != LLMOPS_OK && st[j] != LLMOPS_ERR_FORMAT) abort();
        }
        if (w) {
            llmops_error err = {0};
            llmops_status st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, &err);
            if (st != LLMOPS_OK && st != LLMOPS_ERR_NOMEM) abort(); /* what was read can be written */
        }
    }
    llmops_gguf_writer_free(w);
    for (size_t i = 0; i < llmops_gguf_n_tensors(g); i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        if (t->n_dims > LLMOPS_GGUF_MAX_DIMS || t->offset % align) abort();
        if (data_off + t->offset + t->nbytes > size) abort();
        const uint8_t *p = llmops_gguf_tensor_data(g, t);
        if (t->nbytes) s += p[0] + p[t->nbytes - 1];
        const char *nm = cstr(t->name, key, sizeof key);
        if (nm && llmops_gguf_find_tensor(g, nm) != t) abort(); /* names are unique */
    }
    if (llmops_gguf_kv_at(g, llmops_gguf_n_kv(g)) || llmops_gguf_tensor_at(g, llmops_gguf_n_tensors(g))) abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_gguf *g = NULL;
    llmops_error err = {0};
    volatile size_t sink = 0;
    llmops_status st = llmops_gguf_parse(data, size, "fuzz.gguf", &g, &err);
    if (st == LLMOPS_OK) {
        sink += exercise(g, size);
        llmops_gguf_free(g);
    } else if (g != NULL || !err.msg[0] || err.code != st) {
        abort(); /* a failure leaves nothing behind and always says why */
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
