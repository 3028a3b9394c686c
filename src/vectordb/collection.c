/*
 * Record verbs of a collection: add / upsert / update, get / peek / count,
 * delete, and the filter-to-labels query every verb shares. Each write is
 * one transaction that also bumps the collection's generation and logs the
 * labels whose vectors changed (see vdb_internal.h); the in-memory index is
 * not touched here: the next search brings it up to date.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/log.h"
#include "vectordb/vdb_internal.h"

/* ---- validation --------------------------------------------------------------------- */

typedef enum write_mode { W_ADD, W_UPSERT, W_UPDATE } write_mode;

static const char *const k_verbs[] = {"add", "upsert", "update"};

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Everything that can be checked without the database, so a bad batch writes nothing. */
static llmops_status validate(const llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                              write_mode mode, llmops_error *err) {
    const char *verb = k_verbs[mode];
    if (n && !recs) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: no records given", verb);
    if (n > VDB_MAX_BATCH) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: more than %u records", verb, VDB_MAX_BATCH);
    for (size_t i = 0; i < n; i++) {
        const llmops_vdb_record *r = &recs[i];
        if (!r->id || !*r->id) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu: empty id", verb, i);
        if (strlen(r->id) > VDB_MAX_ID_BYTES)
            return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: record %zu: id longer than %d bytes", verb, i,
                                    VDB_MAX_ID_BYTES);
        if (!r->embedding && mode != W_UPDATE)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu (id '%s'): no embedding", verb, i, r->id);
        if (r->embedding)
            for (uint32_t d = 0; d < c->cfg.dim; d++)
                if (!isfinite(r->embedding[d]))
                    return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                            "%s: record %zu (id '%s'): embedding[%u] is not finite", verb, i, r->id, d);
        if (r->n_metadata && !r->metadata)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu (id '%s'): no metadata array", verb, i,
                                    r->id);
        for (size_t k = 0; k < r->n_metadata; k++) {
            const llmops_vdb_meta *m = &r->metadata[k];
            if (!m->key || !*m->key)
                return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu (id '%s'): empty metadata key",
                                        verb, i, r->id);
            switch (m->value.type) {
            case LLMOPS_VDB_NULL:
                if (mode == W_ADD)
                    return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                            "%s: record %zu (id '%s'): metadata '%s' is null (null deletes a key in "
                                            "update and upsert only)",
                                            verb, i, r->id, m->key);
                break;
            case LLMOPS_VDB_STR:
                if (!m->value.u.s)
                    return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu (id '%s'): metadata '%s': NULL string",
                                            verb, i, r->id, m->key);
                break;
            case LLMOPS_VDB_FLOAT:
                if (!isfinite(m->value.u.f))
                    return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                            "%s: record %zu (id '%s'): metadata '%s' is not finite", verb, i, r->id, m->key);
                break;
            case LLMOPS_VDB_INT:
            case LLMOPS_VDB_BOOL: break;
            default:
                return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: record %zu (id '%s'): metadata '%s': bad type %d",
                                        verb, i, r->id, m->key, (int)m->value.type);
            }
        }
    }
    /* ids unique within the batch */
    if (n > 1) {
        const char **ids = llmops_malloc(n * sizeof *ids);
        if (!ids) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", verb);
        for (size_t i = 0; i < n; i++) ids[i] = recs[i].id;
        qsort(ids, n, sizeof *ids, cmp_str_ptr);
        for (size_t i = 1; i < n; i++)
            if (!strcmp(ids[i - 1], ids[i])) {
                llmops_status st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: id '%s' appears twice in the batch",
                                                    verb, ids[i]);
                llmops_free(ids);
                return st;
            }
        llmops_free(ids);
    }
    return LLMOPS_OK;
}

/* ---- writes ------------------------------------------------------------------------- */

enum { S_SEL, S_INS, S_EMB, S_DOC, S_MDPUT, S_MDDEL, S_FTSINS, S_FTSDEL, S_CHG, S_N };

