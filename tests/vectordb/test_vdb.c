/*
 * The vector database: collections, every record verb, filters checked against
 * a brute-force evaluator written here (it reads the filter JSON with jansson
 * and the records from C arrays, and matches regexes with POSIX regexec),
 * k-NN checked against exact search, BM25 against the formula, RRF and MMR,
 * persistence (reopen, stale/corrupt index files), compaction, backup and
 * restore, allocation failures, and readers in other processes.
 */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/vectordb.h"
#include "vectordb/filter.h"

/* ---- fixtures -------------------------------------------------------------------------- */

static uint64_t g_rng = 0x1234567887654321ULL;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static double rndf(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static size_t rndn(size_t n) { return (size_t)(rnd() % n); }

static llmops_status open_db(const char *dir, llmops_vdb **db, llmops_error *err) {
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    o.synchronous = 1;
    return llmops_vdb_open(dir, &o, db, err);
}

#define DIM 8
#define MAXREC 600

/* A record as the test knows it: the independent copy the database is checked against. */
typedef struct trec {
    char id[24];
    float emb[DIM];
    char doc[96];
    int has_doc;
    int has_a, has_b, has_c, has_d, m_type; /* m_type: 0 none, 1 str, 2 int, 3 float, 4 bool */
    int64_t a;
    double b;
    const char *c;
    int d;
    int64_t mi;
    double mf;
    const char *ms;
    int mb;
    int alive;
} trec;

static trec g_recs[MAXREC];
static size_t g_nrec;

static const char *k_colors[] = {"red", "green", "blue", "x", "Red"};
static const char *k_words[] = {"alpha", "beta", "gamma", "delta", "omega", "w1", "w2", "xyz", "Apple", "pie", "gama"};

static void make_rec(trec *r, size_t i) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "id%zu", i);
    for (int d = 0; d < DIM; d++) r->emb[d] = (float)(rndf() * 2 - 1);
    r->has_doc = rndn(8) != 0;
    if (r->has_doc) {
        size_t nw = 1 + rndn(5), o = 0;
        for (size_t w = 0; w < nw; w++)
            o += (size_t)snprintf(r->doc + o, sizeof r->doc - o, "%s%s", w ? " " : "", k_words[rndn(11)]);
    }
    r->has_a = rndn(6) != 0;
    r->a = (int64_t)rndn(10) - 2;
    r->has_b = rndn(5) != 0;
    r->b = (double)rndn(20) * 0.5 - 3.0;
    r->has_c = rndn(4) != 0;
    r->c = k_colors[rndn(5)];
    r->has_d = rndn(3) != 0;
    r->d = (int)rndn(2);
    r->m_type = (int)rndn(5);
    r->mi = (int64_t)rndn(4);
    r->mf = (double)rndn(8) * 0.5;
    r->ms = k_colors[rndn(3)];
    r->mb = (int)rndn(2);
    r->alive = 1;
}

/* The record in the API's form; md must hold 5 entries. */
static llmops_vdb_record api_rec(const trec *t, llmops_vdb_meta *md) {
    size_t n = 0;
    if (t->has_a) md[n++] = (llmops_vdb_meta){"a", LLMOPS_VDB_INT_VALUE(t->a)};
    if (t->has_b) md[n++] = (llmops_vdb_meta){"b", LLMOPS_VDB_FLOAT_VALUE(t->b)};
    if (t->has_c) md[n++] = (llmops_vdb_meta){"c", LLMOPS_VDB_STR_VALUE(t->c)};
    if (t->has_d) md[n++] = (llmops_vdb_meta){"d", LLMOPS_VDB_BOOL_VALUE(t->d)};
    switch (t->m_type) {
    case 1: md[n++] = (llmops_vdb_meta){"m", LLMOPS_VDB_STR_VALUE(t->ms)}; break;
    case 2: md[n++] = (llmops_vdb_meta){"m", LLMOPS_VDB_INT_VALUE(t->mi)}; break;
    case 3: md[n++] = (llmops_vdb_meta){"m", LLMOPS_VDB_FLOAT_VALUE(t->mf)}; break;
    case 4: md[n++] = (llmops_vdb_meta){"m", LLMOPS_VDB_BOOL_VALUE(t->mb)}; break;
    default: break;
    }
    return (llmops_vdb_record){t->id, t->emb, t->has_doc ? t->doc : NULL, md, n};
}

