/*
 * llmops vdb: the vector database from the command line. Records come in as
 * JSONL (one {"id", "embedding", "document", "metadata"} object per line,
 * errors name FILE:LINE) and every result goes out as one JSON document on
 * stdout, in Chroma's shapes.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli.h"
#include "llmops/vectordb.h"
#include "vectordb/bench.h"

void usage_vdb(FILE *out) {
    fprintf(out,
            "usage: llmops vdb <subcommand> DB [args] [options]\n\n"
            "An embedded vector database in the directory DB (created on first use): collections of\n"
            "records {id, embedding, document, metadata} with Chroma's filters, BM25 keyword and hybrid\n"
            "search, crash-safe storage (SQLite WAL + HNSW index files), compaction and online backup.\n\n"
            "subcommands:\n"
            "  create DB NAME --dim N [--space l2|cosine|ip] [--M 16] [--ef-construction 100]\n"
            "         [--ef-search 100] [--metadata JSON] [--get-or-create]\n"
            "  list DB                              the collections, as JSON\n"
            "  modify DB NAME [--name NEW] [--metadata JSON] [--ef-search N]\n"
            "  delete-collection DB NAME\n"
            "  add DB NAME FILE.jsonl               insert; an existing id is an error ('-' = stdin)\n"
            "  upsert DB NAME FILE.jsonl            insert or update\n"
            "  update DB NAME FILE.jsonl            update existing ids (fields left out are kept;\n"
            "                                       a null metadata value deletes the key)\n"
            "  get DB NAME [--ids a,b] [--where JSON] [--where-document JSON] [--limit N] [--offset N]\n"
            "         [--include LIST]\n"
            "  query DB NAME (--embedding JSON | --queries FILE.jsonl) [--k 10] [--where JSON]\n"
            "         [--where-document JSON] [--include LIST] [--ef N]\n"
            "  query DB NAME --text TEXT [--embedding JSON] [--k 10] [--vector-weight 1] [--text-weight 1]\n"
            "         [--rrf-k 60] [--candidates N] [--mmr LAMBDA] ...   keyword (BM25) or hybrid (RRF)\n"
            "  delete DB NAME [--ids a,b] [--where JSON] [--where-document JSON]\n"
            "  count DB NAME\n"
            "  compact DB [NAME]                    rebuild indexes without tombstones, VACUUM\n"
            "  backup DB DEST [--file]              online backup to a directory (or one file)\n"
            "  restore SRC DB                       replace DB's contents with a backup\n"
            "  bench --ds FILE [--gt FILE] [--M 16] [--efc 200] [--efs 16,32,64,128] [--k 10]\n"
            "         [--reps 3] [--threads 1] [--dist ip|cosine|l2] [--no-flat]\n\n"
            "LIST is a comma-separated subset of embeddings,documents,metadatas,distances.\n"
            "Filters follow Chroma: --where '{\"year\": {\"$gte\": 2020}}',\n"
            "--where-document '{\"$contains\": \"O-RAN\"}'. A JSONL record line looks like\n"
            "  {\"id\": \"a1\", \"embedding\": [0.1, 0.2], \"document\": \"text\", \"metadata\": {\"k\": 1}}\n\n"
            "example:\n"
            "  llmops vdb create kb docs --dim 384 --space cosine\n"
            "  llmops vdb add kb docs chunks.jsonl\n"
            "  llmops vdb query kb docs --embedding \"$(cat q.json)\" --k 5 --where '{\"lang\": \"en\"}'\n");
}

/* ---- small helpers ------------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
    char *end;
    errno = 0;
    if (!s || *s == '-' || *s == '\0') return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    if (!s || !*s) return 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int emit_json(llmops_buf *b) {
    if (!b->data) return 0;
    fwrite(b->data, 1, b->len, stdout);
    fputc('\n', stdout);
    return fflush(stdout) ? cli_fail("writing the output: %s", strerror(errno)) : 0;
}

/* Splits "a,b,c" into a NULL-terminated array of pointers into a copy (free both with free). */
static char **split_ids(const char *s, size_t *n, char **copy) {
    *copy = strdup(s);
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    char **v = calloc(cap + 1, sizeof *v);
    if (!*copy || !v) {
        free(*copy);
        free(v);
        return NULL;
    }
    *n = 0;
    for (char *save = NULL, *t = strtok_r(*copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) v[(*n)++] = t;
    return v;
}

static int open_collection(const char *dir, const char *name, int create_dir, llmops_vdb **db, llmops_vdb_collection **c) {
    llmops_error err = {0};
    llmops_vdb_options o;
    llmops_vdb_options_init(&o);
    o.create = create_dir;
    if (llmops_vdb_open(dir, &o, db, &err)) return cli_fail("%s", err.msg);
    if (c && llmops_vdb_get_collection(*db, name, c, &err)) {
        llmops_vdb_close(*db);
        *db = NULL;
        return cli_fail("%s: %s", dir, err.msg);
    }
    return 0;
}

/* Prints {"key": "value"} with the value escaped. */
static void print_kv(const char *key, const char *value, const char *key2, const char *value2) {
    json_t *o = json_object();
    char *s = NULL;
    if (o) {
        json_object_set_new(o, key, json_string(value));
        if (key2) json_object_set_new(o, key2, json_string(value2));
        s = json_dumps(o, JSON_PRESERVE_ORDER);
    }
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(o);
}

/* Finishes a command: closes the database (saving indexes) and returns r. */
static int done(llmops_vdb *db, int r) {
    llmops_vdb_close(db);
    return r;
}

static llmops_status info_json(const llmops_vdb_collection_info *info, llmops_buf *b, llmops_error *err) {
    json_t *o = json_object();
    if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    json_object_set_new(o, "name", json_string(info->name));
    json_object_set_new(o, "id", json_string(info->uid));
    json_object_set_new(o, "dim", json_integer(info->config.dim));
    json_object_set_new(o, "space", json_string(llmops_vdb_space_name(info->config.space)));
    json_object_set_new(o, "M", json_integer(info->config.M));
    json_object_set_new(o, "ef_construction", json_integer(info->config.ef_construction));
    json_object_set_new(o, "ef_search", json_integer(info->config.ef_search));
    json_object_set_new(o, "count", json_integer((json_int_t)info->count));
    json_t *md = info->metadata_json ? json_loads(info->metadata_json, 0, NULL) : NULL;
    json_object_set_new(o, "metadata", md ? md : json_null());
    llmops_status st = llmops_json_dump(o, 0, b, err);
    json_decref(o);
    return st;
}

/* ---- create / list / modify / delete-collection ----------------------------------------- */

static int vdb_create(int argc, char **argv) {
    if (argc < 3) return cli_usage_error("vdb create", "give DB and NAME");
    const char *dir = argv[1], *name = argv[2], *meta = NULL;
    llmops_vdb_collection_config cfg;
    llmops_vdb_collection_config_init(&cfg, 0);
    int goc = 0;
    uint64_t u;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--get-or-create")) {
            goc = 1;
            continue;
        }
        if (!v) return cli_usage_error("vdb create", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--dim")) {
            if (!parse_u64(v, 65536, &u) || !u) return cli_usage_error("vdb create", "--dim needs a number in 1..65536");
            cfg.dim = (uint32_t)u;
        } else if (!strcmp(a, "--space")) {
            if (!llmops_vdb_space_parse(v, &cfg.space)) return cli_usage_error("vdb create", "--space must be l2, cosine or ip");
        } else if (!strcmp(a, "--M")) {
            if (!parse_u64(v, 512, &u)) return cli_usage_error("vdb create", "--M needs a number in 2..512");
            cfg.M = (uint32_t)u;
        } else if (!strcmp(a, "--ef-construction") || !strcmp(a, "--efc")) {
            if (!parse_u64(v, 65536, &u)) return cli_usage_error("vdb create", "%s needs a number", a);
            cfg.ef_construction = (uint32_t)u;
        } else if (!strcmp(a, "--ef-search") || !strcmp(a, "--efs")) {
            if (!parse_u64(v, 65536, &u)) return cli_usage_error("vdb create", "%s needs a number", a);
            cfg.ef_search = (uint32_t)u;
        } else if (!strcmp(a, "--metadata")) {
            meta = v;
        } else {
            return cli_usage_error("vdb create", "unknown option '%s'", a);
        }
    }
    if (!cfg.dim) return cli_usage_error("vdb create", "--dim N is required");
    llmops_vdb *db = NULL;
    if (open_collection(dir, NULL, 1, &db, NULL)) return 1;
    llmops_error err = {0};
    llmops_vdb_collection *c = NULL;
    llmops_vdb_collection_info *info = NULL;
    if (llmops_vdb_create_collection(db, name, &cfg, meta, goc, &c, &err) ||
        llmops_vdb_collection_describe(c, &info, &err))
        return done(db, cli_fail("%s", err.msg));
    llmops_buf b;
    llmops_buf_init(&b, 1u << 24);
    int r = info_json(info, &b, &err) ? cli_fail("%s", err.msg) : emit_json(&b);
    llmops_buf_free(&b);
    llmops_vdb_collection_infos_free(info, 1);
    return done(db, r);
}

