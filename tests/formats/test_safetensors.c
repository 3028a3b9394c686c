/*
 * safetensors reader and writer: round trips of every dtype (with metadata, scalar and
 * zero-size tensors), the exact header bytes, sharded folders and their index, hostile
 * headers and indexes (each error names the offset, line:col or the thing at fault),
 * truncation, allocation failure, and a real Hugging Face checkpoint.
 *
 * Expected layouts follow the safetensors README (u64 LE header length, JSON header
 * padded with spaces to 8 bytes, byte buffer tiled exactly by data_offsets) and are
 * checked with jansson directly, not through the reader under test.
 */
#include <jansson.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/safetensors.h"

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;

static void rng_seed(uint64_t s) { g_rng = s ? s : 1; }

static uint64_t rnd(void) { /* xorshift64* */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}

static void rnd_bytes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rnd() >> 56);
}

static uint8_t *slurp(const char *path, size_t *len) {
    char *d = NULL;
    llmops_error err = {0};
    if (llmops_file_read_all(path, (size_t)1 << 30, &d, len, &err)) return NULL;
    return (uint8_t *)d;
}

static int write_plain(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return 0;
    int ok = fwrite(data, 1, len, fp) == len;
    return (fclose(fp) == 0) && ok;
}

static size_t walk_st(const llmops_safetensors *st) {
    size_t s = (size_t)llmops_safetensors_buffer_offset(st);
    for (size_t i = 0; i < llmops_safetensors_n_tensors(st); i++) {
        const llmops_st_tensor *t = llmops_safetensors_tensor_at(st, i);
        const uint8_t *p = llmops_safetensors_data(st, t);
        s += strlen(t->name) + t->n_dims;
        if (t->end > t->begin) s += p[0] + p[t->end - t->begin - 1];
        if (llmops_safetensors_find(st, t->name) != t) abort();
    }
    for (size_t i = 0; i < llmops_safetensors_n_metadata(st); i++) {
        const char *k, *v;
        llmops_safetensors_metadata_at(st, i, &k, &v);
        s += strlen(k) + strlen(v);
    }
    return s;
}

/* Parses a private, exactly sized copy of the bytes; walks and frees the result. */
static llmops_status parse_bytes(const void *data, size_t n, llmops_error *err) {
    void *copy = malloc(n ? n : 1);
    if (!copy) abort();
    if (n) memcpy(copy, data, n);
    llmops_safetensors *st = NULL;
    llmops_error_clear(err);
    llmops_status s = llmops_safetensors_parse(copy, n, "t.st", &st, err);
    if (s == LLMOPS_OK) {
        volatile size_t sink = walk_st(st);
        (void)sink;
        llmops_safetensors_free(st);
    } else if (st != NULL || err->msg[0] == '\0' || err->code != s) {
        abort();
    }
    free(copy);
    return s;
}

/* [u64 len][header][buf_len zero bytes] */
static llmops_status parse_hdr(const char *header, size_t buf_len, llmops_error *err) {
    size_t hl = strlen(header), n = 8 + hl + buf_len;
    uint8_t *d = calloc(1, n);
    if (!d) abort();
    uint64_t h = hl;
    memcpy(d, &h, 8);
    memcpy(d + 8, header, hl);
    llmops_status s = parse_bytes(d, n, err);
    free(d);
    return s;
}

/* ---- round trip ---------------------------------------------------------------- */

typedef struct {
    const char *name;
    llmops_dtype type;
    const char *st_name; /* from the safetensors README, not the dtype table */
    size_t elem;
    uint32_t n_dims;
    uint64_t shape[8];
    uint64_t nbytes;
    uint8_t *data;
} exp_st;

static exp_st g_t[] = {
    {"t.f64", LLMOPS_DTYPE_F64, "F64", 8, 2, {2, 3}, 0, NULL},
    {"t.f32", LLMOPS_DTYPE_F32, "F32", 4, 1, {5}, 0, NULL},
    {"t.f16", LLMOPS_DTYPE_F16, "F16", 2, 3, {2, 1, 3}, 0, NULL},
    {"t.bf16", LLMOPS_DTYPE_BF16, "BF16", 2, 2, {3, 3}, 0, NULL},
    {"t.i64", LLMOPS_DTYPE_I64, "I64", 8, 1, {3}, 0, NULL},
    {"t.i32", LLMOPS_DTYPE_I32, "I32", 4, 2, {2, 2}, 0, NULL},
    {"t.i16", LLMOPS_DTYPE_I16, "I16", 2, 1, {7}, 0, NULL},
    {"t.i8", LLMOPS_DTYPE_I8, "I8", 1, 1, {9}, 0, NULL},
    {"t.u8", LLMOPS_DTYPE_U8, "U8", 1, 2, {3, 5}, 0, NULL},
    {"t.bool", LLMOPS_DTYPE_BOOL, "BOOL", 1, 1, {6}, 0, NULL},
    {"t.u16", LLMOPS_DTYPE_U16, "U16", 2, 1, {4}, 0, NULL},
    {"t.u32", LLMOPS_DTYPE_U32, "U32", 4, 4, {1, 2, 1, 2}, 0, NULL},
    {"t.u64", LLMOPS_DTYPE_U64, "U64", 8, 1, {2}, 0, NULL},
    {"t.f8_e4m3", LLMOPS_DTYPE_F8_E4M3, "F8_E4M3", 1, 1, {3}, 0, NULL},
    {"t.f8_e5m2", LLMOPS_DTYPE_F8_E5M2, "F8_E5M2", 1, 1, {3}, 0, NULL},
    {"scalar.f32", LLMOPS_DTYPE_F32, "F32", 4, 0, {0}, 0, NULL},
    {"scalar.bool", LLMOPS_DTYPE_BOOL, "BOOL", 1, 0, {0}, 0, NULL},
    {"empty.f16", LLMOPS_DTYPE_F16, "F16", 2, 2, {0, 3}, 0, NULL},
    {"empty.i64", LLMOPS_DTYPE_I64, "I64", 8, 2, {4, 0}, 0, NULL},
    {"\xe6\x97\xa5.w", LLMOPS_DTYPE_F32, "F32", 4, 8, {1, 2, 1, 2, 1, 1, 2, 1}, 0, NULL},
};
#define N_T (sizeof g_t / sizeof g_t[0])

