/*
 * Searches: the index sync (load / replay / rebuild / save, see
 * vdb_internal.h), k-nearest-neighbour queries with filters, BM25 keyword
 * search over FTS5, reciprocal rank fusion and MMR.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/fileio.h"
#include "llmops/log.h"
#include "vectordb/vdb_internal.h"

/* ---- index sync ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The stamp an index file carries: binds it to one database lineage, collection and generation. */
static uint64_t index_token(uint64_t epoch, uint64_t uid, int64_t gen) {
    return mix64(epoch ^ mix64(uid ^ mix64((uint64_t)gen)));
}

typedef struct coll_state {
    uint64_t epoch;
    int64_t gen, index_gen;
} coll_state;

static llmops_status read_state(llmops_vdb_collection *c, coll_state *cs, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(c->db,
                                   "SELECT generation, index_gen, ef_search,"
                                   " (SELECT value FROM vdb_meta WHERE key='epoch') FROM collections WHERE id=?1",
                                   &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        cs->gen = sqlite3_column_int64(s, 0);
        cs->index_gen = sqlite3_column_int64(s, 1);
        c->cfg.ef_search = (uint32_t)sqlite3_column_int64(s, 2);
        cs->epoch = (uint64_t)sqlite3_column_int64(s, 3);
    } else {
        st = rc == SQLITE_DONE ? llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "collection '%s' was deleted", c->name)
                               : vdb_sql_error(c->db, err, "read collection state");
    }
    sqlite3_finalize(s);
    return st;
}

/* Copies a stored embedding (unaligned blob) into out after checking its size. */
static llmops_status blob_vector(const llmops_vdb_collection *c, sqlite3_stmt *s, int col, int64_t label, float *out,
                                 llmops_error *err) {
    const void *b = sqlite3_column_blob(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    if (!b || n != (size_t)c->cfg.dim * sizeof(float))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "collection '%s': record %lld has a %zu-byte embedding, expected %zu",
                                c->name, (long long)label, n, (size_t)c->cfg.dim * sizeof(float));
    memcpy(out, b, n);
    return LLMOPS_OK;
}

void vdb_index_drop(llmops_vdb_collection *c) {
    llmops_hnsw_free(c->index);
    c->index = NULL;
    c->index_gen = -1;
    c->file_gen = -1;
}

static llmops_status new_index(llmops_vdb_collection *c, llmops_hnsw **out, llmops_error *err) {
    llmops_hnsw_params p;
    llmops_hnsw_params_init(&p);
    p.M = c->cfg.M;
    p.ef_construction = c->cfg.ef_construction;
    p.ef_search = c->cfg.ef_search;
    p.seed = c->cfg.seed;
    return llmops_hnsw_create(c->cfg.dim, vdb_space_to_distance(c->cfg.space), &p, out, err);
}

/* A fresh index of every record of c (inside a transaction). */
static llmops_status build_index(llmops_vdb_collection *c, llmops_hnsw **out, llmops_error *err) {
    *out = NULL;
    llmops_hnsw *h = NULL;
    sqlite3_stmt *s = NULL;
    float *vec = llmops_malloc((size_t)c->cfg.dim * sizeof(float));
    llmops_status st = vec ? new_index(c, &h, err) : llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    if (st) goto out;
    if ((st = vdb_prepare(c->db, "SELECT count(*) FROM records WHERE coll=?1", &s, err))) goto out;
    sqlite3_bind_int64(s, 1, c->cid);
    if (sqlite3_step(s) == SQLITE_ROW && (st = llmops_hnsw_reserve(h, (size_t)sqlite3_column_int64(s, 0), err))) goto out;
    sqlite3_finalize(s);
    if ((st = vdb_prepare(c->db, "SELECT label, embedding FROM records WHERE coll=?1 ORDER BY label", &s, err))) goto out;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t label = sqlite3_column_int64(s, 0);
        if ((st = blob_vector(c, s, 1, label, vec, err)) || (st = llmops_hnsw_add(h, (uint64_t)label, vec, err))) goto out;
    }
    if (rc != SQLITE_DONE) st = vdb_sql_error(c->db, err, "read records");