static int vdb_list(int argc, char **argv) {
    if (argc != 2) return cli_usage_error("vdb list", "give DB");
    llmops_vdb *db = NULL;
    if (open_collection(argv[1], NULL, 0, &db, NULL)) return 1;
    llmops_error err = {0};
    llmops_vdb_collection_info *infos = NULL;
    size_t n = 0;
    if (llmops_vdb_list_collections(db, &infos, &n, &err)) return done(db, cli_fail("%s", err.msg));
    llmops_buf b;
    llmops_buf_init(&b, 1u << 28);
    llmops_status st = llmops_buf_puts(&b, "[", &err);
    for (size_t i = 0; i < n && !st; i++) {
        if (i) st = llmops_buf_puts(&b, ",\n ", &err);
        if (!st) st = info_json(&infos[i], &b, &err);
    }
    if (!st) st = llmops_buf_puts(&b, "]", &err);
    int r = st ? cli_fail("%s", err.msg) : emit_json(&b);
    llmops_buf_free(&b);
    llmops_vdb_collection_infos_free(infos, n);
    return done(db, r);
}

static int vdb_modify(int argc, char **argv) {
    if (argc < 3) return cli_usage_error("vdb modify", "give DB and NAME");
    const char *newname = NULL, *meta = NULL;
    uint64_t efs = 0;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("vdb modify", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--name")) newname = v;
        else if (!strcmp(a, "--metadata")) meta = v;
        else if (!strcmp(a, "--ef-search") || !strcmp(a, "--efs")) {
            if (!parse_u64(v, 65536, &efs) || !efs) return cli_usage_error("vdb modify", "%s needs a number in 1..65536", a);
        } else return cli_usage_error("vdb modify", "unknown option '%s'", a);
    }
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    if (open_collection(argv[1], argv[2], 0, &db, &c)) return 1;
    llmops_error err = {0};
    llmops_vdb_collection_info *info = NULL;
    if (llmops_vdb_modify_collection(c, newname, meta, (uint32_t)efs, &err) || llmops_vdb_collection_describe(c, &info, &err))
        return done(db, cli_fail("%s", err.msg));
    llmops_buf b;
    llmops_buf_init(&b, 1u << 24);
    int r = info_json(info, &b, &err) ? cli_fail("%s", err.msg) : emit_json(&b);
    llmops_buf_free(&b);
    llmops_vdb_collection_infos_free(info, 1);
    return done(db, r);
}