/* Fills g_recs with n random records and adds them to c in batches. */
static llmops_status populate(llmops_vdb_collection *c, size_t n, llmops_error *err) {
    g_nrec = n;
    for (size_t i = 0; i < n; i++) make_rec(&g_recs[i], i);
    llmops_vdb_record recs[50];
    llmops_vdb_meta md[50][5];
    for (size_t i = 0; i < n; i += 50) {
        size_t m = n - i < 50 ? n - i : 50;
        for (size_t j = 0; j < m; j++) recs[j] = api_rec(&g_recs[i + j], md[j]);
        llmops_status st = llmops_vdb_add(c, recs, m, err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

static trec *find_rec(const char *id) {
    for (size_t i = 0; i < g_nrec; i++)
        if (g_recs[i].alive && !strcmp(g_recs[i].id, id)) return &g_recs[i];
    return NULL;
}

/* ---- the independent filter evaluator ------------------------------------------------- */

typedef struct tval {
    int type; /* 0 none, 1 str, 2 int, 3 float, 4 bool */
    const char *s;
    double n;
    int b;
} tval;

static tval rec_value(const trec *r, const char *key) {
    tval v = {0};
    if (!strcmp(key, "a") && r->has_a) v = (tval){2, NULL, (double)r->a, 0};
    else if (!strcmp(key, "b") && r->has_b) v = (tval){3, NULL, r->b, 0};
    else if (!strcmp(key, "c") && r->has_c) v = (tval){1, r->c, 0, 0};
    else if (!strcmp(key, "d") && r->has_d) v = (tval){4, NULL, 0, r->d};
    else if (!strcmp(key, "m") && r->m_type == 1) v = (tval){1, r->ms, 0, 0};
    else if (!strcmp(key, "m") && r->m_type == 2) v = (tval){2, NULL, (double)r->mi, 0};
    else if (!strcmp(key, "m") && r->m_type == 3) v = (tval){3, NULL, r->mf, 0};
    else if (!strcmp(key, "m") && r->m_type == 4) v = (tval){4, NULL, 0, r->mb};
    return v;
}

static tval json_value(const json_t *j) {
    if (json_is_string(j)) return (tval){1, json_string_value(j), 0, 0};
    if (json_is_integer(j)) return (tval){2, NULL, (double)json_integer_value(j), 0};
    if (json_is_real(j)) return (tval){3, NULL, json_real_value(j), 0};
    if (json_is_boolean(j)) return (tval){4, NULL, 0, json_is_true(j)};
    return (tval){0};
}

/* -2: incomparable, else the sign of a - b. */
static int tcmp(tval a, tval b) {
    int an = a.type == 2 || a.type == 3, bn = b.type == 2 || b.type == 3;
    if (an && bn) return (a.n > b.n) - (a.n < b.n);
    if (a.type == 1 && b.type == 1) {
        int c = strcmp(a.s, b.s);
        return (c > 0) - (c < 0);
    }
    if (a.type == 4 && b.type == 4) return a.b == b.b ? 0 : 2; /* equal or not: no order */
    return -2;
}

static int eval_where(const json_t *f, const trec *r) {
    if (json_object_size(f) == 0) return 1;
    const char *key = json_object_iter_key(json_object_iter((json_t *)f));
    const json_t *val = json_object_iter_value(json_object_iter((json_t *)f));
    if (!strcmp(key, "$and") || !strcmp(key, "$or")) {
        int is_and = key[1] == 'a';
        for (size_t i = 0; i < json_array_size(val); i++) {
            int m = eval_where(json_array_get(val, i), r);
            if (is_and && !m) return 0;
            if (!is_and && m) return 1;
        }
        return is_and;
    }
    tval rv = rec_value(r, key);
    const char *op = "$eq";
    const json_t *operand = val;
    if (json_is_object(val)) {
        op = json_object_iter_key(json_object_iter((json_t *)val));
        operand = json_object_iter_value(json_object_iter((json_t *)val));
    }
    if (!strcmp(op, "$in") || !strcmp(op, "$nin")) {
        int in = 0;
        for (size_t i = 0; i < json_array_size(operand); i++)
            if (rv.type && tcmp(rv, json_value(json_array_get(operand, i))) == 0) in = 1;
        return op[1] == 'i' ? in : !in;
    }
    int c = rv.type ? tcmp(rv, json_value(operand)) : -3;
    int ordered = c >= -1 && c <= 1 && rv.type != 4;
    if (!strcmp(op, "$eq")) return c == 0;
    if (!strcmp(op, "$ne")) return c != 0;
    if (!strcmp(op, "$gt")) return ordered && (rv.type == 2 || rv.type == 3) && c > 0;
    if (!strcmp(op, "$gte")) return ordered && (rv.type == 2 || rv.type == 3) && c >= 0;
    if (!strcmp(op, "$lt")) return ordered && (rv.type == 2 || rv.type == 3) && c < 0;
    if (!strcmp(op, "$lte")) return ordered && (rv.type == 2 || rv.type == 3) && c <= 0;
    return -1000;
}

static int eval_doc(const json_t *f, const trec *r) {
    if (json_object_size(f) == 0) return 1;
    const char *key = json_object_iter_key(json_object_iter((json_t *)f));
    const json_t *val = json_object_iter_value(json_object_iter((json_t *)f));
    if (!strcmp(key, "$and") || !strcmp(key, "$or")) {
        int is_and = key[1] == 'a';
        for (size_t i = 0; i < json_array_size(val); i++) {
            int m = eval_doc(json_array_get(val, i), r);
            if (is_and && !m) return 0;
            if (!is_and && m) return 1;
        }
        return is_and;
    }
    const char *s = json_string_value(val);
    int m;
    if (!strcmp(key, "$contains") || !strcmp(key, "$not_contains")) {
        m = r->has_doc && strstr(r->doc, s) != NULL;
        return key[1] == 'c' ? m : !m;
    }
    regex_t re;
    if (regcomp(&re, s, REG_EXTENDED | REG_NOSUB)) return -1000;
    m = r->has_doc && regexec(&re, r->doc, 0, NULL, 0) == 0;
    regfree(&re);
    return key[1] == 'r' ? m : !m;
}

/* ---- random filters ------------------------------------------------------------------------ */

static void rand_scalar(char *out, size_t cap, int numeric_only) {
    int t = numeric_only ? 2 + (int)rndn(2) : 1 + (int)rndn(4);
    switch (t) {
    case 1: snprintf(out, cap, "\"%s\"", k_colors[rndn(5)]); break;
    case 2: snprintf(out, cap, "%d", (int)rndn(12) - 3); break;
    case 3: snprintf(out, cap, "%.1f", (double)rndn(24) * 0.5 - 4.0); break;
    default: snprintf(out, cap, "%s", rndn(2) ? "true" : "false"); break;
    }
}

static void rand_where(char *out, size_t cap, int depth) {
    static const char *keys[] = {"a", "b", "c", "d", "m", "zz"};
    static const char *ops[] = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "short"};
    if (depth < 2 && rndn(3) == 0) {
        int n = 2 + (int)rndn(2);
        size_t o = (size_t)snprintf(out, cap, "{\"%s\": [", rndn(2) ? "$and" : "$or");
        for (int i = 0; i < n && o < cap; i++) {
            if (i) o += (size_t)snprintf(out + o, cap - o, ", ");
            rand_where(out + o, cap - o, depth + 1);
            o += strlen(out + o);
        }
        snprintf(out + o, cap - o, "]}");
        return;
    }
    const char *key = keys[rndn(6)];
    const char *op = ops[rndn(9)];
    char v[64];
    if (!strcmp(op, "short")) {
        rand_scalar(v, sizeof v, 0);
        snprintf(out, cap, "{\"%s\": %s}", key, v);
    } else if (!strcmp(op, "$in") || !strcmp(op, "$nin")) {
        char list[256];
        size_t o = 0;
        int n = 1 + (int)rndn(3);
        for (int i = 0; i < n; i++) {
            rand_scalar(v, sizeof v, 0);
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", v);
        }
        snprintf(out, cap, "{\"%s\": {\"%s\": [%s]}}", key, op, list);
    } else {
        int numeric = op[1] == 'g' || op[1] == 'l';
        rand_scalar(v, sizeof v, numeric);
        snprintf(out, cap, "{\"%s\": {\"%s\": %s}}", key, op, v);
    }
}

static void rand_doc(char *out, size_t cap, int depth) {
    static const char *regexes[] = {"^alpha", "a$", "gam+a", "(beta|delta) ", "[xyz]{3}", "w[0-9]", "^A", "p.e"};
    if (depth < 2 && rndn(3) == 0) {
        size_t o = (size_t)snprintf(out, cap, "{\"%s\": [", rndn(2) ? "$and" : "$or");
        rand_doc(out + o, cap - o, depth + 1);
        o += strlen(out + o);
        o += (size_t)snprintf(out + o, cap - o, ", ");
        rand_doc(out + o, cap - o, depth + 1);
        o += strlen(out + o);
        snprintf(out + o, cap - o, "]}");
        return;
    }
    switch (rndn(4)) {
    case 0: snprintf(out, cap, "{\"$contains\": \"%s\"}", k_words[rndn(11)]); break;
    case 1: snprintf(out, cap, "{\"$not_contains\": \"%s\"}", rndn(2) ? "a" : k_words[rndn(11)]); break;
    case 2: snprintf(out, cap, "{\"$regex\": \"%s\"}", regexes[rndn(8)]); break;
    default: snprintf(out, cap, "{\"$not_regex\": \"%s\"}", regexes[rndn(8)]); break;
    }
}

/* The ids (alive records, insertion order) that pass both filters per the brute-force evaluator. */
static size_t brute_match(const char *where, const char *wdoc, size_t *idx) {
    json_t *w = where ? json_loads(where, 0, NULL) : json_object();
    json_t *d = wdoc ? json_loads(wdoc, 0, NULL) : json_object();
    size_t n = 0;
    for (size_t i = 0; i < g_nrec; i++)
        if (g_recs[i].alive && eval_where(w, &g_recs[i]) == 1 && eval_doc(d, &g_recs[i]) == 1) idx[n++] = i;
    json_decref(w);
    json_decref(d);
    return n;
}

static float ref_dist(llmops_vdb_space s, const float *a, const float *b) {
    double ab = 0, aa = 0, bb = 0, l2 = 0;
    for (int i = 0; i < DIM; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    if (s == LLMOPS_VDB_L2) return (float)l2;
    if (s == LLMOPS_VDB_IP) return (float)(1.0 - ab);
    return (float)(1.0 - ab / sqrt(aa * bb));
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ---- collections --------------------------------------------------------------------------- */

TEST(vdb_collection_lifecycle) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 4);
    cfg.space = LLMOPS_VDB_COSINE;
    llmops_vdb_collection *c = NULL, *c2 = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "docs", &cfg, "{\"owner\":  \"ran\"}", 0, &c, &err), err);
    CHECK_ERR(llmops_vdb_create_collection(db, "docs", &cfg, NULL, 0, &c2, &err), LLMOPS_ERR_INVALID_ARG, err,
              "already exists");
    cfg.dim = 9; /* get-or-create returns the existing one: its configuration wins */
    CHECK_OK(llmops_vdb_create_collection(db, "docs", &cfg, NULL, 1, &c2, &err), err);
    CHECK(c2 == c);
    CHECK_OK(llmops_vdb_get_collection(db, "docs", &c2, &err), err);
    CHECK(c2 == c);
    CHECK_ERR(llmops_vdb_get_collection(db, "nope", &c2, &err), LLMOPS_ERR_NOT_FOUND, err, "no collection named 'nope'");

    static const char *bad[] = {"ab", "Abc", "abC", "a..b", "192.168.1.1", "-ab", "ab_", "has space",
                                "x234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(!llmops_vdb_name_valid(bad[i], NULL), "%s accepted", bad[i]);
        CHECK_ERR(llmops_vdb_create_collection(db, bad[i], &cfg, NULL, 0, &c2, &err), LLMOPS_ERR_INVALID_ARG, err,
                  "collection name");
    }
    static const char *good[] = {"abc", "a-b_c.d9", "0ab", "aB-Cd.x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) CHECK_MSG(llmops_vdb_name_valid(good[i], NULL), "%s", good[i]);
    cfg.dim = 0;
    CHECK_ERR(llmops_vdb_create_collection(db, "zero", &cfg, NULL, 0, &c2, &err), LLMOPS_ERR_INVALID_ARG, err, "dimension");
    cfg.dim = 3;
    CHECK_ERR(llmops_vdb_create_collection(db, "meta", &cfg, "[1]", 0, &c2, &err), LLMOPS_ERR_FORMAT, err,
              "expected an object");
    CHECK_OK(llmops_vdb_create_collection(db, "second", &cfg, NULL, 0, &c2, &err), err);

    size_t n = 0;
    CHECK_OK(llmops_vdb_count_collections(db, &n, &err), err);
    CHECK_EQ_INT(n, 2);
    llmops_vdb_collection_info *infos = NULL;
    CHECK_OK(llmops_vdb_list_collections(db, &infos, &n, &err), err);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(infos[0].name, "docs");
    CHECK_EQ_INT(infos[0].config.dim, 4);
    CHECK_EQ_INT(infos[0].config.space, LLMOPS_VDB_COSINE);
    CHECK_EQ_STR(infos[0].metadata_json, "{\"owner\":\"ran\"}"); /* stored compact */
    CHECK_EQ_STR(infos[1].name, "second");
    CHECK(infos[1].metadata_json == NULL);
    llmops_vdb_collection_infos_free(infos, n);

    /* modify: rename, metadata, ef_search; the name must stay unique */
    CHECK_ERR(llmops_vdb_modify_collection(c, "second", NULL, 0, &err), LLMOPS_ERR_INVALID_ARG, err, "already exists");
    CHECK_OK(llmops_vdb_modify_collection(c, "renamed", "{\"v\": 2}", 77, &err), err);
    CHECK_ERR(llmops_vdb_get_collection(db, "docs", &c2, &err), LLMOPS_ERR_NOT_FOUND, err, "docs");
    CHECK_OK(llmops_vdb_get_collection(db, "renamed", &c2, &err), err);
    CHECK(c2 == c);
    llmops_vdb_collection_info *info = NULL;
    CHECK_OK(llmops_vdb_collection_describe(c, &info, &err), err);
    CHECK_EQ_STR(info->name, "renamed");
    CHECK_EQ_STR(info->metadata_json, "{\"v\":2}");
    CHECK_EQ_INT(info->config.ef_search, 77);
    CHECK_EQ_INT(info->config.M, 16);
    llmops_vdb_collection_infos_free(info, 1);
    CHECK_OK(llmops_vdb_modify_collection(c, NULL, "null", 0, &err), err);
    CHECK_OK(llmops_vdb_collection_describe(c, &info, &err), err);
    CHECK(info->metadata_json == NULL);
    CHECK_EQ_INT(info->config.ef_search, 77);
    llmops_vdb_collection_infos_free(info, 1);

    /* the configuration survives a reopen */
    llmops_vdb_close(db);
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "renamed", &c, &err), err);
    CHECK_OK(llmops_vdb_collection_describe(c, &info, &err), err);
    CHECK_EQ_INT(info->config.ef_search, 77);
    CHECK_EQ_INT(info->config.space, LLMOPS_VDB_COSINE);
    llmops_vdb_collection_infos_free(info, 1);

    CHECK_OK(llmops_vdb_delete_collection(db, "renamed", &err), err);
    CHECK_ERR(llmops_vdb_delete_collection(db, "renamed", &err), LLMOPS_ERR_NOT_FOUND, err, "renamed");
    CHECK_OK(llmops_vdb_count_collections(db, &n, &err), err);
    CHECK_EQ_INT(n, 1);
    llmops_vdb_close(db);
}

