/*
 * Chroma's filter language: JSON -> tree -> SQL. See filter.h.
 *
 * Semantics (documented in llmops/vectordb.h): a comparison matches a record
 * whose value for the key has a compatible type (numbers with numbers,
 * strings with strings, booleans with booleans) and satisfies the operator;
 * $ne / $nin are the exact negations of $eq / $in, so records without the key
 * match them. Each comparison becomes
 *     r.label [NOT] IN (SELECT label FROM metadata WHERE coll=?1 AND key=? AND <typed test>)
 * which SQLite answers from the (coll, key, v) index.
 */
#include "vectordb/filter.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "tokenizer/uregex.h"

/* ---- parsing ----------------------------------------------------------------- */

typedef struct parser {
    llmops_arena *arena;
    llmops_error *err;
    size_t nodes;
    size_t values;
    char path[512];
} parser;

/* Appends ".key" / "[i]" to the path; returns the old length so the caller can restore it. */
static size_t path_key(parser *ps, const char *key) {
    size_t old = strlen(ps->path);
    if (sizeof ps->path - old > 1) snprintf(ps->path + old, sizeof ps->path - old, ".%s", key);
    return old;
}

static size_t path_index(parser *ps, size_t i) {
    size_t old = strlen(ps->path);
    if (sizeof ps->path - old > 1) snprintf(ps->path + old, sizeof ps->path - old, "[%zu]", i);
    return old;
}

static void path_pop(parser *ps, size_t old) { ps->path[old] = '\0'; }

static llmops_status fail(parser *ps, llmops_status code, const char *what, const json_t *got) {
    if (got) return llmops_error_set(ps->err, code, "%s: %s, got %s", ps->path, what, llmops_json_type_name(got));
    return llmops_error_set(ps->err, code, "%s: %s", ps->path, what);
}