static int vdb_delete_collection(int argc, char **argv) {
    if (argc != 3) return cli_usage_error("vdb delete-collection", "give DB and NAME");
    llmops_vdb *db = NULL;
    if (open_collection(argv[1], NULL, 0, &db, NULL)) return 1;
    llmops_error err = {0};
    if (llmops_vdb_delete_collection(db, argv[2], &err)) return done(db, cli_fail("%s: %s", argv[1], err.msg));
    print_kv("deleted", argv[2], NULL, NULL);
    return done(db, 0);
}

/* ---- JSONL records ------------------------------------------------------------------------- */

typedef struct batch {
    llmops_arena *arena;
    llmops_vdb_record *recs;
    size_t n, cap;
} batch;

static void batch_free(batch *b) {
    llmops_arena_free(b->arena);
    free(b->recs);
}

/* Reads `dim` numbers from a JSON array into the arena. */
static int json_vector(const json_t *a, uint32_t dim, llmops_arena *arena, float **out, const char *where) {
    if (!json_is_array(a)) return cli_fail("%s: embedding: expected an array of numbers, got %s", where, llmops_json_type_name(a));
    if (json_array_size(a) != dim)
        return cli_fail("%s: embedding has %zu numbers, the collection's dimension is %u", where, json_array_size(a), dim);
    float *v = llmops_arena_alloc(arena, (size_t)dim * sizeof(float), 16);
    if (!v) return cli_fail("out of memory");
    for (uint32_t d = 0; d < dim; d++) {
        const json_t *x = json_array_get(a, d);
        if (!json_is_number(x)) return cli_fail("%s: embedding[%u]: expected a number, got %s", where, d, llmops_json_type_name(x));
        v[d] = (float)json_number_value(x);
        if (!isfinite(v[d])) return cli_fail("%s: embedding[%u] is out of float range", where, d);
    }
    *out = v;
    return 0;
}

