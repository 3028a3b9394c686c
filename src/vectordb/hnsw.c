/*
 * HNSW (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor
 * search using Hierarchical Navigable Small World graphs", 2016), the variant
 * hnswlib implements: a node's level is floor(-ln(U) / ln(M)); at each level
 * it keeps up to M links (2M at level 0); new links are chosen with the
 * neighbour-selection heuristic (algorithm 4 without extension or kept
 * pruned connections), and a full neighbour list is re-pruned with the same
 * heuristic.
 *
 * Memory layout (node ids are dense uint32, in insertion order). Per node the
 * index holds the vector, the level-0 links and about one byte more; the
 * bookkeeping is sized to stay under hnswlib's own per-element footprint:
 *
 *     vecs      float[cap][dim]          contiguous, 64-byte aligned (a vector of 16k
 *                                        floats is exactly k cache lines: +25% QPS
 *                                        at dim 384 over malloc's 16-byte alignment);
 *                                        unit vectors for COSINE
 *     links0    uint32[cap][1 + 2M]      level 0: [count, id, id, ...], fixed stride
 *     dead      bits[cap]                tombstones
 *     upbits    bits[cap]                node has level >= 1; uprank[w] counts the
 *                                        set bits before word w, so the rank of a
 *                                        node among the upper nodes is one popcount
 *     uoff, ulevel [n_up]                per upper node (about 1 node in M): offset of
 *                                        its links in `upper` and its level
 *     upper     uint32[...]              levels 1..L of an upper node: L blocks of
 *                                        [count, id * M], in node order
 *     labels    the caller's label of each node. Dense mode (labels == NULL):
 *               node i has label label_base + i, the common case of labels
 *               handed out in sequence (SQLite rowids, 0..n-1), and a label is
 *               found by subtraction. The first add that breaks the sequence
 *               (a gap, a replacement) switches to general mode: uint64[cap]
 *               labels plus an open-addressing map label -> node that stores
 *               only node ids (keys are read back through labels[]), linear
 *               probing at load <= 3/4, backward-shift deletion.
 *
 * A search marks visited nodes in a byte array with an epoch counter (a
 * memset only every 255 searches) and keeps its two heaps in scratch
 * memory borrowed from a small pool (adds borrow from it too), so it does
 * not allocate in steady state. Level-0 expansion first gathers the unvisited neighbours and
 * prefetches the head of each vector, then computes distances while
 * prefetching the rest of the next one, so the memory system fetches several
 * vectors at once; the link list of each node pushed on the frontier is
 * prefetched too. Adds find all neighbours first and only then modify the
 * graph, so an out-of-memory failure leaves the index unchanged.
 *
 * File format, version 1 (little-endian; written by llmops_hnsw_save):
 *
 *     off  size
 *       0     8  magic "LLMHNSW\0"
 *       8     4  version = 1
 *      12     4  header size = 128
 *      16     4  dim                    1 .. 65536
 *      20     4  distance               0 l2, 1 cosine, 2 ip
 *      24     4  M                      2 .. 512
 *      28     4  M0                     = 2M
 *      32     4  ef_construction
 *      36     4  ef_search
 *      40     4  entry point            node id, 0xffffffff when empty
 *      44     4  max level              <= 31
 *      48     8  seed
 *      56    32  level-generator state  4 x uint64 (so a loaded index keeps inserting
 *                                       exactly as the saved one would)
 *      88     8  generation             caller's stamp
 *      96     8  n                      nodes, tombstones included
 *     104     8  n_deleted              tombstones
 *     112     8  upper words            total uint32 words of the upper-level links
 *     120     8  reserved = 0
 *     128        labels   uint64[n]
 *                vectors  float32[n][dim]
 *                links0   uint32[n][1 + M0]
 *                upper    uint32[upper words]   (node order; offsets follow from levels)
 *                levels   uint8[n]
 *                flags    uint8[n]
 *     size-32    SHA-256 of bytes [0, size - 32)
 *
 * The loader requires the size to match the header exactly, checks the
 * digest, then every structural invariant: levels <= max level, entry at the
 * max level, link counts <= capacity, link targets < n and present at that
 * level, tombstone count, unique live labels, finite vectors.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/hash.h"
#include "vectordb/index.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hnsw.c writes and reads its file format in host byte order: little-endian only"
#endif

#define NONE 0xffffffffu
#define FLAG_DELETED 1u
#define POOL_MAX 64
#define HEADER_SIZE 128u
#define DIGEST_SIZE 32u
#define FILE_VERSION 1u
static const char k_magic[8] = {'L', 'L', 'M', 'H', 'N', 'S', 'W', '\0'};

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PREFETCH(p) ((void)0)
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

typedef struct dn {
    float d;
    uint32_t id;
} dn;

/* Per-search memory. Owned by one search (or the inserting thread) at a time. */
typedef struct scratch {
    uint8_t *visited;  /* (vcap) epoch tags                              */
    size_t vcap;
    uint8_t epoch;
    dn *cand; /* (cand_cap) min-heap: frontier                   */
    size_t cand_cap;
    dn *top; /* (top_cap) max-heap: best ef so far            */
    size_t top_cap;
    float *q;         /* (dim) the query, normalised for COSINE; 64-byte aligned in q_raw */
    void *q_raw;
    uint32_t *batch;  /* (M0 + 1) unvisited neighbours of one node     */
    dn *sel;          /* (sel_cap) sorted candidates for the heuristic */
    size_t sel_cap;
    dn *picked;       /* (M0 + 1) heuristic output                     */
    uint32_t *chosen; /* (MAX_LEVEL + 1) * M: links picked per level   */
    uint32_t *n_chosen; /* (MAX_LEVEL + 1)                             */
} scratch;

struct llmops_hnsw {
    uint32_t dim;
    llmops_distance dist;
    uint32_t M, M0, efc, ef;
    uint64_t seed;
    uint64_t rng[4];
    double level_mult;
    int is_dot;                /* distance = 1 - kern(), else kern() */
    llmops_dist_kernel kern;

    size_t n, cap, n_deleted;
    float *vecs;        /* (cap, dim), 64-byte aligned inside vecs_raw */
    void *vecs_raw;
    uint32_t *links0;   /* (cap, 1 + M0)    */
    uint64_t *dead;     /* (words(cap)) tombstone bits                      */
    uint64_t *upbits;   /* (words(cap)) level >= 1 bits                     */
    uint32_t *uprank;   /* (words(cap)) upper nodes before each word        */
    size_t *uoff;       /* (ucap) offset in `upper` of the r-th upper node */
    uint8_t *ulevel;    /* (ucap) its level                                 */
    size_t n_up, ucap;
    uint32_t *upper;    /* (upper_cap)      */
    size_t upper_len, upper_cap;
    uint32_t entry, max_level;

    uint64_t *labels;   /* (cap) general mode; NULL in dense mode           */
    uint64_t label_base; /* dense mode: label of node 0                      */
    uint32_t *map;      /* (map_cap) node ids, NONE = empty slot; general mode */
    size_t map_cap, map_len;

    pthread_mutex_t pool_mu;
    scratch *pool[POOL_MAX];
    int pool_n;
};

/* ---- small helpers ------------------------------------------------------------------- */

static inline float dist_of(const llmops_hnsw *h, const float *a, const float *b) {
    float r = h->kern(a, b, h->dim);
    return h->is_dot ? 1.0f - r : r;
}

static inline const float *vec_at(const llmops_hnsw *h, uint32_t id) {
    return h->vecs + (size_t)id * h->dim;
}

static inline int bit_at(const uint64_t *w, uint32_t id) { return (int)((w[id >> 6] >> (id & 63)) & 1u); }