static const char *const k_meta[][2] = {{"format", "pt"}, {"utf8", "\xe6\x97\xa5\xe6\x9c\xac \xe2\x96\x81"}, {"empty", ""}};

static void build_tensors(void) {
    for (size_t i = 0; i < N_T; i++) {
        uint64_t n = 1;
        for (uint32_t d = 0; d < g_t[i].n_dims; d++) n *= g_t[i].shape[d];
        g_t[i].nbytes = n * g_t[i].elem;
        free(g_t[i].data);
        g_t[i].data = malloc(g_t[i].nbytes ? (size_t)g_t[i].nbytes : 1);
        if (!g_t[i].data) abort();
        rnd_bytes(g_t[i].data, (size_t)g_t[i].nbytes);
        if (g_t[i].type == LLMOPS_DTYPE_BOOL)
            for (uint64_t k = 0; k < g_t[i].nbytes; k++) g_t[i].data[k] &= 1;
    }
}

static void free_tensors(void) {
    for (size_t i = 0; i < N_T; i++) {
        free(g_t[i].data);
        g_t[i].data = NULL;
    }
}

/* Adds the metadata (when asked) and the first n tensors. */
static llmops_status add_first(llmops_st_writer *w, int with_meta, size_t n, llmops_error *err) {
    llmops_status s = LLMOPS_OK;
    for (size_t i = 0; with_meta && i < 3 && !s; i++) s = llmops_st_writer_set_metadata(w, k_meta[i][0], k_meta[i][1], err);
    for (size_t i = 0; i < n && !s; i++)
        s = llmops_st_writer_add(w, g_t[i].name, g_t[i].type, g_t[i].n_dims, g_t[i].shape, g_t[i].data, err);
    return s;
}

static llmops_status add_all(llmops_st_writer *w, int with_meta, llmops_error *err) {
    return add_first(w, with_meta, N_T, err);
}