static char *arena_str(llmops_arena *a, const json_t *s) {
    return llmops_arena_strndup(a, json_string_value(s), json_string_length(s));
}

/* One JSONL line -> a record; `where` is "FILE:LINE". */
static int parse_record(const json_t *j, uint32_t dim, int mode, llmops_arena *a, llmops_vdb_record *r, const char *where) {
    memset(r, 0, sizeof *r);
    if (!json_is_object(j)) return cli_fail("%s: expected an object, got %s", where, llmops_json_type_name(j));
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        if (!strcmp(key, "id")) {
            if (!json_is_string(v) || !json_string_length(v)) return cli_fail("%s: id: expected a non-empty string", where);
            if (!(r->id = arena_str(a, v))) return cli_fail("out of memory");
        } else if (!strcmp(key, "embedding")) {
            if (json_is_null(v) && mode == 2) continue;
            float *e = NULL;
            if (json_vector(v, dim, a, &e, where)) return 1;
            r->embedding = e;
        } else if (!strcmp(key, "document")) {
            if (json_is_null(v)) continue;
            if (!json_is_string(v)) return cli_fail("%s: document: expected a string, got %s", where, llmops_json_type_name(v));
            if (strlen(json_string_value(v)) != json_string_length(v)) return cli_fail("%s: document holds a NUL character", where);
            if (!(r->document = arena_str(a, v))) return cli_fail("out of memory");
        } else if (!strcmp(key, "metadata")) {
            if (json_is_null(v)) continue;
            if (!json_is_object(v)) return cli_fail("%s: metadata: expected an object, got %s", where, llmops_json_type_name(v));
            size_t n = json_object_size(v), i = 0;
            llmops_vdb_meta *m = llmops_arena_alloc(a, (n ? n : 1) * sizeof *m, 8);
            if (!m) return cli_fail("out of memory");
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                llmops_vdb_meta *e = &m[i++];
                if (!(e->key = llmops_arena_strndup(a, mk, strlen(mk)))) return cli_fail("out of memory");
                if (json_is_string(mv)) {
                    e->value.type = LLMOPS_VDB_STR;
                    if (!(e->value.u.s = arena_str(a, mv))) return cli_fail("out of memory");
                } else if (json_is_integer(mv)) {
                    e->value = LLMOPS_VDB_INT_VALUE((int64_t)json_integer_value(mv));
                } else if (json_is_real(mv)) {
                    e->value = LLMOPS_VDB_FLOAT_VALUE(json_real_value(mv));
                } else if (json_is_boolean(mv)) {
                    e->value = LLMOPS_VDB_BOOL_VALUE(json_is_true(mv));
                } else if (json_is_null(mv) && mode != 0) {
                    e->value.type = LLMOPS_VDB_NULL;
                } else {
                    return cli_fail("%s: metadata.%s: expected a string, number or boolean%s, got %s", where, mk,
                                    mode ? " (or null to delete it)" : "", llmops_json_type_name(mv));
                }
            }
            r->metadata = m;
            r->n_metadata = n;
        } else {
            return cli_fail("%s: unknown key '%s' (expected id, embedding, document, metadata)", where, key);
        }
    }
    if (!r->id) return cli_fail("%s: no id", where);
    if (!r->embedding && mode != 2) return cli_fail("%s: no embedding", where);
    return 0;
}

/* Reads FILE (or stdin for "-"): one record per non-blank line. mode 0 add, 1 upsert, 2 update. */
static int read_jsonl(const char *path, uint32_t dim, int mode, batch *b) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) return cli_fail("%s: %s", path, strerror(errno));
    b->arena = llmops_arena_create(1 << 20, 0);
    if (!b->arena) {
        if (f != stdin) fclose(f);
        return cli_fail("out of memory");
    }
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int r = 0;
    const char *shown = strcmp(path, "-") ? path : "<stdin>";
    for (size_t lineno = 1; !r && (len = getline(&line, &lcap, f)) >= 0; lineno++) {
        size_t sp = strspn(line, " \t\r\n");
        if ((ssize_t)sp == len) continue;
        char where[4200];
        snprintf(where, sizeof where, "%s:%zu", shown, lineno);
        json_t *j = NULL;
        llmops_error err = {0};
        if (llmops_json_parse(line, (size_t)len, where, &j, &err)) {
            r = cli_fail("%s", err.msg);
            break;
        }
        if (b->n == b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 256;
            llmops_vdb_record *nr = realloc(b->recs, nc * sizeof *nr);
            if (!nr) r = cli_fail("out of memory");
            else {
                b->recs = nr;
                b->cap = nc;
            }
        }
        if (!r) r = parse_record(j, dim, mode, b->arena, &b->recs[b->n], where);
        if (!r) b->n++;
        json_decref(j);
    }
    if (!r && ferror(f)) r = cli_fail("%s: read error", shown);
    free(line);
    if (f != stdin) fclose(f);
    return r;
}