static inline int is_deleted(const llmops_hnsw *h, uint32_t id) { return bit_at(h->dead, id); }

/* Rank of an upper node among the upper nodes (the caller knows its bit is set). */
static inline size_t up_rank(const llmops_hnsw *h, uint32_t id) {
    uint32_t w = id >> 6;
    return h->uprank[w] + (size_t)__builtin_popcountll(h->upbits[w] & ((UINT64_C(1) << (id & 63)) - 1));
}

static inline uint32_t level_of(const llmops_hnsw *h, uint32_t id) {
    return bit_at(h->upbits, id) ? h->ulevel[up_rank(h, id)] : 0;
}

static inline uint32_t *links_at(const llmops_hnsw *h, uint32_t id, uint32_t level) {
    if (level == 0) return h->links0 + (size_t)id * (1 + h->M0);
    return h->upper + h->uoff[up_rank(h, id)] + (size_t)(level - 1) * (1 + h->M);
}

static inline uint64_t label_of(const llmops_hnsw *h, uint32_t id) {
    return h->labels ? h->labels[id] : h->label_base + id;
}

static inline size_t words_of(size_t n) { return (n + 63) / 64; }

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

static uint32_t random_level(llmops_hnsw *h) {
    double u = ((double)(rng_next(h->rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double l = floor(-log(u) * h->level_mult);
    return l >= (double)LLMOPS_HNSW_MAX_LEVEL ? LLMOPS_HNSW_MAX_LEVEL : (uint32_t)l;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* ---- heaps (dn ordered by distance, then id) ------------------------------------------ */

static inline int dn_less(dn a, dn b) { return a.d < b.d || (a.d == b.d && a.id < b.id); }

/* max-heap */
static inline void maxheap_push(dn *a, size_t *n, dn x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!dn_less(a[p], x)) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static inline void maxheap_pop(dn *a, size_t *n) {
    dn x = a[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && dn_less(a[c], a[c + 1])) c++;
        if (!dn_less(x, a[c])) break;
        a[i] = a[c];
        i = c;
    }
    if (m) a[i] = x;
}

/* Replaces the largest element with x (x below it) and restores the max-heap. */
static inline void maxheap_replace_top(dn *a, size_t n, dn x) {
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && dn_less(a[c], a[c + 1])) c++;
        if (!dn_less(x, a[c])) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

/* min-heap */
static inline void minheap_push(dn *a, size_t *n, dn x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!dn_less(x, a[p])) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static inline void minheap_pop(dn *a, size_t *n) {
    dn x = a[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && dn_less(a[c + 1], a[c])) c++;
        if (!dn_less(a[c], x)) break;
        a[i] = a[c];
        i = c;
    }
    if (m) a[i] = x;
}

static int dn_cmp(const void *pa, const void *pb) {
    dn a = *(const dn *)pa, b = *(const dn *)pb;
    return dn_less(a, b) ? -1 : dn_less(b, a) ? 1 : 0;
}

/* ---- scratch ---------------------------------------------------------------------------- */

static void scratch_free(scratch *s) {
    if (!s) return;
    llmops_free(s->visited);
    llmops_free(s->cand);
    llmops_free(s->top);
    llmops_free(s->q_raw);
    llmops_free(s->batch);
    llmops_free(s->sel);
    llmops_free(s->picked);
    llmops_free(s->chosen);
    llmops_free(s->n_chosen);
    llmops_free(s);
}

static scratch *scratch_new(const llmops_hnsw *h) {
    scratch *s = llmops_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->q_raw = llmops_malloc((size_t)h->dim * sizeof(float) + 64);
    if (s->q_raw) s->q = (float *)(void *)((char *)s->q_raw + ((64 - ((uintptr_t)s->q_raw & 63)) & 63));
    s->batch = llmops_malloc((h->M0 + 1) * sizeof(uint32_t));
    s->picked = llmops_malloc((h->M0 + 1) * sizeof(dn));
    s->chosen = llmops_malloc((size_t)(LLMOPS_HNSW_MAX_LEVEL + 1) * h->M * sizeof(uint32_t));
    s->n_chosen = llmops_malloc((LLMOPS_HNSW_MAX_LEVEL + 1) * sizeof(uint32_t));
    if (!s->q || !s->batch || !s->picked || !s->chosen || !s->n_chosen) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

static size_t scratch_bytes(const llmops_hnsw *h, const scratch *s) {
    return sizeof *s + s->vcap + (s->cand_cap + s->top_cap + s->sel_cap) * sizeof(dn) +
           (size_t)h->dim * sizeof(float) + (h->M0 + 1) * (sizeof(uint32_t) + sizeof(dn)) +
           (LLMOPS_HNSW_MAX_LEVEL + 1) * ((size_t)h->M + 1) * sizeof(uint32_t);
}

static int grow_dn(dn **a, size_t *cap, size_t need) {
    if (*cap >= need) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    dn *p = llmops_reallocarray(*a, c, sizeof(dn));
    if (!p) return 0;
    *a = p;
    *cap = c;
    return 1;
}

/* Readies s for one search over h with list size ef: visited tags for every
 * node and a fresh epoch, room for ef + 1 results. */
static int scratch_begin(const llmops_hnsw *h, scratch *s, size_t ef) {
    if (s->vcap < h->n) {
        size_t c = h->cap > h->n ? h->cap : h->n;
        uint8_t *v = llmops_calloc(c, 1);
        if (!v) return 0;
        llmops_free(s->visited);
        s->visited = v;
        s->vcap = c;
        s->epoch = 0;
    }
    if (!grow_dn(&s->top, &s->top_cap, ef + 1) || !grow_dn(&s->cand, &s->cand_cap, ef + 1)) return 0;
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->vcap);
        s->epoch = 1;
    }
    return 1;
}

static scratch *pool_take(const llmops_hnsw *ch) {
    llmops_hnsw *h = (llmops_hnsw *)ch; /* the pool is mutable state behind a mutex */
    scratch *s = NULL;
    pthread_mutex_lock(&h->pool_mu);
    if (h->pool_n > 0) s = h->pool[--h->pool_n];
    pthread_mutex_unlock(&h->pool_mu);
    return s ? s : scratch_new(h);
}

static void pool_give(const llmops_hnsw *ch, scratch *s) {
    llmops_hnsw *h = (llmops_hnsw *)ch;
    pthread_mutex_lock(&h->pool_mu);
    if (h->pool_n < POOL_MAX) {
        h->pool[h->pool_n++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&h->pool_mu);
    scratch_free(s);
}

/* ---- label map ---------------------------------------------------------------------------- */

static inline size_t map_home(const llmops_hnsw *h, uint64_t label) { return (size_t)(mix64(label) % h->map_cap); }

/* The live node holding `label`, or NONE. */
static uint32_t map_get(const llmops_hnsw *h, uint64_t label) {
    if (!h->labels) { /* dense: node i holds label_base + i (modulo 2^64) */
        uint64_t id = label - h->label_base;
        return id < h->n && !is_deleted(h, (uint32_t)id) ? (uint32_t)id : NONE;
    }
    if (!h->map_cap) return NONE;
    size_t i = map_home(h, label);
    for (;;) {
        uint32_t v = h->map[i];
        if (v == NONE) return NONE;
        if (h->labels[v] == label) return v;
        if (++i == h->map_cap) i = 0;
    }
}

/* General mode: sets labels[id] -> id (labels[id] already written); the caller
 * made room (map_reserve). A slot whose node carries the same label is reused. */
static void map_put(llmops_hnsw *h, uint32_t id) {
    uint64_t label = h->labels[id];
    size_t i = map_home(h, label);
    while (h->map[i] != NONE) {
        if (h->labels[h->map[i]] == label) {
            h->map[i] = id;
            return;
        }
        if (++i == h->map_cap) i = 0;
    }
    h->map[i] = id;
    h->map_len++;
}

static void map_del(llmops_hnsw *h, uint64_t label) {
    if (!h->labels || !h->map_cap) return;
    size_t cap = h->map_cap, i = map_home(h, label);
    for (;;) {
        if (h->map[i] == NONE) return;
        if (h->labels[h->map[i]] == label) break;
        if (++i == cap) i = 0;
    }
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t j = i;
    for (;;) {
        h->map[i] = NONE;
        for (;;) {
            if (++j == cap) j = 0;
            if (h->map[j] == NONE) {
                h->map_len--;
                return;
            }
            size_t home = map_home(h, h->labels[h->map[j]]);
            /* move j into the hole at i unless its home lies cyclically in (i, j] */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
            break;
        }
        h->map[i] = h->map[j];
        i = j;
    }
}

/* General mode: room for `n` labels at load factor <= 3/4. `tight` sizes the
 * table for exactly n (load 3/4, for reserve and load); otherwise it doubles
 * so that inserting one at a time rehashes rarely. Dense mode: nothing to do. */
static int map_reserve(llmops_hnsw *h, size_t n, int tight) {
    if (!h->labels) return 1;
    if (n > SIZE_MAX / 8) return 0;
    if (h->map_cap >= 16 && 4 * n <= 3 * h->map_cap) return 1;
    size_t c = tight ? n + n / 3 + 1 : 2 * n;
    if (c < 16) c = 16;
    uint32_t *m = llmops_malloc(c * sizeof(uint32_t));
    if (!m) return 0;
    memset(m, 0xff, c * sizeof(uint32_t));
    uint32_t *om = h->map;
    size_t oc = h->map_cap;
    h->map = m;
    h->map_cap = c;
    h->map_len = 0;
    for (size_t i = 0; i < oc; i++)
        if (om[i] != NONE) map_put(h, om[i]);
    llmops_free(om);
    return 1;
}

/* Dense -> general mode: a labels array of cap entries and a map of the live
 * nodes. 0 (nothing changed) when out of memory. */
static int go_general(llmops_hnsw *h) {
    if (h->labels) return 1;
    uint64_t *l = llmops_malloc((h->cap ? h->cap : 1) * sizeof(uint64_t));
    if (!l) return 0;
    for (size_t i = 0; i < h->n; i++) l[i] = h->label_base + i;
    h->labels = l;
    if (!map_reserve(h, h->n - h->n_deleted + 1, 0)) {
        h->labels = NULL;
        llmops_free(l);
        return 0;
    }
    for (size_t i = 0; i < h->n; i++)
        if (!is_deleted(h, (uint32_t)i)) map_put(h, (uint32_t)i);
    return 1;
}

/* ---- create / free ------------------------------------------------------------------------- */

void llmops_hnsw_params_init(llmops_hnsw_params *p) {
    p->M = 16;
    p->ef_construction = 200;
    p->ef_search = 64;
    p->seed = 100;
}

static llmops_status check_params(uint32_t dim, llmops_distance dist, const llmops_hnsw_params *p,
                                  const char *origin, llmops_error *err) {
    if (dim == 0 || dim > LLMOPS_HNSW_MAX_DIM)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: dim %u out of range 1..%u", origin, dim,
                                LLMOPS_HNSW_MAX_DIM);
    if ((unsigned)dist > LLMOPS_DIST_IP)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: unknown distance %d", origin, (int)dist);
    if (p->M < 2 || p->M > LLMOPS_HNSW_MAX_M)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: M %u out of range 2..%u", origin, p->M,
                                LLMOPS_HNSW_MAX_M);
    if (p->ef_construction < 1 || p->ef_construction > LLMOPS_HNSW_MAX_EF || p->ef_search < 1 ||
        p->ef_search > LLMOPS_HNSW_MAX_EF)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "%s: ef_construction %u / ef_search %u out of range 1..%u", origin,
                                p->ef_construction, p->ef_search, LLMOPS_HNSW_MAX_EF);
    return LLMOPS_OK;
}

