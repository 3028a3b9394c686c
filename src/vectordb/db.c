/*
 * The database: opening the directory and its SQLite file, the schema,
 * collections (create / get / list / modify / delete), compaction, online
 * backup and restore. Record verbs live in collection.c, searches and the
 * index sync in search.c; vdb_internal.h describes the schema.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "llmops/fileio.h"
#include "llmops/log.h"
#include "vectordb/vdb_internal.h"

/* ---- SQLite plumbing ----------------------------------------------------------- */

llmops_status vdb_sql_error(llmops_vdb *db, llmops_error *err, const char *ctx) {
    int code = sqlite3_errcode(db->sql);
    llmops_status st = LLMOPS_ERR_IO;
    if (code == SQLITE_NOMEM) st = LLMOPS_ERR_NOMEM;
    else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) st = LLMOPS_ERR_FORMAT;
    else if (code == SQLITE_CONSTRAINT) st = LLMOPS_ERR_INVALID_ARG;
    else if (code == SQLITE_READONLY) st = LLMOPS_ERR_INVALID_ARG;
    else if (code == SQLITE_ERROR) st = LLMOPS_ERR_INTERNAL;
    return llmops_error_set(err, st, "%s: %s: %s", db->dir, ctx, sqlite3_errmsg(db->sql));
}

llmops_status vdb_exec(llmops_vdb *db, const char *sql, llmops_error *err) {
    if (sqlite3_exec(db->sql, sql, NULL, NULL, NULL) != SQLITE_OK) return vdb_sql_error(db, err, sql);
    return LLMOPS_OK;
}

llmops_status vdb_prepare(llmops_vdb *db, const char *sql, sqlite3_stmt **st, llmops_error *err) {
    if (sqlite3_prepare_v2(db->sql, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return vdb_sql_error(db, err, "prepare");
    }
    return LLMOPS_OK;
}

llmops_status vdb_begin_read(llmops_vdb *db, llmops_error *err) {
    if (db->in_tx) return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "%s: nested transaction", db->dir);
    llmops_status st = vdb_exec(db, "BEGIN", err);
    if (!st) db->in_tx = 1;
    return st;
}