typedef struct writer {
    llmops_vdb_collection *c;
    sqlite3_stmt *s[S_N];
    int64_t gen;
    int64_t garbage;
} writer;

static void writer_finalize(writer *w) {
    for (int i = 0; i < S_N; i++) sqlite3_finalize(w->s[i]);
}

static llmops_status writer_prepare(writer *w, llmops_error *err) {
    char ftsins[96], ftsdel[128];
    long long id = (long long)w->c->cid;
    snprintf(ftsins, sizeof ftsins, "INSERT INTO fts_%lld(rowid, document) VALUES(?1, ?2)", id);
    snprintf(ftsdel, sizeof ftsdel, "INSERT INTO fts_%lld(fts_%lld, rowid, document) VALUES('delete', ?1, ?2)", id, id);
    const char *sql[S_N] = {
        [S_SEL] = "SELECT label, document FROM records WHERE coll=?1 AND id=?2",
        [S_INS] = "INSERT INTO records(coll, id, embedding, document) VALUES(?1, ?2, ?3, ?4)",
        [S_EMB] = "UPDATE records SET embedding=?2 WHERE label=?1",
        [S_DOC] = "UPDATE records SET document=?2 WHERE label=?1",
        [S_MDPUT] = "INSERT OR REPLACE INTO metadata(label, key, coll, t, v) VALUES(?1, ?2, ?3, ?4, ?5)",
        [S_MDDEL] = "DELETE FROM metadata WHERE label=?1 AND key=?2",
        [S_FTSINS] = ftsins,
        [S_FTSDEL] = ftsdel,
        [S_CHG] = "INSERT OR IGNORE INTO changes(coll, gen, label) VALUES(?1, ?2, ?3)",
    };
    for (int i = 0; i < S_N; i++) {
        llmops_status st = vdb_prepare(w->c->db, sql[i], &w->s[i], err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

/* Runs a prepared statement to completion and resets it. */
static llmops_status run(writer *w, sqlite3_stmt *s, const char *what, llmops_error *err) {
    int rc = sqlite3_step(s);
    llmops_status st = rc == SQLITE_DONE ? LLMOPS_OK : vdb_sql_error(w->c->db, err, what);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return st;
}

/* Bumps the generation (inside the write transaction). */
static llmops_status bump_generation(llmops_vdb_collection *c, int64_t *gen, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st =
        vdb_prepare(c->db, "UPDATE collections SET generation=generation+1 WHERE id=?1 RETURNING generation", &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *gen = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE) st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "collection '%s' was deleted", c->name);
    else st = vdb_sql_error(c->db, err, "bump generation");
    while (rc == SQLITE_ROW) rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return st;
}

static llmops_status log_change(writer *w, int64_t label, llmops_error *err) {
    sqlite3_bind_int64(w->s[S_CHG], 1, w->c->cid);
    sqlite3_bind_int64(w->s[S_CHG], 2, w->gen);
    sqlite3_bind_int64(w->s[S_CHG], 3, label);
    return run(w, w->s[S_CHG], "log change", err);
}

static llmops_status put_metadata(writer *w, int64_t label, const llmops_vdb_meta *m, llmops_error *err) {
    if (m->value.type == LLMOPS_VDB_NULL) {
        sqlite3_bind_int64(w->s[S_MDDEL], 1, label);
        sqlite3_bind_text(w->s[S_MDDEL], 2, m->key, -1, SQLITE_STATIC);
        return run(w, w->s[S_MDDEL], "delete metadata", err);
    }
    sqlite3_stmt *s = w->s[S_MDPUT];
    sqlite3_bind_int64(s, 1, label);
    sqlite3_bind_text(s, 2, m->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, w->c->cid);
    sqlite3_bind_int(s, 4, (int)m->value.type);
    switch (m->value.type) {
    case LLMOPS_VDB_STR: sqlite3_bind_text(s, 5, m->value.u.s, -1, SQLITE_STATIC); break;
    case LLMOPS_VDB_INT: sqlite3_bind_int64(s, 5, m->value.u.i); break;
    case LLMOPS_VDB_FLOAT: sqlite3_bind_double(s, 5, m->value.u.f); break;
    default: sqlite3_bind_int(s, 5, m->value.u.b ? 1 : 0); break;
    }
    return run(w, s, "write metadata", err);
}

static llmops_status fts(writer *w, int which, int64_t label, const char *doc, int doc_len, llmops_error *err) {
    sqlite3_stmt *s = w->s[which];
    sqlite3_bind_int64(s, 1, label);
    sqlite3_bind_text(s, 2, doc, doc_len, SQLITE_TRANSIENT);
    return run(w, s, "update the keyword index", err);
}

static llmops_status write_one(writer *w, const llmops_vdb_record *r, write_mode mode, llmops_error *err) {
    llmops_vdb_collection *c = w->c;
    sqlite3_stmt *sel = w->s[S_SEL];
    sqlite3_bind_int64(sel, 1, c->cid);
    sqlite3_bind_text(sel, 2, r->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(sel);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sqlite3_reset(sel);
        return vdb_sql_error(c->db, err, "look up id");
    }
    int exists = rc == SQLITE_ROW;
    int64_t label = exists ? sqlite3_column_int64(sel, 0) : 0;
    llmops_status st = LLMOPS_OK;
    if (exists && mode == W_ADD) {
        st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "add: id '%s' already exists (use upsert to replace it)", r->id);
    } else if (!exists && mode == W_UPDATE) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "update: id '%s' does not exist", r->id);
    } else if (exists && r->document) {
        /* the old text leaves the keyword index before the row changes */
        const char *old = (const char *)sqlite3_column_text(sel, 1);
        if (old) st = fts(w, S_FTSDEL, label, old, sqlite3_column_bytes(sel, 1), err);
    }
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    if (st) return st;
    size_t bytes = (size_t)c->cfg.dim * sizeof(float);
    if (!exists) {
        sqlite3_stmt *s = w->s[S_INS];
        sqlite3_bind_int64(s, 1, c->cid);
        sqlite3_bind_text(s, 2, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, r->embedding, (int)bytes, SQLITE_STATIC);
        if (r->document) sqlite3_bind_text(s, 4, r->document, -1, SQLITE_STATIC);
        if ((st = run(w, s, "insert record", err))) return st;
        label = sqlite3_last_insert_rowid(c->db->sql);
        if (r->document && (st = fts(w, S_FTSINS, label, r->document, -1, err))) return st;
        if ((st = log_change(w, label, err))) return st;
        for (size_t k = 0; k < r->n_metadata; k++)
            if (r->metadata[k].value.type != LLMOPS_VDB_NULL && (st = put_metadata(w, label, &r->metadata[k], err)))
                return st;
        return LLMOPS_OK;
    }
    if (r->embedding) {
        sqlite3_bind_int64(w->s[S_EMB], 1, label);
        sqlite3_bind_blob(w->s[S_EMB], 2, r->embedding, (int)bytes, SQLITE_STATIC);
        if ((st = run(w, w->s[S_EMB], "update embedding", err)) || (st = log_change(w, label, err))) return st;
        w->garbage++; /* the old vector becomes a tombstone in the index */
    }
    if (r->document) {
        sqlite3_bind_int64(w->s[S_DOC], 1, label);
        sqlite3_bind_text(w->s[S_DOC], 2, r->document, -1, SQLITE_STATIC);
        if ((st = run(w, w->s[S_DOC], "update document", err)) || (st = fts(w, S_FTSINS, label, r->document, -1, err)))
            return st;
    }
    for (size_t k = 0; k < r->n_metadata; k++)
        if ((st = put_metadata(w, label, &r->metadata[k], err))) return st;
    return LLMOPS_OK;
}

