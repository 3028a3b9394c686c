/*
 * libFuzzer target: bytes -> llmops_llama2c_parse (checkpoint header and weight layout),
 * llmops_llama2c_sniff, and llmops_llama2c_vocab_parse (tokenizer.bin). Any input must
 * give OK or an error status with a message, never a crash, UB, a hang or a leak. After a
 * successful parse every tensor's first and last float is read (the tensors must tile the
 * file exactly), the descriptor built and validated; every vocab piece is walked.
 */
// make fuzz && build/fuzz/fuzz_llama2c -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/fuzz_llama2c
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/llama2c.h"

static size_t exercise_model(const llmops_llama2c *m, size_t size) {
    size_t s = 0;
    if (m->n_tensors == 0 || m->n_tensors > 16) abort();
    uint64_t expect = m->tensors[0].offset;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const llmops_llama2c_tensor *t = &m->tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
        if (t->offset != expect || t->offset + n * 4 > size) abort();
        expect = t->offset + n * 4;
        if (n) {
            float first, last;
            memcpy(&first, (const uint8_t *)t->data, 4); /* possibly unaligned in a fuzz buffer */
            memcpy(&last, (const uint8_t *)t->data + (n - 1) * 4, 4);
            s += (first == first) + (last == last);
        }
        if (llmops_llama2c_find(m, t->name) != t) abort();
    }
    if (expect != size) abort();
    llmops_arch a;
    llmops_llama2c_arch(m, &a);
    s += (size_t)a.head_dim;
    if (!llmops_llama2c_sniff(m->data, m->size)) abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    volatile size_t sink = 0;
    sink += (size_t)llmops_llama2c_sniff(data, size);
    llmops_llama2c *m = NULL;
    llmops_status st = llmops_llama2c_parse(data, size, "fuzz.bin", &m, &err);
    if (st == LLMOPS_OK) {
        sink += exercise_model(m, size);
        llmops_llama2c_free(m);
    } else if (m != NULL || !err.msg[0] || err.code != st) {
        abort();
    }
    llmops_llama2c_vocab v;
    llmops_error_clear(&err);
    st = llmops_llama2c_vocab_parse(data, size, "fuzz-tokenizer.bin", 0, &v, &err);
    if (st == LLMOPS_OK) {
        for (size_t i = 0; i < v.n; i++) {
            if (v.lens[i] > (uint32_t)v.max_token_length || strlen(v.pieces[i]) > v.lens[i]) abort();
            sink += v.lens[i] + (v.scores[i] == v.scores[i]);
        }
        /* the same bytes with the count they hold, then one more than they hold */
        llmops_llama2c_vocab v2;
        llmops_error e2 = {0};
        if (v.n && llmops_llama2c_vocab_parse(data, size, "fuzz-tokenizer.bin", v.n, &v2, &e2) != LLMOPS_OK) abort();
        if (v.n) llmops_llama2c_vocab_free(&v2);
        if (llmops_llama2c_vocab_parse(data, size, "fuzz-tokenizer.bin", v.n + 1, &v2, &e2) != LLMOPS_ERR_FORMAT) abort();
        llmops_llama2c_vocab_free(&v);
    } else if (!err.msg[0] || err.code != st) {
        abort();
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
