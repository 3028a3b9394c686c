/*
 * llmops/vectordb.h — an embedded, persistent vector database with Chroma's
 * collection model and filter language, keyword (BM25) and hybrid search.
 *
 *     llmops_vdb *db = NULL;
 *     if (llmops_vdb_open("kb/", NULL, &db, &err)) return err.code;   // a directory
 *
 *     llmops_vdb_collection_config cfg;
 *     llmops_vdb_collection_config_init(&cfg, 384);                   // dim 384, l2, M 16
 *     cfg.space = LLMOPS_VDB_COSINE;
 *     llmops_vdb_collection *c = NULL;
 *     llmops_vdb_create_collection(db, "docs", &cfg, NULL, 1, &c, &err);   // get-or-create
 *
 *     llmops_vdb_meta md[] = {{"year", LLMOPS_VDB_INT_VALUE(2024)}};
 *     llmops_vdb_record r = {.id = "a1", .embedding = vec, .document = "O-RAN rApps ...",
 *                            .metadata = md, .n_metadata = 1};
 *     llmops_vdb_add(c, &r, 1, &err);
 *
 *     llmops_vdb_query_opts q;
 *     llmops_vdb_query_opts_init(&q);
 *     q.queries = qvec; q.n_queries = 1; q.k = 5;
 *     q.where = "{\"year\": {\"$gte\": 2023}}";
 *     llmops_vdb_result *res = NULL;
 *     llmops_vdb_query(c, &q, &res, &err);
 *     for (size_t i = 0; i < res->n_hits[0]; i++)
 *         printf("%s %.4f\n", res->hits[0][i].id, res->hits[0][i].distance);
 *     llmops_vdb_result_free(res);
 *     llmops_vdb_close(db);
 *
 * Storage. A database is a directory: `vdb.sqlite3` (SQLite in WAL mode) is
 * the source of truth for collections, records, metadata and documents (with
 * an FTS5 index per collection for keyword search); `index/<uid>.hnsw` holds
 * each collection's HNSW graph, derived state stamped with the collection's
 * generation, a counter bumped in the same transaction as every write. A
 * missing, stale or corrupt index file is rebuilt (or brought up to date from
 * a change log) from SQLite, so a crash never loses an acknowledged write and
 * never leaves an unreadable collection.
 *
 * Concurrency. Several processes may open one database: readers run
 * concurrently with one writer (writers wait up to busy_timeout_ms for one
 * another). Each query first brings its in-memory index up to the database's
 * current generation, so writes of other processes are visible to the next
 * query. A handle (llmops_vdb and its collections) belongs to one thread at
 * a time.
 *
 * Filters are JSON strings with Chroma's semantics:
 *   where           {"k": v} (= $eq), {"k": {"$eq|$ne|$gt|$gte|$lt|$lte": v}},
 *                   {"k": {"$in|$nin": [v, ...]}}, {"$and|$or": [where, where, ...]}
 *   where_document  {"$contains|$not_contains": "text"}, {"$regex|$not_regex": "re"},
 *                   {"$and|$or": [...]}
 * A where object holds exactly one key. Integers and floats compare as numbers,
 * strings only with strings, booleans only with booleans; $gt/$gte/$lt/$lte
 * take numbers. $ne and $nin are the negations of $eq and $in, so they also
 * match records that lack the key; likewise $not_contains and $not_regex
 * match records without a document. $contains is a case-sensitive substring
 * test; regexes use the PCRE-like engine of src/tokenizer/uregex.h and may
 * match anywhere in the document. Errors name the JSON path
 * ("where.$and[1].year.$gt: expected a number, got string").
 *
 * Distances are "smaller is closer": l2 = squared L2, cosine = 1 - cos,
 * ip = 1 - dot (Chroma's spaces).
 */
#ifndef LLMOPS_VECTORDB_H
#define LLMOPS_VECTORDB_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_vdb llmops_vdb;
/* A collection handle, owned by its llmops_vdb: valid until the collection is
 * deleted through this handle's database or the database is closed. */
typedef struct llmops_vdb_collection llmops_vdb_collection;

/* ---- database ------------------------------------------------------------------ */

typedef struct llmops_vdb_options {
    int create;                  /* create the directory when missing (1)                     */
    int read_only;               /* open read-only: writes fail, indexes are never saved (0)  */
    int busy_timeout_ms;         /* how long to wait for another writer (10000)               */
    int synchronous;             /* SQLite synchronous: 1 NORMAL, 2 FULL (2)                  */
    double auto_compact_ratio;   /* compact a collection after a write leaves more than this
                                    fraction of its index as tombstones; 0 disables (0.5)     */
    size_t auto_compact_min;     /* ... and at least this many tombstones (1000)              */
    size_t exact_threshold;      /* a filtered query matching at most this many records is
                                    answered by exact search instead of HNSW (2048)           */
} llmops_vdb_options;