out:
    sqlite3_finalize(s);
    llmops_free(vec);
    if (st) {
        llmops_hnsw_free(h);
        return st;
    }
    *out = h;
    return LLMOPS_OK;
}

/* Applies the labels changed after generation `from` to c->index. */
static llmops_status replay(llmops_vdb_collection *c, int64_t from, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(c->db,
                                   "SELECT l.label, r.embedding FROM"
                                   " (SELECT DISTINCT label FROM changes WHERE coll=?1 AND gen > ?2) l"
                                   " LEFT JOIN records r ON r.label = l.label ORDER BY l.label",
                                   &s, err);
    if (st) return st;
    float *vec = llmops_malloc((size_t)c->cfg.dim * sizeof(float));
    if (!vec) {
        sqlite3_finalize(s);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    }
    sqlite3_bind_int64(s, 1, c->cid);
    sqlite3_bind_int64(s, 2, from);
    int rc;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t label = sqlite3_column_int64(s, 0);
        if (sqlite3_column_type(s, 1) == SQLITE_NULL) {
            st = llmops_hnsw_remove(c->index, (uint64_t)label, err);
            if (st == LLMOPS_ERR_NOT_FOUND) st = LLMOPS_OK; /* added and deleted since `from` */
        } else if (!(st = blob_vector(c, s, 1, label, vec, err))) {
            st = llmops_hnsw_add(c->index, (uint64_t)label, vec, err);
        }
    }
    if (!st && rc != SQLITE_DONE) st = vdb_sql_error(c->db, err, "read changes");
    sqlite3_finalize(s);
    llmops_free(vec);
    return st;
}

llmops_status vdb_index_ensure(llmops_vdb_collection *c, llmops_error *err) {
    coll_state cs;
    llmops_status st = read_state(c, &cs, err);
    if (st) return st;
    if (c->index && c->index_epoch == cs.epoch && c->index_gen == cs.gen) goto done;
    if (c->index && c->index_epoch == cs.epoch && c->index_gen >= cs.index_gen && c->index_gen < cs.gen) {
        if (replay(c, c->index_gen, err) == LLMOPS_OK) {
            c->index_gen = cs.gen;
            goto done;
        }
        if (err && err->code == LLMOPS_ERR_NOMEM) return err->code;
        LLMOPS_WARN("vdb: '%s': replaying changes: %s (reloading)", c->name, err ? err->msg : "");
    }
    vdb_index_drop(c);
    /* the saved file, when it matches the last save recorded in SQLite */
    char *path = vdb_index_path(c);
    if (!path) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    if (cs.index_gen > 0 && llmops_path_is_file(path)) {
        llmops_error lerr = {0};
        llmops_hnsw *h = NULL;
        uint64_t stamp = 0;
        if (llmops_hnsw_load(path, &h, &stamp, &lerr) != LLMOPS_OK) {
            LLMOPS_WARN("vdb: '%s': index file unusable, rebuilding from SQLite: %s", c->name, lerr.msg);
        } else if (stamp != index_token(cs.epoch, c->uid, cs.index_gen) || llmops_hnsw_dim(h) != c->cfg.dim ||
                   llmops_hnsw_distance(h) != vdb_space_to_distance(c->cfg.space)) {
            LLMOPS_INFO("vdb: '%s': index file is stale, rebuilding", c->name);
            llmops_hnsw_free(h);
        } else {
            c->index = h;
            c->index_epoch = cs.epoch;
            c->index_gen = cs.index_gen;
            c->file_gen = cs.index_gen;
            if (cs.gen > cs.index_gen) {
                if ((st = replay(c, cs.index_gen, err))) {
                    vdb_index_drop(c);
                    if (st == LLMOPS_ERR_NOMEM) {
                        llmops_free(path);
                        return st;
                    }
                } else {
                    c->index_gen = cs.gen;
                }
            }
        }
    }
    llmops_free(path);
    if (!c->index) {
        if ((st = build_index(c, &c->index, err))) return st;
        c->index_epoch = cs.epoch;
        c->index_gen = cs.gen;
        c->file_gen = -1;
    }
done:
    llmops_hnsw_set_ef(c->index, c->cfg.ef_search);
    return LLMOPS_OK;
}