/* ---- records ---------------------------------------------------------------------------------- */

static const llmops_vdb_hit *hit_by_id(const llmops_vdb_result *r, const char *id) {
    for (size_t i = 0; i < r->n_hits[0]; i++)
        if (!strcmp(r->hits[0][i].id, id)) return &r->hits[0][i];
    return NULL;
}

static const llmops_vdb_meta *meta_by_key(const llmops_vdb_hit *h, const char *key) {
    for (size_t i = 0; i < h->n_metadata; i++)
        if (!strcmp(h->metadata[i].key, key)) return &h->metadata[i];
    return NULL;
}

TEST(vdb_record_verbs) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 3);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "recs", &cfg, NULL, 0, &c, &err), err);
    float e1[3] = {1, 0, 0}, e2[3] = {0, 1, 0}, e3[3] = {0, 0, 1}, e4[3] = {1, 1, 0};
    llmops_vdb_meta m1[] = {{"year", LLMOPS_VDB_INT_VALUE(2020)}, {"tag", LLMOPS_VDB_STR_VALUE("a")},
                            {"score", LLMOPS_VDB_FLOAT_VALUE(0.5)}, {"ok", LLMOPS_VDB_BOOL_VALUE(1)}};
    llmops_vdb_record recs[] = {{"r1", e1, "first doc", m1, 4}, {"r2", e2, NULL, NULL, 0}, {"r3", e3, "third", NULL, 0}};
    CHECK_OK(llmops_vdb_add(c, recs, 3, &err), err);
    size_t n = 0;
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, 3);

    /* add refuses an existing id and writes nothing of the batch */
    llmops_vdb_record again[] = {{"r9", e4, NULL, NULL, 0}, {"r1", e4, NULL, NULL, 0}};
    CHECK_ERR(llmops_vdb_add(c, again, 2, &err), LLMOPS_ERR_INVALID_ARG, err, "id 'r1' already exists");
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, 3);
    llmops_vdb_record dup[] = {{"x1", e4, NULL, NULL, 0}, {"x1", e4, NULL, NULL, 0}};
    CHECK_ERR(llmops_vdb_add(c, dup, 2, &err), LLMOPS_ERR_INVALID_ARG, err, "appears twice");
    llmops_vdb_record noemb = {"x2", NULL, NULL, NULL, 0};
    CHECK_ERR(llmops_vdb_add(c, &noemb, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "no embedding");
    float bad[3] = {0, NAN, 0};
    llmops_vdb_record nan_rec = {"x3", bad, NULL, NULL, 0};
    CHECK_ERR(llmops_vdb_add(c, &nan_rec, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "not finite");
    llmops_vdb_meta nullm = {"k", {.type = LLMOPS_VDB_NULL}};
    llmops_vdb_record null_add = {"x4", e1, NULL, &nullm, 1};
    CHECK_ERR(llmops_vdb_add(c, &null_add, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "null");

    /* get by ids, all fields */
    llmops_vdb_get_opts g;
    llmops_vdb_get_opts_init(&g);
    const char *ids[] = {"r3", "r1", "missing"};
    g.ids = ids;
    g.n_ids = 3;
    g.include = LLMOPS_VDB_INC_EMBEDDINGS | LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS;
    llmops_vdb_result *r = NULL;
    CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 2);
    CHECK_EQ_STR(r->hits[0][0].id, "r1"); /* insertion order */
    CHECK_EQ_STR(r->hits[0][0].document, "first doc");
    CHECK(memcmp(r->hits[0][0].embedding, e1, sizeof e1) == 0);
    CHECK_EQ_INT(r->hits[0][0].n_metadata, 4);
    const llmops_vdb_meta *mm = meta_by_key(&r->hits[0][0], "year");
    CHECK(mm && mm->value.type == LLMOPS_VDB_INT && mm->value.u.i == 2020);
    mm = meta_by_key(&r->hits[0][0], "score");
    CHECK(mm && mm->value.type == LLMOPS_VDB_FLOAT && mm->value.u.f == 0.5);
    mm = meta_by_key(&r->hits[0][0], "ok");
    CHECK(mm && mm->value.type == LLMOPS_VDB_BOOL && mm->value.u.b == 1);
    llmops_buf js;
    llmops_buf_init(&js, 1 << 20);
    CHECK_OK(llmops_vdb_result_to_json(r, &js, &err), err);
    CHECK_EQ_STR(js.data, "{\"ids\": [\"r1\", \"r3\"], \"documents\": [\"first doc\", \"third\"], \"metadatas\": "
                          "[{\"ok\":true,\"score\":0.5,\"tag\":\"a\",\"year\":2020}, null], \"embeddings\": [[1,0,0], [0,0,1]]}");
    llmops_buf_free(&js);
    llmops_vdb_result_free(r);

    /* include: ids only */
    g.include = 0;
    CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
    CHECK(r->hits[0][0].document == NULL && r->hits[0][0].embedding == NULL && r->hits[0][0].n_metadata == 0);
    llmops_vdb_result_free(r);

    /* update: partial; a null metadata value deletes the key */
    llmops_vdb_meta um[] = {{"year", LLMOPS_VDB_INT_VALUE(2021)}, {"tag", {.type = LLMOPS_VDB_NULL}},
                            {"new", LLMOPS_VDB_STR_VALUE("n")}};
    llmops_vdb_record up = {"r1", NULL, NULL, um, 3};
    CHECK_OK(llmops_vdb_update(c, &up, 1, &err), err);
    llmops_vdb_record up_doc = {"r2", e4, "second now", NULL, 0};
    CHECK_OK(llmops_vdb_update(c, &up_doc, 1, &err), err);
    llmops_vdb_record up_missing = {"zz", NULL, "x", NULL, 0};
    CHECK_ERR(llmops_vdb_update(c, &up_missing, 1, &err), LLMOPS_ERR_NOT_FOUND, err, "'zz' does not exist");
    llmops_vdb_get_opts_init(&g);
    g.include = LLMOPS_VDB_INC_EMBEDDINGS | LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS;
    CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 3);
    const llmops_vdb_hit *h = hit_by_id(r, "r1");
    CHECK(h && h->n_metadata == 4);
    CHECK(meta_by_key(h, "tag") == NULL);
    CHECK(meta_by_key(h, "year")->value.u.i == 2021);
    CHECK_EQ_STR(meta_by_key(h, "new")->value.u.s, "n");
    CHECK_EQ_STR(h->document, "first doc"); /* kept */
    CHECK(memcmp(h->embedding, e1, sizeof e1) == 0);
    h = hit_by_id(r, "r2");
    CHECK(h && memcmp(h->embedding, e4, sizeof e4) == 0);
    CHECK_EQ_STR(h->document, "second now");
    llmops_vdb_result_free(r);

    /* upsert: one new, one existing (merged like update) */
    llmops_vdb_meta usm[] = {{"year", LLMOPS_VDB_INT_VALUE(1999)}};
    llmops_vdb_record ups[] = {{"r3", e2, NULL, usm, 1}, {"r4", e3, "fourth", NULL, 0}};
    CHECK_OK(llmops_vdb_upsert(c, ups, 2, &err), err);
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, 4);
    CHECK_OK(llmops_vdb_peek(c, 10, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 4);
    h = hit_by_id(r, "r3");
    CHECK(h && memcmp(h->embedding, e2, sizeof e2) == 0 && meta_by_key(h, "year")->value.u.i == 1999);
    CHECK_EQ_STR(h->document, "third");
    llmops_vdb_result_free(r);

    /* the next query sees every write */
    llmops_vdb_query_opts q;
    llmops_vdb_query_opts_init(&q);
    q.queries = e2;
    q.n_queries = 1;
    q.k = 2;
    CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 2);
    CHECK_EQ_STR(r->hits[0][0].id, "r3");
    CHECK(r->hits[0][0].distance < 1e-6f);
    llmops_vdb_result_free(r);

    /* limit / offset */
    llmops_vdb_get_opts_init(&g);
    g.limit = 2;
    g.offset = 1;
    CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 2);
    CHECK_EQ_STR(r->hits[0][0].id, "r2");
    CHECK_EQ_STR(r->hits[0][1].id, "r3");
    llmops_vdb_result_free(r);

    /* delete by ids, by where, by where_document; nothing given is an error */
    size_t nd = 0;
    CHECK_ERR(llmops_vdb_delete(c, NULL, 0, NULL, NULL, &nd, &err), LLMOPS_ERR_INVALID_ARG, err, "give ids");
    const char *del1[] = {"r4", "nope"};
    CHECK_OK(llmops_vdb_delete(c, del1, 2, NULL, NULL, &nd, &err), err);
    CHECK_EQ_INT(nd, 1);
    CHECK_OK(llmops_vdb_delete(c, NULL, 0, "{\"year\": {\"$lt\": 2000}}", NULL, &nd, &err), err);
    CHECK_EQ_INT(nd, 1); /* r3 */
    CHECK_OK(llmops_vdb_delete(c, NULL, 0, NULL, "{\"$contains\": \"second\"}", &nd, &err), err);
    CHECK_EQ_INT(nd, 1);
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, 1);
    CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 1);
    CHECK_EQ_STR(r->hits[0][0].id, "r1");
    llmops_vdb_result_free(r);
    llmops_vdb_close(db);
}