void llmops_vdb_options_init(llmops_vdb_options *o);

/* Opens (or creates) the database directory `dir`. o NULL = defaults.
 * *out: close with llmops_vdb_close. */
llmops_status llmops_vdb_open(const char *dir, const llmops_vdb_options *o, llmops_vdb **out,
                              llmops_error *err);
/* Saves every in-memory index that is newer than its file, then closes. A
 * failure to save is logged (the next open rebuilds); NULL is a no-op. */
void llmops_vdb_close(llmops_vdb *db);
/* Saves every in-memory index that is newer than its file (what close does). */
llmops_status llmops_vdb_flush(llmops_vdb *db, llmops_error *err);

/* ---- collections ---------------------------------------------------------------- */

typedef enum llmops_vdb_space {
    LLMOPS_VDB_L2 = 0, /* squared L2 (Chroma's default) */
    LLMOPS_VDB_COSINE, /* 1 - cos                       */
    LLMOPS_VDB_IP      /* 1 - dot                       */
} llmops_vdb_space;

/* "l2", "cosine", "ip"; parse returns 0 on an unknown name. */
const char *llmops_vdb_space_name(llmops_vdb_space s);
int llmops_vdb_space_parse(const char *name, llmops_vdb_space *out);

typedef struct llmops_vdb_collection_config {
    uint32_t dim;             /* fixed at creation (1 .. 65536)             */
    llmops_vdb_space space;   /* fixed at creation (l2)                     */
    uint32_t M;               /* HNSW links per node, fixed (16)            */
    uint32_t ef_construction; /* fixed (100, Chroma's default)              */
    uint32_t ef_search;       /* changeable with modify (100)               */
    uint64_t seed;            /* HNSW level generator (100)                 */
} llmops_vdb_collection_config;

void llmops_vdb_collection_config_init(llmops_vdb_collection_config *c, uint32_t dim);

/*
 * 1 when `name` is a valid collection name (Chroma's rule): 3..63 characters
 * of [a-zA-Z0-9._-], starting and ending with [a-z0-9], no "..", and not an
 * IPv4 address. On 0, *why (if non-NULL) says which part failed.
 */
int llmops_vdb_name_valid(const char *name, const char **why);

/*
 * Creates collection `name` with `cfg` and optional user metadata (a JSON
 * object, or NULL). When it exists: with get_or_create the existing one is
 * returned (its configuration wins), otherwise INVALID_ARG "already exists".
 */
llmops_status llmops_vdb_create_collection(llmops_vdb *db, const char *name,
                                           const llmops_vdb_collection_config *cfg,
                                           const char *metadata_json, int get_or_create,
                                           llmops_vdb_collection **out, llmops_error *err);
/* NOT_FOUND when there is no such collection. */
llmops_status llmops_vdb_get_collection(llmops_vdb *db, const char *name, llmops_vdb_collection **out,
                                        llmops_error *err);
/* Deletes the collection, its records and its index file; its handle is freed. */
llmops_status llmops_vdb_delete_collection(llmops_vdb *db, const char *name, llmops_error *err);

/* A description of one collection (strings owned by the info). */
typedef struct llmops_vdb_collection_info {
    char *name;
    char *metadata_json;  /* NULL when none                                    */
    char uid[17];         /* 16 hex digits, names the index file                */
    llmops_vdb_collection_config config;
    size_t count;         /* records                                           */
    uint64_t generation;  /* bumped by every write                             */
} llmops_vdb_collection_info;

/* All collections, by name. *out: free with llmops_vdb_collection_infos_free. */
llmops_status llmops_vdb_list_collections(llmops_vdb *db, llmops_vdb_collection_info **out, size_t *n,
                                          llmops_error *err);
void llmops_vdb_collection_infos_free(llmops_vdb_collection_info *infos, size_t n);
llmops_status llmops_vdb_count_collections(llmops_vdb *db, size_t *n, llmops_error *err);
/* The description of one open collection; free with llmops_vdb_collection_infos_free(info, 1). */
llmops_status llmops_vdb_collection_describe(llmops_vdb_collection *c, llmops_vdb_collection_info **out,
                                             llmops_error *err);

/*
 * Changes what may change: the name (new_name non-NULL), the user metadata
 * (metadata_json non-NULL; "null" clears it) and ef_search (non-zero).
 */
llmops_status llmops_vdb_modify_collection(llmops_vdb_collection *c, const char *new_name,
                                           const char *metadata_json, uint32_t ef_search,
                                           llmops_error *err);

/* ---- records -------------------------------------------------------------------- */

typedef enum llmops_vdb_type {
    LLMOPS_VDB_NULL = 0, /* update/upsert only: deletes the key */
    LLMOPS_VDB_STR,
    LLMOPS_VDB_INT,
    LLMOPS_VDB_FLOAT,
    LLMOPS_VDB_BOOL
} llmops_vdb_type;