llmops_status vdb_begin_write(llmops_vdb *db, llmops_error *err) {
    if (db->in_tx) return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "%s: nested transaction", db->dir);
    if (db->opt.read_only) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: opened read-only", db->dir);
    if (sqlite3_exec(db->sql, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return vdb_sql_error(db, err, "begin a write (is another writer holding the database?)");
    db->in_tx = 1;
    return LLMOPS_OK;
}

llmops_status vdb_commit(llmops_vdb *db, llmops_error *err) {
    if (sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        llmops_status st = vdb_sql_error(db, err, "commit");
        vdb_rollback(db);
        return st;
    }
    db->in_tx = 0;
    return LLMOPS_OK;
}

void vdb_rollback(llmops_vdb *db) {
    if (!sqlite3_get_autocommit(db->sql)) sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = 0;
}

int vdb_bind_params(sqlite3_stmt *st, const llmops_vdb_sql_params *p, int first) {
    for (size_t i = 0; i < p->n; i++) {
        int idx = first + (int)i, rc;
        const llmops_vdb_value *v = &p->v[i];
        switch (v->type) {
        case LLMOPS_VDB_STR: rc = sqlite3_bind_text(st, idx, v->u.s, -1, SQLITE_STATIC); break;
        case LLMOPS_VDB_INT: rc = sqlite3_bind_int64(st, idx, v->u.i); break;
        case LLMOPS_VDB_FLOAT: rc = sqlite3_bind_double(st, idx, v->u.f); break;
        case LLMOPS_VDB_BOOL: rc = sqlite3_bind_int(st, idx, v->u.b ? 1 : 0); break;
        default: rc = sqlite3_bind_null(st, idx); break;
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

llmops_status vdb_epoch(llmops_vdb *db, uint64_t *epoch, llmops_error *err) {
    sqlite3_stmt *st;
    llmops_status s = vdb_prepare(db, "SELECT value FROM vdb_meta WHERE key='epoch'", &st, err);
    if (s) return s;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *epoch = (uint64_t)sqlite3_column_int64(st, 0);
    else s = rc == SQLITE_DONE ? llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: no epoch in vdb_meta", db->dir)
                               : vdb_sql_error(db, err, "read epoch");
    sqlite3_finalize(st);
    return s;
}

llmops_distance vdb_space_to_distance(llmops_vdb_space s) {
    return s == LLMOPS_VDB_COSINE ? LLMOPS_DIST_COSINE : s == LLMOPS_VDB_IP ? LLMOPS_DIST_IP : LLMOPS_DIST_L2;
}

static uint64_t random_u64(void) {
    uint64_t x = 0;
    while (x == 0) sqlite3_randomness(sizeof x, &x);
    return x & 0x7fffffffffffffffULL; /* fits SQLite's signed integers */
}

/* ---- options, names --------------------------------------------------------------- */

void llmops_vdb_options_init(llmops_vdb_options *o) {
    memset(o, 0, sizeof *o);
    o->create = 1;
    o->busy_timeout_ms = 10000;
    o->synchronous = 2;
    o->auto_compact_ratio = 0.5;
    o->auto_compact_min = 1000;
    o->exact_threshold = 2048;
}

void llmops_vdb_collection_config_init(llmops_vdb_collection_config *c, uint32_t dim) {
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->space = LLMOPS_VDB_L2;
    c->M = 16;
    c->ef_construction = 100;
    c->ef_search = 100;
    c->seed = 100;
}

const char *llmops_vdb_space_name(llmops_vdb_space s) {
    return s == LLMOPS_VDB_COSINE ? "cosine" : s == LLMOPS_VDB_IP ? "ip" : "l2";
}

int llmops_vdb_space_parse(const char *name, llmops_vdb_space *out) {
    if (!name) return 0;
    if (!strcmp(name, "l2")) *out = LLMOPS_VDB_L2;
    else if (!strcmp(name, "cosine")) *out = LLMOPS_VDB_COSINE;
    else if (!strcmp(name, "ip")) *out = LLMOPS_VDB_IP;
    else return 0;
    return 1;
}

static int is_ipv4(const char *s) {
    int parts = 0;
    while (*s) {
        int digits = 0, val = 0;
        while (*s >= '0' && *s <= '9') {
            val = val * 10 + (*s - '0');
            if (++digits > 3) return 0;
            s++;
        }
        if (!digits || val > 255) return 0;
        parts++;
        if (*s == '.') s++;
        else if (*s) return 0;
    }
    return parts == 4;
}

int llmops_vdb_name_valid(const char *name, const char **why) {
    const char *w = NULL;
    size_t n = name ? strlen(name) : 0;
    if (n < 3 || n > 63) w = "must be 3 to 63 characters long";
    else if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')) ||
             !((name[n - 1] >= 'a' && name[n - 1] <= 'z') || (name[n - 1] >= '0' && name[n - 1] <= '9')))
        w = "must start and end with a lowercase letter or a digit";
    else if (strstr(name, ".."))
        w = "must not contain two consecutive periods";
    else if (is_ipv4(name))
        w = "must not be an IPv4 address";
    else
        for (size_t i = 0; i < n; i++) {
            char ch = name[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-')) {
                w = "may only contain letters, digits, '.', '_' and '-'";
                break;
            }
        }
    if (why) *why = w;
    return w == NULL;
}

/* ---- open / close ------------------------------------------------------------------ */

static const char k_schema[] =
    "CREATE TABLE IF NOT EXISTS vdb_meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE IF NOT EXISTS collections("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, uid INTEGER NOT NULL, name TEXT NOT NULL UNIQUE,"
    " dim INTEGER NOT NULL, space TEXT NOT NULL, m INTEGER NOT NULL, ef_construction INTEGER NOT NULL,"
    " ef_search INTEGER NOT NULL, seed INTEGER NOT NULL, metadata TEXT,"
    " generation INTEGER NOT NULL DEFAULT 0, index_gen INTEGER NOT NULL DEFAULT 0,"
    " garbage INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS records("
    " label INTEGER PRIMARY KEY AUTOINCREMENT, coll INTEGER NOT NULL, id TEXT NOT NULL,"
    " embedding BLOB NOT NULL, document TEXT);"
    "CREATE UNIQUE INDEX IF NOT EXISTS records_coll_id ON records(coll, id);"
    "CREATE TABLE IF NOT EXISTS metadata("
    " label INTEGER NOT NULL, key TEXT NOT NULL, coll INTEGER NOT NULL, t INTEGER NOT NULL, v,"
    " PRIMARY KEY(label, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS metadata_kv ON metadata(coll, key, v);"
    "CREATE TABLE IF NOT EXISTS changes("
    " coll INTEGER NOT NULL, gen INTEGER NOT NULL, label INTEGER NOT NULL,"
    " PRIMARY KEY(coll, gen, label)) WITHOUT ROWID;";

static llmops_status init_schema(llmops_vdb *db, llmops_error *err) {
    llmops_status st = vdb_begin_write(db, err);
    if (st) return st;
    if ((st = vdb_exec(db, k_schema, err))) goto fail;
    sqlite3_stmt *s;
    if ((st = vdb_prepare(db, "INSERT OR IGNORE INTO vdb_meta(key, value) VALUES('schema', ?1), ('epoch', ?2)", &s,
                          err)))
        goto fail;
    sqlite3_bind_int(s, 1, VDB_SCHEMA_VERSION);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)random_u64());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        st = vdb_sql_error(db, err, "initialise vdb_meta");
        goto fail;
    }
    return vdb_commit(db, err);
fail:
    vdb_rollback(db);
    return st;
}

static llmops_status check_schema(llmops_vdb *db, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(db, "SELECT value FROM vdb_meta WHERE key='schema'", &s, err);
    if (st) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: not a vector database (%s)", db->dir, err ? err->msg : "");
    int rc = sqlite3_step(s);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    if (v < 0) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: not a vector database (no schema version)", db->dir);
    if (v > VDB_SCHEMA_VERSION)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: schema version %lld is newer than this build (%d)",
                                db->dir, (long long)v, VDB_SCHEMA_VERSION);
    return LLMOPS_OK;
}