/* ---- filters ---------------------------------------------------------------------------------- */

TEST(vdb_filter_errors_name_the_path) {
    static const struct {
        const char *json;
        int doc;
        const char *needle;
    } cases[] = {
        {"{\"$and\": [{\"a\": 1}]}", 0, "where.$and: expected a list of at least two"},
        {"{\"a\": {\"$gt\": \"x\"}}", 0, "where.a.$gt: expected a number, got string"},
        {"{\"a\": {\"$foo\": 1}}", 0, "where.a.$foo: unknown operator"},
        {"{\"a\": 1, \"b\": 2}", 0, "where: expected exactly one key"},
        {"{\"$or\": [{\"a\": 1}, {\"b\": {\"$in\": []}}]}", 0, "where.$or[1].b.$in: expected a non-empty list"},
        {"{\"$or\": [{\"a\": 1}, {\"b\": {\"$in\": [1, [2]]}}]}", 0, "where.$or[1].b.$in[1]: expected a string, number or boolean, got array"},
        {"{\"a\": null}", 0, "where.a: expected a string, number or boolean, got null"},
        {"{\"$not\": [{\"a\": 1}]}", 0, "where.$not: unknown operator"},
        {"[1]", 0, "where: expected an object, got array"},
        {"{\"a\": ", 0, "where:1:"},
        {"{\"a\": {\"$eq\": 1, \"$ne\": 2}}", 0, "where.a: expected exactly one operator"},
        {"{\"$regex\": \"(\"}", 1, "where_document.$regex:"},
        {"{\"$contains\": 3}", 1, "where_document.$contains: expected a string, got integer"},
        {"{\"$and\": [{\"$contains\": \"a\"}, {\"$has\": \"b\"}]}", 1, "where_document.$and[1].$has: unknown operator"},
        {"{\"year\": 3}", 1, "where_document.year: unknown operator"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmops_error err = {0};
        llmops_vdb_filter *f = NULL;
        llmops_status st = llmops_vdb_filter_parse(cases[i].json, strlen(cases[i].json), cases[i].doc, &f, &err);
        CHECK_MSG(st != LLMOPS_OK && f == NULL, "%s accepted", cases[i].json);
        CHECK_MSG(strstr(err.msg, cases[i].needle), "%s: message \"%s\" lacks \"%s\"", cases[i].json, err.msg,
                  cases[i].needle);
    }
    /* caps: depth */
    char deep[4096];
    size_t o = 0;
    for (int i = 0; i < 40; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "{\"$and\": [{\"a\": 1}, ");
    o += (size_t)snprintf(deep + o, sizeof deep - o, "{\"a\": 1}");
    for (int i = 0; i < 40; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "]}");
    llmops_error err = {0};
    llmops_vdb_filter *f = NULL;
    CHECK_ERR(llmops_vdb_filter_parse(deep, o, 0, &f, &err), LLMOPS_ERR_LIMIT, err, "nested too deeply");
    /* {} is no filter */
    CHECK_OK(llmops_vdb_filter_parse("{}", 2, 0, &f, &err), err);
    CHECK(f->root == NULL);
    llmops_vdb_filter_free(f);
}

/* Every operator and combination, on random data, against the brute-force evaluator. */
TEST(vdb_filters_match_bruteforce) {
    llmops_error err = {0};
    llmops_vdb *db = NULL, *db_hnsw = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, DIM);
    llmops_vdb_collection *c = NULL, *ch = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "filters", &cfg, NULL, 0, &c, &err), err);
    g_rng = 42;
    CHECK_OK(populate(c, 500, &err), err);
    /* a second handle that always walks HNSW with the filter, never the exact path */
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    o.exact_threshold = 0;
    CHECK_OK(llmops_vdb_open(test_tmpfile("db"), &o, &db_hnsw, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db_hnsw, "filters", &ch, &err), err);

    static size_t idx[MAXREC];
    char where[2048], wdoc[1024];
    size_t total_matches = 0, hnsw_hits = 0, hnsw_want = 0, nonempty = 0;
    for (int t = 0; t < 400; t++) {
        int kind = t % 3; /* where only, where_document only, both */
        rand_where(where, sizeof where, 0);
        rand_doc(wdoc, sizeof wdoc, 0);
        const char *w = kind != 1 ? where : NULL, *d = kind != 0 ? wdoc : NULL;
        size_t nm = brute_match(w, d, idx);
        total_matches += nm;
        nonempty += nm > 0;
        llmops_vdb_get_opts g;
        llmops_vdb_get_opts_init(&g);
        g.where = w;
        g.where_document = d;
        g.include = 0;
        llmops_vdb_result *r = NULL;
        CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
        CHECK_MSG(r->n_hits[0] == nm, "where %s / doc %s: %zu records, brute force %zu", w ? w : "-", d ? d : "-",
                  r->n_hits[0], nm);
        for (size_t i = 0; i < nm; i++)
            CHECK_MSG(!strcmp(r->hits[0][i].id, g_recs[idx[i]].id), "where %s / doc %s: #%zu is %s, expected %s",
                      w ? w : "-", d ? d : "-", i, r->hits[0][i].id, g_recs[idx[i]].id);
        llmops_vdb_result_free(r);

        /* filtered k-NN: min(k, matches) results, all matching, equal to exact search */
        float qv[DIM];
        for (int k = 0; k < DIM; k++) qv[k] = (float)(rndf() * 2 - 1);
        llmops_vdb_query_opts q;
        llmops_vdb_query_opts_init(&q);
        q.queries = qv;
        q.n_queries = 1;
        q.k = 7;
        q.where = w;
        q.where_document = d;
        CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
        size_t want = nm < 7 ? nm : 7;
        CHECK_MSG(r->n_hits[0] == want, "query %s / %s: %zu hits, want %zu", w ? w : "-", d ? d : "-", r->n_hits[0], want);
        float ref[MAXREC];
        for (size_t i = 0; i < nm; i++) ref[i] = ref_dist(LLMOPS_VDB_L2, qv, g_recs[idx[i]].emb);
        qsort(ref, nm, sizeof *ref, cmp_float);
        for (size_t i = 0; i < want; i++) {
            const trec *tr = find_rec(r->hits[0][i].id);
            CHECK(tr != NULL);
            int in = 0;
            for (size_t j = 0; j < nm; j++) in |= &g_recs[idx[j]] == tr;
            CHECK_MSG(in, "query returned %s which does not match", tr->id);
            CHECK_MSG(fabsf(r->hits[0][i].distance - ref[i]) < 1e-4f, "rank %zu: %g vs exact %g", i,
                      (double)r->hits[0][i].distance, (double)ref[i]);
        }
        llmops_vdb_result_free(r);
        CHECK_OK(llmops_vdb_query(ch, &q, &r, &err), err);
        CHECK_MSG(r->n_hits[0] == want, "hnsw query %s / %s: %zu hits, want %zu", w ? w : "-", d ? d : "-", r->n_hits[0],
                  want);
        for (size_t i = 0; i < want; i++) {
            const trec *tr = find_rec(r->hits[0][i].id);
            int in = 0;
            for (size_t j = 0; j < nm; j++) in |= &g_recs[idx[j]] == tr;
            CHECK_MSG(in, "hnsw query returned %s which does not match", tr ? tr->id : "?");
            for (size_t j = 0; j < want; j++)
                if (fabsf(r->hits[0][i].distance - ref[j]) < 1e-4f) {
                    hnsw_hits++;
                    break;
                }
        }
        hnsw_want += want;
        llmops_vdb_result_free(r);
    }
    CHECK_MSG(nonempty > 200 && total_matches > 20000, "the random filters are too selective (%zu non-empty, %zu matches)",
              nonempty, total_matches);
    CHECK_MSG((double)hnsw_hits >= 0.95 * (double)hnsw_want, "filtered HNSW recall %zu / %zu", hnsw_hits, hnsw_want);

    /* delete by filter removes exactly the brute-force set */
    const char *dw = "{\"$or\": [{\"a\": {\"$in\": [1, 2]}}, {\"c\": \"red\"}]}";
    size_t nm = brute_match(dw, NULL, idx), nd = 0;
    CHECK_OK(llmops_vdb_delete(c, NULL, 0, dw, NULL, &nd, &err), err);
    CHECK_EQ_INT(nd, nm);
    for (size_t i = 0; i < nm; i++) g_recs[idx[i]].alive = 0;
    size_t n = 0;
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, 500 - nm);
    CHECK_OK(llmops_vdb_count(ch, &n, &err), err);
    CHECK_EQ_INT(n, 500 - nm);
    llmops_vdb_close(db_hnsw);
    llmops_vdb_close(db);
}