static int vdb_write(int argc, char **argv, int mode) {
    static const char *const verbs[] = {"add", "upsert", "update"};
    static const char *const done_words[] = {"added", "upserted", "updated"};
    char cmd[32];
    snprintf(cmd, sizeof cmd, "vdb %s", verbs[mode]);
    if (argc != 4) return cli_usage_error(cmd, "give DB, NAME and FILE.jsonl ('-' for stdin)");
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    if (open_collection(argv[1], argv[2], 0, &db, &c)) return 1;
    llmops_error err = {0};
    llmops_vdb_collection_info *info = NULL;
    if (llmops_vdb_collection_describe(c, &info, &err)) return done(db, cli_fail("%s", err.msg));
    uint32_t dim = info->config.dim;
    llmops_vdb_collection_infos_free(info, 1);
    batch b = {0};
    int r = read_jsonl(argv[3], dim, mode, &b);
    if (!r) {
        llmops_status st = mode == 0   ? llmops_vdb_add(c, b.recs, b.n, &err)
                           : mode == 1 ? llmops_vdb_upsert(c, b.recs, b.n, &err)
                                       : llmops_vdb_update(c, b.recs, b.n, &err);
        if (st) r = cli_fail("%s: %s (nothing was written)", argv[3], err.msg);
        else printf("{\"%s\": %zu}\n", done_words[mode], b.n);
    }
    batch_free(&b);
    return done(db, r);
}

/* ---- get / query / delete / count ------------------------------------------------------------- */

typedef struct read_args {
    const char *where, *wdoc, *ids, *include, *embedding, *queries, *text;
    uint64_t limit, offset, k, ef, candidates;
    double vw, tw, rrf_k, mmr;
    int have_mmr;
} read_args;

static int parse_read_args(const char *cmd, int argc, char **argv, int first, read_args *a) {
    memset(a, 0, sizeof *a);
    a->k = 10;
    a->vw = a->tw = 1.0;
    a->rrf_k = 60.0;
    for (int i = first; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error(cmd, "%s needs a value", o);
        i++;
        if (!strcmp(o, "--where")) a->where = v;
        else if (!strcmp(o, "--where-document")) a->wdoc = v;
        else if (!strcmp(o, "--ids")) a->ids = v;
        else if (!strcmp(o, "--include")) a->include = v;
        else if (!strcmp(o, "--embedding")) a->embedding = v;
        else if (!strcmp(o, "--queries")) a->queries = v;
        else if (!strcmp(o, "--text")) a->text = v;
        else if (!strcmp(o, "--limit") || !strcmp(o, "--offset") || !strcmp(o, "--k") || !strcmp(o, "--ef") ||
                 !strcmp(o, "--candidates")) {
            uint64_t u;
            if (!parse_u64(v, 1000000000, &u)) return cli_usage_error(cmd, "%s needs a count", o);
            if (o[2] == 'l') a->limit = u;
            else if (o[2] == 'o') a->offset = u;
            else if (o[2] == 'k') a->k = u;
            else if (o[2] == 'e') a->ef = u;
            else a->candidates = u;
        } else if (!strcmp(o, "--vector-weight") || !strcmp(o, "--text-weight") || !strcmp(o, "--rrf-k") ||
                   !strcmp(o, "--mmr")) {
            double d;
            if (!parse_double(v, &d) || d < 0) return cli_usage_error(cmd, "%s needs a number >= 0", o);
            if (o[2] == 'v') a->vw = d;
            else if (o[2] == 't') a->tw = d;
            else if (o[2] == 'r') a->rrf_k = d;
            else {
                if (d > 1) return cli_usage_error(cmd, "--mmr needs a lambda in [0, 1]");
                a->mmr = d;
                a->have_mmr = 1;
            }
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", o);
        }
    }
    return 0;
}

static int print_result(llmops_vdb_result *res) {
    llmops_error err = {0};
    llmops_buf b;
    llmops_buf_init(&b, (size_t)1 << 34);
    int r = llmops_vdb_result_to_json(res, &b, &err) ? cli_fail("%s", err.msg) : emit_json(&b);
    llmops_buf_free(&b);
    llmops_vdb_result_free(res);
    return r;
}