llmops_status llmops_hnsw_create(uint32_t dim, llmops_distance dist, const llmops_hnsw_params *p,
                                 llmops_hnsw **out, llmops_error *err) {
    llmops_hnsw_params def;
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw: out is NULL");
    *out = NULL;
    if (!p) {
        llmops_hnsw_params_init(&def);
        p = &def;
    }
    llmops_status st = check_params(dim, dist, p, "hnsw", err);
    if (st) return st;
    llmops_hnsw *h = llmops_calloc(1, sizeof *h);
    if (!h) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw: out of memory");
    h->dim = dim;
    h->dist = dist;
    h->M = p->M;
    h->M0 = 2 * p->M;
    h->efc = p->ef_construction;
    h->ef = p->ef_search;
    h->seed = p->seed;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) h->rng[i] = splitmix64(&x);
    h->level_mult = 1.0 / log((double)p->M);
    h->is_dot = dist != LLMOPS_DIST_L2;
    llmops_simd s = llmops_simd_best();
    h->kern = h->is_dot ? llmops_kernel_dot(s) : llmops_kernel_l2sq(s);
    h->entry = NONE;
    pthread_mutex_init(&h->pool_mu, NULL);
    *out = h;
    return LLMOPS_OK;
}

void llmops_hnsw_free(llmops_hnsw *h) {
    if (!h) return;
    llmops_free(h->vecs_raw);
    llmops_free(h->links0);
    llmops_free(h->dead);
    llmops_free(h->upbits);
    llmops_free(h->uprank);
    llmops_free(h->uoff);
    llmops_free(h->ulevel);
    llmops_free(h->upper);
    llmops_free(h->labels);
    llmops_free(h->map);
    for (int i = 0; i < h->pool_n; i++) scratch_free(h->pool[i]);
    pthread_mutex_destroy(&h->pool_mu);
    llmops_free(h);
}

/* Grows a bit array (and zeroes the new words) from the words of `cap` nodes to those of `want`. */
static int grow_bits(uint64_t **a, size_t cap, size_t want) {
    uint64_t *p = llmops_reallocarray(*a, words_of(want), sizeof(uint64_t));
    if (!p) return 0;
    memset(p + words_of(cap), 0, (words_of(want) - words_of(cap)) * sizeof(uint64_t));
    *a = p;
    return 1;
}

/* Grows every per-node array to exactly `want` nodes. A partial failure leaves
 * the arrays that did grow larger than cap, which is harmless. */
static int grow_nodes(llmops_hnsw *h, size_t want) {
    if (want <= h->cap) return 1;
    if (want > LLMOPS_HNSW_MAX_NODES) return 0;
    void *p;
    /* vectors start on a cache line: a 64-byte load never splits, a vector of
     * 16k floats spans exactly k lines */
    size_t vb;
    if (__builtin_mul_overflow(want, (size_t)h->dim * sizeof(float), &vb) || vb > SIZE_MAX - 64) return 0;
    size_t old_off = h->vecs_raw ? (size_t)((char *)h->vecs - (char *)h->vecs_raw) : 0;
    if (!(p = llmops_realloc(h->vecs_raw, vb + 64))) return 0;
    size_t off = (64 - ((uintptr_t)p & 63)) & 63;
    if (off != old_off && h->n) memmove((char *)p + off, (char *)p + old_off, h->n * (size_t)h->dim * sizeof(float));
    h->vecs_raw = p;
    h->vecs = (float *)(void *)((char *)p + off);
    if (!(p = llmops_reallocarray(h->links0, want, (size_t)(1 + h->M0) * sizeof(uint32_t)))) return 0;
    h->links0 = p;
    if (h->labels) {
        if (!(p = llmops_reallocarray(h->labels, want, sizeof(uint64_t)))) return 0;
        h->labels = p;
    }
    if (!grow_bits(&h->dead, h->cap, want) || !grow_bits(&h->upbits, h->cap, want)) return 0;
    if (!(p = llmops_reallocarray(h->uprank, words_of(want), sizeof(uint32_t)))) return 0;
    h->uprank = p;
    h->cap = want;
    return 1;
}

