/*
 * src/vectordb/index.h — the vector index of the vector database: an HNSW graph
 * (Malkov & Yashunin, 2016) over float32 vectors keyed by the caller's 64-bit
 * labels, plus the SIMD distance kernels it runs on. Internal to libllmops: the
 * collection layer (SQLite rows, filters, hybrid search) sits on top of it.
 *
 *     llmops_hnsw_params p;
 *     llmops_hnsw_params_init(&p);                       // M 16, efC 200, ef 64
 *     llmops_hnsw *h = NULL;
 *     if (llmops_hnsw_create(384, LLMOPS_DIST_COSINE, &p, &h, &err)) return err.code;
 *     llmops_hnsw_add(h, rowid, vec, &err);              // caller serializes adds
 *     uint64_t labels[10]; float dists[10]; size_t n;
 *     llmops_hnsw_search(h, q, 10, NULL, NULL, labels, dists, &n, &err);
 *     llmops_hnsw_save(h, "coll.hnsw", generation, &err);
 *     llmops_hnsw_free(h);
 *
 * Concurrency: every const function (search, search_exact, contains, count,
 * foreach, save, memory) may run on any number of threads at once; add,
 * remove, set_ef and free need exclusive access (the caller holds a
 * writer lock). Searches (and adds) take their scratch memory from a small
 * pool inside the index, so a search allocates only the first time a
 * thread-slot is needed or after the index has grown.
 *
 * Distances are "smaller is closer": squared L2, 1 - cos, 1 - dot.
 */
#ifndef LLMOPS_VECTORDB_INDEX_H
#define LLMOPS_VECTORDB_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- distances --------------------------------------------------------------- */

typedef enum llmops_distance {
    LLMOPS_DIST_L2 = 0, /* squared L2 */
    LLMOPS_DIST_COSINE, /* 1 - cos    */
    LLMOPS_DIST_IP      /* 1 - dot    */
} llmops_distance;

/* "l2", "cosine", "ip". */
const char *llmops_distance_name(llmops_distance d);

/*
 * Distance between a and b with the fastest kernel this CPU runs. COSINE
 * normalises here (1 - a.b / (|a| |b|); a zero vector is at distance 1 from
 * everything); the index itself stores unit vectors and uses 1 - dot.
 */
float llmops_distance_eval(llmops_distance d, const float *a, const float *b, size_t dim);

/* Kernel paths, for tests and benchmarks. */
typedef enum llmops_simd {
    LLMOPS_SIMD_SCALAR = 0,
    LLMOPS_SIMD_AVX2, /* AVX2 + FMA   */
    LLMOPS_SIMD_AVX512, /* AVX-512F   */
    LLMOPS_SIMD_N
} llmops_simd;

typedef float (*llmops_dist_kernel)(const float *a, const float *b, size_t dim);

/* 1 when this CPU (and this build) can run `s`. */
int llmops_simd_supported(llmops_simd s);
/* The best supported path (honours LLMOPS_SIMD=scalar|avx2|avx512 when set and supported). */
llmops_simd llmops_simd_best(void);
const char *llmops_simd_name(llmops_simd s);
/* sum (a_i - b_i)^2 and sum a_i b_i on path `s`; NULL when `s` is unsupported. */
llmops_dist_kernel llmops_kernel_l2sq(llmops_simd s);
llmops_dist_kernel llmops_kernel_dot(llmops_simd s);

/* The reference the SIMD kernels are tested against: one float accumulator, in order. */
float llmops_l2sq_ref(const float *a, const float *b, size_t dim);
float llmops_dot_ref(const float *a, const float *b, size_t dim);

#if defined(__x86_64__)
/* The SIMD paths (distance_avx2.c, distance_avx512.c): call only when supported. */
float llmops_l2sq_avx2(const float *a, const float *b, size_t dim);
float llmops_dot_avx2(const float *a, const float *b, size_t dim);
float llmops_l2sq_avx512(const float *a, const float *b, size_t dim);
float llmops_dot_avx512(const float *a, const float *b, size_t dim);
#endif

/* ---- HNSW -------------------------------------------------------------------- */

typedef struct llmops_hnsw_params {
    uint32_t M;               /* links per node above layer 0; 2M at layer 0 (16)      */
    uint32_t ef_construction; /* candidate list while inserting (200)                  */
    uint32_t ef_search;       /* candidate list while searching (64); max(ef, k) used  */
    uint64_t seed;            /* level generator                                       */
} llmops_hnsw_params;

/* Limits checked by create and by the loader. */
#define LLMOPS_HNSW_MAX_DIM 65536u
#define LLMOPS_HNSW_MAX_M 512u
#define LLMOPS_HNSW_MAX_EF 65536u
#define LLMOPS_HNSW_MAX_LEVEL 31u
#define LLMOPS_HNSW_MAX_NODES 0xfffffff0u

void llmops_hnsw_params_init(llmops_hnsw_params *p);

typedef struct llmops_hnsw llmops_hnsw;