/* ---- vector search --------------------------------------------------------------------------- */

TEST(vdb_query_spaces_against_exact) {
    static const llmops_vdb_space spaces[] = {LLMOPS_VDB_L2, LLMOPS_VDB_COSINE, LLMOPS_VDB_IP};
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    for (int s = 0; s < 3; s++) {
        llmops_vdb_collection_config cfg;
        llmops_vdb_collection_config_init(&cfg, DIM);
        cfg.space = spaces[s];
        llmops_vdb_collection *c = NULL;
        char name[32];
        snprintf(name, sizeof name, "space%d", s);
        CHECK_OK(llmops_vdb_create_collection(db, name, &cfg, NULL, 0, &c, &err), err);
        g_rng = 7 + (uint64_t)s;
        CHECK_OK(populate(c, 400, &err), err);
        float qs[5 * DIM];
        for (int i = 0; i < 5 * DIM; i++) qs[i] = (float)(rndf() * 2 - 1);
        llmops_vdb_query_opts q;
        llmops_vdb_query_opts_init(&q);
        q.queries = qs;
        q.n_queries = 5;
        q.k = 10;
        q.include = LLMOPS_VDB_INC_DISTANCES;
        llmops_vdb_result *r = NULL;
        CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
        CHECK_EQ_INT(r->n_lists, 5);
        size_t hits = 0;
        for (int qi = 0; qi < 5; qi++) {
            float ref[MAXREC];
            for (size_t i = 0; i < g_nrec; i++) ref[i] = ref_dist(spaces[s], qs + qi * DIM, g_recs[i].emb);
            qsort(ref, g_nrec, sizeof *ref, cmp_float);
            CHECK_EQ_INT(r->n_hits[qi], 10);
            for (size_t i = 0; i < 10; i++) {
                const trec *tr = find_rec(r->hits[qi][i].id);
                CHECK(tr != NULL);
                /* the reported distance is the space's distance to that record */
                CHECK_MSG(fabsf(r->hits[qi][i].distance - ref_dist(spaces[s], qs + qi * DIM, tr->emb)) < 1e-4f,
                          "space %d: distance %g", s, (double)r->hits[qi][i].distance);
                if (i) CHECK(r->hits[qi][i].distance >= r->hits[qi][i - 1].distance);
                hits += r->hits[qi][i].distance <= ref[9] + 1e-5f;
            }
        }
        CHECK_MSG(hits >= 49, "space %d: recall %zu / 50", s, hits);
        llmops_vdb_result_free(r);
        /* ef_search per query and per collection */
        q.ef_search = 200;
        CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
        llmops_vdb_result_free(r);
    }
    llmops_vdb_close(db);
}

static int results_equal(const llmops_vdb_result *a, const llmops_vdb_result *b) {
    if (a->n_lists != b->n_lists) return 0;
    for (size_t l = 0; l < a->n_lists; l++) {
        if (a->n_hits[l] != b->n_hits[l]) return 0;
        for (size_t i = 0; i < a->n_hits[l]; i++) {
            const llmops_vdb_hit *x = &a->hits[l][i], *y = &b->hits[l][i];
            if (strcmp(x->id, y->id)) return 0;
            if (memcmp(&x->distance, &y->distance, sizeof x->distance)) return 0;
            if ((x->document == NULL) != (y->document == NULL) || (x->document && strcmp(x->document, y->document))) return 0;
            if (x->n_metadata != y->n_metadata) return 0;
            for (size_t k = 0; k < x->n_metadata; k++)
                if (strcmp(x->metadata[k].key, y->metadata[k].key) || x->metadata[k].value.type != y->metadata[k].value.type)
                    return 0;
            if ((x->embedding == NULL) != (y->embedding == NULL) ||
                (x->embedding && memcmp(x->embedding, y->embedding, a->dim * sizeof(float))))
                return 0;
        }
    }
    return 1;
}

static llmops_status query_all(llmops_vdb_collection *c, const float *qs, size_t nq, const char *where,
                               llmops_vdb_result **r, llmops_error *err) {
    llmops_vdb_query_opts q;
    llmops_vdb_query_opts_init(&q);
    q.queries = qs;
    q.n_queries = nq;
    q.k = 12;
    q.where = where;
    q.include = LLMOPS_VDB_INC_DISTANCES | LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS | LLMOPS_VDB_INC_EMBEDDINGS;
    return llmops_vdb_query(c, &q, r, err);
}

TEST(vdb_reopen_identical_and_index_repair) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    const char *dir = test_tmpfile("db");
    CHECK_OK(open_db(dir, &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, DIM);
    cfg.space = LLMOPS_VDB_COSINE;
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "persist", &cfg, NULL, 0, &c, &err), err);
    g_rng = 99;
    CHECK_OK(populate(c, 300, &err), err);
    const char *del[] = {"id5", "id7", "id100"};
    CHECK_OK(llmops_vdb_delete(c, del, 3, NULL, NULL, NULL, &err), err);
    float qs[4 * DIM];
    for (int i = 0; i < 4 * DIM; i++) qs[i] = (float)(rndf() * 2 - 1);
    llmops_vdb_result *before = NULL, *after = NULL, *filt_before = NULL, *filt_after = NULL;
    CHECK_OK(query_all(c, qs, 4, NULL, &before, &err), err);
    CHECK_OK(query_all(c, qs, 4, "{\"a\": {\"$gte\": 3}}", &filt_before, &err), err);
    llmops_vdb_close(db);

    /* reopen: the saved index answers identically */
    CHECK_OK(open_db(dir, &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "persist", &c, &err), err);
    CHECK_OK(query_all(c, qs, 4, NULL, &after, &err), err);
    CHECK(results_equal(before, after));
    CHECK_OK(query_all(c, qs, 4, "{\"a\": {\"$gte\": 3}}", &filt_after, &err), err);
    CHECK(results_equal(filt_before, filt_after));
    llmops_vdb_result_free(after);
    llmops_vdb_close(db);

    /* a corrupt index file is rebuilt from SQLite */
    char idxdir[4200];
    snprintf(idxdir, sizeof idxdir, "%s/index", dir);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "for f in '%s'/*.hnsw; do printf 'garbage' | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null; done",
             idxdir);
    CHECK(system(cmd) == 0);
    CHECK_OK(open_db(dir, &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "persist", &c, &err), err);
    CHECK_OK(query_all(c, qs, 4, NULL, &after, &err), err);
    size_t same = 0, total = 0; /* a rebuilt graph: compare as sets of distances */
    for (size_t l = 0; l < 4; l++)
        for (size_t i = 0; i < after->n_hits[l]; i++, total++)
            same += fabsf(after->hits[l][i].distance - before->hits[l][i].distance) < 1e-5f;
    CHECK_MSG(same >= total - 1, "rebuilt index: %zu of %zu distances agree", same, total);
    llmops_vdb_result_free(after);
    llmops_vdb_close(db);

    /* a stale index file (older generation) is not trusted */
    snprintf(cmd, sizeof cmd, "cp '%s'/*.hnsw '%s/old.bak'", idxdir, dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(open_db(dir, &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "persist", &c, &err), err);
    const char *del2[] = {"id1", "id2", "id3", "id4"};
    CHECK_OK(llmops_vdb_delete(c, del2, 4, NULL, NULL, NULL, &err), err);
    llmops_vdb_close(db);
    snprintf(cmd, sizeof cmd, "cp '%s/old.bak' '%s'/$(ls '%s' | head -1)", dir, idxdir, idxdir);
    CHECK(system(cmd) == 0);
    CHECK_OK(open_db(dir, &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "persist", &c, &err), err);
    llmops_vdb_get_opts g;
    llmops_vdb_get_opts_init(&g);
    g.include = LLMOPS_VDB_INC_EMBEDDINGS;
    const char *gone[] = {"id1"};
    g.ids = gone;
    g.n_ids = 1;
    CHECK_OK(llmops_vdb_get(c, &g, &after, &err), err);
    CHECK_EQ_INT(after->n_hits[0], 0);
    llmops_vdb_result_free(after);
    /* the deleted vectors are never returned, even queried by their own embedding */
    for (int i = 1; i <= 4; i++) {
        trec *tr = &g_recs[i];
        CHECK_OK(query_all(c, tr->emb, 1, NULL, &after, &err), err);
        for (size_t k = 0; k < after->n_hits[0]; k++) CHECK(strcmp(after->hits[0][k].id, tr->id) != 0);
        llmops_vdb_result_free(after);
    }
    llmops_vdb_close(db);
    llmops_vdb_result_free(before);
    llmops_vdb_result_free(filt_before);
    llmops_vdb_result_free(filt_after);
}