static llmops_status add_garbage(llmops_vdb_collection *c, int64_t n, llmops_error *err) {
    if (!n) return LLMOPS_OK;
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(c->db, "UPDATE collections SET garbage=garbage+?2 WHERE id=?1", &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    sqlite3_bind_int64(s, 2, n);
    if (sqlite3_step(s) != SQLITE_DONE) st = vdb_sql_error(c->db, err, "count garbage");
    sqlite3_finalize(s);
    return st;
}

static llmops_status write_records(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n, write_mode mode,
                                   llmops_error *err) {
    llmops_status st = validate(c, recs, n, mode, err);
    if (st || n == 0) return st;
    llmops_vdb *db = c->db;
    writer w = {.c = c};
    if ((st = vdb_begin_write(db, err))) return st;
    if ((st = bump_generation(c, &w.gen, err)) || (st = writer_prepare(&w, err))) goto fail;
    for (size_t i = 0; i < n; i++)
        if ((st = write_one(&w, &recs[i], mode, err))) goto fail;
    if ((st = add_garbage(c, w.garbage, err))) goto fail;
    writer_finalize(&w);
    if ((st = vdb_commit(db, err))) return st;
    if (w.garbage) vdb_maybe_auto_compact(c);
    return LLMOPS_OK;
fail:
    writer_finalize(&w);
    vdb_rollback(db);
    return st;
}

llmops_status llmops_vdb_add(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n, llmops_error *err) {
    return write_records(c, recs, n, W_ADD, err);
}

llmops_status llmops_vdb_upsert(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                                llmops_error *err) {
    return write_records(c, recs, n, W_UPSERT, err);
}

llmops_status llmops_vdb_update(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                                llmops_error *err) {
    return write_records(c, recs, n, W_UPDATE, err);
}

/* ---- filters -> labels ----------------------------------------------------------------- */

llmops_status vdb_parse_filters(const char *where, const char *wdoc, llmops_vdb_filter **fw, llmops_vdb_filter **fd,
                                llmops_error *err) {
    *fw = *fd = NULL;
    llmops_status st;
    if (where && (st = llmops_vdb_filter_parse(where, strlen(where), 0, fw, err))) return st;
    if (wdoc && (st = llmops_vdb_filter_parse(wdoc, strlen(wdoc), 1, fd, err))) {
        llmops_vdb_filter_free(*fw);
        *fw = NULL;
        return st;
    }
    return LLMOPS_OK;
}

/* Appends ids as a JSON array (for json_each). */
static llmops_status ids_json(const char *const *ids, size_t n, llmops_buf *b, llmops_error *err) {
    llmops_status st = llmops_buf_puts(b, "[", err);
    for (size_t i = 0; i < n && !st; i++) {
        if (i) st = llmops_buf_puts(b, ",", err);
        if (!st) st = vdb_json_string(b, ids[i] ? ids[i] : "", err);
    }
    return st ? st : llmops_buf_puts(b, "]", err);
}

llmops_status vdb_match_labels(llmops_vdb_collection *c, const char *const *ids, size_t n_ids,
                               const llmops_vdb_filter *where, const llmops_vdb_filter *wdoc, size_t offset,
                               size_t limit, int64_t **labels, size_t *n, llmops_error *err) {
    *labels = NULL;
    *n = 0;
    llmops_buf sql, idj;
    llmops_buf_init(&sql, 1u << 26);
    llmops_buf_init(&idj, (size_t)1 << 31);
    llmops_vdb_sql_params p = {0};
    sqlite3_stmt *s = NULL;
    int64_t *out = NULL;
    size_t cnt = 0, cap = 0;
    /* ?1 coll, ?2 ids json, ?3 limit, ?4 offset, ?5.. filter parameters */
    llmops_status st = llmops_buf_puts(&sql, "SELECT r.label FROM records r WHERE r.coll=?1", err);
    if (!st && ids) st = llmops_buf_puts(&sql, " AND r.id IN (SELECT value FROM json_each(?2))", err);
    if (!st && ids) st = ids_json(ids, n_ids, &idj, err);
    if (!st && where && where->root) {
        st = llmops_buf_puts(&sql, " AND ", err);
        if (!st) st = llmops_vdb_filter_sql(where, &sql, &p, 5, err);
    }
    if (!st && wdoc && wdoc->root) {
        st = llmops_buf_puts(&sql, " AND ", err);
        if (!st) st = llmops_vdb_filter_sql(wdoc, &sql, &p, 5, err);
    }
    if (!st) st = llmops_buf_puts(&sql, " ORDER BY r.label LIMIT ?3 OFFSET ?4", err);
    if (st) goto out;
    if ((st = vdb_prepare(c->db, sql.data, &s, err))) goto out;
    sqlite3_bind_int64(s, 1, c->cid);
    if (ids) sqlite3_bind_text(s, 2, idj.data ? idj.data : "[]", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit : -1);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)offset);
    if (vdb_bind_params(s, &p, 5) != SQLITE_OK) {
        st = vdb_sql_error(c->db, err, "bind filter");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 64;
            int64_t *nv = llmops_reallocarray(out, nc, sizeof *nv);
            if (!nv) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
                goto out;
            }
            out = nv;
            cap = nc;
        }
        out[cnt++] = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE) st = vdb_sql_error(c->db, err, "filter");