/* Saves c->index (at generation gen, inside the write transaction) and records the save. */
static llmops_status save_index(llmops_vdb_collection *c, const coll_state *cs, llmops_error *err) {
    char *path = vdb_index_path(c);
    if (!path) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    llmops_status st = llmops_hnsw_save(c->index, path, index_token(cs->epoch, c->uid, cs->gen), err);
    llmops_free(path);
    if (st) return st;
    sqlite3_stmt *s;
    if ((st = vdb_prepare(c->db, "UPDATE collections SET index_gen=?2 WHERE id=?1", &s, err))) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    sqlite3_bind_int64(s, 2, cs->gen);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return vdb_sql_error(c->db, err, "record index save");
    if ((st = vdb_prepare(c->db, "DELETE FROM changes WHERE coll=?1 AND gen <= ?2", &s, err))) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    sqlite3_bind_int64(s, 2, cs->gen);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? LLMOPS_OK : vdb_sql_error(c->db, err, "prune changes");
}

llmops_status vdb_index_flush(llmops_vdb_collection *c, llmops_error *err) {
    if (!c->index || c->db->opt.read_only) return LLMOPS_OK;
    /* loaded from the file and nothing replayed since: no need for the write lock */
    if (c->file_gen >= 0 && c->file_gen == c->index_gen) return LLMOPS_OK;
    llmops_vdb *db = c->db;
    llmops_status st = vdb_begin_write(db, err);
    if (st) return st;
    coll_state cs;
    if ((st = read_state(c, &cs, err))) {
        vdb_rollback(db);
        return st == LLMOPS_ERR_NOT_FOUND ? LLMOPS_OK : st;
    }
    if (c->file_gen == cs.gen && c->index_epoch == cs.epoch && cs.index_gen == cs.gen) { /* the file is current */
        vdb_rollback(db);
        return LLMOPS_OK;
    }
    if ((st = vdb_index_ensure(c, err)) || (st = save_index(c, &cs, err))) {
        vdb_rollback(db);
        return st;
    }
    if ((st = vdb_commit(db, err))) return st;
    c->file_gen = cs.gen;
    return LLMOPS_OK;
}

llmops_status vdb_index_rebuild_and_save(llmops_vdb_collection *c, llmops_error *err) {
    coll_state cs;
    llmops_hnsw *h = NULL;
    llmops_status st = read_state(c, &cs, err);
    if (st || (st = build_index(c, &h, err))) return st;
    vdb_index_drop(c);
    c->index = h;
    c->index_epoch = cs.epoch;
    c->index_gen = cs.gen;
    llmops_hnsw_set_ef(c->index, c->cfg.ef_search);
    if ((st = save_index(c, &cs, err))) return st;
    c->file_gen = cs.gen; /* valid once the caller commits; a rollback makes the stamp mismatch */
    sqlite3_stmt *s;
    if ((st = vdb_prepare(c->db, "UPDATE collections SET garbage=0 WHERE id=?1", &s, err))) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? LLMOPS_OK : vdb_sql_error(c->db, err, "reset garbage");
}

/* ---- label sets ---------------------------------------------------------------------------- */

typedef struct label_set {
    uint64_t *slots; /* 0 = empty; labels are >= 1 (SQLite rowids) */
    size_t mask;
} label_set;

static llmops_status set_build(label_set *s, const int64_t *labels, size_t n, llmops_error *err) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    s->slots = llmops_calloc(cap, sizeof *s->slots);
    if (!s->slots) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    s->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = (uint64_t)labels[i];
        size_t h = (size_t)(mix64(l) & s->mask);
        while (s->slots[h] && s->slots[h] != l) h = (h + 1) & s->mask;
        s->slots[h] = l;
    }
    return LLMOPS_OK;
}