static int vdb_get(int argc, char **argv) {
    if (argc < 3) return cli_usage_error("vdb get", "give DB and NAME");
    read_args a;
    if (parse_read_args("vdb get", argc, argv, 3, &a)) return 2;
    llmops_vdb_get_opts o;
    llmops_vdb_get_opts_init(&o);
    if (a.include && !llmops_vdb_include_parse(a.include, &o.include))
        return cli_usage_error("vdb get", "--include takes embeddings,documents,metadatas");
    char *copy = NULL;
    char **ids = NULL;
    if (a.ids && !(ids = split_ids(a.ids, &o.n_ids, &copy))) return cli_fail("out of memory");
    o.ids = (const char *const *)ids;
    o.where = a.where;
    o.where_document = a.wdoc;
    o.limit = a.limit;
    o.offset = a.offset;
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    int r = open_collection(argv[1], argv[2], 0, &db, &c);
    if (!r) {
        llmops_error err = {0};
        llmops_vdb_result *res = NULL;
        r = llmops_vdb_get(c, &o, &res, &err) ? cli_fail("%s", err.msg) : print_result(res);
        r = done(db, r);
    }
    free(ids);
    free(copy);
    return r;
}

/* Query vectors from --embedding (one JSON array) or --queries (JSONL of arrays or {"embedding": [...]}). */
static int read_queries(const read_args *a, uint32_t dim, llmops_arena *arena, float **out, size_t *n) {
    *n = 0;
    if (a->embedding) {
        json_t *j = NULL;
        llmops_error err = {0};
        if (llmops_json_parse(a->embedding, strlen(a->embedding), "--embedding", &j, &err)) return cli_fail("%s", err.msg);
        int r = json_vector(j, dim, arena, out, "--embedding");
        json_decref(j);
        if (!r) *n = 1;
        return r;
    }
    FILE *f = strcmp(a->queries, "-") ? fopen(a->queries, "r") : stdin;
    if (!f) return cli_fail("%s: %s", a->queries, strerror(errno));
    float *all = NULL;
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int r = 0;
    for (size_t lineno = 1; !r && (len = getline(&line, &lcap, f)) >= 0; lineno++) {
        if ((ssize_t)strspn(line, " \t\r\n") == len) continue;
        char where[4200];
        snprintf(where, sizeof where, "%s:%zu", a->queries, lineno);
        json_t *j = NULL;
        llmops_error err = {0};
        if (llmops_json_parse(line, (size_t)len, where, &j, &err)) {
            r = cli_fail("%s", err.msg);
            break;
        }
        const json_t *v = json_is_object(j) ? json_object_get(j, "embedding") : j;
        float *q = NULL;
        r = json_vector(v ? v : j, dim, arena, &q, where);
        json_decref(j);
        if (r) break;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            float *na = llmops_arena_alloc(arena, nc * dim * sizeof(float), 16);
            if (!na) {
                r = cli_fail("out of memory");
                break;
            }
            if (*n) memcpy(na, all, *n * dim * sizeof(float));
            all = na;
            cap = nc;
        }
        memcpy(all + *n * dim, q, dim * sizeof(float));
        (*n)++;
    }
    free(line);
    if (f != stdin) fclose(f);
    if (!r && !*n) r = cli_fail("%s: no query vectors", a->queries);
    *out = all;
    return r;
}