/* Room for `want` upper nodes (geometric growth). */
static int grow_up(llmops_hnsw *h, size_t want) {
    if (want <= h->ucap) return 1;
    size_t c = h->ucap < 16 ? 16 : h->ucap + h->ucap / 2;
    if (c < want) c = want;
    void *p;
    if (!(p = llmops_reallocarray(h->uoff, c, sizeof(size_t)))) return 0;
    h->uoff = p;
    if (!(p = llmops_reallocarray(h->ulevel, c, 1))) return 0;
    h->ulevel = p;
    h->ucap = c;
    return 1;
}

/* Room for `want` words of upper-level links; grows by a quarter (not
 * doubling: the spare capacity is memory the index holds, and the copy is
 * small: about one node in M has upper levels). */
static int grow_upper(llmops_hnsw *h, size_t want) {
    if (want <= h->upper_cap) return 1;
    size_t c = h->upper_cap ? h->upper_cap : 256;
    while (c < want) {
        if (c > SIZE_MAX / 8) return 0;
        c += c / 4;
    }
    uint32_t *p = llmops_reallocarray(h->upper, c, sizeof(uint32_t));
    if (!p) return 0;
    h->upper = p;
    h->upper_cap = c;
    return 1;
}

llmops_status llmops_hnsw_reserve(llmops_hnsw *h, size_t n, llmops_error *err) {
    if (n > LLMOPS_HNSW_MAX_NODES)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "hnsw: %zu nodes exceed the limit %u", n,
                                LLMOPS_HNSW_MAX_NODES);
    if (!grow_nodes(h, n) || !map_reserve(h, n, 1))
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw: out of memory reserving %zu nodes", n);
    return LLMOPS_OK;
}

/* ---- graph search ---------------------------------------------------------------------------- */

/* Greedy walk at one upper level: move to the closest neighbour until none is closer. */
static void greedy_upper(const llmops_hnsw *h, const float *q, uint32_t level, uint32_t *cur, float *curd) {
    for (int changed = 1; changed;) {
        changed = 0;
        const uint32_t *l = links_at(h, *cur, level);
        uint32_t cnt = l[0];
        for (uint32_t j = 0; j < cnt; j++) PREFETCH(vec_at(h, l[1 + j]));
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t nb = l[1 + j];
            float d = dist_of(h, q, vec_at(h, nb));
            if (d < *curd) {
                *curd = d;
                *cur = nb;
                changed = 1;
            }
        }
    }
}

enum { MODE_BUILD, MODE_BUILD_ALL, MODE_QUERY };

/* Prefetch depth while expanding a node: the first PF_FIRST cache lines of every
 * unvisited neighbour at once, the rest of the next neighbour's vector while
 * the current distance is computed (measured on 100k x 384: +~10% QPS over
 * first-line-only; all lines of all neighbours at once overflows the fill buffers). */
#define PF_FIRST 2

/*
 * The beam search of one level (algorithm 2): leaves up to ef results in the
 * max-heap s->top (top_n of them). MODE_BUILD keeps tombstones out of the
 * results, MODE_BUILD_ALL keeps them in, MODE_QUERY also applies the filter.
 * Every node is still used for navigation. *n_visited counts distance
 * evaluations. Returns 0 when the frontier could not grow (out of memory).
 */
static int search_level(const llmops_hnsw *h, scratch *s, const float *q, uint32_t ep, float ep_d, size_t ef,
                        uint32_t level, int mode, llmops_label_filter f, void *fctx, size_t *top_n,
                        size_t *n_visited) {
    uint8_t *visited = s->visited;
    const uint8_t tag = s->epoch;
    dn *top = s->top, *cand = s->cand;
    size_t nt = 0, nc = 0, nv = 1;
    const int all = mode == MODE_BUILD_ALL;
    const int check = !all && (h->n_deleted || (mode == MODE_QUERY && f));

    visited[ep] = tag;
    float lower;
    if (all || ((!check || !is_deleted(h, ep)) && (mode != MODE_QUERY || !f || f(fctx, label_of(h, ep))))) {
        top[nt++] = (dn){ep_d, ep};
        lower = ep_d;
    } else {
        lower = INFINITY;
    }
    cand[nc++] = (dn){ep_d, ep};

    const size_t vbytes = (size_t)h->dim * sizeof(float);
    const uint32_t l0stride = 1 + h->M0;
    while (nc) {
        dn c = cand[0];
        if (c.d > lower && nt >= ef) break;
        minheap_pop(cand, &nc);
        if (nc && level == 0) PREFETCH(h->links0 + (size_t)cand[0].id * l0stride);
        const uint32_t *l = links_at(h, c.id, level);
        uint32_t cnt = l[0];
        /* gather the unvisited neighbours and start fetching their vectors */
        uint32_t *b = s->batch, nb = 0;
        for (uint32_t j = 0; j < cnt; j++) PREFETCH(visited + l[1 + j]);
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t id = l[1 + j];
            if (visited[id] == tag) continue;
            visited[id] = tag;
            b[nb++] = id;
            const char *v = (const char *)vec_at(h, id);
            for (size_t o = 0; o < PF_FIRST && 64 * o < vbytes; o++) PREFETCH(v + 64 * o);
        }
        nv += nb;
        if (nb + nc + 1 > s->cand_cap) {
            if (!grow_dn(&s->cand, &s->cand_cap, nb + nc + 1)) {
                *top_n = nt;
                *n_visited = nv;
                return 0;
            }
            cand = s->cand;
        }
        for (uint32_t j = 0; j < nb; j++) {
            uint32_t id = b[j];
            if (j + 1 < nb) {
                const char *nx = (const char *)vec_at(h, b[j + 1]);
                for (size_t o = 64 * PF_FIRST; o < vbytes; o += 64) PREFETCH(nx + o);
            }
            float d = dist_of(h, q, vec_at(h, id));
            if (nt < ef || d < lower) {
                minheap_push(cand, &nc, (dn){d, id});
                if (level == 0) PREFETCH(h->links0 + (size_t)id * l0stride);
                if (!check || ((!is_deleted(h, id)) && (mode != MODE_QUERY || !f || f(fctx, label_of(h, id))))) {
                    if (nt < ef) {
                        maxheap_push(top, &nt, (dn){d, id});
                    } else {
                        maxheap_replace_top(top, nt, (dn){d, id});
                    }
                    lower = top[0].d;
                }
            }
        }
    }
    *top_n = nt;
    *n_visited = nv;
    return 1;
}

/* ---- insertion ------------------------------------------------------------------------------------ */

/*
 * The neighbour-selection heuristic (algorithm 4): walk the candidates from
 * the closest and keep one only if it is closer to the base than to every
 * candidate already kept. c[0..n) sorted ascending; writes up to m to out.
 */
static uint32_t select_heuristic(const llmops_hnsw *h, const dn *c, size_t n, uint32_t m, dn *out) {
    uint32_t k = 0;
    for (size_t i = 0; i < n && k < m; i++) {
        const float *v = vec_at(h, c[i].id);
        int good = 1;
        for (uint32_t j = 0; j < k; j++)
            if (dist_of(h, v, vec_at(h, out[j].id)) < c[i].d) {
                good = 0;
                break;
            }
        if (good) out[k++] = c[i];
    }
    return k;
}