/* An empty index of `dim`-dimensional vectors; p NULL = defaults. *out: free with llmops_hnsw_free. */
llmops_status llmops_hnsw_create(uint32_t dim, llmops_distance dist, const llmops_hnsw_params *p,
                                 llmops_hnsw **out, llmops_error *err);
void llmops_hnsw_free(llmops_hnsw *h);

/* Grows the storage to hold `n` nodes (tombstones included) without further reallocation. */
llmops_status llmops_hnsw_reserve(llmops_hnsw *h, size_t n, llmops_error *err);

/*
 * Inserts vec (dim floats, copied; must be finite) under `label`, the caller's
 * 64-bit id (a SQLite rowid). Adding an existing label replaces its vector:
 * the old node becomes a tombstone and a new node is linked in (an identical
 * vector is a no-op). On failure the index is unchanged apart from spare
 * capacity. Labels added in sequence (each one more than the last, as
 * SQLite rowids and 0..n-1 are) are kept implicitly at no cost per node; the
 * first label out of sequence or replacement switches the index to an
 * explicit label array and id map (8 bytes plus about 5-11 bytes a node).
 */
llmops_status llmops_hnsw_add(llmops_hnsw *h, uint64_t label, const float *vec, llmops_error *err);
/* Marks deleted (not returned by searches; space reclaimed by rebuild). NOT_FOUND if absent. */
llmops_status llmops_hnsw_remove(llmops_hnsw *h, uint64_t label, llmops_error *err);
int llmops_hnsw_contains(const llmops_hnsw *h, uint64_t label);
size_t llmops_hnsw_count(const llmops_hnsw *h);   /* live labels   */
size_t llmops_hnsw_deleted(const llmops_hnsw *h); /* tombstones    */
void llmops_hnsw_set_ef(llmops_hnsw *h, uint32_t ef_search);
uint32_t llmops_hnsw_dim(const llmops_hnsw *h);
llmops_distance llmops_hnsw_distance(const llmops_hnsw *h);
/* The parameters in force (ef_search as last set). */
void llmops_hnsw_get_params(const llmops_hnsw *h, llmops_hnsw_params *p);
/*
 * Copies the stored vector of a live label into out (dim floats): for COSINE
 * the unit vector that was stored. NOT_FOUND if absent.
 */
llmops_status llmops_hnsw_get_vector(const llmops_hnsw *h, uint64_t label, float *out, llmops_error *err);

/* Optional filter: returns 1 when the label may be returned. */
typedef int (*llmops_label_filter)(void *ctx, uint64_t label);

/*
 * k nearest (fewer only if fewer live labels pass the filter): labels and
 * distances ascending (ties by label). With a filter the search keeps
 * exploring (ef grows) until k passing labels are found or the graph is
 * exhausted, and falls back to an exact scan if some nodes were unreachable,
 * so a filtered query never returns fewer than min(k, matches). labels and
 * dists (either may be NULL) hold k entries. The filter may be called from
 * several threads at once when searches run concurrently.
 */
llmops_status llmops_hnsw_search(const llmops_hnsw *h, const float *q, size_t k, llmops_label_filter f,
                                 void *fctx, uint64_t *labels, float *dists, size_t *n_found,
                                 llmops_error *err);
/* Exact search over the same stored vectors (test oracle; small or highly selective filtered sets). */
llmops_status llmops_hnsw_search_exact(const llmops_hnsw *h, const float *q, size_t k, llmops_label_filter f,
                                       void *fctx, uint64_t *labels, float *dists, size_t *n_found,
                                       llmops_error *err);
/* Iterate live labels in insertion order (for rebuild/compaction); vec is the stored vector. */
void llmops_hnsw_foreach(const llmops_hnsw *h, void (*fn)(void *ctx, uint64_t label, const float *vec),
                         void *ctx);

/*
 * Persistence: one file, written atomically (temp + fsync + rename). The
 * loader checks every count and offset against the file size and a SHA-256
 * of the body and fails cleanly (FORMAT / UNSUPPORTED / NOMEM, the message
 * names the origin and the field) on any corruption, so the caller can
 * rebuild from its source of truth. `generation` is the caller's 64-bit
 * stamp (e.g. the SQLite change counter at save time) for staleness checks.
 * The layout is documented at the top of hnsw.c.
 */
llmops_status llmops_hnsw_save(const llmops_hnsw *h, const char *path, uint64_t generation, llmops_error *err);
llmops_status llmops_hnsw_load(const char *path, llmops_hnsw **out, uint64_t *generation, llmops_error *err);
/* As load, from bytes in memory (copied); `origin` names them in messages. */
llmops_status llmops_hnsw_load_buffer(const void *data, size_t size, const char *origin, llmops_hnsw **out,
                                      uint64_t *generation, llmops_error *err);
/* Bytes of heap the index holds (capacity, scratch pool included). */
size_t llmops_hnsw_memory(const llmops_hnsw *h);

#ifdef __cplusplus
}
#endif
#endif