static int vdb_query(int argc, char **argv) {
    if (argc < 3) return cli_usage_error("vdb query", "give DB and NAME");
    read_args a;
    if (parse_read_args("vdb query", argc, argv, 3, &a)) return 2;
    if (!a.embedding && !a.queries && !a.text)
        return cli_usage_error("vdb query", "give --embedding JSON, --queries FILE.jsonl or --text TEXT");
    if (a.embedding && a.queries) return cli_usage_error("vdb query", "--embedding and --queries exclude each other");
    if (a.text && a.queries) return cli_usage_error("vdb query", "--text goes with one --embedding, not --queries");
    if (!a.k) return cli_usage_error("vdb query", "--k must be at least 1");
    unsigned inc = LLMOPS_VDB_INC_DEFAULT;
    if (a.include && !llmops_vdb_include_parse(a.include, &inc))
        return cli_usage_error("vdb query", "--include takes embeddings,documents,metadatas,distances");
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    if (open_collection(argv[1], argv[2], 0, &db, &c)) return 1;
    llmops_error err = {0};
    llmops_vdb_collection_info *info = NULL;
    if (llmops_vdb_collection_describe(c, &info, &err)) return done(db, cli_fail("%s", err.msg));
    uint32_t dim = info->config.dim;
    llmops_vdb_collection_infos_free(info, 1);
    llmops_arena *arena = llmops_arena_create(1 << 20, 0);
    if (!arena) return done(db, cli_fail("out of memory"));
    float *qs = NULL;
    size_t nq = 0;
    int r = (a.embedding || a.queries) ? read_queries(&a, dim, arena, &qs, &nq) : 0;
    llmops_vdb_result *res = NULL;
    if (!r && (a.text || a.have_mmr)) {
        llmops_vdb_search_opts s;
        llmops_vdb_search_opts_init(&s);
        s.vector = nq ? qs : NULL;
        s.text = a.text;
        s.k = a.k;
        s.where = a.where;
        s.where_document = a.wdoc;
        s.vector_weight = a.vw;
        s.text_weight = a.tw;
        s.rrf_k = a.rrf_k;
        s.candidates = a.candidates;
        s.mmr = a.have_mmr;
        s.mmr_lambda = a.have_mmr ? a.mmr : 0.5;
        s.include = inc;
        if (nq > 1) r = cli_usage_error("vdb query", "--mmr and --text take one query vector");
        else r = llmops_vdb_search(c, &s, &res, &err) ? cli_fail("%s", err.msg) : print_result(res);
    } else if (!r) {
        llmops_vdb_query_opts q;
        llmops_vdb_query_opts_init(&q);
        q.queries = qs;
        q.n_queries = nq;
        q.k = a.k;
        q.where = a.where;
        q.where_document = a.wdoc;
        q.include = inc;
        q.ef_search = (uint32_t)(a.ef > 65536 ? 65536 : a.ef);
        r = llmops_vdb_query(c, &q, &res, &err) ? cli_fail("%s", err.msg) : print_result(res);
    }
    llmops_arena_free(arena);
    return done(db, r);
}

static int vdb_delete(int argc, char **argv) {
    if (argc < 3) return cli_usage_error("vdb delete", "give DB and NAME");
    read_args a;
    if (parse_read_args("vdb delete", argc, argv, 3, &a)) return 2;
    if (!a.ids && !a.where && !a.wdoc) return cli_usage_error("vdb delete", "give --ids, --where or --where-document");
    char *copy = NULL;
    char **ids = NULL;
    size_t n_ids = 0;
    if (a.ids && !(ids = split_ids(a.ids, &n_ids, &copy))) return cli_fail("out of memory");
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    int r = open_collection(argv[1], argv[2], 0, &db, &c);
    if (!r) {
        llmops_error err = {0};
        size_t nd = 0;
        if (llmops_vdb_delete(c, (const char *const *)ids, n_ids, a.where, a.wdoc, &nd, &err)) r = cli_fail("%s", err.msg);
        else printf("{\"deleted\": %zu}\n", nd);
        r = done(db, r);
    }
    free(ids);
    free(copy);
    return r;
}

static int vdb_count(int argc, char **argv) {
    if (argc != 3) return cli_usage_error("vdb count", "give DB and NAME");
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    if (open_collection(argv[1], argv[2], 0, &db, &c)) return 1;
    llmops_error err = {0};
    size_t n = 0;
    if (llmops_vdb_count(c, &n, &err)) return done(db, cli_fail("%s", err.msg));
    printf("{\"count\": %zu}\n", n);
    return done(db, 0);
}

/* ---- maintenance ------------------------------------------------------------------------------ */

static int vdb_compact(int argc, char **argv) {
    if (argc != 2 && argc != 3) return cli_usage_error("vdb compact", "give DB [NAME]");
    llmops_vdb *db = NULL;
    llmops_vdb_collection *c = NULL;
    if (open_collection(argv[1], argc == 3 ? argv[2] : NULL, 0, &db, argc == 3 ? &c : NULL)) return 1;
    llmops_error err = {0};
    if (llmops_vdb_compact(db, c, &err)) return done(db, cli_fail("%s", err.msg));
    print_kv("compacted", c ? argv[2] : "all", NULL, NULL);
    return done(db, 0);
}