/* Adds `id` to the level-`level` list of `nb`, re-pruning a full list with the heuristic. */
static void link_back(llmops_hnsw *h, scratch *s, uint32_t nb, uint32_t id, uint32_t level) {
    uint32_t *l = links_at(h, nb, level);
    uint32_t cap = level == 0 ? h->M0 : h->M, cnt = l[0];
    for (uint32_t j = 0; j < cnt; j++)
        if (l[1 + j] == id) return;
    if (cnt < cap) {
        l[1 + cnt] = id;
        l[0] = cnt + 1;
        return;
    }
    const float *v = vec_at(h, nb);
    dn *c = s->sel; /* sel_cap >= M0 + 1, ensured by add */
    for (uint32_t j = 0; j < cnt; j++) c[j] = (dn){dist_of(h, v, vec_at(h, l[1 + j])), l[1 + j]};
    c[cnt] = (dn){dist_of(h, v, vec_at(h, id)), id};
    qsort(c, cnt + 1, sizeof(dn), dn_cmp);
    uint32_t k = select_heuristic(h, c, cnt + 1, cap, s->picked);
    for (uint32_t j = 0; j < k; j++) l[1 + j] = s->picked[j].id;
    l[0] = k;
}

/* Sorted copy of the heap s->top[0..nt) into s->sel. */
static void top_sorted(scratch *s, size_t nt) {
    memcpy(s->sel, s->top, nt * sizeof(dn));
    qsort(s->sel, nt, sizeof(dn), dn_cmp);
}

llmops_status llmops_hnsw_add(llmops_hnsw *h, uint64_t label, const float *vec, llmops_error *err) {
    if (!h || !vec) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_add: NULL argument");
    if (!all_finite(vec, h->dim))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_add: label %llu: vector has NaN or Inf",
                                (unsigned long long)label);
    if (h->n >= LLMOPS_HNSW_MAX_NODES)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "hnsw_add: node limit %u reached (rebuild to reclaim)",
                                LLMOPS_HNSW_MAX_NODES);
    /* the writer borrows a search scratch: adds never run beside searches */
    scratch *s = pool_take(h);
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw_add: out of memory (label %llu)",
                                    (unsigned long long)label);
    float *v = s->q;
    memcpy(v, vec, (size_t)h->dim * sizeof(float));
    if (h->dist == LLMOPS_DIST_COSINE) {
        double ss = 0;
        for (uint32_t i = 0; i < h->dim; i++) ss += (double)v[i] * v[i];
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (uint32_t i = 0; i < h->dim; i++) v[i] *= inv;
        }
    }
    uint32_t old = map_get(h, label);
    if (old != NONE && !memcmp(vec_at(h, old), v, (size_t)h->dim * sizeof(float))) {
        pool_give(h, s);
        return LLMOPS_OK;
    }

    /* reserve everything first: after this point nothing can fail */
    if (h->n + 1 > h->cap) {
        size_t want = h->cap < 64 ? 64 : h->cap + h->cap / 2;
        if (want > LLMOPS_HNSW_MAX_NODES) want = LLMOPS_HNSW_MAX_NODES;
        if (!grow_nodes(h, want)) goto nomem;
    }
    /* a label out of sequence (or a replacement) ends dense mode */
    if (!h->labels && h->n && label != h->label_base + h->n && !go_general(h)) goto nomem;
    if (!map_reserve(h, h->map_len + 1, 0)) goto nomem;
    uint64_t saved_rng[4];
    memcpy(saved_rng, h->rng, sizeof saved_rng);
    uint32_t level = random_level(h);
    if (level && !grow_up(h, h->n_up + 1)) goto nomem_rng;
    if (!grow_upper(h, h->upper_len + (size_t)level * (1 + h->M))) goto nomem_rng;
    size_t ef = h->efc;
    if (!grow_dn(&s->sel, &s->sel_cap, (ef > h->M0 ? ef : h->M0) + 1)) goto nomem_rng;

    /* phase 1: find the neighbours of the new node at every level it joins */
    uint32_t id = (uint32_t)h->n;
    uint32_t top_level = h->entry == NONE ? 0 : (level < h->max_level ? level : h->max_level);
    if (h->entry != NONE) {
        if (!scratch_begin(h, s, ef)) goto nomem_rng;
        uint32_t cur = h->entry;
        float curd = dist_of(h, v, vec_at(h, cur));
        for (uint32_t lc = h->max_level; lc > level; lc--) greedy_upper(h, v, lc, &cur, &curd);
        for (uint32_t lc = top_level + 1; lc-- > 0;) {
            size_t nt, nv;
            if (lc != top_level && !scratch_begin(h, s, ef)) goto nomem_rng;
            if (!search_level(h, s, v, cur, curd, ef, lc, MODE_BUILD, NULL, NULL, &nt, &nv)) goto nomem_rng;
            if (nt == 0) { /* every node reached is a tombstone: link to them anyway */
                if (!scratch_begin(h, s, ef)) goto nomem_rng;
                if (!search_level(h, s, v, cur, curd, ef, lc, MODE_BUILD_ALL, NULL, NULL, &nt, &nv))
                    goto nomem_rng;
            }
            top_sorted(s, nt);
            uint32_t k = select_heuristic(h, s->sel, nt, h->M, s->picked);
            for (uint32_t j = 0; j < k; j++) s->chosen[(size_t)lc * h->M + j] = s->picked[j].id;
            s->n_chosen[lc] = k;
            if (k) {
                cur = s->picked[0].id;
                curd = s->picked[0].d;
            }
        }
    }

    /* phase 2: commit */
    memcpy(h->vecs + (size_t)id * h->dim, v, (size_t)h->dim * sizeof(float));
    if (h->labels) h->labels[id] = label;
    else if (id == 0) h->label_base = label;
    if ((id & 63) == 0) h->uprank[id >> 6] = (uint32_t)h->n_up;
    /* whole blocks zeroed: unused slots never carry stale bytes into a saved file */
    memset(h->links0 + (size_t)id * (1 + h->M0), 0, (1 + (size_t)h->M0) * sizeof(uint32_t));
    if (level) {
        h->upbits[id >> 6] |= UINT64_C(1) << (id & 63);
        h->uoff[h->n_up] = h->upper_len;
        h->ulevel[h->n_up] = (uint8_t)level;
        h->n_up++;
        memset(h->upper + h->upper_len, 0, (size_t)level * (1 + h->M) * sizeof(uint32_t));
        h->upper_len += (size_t)level * (1 + h->M);
    }
    h->n++;
    if (h->entry != NONE) {
        for (uint32_t lc = 0; lc <= top_level; lc++) {
            uint32_t *l = links_at(h, id, lc), k = s->n_chosen[lc];
            for (uint32_t j = 0; j < k; j++) l[1 + j] = s->chosen[(size_t)lc * h->M + j];
            l[0] = k;
            for (uint32_t j = 0; j < k; j++) link_back(h, s, l[1 + j], id, lc);
        }
    }
    if (old != NONE) {
        h->dead[old >> 6] |= UINT64_C(1) << (old & 63);
        h->n_deleted++;
    }
    if (h->labels) map_put(h, id);
    if (h->entry == NONE || level > h->max_level) {
        h->entry = id;
        h->max_level = level;
    }
    pool_give(h, s);
    return LLMOPS_OK;

nomem_rng:
    memcpy(h->rng, saved_rng, sizeof saved_rng);
nomem:
    pool_give(h, s);
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw_add: out of memory (label %llu)",
                            (unsigned long long)label);
}

