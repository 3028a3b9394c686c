/*
 * libFuzzer target: arbitrary bytes as a Chroma `where` and `where_document`
 * filter -> parse -> SQL translation -> run against a tiny in-memory copy of
 * the vector database schema. Any input must give OK or an error status with
 * a message, never a crash, a leak or SQL that SQLite refuses to compile: the
 * translator must only ever emit valid SQL with bound parameters.
 */
// clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
//     fuzz/fuzz_vdb_filter.c src/base/*.c src/tokenizer/uregex.c src/vectordb/filter.c -o /tmp/fuzz_vdb_filter
//     -ljansson -lyaml -lsodium -lutf8proc -lsqlite3 -lpthread -lm
// /tmp/fuzz_vdb_filter -max_total_time=60 fuzz/corpus/fuzz_vdb_filter
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "vectordb/filter.h"

static sqlite3 *g_db;

static void setup(void) {
    if (g_db) return;
    if (sqlite3_open(":memory:", &g_db) != SQLITE_OK) abort();
    if (llmops_vdb_register_sql_functions(g_db) != SQLITE_OK) abort();
    const char *schema =
        "CREATE TABLE records(label INTEGER PRIMARY KEY, coll INTEGER, id TEXT, embedding BLOB, document TEXT);"
        "CREATE TABLE metadata(label INTEGER, key TEXT, coll INTEGER, t INTEGER, v, PRIMARY KEY(label, key)) WITHOUT ROWID;"
        "CREATE INDEX metadata_kv ON metadata(coll, key, v);"
        "INSERT INTO records VALUES(1, 1, 'a', x'00', 'the ran controller'), (2, 1, 'b', x'00', NULL),"
        " (3, 1, 'c', x'00', 'caf\xc3\xa9 xyz 42');"
        "INSERT INTO metadata VALUES(1, 'a', 1, 2, 3), (1, 'b', 1, 3, 2.5), (2, 'a', 1, 1, 'x'), (3, 'd', 1, 4, 1);";
    if (sqlite3_exec(g_db, schema, NULL, NULL, NULL) != SQLITE_OK) abort();
}

static void run(const uint8_t *data, size_t size, int document) {
    llmops_error err = {0};
    llmops_vdb_filter *f = NULL;
    if (llmops_vdb_filter_parse((const char *)data, size, document, &f, &err) != LLMOPS_OK) {
        if (!err.msg[0] || f) abort(); /* every error explains itself */
        return;
    }
    llmops_buf sql;
    llmops_buf_init(&sql, 1 << 24);
    llmops_vdb_sql_params p = {0};
    if (llmops_buf_puts(&sql, "SELECT r.label FROM records r WHERE r.coll=?1 AND ", &err) == LLMOPS_OK &&
        llmops_vdb_filter_sql(f, &sql, &p, 2, &err) == LLMOPS_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(g_db, sql.data, -1, &st, NULL) != SQLITE_OK) abort(); /* invalid SQL emitted */
        sqlite3_bind_int(st, 1, 1);
        for (size_t i = 0; i < p.n; i++) {
            const llmops_vdb_value *v = &p.v[i];
            int idx = 2 + (int)i;
            if (v->type == LLMOPS_VDB_STR) sqlite3_bind_text(st, idx, v->u.s, -1, SQLITE_STATIC);
            else if (v->type == LLMOPS_VDB_INT) sqlite3_bind_int64(st, idx, v->u.i);
            else if (v->type == LLMOPS_VDB_FLOAT) sqlite3_bind_double(st, idx, v->u.f);
            else abort(); /* booleans are bound as integers */
        }
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
        /* the only run-time error allowed: a regex out of backtracking budget */
        if (rc != SQLITE_DONE && !strstr(sqlite3_errmsg(g_db), "backtracking")) abort();
        sqlite3_finalize(st);
    } else if (!err.msg[0]) {
        abort();
    }
    llmops_buf_free(&sql);
    llmops_vdb_sql_params_free(&p);
    llmops_vdb_filter_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0;
    setup();
    long live = llmops_alloc_live();
    run(data, size, 0);
    run(data, size, 1);
    if (llmops_alloc_live() != live) abort(); /* leaked */
    return 0;
}