static llmops_vdb_fnode *new_node(parser *ps, llmops_vdb_fop op) {
    if (++ps->nodes > LLMOPS_VDB_FILTER_MAX_NODES) {
        llmops_error_set(ps->err, LLMOPS_ERR_LIMIT, "%s: more than %d conditions", ps->path,
                         LLMOPS_VDB_FILTER_MAX_NODES);
        return NULL;
    }
    llmops_vdb_fnode *n = llmops_arena_alloc(ps->arena, sizeof *n, 8);
    if (!n) {
        llmops_error_set(ps->err, LLMOPS_ERR_NOMEM, "%s: out of memory", ps->path);
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->op = op;
    return n;
}

static const char *arena_str(parser *ps, const char *s, size_t len) {
    char *d = llmops_arena_strndup(ps->arena, s, len);
    if (!d) llmops_error_set(ps->err, LLMOPS_ERR_NOMEM, "%s: out of memory", ps->path);
    return d;
}

/* A scalar operand: string, integer, float or boolean. */
static llmops_status parse_scalar(parser *ps, const json_t *j, llmops_vdb_value *v) {
    if (json_is_string(j)) {
        v->type = LLMOPS_VDB_STR;
        v->u.s = arena_str(ps, json_string_value(j), json_string_length(j));
        return v->u.s ? LLMOPS_OK : ps->err->code;
    }
    if (json_is_integer(j)) {
        v->type = LLMOPS_VDB_INT;
        v->u.i = (int64_t)json_integer_value(j);
        return LLMOPS_OK;
    }
    if (json_is_real(j)) {
        v->type = LLMOPS_VDB_FLOAT;
        v->u.f = json_real_value(j);
        if (!isfinite(v->u.f)) return fail(ps, LLMOPS_ERR_FORMAT, "expected a finite number", NULL);
        return LLMOPS_OK;
    }
    if (json_is_boolean(j)) {
        v->type = LLMOPS_VDB_BOOL;
        v->u.b = json_is_true(j);
        return LLMOPS_OK;
    }
    return fail(ps, LLMOPS_ERR_FORMAT, "expected a string, number or boolean", j);
}

static const struct {
    const char *name;
    llmops_vdb_fop op;
} k_where_ops[] = {
    {"$eq", LLMOPS_VDB_F_EQ},   {"$ne", LLMOPS_VDB_F_NE},   {"$gt", LLMOPS_VDB_F_GT},
    {"$gte", LLMOPS_VDB_F_GTE}, {"$lt", LLMOPS_VDB_F_LT},   {"$lte", LLMOPS_VDB_F_LTE},
    {"$in", LLMOPS_VDB_F_IN},   {"$nin", LLMOPS_VDB_F_NIN},
};

static const struct {
    const char *name;
    llmops_vdb_fop op;
} k_doc_ops[] = {
    {"$contains", LLMOPS_VDB_F_CONTAINS},
    {"$not_contains", LLMOPS_VDB_F_NOT_CONTAINS},
    {"$regex", LLMOPS_VDB_F_REGEX},
    {"$not_regex", LLMOPS_VDB_F_NOT_REGEX},
};

static llmops_status parse_node(parser *ps, const json_t *j, int document, int depth, llmops_vdb_fnode **out);

/* {"$and"|"$or": [f, f, ...]} */
static llmops_status parse_logical(parser *ps, const char *key, const json_t *val, int document, int depth,
                                   llmops_vdb_fnode **out) {
    size_t old = path_key(ps, key);
    if (!json_is_array(val) || json_array_size(val) < 2) {
        llmops_status st = json_is_array(val)
                               ? fail(ps, LLMOPS_ERR_FORMAT, "expected a list of at least two filters", NULL)
                               : fail(ps, LLMOPS_ERR_FORMAT, "expected a list of at least two filters", val);
        return st;
    }
    llmops_vdb_fnode *n = new_node(ps, key[1] == 'a' ? LLMOPS_VDB_F_AND : LLMOPS_VDB_F_OR);
    if (!n) return ps->err->code;
    n->n_kids = json_array_size(val);
    n->kids = llmops_arena_alloc(ps->arena, n->n_kids * sizeof *n->kids, 8);
    if (!n->kids) return fail(ps, LLMOPS_ERR_NOMEM, "out of memory", NULL);
    for (size_t i = 0; i < n->n_kids; i++) {
        size_t o2 = path_index(ps, i);
        llmops_status st = parse_node(ps, json_array_get(val, i), document, depth + 1, &n->kids[i]);
        if (st) return st;
        if (!n->kids[i]) return fail(ps, LLMOPS_ERR_FORMAT, "an empty filter inside $and/$or", NULL);
        path_pop(ps, o2);
    }
    path_pop(ps, old);
    *out = n;
    return LLMOPS_OK;
}

/* "key": scalar | {"$op": operand} */
static llmops_status parse_comparison(parser *ps, const char *key, const json_t *val, llmops_vdb_fnode **out) {
    size_t old = path_key(ps, key);
    if (!*key) return fail(ps, LLMOPS_ERR_FORMAT, "empty metadata key", NULL);
    llmops_vdb_fop op = LLMOPS_VDB_F_EQ;
    const json_t *operand = val;
    if (json_is_object(val)) {
        if (json_object_size(val) != 1)
            return fail(ps, LLMOPS_ERR_FORMAT, "expected exactly one operator ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin)",
                        NULL);
        const char *opname = json_object_iter_key(json_object_iter((json_t *)val));
        operand = json_object_iter_value(json_object_iter((json_t *)val));
        size_t i = 0, nops = sizeof k_where_ops / sizeof k_where_ops[0];
        while (i < nops && strcmp(k_where_ops[i].name, opname)) i++;
        path_key(ps, opname);
        if (i == nops)
            return fail(ps, LLMOPS_ERR_FORMAT, "unknown operator (expected $eq, $ne, $gt, $gte, $lt, $lte, $in or $nin)",
                        NULL);
        op = k_where_ops[i].op;
    }
    llmops_vdb_fnode *n = new_node(ps, op);
    if (!n) return ps->err->code;
    n->key = arena_str(ps, key, strlen(key));
    if (!n->key) return ps->err->code;
    if (op == LLMOPS_VDB_F_IN || op == LLMOPS_VDB_F_NIN) {
        if (!json_is_array(operand)) return fail(ps, LLMOPS_ERR_FORMAT, "expected a list of values", operand);
        n->n_vals = json_array_size(operand);
        if (n->n_vals == 0) return fail(ps, LLMOPS_ERR_FORMAT, "expected a non-empty list of values", NULL);
        ps->values += n->n_vals;
        if (ps->values > LLMOPS_VDB_FILTER_MAX_VALUES)
            return fail(ps, LLMOPS_ERR_LIMIT, "too many values in $in/$nin lists", NULL);
        n->vals = llmops_arena_alloc(ps->arena, n->n_vals * sizeof *n->vals, 8);
        if (!n->vals) return fail(ps, LLMOPS_ERR_NOMEM, "out of memory", NULL);
        for (size_t i = 0; i < n->n_vals; i++) {
            size_t o2 = path_index(ps, i);
            llmops_status st = parse_scalar(ps, json_array_get(operand, i), &n->vals[i]);
            if (st) return st;
            path_pop(ps, o2);
        }
    } else {
        if (++ps->values > LLMOPS_VDB_FILTER_MAX_VALUES)
            return fail(ps, LLMOPS_ERR_LIMIT, "too many values", NULL);
        n->n_vals = 1;
        n->vals = llmops_arena_alloc(ps->arena, sizeof *n->vals, 8);
        if (!n->vals) return fail(ps, LLMOPS_ERR_NOMEM, "out of memory", NULL);
        if (json_is_object(operand) || json_is_array(operand) || json_is_null(operand))
            return fail(ps, LLMOPS_ERR_FORMAT, "expected a string, number or boolean", operand);
        llmops_status st = parse_scalar(ps, operand, &n->vals[0]);
        if (st) return st;
        if (op >= LLMOPS_VDB_F_GT && op <= LLMOPS_VDB_F_LTE && n->vals[0].type != LLMOPS_VDB_INT &&
            n->vals[0].type != LLMOPS_VDB_FLOAT)
            return fail(ps, LLMOPS_ERR_FORMAT, "expected a number", operand);
    }
    path_pop(ps, old);
    *out = n;
    return LLMOPS_OK;
}

/* {"$contains"|...: "text"} */
static llmops_status parse_doc_op(parser *ps, const char *key, const json_t *val, llmops_vdb_fnode **out) {
    size_t old = path_key(ps, key);
    size_t i = 0, nops = sizeof k_doc_ops / sizeof k_doc_ops[0];
    while (i < nops && strcmp(k_doc_ops[i].name, key)) i++;
    if (i == nops)
        return fail(ps, LLMOPS_ERR_FORMAT,
                    "unknown operator (expected $contains, $not_contains, $regex, $not_regex, $and or $or)", NULL);
    if (!json_is_string(val)) return fail(ps, LLMOPS_ERR_FORMAT, "expected a string", val);
    llmops_vdb_fnode *n = new_node(ps, k_doc_ops[i].op);
    if (!n) return ps->err->code;
    n->n_vals = 1;
    n->vals = llmops_arena_alloc(ps->arena, sizeof *n->vals, 8);
    if (!n->vals) return fail(ps, LLMOPS_ERR_NOMEM, "out of memory", NULL);
    n->vals[0].type = LLMOPS_VDB_STR;
    n->vals[0].u.s = arena_str(ps, json_string_value(val), json_string_length(val));
    if (!n->vals[0].u.s) return ps->err->code;
    if (strlen(n->vals[0].u.s) != json_string_length(val))
        return fail(ps, LLMOPS_ERR_FORMAT, "the string holds a NUL character", NULL);
    if (n->op == LLMOPS_VDB_F_REGEX || n->op == LLMOPS_VDB_F_NOT_REGEX) {
        /* compile now so that a bad pattern is reported with its path */
        llmops_regex *re = NULL;
        llmops_error rerr = {0};
        if (llmops_regex_compile(n->vals[0].u.s, -1, &re, &rerr) != LLMOPS_OK)
            return llmops_error_set(ps->err, rerr.code == LLMOPS_ERR_NOMEM ? LLMOPS_ERR_NOMEM : LLMOPS_ERR_FORMAT,
                                    "%s: %s", ps->path, rerr.msg);
        llmops_regex_free(re);
    }
    path_pop(ps, old);
    *out = n;
    return LLMOPS_OK;
}

static llmops_status parse_node(parser *ps, const json_t *j, int document, int depth, llmops_vdb_fnode **out) {
    *out = NULL;
    if (depth > LLMOPS_VDB_FILTER_MAX_DEPTH)
        return fail(ps, LLMOPS_ERR_LIMIT, "filters nested too deeply", NULL);
    if (!json_is_object(j)) return fail(ps, LLMOPS_ERR_FORMAT, "expected an object", j);
    size_t n = json_object_size(j);
    if (n == 0) return depth == 0 ? LLMOPS_OK : fail(ps, LLMOPS_ERR_FORMAT, "empty filter", NULL);
    if (n != 1)
        return fail(ps, LLMOPS_ERR_FORMAT, "expected exactly one key (combine conditions with $and / $or)", NULL);
    void *it = json_object_iter((json_t *)j);
    const char *key = json_object_iter_key(it);
    const json_t *val = json_object_iter_value(it);
    if (!strcmp(key, "$and") || !strcmp(key, "$or")) return parse_logical(ps, key, val, document, depth, out);
    if (document) return parse_doc_op(ps, key, val, out);
    if (key[0] == '$') {
        size_t old = path_key(ps, key);
        (void)old;
        return fail(ps, LLMOPS_ERR_FORMAT, "unknown operator (expected $and or $or, or a metadata key)", NULL);
    }
    return parse_comparison(ps, key, val, out);
}

llmops_status llmops_vdb_filter_parse(const char *json, size_t len, int document, llmops_vdb_filter **out,
                                      llmops_error *err) {
    *out = NULL;
    const char *origin = document ? "where_document" : "where";
    if (len > LLMOPS_VDB_FILTER_MAX_BYTES)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: filter larger than %u bytes", origin,
                                LLMOPS_VDB_FILTER_MAX_BYTES);
    json_t *j = NULL;
    llmops_status st = llmops_json_parse(json, len, origin, &j, err);
    if (st) return st;
    llmops_vdb_filter *f = llmops_calloc(1, sizeof *f);
    llmops_arena *arena = f ? llmops_arena_create(4096, 64u << 20) : NULL;
    if (!f || !arena) {
        llmops_free(f);
        json_decref(j);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    }
    f->arena = arena;
    f->document = document;
    parser ps = {.arena = arena, .err = err};
    snprintf(ps.path, sizeof ps.path, "%s", origin);
    llmops_error local = {0};
    if (!err) ps.err = &local;
    st = parse_node(&ps, j, document, 0, &f->root);
    json_decref(j);
    if (st) {
        llmops_vdb_filter_free(f);
        return st;
    }
    *out = f;
    return LLMOPS_OK;
}

