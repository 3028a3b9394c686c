/*
 * libFuzzer target: arbitrary bytes as a data-pipeline source. The first byte
 * picks the file syntax (CSV, TSV, JSON Lines, JSON array, plain text) and the
 * bad-record policy; the rest is the file. Every input must end in OK or an
 * error with a message, never a crash or a leak, and every example handed on
 * must carry the fields of its schema as NUL-terminated strings.
 */
// make fuzz && build/fuzz/fuzz_train_data -max_total_time=60 fuzz/corpus/fuzz_train_data
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/log.h"
#include "train/data_internal.h"

static volatile size_t g_sink;

static llmops_status on_example(void *user, const llmops_data_example *ex, llmops_error *err) {
    (void)user;
    (void)err;
    if (!ex->origin || ex->schema == LLMOPS_DATA_SCHEMA_AUTO) abort();
    for (int f = 0; f < DATA_F_COUNT; f++) {
        if (!ex->s[f]) continue;
        if (ex->s[f][ex->n[f]] != '\0') abort(); /* the stated length ends at a terminator */
        for (size_t i = 0; i < ex->n[f]; i++) g_sink += (unsigned char)ex->s[f][i];
    }
    if (ex->schema == LLMOPS_DATA_SCHEMA_CHAT) {
        if (!ex->msgs || ex->n_msgs == 0) abort();
        for (size_t i = 0; i < ex->n_msgs; i++) g_sink += strlen(ex->msgs[i].role) + strlen(ex->msgs[i].content);
    }
    /* a rejected record now and then exercises the bad-record path from the callback */
    if (ex->line % 7 == 3) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "rejected by the fuzzer");
    return LLMOPS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 64 * 1024) return 0;
    static int quiet;
    if (!quiet) {
        llmops_log_set_level(LLMOPS_LOG_ERROR);
        quiet = 1;
    }
    static const llmops_data_format formats[] = {LLMOPS_DATA_FORMAT_CSV, LLMOPS_DATA_FORMAT_CSV,
                                                 LLMOPS_DATA_FORMAT_JSONL, LLMOPS_DATA_FORMAT_JSON,
                                                 LLMOPS_DATA_FORMAT_TEXT};
    uint8_t mode = data[0];
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.bad_rows = (mode & 0x80) ? LLMOPS_DATA_BAD_FAIL : LLMOPS_DATA_BAD_SKIP;
    p.schema = (llmops_data_schema)((mode >> 3) % 5);
    p.doc_separator = (mode & 0x40) ? "\n\n" : NULL;
    llmops_data_reader r;
    llmops_data_reader_init(&r, &p);
    r.format = formats[(mode & 7) % 5];
    if ((mode & 7) % 5 == 1) r.delim = '\t';
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_status st = llmops_data_read(&r, (const char *)data + 1, size - 1, "fuzz", on_example, NULL, &err);
    if (st != LLMOPS_OK && !err.msg[0]) abort(); /* every error explains itself */
    if (llmops_alloc_live() != live) abort();     /* leaked */
    return 0;
}
