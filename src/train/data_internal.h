/*
 * src/train/data_internal.h — the record readers of the data pipeline
 * (CSV, JSON Lines, JSON arrays, plain text) shared by data.c, the tests and
 * fuzz/fuzz_train_data.c. They turn the bytes of one source into examples
 * (the strings of one record, by schema) and apply the bad-record policy.
 */
#ifndef LLMOPS_TRAIN_DATA_INTERNAL_H
#define LLMOPS_TRAIN_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/chat_template.h"
#include "llmops/status.h"
#include "llmops/train_data.h"

/* ---- CSV (RFC 4180) --------------------------------------------------------------- */

typedef struct llmops_csv_record {
    llmops_buf text; /* the fields, each NUL-terminated, back to back      */
    size_t *off;     /* (n) start of field i in text.data                     */
    size_t *len;     /* (n) its length                                         */
    size_t n, cap;
    uint64_t line;   /* 1-based line where the record starts                  */
} llmops_csv_record;

void llmops_csv_record_init(llmops_csv_record *r);
void llmops_csv_record_free(llmops_csv_record *r);

/*
 * Reads the record that starts at data[*pos]. Records end at LF, CRLF or CR
 * outside quotes; a quoted field may hold delimiters, newlines and "" (one
 * quote). Empty lines are skipped. Returns OK with pos and line advanced past the
 * record, NOT_FOUND at the end of the input, FORMAT for bad quoting ("LINE:
 * field N: ...", an unterminated quote, text after a closing quote) — then *pos
 * and the line are moved past the bad line so reading can go on.
 */
llmops_status llmops_csv_next(const char *data, size_t n, size_t *pos, uint64_t *line, char delim,
                              llmops_csv_record *r, llmops_error *err);

/* ---- records to examples ------------------------------------------------------------ */

enum { DATA_F_TEXT, DATA_F_INSTRUCTION, DATA_F_INPUT, DATA_F_OUTPUT, DATA_F_PROMPT, DATA_F_COMPLETION,
       DATA_F_MESSAGES, DATA_F_COUNT };

typedef struct llmops_data_example {
    llmops_data_schema schema;
    const char *origin;  /* file or URL                                   */
    uint64_t line;       /* line of the record (JSON arrays: element number) */
    const char *s[DATA_F_COUNT]; /* the fields of the schema, NUL-terminated */
    size_t n[DATA_F_COUNT];
    const llmops_chat_message *msgs; /* CHAT */
    size_t n_msgs;
} llmops_data_example;

/* Handles one example. FORMAT means "bad record" (the reader prefixes FILE:LINE and
 * applies the policy); other errors stop the read. */
typedef llmops_status (*llmops_data_example_fn)(void *user, const llmops_data_example *ex, llmops_error *err);

typedef struct llmops_data_reader {
    llmops_data_format format;     /* resolved (not AUTO)                             */
    llmops_data_schema schema;     /* AUTO: detected from the first record, then kept */
    const char *names[DATA_F_COUNT];
    char delim;                    /* CSV                                             */
    const char *doc_separator;     /* TEXT                                            */
    llmops_data_bad_rows bad_rows;
    int max_logged;
    int64_t n_skipped;             /* bad records skipped so far                      */
    int64_t n_records;             /* examples handed to fn                           */
} llmops_data_reader;

/* Defaults from the params (names, delimiter, policy); format/schema as given. */
void llmops_data_reader_init(llmops_data_reader *r, const llmops_data_params *p);

/* Reads every record of data[0..len) (need not be NUL-terminated), calling fn for each. */
llmops_status llmops_data_read(llmops_data_reader *r, const char *data, size_t len, const char *origin,
                               llmops_data_example_fn fn, void *user, llmops_error *err);

/* The format a path's extension implies (AUTO when unknown); *delim gets '\t' for .tsv. */
llmops_data_format llmops_data_format_of_path(const char *path, char *delim);
/* The format the first bytes imply: '{' → JSONL, '[' → JSON, else AUTO (unknown). */
llmops_data_format llmops_data_format_sniff(const char *data, size_t len);

#endif