llmops_status llmops_vdb_open(const char *dir, const llmops_vdb_options *o, llmops_vdb **out, llmops_error *err) {
    *out = NULL;
    if (!dir || !*dir) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "vdb: no database directory given");
    llmops_vdb_options opt;
    if (o) opt = *o;
    else llmops_vdb_options_init(&opt);
    if (opt.busy_timeout_ms < 0) opt.busy_timeout_ms = 0;
    if (!llmops_path_is_dir(dir)) {
        if (llmops_path_is_file(dir))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: is a file, expected a database directory", dir);
        if (!opt.create || opt.read_only)
            return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no such database directory", dir);
    }
    llmops_vdb *db = llmops_calloc(1, sizeof *db);
    if (!db) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    db->opt = opt;
    db->dir = llmops_strdup(dir);
    db->index_dir = llmops_path_join(dir, VDB_INDEX_DIR);
    char *file = llmops_path_join(dir, VDB_DB_FILE);
    llmops_status st = LLMOPS_OK;
    if (!db->dir || !db->index_dir || !file) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto fail;
    }
    if (!opt.read_only && (st = llmops_mkdirs(db->index_dir, err))) goto fail;
    if (opt.read_only && !llmops_path_is_file(file)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no %s in the directory", dir, VDB_DB_FILE);
        goto fail;
    }
    int flags = opt.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(file, &db->sql, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        st = db->sql ? vdb_sql_error(db, err, "open") : llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db->sql, opt.busy_timeout_ms);
    sqlite3_extended_result_codes(db->sql, 0);
    if (llmops_vdb_register_sql_functions(db->sql) != SQLITE_OK) {
        st = vdb_sql_error(db, err, "register functions");
        goto fail;
    }
    if (!opt.read_only) {
        /* WAL: readers never block the writer nor the writer the readers */
        sqlite3_stmt *s;
        if ((st = vdb_prepare(db, "PRAGMA journal_mode=WAL", &s, err))) goto fail;
        int rc = sqlite3_step(s);
        const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
        int wal = mode && !strcmp(mode, "wal");
        sqlite3_finalize(s);
        if (!wal) {
            st = rc == SQLITE_ROW ? llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot switch to WAL mode", dir)
                                  : vdb_sql_error(db, err, "PRAGMA journal_mode=WAL");
            goto fail;
        }
        if ((st = vdb_exec(db, opt.synchronous >= 2 ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err)))
            goto fail;
        if ((st = init_schema(db, err))) goto fail;
    }
    if ((st = check_schema(db, err))) goto fail;
    llmops_free(file);
    *out = db;
    return LLMOPS_OK;
fail:
    llmops_free(file);
    llmops_vdb_close(db);
    return st;
}

static void free_handle(llmops_vdb_collection *c) {
    if (!c) return;
    llmops_hnsw_free(c->index);
    llmops_free(c->name);
    llmops_free(c);
}

llmops_status llmops_vdb_flush(llmops_vdb *db, llmops_error *err) {
    if (!db || db->opt.read_only) return LLMOPS_OK;
    llmops_status first = LLMOPS_OK;
    for (llmops_vdb_collection *c = db->colls; c; c = c->next) {
        llmops_status st = vdb_index_flush(c, err);
        if (st && !first) first = st;
    }
    return first;
}

void llmops_vdb_close(llmops_vdb *db) {
    if (!db) return;
    if (db->sql) {
        if (db->in_tx) vdb_rollback(db);
        llmops_error e = {0};
        if (llmops_vdb_flush(db, &e)) LLMOPS_WARN("vdb: saving an index on close: %s (rebuilt on next open)", e.msg);
    }
    while (db->colls) {
        llmops_vdb_collection *n = db->colls->next;
        free_handle(db->colls);
        db->colls = n;
    }
    if (db->sql) sqlite3_close_v2(db->sql);
    llmops_free(db->dir);
    llmops_free(db->index_dir);
    llmops_free(db);
}

/* ---- collections ------------------------------------------------------------------- */

#define COLL_COLUMNS "id, uid, name, dim, space, m, ef_construction, ef_search, seed"