static int set_has(void *ctx, uint64_t label) {
    const label_set *s = ctx;
    size_t h = (size_t)(mix64(label) & s->mask);
    while (s->slots[h]) {
        if (s->slots[h] == label) return 1;
        h = (h + 1) & s->mask;
    }
    return 0;
}

/* ---- k nearest -------------------------------------------------------------------------------- */

typedef struct scored {
    float d;
    int64_t label;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

/* What a filtered search needs: the matching labels, and their vectors when few. */
typedef struct match_set {
    int filtered;
    int64_t *labels; /* (n) */
    size_t n;
    float *vecs;     /* (n, dim) when exact, else NULL */
    label_set set;   /* when not exact */
} match_set;

static void match_free(match_set *m) {
    llmops_free(m->labels);
    llmops_free(m->vecs);
    llmops_free(m->set.slots);
    memset(m, 0, sizeof *m);
}

static llmops_status match_prepare(llmops_vdb_collection *c, const llmops_vdb_filter *fw, const llmops_vdb_filter *fd,
                                   match_set *m, llmops_error *err) {
    memset(m, 0, sizeof *m);
    m->filtered = (fw && fw->root) || (fd && fd->root);
    if (!m->filtered) return LLMOPS_OK;
    llmops_status st = vdb_match_labels(c, NULL, 0, fw, fd, 0, 0, &m->labels, &m->n, err);
    if (st) return st;
    if (m->n > c->db->opt.exact_threshold) return set_build(&m->set, m->labels, m->n, err);
    if (m->n == 0) return LLMOPS_OK;
    m->vecs = llmops_reallocarray(NULL, m->n, (size_t)c->cfg.dim * sizeof(float));
    if (!m->vecs) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    for (size_t i = 0; i < m->n; i++)
        if ((st = llmops_hnsw_get_vector(c->index, (uint64_t)m->labels[i], m->vecs + i * c->cfg.dim, err)))
            return llmops_error_prefix(err, "vdb: index out of step with the records: ");
    return LLMOPS_OK;
}

/*
 * The k nearest matching records to q: labels/dists hold k entries. Exact over
 * m->vecs when the filtered set is small, else HNSW (filtered when m says so).
 */
static llmops_status knn(llmops_vdb_collection *c, const match_set *m, const float *q, size_t k, int64_t *labels,
                         float *dists, size_t *n_found, llmops_error *err) {
    *n_found = 0;
    if (m->filtered && !m->vecs && m->n == 0) return LLMOPS_OK;
    if (m->filtered && m->vecs) {
        scored *sc = llmops_malloc(m->n * sizeof *sc);
        if (!sc) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        llmops_distance dist = vdb_space_to_distance(c->cfg.space);
        for (size_t i = 0; i < m->n; i++) {
            sc[i].d = llmops_distance_eval(dist, q, m->vecs + i * c->cfg.dim, c->cfg.dim);
            sc[i].label = m->labels[i];
        }
        qsort(sc, m->n, sizeof *sc, cmp_scored);
        size_t n = m->n < k ? m->n : k;
        for (size_t i = 0; i < n; i++) {
            labels[i] = sc[i].label;
            dists[i] = sc[i].d;
        }
        llmops_free(sc);
        *n_found = n;
        return LLMOPS_OK;
    }
    uint64_t *ul = llmops_malloc(k * sizeof *ul);
    if (!ul) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    llmops_status st = llmops_hnsw_search(c->index, q, k, m->filtered ? set_has : NULL,
                                          m->filtered ? (void *)&m->set : NULL, ul, dists, n_found, err);
    size_t want = m->filtered ? (m->n < k ? m->n : k) : (llmops_hnsw_count(c->index) < k ? llmops_hnsw_count(c->index) : k);
    if (!st && *n_found < want) /* never fewer than min(k, matches) */
        st = llmops_hnsw_search_exact(c->index, q, k, m->filtered ? set_has : NULL,
                                      m->filtered ? (void *)&m->set : NULL, ul, dists, n_found, err);
    for (size_t i = 0; !st && i < *n_found; i++) labels[i] = (int64_t)ul[i];
    llmops_free(ul);
    return st;
}

void llmops_vdb_query_opts_init(llmops_vdb_query_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->include = LLMOPS_VDB_INC_DEFAULT;
}

static unsigned query_include(unsigned inc) {
    return inc & LLMOPS_VDB_INC_DEFAULT
               ? (LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS | LLMOPS_VDB_INC_DISTANCES)
               : inc;
}

static llmops_status check_vectors(const llmops_vdb_collection *c, const float *v, size_t n, const char *what,
                                   llmops_error *err) {
    for (size_t i = 0; i < n; i++)
        for (uint32_t d = 0; d < c->cfg.dim; d++)
            if (!isfinite(v[i * c->cfg.dim + d]))
                return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s %zu: component %u is not finite", what, i, d);
    return LLMOPS_OK;
}

llmops_status llmops_vdb_query(llmops_vdb_collection *c, const llmops_vdb_query_opts *o, llmops_vdb_result **out,
                               llmops_error *err) {
    *out = NULL;
    if (!o || !o->queries || o->n_queries == 0)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "query: no query vectors given");
    if (o->k == 0) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "query: k must be at least 1");
    if (o->k > 1000000) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "query: k %zu is above 1000000", o->k);
    llmops_status st = check_vectors(c, o->queries, o->n_queries, "query", err);
    if (st) return st;
    llmops_vdb_filter *fw, *fd;
    if ((st = vdb_parse_filters(o->where, o->where_document, &fw, &fd, err))) return st;
    llmops_vdb_result *r = NULL;
    match_set m = {0};
    int64_t *labels = llmops_malloc(o->k * sizeof *labels);
    float *dists = llmops_malloc(o->k * sizeof *dists);
    if (!labels || !dists) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto out;
    }
    if ((st = vdb_begin_read(c->db, err))) goto out;
    if ((st = vdb_index_ensure(c, err)) || (st = match_prepare(c, fw, fd, &m, err)) ||
        (st = vdb_result_new(o->n_queries, c->cfg.dim, query_include(o->include), &r, err)))
        goto fail;
    r->nested = 1;
    if (o->ef_search) llmops_hnsw_set_ef(c->index, o->ef_search);
    for (size_t qi = 0; qi < o->n_queries && !st; qi++) {
        size_t n = 0;
        st = knn(c, &m, o->queries + qi * c->cfg.dim, o->k, labels, dists, &n, err);
        if (!st) st = vdb_result_fill(c, r, qi, labels, dists, NULL, n, err);
    }
    if (o->ef_search) llmops_hnsw_set_ef(c->index, c->cfg.ef_search);
    if (st) goto fail;
    st = vdb_commit(c->db, err);
    goto out;