llmops_status llmops_hnsw_remove(llmops_hnsw *h, uint64_t label, llmops_error *err) {
    uint32_t id = h ? map_get(h, label) : NONE;
    if (id == NONE)
        return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "hnsw_remove: label %llu not in the index",
                                (unsigned long long)label);
    h->dead[id >> 6] |= UINT64_C(1) << (id & 63);
    h->n_deleted++;
    map_del(h, label);
    return LLMOPS_OK;
}

int llmops_hnsw_contains(const llmops_hnsw *h, uint64_t label) { return h && map_get(h, label) != NONE; }
size_t llmops_hnsw_count(const llmops_hnsw *h) { return h ? h->n - h->n_deleted : 0; }
size_t llmops_hnsw_deleted(const llmops_hnsw *h) { return h ? h->n_deleted : 0; }
uint32_t llmops_hnsw_dim(const llmops_hnsw *h) { return h->dim; }
llmops_distance llmops_hnsw_distance(const llmops_hnsw *h) { return h->dist; }

void llmops_hnsw_set_ef(llmops_hnsw *h, uint32_t ef_search) {
    if (!h) return;
    if (ef_search < 1) ef_search = 1;
    if (ef_search > LLMOPS_HNSW_MAX_EF) ef_search = LLMOPS_HNSW_MAX_EF;
    h->ef = ef_search;
}

void llmops_hnsw_get_params(const llmops_hnsw *h, llmops_hnsw_params *p) {
    p->M = h->M;
    p->ef_construction = h->efc;
    p->ef_search = h->ef;
    p->seed = h->seed;
}

llmops_status llmops_hnsw_get_vector(const llmops_hnsw *h, uint64_t label, float *out, llmops_error *err) {
    uint32_t id = map_get(h, label);
    if (id == NONE)
        return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "hnsw: label %llu not in the index",
                                (unsigned long long)label);
    memcpy(out, vec_at(h, id), (size_t)h->dim * sizeof(float));
    return LLMOPS_OK;
}

void llmops_hnsw_foreach(const llmops_hnsw *h, void (*fn)(void *ctx, uint64_t label, const float *vec),
                         void *ctx) {
    for (size_t i = 0; h && i < h->n; i++)
        if (!is_deleted(h, (uint32_t)i)) fn(ctx, label_of(h, (uint32_t)i), vec_at(h, (uint32_t)i));
}

/* ---- queries ---------------------------------------------------------------------------------------- */

/* Copies q into s->q (normalised for COSINE). 0 when q is not finite. */
static int prepare_query(const llmops_hnsw *h, scratch *s, const float *q) {
    if (!all_finite(q, h->dim)) return 0;
    memcpy(s->q, q, (size_t)h->dim * sizeof(float));
    if (h->dist == LLMOPS_DIST_COSINE) {
        double ss = 0;
        for (uint32_t i = 0; i < h->dim; i++) ss += (double)q[i] * q[i];
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (uint32_t i = 0; i < h->dim; i++) s->q[i] *= inv;
        }
    }
    return 1;
}

/* Sorts the heap r[0..n) by (distance, label): a heap sort by (distance, id),
 * then an insertion sort that only moves equal-distance entries. */
static void sort_results(const llmops_hnsw *h, dn *r, size_t n) {
    for (size_t m = n; m > 1;) {
        dn x = r[0];
        maxheap_pop(r, &m);
        r[m] = x;
    }
    for (size_t i = 1; i < n; i++) {
        dn x = r[i];
        size_t j = i;
        while (j > 0 && (r[j - 1].d > x.d || (r[j - 1].d == x.d && label_of(h, r[j - 1].id) > label_of(h, x.id)))) {
            r[j] = r[j - 1];
            j--;
        }
        r[j] = x;
    }
}

static llmops_status exact_into(const llmops_hnsw *h, scratch *s, const float *q, size_t k,
                                llmops_label_filter f, void *fctx, size_t *nt_out) {
    if (!grow_dn(&s->top, &s->top_cap, k + 1)) return LLMOPS_ERR_NOMEM;
    dn *top = s->top;
    size_t nt = 0;
    for (size_t i = 0; i < h->n; i++) {
        uint32_t id = (uint32_t)i;
        if (is_deleted(h, id)) continue;
        if (i + 4 < h->n) PREFETCH(vec_at(h, id + 4));
        float d = dist_of(h, q, vec_at(h, id));
        if (nt == k && !(d < top[0].d || (d == top[0].d && label_of(h, id) < label_of(h, top[0].id)))) continue;
        if (f && !f(fctx, label_of(h, id))) continue;
        /* ties by label: compare labels when distances are equal */
        if (nt < k) {
            size_t j = nt++;
            while (j > 0) {
                size_t p = (j - 1) / 2;
                dn pp = top[p];
                if (pp.d > d || (pp.d == d && label_of(h, pp.id) > label_of(h, id))) break;
                top[j] = pp;
                j = p;
            }
            top[j] = (dn){d, id};
        } else {
            /* replace the root and sift down (max by (d, label)) */
            dn x = {d, id};
            size_t j = 0;
            for (;;) {
                size_t c = 2 * j + 1;
                if (c >= nt) break;
                if (c + 1 < nt && (top[c + 1].d > top[c].d ||
                                   (top[c + 1].d == top[c].d && label_of(h, top[c + 1].id) > label_of(h, top[c].id))))
                    c++;
                if (top[c].d < x.d || (top[c].d == x.d && label_of(h, top[c].id) < label_of(h, x.id))) break;
                top[j] = top[c];
                j = c;
            }
            top[j] = x;
        }
    }
    *nt_out = nt;
    return LLMOPS_OK;
}

static llmops_status check_query(const llmops_hnsw *h, const float *q, size_t *n_found, const char *who,
                                 llmops_error *err) {
    if (!h || !q || !n_found) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: NULL argument", who);
    *n_found = 0;
    return LLMOPS_OK;
}

static void output(const llmops_hnsw *h, dn *r, size_t n, size_t k, uint64_t *labels, float *dists,
                   size_t *n_found) {
    sort_results(h, r, n);
    if (n > k) n = k;
    for (size_t i = 0; i < n; i++) {
        if (labels) labels[i] = label_of(h, r[i].id);
        if (dists) dists[i] = r[i].d;
    }
    *n_found = n;
}

llmops_status llmops_hnsw_search_exact(const llmops_hnsw *h, const float *q, size_t k, llmops_label_filter f,
                                       void *fctx, uint64_t *labels, float *dists, size_t *n_found,
                                       llmops_error *err) {
    llmops_status st = check_query(h, q, n_found, "hnsw_search_exact", err);
    if (st || k == 0 || h->n == h->n_deleted) return st;
    if (k > h->n) k = h->n;
    scratch *s = pool_take(h);
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw_search_exact: out of memory");
    if (!prepare_query(h, s, q)) {
        pool_give(h, s);
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_search_exact: query has NaN or Inf");
    }
    size_t nt = 0;
    if ((st = exact_into(h, s, s->q, k, f, fctx, &nt)) != LLMOPS_OK) {
        pool_give(h, s);
        return llmops_error_set(err, st, "hnsw_search_exact: out of memory");
    }
    output(h, s->top, nt, k, labels, dists, n_found);
    pool_give(h, s);
    return LLMOPS_OK;
}