out:
    sqlite3_finalize(s);
    llmops_buf_free(&sql);
    llmops_buf_free(&idj);
    llmops_vdb_sql_params_free(&p);
    if (st) {
        llmops_free(out);
        return st;
    }
    *labels = out;
    *n = cnt;
    return LLMOPS_OK;
}

/* ---- reads ---------------------------------------------------------------------------- */

void llmops_vdb_get_opts_init(llmops_vdb_get_opts *o) {
    memset(o, 0, sizeof *o);
    o->include = LLMOPS_VDB_INC_DEFAULT;
}

llmops_status llmops_vdb_get(llmops_vdb_collection *c, const llmops_vdb_get_opts *o, llmops_vdb_result **out,
                             llmops_error *err) {
    *out = NULL;
    llmops_vdb_get_opts def;
    if (!o) {
        llmops_vdb_get_opts_init(&def);
        o = &def;
    }
    unsigned inc = o->include & LLMOPS_VDB_INC_DEFAULT ? (LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS)
                                                        : o->include;
    inc &= ~(unsigned)LLMOPS_VDB_INC_DISTANCES;
    llmops_vdb_filter *fw, *fd;
    llmops_status st = vdb_parse_filters(o->where, o->where_document, &fw, &fd, err);
    if (st) return st;
    int64_t *labels = NULL;
    size_t n = 0;
    llmops_vdb_result *r = NULL;
    if ((st = vdb_begin_read(c->db, err))) goto out;
    if ((st = vdb_collection_check(c, err)) ||
        (st = vdb_match_labels(c, o->ids, o->n_ids, fw, fd, o->offset, o->limit, &labels, &n, err)) ||
        (st = vdb_result_new(1, c->cfg.dim, inc, &r, err)) ||
        (st = vdb_result_fill(c, r, 0, labels, NULL, NULL, n, err))) {
        vdb_rollback(c->db);
        goto out;
    }
    st = vdb_commit(c->db, err);
out:
    llmops_free(labels);
    llmops_vdb_filter_free(fw);
    llmops_vdb_filter_free(fd);
    if (st) {
        llmops_vdb_result_free(r);
        return st;
    }
    *out = r;
    return LLMOPS_OK;
}