void llmops_vdb_filter_free(llmops_vdb_filter *f) {
    if (!f) return;
    llmops_arena_free(f->arena);
    llmops_free(f);
}

/* ---- SQL --------------------------------------------------------------------- */

void llmops_vdb_sql_params_free(llmops_vdb_sql_params *p) {
    llmops_free(p->v);
    memset(p, 0, sizeof *p);
}

typedef struct emitter {
    llmops_buf *sql;
    llmops_vdb_sql_params *p;
    int first;
    llmops_error *err;
} emitter;

static llmops_status emit(emitter *e, const char *s) { return llmops_buf_puts(e->sql, s, e->err); }

/* Appends "?N" bound to v. */
static llmops_status emit_param(emitter *e, llmops_vdb_value v) {
    llmops_vdb_sql_params *p = e->p;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        llmops_vdb_value *nv = llmops_reallocarray(p->v, cap, sizeof *nv);
        if (!nv) return llmops_error_set(e->err, LLMOPS_ERR_NOMEM, "filter: out of memory");
        p->v = nv;
        p->cap = cap;
    }
    if (v.type == LLMOPS_VDB_BOOL) { /* stored as 0/1 */
        v.type = LLMOPS_VDB_INT;
        v.u.i = v.u.b ? 1 : 0;
    }
    p->v[p->n] = v;
    size_t idx = (size_t)e->first + p->n;
    p->n++;
    return llmops_buf_printf(e->sql, e->err, "?%zu", idx);
}