llmops_status llmops_hnsw_search(const llmops_hnsw *h, const float *q, size_t k, llmops_label_filter f,
                                 void *fctx, uint64_t *labels, float *dists, size_t *n_found, llmops_error *err) {
    llmops_status st = check_query(h, q, n_found, "hnsw_search", err);
    if (st || k == 0 || h->n == h->n_deleted) return st;
    if (k > h->n) k = h->n;
    scratch *s = pool_take(h);
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw_search: out of memory");
    if (!prepare_query(h, s, q)) {
        pool_give(h, s);
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_search: query has NaN or Inf");
    }
    size_t ef = h->ef > k ? h->ef : k;
    if (!scratch_begin(h, s, ef)) goto nomem;
    uint32_t cur = h->entry;
    float curd = dist_of(h, s->q, vec_at(h, cur));
    for (uint32_t lc = h->max_level; lc > 0; lc--) greedy_upper(h, s->q, lc, &cur, &curd);
    size_t nt = 0, nv = 0;
    if (!search_level(h, s, s->q, cur, curd, ef, 0, MODE_QUERY, f, fctx, &nt, &nv)) goto nomem;
    if (nt < k && nv < h->n) {
        /* some nodes were never reached: the graph gave too few, so scan them all */
        if (exact_into(h, s, s->q, k, f, fctx, &nt) != LLMOPS_OK) goto nomem;
    }
    output(h, s->top, nt, k, labels, dists, n_found);
    pool_give(h, s);
    return LLMOPS_OK;
nomem:
    pool_give(h, s);
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "hnsw_search: out of memory");
}

size_t llmops_hnsw_memory(const llmops_hnsw *h) {
    if (!h) return 0;
    size_t b = sizeof *h + (h->vecs_raw ? 64 : 0);
    b += h->cap * ((size_t)h->dim * sizeof(float) + (1 + (size_t)h->M0) * sizeof(uint32_t) +
                   (h->labels ? sizeof(uint64_t) : 0));
    b += words_of(h->cap) * (2 * sizeof(uint64_t) + sizeof(uint32_t));
    b += h->ucap * (sizeof(size_t) + 1);
    b += h->upper_cap * sizeof(uint32_t);
    b += h->map_cap * sizeof(uint32_t);
    llmops_hnsw *m = (llmops_hnsw *)h;
    pthread_mutex_lock(&m->pool_mu);
    for (int i = 0; i < h->pool_n; i++) b += scratch_bytes(h, h->pool[i]);
    pthread_mutex_unlock(&m->pool_mu);
    return b;
}

/* ---- persistence ------------------------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

typedef struct writer {
    llmops_atomic_file f;
    llmops_sha256_ctx sha;
} writer;

static llmops_status w_put(writer *w, const void *data, size_t len, llmops_error *err) {
    llmops_sha256_update(&w->sha, data, len);
    return llmops_atomic_file_write(&w->f, data, len, err);
}

enum { COL_LABELS, COL_LEVELS, COL_FLAGS };

/* Writes one per-node column of the file (labels uint64, levels uint8, flags
 * uint8), generated from the compact in-memory form in chunks. */