/* The handle for the collection row at `s` (COLL_COLUMNS), reusing an open one. */
static llmops_status handle_from_row(llmops_vdb *db, sqlite3_stmt *s, llmops_vdb_collection **out,
                                     llmops_error *err) {
    int64_t cid = sqlite3_column_int64(s, 0);
    const char *name = (const char *)sqlite3_column_text(s, 2);
    llmops_vdb_collection *c = db->colls;
    while (c && c->cid != cid) c = c->next;
    if (c) {
        if (name && strcmp(c->name, name)) { /* renamed by another process */
            char *nn = llmops_strdup(name);
            if (!nn) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
            llmops_free(c->name);
            c->name = nn;
        }
        c->cfg.ef_search = (uint32_t)sqlite3_column_int64(s, 7);
        *out = c;
        return LLMOPS_OK;
    }
    c = llmops_calloc(1, sizeof *c);
    if (!c || !(c->name = llmops_strdup(name ? name : ""))) {
        llmops_free(c);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    }
    c->db = db;
    c->cid = cid;
    c->uid = (uint64_t)sqlite3_column_int64(s, 1);
    c->cfg.dim = (uint32_t)sqlite3_column_int64(s, 3);
    if (!llmops_vdb_space_parse((const char *)sqlite3_column_text(s, 4), &c->cfg.space)) c->cfg.space = LLMOPS_VDB_L2;
    c->cfg.M = (uint32_t)sqlite3_column_int64(s, 5);
    c->cfg.ef_construction = (uint32_t)sqlite3_column_int64(s, 6);
    c->cfg.ef_search = (uint32_t)sqlite3_column_int64(s, 7);
    c->cfg.seed = (uint64_t)sqlite3_column_int64(s, 8);
    c->file_gen = -1;
    if (c->cfg.dim == 0 || c->cfg.dim > LLMOPS_HNSW_MAX_DIM) {
        llmops_status st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: collection '%s' has dimension %u", db->dir,
                                            c->name, c->cfg.dim);
        free_handle(c);
        return st;
    }
    c->next = db->colls;
    db->colls = c;
    *out = c;
    return LLMOPS_OK;
}

/* Looks `name` up; *out NULL when absent. Call inside a transaction or not. */
static llmops_status lookup(llmops_vdb *db, const char *name, llmops_vdb_collection **out, llmops_error *err) {
    *out = NULL;
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(db, "SELECT " COLL_COLUMNS " FROM collections WHERE name=?1", &s, err);
    if (st) return st;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) st = handle_from_row(db, s, out, err);
    else if (rc != SQLITE_DONE) st = vdb_sql_error(db, err, "look up a collection");
    sqlite3_finalize(s);
    return st;
}

static llmops_status check_metadata_json(const char *json, char **canon, llmops_error *err) {
    *canon = NULL;
    if (!json) return LLMOPS_OK;
    size_t b0 = strspn(json, " \t\r\n"), len = strlen(json);
    while (len > b0 && strchr(" \t\r\n", json[len - 1])) len--;
    if (len - b0 == 4 && !strncmp(json + b0, "null", 4)) return LLMOPS_OK; /* clears */
    json_t *j = NULL;
    llmops_status st = llmops_json_parse(json, strlen(json), "collection metadata", &j, err);
    if (st) return st;
    if (json_is_null(j)) {
        json_decref(j);
        return LLMOPS_OK;
    }
    if (!json_is_object(j)) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "collection metadata: expected an object, got %s",
                              llmops_json_type_name(j));
        json_decref(j);
        return st;
    }
    llmops_buf b;
    llmops_buf_init(&b, 1u << 24);
    st = llmops_json_dump(j, 0, &b, err);
    json_decref(j);
    if (st) {
        llmops_buf_free(&b);
        return st;
    }
    *canon = llmops_buf_detach(&b, NULL);
    return *canon ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
}

static llmops_status check_config(const llmops_vdb_collection_config *cfg, llmops_error *err) {
    if (!cfg) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "create collection: no configuration given");
    if (cfg->dim == 0 || cfg->dim > LLMOPS_HNSW_MAX_DIM)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "create collection: dimension %u is not in 1..%u",
                                cfg->dim, LLMOPS_HNSW_MAX_DIM);
    if ((unsigned)cfg->space > LLMOPS_VDB_IP)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "create collection: unknown space %d", (int)cfg->space);
    if (cfg->M < 2 || cfg->M > LLMOPS_HNSW_MAX_M)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "create collection: M %u is not in 2..%u", cfg->M,
                                LLMOPS_HNSW_MAX_M);
    if (cfg->ef_construction < 1 || cfg->ef_construction > LLMOPS_HNSW_MAX_EF || cfg->ef_search < 1 ||
        cfg->ef_search > LLMOPS_HNSW_MAX_EF)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "create collection: ef_construction %u / ef_search %u not in 1..%u",
                                cfg->ef_construction, cfg->ef_search, LLMOPS_HNSW_MAX_EF);
    return LLMOPS_OK;
}

