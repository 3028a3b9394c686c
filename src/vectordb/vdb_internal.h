/*
 * src/vectordb/vdb_internal.h — what db.c, collection.c, search.c and
 * result.c share: the handles, the SQLite plumbing and the index sync.
 *
 * Schema (vdb.sqlite3, WAL mode):
 *   vdb_meta(key PRIMARY KEY, value)          'schema' = 1, 'epoch' = random (new on restore)
 *   collections(id AUTOINCREMENT, uid, name UNIQUE, dim, space, m, ef_construction,
 *               ef_search, seed, metadata JSON, generation, index_gen, garbage)
 *   records(label AUTOINCREMENT = HNSW label, coll, id, embedding BLOB (dim float32), document)
 *   metadata(label, key, coll, t, v) WITHOUT ROWID, index (coll, key, v)
 *   changes(coll, gen, label) WITHOUT ROWID   labels whose vector changed at generation gen
 *   fts_<coll id>: FTS5 over records.document (external content, rowid = label)
 *
 * Index sync. `generation` is bumped by every write transaction; a write
 * that adds, re-embeds or deletes a record also logs its label in `changes`.
 * The index file index/<uid>.hnsw is saved under the write lock with the
 * stamp token(epoch, uid, gen), sets index_gen = gen and prunes changes up to
 * gen. An in-memory index at generation g is brought up to date by replaying
 * the labels changed after g (when g >= index_gen, so none were pruned), else
 * by loading the file (when its stamp matches index_gen) and replaying, else
 * by a rebuild from the records. All of it happens inside the read
 * transaction of the query, so the index and the rows agree.
 */
#ifndef LLMOPS_VECTORDB_INTERNAL_H
#define LLMOPS_VECTORDB_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"
#include "llmops/vectordb.h"
#include "vectordb/filter.h"
#include "vectordb/index.h"

#define VDB_DB_FILE "vdb.sqlite3"
#define VDB_INDEX_DIR "index"
#define VDB_SCHEMA_VERSION 1
#define VDB_MAX_ID_BYTES 4096
#define VDB_MAX_BATCH 10000000u

struct llmops_vdb_collection {
    llmops_vdb *db;
    int64_t cid;                 /* collections.id                         */
    uint64_t uid;                /* random; names the index file           */
    char *name;
    llmops_vdb_collection_config cfg;
    llmops_hnsw *index;          /* NULL until the first search            */
    uint64_t index_epoch;        /* what `index` reflects                  */
    int64_t index_gen;
    int64_t file_gen;            /* generation of the file it came from; -1 */
    llmops_vdb_collection *next;
};

struct llmops_vdb {
    sqlite3 *sql;
    char *dir;
    char *index_dir;
    llmops_vdb_options opt;
    llmops_vdb_collection *colls; /* open handles */
    int in_tx;                    /* a transaction of ours is open */
};

/* ---- SQLite helpers (db.c) ---- */

/* An error from the connection: "CONTEXT: sqlite message". BUSY becomes IO. */
llmops_status vdb_sql_error(llmops_vdb *db, llmops_error *err, const char *ctx);
llmops_status vdb_exec(llmops_vdb *db, const char *sql, llmops_error *err);
llmops_status vdb_prepare(llmops_vdb *db, const char *sql, sqlite3_stmt **st, llmops_error *err);
/* BEGIN (read snapshot) / BEGIN IMMEDIATE (write lock) and their end. */
llmops_status vdb_begin_read(llmops_vdb *db, llmops_error *err);
llmops_status vdb_begin_write(llmops_vdb *db, llmops_error *err);
llmops_status vdb_commit(llmops_vdb *db, llmops_error *err);
void vdb_rollback(llmops_vdb *db);
/* Binds p->v[i] at first + i. */
int vdb_bind_params(sqlite3_stmt *st, const llmops_vdb_sql_params *p, int first);
/* Reads the epoch of the database (inside a transaction). */
llmops_status vdb_epoch(llmops_vdb *db, uint64_t *epoch, llmops_error *err);
llmops_distance vdb_space_to_distance(llmops_vdb_space s);

/* ---- index sync (search.c) ---- */

/* Brings c->index up to the database's current generation. Call inside a transaction. */
llmops_status vdb_index_ensure(llmops_vdb_collection *c, llmops_error *err);
/* Saves c->index if it is newer than the file (takes the write lock itself). */
llmops_status vdb_index_flush(llmops_vdb_collection *c, llmops_error *err);
/* Replaces c->index with a fresh build from the records and saves it (inside a write transaction). */
llmops_status vdb_index_rebuild_and_save(llmops_vdb_collection *c, llmops_error *err);
void vdb_index_drop(llmops_vdb_collection *c);
char *vdb_index_path(const llmops_vdb_collection *c);

/* ---- filters over a collection (collection.c) ---- */

/*
 * Labels of the records of c that match ids (optional), where and
 * where_document, in label order. *labels: llmops_free. Call inside a
 * transaction. limit 0 = all.
 */
llmops_status vdb_match_labels(llmops_vdb_collection *c, const char *const *ids, size_t n_ids,
                               const llmops_vdb_filter *where, const llmops_vdb_filter *wdoc, size_t offset,
                               size_t limit, int64_t **labels, size_t *n, llmops_error *err);
/* Parses both filters (either may be NULL/empty); frees on failure. */
llmops_status vdb_parse_filters(const char *where, const char *wdoc, llmops_vdb_filter **fw,
                                llmops_vdb_filter **fd, llmops_error *err);
/* Checks the collection still exists (another process may have deleted it). */
llmops_status vdb_collection_check(llmops_vdb_collection *c, llmops_error *err);
/* Compacts automatically when the garbage ratio passes the threshold (best effort). */
void vdb_maybe_auto_compact(llmops_vdb_collection *c);

/* ---- results (result.c) ---- */

llmops_status vdb_result_new(size_t n_lists, uint32_t dim, unsigned include, llmops_vdb_result **out,
                             llmops_error *err);
/*
 * Fills list `li` with the records of `labels` (in that order) and the given
 * distances/scores (either may be NULL). Call inside a transaction.
 */
llmops_status vdb_result_fill(llmops_vdb_collection *c, llmops_vdb_result *r, size_t li, const int64_t *labels,
                              const float *dists, const double *scores, size_t n, llmops_error *err);
/* Appends s as a JSON string literal (quoted, escaped). */
llmops_status vdb_json_string(llmops_buf *b, const char *s, llmops_error *err);

#endif