fail:
    vdb_rollback(c->db);
out:
    match_free(&m);
    llmops_free(labels);
    llmops_free(dists);
    llmops_vdb_filter_free(fw);
    llmops_vdb_filter_free(fd);
    if (st) {
        llmops_vdb_result_free(r);
        return st;
    }
    *out = r;
    return LLMOPS_OK;
}

/* ---- keyword search (BM25 over FTS5) ------------------------------------------------------- */

static int isalnum_ascii(unsigned ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The words of `text` as an FTS5 query: "w1" OR "w2" ... (empty when there are none). */
static llmops_status fts_query(const char *text, llmops_buf *q, llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    int words = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && !st && words < 256;) {
        while (*p && !(isalnum_ascii(*p) || *p >= 0x80)) p++;
        const unsigned char *b = p;
        while (*p && (isalnum_ascii(*p) || *p >= 0x80)) p++;
        if (p == b) break;
        if (words++) st = llmops_buf_puts(q, " OR ", err);
        if (!st) st = llmops_buf_printf(q, err, "\"%.*s\"", (int)(p - b), (const char *)b);
    }
    return st;
}

static llmops_status keyword_rank(llmops_vdb_collection *c, const char *text, const llmops_vdb_filter *fw,
                                  const llmops_vdb_filter *fd, size_t limit, int64_t **labels, double **scores,
                                  size_t *n, llmops_error *err) {
    *labels = NULL;
    *scores = NULL;
    *n = 0;
    llmops_buf q, sql;
    llmops_buf_init(&q, 1u << 20);
    llmops_buf_init(&sql, 1u << 26);
    llmops_vdb_sql_params p = {0};
    sqlite3_stmt *s = NULL;
    long long id = (long long)c->cid;
    llmops_status st = fts_query(text, &q, err);
    if (st || q.len == 0) goto out;
    /* ?1 coll, ?2 match, ?3 limit, ?5.. filter */
    st = llmops_buf_printf(&sql, err,
                           "SELECT r.label, bm25(fts_%lld) AS s FROM fts_%lld JOIN records r ON r.label = fts_%lld.rowid"
                           " WHERE fts_%lld MATCH ?2 AND r.coll=?1",
                           id, id, id, id);
    if (!st && fw && fw->root && !(st = llmops_buf_puts(&sql, " AND ", err))) st = llmops_vdb_filter_sql(fw, &sql, &p, 5, err);
    if (!st && fd && fd->root && !(st = llmops_buf_puts(&sql, " AND ", err))) st = llmops_vdb_filter_sql(fd, &sql, &p, 5, err);
    if (!st) st = llmops_buf_puts(&sql, " ORDER BY s, r.label LIMIT ?3", err);
    if (st || (st = vdb_prepare(c->db, sql.data, &s, err))) goto out;
    sqlite3_bind_int64(s, 1, c->cid);
    sqlite3_bind_text(s, 2, q.data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
    vdb_bind_params(s, &p, 5);
    *labels = llmops_malloc((limit ? limit : 1) * sizeof **labels);
    *scores = llmops_malloc((limit ? limit : 1) * sizeof **scores);
    if (!*labels || !*scores) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < limit) {
        (*labels)[*n] = sqlite3_column_int64(s, 0);
        (*scores)[*n] = -sqlite3_column_double(s, 1); /* FTS5's bm25() is negated: smaller is better */
        (*n)++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) st = vdb_sql_error(c->db, err, "keyword search");
out:
    sqlite3_finalize(s);
    llmops_buf_free(&q);
    llmops_buf_free(&sql);
    llmops_vdb_sql_params_free(&p);
    if (st) {
        llmops_free(*labels);
        llmops_free(*scores);
        *labels = NULL;
        *scores = NULL;
        *n = 0;
    }
    return st;
}