/* ---- keyword, hybrid, MMR --------------------------------------------------------------------- */

/* FTS5's BM25 (k1 = 1.2, b = 0.75) over lower-cased ASCII words, written out here. */
static double bm25_ref(const char *const *docs, size_t n, size_t d, const char *const *terms, size_t nt) {
    double total = 0;
    size_t len[64];
    for (size_t i = 0; i < n; i++) {
        len[i] = 0;
        for (const char *p = docs[i]; *p;) {
            while (*p == ' ') p++;
            if (!*p) break;
            len[i]++;
            while (*p && *p != ' ') p++;
        }
        total += (double)len[i];
    }
    double avg = total / (double)n, score = 0;
    for (size_t t = 0; t < nt; t++) {
        size_t nhit = 0, tf = 0;
        for (size_t i = 0; i < n; i++) {
            size_t c = 0;
            for (const char *p = docs[i]; *p;) {
                while (*p == ' ') p++;
                const char *b = p;
                while (*p && *p != ' ') p++;
                if ((size_t)(p - b) == strlen(terms[t]) && !strncasecmp(b, terms[t], (size_t)(p - b))) c++;
            }
            nhit += c > 0;
            if (i == d) tf = c;
        }
        double idf = log(((double)n - (double)nhit + 0.5) / ((double)nhit + 0.5));
        if (idf <= 0) idf = 1e-6;
        score += idf * ((double)tf * 2.2) / ((double)tf + 1.2 * (0.25 + 0.75 * (double)len[d] / avg));
    }
    return score;
}

TEST(vdb_keyword_hybrid_mmr) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 4);
    cfg.space = LLMOPS_VDB_COSINE;
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "text", &cfg, NULL, 0, &c, &err), err);
    static const char *docs[] = {
        "the ran intelligent controller hosts xapps",
        "xapps and rapps run on the ric",
        "the near real time ric controls the ran",
        "cats sleep all day",
        "ric ric ric ric",
        "an oran rapp uses the non real time ric",
        "model training pipelines",
        "dogs chase cats",
    };
    enum { ND = 8 };
    float embs[ND][4];
    llmops_vdb_record recs[ND];
    char ids[ND][16];
    llmops_vdb_meta md[ND][1];
    for (int i = 0; i < ND; i++) {
        for (int k = 0; k < 4; k++) embs[i][k] = (float)((i * 7 + k * 3) % 5) - 2.0f + 0.1f * (float)k;
        snprintf(ids[i], sizeof ids[i], "d%d", i);
        md[i][0] = (llmops_vdb_meta){"n", LLMOPS_VDB_INT_VALUE(i)};
        recs[i] = (llmops_vdb_record){ids[i], embs[i], docs[i], md[i], 1};
    }
    CHECK_OK(llmops_vdb_add(c, recs, ND, &err), err);

    /* BM25 scores and order match the formula */
    llmops_vdb_search_opts s;
    llmops_vdb_search_opts_init(&s);
    s.text = "RIC, ran!";
    s.k = 10;
    llmops_vdb_result *r = NULL;
    CHECK_OK(llmops_vdb_search(c, &s, &r, &err), err);
    const char *terms[] = {"ric", "ran"};
    size_t expect_hits = 0;
    for (int i = 0; i < ND; i++) expect_hits += bm25_ref(docs, ND, (size_t)i, terms, 2) > 0;
    CHECK_EQ_INT(r->n_hits[0], expect_hits);
    for (size_t i = 0; i < r->n_hits[0]; i++) {
        int d = atoi(r->hits[0][i].id + 1);
        double ref = bm25_ref(docs, ND, (size_t)d, terms, 2);
        CHECK_MSG(fabs(r->hits[0][i].score - ref) < 1e-6 * (1 + ref), "%s: bm25 %.9f, formula %.9f", r->hits[0][i].id,
                  r->hits[0][i].score, ref);
        if (i) CHECK(r->hits[0][i].score <= r->hits[0][i - 1].score);
        CHECK(isnan(r->hits[0][i].distance));
    }
    /* "ric" is in half the documents: its idf is (clamped) zero, so "ran" decides */
    CHECK_EQ_STR(r->hits[0][0].id, "d0");
    llmops_vdb_result_free(r);
    /* with a filter */
    s.where = "{\"n\": {\"$gte\": 2}}";
    CHECK_OK(llmops_vdb_search(c, &s, &r, &err), err);
    for (size_t i = 0; i < r->n_hits[0]; i++) CHECK(atoi(r->hits[0][i].id + 1) >= 2);
    llmops_vdb_result_free(r);
    s.where = NULL;
    s.text = "!!!"; /* no words: no results */
    CHECK_OK(llmops_vdb_search(c, &s, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 0);
    llmops_vdb_result_free(r);

    /* hybrid: RRF of the two rankings, recomputed here from the separate rankings */
    float qv[4] = {1, 0.5f, -1, 0.2f};
    llmops_vdb_search_opts kw, vec, hy;
    llmops_vdb_search_opts_init(&kw);
    kw.text = "ric cats";
    kw.k = 50;
    llmops_vdb_search_opts_init(&vec);
    vec.vector = qv;
    vec.k = 50;
    llmops_vdb_search_opts_init(&hy);
    hy.text = kw.text;
    hy.vector = qv;
    hy.k = 5;
    hy.vector_weight = 0.7;
    hy.text_weight = 1.3;
    hy.rrf_k = 10;
    llmops_vdb_result *rk = NULL, *rv = NULL;
    CHECK_OK(llmops_vdb_search(c, &kw, &rk, &err), err);
    CHECK_OK(llmops_vdb_search(c, &vec, &rv, &err), err);
    CHECK_EQ_INT(rv->n_hits[0], ND);
    CHECK_OK(llmops_vdb_search(c, &hy, &r, &err), err);
    double fusedsc[ND] = {0};
    for (size_t i = 0; i < rk->n_hits[0]; i++) fusedsc[atoi(rk->hits[0][i].id + 1)] += 1.3 / (10.0 + (double)(i + 1));
    for (size_t i = 0; i < rv->n_hits[0]; i++) fusedsc[atoi(rv->hits[0][i].id + 1)] += 0.7 / (10.0 + (double)(i + 1));
    CHECK_EQ_INT(r->n_hits[0], 5);
    for (size_t i = 0; i < 5; i++) {
        int d = atoi(r->hits[0][i].id + 1);
        CHECK_MSG(fabs(r->hits[0][i].score - fusedsc[d]) < 1e-12, "%s: fused %.9f, expected %.9f", r->hits[0][i].id,
                  r->hits[0][i].score, fusedsc[d]);
        int better = 0; /* nothing left out scores higher */
        for (int j = 0; j < ND; j++) better += fusedsc[j] > fusedsc[d] + 1e-15;
        CHECK_MSG(better <= (int)i, "%s at rank %zu but %d score higher", r->hits[0][i].id, i, better);
        CHECK(!isnan(r->hits[0][i].distance));
    }
    llmops_vdb_result_free(r);
    llmops_vdb_result_free(rk);
    llmops_vdb_result_free(rv);

    /* MMR: two copies of the best match and a distinct runner-up */
    llmops_vdb_collection *m = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "mmr", &cfg, NULL, 0, &m, &err), err);
    float a[4] = {1, 0, 0, 0}, a2[4] = {1, 0.001f, 0, 0}, b[4] = {0.7f, 0.7f, 0, 0}, z[4] = {-1, 0, 0, 0};
    llmops_vdb_record mr[] = {{"a", a, NULL, NULL, 0}, {"a2", a2, NULL, NULL, 0}, {"b", b, NULL, NULL, 0}, {"z", z, NULL, NULL, 0}};
    CHECK_OK(llmops_vdb_add(m, mr, 4, &err), err);
    float q[4] = {1, 0.1f, 0, 0};
    llmops_vdb_search_opts_init(&s);
    s.vector = q;
    s.k = 2;
    CHECK_OK(llmops_vdb_search(m, &s, &r, &err), err);
    CHECK(!strcmp(r->hits[0][1].id, "a") || !strcmp(r->hits[0][1].id, "a2")); /* plain: both copies */
    llmops_vdb_result_free(r);
    s.mmr = 1;
    s.mmr_lambda = 0.5;
    CHECK_OK(llmops_vdb_search(m, &s, &r, &err), err);
    CHECK_EQ_INT(r->n_hits[0], 2);
    CHECK_EQ_STR(r->hits[0][1].id, "b"); /* diversified */
    llmops_vdb_result_free(r);
    llmops_vdb_close(db);
}

/* ---- compaction, backup, restore ---------------------------------------------------------------- */