llmops_status llmops_vdb_create_collection(llmops_vdb *db, const char *name,
                                           const llmops_vdb_collection_config *cfg, const char *metadata_json,
                                           int get_or_create, llmops_vdb_collection **out, llmops_error *err) {
    *out = NULL;
    const char *why;
    if (!llmops_vdb_name_valid(name, &why))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "collection name '%s' %s", name ? name : "", why);
    llmops_status st = check_config(cfg, err);
    if (st) return st;
    char *meta = NULL;
    if ((st = check_metadata_json(metadata_json, &meta, err))) return st;
    if ((st = vdb_begin_write(db, err))) {
        llmops_free(meta);
        return st;
    }
    llmops_vdb_collection *c = NULL;
    if ((st = lookup(db, name, &c, err))) goto fail;
    if (c) {
        if (!get_or_create) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "collection '%s' already exists", name);
            goto fail;
        }
        llmops_free(meta);
        vdb_rollback(db);
        *out = c;
        return LLMOPS_OK;
    }
    sqlite3_stmt *s;
    if ((st = vdb_prepare(db,
                          "INSERT INTO collections(uid, name, dim, space, m, ef_construction, ef_search, seed, metadata)"
                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                          &s, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)random_u64());
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, cfg->dim);
    sqlite3_bind_text(s, 4, llmops_vdb_space_name(cfg->space), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, cfg->M);
    sqlite3_bind_int64(s, 6, cfg->ef_construction);
    sqlite3_bind_int64(s, 7, cfg->ef_search);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)(cfg->seed & 0x7fffffffffffffffULL));
    if (meta) sqlite3_bind_text(s, 9, meta, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        st = vdb_sql_error(db, err, "create collection");
        goto fail;
    }
    char sql[160];
    snprintf(sql, sizeof sql,
             "CREATE VIRTUAL TABLE fts_%lld USING fts5(document, content='records', content_rowid='label')",
             (long long)sqlite3_last_insert_rowid(db->sql));
    if ((st = vdb_exec(db, sql, err))) goto fail;
    if ((st = lookup(db, name, &c, err))) goto fail;
    if (!c) {
        st = llmops_error_set(err, LLMOPS_ERR_INTERNAL, "collection '%s' vanished after creation", name);
        goto fail;
    }
    if ((st = vdb_commit(db, err))) {
        /* the handle describes a row that was rolled back */
        llmops_vdb_collection **pp = &db->colls;
        while (*pp && *pp != c) pp = &(*pp)->next;
        if (*pp) *pp = c->next;
        free_handle(c);
        llmops_free(meta);
        return st;
    }
    llmops_free(meta);
    *out = c;
    return LLMOPS_OK;
fail:
    vdb_rollback(db);
    llmops_free(meta);
    return st;
}

llmops_status llmops_vdb_get_collection(llmops_vdb *db, const char *name, llmops_vdb_collection **out,
                                        llmops_error *err) {
    llmops_status st = lookup(db, name ? name : "", out, err);
    if (st) return st;
    if (!*out) return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "no collection named '%s'", name ? name : "");
    return LLMOPS_OK;
}

llmops_status vdb_collection_check(llmops_vdb_collection *c, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(c->db, "SELECT ef_search FROM collections WHERE id=?1", &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) c->cfg.ef_search = (uint32_t)sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE) st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "collection '%s' was deleted", c->name);
    else st = vdb_sql_error(c->db, err, "read collection");
    sqlite3_finalize(s);
    return st;
}

char *vdb_index_path(const llmops_vdb_collection *c) {
    char name[40];
    snprintf(name, sizeof name, "%016llx.hnsw", (unsigned long long)c->uid);
    return llmops_path_join(c->db->index_dir, name);
}

static llmops_status exec_int(llmops_vdb *db, const char *sql, int64_t a, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(db, sql, &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, a);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? LLMOPS_OK : vdb_sql_error(db, err, sql);
}

llmops_status llmops_vdb_delete_collection(llmops_vdb *db, const char *name, llmops_error *err) {
    llmops_status st = vdb_begin_write(db, err);
    if (st) return st;
    llmops_vdb_collection *c = NULL;
    if ((st = lookup(db, name ? name : "", &c, err))) goto fail;
    if (!c) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "no collection named '%s'", name ? name : "");
        goto fail;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS fts_%lld", (long long)c->cid);
    if ((st = vdb_exec(db, sql, err)) || (st = exec_int(db, "DELETE FROM metadata WHERE coll=?1", c->cid, err)) ||
        (st = exec_int(db, "DELETE FROM records WHERE coll=?1", c->cid, err)) ||
        (st = exec_int(db, "DELETE FROM changes WHERE coll=?1", c->cid, err)) ||
        (st = exec_int(db, "DELETE FROM collections WHERE id=?1", c->cid, err)))
        goto fail;
    if ((st = vdb_commit(db, err))) return st;
    char *path = vdb_index_path(c);
    if (path) unlink(path);
    llmops_free(path);
    llmops_vdb_collection **pp = &db->colls;
    while (*pp && *pp != c) pp = &(*pp)->next;
    if (*pp) *pp = c->next;
    free_handle(c);
    return LLMOPS_OK;
fail:
    vdb_rollback(db);
    return st;
}

static llmops_status info_from_row(sqlite3_stmt *s, llmops_vdb_collection_info *info, llmops_error *err) {
    /* name, metadata, uid, dim, space, m, efc, efs, seed, generation, count */
    memset(info, 0, sizeof *info);
    const char *name = (const char *)sqlite3_column_text(s, 0);
    const char *meta = (const char *)sqlite3_column_text(s, 1);
    info->name = llmops_strdup(name ? name : "");
    if (meta) info->metadata_json = llmops_strdup(meta);
    if (!info->name || (meta && !info->metadata_json))
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    snprintf(info->uid, sizeof info->uid, "%016llx", (unsigned long long)sqlite3_column_int64(s, 2));
    info->config.dim = (uint32_t)sqlite3_column_int64(s, 3);
    if (!llmops_vdb_space_parse((const char *)sqlite3_column_text(s, 4), &info->config.space))
        info->config.space = LLMOPS_VDB_L2;
    info->config.M = (uint32_t)sqlite3_column_int64(s, 5);
    info->config.ef_construction = (uint32_t)sqlite3_column_int64(s, 6);
    info->config.ef_search = (uint32_t)sqlite3_column_int64(s, 7);
    info->config.seed = (uint64_t)sqlite3_column_int64(s, 8);
    info->generation = (uint64_t)sqlite3_column_int64(s, 9);
    info->count = (size_t)sqlite3_column_int64(s, 10);
    return LLMOPS_OK;
}

