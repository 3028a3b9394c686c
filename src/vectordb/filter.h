/*
 * src/vectordb/filter.h — Chroma's `where` / `where_document` filters: parsed
 * from JSON into a tree, translated into an SQL boolean expression over the
 * records table (alias `r`) and the metadata table, with bound parameters.
 *
 *     llmops_vdb_filter *f = NULL;
 *     if (llmops_vdb_filter_parse(json, len, 0, &f, &err)) return err.code;
 *     llmops_vdb_sql_params p = {0};
 *     llmops_vdb_filter_sql(f, &sql, &p, 2, &err);   // "?1" is the collection id
 *     ... sqlite3_bind each p.v[i] at index 2 + i ...
 *     llmops_vdb_sql_params_free(&p);
 *     llmops_vdb_filter_free(f);
 *
 * The metadata table holds one row (label, key, coll, t, v) per key, t being
 * the llmops_vdb_type and v the value (text, integer, real, or 0/1 for a
 * boolean), with an index on (coll, key, v), so a selective comparison is an
 * index range scan.
 */
#ifndef LLMOPS_VECTORDB_FILTER_H
#define LLMOPS_VECTORDB_FILTER_H

#include <stddef.h>

#include "llmops/alloc.h"
#include "llmops/status.h"
#include "llmops/vectordb.h"

/* Caps on untrusted filters. */
#define LLMOPS_VDB_FILTER_MAX_DEPTH 32
#define LLMOPS_VDB_FILTER_MAX_NODES 4096
#define LLMOPS_VDB_FILTER_MAX_VALUES 16384
#define LLMOPS_VDB_FILTER_MAX_BYTES (1u << 20)

typedef enum llmops_vdb_fop {
    LLMOPS_VDB_F_AND,
    LLMOPS_VDB_F_OR,
    LLMOPS_VDB_F_EQ,
    LLMOPS_VDB_F_NE,
    LLMOPS_VDB_F_GT,
    LLMOPS_VDB_F_GTE,
    LLMOPS_VDB_F_LT,
    LLMOPS_VDB_F_LTE,
    LLMOPS_VDB_F_IN,
    LLMOPS_VDB_F_NIN,
    LLMOPS_VDB_F_CONTAINS,
    LLMOPS_VDB_F_NOT_CONTAINS,
    LLMOPS_VDB_F_REGEX,
    LLMOPS_VDB_F_NOT_REGEX
} llmops_vdb_fop;

typedef struct llmops_vdb_fnode {
    llmops_vdb_fop op;
    const char *key;                 /* metadata comparisons                   */
    llmops_vdb_value *vals;          /* (n_vals) operands; doc ops: vals[0].s  */
    size_t n_vals;
    struct llmops_vdb_fnode **kids;  /* (n_kids) for $and / $or                */
    size_t n_kids;
} llmops_vdb_fnode;

typedef struct llmops_vdb_filter {
    llmops_arena *arena;   /* owns every node and string */
    llmops_vdb_fnode *root; /* NULL: {} matches everything */
    int document;           /* a where_document filter    */
} llmops_vdb_filter;

/*
 * Parses a `where` (document = 0) or `where_document` (document = 1) filter.
 * Errors are FORMAT (bad JSON, unknown operator, wrong operand type) or LIMIT,
 * with the JSON path of the fault: "where.$or[2].tag.$in[0]: ...".
 */
llmops_status llmops_vdb_filter_parse(const char *json, size_t len, int document, llmops_vdb_filter **out,
                                      llmops_error *err);
void llmops_vdb_filter_free(llmops_vdb_filter *f);

/* Bound parameters collected while translating. Strings point into the filter. */
typedef struct llmops_vdb_sql_params {
    llmops_vdb_value *v;
    size_t n, cap;
} llmops_vdb_sql_params;

void llmops_vdb_sql_params_free(llmops_vdb_sql_params *p);

/*
 * Appends "(expr)" to sql: an expression true for the rows of `records r`
 * that pass f. It refers to the collection id as ?1 and to its own
 * parameters as ?first, ?first+1, ... (first = first_param + p->n on entry);
 * regex operators call the SQL function vdb_regex(pattern, text), which
 * llmops_vdb_register_sql_functions installs.
 */
llmops_status llmops_vdb_filter_sql(const llmops_vdb_filter *f, llmops_buf *sql, llmops_vdb_sql_params *p,
                                    int first_param, llmops_error *err);

struct sqlite3;
/* Registers vdb_regex(pattern, text) -> 0/1 on a connection. */
int llmops_vdb_register_sql_functions(struct sqlite3 *db);

#endif