static long long dir_bytes(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "du -sb --apparent-size '%s' | cut -f1", dir);
    FILE *p = popen(cmd, "r");
    long long n = -1;
    if (p) {
        if (fscanf(p, "%lld", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

TEST(vdb_compaction_shrinks_files) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    const char *dir = test_tmpfile("db");
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    o.synchronous = 1;
    o.auto_compact_ratio = 0; /* by hand here */
    CHECK_OK(llmops_vdb_open(dir, &o, &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 64);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "big", &cfg, NULL, 0, &c, &err), err);
    enum { N = 3000 };
    float *embs = malloc(sizeof(float) * 64 * N);
    char(*ids)[16] = malloc(16 * N);
    char(*docs)[128] = malloc(128 * N);
    llmops_vdb_record *recs = malloc(sizeof *recs * N);
    CHECK(embs && ids && docs && recs);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 64; k++) embs[i * 64 + k] = (float)(rndf() - 0.5);
        snprintf(ids[i], 16, "r%d", i);
        snprintf(docs[i], 128, "document number %d about %s and %s with some padding text", i, k_words[i % 11],
                 k_words[(i * 3) % 11]);
        recs[i] = (llmops_vdb_record){ids[i], embs + i * 64, docs[i], NULL, 0};
    }
    CHECK_OK(llmops_vdb_add(c, recs, N, &err), err);
    CHECK_OK(llmops_vdb_compact(db, NULL, &err), err); /* a clean baseline: index saved, WAL folded in */
    long long full = dir_bytes(dir);
    const char **del = malloc(sizeof *del * N / 2);
    for (int i = 0; i < N / 2; i++) del[i] = ids[2 * i];
    size_t nd = 0;
    CHECK_OK(llmops_vdb_delete(c, del, N / 2, NULL, NULL, &nd, &err), err);
    CHECK_EQ_INT(nd, N / 2);
    CHECK_OK(llmops_vdb_flush(db, &err), err);
    long long deleted = dir_bytes(dir);
    CHECK_OK(llmops_vdb_compact(db, c, &err), err);
    long long compacted = dir_bytes(dir);
    CHECK_MSG(compacted < full * 0.7, "full %lld, after deletes %lld, compacted %lld bytes", full, deleted, compacted);
    CHECK(compacted < deleted);
    /* still right afterwards */
    size_t n = 0;
    CHECK_OK(llmops_vdb_count(c, &n, &err), err);
    CHECK_EQ_INT(n, N / 2);
    llmops_vdb_query_opts q;
    llmops_vdb_query_opts_init(&q);
    q.queries = embs + 64; /* r1 survives */
    q.n_queries = 1;
    q.k = 3;
    llmops_vdb_result *r = NULL;
    CHECK_OK(llmops_vdb_query(c, &q, &r, &err), err);
    CHECK_EQ_STR(r->hits[0][0].id, "r1");
    llmops_vdb_result_free(r);
    llmops_vdb_search_opts s;
    llmops_vdb_search_opts_init(&s);
    s.text = "number 2"; /* even numbers are gone; words survive in odd ones */
    s.k = 100;
    CHECK_OK(llmops_vdb_search(c, &s, &r, &err), err);
    for (size_t i = 0; i < r->n_hits[0]; i++) CHECK(atoi(r->hits[0][i].id + 1) % 2 == 1);
    llmops_vdb_result_free(r);
    llmops_vdb_close(db);

    /* automatic compaction past the garbage ratio */
    o.auto_compact_ratio = 0.3;
    o.auto_compact_min = 10;
    CHECK_OK(llmops_vdb_open(dir, &o, &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "big", &c, &err), err);
    for (int i = 0; i < N / 2; i++) del[i] = ids[2 * i + 1];
    CHECK_OK(llmops_vdb_delete(c, del, 200, NULL, NULL, &nd, &err), err); /* 200 / 1500: below */
    sqlite3 *raw = NULL;
    char file[4200];
    snprintf(file, sizeof file, "%s/vdb.sqlite3", dir);
    CHECK(sqlite3_open(file, &raw) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(raw, "SELECT garbage FROM collections", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int64(st, 0), 200);
    sqlite3_reset(st);
    CHECK_OK(llmops_vdb_delete(c, del + 200, 400, NULL, NULL, &nd, &err), err); /* 600 / 1500: compacts */
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int64(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(raw);
    llmops_vdb_close(db);
    free(embs);
    free(ids);
    free(docs);
    free(recs);
    free(del);
}

static llmops_status snapshot(llmops_vdb_collection *c, llmops_vdb_result **r, llmops_error *err) {
    llmops_vdb_get_opts g;
    llmops_vdb_get_opts_init(&g);
    g.include = LLMOPS_VDB_INC_EMBEDDINGS | LLMOPS_VDB_INC_DOCUMENTS | LLMOPS_VDB_INC_METADATAS;
    return llmops_vdb_get(c, &g, r, err);
}

TEST(vdb_backup_restore_identical) {
    llmops_error err = {0};
    llmops_vdb *db = NULL, *other = NULL;
    const char *dir = test_tmpfile("db");
    CHECK_OK(open_db(dir, &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, DIM);
    llmops_vdb_collection *c = NULL, *oc = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "bak", &cfg, "{\"k\": 1}", 0, &c, &err), err);
    g_rng = 5;
    CHECK_OK(populate(c, 200, &err), err);
    float qs[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++) qs[i] = (float)(rndf() - 0.5);
    llmops_vdb_result *orig = NULL, *origq = NULL, *now = NULL;
    CHECK_OK(snapshot(c, &orig, &err), err);
    CHECK_OK(query_all(c, qs, 3, NULL, &origq, &err), err);
    CHECK_OK(llmops_vdb_backup(db, test_tmpfile("bk.sqlite3"), 1, &err), err);
    CHECK_OK(llmops_vdb_backup(db, test_tmpfile("bkdir"), 0, &err), err);
    CHECK_ERR(llmops_vdb_backup(db, test_tmpfile("bk.sqlite3"), 1, &err), LLMOPS_ERR_INVALID_ARG, err, "already exists");

    /* a directory backup is a database of its own */
    CHECK_OK(open_db(test_tmpfile("bkdir"), &other, &err), err);
    CHECK_OK(llmops_vdb_get_collection(other, "bak", &oc, &err), err);
    CHECK_OK(snapshot(oc, &now, &err), err);
    CHECK(results_equal(orig, now));
    llmops_vdb_result_free(now);
    CHECK_OK(query_all(oc, qs, 3, NULL, &now, &err), err);
    CHECK(results_equal(origq, now));
    llmops_vdb_result_free(now);
    llmops_vdb_close(other);

    /* change everything, keep a second handle open on the live database */
    CHECK_OK(open_db(dir, &other, &err), err);
    CHECK_OK(llmops_vdb_get_collection(other, "bak", &oc, &err), err);
    CHECK_OK(query_all(oc, qs, 3, NULL, &now, &err), err); /* its index is now in memory */
    llmops_vdb_result_free(now);
    const char *del[] = {"id0", "id1", "id2", "id50"};
    CHECK_OK(llmops_vdb_delete(c, del, 4, NULL, NULL, NULL, &err), err);
    float e[DIM] = {0};
    llmops_vdb_record extra = {"extra", e, "new", NULL, 0};
    CHECK_OK(llmops_vdb_add(c, &extra, 1, &err), err);
    llmops_vdb_collection *c2 = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "later", &cfg, NULL, 0, &c2, &err), err);
    llmops_vdb_close(db);

    CHECK_OK(llmops_vdb_restore(test_tmpfile("bk.sqlite3"), dir, &err), err);
    /* the handle that stayed open sees the restored content */
    CHECK_OK(snapshot(oc, &now, &err), err);
    CHECK(results_equal(orig, now));
    llmops_vdb_result_free(now);
    CHECK_OK(query_all(oc, qs, 3, NULL, &now, &err), err);
    CHECK(results_equal(origq, now));
    llmops_vdb_result_free(now);
    llmops_vdb_close(other);
    CHECK_OK(open_db(dir, &db, &err), err);
    size_t n = 0;
    CHECK_OK(llmops_vdb_count_collections(db, &n, &err), err);
    CHECK_EQ_INT(n, 1);
    CHECK_OK(llmops_vdb_get_collection(db, "bak", &c, &err), err);
    CHECK_OK(snapshot(c, &now, &err), err);
    CHECK(results_equal(orig, now));
    llmops_vdb_result_free(now);
    llmops_vdb_close(db);
    /* restore from the directory form too, into a fresh place */
    CHECK_OK(llmops_vdb_restore(test_tmpfile("bkdir"), test_tmpfile("fresh"), &err), err);
    CHECK_OK(open_db(test_tmpfile("fresh"), &db, &err), err);
    CHECK_OK(llmops_vdb_get_collection(db, "bak", &c, &err), err);
    CHECK_OK(query_all(c, qs, 3, NULL, &now, &err), err);
    CHECK(results_equal(origq, now));
    llmops_vdb_result_free(now);
    llmops_vdb_close(db);
    CHECK_ERR(llmops_vdb_restore(test_tmpfile("nothing"), dir, &err), LLMOPS_ERR_NOT_FOUND, err, "no such backup");
    FILE *f = fopen(test_tmpfile("junk"), "w");
    fputs("not a database at all, not even close..................................................................", f);
    fclose(f);
    CHECK_ERR(llmops_vdb_restore(test_tmpfile("junk"), dir, &err), LLMOPS_ERR_FORMAT, err, "not a sound");
    llmops_vdb_result_free(orig);
    llmops_vdb_result_free(origq);
}