/* ---- fusion and MMR ------------------------------------------------------------------------------ */

typedef struct fused {
    int64_t label;
    double score;
    float dist; /* NAN when the vector ranking did not return it */
} fused;

static int cmp_fused(const void *a, const void *b) {
    const fused *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

static int cmp_fused_label(const void *a, const void *b) {
    const fused *x = a, *y = b;
    return (x->label > y->label) - (x->label < y->label);
}

static float cosine_sim(const float *a, const float *b, uint32_t dim) {
    double ab = 0, aa = 0, bb = 0;
    for (uint32_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

/*
 * Picks k of the n candidates (sorted by score) greedily by MMR; writes the
 * order into pick. Relevance is the cosine similarity to `query` when given
 * (a plain vector search), else the score normalised by the best one.
 */
static llmops_status mmr_select(llmops_vdb_collection *c, const fused *cand, size_t n, size_t k, double lambda,
                                const float *query, size_t *pick, size_t *n_pick, llmops_error *err) {
    uint32_t dim = c->cfg.dim;
    float *vecs = llmops_reallocarray(NULL, n ? n : 1, (size_t)dim * sizeof(float));
    float *maxsim = llmops_malloc((n ? n : 1) * sizeof *maxsim);
    unsigned char *used = llmops_calloc(n ? n : 1, 1);
    llmops_status st = LLMOPS_OK;
    if (!vecs || !maxsim || !used) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && !st; i++) {
        st = llmops_hnsw_get_vector(c->index, (uint64_t)cand[i].label, vecs + i * dim, err);
        maxsim[i] = -1.0f;
    }
    if (st) goto out;
    double top = n ? cand[0].score : 1.0;
    if (top <= 0) top = 1.0;
    *n_pick = 0;
    while (*n_pick < k && *n_pick < n) {
        size_t best = n;
        double best_v = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            if (used[i]) continue;
            double rel = query ? (double)cosine_sim(query, vecs + i * dim, dim) : cand[i].score / top;
            double v = lambda * rel - (1.0 - lambda) * (*n_pick ? (double)maxsim[i] : 0.0);
            if (v > best_v) {
                best_v = v;
                best = i;
            }
        }
        used[best] = 1;
        pick[(*n_pick)++] = best;
        for (size_t i = 0; i < n; i++) {
            if (used[i]) continue;
            float s = cosine_sim(vecs + i * dim, vecs + best * dim, dim);
            if (s > maxsim[i]) maxsim[i] = s;
        }
    }
out:
    llmops_free(vecs);
    llmops_free(maxsim);
    llmops_free(used);
    return st;
}

void llmops_vdb_search_opts_init(llmops_vdb_search_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->vector_weight = 1.0;
    o->text_weight = 1.0;
    o->rrf_k = 60.0;
    o->mmr_lambda = 0.5;
    o->include = LLMOPS_VDB_INC_DEFAULT;
}

llmops_status llmops_vdb_search(llmops_vdb_collection *c, const llmops_vdb_search_opts *o, llmops_vdb_result **out,
                                llmops_error *err) {
    *out = NULL;
    if (!o || (!o->vector && !o->text))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "search: give a vector, a text or both");
    if (o->k == 0 || o->k > 1000000) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "search: k must be in 1..1000000");
    if (!(o->rrf_k >= 0) || !(o->vector_weight >= 0) || !(o->text_weight >= 0) || !(o->mmr_lambda >= 0 && o->mmr_lambda <= 1))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "search: weights and rrf_k must be >= 0 and mmr_lambda in [0, 1]");
    llmops_status st = o->vector ? check_vectors(c, o->vector, 1, "search vector", err) : LLMOPS_OK;
    if (st) return st;
    size_t ncand = o->candidates ? o->candidates : (o->k * 4 > 50 ? o->k * 4 : 50);
    if (ncand < o->k) ncand = o->k;
    llmops_vdb_filter *fw, *fd;
    if ((st = vdb_parse_filters(o->where, o->where_document, &fw, &fd, err))) return st;
    int hybrid = o->vector && o->text;
    llmops_vdb_result *r = NULL;
    match_set m = {0};
    int64_t *vl = NULL, *tl = NULL, *final = NULL;
    float *vd = NULL, *fdist = NULL;
    double *ts = NULL, *fscore = NULL;
    fused *fu = NULL;
    size_t *pick = NULL;
    size_t nv = 0, nt = 0, nf = 0;
    if ((st = vdb_begin_read(c->db, err))) goto out;
    if (o->vector || o->mmr) {
        if ((st = vdb_index_ensure(c, err))) goto fail;
    } else if ((st = vdb_collection_check(c, err))) {
        goto fail;
    }
    if (o->vector) {
        vl = llmops_malloc(ncand * sizeof *vl);
        vd = llmops_malloc(ncand * sizeof *vd);
        if (!vl || !vd) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
            goto fail;
        }
        if ((st = match_prepare(c, fw, fd, &m, err)) || (st = knn(c, &m, o->vector, ncand, vl, vd, &nv, err))) goto fail;
    }
    if (o->text && (st = keyword_rank(c, o->text, fw, fd, ncand, &tl, &ts, &nt, err))) goto fail;
    /* one list of candidates with their fused scores */
    fu = llmops_malloc((nv + nt + 1) * sizeof *fu);
    if (!fu) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto fail;
    }
    size_t nfu = 0;
    for (size_t i = 0; i < nv; i++)
        fu[nfu++] = (fused){vl[i], hybrid ? o->vector_weight / (o->rrf_k + (double)(i + 1)) : -(double)vd[i], vd[i]};
    for (size_t i = 0; i < nt; i++)
        fu[nfu++] = (fused){tl[i], hybrid ? o->text_weight / (o->rrf_k + (double)(i + 1)) : ts[i], NAN};
    if (hybrid) { /* merge duplicates: a record in both rankings sums its two contributions */
        qsort(fu, nfu, sizeof *fu, cmp_fused_label);
        size_t w = 0;
        for (size_t i = 0; i < nfu; i++) {
            if (w && fu[w - 1].label == fu[i].label) {
                fu[w - 1].score += fu[i].score;
                if (isnan(fu[w - 1].dist)) fu[w - 1].dist = fu[i].dist;
            } else {
                fu[w++] = fu[i];
            }
        }
        nfu = w;
    }
    qsort(fu, nfu, sizeof *fu, cmp_fused);
    nf = nfu < o->k ? nfu : o->k;
    pick = llmops_malloc((nfu + 1) * sizeof *pick);
    final = llmops_malloc((nf + 1) * sizeof *final);
    fdist = llmops_malloc((nf + 1) * sizeof *fdist);
    fscore = llmops_malloc((nf + 1) * sizeof *fscore);
    if (!pick || !final || !fdist || !fscore) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto fail;
    }
    if (o->mmr) {
        if ((st = mmr_select(c, fu, nfu, o->k, o->mmr_lambda, hybrid || o->text ? NULL : o->vector, pick, &nf, err)))
            goto fail;
    } else {
        for (size_t i = 0; i < nf; i++) pick[i] = i;
    }
    llmops_distance dist = vdb_space_to_distance(c->cfg.space);
    float *tmp = NULL;
    for (size_t i = 0; i < nf && !st; i++) {
        const fused *f = &fu[pick[i]];
        final[i] = f->label;
        fscore[i] = hybrid || o->text ? f->score : 0.0;
        fdist[i] = f->dist;
        if (o->vector && isnan(f->dist)) { /* found by keywords only: measure it */
            if (!tmp && !(tmp = llmops_malloc((size_t)c->cfg.dim * sizeof *tmp)))
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
            else if (!(st = llmops_hnsw_get_vector(c->index, (uint64_t)f->label, tmp, err)))
                fdist[i] = llmops_distance_eval(dist, o->vector, tmp, c->cfg.dim);
        }
    }
    llmops_free(tmp);
    if (st) goto fail;
    unsigned inc = query_include(o->include);
    if (!o->vector) inc &= ~(unsigned)LLMOPS_VDB_INC_DISTANCES;
    if ((st = vdb_result_new(1, c->cfg.dim, inc, &r, err))) goto fail;
    r->has_scores = o->text != NULL;
    if ((st = vdb_result_fill(c, r, 0, final, o->vector ? fdist : NULL, o->text ? fscore : NULL, nf, err))) goto fail;
    st = vdb_commit(c->db, err);
    goto out;
fail:
    vdb_rollback(c->db);
out:
    match_free(&m);
    llmops_free(vl);
    llmops_free(vd);
    llmops_free(tl);
    llmops_free(ts);
    llmops_free(fu);
    llmops_free(pick);
    llmops_free(final);
    llmops_free(fdist);
    llmops_free(fscore);
    llmops_vdb_filter_free(fw);
    llmops_vdb_filter_free(fd);
    if (st) {
        llmops_vdb_result_free(r);
        return st;
    }
    *out = r;
    return LLMOPS_OK;
}
