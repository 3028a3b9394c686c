/*
 * libFuzzer target: bytes -> llmops_spm_model_parse (a SentencePiece ModelProto). Any input must
 * give OK or an error status with a message, never a crash, a hang or a leak; a model that parses
 * must describe itself consistently (every piece non-empty, NUL-terminated at its length, a known
 * type; the normalizer name and charsmap readable), and parsing it again must give the same model.
 */
// clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
//     fuzz/fuzz_spm_model.c src/tokenizer/spm_model.c src/base/*.c -o /tmp/fuzz_spm
//     -ljansson -lyaml -lsodium -lutf8proc -lpthread -lm
// /tmp/fuzz_spm -max_total_time=60 fuzz/corpus/fuzz_spm_model
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/spm_model.h"

/* Reads every byte the model exposes so ASan sees a dangling or short buffer. */
static size_t touch(const llmops_spm_model *m) {
    size_t sum = 0;
    if (m->n == 0 || !m->pieces) abort();
    for (size_t i = 0; i < m->n; i++) {
        const llmops_spm_piece *p = &m->pieces[i];
        if (p->len == 0 || p->text[p->len] != '\0') abort();
        if (p->type < LLMOPS_SPM_PIECE_NORMAL || p->type > LLMOPS_SPM_PIECE_BYTE) abort();
        for (uint32_t j = 0; j < p->len; j++) sum += (unsigned char)p->text[j];
    }
    if (!m->normalizer.name || m->normalizer.name[m->normalizer.name_len] != '\0') abort();
    for (size_t j = 0; j < m->normalizer.precompiled_charsmap_len; j++) sum += m->normalizer.precompiled_charsmap[j];
    if ((m->normalizer.precompiled_charsmap == NULL) != (m->normalizer.precompiled_charsmap_len == 0)) abort();
    if (m->trainer.model_type < LLMOPS_SPM_MODEL_UNIGRAM || m->trainer.model_type > LLMOPS_SPM_MODEL_CHAR) abort();
    return sum;
}

static int same(const llmops_spm_model *a, const llmops_spm_model *b) {
    if (a->n != b->n || memcmp(&a->trainer, &b->trainer, sizeof a->trainer) != 0) return 0;
    for (size_t i = 0; i < a->n; i++) {
        const llmops_spm_piece *p = &a->pieces[i], *q = &b->pieces[i];
        if (p->len != q->len || p->type != q->type || memcmp(&p->score, &q->score, sizeof p->score) != 0 ||
            (p->len && memcmp(p->text, q->text, p->len) != 0))
            return 0;
    }
    return a->normalizer.name_len == b->normalizer.name_len &&
           a->normalizer.precompiled_charsmap_len == b->normalizer.precompiled_charsmap_len &&
           (a->normalizer.name_len == 0 || memcmp(a->normalizer.name, b->normalizer.name, a->normalizer.name_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_spm_model m;
    llmops_error err = {0};
    volatile size_t sink = 0;
    llmops_status st = llmops_spm_model_parse(data, size, "fuzz.model", &m, &err);
    if (st == LLMOPS_OK) {
        sink += touch(&m);
        /* a second parse of the same bytes under a failing allocation: clean NOMEM or the same model */
        llmops_spm_model m2;
        llmops_alloc_fail_nth((long)(size % 3));
        llmops_status st2 = llmops_spm_model_parse(data, size, "fuzz.model", &m2, &err);
        llmops_alloc_fail_nth(-1);
        if (st2 == LLMOPS_OK) {
            if (!same(&m, &m2)) abort();
        } else if (st2 != LLMOPS_ERR_NOMEM || m2.pieces != NULL) {
            abort();
        }
        llmops_spm_model_free(&m2);
        llmops_spm_model_free(&m);
    } else {
        /* a failure always says why, and leaves nothing behind */
        if (!err.msg[0] || err.code != st || m.pieces != NULL || m.bytes_ != NULL) abort();
        if (st != LLMOPS_ERR_FORMAT && st != LLMOPS_ERR_UNSUPPORTED && st != LLMOPS_ERR_LIMIT) abort();
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
