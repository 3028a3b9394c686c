/*
 * libFuzzer target: bytes -> llmops_safetensors_parse -> every accessor. Any input must give
 * OK or an error status with a message, never a crash, a hang or a leak. After a successful
 * parse the invariants the reader promises are checked: ranges inside the buffer, sizes
 * matching dtype × shape, ranges tiling the buffer in ascending order; the first and last
 * byte of every tensor are read and every metadata entry is walked.
 */
// make fuzz && build/fuzz/fuzz_safetensors -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/fuzz_safetensors
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/safetensors.h"

static size_t exercise(const llmops_safetensors *st, size_t size) {
    size_t s = 0;
    uint64_t buf_off = llmops_safetensors_buffer_offset(st);
    if (buf_off < 8 || buf_off > size) abort();
    uint64_t buf_len = size - buf_off, expect = 0;
    for (size_t i = 0; i < llmops_safetensors_n_tensors(st); i++) {
        const llmops_st_tensor *t = llmops_safetensors_tensor_at(st, i);
        const llmops_dtype_info *ti = llmops_dtype_get(t->type);
        if (!ti || !ti->st_name || t->n_dims > LLMOPS_MAX_DIMS) abort();
        uint64_t n = ti->type_size;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
        if (t->begin != expect || t->end < t->begin || t->end > buf_len || t->end - t->begin != n) abort();
        expect = t->end;
        const uint8_t *p = llmops_safetensors_data(st, t);
        if (t->end > t->begin) s += p[0] + p[t->end - t->begin - 1];
        const llmops_st_tensor *f = llmops_safetensors_find(st, t->name);
        if (!f || strcmp(f->name, t->name) != 0) abort();
    }
    if (expect != buf_len) abort();
    if (llmops_safetensors_tensor_at(st, llmops_safetensors_n_tensors(st)) != NULL) abort();
    for (size_t i = 0; i < llmops_safetensors_n_metadata(st); i++) {
        const char *k, *v;
        llmops_safetensors_metadata_at(st, i, &k, &v);
        if (!k || !v) abort();
        s += strlen(k) + strlen(v);
        if (!llmops_safetensors_find_metadata(st, k)) abort();
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_safetensors *st = NULL;
    llmops_error err = {0};
    volatile size_t sink = 0;
    llmops_status s = llmops_safetensors_parse(data, size, "fuzz.safetensors", &st, &err);
    if (s == LLMOPS_OK) {
        sink += exercise(st, size);
        llmops_safetensors_free(st);
    } else if (st != NULL || !err.msg[0] || err.code != s) {
        abort(); /* a failure leaves nothing behind and always says why */
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