/* Checks the header of a written file with jansson alone: spec layout, add order. */
static void check_header_independently(const uint8_t *file, size_t len, size_t first, size_t last, int with_meta) {
    CHECK(len >= 8);
    uint64_t hl;
    memcpy(&hl, file, 8);
    CHECK_MSG(hl % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)hl);
    CHECK(8 + hl <= len);
    json_error_t je;
    json_t *root = json_loadb((const char *)file + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    CHECK_MSG(root != NULL, "header is not JSON: %s", je.text);
    /* the padding is spaces, after the closing brace */
    size_t end = (size_t)hl;
    while (end > 0 && file[8 + end - 1] == ' ') end--;
    int ok = end > 0 && file[8 + end - 1] == '}' && (size_t)hl - end < 8;
    uint64_t off = 0;
    for (size_t i = first; i < last && ok; i++) {
        json_t *e = json_object_get(root, g_t[i].name);
        json_t *offs = json_object_get(e, "data_offsets"), *shape = json_object_get(e, "shape");
        ok = json_is_object(e) && json_object_size(e) == 3 &&
             strcmp(json_string_value(json_object_get(e, "dtype")), g_t[i].st_name) == 0 &&
             json_array_size(shape) == g_t[i].n_dims && json_array_size(offs) == 2 &&
             (uint64_t)json_integer_value(json_array_get(offs, 0)) == off &&
             (uint64_t)json_integer_value(json_array_get(offs, 1)) == off + g_t[i].nbytes;
        for (uint32_t d = 0; d < g_t[i].n_dims && ok; d++)
            ok = (uint64_t)json_integer_value(json_array_get(shape, d)) == g_t[i].shape[d];
        if (!ok) fprintf(stderr, "    header entry for %s is wrong\n", g_t[i].name);
        off += g_t[i].nbytes;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (ok && with_meta) {
        ok = json_object_size(meta) == 3;
        for (size_t i = 0; i < 3 && ok; i++)
            ok = strcmp(json_string_value(json_object_get(meta, k_meta[i][0])), k_meta[i][1]) == 0;
        /* __metadata__ comes first, as the reference writer puts it */
        ok = ok && strncmp((const char *)file + 8, "{\"__metadata__\":", 16) == 0;
    } else if (ok) {
        ok = meta == NULL;
    }
    ok = ok && json_object_size(root) == (last - first) + (with_meta ? 1 : 0);
    json_decref(root);
    CHECK_MSG(ok, "header does not match the spec layout");
    CHECK_EQ_INT(8 + hl + off, len);
}

/* Reads tensors [first, last) back through a parsed file and compares them. */
static void check_tensors(const llmops_safetensors *st, size_t first, size_t last) {
    CHECK_EQ_INT(llmops_safetensors_n_tensors(st), last - first);
    for (size_t i = first; i < last; i++) {
        const llmops_st_tensor *t = llmops_safetensors_find(st, g_t[i].name);
        CHECK_MSG(t != NULL, "tensor %s missing", g_t[i].name);
        CHECK_EQ_STR(t->name, g_t[i].name);
        CHECK_EQ_INT(t->type, g_t[i].type);
        CHECK_EQ_INT(t->n_dims, g_t[i].n_dims);
        for (uint32_t d = 0; d < 8; d++) CHECK_EQ_INT(t->shape[d], d < t->n_dims ? g_t[i].shape[d] : 1);
        CHECK_EQ_INT(t->end - t->begin, g_t[i].nbytes);
        CHECK_MSG(memcmp(llmops_safetensors_data(st, t), g_t[i].data, (size_t)g_t[i].nbytes) == 0, "%s: bytes differ",
                  g_t[i].name);
    }
    /* tensor_at walks the buffer in ascending offset order */
    for (size_t i = 1; i < llmops_safetensors_n_tensors(st); i++)
        CHECK(llmops_safetensors_tensor_at(st, i - 1)->end <= llmops_safetensors_tensor_at(st, i)->begin ||
              llmops_safetensors_tensor_at(st, i - 1)->begin == llmops_safetensors_tensor_at(st, i - 1)->end);
    CHECK(llmops_safetensors_tensor_at(st, last - first) == NULL);
    CHECK(llmops_safetensors_find(st, "nope") == NULL);
}

TEST(st_roundtrip_every_dtype) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    rng_seed(7);
    build_tensors();
    const char *path = test_tmpfile("rt.safetensors");
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    llmops_status s = add_all(w, 1, &err);
    if (!s) s = llmops_st_writer_set_metadata(w, "format", "pt", &err); /* replacing keeps the order */
    if (!s) s = llmops_st_writer_write(w, path, &err);
    llmops_st_writer_free(w);
    CHECK_OK(s, err);

    size_t len = 0;
    uint8_t *file = slurp(path, &len);
    CHECK(file != NULL);
    check_header_independently(file, len, 0, N_T, 1);
    llmops_free(file);
    if (test_failed()) return;

    llmops_safetensors *st = NULL;
    CHECK_OK(llmops_safetensors_open(path, &st, &err), err);
    CHECK_EQ_INT(llmops_safetensors_buffer_offset(st) % 8, 0);
    check_tensors(st, 0, N_T);
    if (test_failed()) return;
    CHECK_EQ_INT(llmops_safetensors_n_metadata(st), 3);
    for (size_t i = 0; i < 3; i++) {
        const char *k, *v;
        llmops_safetensors_metadata_at(st, i, &k, &v);
        CHECK_EQ_STR(k, k_meta[i][0]);
        CHECK_EQ_STR(v, k_meta[i][1]);
        CHECK_EQ_STR(llmops_safetensors_find_metadata(st, k_meta[i][0]), k_meta[i][1]);
    }
    const char *k, *v;
    llmops_safetensors_metadata_at(st, 3, &k, &v);
    CHECK(k == NULL && v == NULL);
    CHECK(llmops_safetensors_find_metadata(st, "nope") == NULL);
    llmops_safetensors_free(st);
    free_tensors();
    llmops_safetensors_free(NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(st_exact_bytes_and_padding) {
    llmops_error err = {0};
    static const float data[2] = {1.0f, -2.0f};
    uint64_t shape[1] = {2};
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    CHECK_OK(llmops_st_writer_add(w, "a", LLMOPS_DTYPE_F32, 1, shape, data, &err), err);
    const char *path = test_tmpfile("tiny.safetensors");
    llmops_status s = llmops_st_writer_write(w, path, &err);
    llmops_st_writer_free(w);
    CHECK_OK(s, err);
    /* 54 bytes of JSON, padded with 2 spaces to 56 */
    static const char hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    uint8_t want[8 + 56 + 8];
    CHECK_EQ_INT(sizeof hdr - 1, 56);
    memcpy(want, "\x38\0\0\0\0\0\0\0", 8);
    memcpy(want + 8, hdr, 56);
    memcpy(want + 64, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
    size_t n = 0;
    uint8_t *got = slurp(path, &n);
    CHECK(got != NULL);
    int same = n == sizeof want && memcmp(got, want, n) == 0;
    if (!same && got) fprintf(stderr, "    got header: %.*s\n", (int)(n > 8 ? n - 8 : 0), (const char *)got + 8);
    llmops_free(got);
    CHECK_MSG(same, "file differs from the spec layout (%zu bytes)", n);

    /* names of 1..16 bytes: the header is always padded to a multiple of 8 with spaces */
    for (int nl = 1; nl <= 16; nl++) {
        char name[32];
        memset(name, 'n', (size_t)nl);
        name[nl] = '\0';
        w = llmops_st_writer_create();
        CHECK(w != NULL);
        s = llmops_st_writer_add(w, name, LLMOPS_DTYPE_U8, 0, shape, data, &err);
        if (!s) s = llmops_st_writer_write(w, path, &err);
        llmops_st_writer_free(w);
        CHECK_OK(s, err);
        got = slurp(path, &n);
        CHECK(got != NULL);
        uint64_t hl;
        memcpy(&hl, got, 8);
        int ok = hl % 8 == 0 && n == 8 + hl + 1 && (got[8 + hl - 1] == ' ' || got[8 + hl - 1] == '}');
        llmops_free(got);
        CHECK_MSG(ok, "name length %d: header length %llu", nl, (unsigned long long)hl);
    }
    /* an empty writer gives a file with an empty header object */
    w = llmops_st_writer_create();
    CHECK(w != NULL);
    s = llmops_st_writer_write(w, path, &err);
    llmops_st_writer_free(w);
    CHECK_OK(s, err);
    got = slurp(path, &n);
    CHECK(got != NULL);
    same = n == 16 && memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0;
    llmops_free(got);
    CHECK(same);
    llmops_safetensors *st = NULL;
    CHECK_OK(llmops_safetensors_open(path, &st, &err), err);
    CHECK_EQ_INT(llmops_safetensors_n_tensors(st), 0);
    llmops_safetensors_free(st);
}

TEST(st_writer_rejects_bad_input) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    uint64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint8_t d[16] = {0};
    CHECK_OK(llmops_st_writer_add(w, "a", LLMOPS_DTYPE_U8, 1, shape, d, &err), err);
    CHECK_ERR(llmops_st_writer_add(w, "a", LLMOPS_DTYPE_U8, 1, shape, d, &err), LLMOPS_ERR_INVALID_ARG, err,
              "'a' added twice");
    CHECK_ERR(llmops_st_writer_add(w, "q", LLMOPS_DTYPE_Q4_0, 1, shape, d, &err), LLMOPS_ERR_INVALID_ARG, err,
              "cannot be stored in safetensors");
    CHECK_ERR(llmops_st_writer_add(w, "__metadata__", LLMOPS_DTYPE_U8, 1, shape, d, &err), LLMOPS_ERR_INVALID_ARG,
              err, "reserved");
    CHECK_ERR(llmops_st_writer_add(w, "", LLMOPS_DTYPE_U8, 1, shape, d, &err), LLMOPS_ERR_INVALID_ARG, err, "empty");
    CHECK_ERR(llmops_st_writer_add(w, "nine", LLMOPS_DTYPE_U8, 9, shape, d, &err), LLMOPS_ERR_INVALID_ARG, err,
              "9 dimensions");
    uint64_t huge[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    CHECK_ERR(llmops_st_writer_add(w, "h", LLMOPS_DTYPE_U8, 2, huge, d, &err), LLMOPS_ERR_INVALID_ARG, err,
              "element count overflows");
    llmops_st_writer_free(w);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- sharded folders ------------------------------------------------------------ */

static int file_exists(const char *dir, const char *name) {
    char *p = llmops_path_join(dir, name);
    int r = p && llmops_path_is_file(p);
    llmops_free(p);
    return r;
}

TEST(st_sharded_write_and_read) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    rng_seed(11);
    build_tensors();
    /* t.f64 48, t.f32 20, t.f16 12, t.bf16 18, t.i64 24, t.i32 16, t.i16 14, t.i8 9, t.u8 15, ... */
    size_t first[N_T + 1], n_shards = 0;
    uint64_t max = 40, cur = 0, total = 0;
    for (size_t i = 0; i < N_T; i++) { /* transformers' greedy rule, computed here independently */
        if (i == 0 || (cur > 0 && cur + g_t[i].nbytes > max)) {
            first[n_shards++] = i;
            cur = 0;
        }
        cur += g_t[i].nbytes;
        total += g_t[i].nbytes;
    }
    first[n_shards] = N_T;
    CHECK(n_shards >= 4);

    const char *dir = test_tmpfile("sharded");
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    llmops_status s = add_all(w, 1, &err);
    if (!s) s = llmops_st_writer_write_dir(w, dir, max, &err);
    llmops_st_writer_free(w);
    CHECK_OK(s, err);
    CHECK(!file_exists(dir, "model.safetensors"));
    CHECK(file_exists(dir, "model.safetensors.index.json"));

    /* each shard file, named as save_pretrained names them, holds its run of tensors */
    char name[64];
    for (size_t k = 0; k < n_shards; k++) {
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        CHECK_MSG(file_exists(dir, name), "%s missing", name);
        char *p = llmops_path_join(dir, name);
        size_t len = 0;
        uint8_t *file = slurp(p, &len);
        llmops_free(p);
        CHECK(file != NULL);
        check_header_independently(file, len, first[k], first[k + 1], 1);
        llmops_free(file);
        if (test_failed()) return;
    }
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", n_shards + 1, n_shards + 1);
    CHECK(!file_exists(dir, name));

    /* the index: total_size and a weight_map entry for every tensor */
    char *ip = llmops_path_join(dir, "model.safetensors.index.json");
    json_error_t je;
    json_t *index = json_load_file(ip, JSON_REJECT_DUPLICATES, &je);
    CHECK_MSG(index != NULL, "%s", je.text);
    json_t *map = json_object_get(index, "weight_map");
    int ok = (uint64_t)json_integer_value(json_object_get(json_object_get(index, "metadata"), "total_size")) == total &&
             json_object_size(map) == N_T;
    for (size_t k = 0; k < n_shards && ok; k++) {
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        for (size_t i = first[k]; i < first[k + 1] && ok; i++)
            ok = json_is_string(json_object_get(map, g_t[i].name)) &&
                 strcmp(json_string_value(json_object_get(map, g_t[i].name)), name) == 0;
    }
    json_decref(index);
    CHECK_MSG(ok, "index does not match the shards");

    /* read back through the folder and through the index path */
    for (int via = 0; via < 2; via++) {
        llmops_st_model *m = NULL;
        CHECK_OK(llmops_st_model_open(via ? ip : dir, &m, &err), err);
        CHECK_EQ_INT(llmops_st_model_n_shards(m), n_shards);
        CHECK_EQ_INT(llmops_st_model_n_tensors(m), N_T);
        for (size_t k = 0; k < n_shards; k++) {
            snprintf(name, sizeof name, "/model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
            const char *sp = llmops_st_model_shard_path(m, k);
            CHECK(strlen(sp) > strlen(name) && strcmp(sp + strlen(sp) - strlen(name), name) == 0);
            check_tensors(llmops_st_model_shard(m, k), first[k], first[k + 1]);
            if (test_failed()) return;
        }
        for (size_t i = 0; i < N_T; i++) {
            const llmops_safetensors *sh = NULL;
            const llmops_st_tensor *t = llmops_st_model_find(m, g_t[i].name, &sh);
            CHECK(t != NULL && sh != NULL);
            CHECK(memcmp(llmops_safetensors_data(sh, t), g_t[i].data, (size_t)g_t[i].nbytes) == 0);
        }
        /* tensor_at: shard order, then offset order */
        size_t shard_of_prev = 0;
        for (size_t i = 0; i < N_T; i++) {
            const llmops_safetensors *sh = NULL;
            const llmops_st_tensor *t = llmops_st_model_tensor_at(m, i, &sh);
            CHECK(t != NULL);
            size_t k = 0;
            while (k < n_shards && llmops_st_model_shard(m, k) != sh) k++;
            CHECK(k < n_shards && k >= shard_of_prev);
            shard_of_prev = k;
        }
        CHECK(llmops_st_model_tensor_at(m, N_T, NULL) == NULL);
        CHECK(llmops_st_model_find(m, "nope", NULL) == NULL);
        llmops_st_model_free(m);
    }
    llmops_free(ip);

    /* no limit: one model.safetensors, opened as a folder and as a file */
    const char *one = test_tmpfile("single");
    w = llmops_st_writer_create();
    CHECK(w != NULL);
    s = add_all(w, 0, &err);
    if (!s) s = llmops_st_writer_write_dir(w, one, 0, &err);
    llmops_st_writer_free(w);
    CHECK_OK(s, err);
    CHECK(file_exists(one, "model.safetensors"));
    CHECK(!file_exists(one, "model.safetensors.index.json"));
    char *fp = llmops_path_join(one, "model.safetensors");
    for (int via = 0; via < 2; via++) {
        llmops_st_model *m = NULL;
        CHECK_OK(llmops_st_model_open(via ? fp : one, &m, &err), err);
        CHECK_EQ_INT(llmops_st_model_n_shards(m), 1);
        check_tensors(llmops_st_model_shard(m, 0), 0, N_T);
        llmops_st_model_free(m);
        if (test_failed()) return;
    }
    llmops_free(fp);
    free_tensors();
    llmops_st_model_free(NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- hostile headers ----------------------------------------------------------- */

#define ENTRY(name, dtype, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

TEST(st_bad_header_length) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    uint8_t d[32] = {0};
    CHECK_ERR(parse_bytes(d, 5, &err), LLMOPS_ERR_FORMAT, err, "t.st: 5 bytes is too short");
    uint64_t hl = 1000;
    memcpy(d, &hl, 8);
    memcpy(d + 8, "{}", 2);
    CHECK_ERR(parse_bytes(d, 18, &err), LLMOPS_ERR_FORMAT, err,
              "offset 0: header length 1000 runs past the end of the 18-byte file");
    hl = 11;
    memcpy(d, &hl, 8);
    CHECK_ERR(parse_bytes(d, 18, &err), LLMOPS_ERR_FORMAT, err, "header length 11 runs past the end");
    hl = LLMOPS_ST_MAX_HEADER + 1;
    memcpy(d, &hl, 8);
    CHECK_ERR(parse_bytes(d, 32, &err), LLMOPS_ERR_FORMAT, err,
              "offset 0: header length 100000001 exceeds the 100000000-byte limit");
    hl = UINT64_MAX;
    memcpy(d, &hl, 8);
    CHECK_ERR(parse_bytes(d, 32, &err), LLMOPS_ERR_FORMAT, err, "header length 18446744073709551615 exceeds");
    hl = 0;
    memcpy(d, &hl, 8);
    CHECK_ERR(parse_bytes(d, 32, &err), LLMOPS_ERR_FORMAT, err, "offset 8: header does not start with '{'");
    CHECK_ERR(parse_hdr("[1, 2]", 0, &err), LLMOPS_ERR_FORMAT, err, "offset 8: header does not start with '{'");
    CHECK_ERR(parse_hdr(" {}", 0, &err), LLMOPS_ERR_FORMAT, err, "offset 8: header does not start with '{'");
    CHECK_OK(parse_hdr("{}", 0, &err), err);
    CHECK_OK(parse_hdr("{}      ", 0, &err), err);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(st_bad_json) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    /* not JSON: the message says where, line:col */
    CHECK_ERR(parse_hdr("{\n  \"a\": nope}", 0, &err), LLMOPS_ERR_FORMAT, err, "t.st: header:2:");
    CHECK_ERR(parse_hdr("{\n  \"a\": nope}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "t.st: header:2:11: invalid token near 'nope'");
    CHECK_ERR(parse_hdr("{\"a\": 1", 0, &err), LLMOPS_ERR_FORMAT, err, "t.st: header:1:");
    CHECK_ERR(parse_hdr("{} trailing", 0, &err), LLMOPS_ERR_FORMAT, err, "t.st: header:1:");
    CHECK_ERR(parse_hdr("{\"a\": \"\xff\xfe\"}", 0, &err), LLMOPS_ERR_FORMAT, err, "t.st: header:1:");
    /* duplicate keys, at the top and inside __metadata__ */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[1]", 0, 1) ",\n" ENTRY("a", "U8", "[1]", 1, 2) "}", 2, &err),
              LLMOPS_ERR_FORMAT, err, "t.st: header:2:");
    CHECK(strstr(err.msg, "duplicate") != NULL);
    CHECK_ERR(parse_hdr("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "duplicate");
    /* well-formed JSON of the wrong shape */
    CHECK_ERR(parse_hdr("{\"a\": 1}", 0, &err), LLMOPS_ERR_FORMAT, err, "tensor 'a' is integer, expected an object");
    CHECK_ERR(parse_hdr("{\"a\": [1]}", 0, &err), LLMOPS_ERR_FORMAT, err, "tensor 'a' is array");
    CHECK_ERR(parse_hdr("{\"__metadata__\": 1}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "\"__metadata__\" must be an object");
    CHECK_ERR(parse_hdr("{\"__metadata__\": {\"k\": 1}}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "__metadata__.k must be a string, got integer");
    CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":0}}", 1, &err),
              LLMOPS_ERR_FORMAT, err, "tensor 'a' has unknown field 'x'");
    CHECK_ERR(parse_hdr("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': \"dtype\" must be a string");
    CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': \"shape\" must be an array");
    CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': \"data_offsets\" must be [begin, end] integers");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[1]", 0, 1.0) "}", 1, &err), LLMOPS_ERR_FORMAT, err,
              "\"data_offsets\" must be");
    CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, &err),
              LLMOPS_ERR_FORMAT, err, "\"data_offsets\" must be");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(st_bad_tensor_entries) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    CHECK_OK(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 8, &err), err);
    /* unknown dtypes, including a lower-case spelling */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F9", "[1]", 0, 1) "}", 1, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "tensor 'a': unknown dtype 'F9'");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "f32", "[1]", 0, 4) "}", 4, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "unknown dtype 'f32'");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "Q4_0", "[32]", 0, 18) "}", 18, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "unknown dtype 'Q4_0'");
    /* shape and offsets disagree */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': F32 × 3 elements needs 12 bytes but data_offsets span 8");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[]", 0, 0) "}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "needs 4 bytes but data_offsets span 0");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[4611686018427387904]", 0, 0) "}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a'");
    /* negative and non-integer shapes */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[-1]", 0, 0) "}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': shape[0] must be a non-negative integer");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[2.5]", 0, 2) "}", 2, &err), LLMOPS_ERR_FORMAT, err,
              "shape[0] must be a non-negative integer");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[2, \"3\"]", 0, 6) "}", 6, &err), LLMOPS_ERR_FORMAT, err,
              "shape[1] must be a non-negative integer");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[2, null]", 0, 2) "}", 2, &err), LLMOPS_ERR_FORMAT, err,
              "shape[1] must be");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "tensor 'a' has 9 dimensions (at most 8)");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[4294967296, 4294967296]", 0, 0) "}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': element count overflows");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[99999999999999999999]", 0, 0) "}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "t.st: header:1:");
    /* offsets out of order, past the buffer */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[0]", 8, 0) "}", 8, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': data_offsets [8, 0] are not ordered");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "U8", "[1]", -1, 0) "}", 8, &err), LLMOPS_ERR_FORMAT, err, "[-1, 0]");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 4, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'a': bytes [0, 8) run past the 4-byte buffer (file offset");
    /* the ranges must tile the buffer: overlaps, holes, an uncovered tail */
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}", 12, &err),
              LLMOPS_ERR_FORMAT, err, "tensor 'b' bytes [4, 12) overlap 'a' which ends at 8");
    CHECK_ERR(parse_hdr("{" ENTRY("b", "F32", "[2]", 4, 12) "," ENTRY("a", "F32", "[2]", 0, 8) "}", 12, &err),
              LLMOPS_ERR_FORMAT, err, "tensor 'b' bytes [4, 12) overlap 'a'");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 0, 8) "}", 8, &err),
              LLMOPS_ERR_FORMAT, err, "overlap");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[1]", 12, 16) "}", 16, &err),
              LLMOPS_ERR_FORMAT, err, "hole in the byte buffer: bytes [8, 12) belong to no tensor (before 'b')");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[1]", 4, 8) "}", 8, &err), LLMOPS_ERR_FORMAT, err,
              "hole in the byte buffer: bytes [0, 4)");
    CHECK_ERR(parse_hdr("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 12, &err), LLMOPS_ERR_FORMAT, err,
              "the byte buffer has 12 bytes but the tensors cover only 8");
    CHECK_ERR(parse_hdr("{\"__metadata__\":{}}", 3, &err), LLMOPS_ERR_FORMAT, err,
              "the byte buffer has 3 bytes but the tensors cover only 0");
    /* zero-size tensors sit anywhere on a boundary */
    CHECK_OK(parse_hdr("{" ENTRY("z", "F32", "[0]", 0, 0) "," ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("y", "U8", "[0, 5]",
                                                                                                     8, 8) "}",
                       8, &err),
             err);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(st_nul_in_names) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    /* names are C strings: a key with a NUL byte cannot be one (nor is "__metadata__\0x"
     * the metadata); the JSON layer refuses such keys, saying where */
    CHECK_ERR(parse_hdr("{\"__metadata__\\u0000x\": {}}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "t.st: header:1:22: NUL byte in object key");
    CHECK_ERR(parse_hdr("{" ENTRY("a\\u0000x", "U8", "[1]", 0, 1) "," ENTRY("a\\u0000y", "U8", "[1]", 1, 2) "}", 2,
                        &err),
              LLMOPS_ERR_FORMAT, err, "t.st: header:1:11: NUL byte in object key");
    CHECK_ERR(parse_hdr("{\"__metadata__\": {\"k\\u0000\": \"v\"}}", 0, &err), LLMOPS_ERR_FORMAT, err,
              "NUL byte in object key");
    /* a NUL inside a metadata value is kept to the first NUL, like any C string */
    CHECK_OK(parse_hdr("{\"__metadata__\": {\"k\": \"v\\u0000w\"}}", 0, &err), err);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(st_truncated_at_every_byte) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    rng_seed(3);
    build_tensors();
    const char *path = test_tmpfile("small.safetensors");
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    llmops_status s = llmops_st_writer_set_metadata(w, "format", "pt", &err);
    for (size_t i = 0; i < 6 && !s; i++)
        s = llmops_st_writer_add(w, g_t[i].name, g_t[i].type, g_t[i].n_dims, g_t[i].shape, g_t[i].data, &err);
    if (!s) s = llmops_st_writer_write(w, path, &err);
    llmops_st_writer_free(w);
    free_tensors();
    CHECK_OK(s, err);
    size_t len = 0;
    uint8_t *file = slurp(path, &len);
    CHECK(file != NULL);
    int bad = 0;
    for (size_t n = 0; n <= len && !bad; n++) {
        s = parse_bytes(file, n, &err);
        bad = n == len ? s != LLMOPS_OK : (s != LLMOPS_ERR_FORMAT || !strstr(err.msg, "t.st"));
        if (bad) fprintf(stderr, "    cut at %zu of %zu: %s: %s\n", n, len, llmops_status_str(s), err.msg);
    }
    /* and a few thousand random bit flips: any status, no crash, no leak */
    uint8_t *m = malloc(len);
    CHECK(m != NULL);
    for (int i = 0; i < 3000 && !bad; i++) {
        memcpy(m, file, len);
        size_t bit = (size_t)(rnd() % (len * 8));
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        parse_bytes(m, len, &err);
    }
    free(m);
    llmops_free(file);
    CHECK(!bad);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- hostile indexes ------------------------------------------------------------ */

static llmops_status write_shard(const char *dir, const char *name, const char *const *tensors, size_t n,
                                 llmops_error *err) {
    static const uint8_t data[4] = {1, 2, 3, 4};
    uint64_t shape[1] = {4};
    llmops_st_writer *w = llmops_st_writer_create();
    if (!w) return LLMOPS_ERR_NOMEM;
    llmops_status s = LLMOPS_OK;
    for (size_t i = 0; i < n && !s; i++) s = llmops_st_writer_add(w, tensors[i], LLMOPS_DTYPE_U8, 1, shape, data, err);
    char *p = llmops_path_join(dir, name);
    if (!s) s = p ? llmops_st_writer_write(w, p, err) : LLMOPS_ERR_NOMEM;
    llmops_free(p);
    llmops_st_writer_free(w);
    return s;
}

static llmops_status open_with_index(const char *dir, const char *index_json, llmops_error *err) {
    char *p = llmops_path_join(dir, "model.safetensors.index.json");
    if (!p || !write_plain(p, index_json, strlen(index_json))) abort();
    llmops_free(p);
    llmops_st_model *m = NULL;
    llmops_error_clear(err);
    llmops_status s = llmops_st_model_open(dir, &m, err);
    if (s == LLMOPS_OK) llmops_st_model_free(m);
    else if (m != NULL || !err->msg[0]) abort();
    return s;
}

TEST(st_bad_index) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    const char *dir = test_tmpfile("idx");
    CHECK_OK(llmops_mkdirs(dir, &err), err);
    static const char *const s1[] = {"a", "b"}, *const s2[] = {"c", "a"};
    CHECK_OK(write_shard(dir, "s1.safetensors", s1, 2, &err), err);
    CHECK_OK(write_shard(dir, "s2.safetensors", s2, 2, &err), err);
    CHECK_OK(write_shard(dir, "s3.safetensors", s2 + 0, 1, &err), err);
    CHECK_OK(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"s3.safetensors\"}}", &err), err);
    /* a missing shard: named in the error */
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"x\": \"gone.safetensors\"}}", &err),
              LLMOPS_ERR_IO, err, "gone.safetensors: cannot open");
    /* a shard that lacks the tensor the map puts there */
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"zzz\": \"s1.safetensors\"}}", &err),
              LLMOPS_ERR_FORMAT, err, "weight_map puts 'zzz' in s1.safetensors, which does not hold it");
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"c\": \"s1.safetensors\"}}", &err), LLMOPS_ERR_FORMAT, err,
              "'c' in s1.safetensors");
    /* shard names must be plain file names */
    static const char *const bad_names[] = {"sub/s1.safetensors", "../idx/s1.safetensors", "/etc/passwd", "..", ""};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char json[256], needle[128];
        snprintf(json, sizeof json, "{\"weight_map\": {\"a\": \"%s\"}}", bad_names[i]);
        snprintf(needle, sizeof needle, "weight_map.a: shard name '%s' must be a plain file name", bad_names[i]);
        CHECK_ERR(open_with_index(dir, json, &err), LLMOPS_ERR_FORMAT, err, needle);
    }
    /* a tensor in two shards */
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"s2.safetensors\"}}", &err),
              LLMOPS_ERR_FORMAT, err, "tensor 'a' is in both");
    /* malformed index files */
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\",}}", &err), LLMOPS_ERR_FORMAT, err,
              "model.safetensors.index.json:1:");
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": [\"s1.safetensors\"]}", &err), LLMOPS_ERR_FORMAT, err,
              "\"weight_map\" must be an object");
    CHECK_ERR(open_with_index(dir, "{\"metadata\": {}}", &err), LLMOPS_ERR_FORMAT, err,
              "\"weight_map\" must be an object");
    CHECK_ERR(open_with_index(dir, "[]", &err), LLMOPS_ERR_FORMAT, err, "\"weight_map\" must be an object");
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {}}", &err), LLMOPS_ERR_FORMAT, err, "weight_map is empty");
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": 1}}", &err), LLMOPS_ERR_FORMAT, err,
              "weight_map.a must be a file name");
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"a\": \"s1.safetensors\"}}", &err),
              LLMOPS_ERR_FORMAT, err, "duplicate");
    /* a broken shard: its own error comes through */
    CHECK(write_plain(test_tmpfile("idx/bad.safetensors"), "\x02\0\0\0\0\0\0\0[]", 10));
    CHECK_ERR(open_with_index(dir, "{\"weight_map\": {\"a\": \"bad.safetensors\"}}", &err), LLMOPS_ERR_FORMAT, err,
              "bad.safetensors: offset 8: header does not start with '{'");
    /* a folder with neither file */
    llmops_st_model *m = NULL;
    const char *empty = test_tmpfile("empty");
    CHECK_OK(llmops_mkdirs(empty, &err), err);
    CHECK_ERR(llmops_st_model_open(empty, &m, &err), LLMOPS_ERR_NOT_FOUND, err,
              "no model.safetensors or model.safetensors.index.json");
    CHECK(m == NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- allocation failure ---------------------------------------------------------- */

/*
 * Every injected failure must come back as NOMEM — including those inside
 * jansson, which src/base/json.c watches because jansson itself does not always
 * report them (its lexer can drop a character it failed to store).
 */
static int is_nomem(llmops_status s, int fired, const llmops_error *err) {
    (void)fired;
    (void)err;
    return s == LLMOPS_ERR_NOMEM;
}

/* Reading back what was just written under the same rule. */
static int is_nomem_roundtrip(llmops_status s, int fired, const llmops_error *err) {
    return is_nomem(s, fired, err);
}

TEST(st_alloc_failure_parse) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    rng_seed(5);
    build_tensors();
    const char *path = test_tmpfile("af.safetensors");
    llmops_st_writer *w = llmops_st_writer_create();
    CHECK(w != NULL);
    llmops_status s = add_all(w, 1, &err);
    if (!s) s = llmops_st_writer_write(w, path, &err);
    llmops_st_writer_free(w);
    free_tensors();
    CHECK_OK(s, err);
    size_t len = 0;
    uint8_t *file = slurp(path, &len);
    CHECK(file != NULL);
    int done = 0, failures = 0;
    for (long n = 0; n < 5000 && !done; n++) {
        llmops_safetensors *st = NULL;
        llmops_alloc_fail_nth(n);
        s = llmops_safetensors_parse(file, len, "a.st", &st, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        if (s == LLMOPS_OK) {
            CHECK_EQ_INT(llmops_safetensors_n_tensors(st), N_T);
            CHECK_EQ_INT(llmops_safetensors_n_metadata(st), 3);
            llmops_safetensors_free(st);
            done = !fired;
        } else {
            CHECK(st == NULL);
            CHECK_MSG(is_nomem(s, fired, &err), "n=%ld: %s: %s", n, llmops_status_str(s), err.msg);
            CHECK(strstr(err.msg, "a.st") != NULL);
            failures++;
        }
        CHECK_MSG(llmops_alloc_live() == live + 1, "n=%ld: %ld live allocations, expected %ld", n,
                  llmops_alloc_live(), live + 1);
    }
    llmops_free(file);
    CHECK(done);
    CHECK(failures > 10); /* jansson's allocations are ours too */
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

#define N_AF 4

TEST(st_alloc_failure_write_and_open) {
    long live = llmops_alloc_live();
    rng_seed(6);
    build_tensors();
    const char *dir = test_tmpfile("afw");
    int done = 0, failures = 0;
    for (long n = 0; n < 20000 && !done; n++) {
        llmops_error err = {0};
        llmops_alloc_fail_nth(n);
        llmops_status s = LLMOPS_OK;
        llmops_st_writer *w = llmops_st_writer_create();
        if (!w) s = LLMOPS_ERR_NOMEM;
        if (!s) s = add_first(w, 1, N_AF, &err); /* shards: f64 | f32 f16 bf16 */
        if (!s) s = llmops_st_writer_write_dir(w, dir, 64, &err);
        llmops_st_model *m = NULL;
        if (!s) s = llmops_st_model_open(dir, &m, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        if (!s) {
            CHECK_EQ_INT(llmops_st_model_n_shards(m), 2);
            CHECK_EQ_INT(llmops_st_model_n_tensors(m), N_AF);
            for (size_t i = 0; i < N_AF; i++) CHECK(llmops_st_model_find(m, g_t[i].name, NULL) != NULL);
        }
        llmops_st_model_free(m);
        llmops_st_writer_free(w);
        CHECK_MSG(llmops_alloc_live() == live, "n=%ld: %ld live allocations, expected %ld (%s)", n,
                  llmops_alloc_live(), live, err.msg);
        if (s == LLMOPS_OK) {
            done = !fired;
        } else {
            CHECK_MSG(is_nomem_roundtrip(s, fired, &err), "n=%ld: %s: %s", n, llmops_status_str(s), err.msg);
            failures++;
        }
    }
    free_tensors();
    CHECK(done);
    CHECK(failures > 20);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- a real checkpoint ------------------------------------------------------------ */

TEST(st_tiny_random_gpt2) {
    const char *path = test_asset("hf/tiny-random-gpt2/model.safetensors");
    if (!path) SKIP("hf/tiny-random-gpt2 not found");
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_safetensors *st = NULL;
    CHECK_OK(llmops_safetensors_open(path, &st, &err), err);
    /* counts and ranges from tests/oracle/modelfile.py, an independent reader */
    CHECK_EQ_INT(llmops_safetensors_n_tensors(st), 64);
    CHECK_EQ_STR(llmops_safetensors_find_metadata(st, "format"), "pt");
    const llmops_st_tensor *t = llmops_safetensors_find(st, "transformer.h.0.attn.c_attn.weight");
    CHECK(t != NULL);
    CHECK_EQ_INT(t->type, LLMOPS_DTYPE_F32);
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK_EQ_INT(t->shape[0], 32);
    CHECK_EQ_INT(t->shape[1], 96);
    CHECK_EQ_INT(t->begin, 384);
    CHECK_EQ_INT(t->end, 12672);
    t = llmops_safetensors_tensor_at(st, 0);
    CHECK_EQ_STR(t->name, "transformer.h.0.attn.c_attn.bias");
    CHECK_EQ_INT(t->begin, 0);
    llmops_safetensors_free(st);

    llmops_st_model *m = NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    CHECK_OK(llmops_st_model_open(dir, &m, &err), err);
    CHECK_EQ_INT(llmops_st_model_n_tensors(m), 64);
    CHECK_EQ_INT(llmops_st_model_n_shards(m), 1);
    llmops_st_model_free(m);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}