static int vdb_backup(int argc, char **argv) {
    int single = 0, npos = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--file")) single = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("vdb backup", "unknown option '%s'", argv[i]);
        else if (npos < 2) pos[npos++] = argv[i];
        else return cli_usage_error("vdb backup", "give DB and DEST");
    }
    if (npos != 2) return cli_usage_error("vdb backup", "give DB and DEST");
    llmops_vdb *db = NULL;
    if (open_collection(pos[0], NULL, 0, &db, NULL)) return 1;
    llmops_error err = {0};
    if (llmops_vdb_backup(db, pos[1], single, &err)) return done(db, cli_fail("%s", err.msg));
    print_kv("backup", pos[1], "form", single ? "file" : "directory");
    return done(db, 0);
}

static int vdb_restore(int argc, char **argv) {
    if (argc != 3) return cli_usage_error("vdb restore", "give SRC (a backup file or directory) and DB");
    llmops_error err = {0};
    if (llmops_vdb_restore(argv[1], argv[2], &err)) return cli_fail("%s", err.msg);
    print_kv("restored", argv[2], "from", argv[1]);
    return 0;
}

static int vdb_bench(int argc, char **argv) {
    llmops_vdb_bench_opts o;
    llmops_vdb_bench_opts_init(&o);
    o.out = stdout;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-flat")) {
            o.flat = 0;
            continue;
        }
        if (!v) return cli_usage_error("vdb bench", "%s needs a value", a);
        i++;
        uint64_t u;
        if (!strcmp(a, "--ds")) o.ds_path = v;
        else if (!strcmp(a, "--gt")) o.gt_path = v;
        else if (!strcmp(a, "--save")) o.save_path = v;
        else if (!strcmp(a, "--load")) o.load_path = v;
        else if (!strcmp(a, "--dist")) {
            if (!strcmp(v, "ip")) o.dist = LLMOPS_DIST_IP;
            else if (!strcmp(v, "cosine")) o.dist = LLMOPS_DIST_COSINE;
            else if (!strcmp(v, "l2")) o.dist = LLMOPS_DIST_L2;
            else return cli_usage_error("vdb bench", "--dist must be ip, cosine or l2");
        } else if (!strcmp(a, "--efs")) {
            o.n_efs = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o.n_efs == LLMOPS_VDB_BENCH_MAX_EF || !parse_u64(t, 65536, &u) || !u)
                    return cli_usage_error("vdb bench", "--efs takes up to %d numbers, e.g. 16,32,64", LLMOPS_VDB_BENCH_MAX_EF);
                o.efs[o.n_efs++] = (uint32_t)u;
            }
            if (!o.n_efs) return cli_usage_error("vdb bench", "--efs needs at least one number");
        } else if (!strcmp(a, "--M") || !strcmp(a, "--efc") || !strcmp(a, "--k") || !strcmp(a, "--reps") ||
                   !strcmp(a, "--threads")) {
            if (!parse_u64(v, 65536, &u) || !u) return cli_usage_error("vdb bench", "%s needs a positive number", a);
            if (!strcmp(a, "--M")) o.M = (uint32_t)u;
            else if (!strcmp(a, "--efc")) o.ef_construction = (uint32_t)u;
            else if (!strcmp(a, "--k")) o.k = u;
            else if (!strcmp(a, "--reps")) o.reps = (int)u;
            else o.threads = (int)u;
        } else {
            return cli_usage_error("vdb bench", "unknown option '%s'", a);
        }
    }
    if (!o.ds_path) return cli_usage_error("vdb bench", "--ds FILE is required");
    llmops_error err = {0};
    llmops_vdb_bench_result res;
    if (llmops_vdb_bench_run(&o, &res, &err)) return cli_fail("%s", err.msg);
    return 0;
}

int cmd_vdb(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } subs[] = {
        {"create", vdb_create}, {"list", vdb_list},       {"modify", vdb_modify},   {"delete-collection", vdb_delete_collection},
        {"get", vdb_get},       {"query", vdb_query},     {"delete", vdb_delete},   {"count", vdb_count},
        {"compact", vdb_compact}, {"backup", vdb_backup}, {"restore", vdb_restore}, {"bench", vdb_bench},
    };
    if (argc < 2)
        return cli_usage_error("vdb", "give a subcommand: create, list, modify, delete-collection, add, upsert, update, "
                                      "get, query, delete, count, compact, backup, restore, bench");
    const char *s = argv[1];
    if (!strcmp(s, "add")) return vdb_write(argc - 1, argv + 1, 0);
    if (!strcmp(s, "upsert")) return vdb_write(argc - 1, argv + 1, 1);
    if (!strcmp(s, "update")) return vdb_write(argc - 1, argv + 1, 2);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(s, subs[i].name)) return subs[i].run(argc - 1, argv + 1);
    return cli_usage_error("vdb", "unknown subcommand '%s'", s);
}