/* The metadata type test that goes with a value of type t. */
static const char *type_test(llmops_vdb_type t) {
    switch (t) {
    case LLMOPS_VDB_STR: return "t=1";
    case LLMOPS_VDB_INT:
    case LLMOPS_VDB_FLOAT: return "t IN (2,3)";
    default: return "t=4";
    }
}

static llmops_status emit_comparison(emitter *e, const llmops_vdb_fnode *n) {
    llmops_status st;
    int negate = n->op == LLMOPS_VDB_F_NE || n->op == LLMOPS_VDB_F_NIN;
    st = emit(e, negate ? "r.label NOT IN (SELECT label FROM metadata WHERE coll=?1 AND key="
                        : "r.label IN (SELECT label FROM metadata WHERE coll=?1 AND key=");
    if (st) return st;
    if ((st = emit_param(e, LLMOPS_VDB_STR_VALUE(n->key)))) return st;
    if (n->op == LLMOPS_VDB_F_IN || n->op == LLMOPS_VDB_F_NIN) {
        /* group the list by type: (t=1 AND v IN (..)) OR (t IN (2,3) AND v IN (..)) OR ... */
        if ((st = emit(e, " AND ("))) return st;
        int groups = 0;
        static const llmops_vdb_type kinds[3] = {LLMOPS_VDB_STR, LLMOPS_VDB_INT, LLMOPS_VDB_BOOL};
        for (int g = 0; g < 3; g++) {
            int any = 0;
            for (size_t i = 0; i < n->n_vals; i++) {
                llmops_vdb_type t = n->vals[i].type == LLMOPS_VDB_FLOAT ? LLMOPS_VDB_INT : n->vals[i].type;
                if (t != kinds[g]) continue;
                if (!any) {
                    if ((st = llmops_buf_printf(e->sql, e->err, "%s(%s AND v IN (", groups ? " OR " : "",
                                                type_test(kinds[g]))))
                        return st;
                    groups++;
                } else if ((st = emit(e, ","))) {
                    return st;
                }
                any = 1;
                if ((st = emit_param(e, n->vals[i]))) return st;
            }
            if (any && (st = emit(e, "))"))) return st;
        }
        return emit(e, "))");
    }
    static const char *ops[] = {[LLMOPS_VDB_F_EQ] = "=",  [LLMOPS_VDB_F_NE] = "=",  [LLMOPS_VDB_F_GT] = ">",
                                [LLMOPS_VDB_F_GTE] = ">=", [LLMOPS_VDB_F_LT] = "<", [LLMOPS_VDB_F_LTE] = "<="};
    if ((st = llmops_buf_printf(e->sql, e->err, " AND %s AND v%s", type_test(n->vals[0].type), ops[n->op])))
        return st;
    if ((st = emit_param(e, n->vals[0]))) return st;
    return emit(e, ")");
}