typedef struct llmops_vdb_value {
    llmops_vdb_type type;
    union {
        const char *s;
        int64_t i;
        double f;
        int b;
    } u;
} llmops_vdb_value;

#define LLMOPS_VDB_STR_VALUE(x) ((llmops_vdb_value){.type = LLMOPS_VDB_STR, .u.s = (x)})
#define LLMOPS_VDB_INT_VALUE(x) ((llmops_vdb_value){.type = LLMOPS_VDB_INT, .u.i = (x)})
#define LLMOPS_VDB_FLOAT_VALUE(x) ((llmops_vdb_value){.type = LLMOPS_VDB_FLOAT, .u.f = (x)})
#define LLMOPS_VDB_BOOL_VALUE(x) ((llmops_vdb_value){.type = LLMOPS_VDB_BOOL, .u.b = (x)})

typedef struct llmops_vdb_meta {
    const char *key;
    llmops_vdb_value value;
} llmops_vdb_meta;

/*
 * One record to write. embedding: `dim` finite floats (required by add and
 * upsert; NULL in update keeps the vector). document: NULL = none (add) or
 * keep (update/upsert of an existing id). metadata: merged key by key into an
 * existing record (a LLMOPS_VDB_NULL value deletes the key); n_metadata 0 keeps
 * it as is.
 */
typedef struct llmops_vdb_record {
    const char *id;
    const float *embedding;       /* (dim) */
    const char *document;
    const llmops_vdb_meta *metadata;
    size_t n_metadata;
} llmops_vdb_record;

/* Each write is one transaction: all records or none. Ids must be unique in
 * the batch. add fails (INVALID_ARG, naming the id) if an id exists; update
 * fails (NOT_FOUND) if one does not; upsert updates or adds. */
llmops_status llmops_vdb_add(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                             llmops_error *err);
llmops_status llmops_vdb_upsert(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                                llmops_error *err);
llmops_status llmops_vdb_update(llmops_vdb_collection *c, const llmops_vdb_record *recs, size_t n,
                                llmops_error *err);

/* What a result carries besides ids (Chroma's `include`). */
enum {
    LLMOPS_VDB_INC_EMBEDDINGS = 1 << 0,
    LLMOPS_VDB_INC_DOCUMENTS = 1 << 1,
    LLMOPS_VDB_INC_METADATAS = 1 << 2,
    LLMOPS_VDB_INC_DISTANCES = 1 << 3,
    LLMOPS_VDB_INC_DEFAULT = 0x100 /* get: documents+metadatas; query: +distances */
};
/* Parses "embeddings,documents,metadatas,distances" (any subset, comma-separated). */
int llmops_vdb_include_parse(const char *list, unsigned *out);

/* One row of a result. Everything points into the result. */
typedef struct llmops_vdb_hit {
    const char *id;
    const float *embedding;          /* (dim), NULL unless included             */
    const char *document;            /* NULL when absent or not included        */
    const llmops_vdb_meta *metadata; /* sorted by key; NULL/0 unless included   */
    size_t n_metadata;
    float distance;                  /* query/search with a vector; else NAN    */
    double score;                    /* keyword: BM25 (higher is better); hybrid:
                                        fused RRF score; else 0                 */
} llmops_vdb_hit;

/* Results: one list for get/peek/search, one per query vector for query. */
typedef struct llmops_vdb_result {
    size_t n_lists;
    size_t *n_hits;          /* (n_lists)                      */
    llmops_vdb_hit **hits;   /* (n_lists) -> (n_hits[i])       */
    uint32_t dim;
    unsigned include;        /* LLMOPS_VDB_INC_* in effect     */
    int nested;              /* query shape: lists of lists    */
    int has_scores;          /* keyword / hybrid search        */
    llmops_arena *arena;     /* owns everything above          */
} llmops_vdb_result;

void llmops_vdb_result_free(llmops_vdb_result *r);

/*
 * Chroma's JSON shape: {"ids": [...], "distances": [...], "documents": [...],
 * "metadatas": [...], "embeddings": [...]} with only the included keys (and
 * "scores" for keyword/hybrid search); for a query each value is a list per
 * query vector. Appends to out.
 */
llmops_status llmops_vdb_result_to_json(const llmops_vdb_result *r, llmops_buf *out, llmops_error *err);

typedef struct llmops_vdb_get_opts {
    const char *const *ids;     /* NULL: every record */
    size_t n_ids;
    const char *where;          /* JSON or NULL       */
    const char *where_document; /* JSON or NULL       */
    size_t limit;               /* 0: no limit        */
    size_t offset;
    unsigned include;           /* LLMOPS_VDB_INC_*   */
} llmops_vdb_get_opts;