#define INFO_SQL                                                                                          \
    "SELECT name, metadata, uid, dim, space, m, ef_construction, ef_search, seed, generation,"           \
    " (SELECT count(*) FROM records r WHERE r.coll = c.id) FROM collections c"

void llmops_vdb_collection_infos_free(llmops_vdb_collection_info *infos, size_t n) {
    if (!infos) return;
    for (size_t i = 0; i < n; i++) {
        llmops_free(infos[i].name);
        llmops_free(infos[i].metadata_json);
    }
    llmops_free(infos);
}

llmops_status llmops_vdb_list_collections(llmops_vdb *db, llmops_vdb_collection_info **out, size_t *n,
                                          llmops_error *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(db, INFO_SQL " ORDER BY name", &s, err);
    if (st) return st;
    llmops_vdb_collection_info *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            llmops_vdb_collection_info *nv = llmops_reallocarray(v, nc, sizeof *nv);
            if (!nv) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
                break;
            }
            v = nv;
            cap = nc;
        }
        st = info_from_row(s, &v[cnt], err);
        cnt++;
        if (st) break;
    }
    if (!st && rc != SQLITE_DONE) st = vdb_sql_error(db, err, "list collections");
    sqlite3_finalize(s);
    if (st) {
        llmops_vdb_collection_infos_free(v, cnt);
        return st;
    }
    *out = v;
    *n = cnt;
    return LLMOPS_OK;
}

llmops_status llmops_vdb_count_collections(llmops_vdb *db, size_t *n, llmops_error *err) {
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(db, "SELECT count(*) FROM collections", &s, err);
    if (st) return st;
    if (sqlite3_step(s) == SQLITE_ROW) *n = (size_t)sqlite3_column_int64(s, 0);
    else st = vdb_sql_error(db, err, "count collections");
    sqlite3_finalize(s);
    return st;
}

llmops_status llmops_vdb_collection_describe(llmops_vdb_collection *c, llmops_vdb_collection_info **out,
                                             llmops_error *err) {
    *out = NULL;
    sqlite3_stmt *s;
    llmops_status st = vdb_prepare(c->db, INFO_SQL " WHERE c.id=?1", &s, err);
    if (st) return st;
    sqlite3_bind_int64(s, 1, c->cid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        llmops_vdb_collection_info *info = llmops_calloc(1, sizeof *info);
        if (!info) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        else if ((st = info_from_row(s, info, err))) llmops_vdb_collection_infos_free(info, 1);
        else *out = info;
    } else {
        st = rc == SQLITE_DONE ? llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "collection '%s' was deleted", c->name)
                               : vdb_sql_error(c->db, err, "describe collection");
    }
    sqlite3_finalize(s);
    return st;
}

llmops_status llmops_vdb_modify_collection(llmops_vdb_collection *c, const char *new_name, const char *metadata_json,
                                           uint32_t ef_search, llmops_error *err) {
    llmops_vdb *db = c->db;
    const char *why;
    if (new_name && !llmops_vdb_name_valid(new_name, &why))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "collection name '%s' %s", new_name, why);
    if (ef_search > LLMOPS_HNSW_MAX_EF)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "ef_search %u is above %u", ef_search, LLMOPS_HNSW_MAX_EF);
    char *meta = NULL;
    llmops_status st = check_metadata_json(metadata_json, &meta, err);
    if (st) return st;
    char *nn = new_name ? llmops_strdup(new_name) : NULL;
    if (new_name && !nn) {
        llmops_free(meta);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    }
    if ((st = vdb_begin_write(db, err))) goto out;
    if ((st = vdb_collection_check(c, err))) goto fail;
    sqlite3_stmt *s;
    if ((st = vdb_prepare(db,
                          "UPDATE collections SET name=coalesce(?2, name),"
                          " metadata=CASE WHEN ?3 THEN ?4 ELSE metadata END,"
                          " ef_search=CASE WHEN ?5 > 0 THEN ?5 ELSE ef_search END,"
                          " generation=generation+1 WHERE id=?1",
                          &s, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, c->cid);
    if (nn) sqlite3_bind_text(s, 2, nn, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, metadata_json != NULL);
    if (meta) sqlite3_bind_text(s, 4, meta, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, ef_search);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_CONSTRAINT)
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "collection '%s' already exists", new_name);
        else st = vdb_sql_error(db, err, "modify collection");
        goto fail;
    }
    if ((st = vdb_commit(db, err))) goto out;
    if (nn) {
        llmops_free(c->name);
        c->name = nn;
        nn = NULL;
    }
    if (ef_search) {
        c->cfg.ef_search = ef_search;
        if (c->index) llmops_hnsw_set_ef(c->index, ef_search);
    }
    goto out;