/* ---- allocation failures ------------------------------------------------------------------------ */

TEST(vdb_allocation_failures_clean_up) {
    /* the filter parser and translator */
    static const char *filters[] = {"{\"$or\": [{\"a\": {\"$in\": [1, \"x\", 2.5, true]}}, {\"$and\": [{\"b\": {\"$gt\": 1}}, "
                                    "{\"c\": {\"$nin\": [\"red\"]}}]}]}"};
    for (long n = 0;; n++) {
        long live = llmops_alloc_live();
        llmops_error err = {0};
        llmops_vdb_filter *f = NULL;
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_vdb_filter_parse(filters[0], strlen(filters[0]), 0, &f, &err);
        if (!st) {
            llmops_buf sql;
            llmops_buf_init(&sql, 1 << 20);
            llmops_vdb_sql_params p = {0};
            st = llmops_vdb_filter_sql(f, &sql, &p, 5, &err);
            llmops_buf_free(&sql);
            llmops_vdb_sql_params_free(&p);
            llmops_vdb_filter_free(f);
        }
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_EQ_INT(llmops_alloc_live(), live);
        if (!fired) {
            CHECK_OK(st, err);
            break;
        }
        CHECK_MSG(st != LLMOPS_OK && err.msg[0], "failure %ld not reported", n);
    }
    /* get and query over a database */
    long live0 = llmops_alloc_live();
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, DIM);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "oom", &cfg, NULL, 0, &c, &err), err);
    g_rng = 3;
    CHECK_OK(populate(c, 60, &err), err);
    float qv[DIM] = {0.1f, 0.2f, 0.3f};
    llmops_vdb_result *ref = NULL, *r = NULL;
    CHECK_OK(query_all(c, qv, 1, "{\"a\": {\"$gte\": 2}}", &ref, &err), err); /* builds the index */
    for (int verb = 0; verb < 3; verb++) {
        for (long n = -1;; n++) { /* n = -1: one clean run sizes the index's scratch pool */
            long live = llmops_alloc_live();
            llmops_alloc_fail_nth(n);
            llmops_status st;
            if (verb == 0) {
                st = query_all(c, qv, 1, "{\"a\": {\"$gte\": 2}}", &r, &err);
            } else if (verb == 1) {
                llmops_vdb_search_opts s;
                llmops_vdb_search_opts_init(&s);
                s.vector = qv;
                s.text = "alpha beta";
                s.mmr = 1;
                st = llmops_vdb_search(c, &s, &r, &err);
            } else {
                st = snapshot(c, &r, &err);
            }
            int fired = n >= 0 && llmops_alloc_failure_fired();
            llmops_alloc_fail_nth(-1);
            if (!fired) {
                CHECK_OK(st, err);
                if (verb == 0) CHECK(results_equal(ref, r));
                llmops_vdb_result_free(r);
                if (n < 0) continue;
                break;
            }
            CHECK_MSG(st != LLMOPS_OK, "verb %d: failure %ld not reported", verb, n);
            CHECK_MSG(llmops_alloc_live() == live, "verb %d, failure %ld (%s): %ld allocations leaked", verb, n, err.msg,
                      llmops_alloc_live() - live);
            /* a later call must still work */
            CHECK_OK(llmops_vdb_count(c, &(size_t){0}, &err), err);
        }
    }
    /* writes: nothing is half-applied */
    float e[DIM] = {1};
    llmops_vdb_meta md[] = {{"k", LLMOPS_VDB_STR_VALUE("v")}};
    llmops_vdb_record recs[] = {{"w1", e, "doc", md, 1}, {"w2", e, NULL, NULL, 0}};
    for (long n = 0;; n++) {
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_vdb_add(c, recs, 2, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        size_t cnt = 0;
        CHECK_OK(llmops_vdb_count(c, &cnt, &err), err);
        if (!fired) {
            CHECK_OK(st, err);
            CHECK_EQ_INT(cnt, 62);
            break;
        }
        if (st) CHECK_EQ_INT(cnt, 60);
        else break;
    }
    llmops_vdb_result_free(ref);
    llmops_vdb_close(db);
    CHECK_EQ_INT(llmops_alloc_live(), live0);
}

/* ---- several processes ----------------------------------------------------------------------------- */

static void det_vec(int i, float *v) {
    for (int k = 0; k < DIM; k++) v[k] = (float)sin(i * 0.37 + k * 1.91) + (k == i % DIM ? 2.0f : 0.0f);
}

/* A reader: until the writer is done, the newest record counted is always found by its own vector. */
static int reader_child(const char *dir, int id) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    o.read_only = id % 2; /* one read-only, one read-write handle */
    if (llmops_vdb_open(dir, &o, &db, &err)) return 10;
    llmops_vdb_collection *c = NULL;
    if (llmops_vdb_get_collection(db, "mpx", &c, &err)) return 11;
    size_t last = 0, rounds = 0;
    for (;;) {
        size_t n = 0;
        if (llmops_vdb_count(c, &n, &err)) {
            fprintf(stderr, "reader %d: %s\n", id, err.msg);
            return 12;
        }
        if (n < last) return 13; /* the writer only adds */
        last = n;
        if (n > 0) {
            float v[DIM];
            det_vec((int)n - 1, v);
            llmops_vdb_query_opts q;
            llmops_vdb_query_opts_init(&q);
            q.queries = v;
            q.n_queries = 1;
            q.k = 5;
            llmops_vdb_result *r = NULL;
            if (llmops_vdb_query(c, &q, &r, &err)) {
                fprintf(stderr, "reader %d: %s\n", id, err.msg);
                return 14;
            }
            char want[24];
            snprintf(want, sizeof want, "w%zu", n - 1);
            /* the query's snapshot may be newer than the count's: at least min(n, 5) hits */
            int ok = r->n_hits[0] >= (n < 5 ? n : 5) && r->n_hits[0] <= 5 && !strcmp(r->hits[0][0].id, want);
            if (!ok) fprintf(stderr, "reader %d: count %zu, top %s\n", id, n, r->n_hits[0] ? r->hits[0][0].id : "-");
            llmops_vdb_result_free(r);
            if (!ok) return 15;
        }
        rounds++;
        if (n >= 400) break;
    }
    llmops_vdb_close(db);
    return rounds > 3 ? 0 : 16;
}

TEST(vdb_readers_run_with_a_writer) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    const char *dir = test_tmpfile("db");
    CHECK_OK(open_db(dir, &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, DIM);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "mpx", &cfg, NULL, 0, &c, &err), err);
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0) _exit(reader_child(dir, i));
    }
    for (int i = 0; i < 400; i++) {
        float v[DIM];
        det_vec(i, v);
        char id[24];
        snprintf(id, sizeof id, "w%d", i);
        llmops_vdb_record r = {id, v, NULL, NULL, 0};
        CHECK_OK(llmops_vdb_add(c, &r, 1, &err), err);
        usleep(2000); /* let the readers interleave */
        if (i % 100 == 50) CHECK_OK(llmops_vdb_flush(db, &err), err); /* index files change under the readers */
    }
    for (int i = 0; i < 3; i++) {
        int status = 0;
        CHECK(waitpid(kids[i], &status, 0) == kids[i]);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader %d: status %d", i,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    }
    llmops_vdb_close(db);
}

/* Counted repetition in where_document regexes ({n}, {n,m}): "ab{2}" matches "abb", never "ab}". */
TEST(vdb_regex_counted_repetition) {
    llmops_error err = {0};
    llmops_vdb *db = NULL;
    CHECK_OK(open_db(test_tmpfile("db"), &db, &err), err);
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 2);
    llmops_vdb_collection *c = NULL;
    CHECK_OK(llmops_vdb_create_collection(db, "rex", &cfg, NULL, 0, &c, &err), err);
    float e[2] = {1, 0};
    llmops_vdb_record recs[] = {{"braces", e, "ab}", NULL, 0}, {"two", e, "abb", NULL, 0}, {"four", e, "abbbb", NULL, 0}};
    CHECK_OK(llmops_vdb_add(c, recs, 3, &err), err);
    static const struct {
        const char *filter;
        const char *ids;
    } cases[] = {
        {"{\"$regex\": \"ab{2}\"}", "two,four"},
        {"{\"$regex\": \"^ab{2}$\"}", "two"},
        {"{\"$regex\": \"^ab{3,4}$\"}", "four"},
        {"{\"$regex\": \"^ab{1,}$\"}", "two,four"},
        {"{\"$regex\": \"b\\\\}\"}", "braces"},
        {"{\"$not_regex\": \"b{2}\"}", "braces"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmops_vdb_get_opts g;
        llmops_vdb_get_opts_init(&g);
        g.where_document = cases[i].filter;
        g.include = 0;
        llmops_vdb_result *r = NULL;
        CHECK_OK(llmops_vdb_get(c, &g, &r, &err), err);
        char got[64] = "";
        for (size_t k = 0; k < r->n_hits[0]; k++) {
            strcat(got, k ? "," : "");
            strcat(got, r->hits[0][k].id);
        }
        llmops_vdb_result_free(r);
        CHECK_MSG(!strcmp(got, cases[i].ids), "%s: got %s, want %s", cases[i].filter, got, cases[i].ids);
    }
    llmops_vdb_close(db);
}