void llmops_vdb_get_opts_init(llmops_vdb_get_opts *o);

/* Records that match every given condition, in insertion order. */
llmops_status llmops_vdb_get(llmops_vdb_collection *c, const llmops_vdb_get_opts *o,
                             llmops_vdb_result **out, llmops_error *err);
/* The first `limit` records with embeddings, documents and metadata. */
llmops_status llmops_vdb_peek(llmops_vdb_collection *c, size_t limit, llmops_vdb_result **out,
                              llmops_error *err);
llmops_status llmops_vdb_count(llmops_vdb_collection *c, size_t *n, llmops_error *err);

/*
 * Deletes the records that match all given conditions (ids and/or filters;
 * at least one must be given, else INVALID_ARG). Ids that do not exist are
 * ignored. *n_deleted (may be NULL) receives the count.
 */
llmops_status llmops_vdb_delete(llmops_vdb_collection *c, const char *const *ids, size_t n_ids,
                                const char *where, const char *where_document, size_t *n_deleted,
                                llmops_error *err);

/* ---- vector, keyword and hybrid search ------------------------------------------ */

typedef struct llmops_vdb_query_opts {
    const float *queries;       /* (n_queries, dim)                       */
    size_t n_queries;
    size_t k;                   /* results per query (10)                 */
    const char *where;
    const char *where_document;
    unsigned include;           /* LLMOPS_VDB_INC_* (DEFAULT)             */
    uint32_t ef_search;         /* 0: the collection's                    */
} llmops_vdb_query_opts;

void llmops_vdb_query_opts_init(llmops_vdb_query_opts *o);

/*
 * The k nearest records to each query vector among those matching the
 * filters: min(k, matches) hits per query, nearest first (ties by insertion
 * order). Filtered sets of at most exact_threshold records are searched
 * exactly; larger ones through HNSW with the filter applied during the walk.
 */
llmops_status llmops_vdb_query(llmops_vdb_collection *c, const llmops_vdb_query_opts *o,
                               llmops_vdb_result **out, llmops_error *err);

typedef struct llmops_vdb_search_opts {
    const float *vector;        /* (dim) or NULL: no vector ranking        */
    const char *text;           /* keyword query or NULL: no BM25 ranking  */
    size_t k;                   /* results (10)                            */
    const char *where;
    const char *where_document;
    double vector_weight;       /* RRF weight of the vector ranking (1)    */
    double text_weight;         /* RRF weight of the keyword ranking (1)   */
    double rrf_k;               /* RRF constant (60)                       */
    size_t candidates;          /* taken from each ranking (max(50, 4k))   */
    int mmr;                    /* 1: diversify the top k with MMR         */
    double mmr_lambda;          /* relevance vs. diversity (0.5)           */
    unsigned include;           /* LLMOPS_VDB_INC_* (DEFAULT)              */
} llmops_vdb_search_opts;

void llmops_vdb_search_opts_init(llmops_vdb_search_opts *o);

/*
 * Keyword, vector or hybrid search. With `text` only: BM25 over the documents
 * (FTS5; the text's words are OR-ed; score = BM25, higher is better). With
 * `vector` only: as llmops_vdb_query. With both: each ranking contributes
 * weight / (rrf_k + rank) (ranks from 1) to a record's score and the k best
 * fused scores are returned (Cormack et al. 2009). With mmr, the k results
 * are chosen greedily from the candidates by
 * lambda * relevance - (1 - lambda) * max cosine similarity to those chosen.
 * Hits carry the vector distance when a vector is given.
 */
llmops_status llmops_vdb_search(llmops_vdb_collection *c, const llmops_vdb_search_opts *o,
                                llmops_vdb_result **out, llmops_error *err);

/* ---- maintenance ---------------------------------------------------------------- */

/*
 * Rebuilds the collection's index without tombstones, saves it, optimises its
 * FTS index, then VACUUMs the database and truncates the WAL so the files
 * shrink. c NULL: every collection.
 */
llmops_status llmops_vdb_compact(llmops_vdb *db, llmops_vdb_collection *c, llmops_error *err);

/*
 * Online backup (SQLite backup API; writers may continue). As a directory,
 * `dest` becomes a database directory of its own (vdb.sqlite3 plus current
 * index files) that llmops_vdb_open can open; as a single file, `dest` is the
 * SQLite database alone (indexes are rebuilt after restore).
 */
llmops_status llmops_vdb_backup(llmops_vdb *db, const char *dest, int single_file, llmops_error *err);

/*
 * Replaces the contents of the database directory `dir` (created if missing)
 * with the backup at `src` (a backup file or directory). Safe while other
 * processes have `dir` open: they see the restored content on their next
 * operation, and every index is rebuilt or reloaded as needed.
 */
llmops_status llmops_vdb_restore(const char *src, const char *dir, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