fail:
    vdb_rollback(db);
out:
    llmops_free(nn);
    llmops_free(meta);
    return st;
}

/* ---- compaction ------------------------------------------------------------------ */

static llmops_status compact_one(llmops_vdb_collection *c, llmops_error *err) {
    llmops_vdb *db = c->db;
    llmops_status st = vdb_begin_write(db, err);
    if (st) return st;
    if ((st = vdb_collection_check(c, err)) || (st = vdb_index_rebuild_and_save(c, err))) goto fail;
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT INTO fts_%lld(fts_%lld) VALUES('optimize')", (long long)c->cid,
             (long long)c->cid);
    if ((st = vdb_exec(db, sql, err))) goto fail;
    return vdb_commit(db, err);
fail:
    vdb_rollback(db);
    return st;
}

llmops_status llmops_vdb_compact(llmops_vdb *db, llmops_vdb_collection *c, llmops_error *err) {
    llmops_status st;
    if (c) {
        if ((st = compact_one(c, err))) return st;
    } else {
        llmops_vdb_collection_info *infos = NULL;
        size_t n = 0;
        if ((st = llmops_vdb_list_collections(db, &infos, &n, err))) return st;
        for (size_t i = 0; i < n && !st; i++) {
            llmops_vdb_collection *h = NULL;
            st = lookup(db, infos[i].name, &h, err);
            if (!st && h) st = compact_one(h, err);
        }
        llmops_vdb_collection_infos_free(infos, n);
        if (st) return st;
    }
    /* give the freed pages back to the file system */
    if ((st = vdb_exec(db, "VACUUM", err))) return st;
    return vdb_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", err);
}

void vdb_maybe_auto_compact(llmops_vdb_collection *c) {
    llmops_vdb *db = c->db;
    if (db->opt.auto_compact_ratio <= 0 || db->opt.read_only) return;
    sqlite3_stmt *s;
    llmops_error e = {0};
    if (vdb_prepare(db, "SELECT garbage, (SELECT count(*) FROM records WHERE coll=?1) FROM collections WHERE id=?1", &s,
                    &e))
        return;
    sqlite3_bind_int64(s, 1, c->cid);
    int64_t garbage = 0, live = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        garbage = sqlite3_column_int64(s, 0);
        live = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    if (garbage < (int64_t)db->opt.auto_compact_min || garbage == 0) return;
    if ((double)garbage / (double)(garbage + live) <= db->opt.auto_compact_ratio) return;
    LLMOPS_INFO("vdb: compacting '%s' (%lld tombstones, %lld live)", c->name, (long long)garbage, (long long)live);
    if (llmops_vdb_compact(db, c, &e)) LLMOPS_WARN("vdb: automatic compaction of '%s': %s", c->name, e.msg);
}

/* ---- backup / restore ---------------------------------------------------------------- */

/* Copies database `from` (main) into a fresh SQLite file at `path` (written beside, then renamed). */
static llmops_status backup_to_file(sqlite3 *from, const char *path, const char *what, llmops_error *err) {
    size_t n = strlen(path) + 32;
    char *tmp = llmops_malloc(n);
    if (!tmp) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp);
    sqlite3 *to = NULL;
    llmops_status st = LLMOPS_OK;
    if (sqlite3_open_v2(tmp, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s", tmp, to ? sqlite3_errmsg(to) : "out of memory");
        goto out;
    }
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (!b) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s: %s", what, tmp, sqlite3_errmsg(to));
        goto out;
    }
    int rc;
    /* one step copies a consistent snapshot; retry while a writer holds a lock */
    for (int tries = 0; (rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED; tries++) {
        if (tries > 1000) break;
        sqlite3_sleep(10);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s: %s", what, path, sqlite3_errstr(rc));
        goto out;
    }
    /* a backup is a plain file: no -wal beside it */
    if (sqlite3_exec(to, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s: %s", what, path, sqlite3_errmsg(to));
        goto out;
    }
    sqlite3_close(to);
    to = NULL;
    if (rename(tmp, path) != 0) st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: rename to %s: %s", what, path, strerror(errno));
out:
    if (to) sqlite3_close(to);
    if (st) unlink(tmp);
    llmops_free(tmp);
    return st;
}

llmops_status llmops_vdb_backup(llmops_vdb *db, const char *dest, int single_file, llmops_error *err) {
    if (!dest || !*dest) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "backup: no destination given");
    if (db->in_tx) return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "backup: a transaction is open");
    llmops_status st;
    if (single_file) {
        if (llmops_path_is_dir(dest) || llmops_path_is_file(dest))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "backup: %s already exists", dest);
        return backup_to_file(db->sql, dest, "backup", err);
    }
    char *file = llmops_path_join(dest, VDB_DB_FILE);
    char *idx = llmops_path_join(dest, VDB_INDEX_DIR);
    if (!file || !idx) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto out;
    }
    if (llmops_path_is_file(file) || llmops_path_is_file(dest)) {
        st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "backup: %s already holds a database", dest);
        goto out;
    }
    if ((st = llmops_mkdirs(idx, err))) goto out;
    /* indexes first: a file that turns out older than the copied rows is replayed or rebuilt */
    if (!db->opt.read_only) {
        llmops_error e = {0};
        if (llmops_vdb_flush(db, &e)) LLMOPS_WARN("backup: saving indexes: %s", e.msg);
    }
    DIR *d = opendir(db->index_dir);
    if (d) {
        struct dirent *de;
        while (!st && (de = readdir(d))) {
            size_t len = strlen(de->d_name);
            if (len < 6 || strcmp(de->d_name + len - 5, ".hnsw")) continue;
            char *a = llmops_path_join(db->index_dir, de->d_name), *b = llmops_path_join(idx, de->d_name);
            if (!a || !b) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
            else st = llmops_file_copy(a, b, err);
            llmops_free(a);
            llmops_free(b);
        }
        closedir(d);
    }
    if (!st) st = backup_to_file(db->sql, file, "backup", err);