llmops_status llmops_vdb_peek(llmops_vdb_collection *c, size_t limit, llmops_vdb_result **out, llmops_error *err) {
    llmops_vdb_get_opts o;
    llmops_vdb_get_opts_init(&o);
    o.limit = limit ? limit : 10;
    o.include = LLMOPS_VDB_INC_EMBEDDINGS | LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS;
    return llmops_vdb_get(c, &o, out, err);
}

llmops_status llmops_vdb_count(llmops_vdb_collection *c, size_t *n, llmops_error *err) {
    *n = 0;
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(
        c->db, "SELECT (SELECT 1 FROM collections WHERE id=?1), (SELECT count(*) FROM records WHERE coll=?1)", &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    if (sqlite3_step(s) != SQLITE_ROW) st = vdb_sql_error(c->db, err, "count");
    else if (sqlite3_column_type(s, 0) == SQLITE_NULL)
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "collection '%s' was deleted", c->name);
    else *n = (size_t)sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    return st;
}

/* ---- delete ------------------------------------------------------------------------------ */

llmops_status llmops_vdb_delete(llmops_vdb_collection *c, const char *const *ids, size_t n_ids, const char *where,
                                const char *where_document, size_t *n_deleted, llmops_error *err) {
    if (n_deleted) *n_deleted = 0;
    if (!ids && !where && !where_document)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "delete: give ids, where or where_document");
    llmops_vdb_filter *fw, *fd;
    llmops_status st = vdb_parse_filters(where, where_document, &fw, &fd, err);
    if (st) return st;
    llmops_vdb *db = c->db;
    int64_t *labels = NULL;
    size_t n = 0;
    writer w = {.c = c};
    if ((st = vdb_begin_write(db, err))) goto out;
    if ((st = bump_generation(c, &w.gen, err)) || (st = writer_prepare(&w, err)) ||
        (st = vdb_match_labels(c, ids, n_ids, fw, fd, 0, 0, &labels, &n, err)))
        goto fail;
    sqlite3_stmt *doc = NULL, *md = NULL, *rec = NULL;
    if ((st = vdb_prepare(db, "SELECT document FROM records WHERE label=?1", &doc, err)) ||
        (st = vdb_prepare(db, "DELETE FROM metadata WHERE label=?1", &md, err)) ||
        (st = vdb_prepare(db, "DELETE FROM records WHERE label=?1", &rec, err)))
        goto fail_stmts;
    for (size_t i = 0; i < n && !st; i++) {
        sqlite3_bind_int64(doc, 1, labels[i]);
        int rc = sqlite3_step(doc);
        if (rc == SQLITE_ROW && sqlite3_column_type(doc, 0) != SQLITE_NULL)
            st = fts(&w, S_FTSDEL, labels[i], (const char *)sqlite3_column_text(doc, 0), sqlite3_column_bytes(doc, 0), err);
        else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            st = vdb_sql_error(db, err, "read document");
        sqlite3_reset(doc);
        if (st) break;
        sqlite3_bind_int64(md, 1, labels[i]);
        sqlite3_bind_int64(rec, 1, labels[i]);
        if ((st = run(&w, md, "delete metadata", err)) || (st = run(&w, rec, "delete record", err)) ||
            (st = log_change(&w, labels[i], err)))
            break;
    }
    if (!st) st = add_garbage(c, (int64_t)n, err);
fail_stmts:
    sqlite3_finalize(doc);
    sqlite3_finalize(md);
    sqlite3_finalize(rec);
    if (st) goto fail;
    writer_finalize(&w);
    if (n == 0) vdb_rollback(db); /* nothing changed: no new generation */
    else if ((st = vdb_commit(db, err))) goto out;
    if (n_deleted) *n_deleted = n;
    if (n) vdb_maybe_auto_compact(c);
    goto out;
fail:
    writer_finalize(&w);
    vdb_rollback(db);
out:
    llmops_free(labels);
    llmops_vdb_filter_free(fw);
    llmops_vdb_filter_free(fd);
    return st;
}