static llmops_status emit_node(emitter *e, const llmops_vdb_fnode *n) {
    llmops_status st;
    switch (n->op) {
    case LLMOPS_VDB_F_AND:
    case LLMOPS_VDB_F_OR:
        if ((st = emit(e, "("))) return st;
        for (size_t i = 0; i < n->n_kids; i++) {
            if (i && (st = emit(e, n->op == LLMOPS_VDB_F_AND ? " AND " : " OR "))) return st;
            if ((st = emit_node(e, n->kids[i]))) return st;
        }
        return emit(e, ")");
    case LLMOPS_VDB_F_CONTAINS:
    case LLMOPS_VDB_F_NOT_CONTAINS:
        if ((st = emit(e, n->op == LLMOPS_VDB_F_CONTAINS ? "(r.document IS NOT NULL AND instr(r.document, "
                                                          : "(r.document IS NULL OR instr(r.document, ")))
            return st;
        if ((st = emit_param(e, n->vals[0]))) return st;
        return emit(e, n->op == LLMOPS_VDB_F_CONTAINS ? ") > 0)" : ") = 0)");
    case LLMOPS_VDB_F_REGEX:
    case LLMOPS_VDB_F_NOT_REGEX:
        if ((st = emit(e, n->op == LLMOPS_VDB_F_REGEX ? "(vdb_regex(" : "(NOT vdb_regex("))) return st;
        if ((st = emit_param(e, n->vals[0]))) return st;
        return emit(e, ", r.document))");
    default:
        return emit_comparison(e, n);
    }
}

llmops_status llmops_vdb_filter_sql(const llmops_vdb_filter *f, llmops_buf *sql, llmops_vdb_sql_params *p,
                                    int first_param, llmops_error *err) {
    emitter e = {sql, p, first_param, err};
    if (!f || !f->root) return emit(&e, "(1)");
    return emit_node(&e, f->root);
}

/* ---- vdb_regex(pattern, text) ------------------------------------------------ */

static void regex_free_aux(void *p) { llmops_regex_free(p); }

static void sql_regex(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    llmops_regex *re = sqlite3_get_auxdata(ctx, 0);
    if (!re) {
        const char *pat = (const char *)sqlite3_value_text(argv[0]);
        llmops_error err = {0};
        if (!pat || llmops_regex_compile(pat, -1, &re, &err) != LLMOPS_OK) {
            sqlite3_result_error(ctx, err.msg[0] ? err.msg : "vdb_regex: bad pattern", -1);
            return;
        }
        sqlite3_set_auxdata(ctx, 0, re, regex_free_aux);
        re = sqlite3_get_auxdata(ctx, 0); /* set_auxdata may have freed it already */
        if (!re) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
    }
    const char *text = (const char *)sqlite3_value_text(argv[1]);
    int len = sqlite3_value_bytes(argv[1]);
    if (!text) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    llmops_utext t = {0};
    llmops_error err = {0};
    if (llmops_utext_from_utf8(&t, text, (size_t)len, &err) != LLMOPS_OK) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t b, e;
    int r = llmops_regex_search(re, &t, 0, t.n, 0, &b, &e);
    llmops_utext_free(&t);
    if (r < 0) {
        sqlite3_result_error(ctx, "where_document: the regex needs too much backtracking on a document", -1);
        return;
    }
    sqlite3_result_int(ctx, r == 1);
}

int llmops_vdb_register_sql_functions(struct sqlite3 *db) {
    return sqlite3_create_function(db, "vdb_regex", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_regex, NULL,
                                   NULL);
}