out:
    llmops_free(file);
    llmops_free(idx);
    return st;
}

llmops_status llmops_vdb_restore(const char *src, const char *dir, llmops_error *err) {
    if (!src || !dir) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "restore: source and directory are required");
    char *srcfile = llmops_path_is_dir(src) ? llmops_path_join(src, VDB_DB_FILE) : llmops_strdup(src);
    if (!srcfile) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
    llmops_status st = LLMOPS_OK;
    sqlite3 *from = NULL;
    llmops_vdb *db = NULL;
    char *tmp = NULL;
    if (!llmops_path_is_file(srcfile)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "restore: %s: no such backup", srcfile);
        goto out;
    }
    if (sqlite3_open_v2(srcfile, &from, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "restore: %s: %s", srcfile, from ? sqlite3_errmsg(from) : "out of memory");
        goto out;
    }
    /* is it one of ours, and sound? */
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(from, "SELECT value FROM vdb_meta WHERE key='schema'", -1, &s, NULL) == SQLITE_OK &&
             sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) >= 1 &&
             sqlite3_column_int64(s, 0) <= VDB_SCHEMA_VERSION;
    sqlite3_finalize(s);
    if (ok) {
        ok = sqlite3_prepare_v2(from, "PRAGMA quick_check", -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
             !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
        sqlite3_finalize(s);
    }
    if (!ok) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "restore: %s is not a sound vector database backup", srcfile);
        goto out;
    }
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    if ((st = llmops_vdb_open(dir, &o, &db, err))) goto out;
    /* stage a copy with a fresh epoch, so that no index built before the restore is ever trusted */
    size_t n = strlen(db->dir) + 64;
    if (!(tmp = llmops_malloc(n))) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "vdb: out of memory");
        goto out;
    }
    snprintf(tmp, n, "%s/restore.%ld.sqlite3", db->dir, (long)getpid());
    unlink(tmp);
    if ((st = backup_to_file(from, tmp, "restore", err))) goto out;
    sqlite3 *stage = NULL;
    if (sqlite3_open_v2(tmp, &stage, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        st = llmops_error_set(err, LLMOPS_ERR_IO, "restore: %s: %s", tmp, stage ? sqlite3_errmsg(stage) : "out of memory");
        sqlite3_close(stage);
        goto out;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE vdb_meta SET value=%lld WHERE key='epoch'", (long long)random_u64());
    int rc = sqlite3_exec(stage, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) st = llmops_error_set(err, LLMOPS_ERR_IO, "restore: %s: %s", tmp, sqlite3_errmsg(stage));
    else {
        /* copy the staged pages into the live database under its write lock */
        sqlite3_backup *b = sqlite3_backup_init(db->sql, "main", stage, "main");
        if (!b) st = vdb_sql_error(db, err, "restore");
        else {
            for (int tries = 0; (rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED; tries++) {
                if (tries > 1000) break;
                sqlite3_sleep(10);
            }
            sqlite3_backup_finish(b);
            if (rc != SQLITE_DONE) st = llmops_error_set(err, LLMOPS_ERR_IO, "restore: %s: %s", dir, sqlite3_errstr(rc));
        }
    }
    sqlite3_close(stage);
    if (st) goto out;
    /* the old index files can never match the new epoch: reclaim their space */
    DIR *d = opendir(db->index_dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t len = strlen(de->d_name);
            if (len < 6 || strcmp(de->d_name + len - 5, ".hnsw")) continue;
            char *p = llmops_path_join(db->index_dir, de->d_name);
            if (p) unlink(p);
            llmops_free(p);
        }
        closedir(d);
    }
    st = vdb_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", err);
out:
    if (tmp) {
        unlink(tmp);
        llmops_free(tmp);
    }
    if (from) sqlite3_close(from);
    llmops_vdb_close(db);
    llmops_free(srcfile);
    return st;
}
