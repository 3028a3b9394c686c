/*
 * Results: rows read back from SQLite into one arena, and their JSON form
 * (Chroma's GetResult / QueryResult shapes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vectordb/vdb_internal.h"

llmops_status vdb_result_new(size_t n_lists, uint32_t dim, unsigned include, llmops_vdb_result **out,
                             llmops_error *err) {
    *out = NULL;
    llmops_vdb_result *r = llmops_calloc(1, sizeof *r);
    if (!r) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    r->arena = llmops_arena_create(1 << 16, 0);
    if (r->arena) {
        r->n_hits = llmops_arena_alloc(r->arena, (n_lists + 1) * sizeof *r->n_hits, 8);
        r->hits = llmops_arena_alloc(r->arena, (n_lists + 1) * sizeof *r->hits, 8);
    }
    if (!r->arena || !r->n_hits || !r->hits) {
        llmops_vdb_result_free(r);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    }
    memset(r->n_hits, 0, (n_lists + 1) * sizeof *r->n_hits);
    memset(r->hits, 0, (n_lists + 1) * sizeof *r->hits);
    r->n_lists = n_lists;
    r->dim = dim;
    r->include = include;
    *out = r;
    return LLMOPS_OK;
}

void llmops_vdb_result_free(llmops_vdb_result *r) {
    if (!r) return;
    llmops_arena_free(r->arena);
    llmops_free(r);
}

static char *adup(llmops_arena *a, const unsigned char *s, int n) {
    return llmops_arena_strndup(a, (const char *)s, n < 0 ? 0 : (size_t)n);
}

static llmops_status read_metadata(llmops_vdb_collection *c, sqlite3_stmt *s, llmops_arena *a, int64_t label,
                                   llmops_vdb_hit *h, llmops_error *err) {
    sqlite3_bind_int64(s, 1, label);
    size_t cap = 0, n = 0;
    llmops_vdb_meta *m = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) { /* grow inside the arena: the old block is simply left behind */
            size_t nc = cap ? cap * 2 : 8;
            llmops_vdb_meta *nm = llmops_arena_alloc(a, nc * sizeof *nm, 8);
            if (!nm) {
                sqlite3_reset(s);
                return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
            }
            if (n) memcpy(nm, m, n * sizeof *nm);
            m = nm;
            cap = nc;
        }
        llmops_vdb_meta *e = &m[n++];
        e->key = adup(a, sqlite3_column_text(s, 0), sqlite3_column_bytes(s, 0));
        e->value.type = (llmops_vdb_type)sqlite3_column_int(s, 1);
        switch (e->value.type) {
        case LLMOPS_VDB_STR: e->value.u.s = adup(a, sqlite3_column_text(s, 2), sqlite3_column_bytes(s, 2)); break;
        case LLMOPS_VDB_INT: e->value.u.i = sqlite3_column_int64(s, 2); break;
        case LLMOPS_VDB_FLOAT: e->value.u.f = sqlite3_column_double(s, 2); break;
        case LLMOPS_VDB_BOOL: e->value.u.b = sqlite3_column_int(s, 2) != 0; break;
        default:
            sqlite3_reset(s);
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "collection '%s': record %lld: metadata type %d", c->name,
                                    (long long)label, (int)e->value.type);
        }
        if (!e->key || (e->value.type == LLMOPS_VDB_STR && !e->value.u.s)) {
            sqlite3_reset(s);
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return vdb_sql_error(c->db, err, "read metadata");
    h->metadata = m;
    h->n_metadata = n;
    return LLMOPS_OK;
}