static llmops_status w_column(writer *w, const llmops_hnsw *h, int col, llmops_error *err) {
    if (col == COL_LABELS && h->labels) return w_put(w, h->labels, h->n * sizeof(uint64_t), err);
    uint64_t buf[512];
    uint8_t *b8 = (uint8_t *)buf;
    const size_t per = col == COL_LABELS ? 512 : sizeof buf;
    for (size_t i = 0; i < h->n; i += per) {
        size_t m = h->n - i < per ? h->n - i : per;
        for (size_t j = 0; j < m; j++) {
            uint32_t id = (uint32_t)(i + j);
            if (col == COL_LABELS) buf[j] = h->label_base + id;
            else if (col == COL_LEVELS) b8[j] = (uint8_t)level_of(h, id);
            else b8[j] = is_deleted(h, id) ? FLAG_DELETED : 0;
        }
        llmops_status st = w_put(w, buf, col == COL_LABELS ? m * sizeof(uint64_t) : m, err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

llmops_status llmops_hnsw_save(const llmops_hnsw *h, const char *path, uint64_t generation, llmops_error *err) {
    if (!h || !path) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_save: NULL argument");
    uint8_t hdr[HEADER_SIZE] = {0};
    memcpy(hdr, k_magic, 8);
    put32(hdr + 8, FILE_VERSION);
    put32(hdr + 12, HEADER_SIZE);
    put32(hdr + 16, h->dim);
    put32(hdr + 20, (uint32_t)h->dist);
    put32(hdr + 24, h->M);
    put32(hdr + 28, h->M0);
    put32(hdr + 32, h->efc);
    put32(hdr + 36, h->ef);
    put32(hdr + 40, h->entry);
    put32(hdr + 44, h->max_level);
    put64(hdr + 48, h->seed);
    for (int i = 0; i < 4; i++) put64(hdr + 56 + 8 * i, h->rng[i]);
    put64(hdr + 88, generation);
    put64(hdr + 96, h->n);
    put64(hdr + 104, h->n_deleted);
    put64(hdr + 112, h->upper_len);

    writer w;
    llmops_sha256_init(&w.sha);
    llmops_status st = llmops_atomic_file_open(&w.f, path, err);
    if (st) return st;
    size_t n = h->n;
    if ((st = w_put(&w, hdr, sizeof hdr, err)) || (st = w_column(&w, h, COL_LABELS, err)) ||
        (st = w_put(&w, h->vecs, n * h->dim * sizeof(float), err)) ||
        (st = w_put(&w, h->links0, n * (1 + (size_t)h->M0) * sizeof(uint32_t), err)) ||
        (st = w_put(&w, h->upper, h->upper_len * sizeof(uint32_t), err)) ||
        (st = w_column(&w, h, COL_LEVELS, err)) || (st = w_column(&w, h, COL_FLAGS, err))) {
        llmops_atomic_file_abort(&w.f);
        return st;
    }
    uint8_t digest[LLMOPS_SHA256_BYTES];
    llmops_sha256_final(&w.sha, digest);
    if ((st = llmops_atomic_file_write(&w.f, digest, sizeof digest, err)) != LLMOPS_OK) {
        llmops_atomic_file_abort(&w.f);
        return st;
    }
    return llmops_atomic_file_commit(&w.f, err);
}

#define BAD(...) llmops_error_set(err, LLMOPS_ERR_FORMAT, __VA_ARGS__)

/* Builds the compact per-node state of a freshly loaded index from the file's
 * label, level and flag columns and validates the graph (sizes are already
 * known to match; vectors and links are in place). */
static llmops_status validate(llmops_hnsw *h, const char *origin, const uint8_t *lab, const uint8_t *lev,
                              const uint8_t *flg, uint64_t n_deleted, llmops_error *err) {
    size_t n = h->n, upper = 0, del = 0, n_up = 0;
    for (size_t i = 0; i < n; i++) {
        if (lev[i] > h->max_level)
            return BAD("%s: node %zu: level %u above the max level %u", origin, i, lev[i], h->max_level);
        if (flg[i] & ~FLAG_DELETED) return BAD("%s: node %zu: unknown flags 0x%x", origin, i, flg[i]);
        del += flg[i] & FLAG_DELETED;
        n_up += lev[i] != 0;
        upper += (size_t)lev[i] * (1 + h->M);
    }
    if (upper != h->upper_len)
        return BAD("%s: upper links hold %zu words, the levels need %zu", origin, h->upper_len, upper);
    if (del != n_deleted) return BAD("%s: %zu tombstones, header says %llu", origin, del, (unsigned long long)n_deleted);
    if (!grow_up(h, n_up)) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    upper = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bit = UINT64_C(1) << (i & 63);
        if ((i & 63) == 0) h->uprank[i >> 6] = (uint32_t)h->n_up;
        if (flg[i]) h->dead[i >> 6] |= bit;
        if (lev[i]) {
            h->upbits[i >> 6] |= bit;
            h->uoff[h->n_up] = upper;
            h->ulevel[h->n_up++] = lev[i];
            upper += (size_t)lev[i] * (1 + h->M);
        }
    }
    if (n == 0) {
        if (h->entry != NONE || h->max_level != 0) return BAD("%s: empty index with an entry point", origin);
    } else {
        if (h->entry >= n) return BAD("%s: entry point %u out of range (n %zu)", origin, h->entry, n);
        if (lev[h->entry] != h->max_level)
            return BAD("%s: entry point %u at level %u, max level %u", origin, h->entry, lev[h->entry], h->max_level);
    }
    for (size_t i = 0; i < n; i++) {
        for (uint32_t lc = 0; lc <= lev[i]; lc++) {
            const uint32_t *l = links_at(h, (uint32_t)i, lc);
            uint32_t cap = lc == 0 ? h->M0 : h->M;
            if (l[0] > cap) return BAD("%s: node %zu level %u: %u links, at most %u", origin, i, lc, l[0], cap);
            for (uint32_t j = 0; j < l[0]; j++) {
                uint32_t t = l[1 + j];
                if (t >= n) return BAD("%s: node %zu level %u: link to %u, n is %zu", origin, i, lc, t, n);
                if (lev[t] < lc)
                    return BAD("%s: node %zu level %u: link to node %u of level %u", origin, i, lc, t, lev[t]);
            }
        }
        if (!all_finite(vec_at(h, (uint32_t)i), h->dim)) return BAD("%s: node %zu: vector not finite", origin, i);
    }
    /* labels: dense (label_base + i) needs no array and no map */
    uint64_t base = n ? get64(lab) : 0;
    size_t i = 0;
    while (i < n && get64(lab + 8 * i) == base + i) i++;
    if (i == n) {
        h->label_base = base;
        return LLMOPS_OK;
    }
    if (!(h->labels = llmops_malloc(h->cap * sizeof(uint64_t))))
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    memcpy(h->labels, lab, n * sizeof(uint64_t));
    if (!map_reserve(h, n - del, 1)) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    for (i = 0; i < n; i++) {
        if (is_deleted(h, (uint32_t)i)) continue;
        if (map_get(h, h->labels[i]) != NONE)
            return BAD("%s: node %zu: label %llu is live twice", origin, i, (unsigned long long)h->labels[i]);
        map_put(h, (uint32_t)i);
    }
    return LLMOPS_OK;
}

llmops_status llmops_hnsw_load_buffer(const void *data, size_t size, const char *origin, llmops_hnsw **out,
                                      uint64_t *generation, llmops_error *err) {
    if (!origin) origin = "hnsw";
    if (!out || (!data && size)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: NULL argument", origin);
    *out = NULL;
    const uint8_t *p = data;
    if (size < HEADER_SIZE + DIGEST_SIZE)
        return BAD("%s: truncated: %zu bytes, a header and digest need %u", origin, size, HEADER_SIZE + DIGEST_SIZE);
    if (memcmp(p, k_magic, 8)) return BAD("%s: bad magic (not an llmops HNSW index)", origin);
    uint32_t version = get32(p + 8);
    if (version != FILE_VERSION)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: unsupported version %u (this build reads %u)",
                                origin, version, FILE_VERSION);
    if (get32(p + 12) != HEADER_SIZE) return BAD("%s: header size %u, expected %u", origin, get32(p + 12), HEADER_SIZE);
    uint32_t dim = get32(p + 16), dist = get32(p + 20), M = get32(p + 24), M0 = get32(p + 28);
    uint32_t entry = get32(p + 40), max_level = get32(p + 44);
    uint64_t n = get64(p + 96), n_deleted = get64(p + 104), upper_words = get64(p + 112);
    llmops_hnsw_params prm = {M, get32(p + 32), get32(p + 36), get64(p + 48)};
    llmops_error sub = {0};
    if (check_params(dim, (llmops_distance)dist, &prm, origin, &sub))
        return BAD("%s (header)", sub.msg);
    if (M0 != 2 * M) return BAD("%s: M0 %u is not 2*M (M %u)", origin, M0, M);
    if (max_level > LLMOPS_HNSW_MAX_LEVEL)
        return BAD("%s: max level %u above %u", origin, max_level, LLMOPS_HNSW_MAX_LEVEL);
    if (n > LLMOPS_HNSW_MAX_NODES) return BAD("%s: node count %llu above the limit", origin, (unsigned long long)n);
    if (n_deleted > n)
        return BAD("%s: %llu tombstones among %llu nodes", origin, (unsigned long long)n_deleted,
                   (unsigned long long)n);
    if (get64(p + 120) != 0) return BAD("%s: reserved header field not zero", origin);
    /* expected size, every product checked */
    uint64_t vec_bytes, l0_bytes, up_bytes, total = HEADER_SIZE + DIGEST_SIZE;
    if (!llmops_mul_ok(n, (uint64_t)dim * 4, &vec_bytes) || !llmops_mul_ok(n, (1 + (uint64_t)M0) * 4, &l0_bytes) ||
        !llmops_mul_ok(upper_words, 4, &up_bytes) || !llmops_add_ok(total, n * 8, &total) ||
        !llmops_add_ok(total, vec_bytes, &total) || !llmops_add_ok(total, l0_bytes, &total) ||
        !llmops_add_ok(total, up_bytes, &total) || !llmops_add_ok(total, 2 * n, &total))
        return BAD("%s: header sizes overflow", origin);
    if (total != size)
        return BAD("%s: file is %zu bytes, the header implies %llu (truncated or corrupt)", origin, size,
                   (unsigned long long)total);
    uint8_t digest[LLMOPS_SHA256_BYTES];
    llmops_sha256(p, size - DIGEST_SIZE, digest);
    if (memcmp(digest, p + size - DIGEST_SIZE, DIGEST_SIZE))
        return BAD("%s: checksum mismatch (SHA-256 of the body differs: corrupt file)", origin);

    llmops_hnsw *h = NULL;
    llmops_status st = llmops_hnsw_create(dim, (llmops_distance)dist, &prm, &h, err);
    if (st) return st;
    if (!grow_nodes(h, (size_t)n) || !grow_upper(h, (size_t)upper_words)) {
        llmops_hnsw_free(h);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory for %llu nodes", origin,
                                (unsigned long long)n);
    }
    const uint8_t *q = p + HEADER_SIZE, *lab = q;
    /* an empty index has no arrays: memcpy to NULL is undefined even for 0 bytes */
    q += n * 8;
    if (vec_bytes) memcpy(h->vecs, q, (size_t)vec_bytes);
    q += vec_bytes;
    if (l0_bytes) memcpy(h->links0, q, (size_t)l0_bytes);
    q += l0_bytes;
    if (up_bytes) memcpy(h->upper, q, (size_t)up_bytes);
    q += up_bytes;
    const uint8_t *lev = q, *flg = q + n;
    h->n = (size_t)n;
    h->n_deleted = (size_t)n_deleted;
    h->upper_len = (size_t)upper_words;
    h->entry = entry;
    h->max_level = max_level;
    for (int i = 0; i < 4; i++) h->rng[i] = get64(p + 56 + 8 * i);
    if ((st = validate(h, origin, lab, lev, flg, n_deleted, err)) != LLMOPS_OK) {
        llmops_hnsw_free(h);
        return st;
    }
    if (generation) *generation = get64(p + 88);
    *out = h;
    return LLMOPS_OK;
}

llmops_status llmops_hnsw_load(const char *path, llmops_hnsw **out, uint64_t *generation, llmops_error *err) {
    if (!path || !out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "hnsw_load: NULL argument");
    *out = NULL;
    llmops_mmap m;
    llmops_status st = llmops_mmap_open(path, &m, err);
    if (st) return st;
    st = llmops_hnsw_load_buffer(m.data, m.size, path, out, generation, err);
    llmops_mmap_close(&m);
    return st;
}