llmops_status vdb_result_fill(llmops_vdb_collection *c, llmops_vdb_result *r, size_t li, const int64_t *labels,
                              const float *dists, const double *scores, size_t n, llmops_error *err) {
    llmops_arena *a = r->arena;
    llmops_vdb_hit *hits = llmops_arena_alloc(a, (n ? n : 1) * sizeof *hits, 8);
    if (!hits) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    memset(hits, 0, (n ? n : 1) * sizeof *hits);
    r->hits[li] = hits;
    r->n_hits[li] = 0;
    sqlite3_stmt *rec = NULL, *md = NULL;
    llmops_status st = vdb_prepare(c->db, "SELECT id, document, embedding FROM records WHERE label=?1 AND coll=?2", &rec, err);
    if (!st && (r->include & LLMOPS_VDB_INC_METADATAS))
        st = vdb_prepare(c->db, "SELECT key, t, v FROM metadata WHERE label=?1 ORDER BY key", &md, err);
    size_t bytes = (size_t)r->dim * sizeof(float);
    for (size_t i = 0; i < n && !st; i++) {
        llmops_vdb_hit *h = &hits[i];
        h->distance = dists ? dists[i] : NAN;
        h->score = scores ? scores[i] : 0.0;
        sqlite3_bind_int64(rec, 1, labels[i]);
        sqlite3_bind_int64(rec, 2, c->cid);
        int rc = sqlite3_step(rec);
        if (rc != SQLITE_ROW) {
            st = rc == SQLITE_DONE ? llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                                      "collection '%s': record %lld vanished (index out of step)",
                                                      c->name, (long long)labels[i])
                                   : vdb_sql_error(c->db, err, "read record");
            break;
        }
        h->id = adup(a, sqlite3_column_text(rec, 0), sqlite3_column_bytes(rec, 0));
        if (!h->id) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        if (!st && (r->include & LLMOPS_VDB_INC_DOCUMENTS) && sqlite3_column_type(rec, 1) != SQLITE_NULL) {
            h->document = adup(a, sqlite3_column_text(rec, 1), sqlite3_column_bytes(rec, 1));
            if (!h->document) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        }
        if (!st && (r->include & LLMOPS_VDB_INC_EMBEDDINGS)) {
            const void *b = sqlite3_column_blob(rec, 2);
            if ((size_t)sqlite3_column_bytes(rec, 2) != bytes || !b) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "collection '%s': record '%s' has a %d-byte embedding, expected %zu",
                                      c->name, h->id, sqlite3_column_bytes(rec, 2), bytes);
            } else {
                float *e = llmops_arena_alloc(a, bytes, 16);
                if (!e) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
                else {
                    memcpy(e, b, bytes);
                    h->embedding = e;
                }
            }
        }
        sqlite3_reset(rec);
        if (!st && md) st = read_metadata(c, md, a, labels[i], h, err);
        if (!st) r->n_hits[li]++;
    }
    sqlite3_finalize(rec);
    sqlite3_finalize(md);
    return st;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

llmops_status vdb_json_string(llmops_buf *b, const char *s, llmops_error *err) {
    llmops_status st = llmops_buf_puts(b, "\"", err);
    const char *run = s;
    for (const char *p = s; !st && *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        if (p > run) st = llmops_buf_append(b, run, (size_t)(p - run), err);
        if (st) break;
        switch (ch) {
        case '"': st = llmops_buf_puts(b, "\\\"", err); break;
        case '\\': st = llmops_buf_puts(b, "\\\\", err); break;
        case '\n': st = llmops_buf_puts(b, "\\n", err); break;
        case '\r': st = llmops_buf_puts(b, "\\r", err); break;
        case '\t': st = llmops_buf_puts(b, "\\t", err); break;
        default: st = llmops_buf_printf(b, err, "\\u%04x", ch); break;
        }
        run = p + 1;
    }
    if (!st && *run) st = llmops_buf_puts(b, run, err);
    return st ? st : llmops_buf_puts(b, "\"", err);
}

/* The shortest %g form that reads back as the same double, always looking like a float. */
static llmops_status put_double(llmops_buf *b, double v, llmops_error *err) {
    if (!isfinite(v)) return llmops_buf_puts(b, "null", err);
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
    if (!strpbrk(s, ".eEn")) strcat(s, ".0");
    return llmops_buf_puts(b, s, err);
}

static llmops_status put_float(llmops_buf *b, float v, llmops_error *err) {
    if (!isfinite(v)) return llmops_buf_puts(b, "null", err);
    return llmops_buf_printf(b, err, "%.9g", (double)v);
}

typedef enum field { F_IDS, F_DIST, F_SCORE, F_DOC, F_META, F_EMB } field;

static llmops_status put_hit_field(llmops_buf *b, const llmops_vdb_result *r, const llmops_vdb_hit *h, field f,
                                   llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    switch (f) {
    case F_IDS: return vdb_json_string(b, h->id, err);
    case F_DIST: return put_float(b, h->distance, err);
    case F_SCORE: return put_double(b, h->score, err);
    case F_DOC: return h->document ? vdb_json_string(b, h->document, err) : llmops_buf_puts(b, "null", err);
    case F_META:
        if (!h->n_metadata) return llmops_buf_puts(b, "null", err);
        st = llmops_buf_puts(b, "{", err);
        for (size_t i = 0; i < h->n_metadata && !st; i++) {
            const llmops_vdb_meta *m = &h->metadata[i];
            if (i) st = llmops_buf_puts(b, ",", err);
            if (!st) st = vdb_json_string(b, m->key, err);
            if (!st) st = llmops_buf_puts(b, ":", err);
            if (st) break;
            switch (m->value.type) {
            case LLMOPS_VDB_STR: st = vdb_json_string(b, m->value.u.s, err); break;
            case LLMOPS_VDB_INT: st = llmops_buf_printf(b, err, "%lld", (long long)m->value.u.i); break;
            case LLMOPS_VDB_FLOAT: st = put_double(b, m->value.u.f, err); break;
            case LLMOPS_VDB_BOOL: st = llmops_buf_puts(b, m->value.u.b ? "true" : "false", err); break;
            default: st = llmops_buf_puts(b, "null", err); break;
            }
        }
        return st ? st : llmops_buf_puts(b, "}", err);
    case F_EMB:
        if (!h->embedding) return llmops_buf_puts(b, "null", err);
        st = llmops_buf_puts(b, "[", err);
        for (uint32_t d = 0; d < r->dim && !st; d++) {
            if (d) st = llmops_buf_puts(b, ",", err);
            if (!st) st = put_float(b, h->embedding[d], err);
        }
        return st ? st : llmops_buf_puts(b, "]", err);
    }
    return st;
}

llmops_status llmops_vdb_result_to_json(const llmops_vdb_result *r, llmops_buf *b, llmops_error *err) {
    static const char *names[] = {"ids", "distances", "scores", "documents", "metadatas", "embeddings"};
    int want[6] = {1, !!(r->include & LLMOPS_VDB_INC_DISTANCES), r->has_scores,
                   !!(r->include & LLMOPS_VDB_INC_DOCUMENTS), !!(r->include & LLMOPS_VDB_INC_METADATAS),
                   !!(r->include & LLMOPS_VDB_INC_EMBEDDINGS)};
    llmops_status st = llmops_buf_puts(b, "{", err);
    int first = 1;
    for (int f = 0; f < 6 && !st; f++) {
        if (!want[f]) continue;
        st = llmops_buf_printf(b, err, "%s\"%s\": ", first ? "" : ", ", names[f]);
        first = 0;
        if (!st && r->nested) st = llmops_buf_puts(b, "[", err);
        for (size_t l = 0; l < r->n_lists && !st; l++) {
            if (l && (st = llmops_buf_puts(b, ", ", err))) break;
            if (!r->nested && l) break;
            st = llmops_buf_puts(b, "[", err);
            for (size_t i = 0; i < r->n_hits[l] && !st; i++) {
                if (i) st = llmops_buf_puts(b, ", ", err);
                if (!st) st = put_hit_field(b, r, &r->hits[l][i], (field)f, err);
            }
            if (!st) st = llmops_buf_puts(b, "]", err);
        }
        if (!st && r->nested) st = llmops_buf_puts(b, "]", err);
    }
    return st ? st : llmops_buf_puts(b, "}", err);
}

int llmops_vdb_include_parse(const char *list, unsigned *out) {
    unsigned inc = 0;
    const char *p = list;
    if (!p) return 0;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 10 && !strncmp(p, "embeddings", n)) inc |= LLMOPS_VDB_INC_EMBEDDINGS;
        else if (n == 9 && !strncmp(p, "documents", n)) inc |= LLMOPS_VDB_INC_DOCUMENTS;
        else if (n == 9 && !strncmp(p, "metadatas", n)) inc |= LLMOPS_VDB_INC_METADATAS;
        else if (n == 9 && !strncmp(p, "distances", n)) inc |= LLMOPS_VDB_INC_DISTANCES;
        else if (n != 0) return 0;
        p += n;
        if (*p == ',') p++;
    }
    *out = inc;
    return 1;
}
