/*
 * GGUF reader and writer: round trips of every value type and tensor type, the byte
 * layout checked against the GGUF spec by hand, hostile inputs (each error names its
 * offset or the thing at fault), allocation failure, and llama.cpp's own vocab files.
 *
 * The expected values below come from the GGUF spec (ggml docs/gguf.md, ggml-common.h
 * block layouts), not from the code under test.
 */
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/gguf.h"

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

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

/* A byte builder for hand-made files (tests only; fixed capacity). */
typedef struct {
    uint8_t d[1 << 17];
    size_t n;
} bb;

static void b_raw(bb *b, const void *p, size_t n) {
    if (b->n + n > sizeof b->d) abort();
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void b_u8(bb *b, uint8_t v) { b_raw(b, &v, 1); }
static void b_u32(bb *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    b_raw(b, x, 4);
}
static void b_u64(bb *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_strn(bb *b, const char *s, size_t n) {
    b_u64(b, n);
    b_raw(b, s, n);
}
static void b_str(bb *b, const char *s) { b_strn(b, s, strlen(s)); }
static void b_zeros(bb *b, size_t n) {
    static const uint8_t z[256];
    while (n) {
        size_t k = n > sizeof z ? sizeof z : n;
        b_raw(b, z, k);
        n -= k;
    }
}
static void b_pad(bb *b, size_t align) { b_zeros(b, (align - b->n % align) % align); }
static void b_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}

/*
 * Parses a private, exactly sized copy of the bytes (so ASan sees any read past the
 * end), walks the result when it parses, and frees everything.
 */
static size_t walk_gguf(const llmops_gguf *g);

static llmops_status parse_bytes(const void *data, size_t n, llmops_error *err) {
    void *copy = malloc(n ? n : 1);
    if (!copy) abort();
    if (n) memcpy(copy, data, n);
    llmops_gguf *g = NULL;
    llmops_error_clear(err);
    llmops_status st = llmops_gguf_parse(copy, n, "t.gguf", &g, err);
    if (st == LLMOPS_OK) {
        volatile size_t sink = walk_gguf(g);
        (void)sink;
        llmops_gguf_free(g);
    } else if (g != NULL || err->msg[0] == '\0' || err->code != st) {
        abort(); /* a failure leaves no object and always says why */
    }
    free(copy);
    return st;
}

static llmops_status parse_bb(const bb *b, llmops_error *err) { return parse_bytes(b->d, b->n, err); }

static size_t walk_value(const llmops_gguf_value *v) {
    size_t s = v->type;
    if (v->type == LLMOPS_GGUF_STRING) {
        if (v->v.str.len) s += (uint8_t)v->v.str.data[0] + (uint8_t)v->v.str.data[v->v.str.len - 1];
    } else if (v->type == LLMOPS_GGUF_ARRAY) {
        const llmops_gguf_array *a = &v->v.arr;
        for (uint64_t i = 0; i < a->n; i++) {
            if (a->type == LLMOPS_GGUF_STRING) s += (size_t)a->strs[i].len;
            else if (a->type == LLMOPS_GGUF_ARRAY) s += walk_value(&a->items[i]);
            else s += (size_t)llmops_gguf_arr_u64(a, i) + (size_t)llmops_gguf_arr_f64(a, i);
        }
    }
    return s;
}

/* Touches every key, value and the first and last byte of every tensor. */
static size_t walk_gguf(const llmops_gguf *g) {
    size_t s = llmops_gguf_version(g) + llmops_gguf_alignment(g);
    for (size_t i = 0; i < llmops_gguf_n_kv(g); i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        s += (size_t)kv->key.len + walk_value(&kv->value);
    }
    for (size_t i = 0; i < llmops_gguf_n_tensors(g); i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        const uint8_t *p = llmops_gguf_tensor_data(g, t);
        if (t->nbytes) s += p[0] + p[t->nbytes - 1];
    }
    return s;
}

static uint8_t *slurp(const char *path, size_t *len) {
    char *d = NULL;
    llmops_error err = {0};
    if (llmops_file_read_all(path, (size_t)1 << 30, &d, len, &err)) return NULL;
    return (uint8_t *)d;
}

/* ---- the GGUF spec's tables (ggml-common.h), kept apart from src/tensor/dtype.c --- */

typedef struct {
    int id;
    const char *name;
    uint32_t block, bytes;
} spec_type;

static const spec_type k_spec_types[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292}, {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},      {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
};
#define N_SPEC_TYPES (sizeof k_spec_types / sizeof k_spec_types[0])

static const spec_type *spec_type_get(int id) {
    for (size_t i = 0; i < N_SPEC_TYPES; i++)
        if (k_spec_types[i].id == id) return &k_spec_types[i];
    return NULL;
}

TEST(gguf_type_tables_match_spec) {
    /* every type the library stores in GGUF is in the spec table, with the same layout */
    int n_in_gguf = 0;
    for (int id = 0; id < 200; id++) {
        const llmops_dtype_info *ti = llmops_dtype_get(id);
        if (!ti || !ti->in_gguf) continue;
        n_in_gguf++;
        const spec_type *sp = spec_type_get(id);
        CHECK_MSG(sp != NULL, "type id %d (%s) is not in the spec table", id, ti->name);
        CHECK_EQ_STR(ti->name, sp->name);
        CHECK_EQ_INT(ti->block_size, sp->block);
        CHECK_EQ_INT(ti->type_size, sp->bytes);
    }
    CHECK_EQ_INT(n_in_gguf, N_SPEC_TYPES);
    static const char *const names[] = {"uint8", "int8",    "uint16", "int16", "uint32", "int32",  "float32",
                                        "bool",  "string",  "array",  "uint64", "int64", "float64"};
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    for (int t = 0; t <= 12; t++) {
        CHECK_EQ_STR(llmops_gguf_type_name(t), names[t]);
        CHECK_EQ_INT(llmops_gguf_type_size(t), sizes[t]);
    }
    CHECK_EQ_STR(llmops_gguf_type_name(13), "?");
    CHECK_EQ_STR(llmops_gguf_type_name(-1), "?");
    CHECK_EQ_INT(llmops_gguf_type_size(13), 0);
}

/* ---- round trip ------------------------------------------------------------------- */

#define MAX_KV 96

typedef struct {
    llmops_gguf_str key;
    llmops_gguf_value v;
    int typed; /* set through a typed setter rather than set_value */
} exp_kv;

static exp_kv g_kv[MAX_KV];
static size_t g_nkv;

/* backing storage for array values */
static uint8_t g_arr_data[13][8 * 7];
static llmops_gguf_value g_nest_items[4], g_nest_inner[1], g_chain[8];
static uint32_t g_nest_u32[3] = {1, 0xdeadbeefu, 3};
static float g_nest_f32[2] = {0.5f, -2.0f};
static const llmops_gguf_str g_nest_strs[2] = {{1, "a"}, {3, "b\0c"}};
static const uint8_t g_chain_leaf[2] = {1, 2};
static const llmops_gguf_str g_strs[6] = {
    {0, ""}, {4, "\xe2\x96\x81t"}, {6, "\xe6\x97\xa5\xe6\x9c\xac"}, {3, "a\0b"}, {1, "x"}, {4, "\xf0\x9f\xa6\x99"}};
static char g_long_str[300];
#define UTF8_SAMPLE "h\xc3\xa9llo \xe2\x96\x81\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa6\x99"

static void add_exp(const char *key, llmops_gguf_value v, int typed) {
    if (g_nkv >= MAX_KV) abort();
    g_kv[g_nkv].key = (llmops_gguf_str){strlen(key), key};
    g_kv[g_nkv].v = v;
    g_kv[g_nkv].typed = typed;
    g_nkv++;
}

static llmops_gguf_value scalar_u(llmops_gguf_type t, uint64_t u) {
    llmops_gguf_value v = {.type = t};
    v.v.u64 = u;
    return v;
}
static llmops_gguf_value scalar_i(llmops_gguf_type t, int64_t i) {
    llmops_gguf_value v = {.type = t};
    v.v.i64 = i;
    return v;
}
static llmops_gguf_value scalar_f(llmops_gguf_type t, double f) {
    llmops_gguf_value v = {.type = t};
    v.v.f64 = f;
    return v;
}
static llmops_gguf_value str_val(const char *s, size_t n) {
    llmops_gguf_value v = {.type = LLMOPS_GGUF_STRING};
    v.v.str = (llmops_gguf_str){n, s};
    return v;
}
static llmops_gguf_value arr_val(llmops_gguf_type et, uint64_t n, const void *data, const llmops_gguf_str *strs,
                                 const llmops_gguf_value *items) {
    llmops_gguf_value v = {.type = LLMOPS_GGUF_ARRAY};
    v.v.arr.type = et;
    v.v.arr.n = n;
    v.v.arr.data = data;
    v.v.arr.strs = strs;
    v.v.arr.items = items;
    return v;
}

/* The key/values of the round-trip file, general.alignment first. */
static void build_expected_kvs(uint32_t align) {
    g_nkv = 0;
    add_exp("general.alignment", scalar_u(LLMOPS_GGUF_UINT32, align), 1);
    /* every scalar type at its extremes */
    add_exp("s.u8", scalar_u(LLMOPS_GGUF_UINT8, 255), 0);
    add_exp("s.i8", scalar_i(LLMOPS_GGUF_INT8, -128), 0);
    add_exp("s.u16", scalar_u(LLMOPS_GGUF_UINT16, 65535), 0);
    add_exp("s.i16", scalar_i(LLMOPS_GGUF_INT16, -32768), 0);
    add_exp("s.u32", scalar_u(LLMOPS_GGUF_UINT32, 0xffffffffu), 0);
    add_exp("s.i32", scalar_i(LLMOPS_GGUF_INT32, INT32_MIN), 0);
    add_exp("s.f32", scalar_f(LLMOPS_GGUF_FLOAT32, -1.5), 0);
    add_exp("s.f32_denormal", scalar_f(LLMOPS_GGUF_FLOAT32, (double)1e-40f), 0);
    add_exp("s.bool_true", scalar_u(LLMOPS_GGUF_BOOL, 1), 0);
    add_exp("s.bool_false", scalar_u(LLMOPS_GGUF_BOOL, 0), 0);
    add_exp("s.u64", scalar_u(LLMOPS_GGUF_UINT64, UINT64_MAX), 0);
    add_exp("s.i64", scalar_i(LLMOPS_GGUF_INT64, INT64_MIN), 0);
    add_exp("s.f64", scalar_f(LLMOPS_GGUF_FLOAT64, 3.141592653589793), 0);
    /* strings: empty, non-ASCII, an embedded NUL, long */
    add_exp("str.empty", str_val("", 0), 0);
    add_exp("str.utf8", str_val(UTF8_SAMPLE, sizeof UTF8_SAMPLE - 1), 0);
    add_exp("str.nul", str_val("a\0b", 3), 0);
    memset(g_long_str, 'z', sizeof g_long_str);
    add_exp("str.long", str_val(g_long_str, sizeof g_long_str), 0);
    /* an array of each scalar type, random contents (bools 0/1) */
    static const char *const arr_keys[13] = {"a.u8",  "a.i8",  "a.u16", "a.i16", "a.u32", "a.i32", "a.f32",
                                             "a.bool", "",     "",      "a.u64", "a.i64", "a.f64"};
    for (int t = 0; t <= 12; t++) {
        size_t es = llmops_gguf_type_size(t);
        if (!es) continue;
        rnd_bytes(g_arr_data[t], 7 * es);
        if (t == LLMOPS_GGUF_BOOL)
            for (int i = 0; i < 7; i++) g_arr_data[t][i] &= 1;
        add_exp(arr_keys[t], arr_val((llmops_gguf_type)t, 7, g_arr_data[t], NULL, NULL), 0);
    }
    add_exp("a.str", arr_val(LLMOPS_GGUF_STRING, 6, NULL, g_strs, NULL), 0);
    /* arrays of arrays: [[u32 ×3], [str ×2], [] (int8), [[f32 ×2]]] */
    g_nest_items[0] = arr_val(LLMOPS_GGUF_UINT32, 3, g_nest_u32, NULL, NULL);
    g_nest_items[1] = arr_val(LLMOPS_GGUF_STRING, 2, NULL, g_nest_strs, NULL);
    g_nest_items[2] = arr_val(LLMOPS_GGUF_INT8, 0, NULL, NULL, NULL);
    g_nest_inner[0] = arr_val(LLMOPS_GGUF_FLOAT32, 2, g_nest_f32, NULL, NULL);
    g_nest_items[3] = arr_val(LLMOPS_GGUF_ARRAY, 1, NULL, NULL, g_nest_inner);
    add_exp("a.nested", arr_val(LLMOPS_GGUF_ARRAY, 4, NULL, NULL, g_nest_items), 0);
    /* eight levels of nesting: the deepest the reader accepts */
    g_chain[7] = arr_val(LLMOPS_GGUF_UINT8, 2, g_chain_leaf, NULL, NULL);
    for (int i = 6; i >= 0; i--) g_chain[i] = arr_val(LLMOPS_GGUF_ARRAY, 1, NULL, NULL, &g_chain[i + 1]);
    add_exp("a.deep8", g_chain[0], 0);
    /* empty arrays of every kind */
    add_exp("a.empty_u32", arr_val(LLMOPS_GGUF_UINT32, 0, NULL, NULL, NULL), 0);
    add_exp("a.empty_str", arr_val(LLMOPS_GGUF_STRING, 0, NULL, NULL, NULL), 0);
    add_exp("a.empty_arr", arr_val(LLMOPS_GGUF_ARRAY, 0, NULL, NULL, NULL), 0);
    /* set through the typed setters */
    add_exp("typed.u32", scalar_u(LLMOPS_GGUF_UINT32, 7), 1);
    add_exp("typed.i32", scalar_i(LLMOPS_GGUF_INT32, -7), 1);
    add_exp("typed.u64", scalar_u(LLMOPS_GGUF_UINT64, (uint64_t)1 << 40), 1);
    add_exp("typed.f32", scalar_f(LLMOPS_GGUF_FLOAT32, 0.25), 1);
    add_exp("typed.bool", scalar_u(LLMOPS_GGUF_BOOL, 1), 1);
    add_exp("typed.str", str_val("llama", 5), 1);
    add_exp("typed.arr_i16", arr_val(LLMOPS_GGUF_INT16, 7, g_arr_data[LLMOPS_GGUF_INT16], NULL, NULL), 1);
    add_exp("typed.arr_str", arr_val(LLMOPS_GGUF_STRING, 6, NULL, g_strs, NULL), 1);
}

static llmops_status set_expected_kv(llmops_gguf_writer *w, const exp_kv *e, llmops_error *err) {
    char key[64];
    memcpy(key, e->key.data, (size_t)e->key.len);
    key[e->key.len] = '\0';
    if (!e->typed) return llmops_gguf_writer_set_value(w, e->key, &e->v, err);
    const llmops_gguf_value *v = &e->v;
    switch (v->type) {
    case LLMOPS_GGUF_UINT32: return llmops_gguf_writer_set_u32(w, key, (uint32_t)v->v.u64, err);
    case LLMOPS_GGUF_INT32: return llmops_gguf_writer_set_i32(w, key, (int32_t)v->v.i64, err);
    case LLMOPS_GGUF_UINT64: return llmops_gguf_writer_set_u64(w, key, v->v.u64, err);
    case LLMOPS_GGUF_FLOAT32: return llmops_gguf_writer_set_f32(w, key, (float)v->v.f64, err);
    case LLMOPS_GGUF_BOOL: return llmops_gguf_writer_set_bool(w, key, (int)v->v.u64, err);
    case LLMOPS_GGUF_STRING: return llmops_gguf_writer_set_str(w, key, v->v.str.data, err);
    case LLMOPS_GGUF_ARRAY:
        if (v->v.arr.type == LLMOPS_GGUF_STRING) {
            const char *ptrs[6];
            size_t lens[6];
            for (size_t i = 0; i < v->v.arr.n; i++) {
                ptrs[i] = v->v.arr.strs[i].data;
                lens[i] = (size_t)v->v.arr.strs[i].len;
            }
            return llmops_gguf_writer_set_arr_str(w, key, ptrs, lens, (size_t)v->v.arr.n, err);
        }
        return llmops_gguf_writer_set_arr(w, key, v->v.arr.type, v->v.arr.data, (size_t)v->v.arr.n, err);
    default: return LLMOPS_ERR_INTERNAL;
    }
}

static int is_signed_type(llmops_gguf_type t) {
    return t == LLMOPS_GGUF_INT8 || t == LLMOPS_GGUF_INT16 || t == LLMOPS_GGUF_INT32 || t == LLMOPS_GGUF_INT64;
}

/* Deep equality; on a mismatch `why` says where. */
static int value_eq(const llmops_gguf_value *a, const llmops_gguf_value *b, char *why, size_t why_len) {
    if (a->type != b->type) {
        snprintf(why, why_len, "type %s != %s", llmops_gguf_type_name(a->type), llmops_gguf_type_name(b->type));
        return 0;
    }
    switch (a->type) {
    case LLMOPS_GGUF_FLOAT32:
    case LLMOPS_GGUF_FLOAT64:
        if (memcmp(&a->v.f64, &b->v.f64, 8) != 0) {
            snprintf(why, why_len, "float %.17g != %.17g", a->v.f64, b->v.f64);
            return 0;
        }
        return 1;
    case LLMOPS_GGUF_STRING:
        if (a->v.str.len != b->v.str.len || memcmp(a->v.str.data, b->v.str.data, (size_t)a->v.str.len) != 0) {
            snprintf(why, why_len, "string '%.*s' != '%.*s'", (int)a->v.str.len, a->v.str.data, (int)b->v.str.len,
                     b->v.str.data);
            return 0;
        }
        return 1;
    case LLMOPS_GGUF_ARRAY: {
        const llmops_gguf_array *x = &a->v.arr, *y = &b->v.arr;
        if (x->type != y->type || x->n != y->n) {
            snprintf(why, why_len, "array of %llu %s != %llu %s", (unsigned long long)x->n,
                     llmops_gguf_type_name(x->type), (unsigned long long)y->n, llmops_gguf_type_name(y->type));
            return 0;
        }
        size_t es = llmops_gguf_type_size(x->type);
        if (es) {
            if (x->n && memcmp(x->data, y->data, (size_t)x->n * es) != 0) {
                snprintf(why, why_len, "array elements differ");
                return 0;
            }
            return 1;
        }
        for (uint64_t i = 0; i < x->n; i++) {
            if (x->type == LLMOPS_GGUF_STRING) {
                llmops_gguf_value sx = str_val(x->strs[i].data, (size_t)x->strs[i].len);
                llmops_gguf_value sy = str_val(y->strs[i].data, (size_t)y->strs[i].len);
                if (!value_eq(&sx, &sy, why, why_len)) return 0;
            } else if (!value_eq(&x->items[i], &y->items[i], why, why_len)) {
                return 0;
            }
        }
        return 1;
    }
    default:
        if (is_signed_type(a->type) ? a->v.i64 != b->v.i64 : a->v.u64 != b->v.u64) {
            snprintf(why, why_len, "scalar %llu != %llu", (unsigned long long)a->v.u64, (unsigned long long)b->v.u64);
            return 0;
        }
        return 1;
    }
}

typedef struct {
    char name[32];
    int type;
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t nbytes;
    uint8_t *data;
} exp_tensor;

static exp_tensor g_t[N_SPEC_TYPES];
static size_t g_nt;

/* One tensor of every GGUF type, 1 to 4 dims, ne[0] a multiple of the block, random bytes. */
static void build_expected_tensors(void) {
    g_nt = 0;
    for (size_t i = 0; i < N_SPEC_TYPES; i++) {
        const spec_type *sp = &k_spec_types[i];
        exp_tensor *t = &g_t[g_nt++];
        snprintf(t->name, sizeof t->name, "blk.%zu.%s", i, sp->name);
        t->type = sp->id;
        t->n_dims = 1 + (uint32_t)(i % 4);
        uint64_t full[4] = {sp->block * (1 + i % 3), 2 + i % 2, 3, 2};
        uint64_t count = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->ne[d] = d < t->n_dims ? full[d] : 1;
            count *= t->ne[d];
        }
        t->nbytes = count / sp->block * sp->bytes;
        free(t->data);
        t->data = malloc((size_t)t->nbytes);
        if (!t->data) abort();
        rnd_bytes(t->data, (size_t)t->nbytes);
    }
}

static void free_expected_tensors(void) {
    for (size_t i = 0; i < g_nt; i++) {
        free(g_t[i].data);
        g_t[i].data = NULL;
    }
    g_nt = 0;
}

static llmops_status write_expected(const char *path, uint32_t version, llmops_error *err) {
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    if (!w) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "writer_create");
    llmops_gguf_writer_set_version(w, version);
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i < g_nkv && !st; i++) st = set_expected_kv(w, &g_kv[i], err);
    for (size_t i = 0; i < g_nt && !st; i++)
        st = llmops_gguf_writer_add_tensor(w, g_t[i].name, (llmops_dtype)g_t[i].type, g_t[i].n_dims, g_t[i].ne,
                                           g_t[i].data, err);
    if (!st) st = llmops_gguf_writer_write(w, path, err);
    llmops_gguf_writer_free(w);
    return st;
}

/* Reads path and checks it holds exactly the expected kvs and tensors. */
static void check_expected_file(const char *path, uint32_t version, uint32_t align) {
    llmops_error err = {0};
    llmops_gguf *g = NULL;
    CHECK_OK(llmops_gguf_open(path, &g, &err), err);
    CHECK_EQ_INT(llmops_gguf_version(g), version);
    CHECK_EQ_INT(llmops_gguf_alignment(g), align);
    CHECK_EQ_INT(llmops_gguf_n_kv(g), g_nkv);
    char why[512];
    for (size_t i = 0; i < g_nkv; i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        CHECK(kv != NULL);
        CHECK_MSG(kv->key.len == g_kv[i].key.len && memcmp(kv->key.data, g_kv[i].key.data, (size_t)kv->key.len) == 0,
                  "kv %zu: key '%.*s' != '%s'", i, (int)kv->key.len, kv->key.data, g_kv[i].key.data);
        CHECK_MSG(value_eq(&kv->value, &g_kv[i].v, why, sizeof why), "key %s: %s", g_kv[i].key.data, why);
        CHECK(llmops_gguf_find_kv(g, g_kv[i].key.data) == kv);
    }
    CHECK(llmops_gguf_kv_at(g, g_nkv) == NULL);
    CHECK(llmops_gguf_find_kv(g, "no.such.key") == NULL);

    /* data section: aligned, tensors in order, each padded to the alignment */
    uint64_t data_off = llmops_gguf_data_offset(g);
    CHECK_EQ_INT(data_off % align, 0);
    CHECK_EQ_INT(llmops_gguf_n_tensors(g), g_nt);
    uint64_t expect_off = 0;
    for (size_t i = 0; i < g_nt; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        CHECK(t != NULL);
        CHECK_MSG(llmops_gguf_str_eq(t->name, g_t[i].name), "tensor %zu: '%.*s' != '%s'", i, (int)t->name.len,
                  t->name.data, g_t[i].name);
        CHECK(llmops_gguf_find_tensor(g, g_t[i].name) == t);
        CHECK_EQ_INT(t->type, g_t[i].type);
        CHECK_EQ_INT(t->n_dims, g_t[i].n_dims);
        for (int d = 0; d < 4; d++) CHECK_EQ_INT(t->ne[d], g_t[i].ne[d]);
        CHECK_EQ_INT(t->nbytes, g_t[i].nbytes);
        CHECK_EQ_INT(t->offset % align, 0);
        CHECK_EQ_INT(t->offset, expect_off);
        expect_off += (g_t[i].nbytes + align - 1) / align * align;
        const uint8_t *p = llmops_gguf_tensor_data(g, t);
        CHECK_MSG(memcmp(p, g_t[i].data, (size_t)t->nbytes) == 0, "tensor %s: bytes differ", g_t[i].name);
    }
    CHECK(llmops_gguf_tensor_at(g, g_nt) == NULL);
    CHECK(llmops_gguf_find_tensor(g, "nope") == NULL);
    CHECK_EQ_INT(llmops_gguf_file_size(g), data_off + expect_off);

    /* typed getters over the same values */
    uint64_t u = 0;
    int64_t i64 = 0;
    double f = 0;
    int b = -1;
    llmops_gguf_str s;
    llmops_gguf_array arr;
    CHECK_OK(llmops_gguf_get_u64(g, "s.u8", &u, &err), err);
    CHECK_EQ_INT(u, 255);
    CHECK_OK(llmops_gguf_get_u64(g, "s.u64", &u, &err), err);
    CHECK(u == UINT64_MAX);
    CHECK_OK(llmops_gguf_get_i64(g, "s.i8", &i64, &err), err);
    CHECK_EQ_INT(i64, -128);
    CHECK_OK(llmops_gguf_get_i64(g, "s.u32", &i64, &err), err);
    CHECK_EQ_INT(i64, 0xffffffffll);
    CHECK_ERR(llmops_gguf_get_u64(g, "s.i32", &u, &err), LLMOPS_ERR_FORMAT, err, "'s.i32' is int32");
    CHECK_ERR(llmops_gguf_get_i64(g, "s.u64", &i64, &err), LLMOPS_ERR_FORMAT, err, "'s.u64'");
    CHECK_OK(llmops_gguf_get_f64(g, "s.f32", &f, &err), err);
    CHECK(f == -1.5);
    CHECK_OK(llmops_gguf_get_f64(g, "s.f64", &f, &err), err);
    CHECK(f == 3.141592653589793);
    CHECK_ERR(llmops_gguf_get_f64(g, "s.u8", &f, &err), LLMOPS_ERR_FORMAT, err, "expected a float");
    CHECK_OK(llmops_gguf_get_bool(g, "s.bool_true", &b, &err), err);
    CHECK_EQ_INT(b, 1);
    CHECK_OK(llmops_gguf_get_str(g, "str.nul", &s, &err), err);
    CHECK(s.len == 3 && memcmp(s.data, "a\0b", 3) == 0);
    CHECK_ERR(llmops_gguf_get_str(g, "s.u8", &s, &err), LLMOPS_ERR_FORMAT, err, "expected a string");
    CHECK_OK(llmops_gguf_get_arr(g, "a.i16", &arr, &err), err);
    int16_t x;
    memcpy(&x, g_arr_data[LLMOPS_GGUF_INT16] + 6, 2);
    CHECK_EQ_INT(llmops_gguf_arr_i64(&arr, 3), x);
    CHECK_ERR(llmops_gguf_get_arr(g, "s.u8", &arr, &err), LLMOPS_ERR_FORMAT, err, "expected an array");
    CHECK_ERR(llmops_gguf_get_u64(g, "missing.key", &u, &err), LLMOPS_ERR_NOT_FOUND, err, "'missing.key'");
    llmops_gguf_free(g);
}

/* Copies every kv (set_value) and tensor of `src` into a new file at `dst`. */
static llmops_status rewrite_file(const char *src, const char *dst, llmops_error *err) {
    llmops_gguf *g = NULL;
    llmops_status st = llmops_gguf_open(src, &g, err);
    if (st) return st;
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    if (!w) {
        llmops_gguf_free(g);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "writer_create");
    }
    llmops_gguf_writer_set_version(w, llmops_gguf_version(g));
    for (size_t i = 0; i < llmops_gguf_n_kv(g) && !st; i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        st = llmops_gguf_writer_set_value(w, kv->key, &kv->value, err);
    }
    for (size_t i = 0; i < llmops_gguf_n_tensors(g) && !st; i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        char name[64];
        if (t->name.len >= sizeof name) return LLMOPS_ERR_INTERNAL;
        memcpy(name, t->name.data, (size_t)t->name.len);
        name[t->name.len] = '\0';
        st = llmops_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, llmops_gguf_tensor_data(g, t), err);
    }
    if (!st) st = llmops_gguf_writer_write(w, dst, err);
    llmops_gguf_writer_free(w);
    llmops_gguf_free(g);
    return st;
}

TEST(gguf_roundtrip_all_types_v2_v3_align_32_64) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    static const struct {
        uint32_t version, align;
    } cases[] = {{3, 32}, {2, 32}, {3, 64}, {2, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rng_seed(1234 + c);
        build_expected_kvs(cases[c].align);
        build_expected_tensors();
        char name[64], name2[64];
        snprintf(name, sizeof name, "rt_v%u_a%u.gguf", cases[c].version, cases[c].align);
        snprintf(name2, sizeof name2, "rt_v%u_a%u.copy.gguf", cases[c].version, cases[c].align);
        const char *path = test_tmpfile(name), *path2 = test_tmpfile(name2);
        llmops_status st = write_expected(path, cases[c].version, &err);
        if (st) free_expected_tensors();
        CHECK_OK(st, err);
        check_expected_file(path, cases[c].version, cases[c].align);
        free_expected_tensors();
        if (test_failed()) return;

        /* parsed kvs and tensors written again give the same bytes */
        CHECK_OK(rewrite_file(path, path2, &err), err);
        size_t n1 = 0, n2 = 0;
        uint8_t *a = slurp(path, &n1), *b = slurp(path2, &n2);
        int same = a && b && n1 == n2 && memcmp(a, b, n1) == 0;
        llmops_free(a);
        llmops_free(b);
        CHECK_MSG(same, "%s and %s differ (%zu vs %zu bytes)", path, path2, n1, n2);
    }
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(gguf_writer_rejects_bad_input) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    CHECK(w != NULL);
    float data[64] = {0};
    uint64_t ne[2] = {4, 2};
    CHECK_OK(llmops_gguf_writer_add_tensor(w, "w", LLMOPS_DTYPE_F32, 2, ne, data, &err), err);
    CHECK_ERR(llmops_gguf_writer_add_tensor(w, "w", LLMOPS_DTYPE_F32, 2, ne, data, &err), LLMOPS_ERR_INVALID_ARG, err,
              "'w' added twice");
    CHECK_ERR(llmops_gguf_writer_add_tensor(w, "u8", LLMOPS_DTYPE_U8, 2, ne, data, &err), LLMOPS_ERR_INVALID_ARG, err,
              "cannot be stored in GGUF");
    CHECK_ERR(llmops_gguf_writer_add_tensor(w, "x", LLMOPS_DTYPE_F32, 5, ne, data, &err), LLMOPS_ERR_INVALID_ARG, err,
              "5 dimensions");
    uint64_t odd[1] = {33};
    CHECK_ERR(llmops_gguf_writer_add_tensor(w, "q", LLMOPS_DTYPE_Q4_0, 1, odd, data, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'q'");
    CHECK_OK(llmops_gguf_writer_set_u32(w, "general.alignment", 48, &err), err);
    CHECK_ERR(llmops_gguf_writer_write(w, test_tmpfile("bad.gguf"), &err), LLMOPS_ERR_INVALID_ARG, err,
              "general.alignment");
    llmops_gguf_writer_remove(w, "general.alignment");
    llmops_gguf_writer_set_version(w, 1);
    CHECK_ERR(llmops_gguf_writer_write(w, test_tmpfile("bad.gguf"), &err), LLMOPS_ERR_INVALID_ARG, err, "not 1");
    CHECK(!llmops_path_is_file(test_tmpfile("bad.gguf")));
    /* setting a key again replaces the value in place */
    llmops_gguf_writer_set_version(w, 3);
    CHECK_OK(llmops_gguf_writer_set_u32(w, "k1", 1, &err), err);
    CHECK_OK(llmops_gguf_writer_set_str(w, "k2", "two", &err), err);
    CHECK_OK(llmops_gguf_writer_set_u32(w, "k1", 11, &err), err);
    CHECK_OK(llmops_gguf_writer_write(w, test_tmpfile("ok.gguf"), &err), err);
    llmops_gguf_writer_free(w);
    llmops_gguf *g = NULL;
    CHECK_OK(llmops_gguf_open(test_tmpfile("ok.gguf"), &g, &err), err);
    CHECK_EQ_INT(llmops_gguf_n_kv(g), 2);
    CHECK(llmops_gguf_str_eq(llmops_gguf_kv_at(g, 0)->key, "k1"));
    CHECK_EQ_INT(llmops_gguf_kv_at(g, 0)->value.v.u64, 11);
    llmops_gguf_free(g);
    llmops_gguf_writer_free(NULL);
    llmops_gguf_free(NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* Float elements read as integers saturate; NaN reads as 0 (a plain cast would be UB). */
TEST(gguf_arr_float_to_int_saturates) {
    static const float f[6] = {1e30f, -1e30f, 0.0f, -7.9f, 0x1p63f, 3.0f};
    double d[3] = {1e300, -1e300, 0.0};
    uint32_t nan_bits = 0x7fc00000u;
    float nanf_;
    memcpy(&nanf_, &nan_bits, 4);
    d[2] = (double)nanf_;
    llmops_gguf_array a = {.type = LLMOPS_GGUF_FLOAT32, .n = 6, .data = f};
    CHECK(llmops_gguf_arr_i64(&a, 0) == INT64_MAX);
    CHECK(llmops_gguf_arr_i64(&a, 1) == INT64_MIN);
    CHECK_EQ_INT(llmops_gguf_arr_i64(&a, 2), 0);
    CHECK_EQ_INT(llmops_gguf_arr_i64(&a, 3), -7);
    CHECK(llmops_gguf_arr_i64(&a, 4) == INT64_MAX); /* 2^63 itself does not fit */
    CHECK_EQ_INT(llmops_gguf_arr_u64(&a, 5), 3);
    llmops_gguf_array b = {.type = LLMOPS_GGUF_FLOAT64, .n = 3, .data = d};
    CHECK(llmops_gguf_arr_i64(&b, 0) == INT64_MAX);
    CHECK(llmops_gguf_arr_i64(&b, 1) == INT64_MIN);
    CHECK_EQ_INT(llmops_gguf_arr_i64(&b, 2), 0);
    CHECK(llmops_gguf_arr_f64(&b, 2) != llmops_gguf_arr_f64(&b, 2));
}

/* ---- the byte layout, built by hand from the spec ---------------------------------- */

TEST(gguf_byte_layout_matches_spec) {
    llmops_error err = {0};
    const float data[4] = {1.0f, 2.0f, -3.0f, 0.5f};
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    CHECK(w != NULL);
    CHECK_OK(llmops_gguf_writer_set_u32(w, "k", 0x01020304u, &err), err);
    uint64_t ne[1] = {4};
    CHECK_OK(llmops_gguf_writer_add_tensor(w, "t", LLMOPS_DTYPE_F32, 1, ne, data, &err), err);
    const char *path = test_tmpfile("tiny.gguf");
    llmops_status st = llmops_gguf_writer_write(w, path, &err);
    llmops_gguf_writer_free(w);
    CHECK_OK(st, err);

    static bb want;
    want.n = 0;
    static const uint8_t header[] = {
        'G', 'G', 'U', 'F',     /* magic                     0 */
        3,   0,   0,   0,       /* version 3                 4 */
        1,   0,   0,   0, 0, 0, 0, 0, /* tensor count 1     8 */
        1,   0,   0,   0, 0, 0, 0, 0, /* kv count 1       16 */
        1,   0,   0,   0, 0, 0, 0, 0, 'k', /* key "k"     24 */
        4,   0,   0,   0,       /* value type uint32        33 */
        4,   3,   2,   1,       /* 0x01020304 LE            37 */
        1,   0,   0,   0, 0, 0, 0, 0, 't', /* name "t"    41 */
        1,   0,   0,   0,       /* n_dims 1                 50 */
        4,   0,   0,   0, 0, 0, 0, 0, /* ne[0] = 4        54 */
        0,   0,   0,   0,       /* type F32                 62 */
        0,   0,   0,   0, 0, 0, 0, 0, /* offset 0         66 */
    };                          /* 74 bytes; pad to 96 */
    b_raw(&want, header, sizeof header);
    CHECK_EQ_INT(want.n, 74);
    b_zeros(&want, 96 - 74);
    static const uint8_t floats[16] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40,
                                       0x00, 0x00, 0x40, 0xc0, 0x00, 0x00, 0x00, 0x3f};
    b_raw(&want, floats, sizeof floats);
    b_zeros(&want, 128 - 112); /* llama.cpp pads after the last tensor too */

    size_t n = 0;
    uint8_t *got = slurp(path, &n);
    CHECK(got != NULL);
    int same = n == want.n && memcmp(got, want.d, n) == 0;
    size_t first = 0;
    while (first < n && first < want.n && got[first] == want.d[first]) first++;
    llmops_free(got);
    CHECK_MSG(same, "written file (%zu bytes) differs from the spec layout (%zu bytes) at byte %zu", n, want.n, first);

    /* the hand-made bytes parse, also without the trailing padding */
    static const size_t sizes[] = {128, 112};
    for (int i = 0; i < 2; i++) {
        llmops_gguf *g = NULL;
        CHECK_OK(llmops_gguf_parse(want.d, sizes[i], "hand.gguf", &g, &err), err);
        CHECK_EQ_INT(llmops_gguf_data_offset(g), 96);
        const llmops_gguf_tensor *t = llmops_gguf_find_tensor(g, "t");
        CHECK(t != NULL && t->nbytes == 16 && t->offset == 0);
        float back[4];
        memcpy(back, llmops_gguf_tensor_data(g, t), 16);
        CHECK(back[2] == -3.0f);
        CHECK_EQ_INT(llmops_gguf_find_kv(g, "k")->offset, 24);
        llmops_gguf_free(g);
    }
}

/* ---- hostile inputs ----------------------------------------------------------------- */

/* A small valid file with strings, arrays and two tensors, built by the writer. */
static uint8_t *small_valid_file(size_t *len) {
    llmops_error err = {0};
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    if (!w) return NULL;
    static const uint32_t u[3] = {1, 2, 3};
    static const char *const strs[3] = {"a", "", "\xe2\x96\x81" "b"};
    static const uint8_t bools[2] = {0, 1};
    static float data[40];
    for (int i = 0; i < 40; i++) data[i] = (float)i;
    llmops_gguf_value nested[2] = {arr_val(LLMOPS_GGUF_UINT32, 3, u, NULL, NULL),
                                   arr_val(LLMOPS_GGUF_BOOL, 2, bools, NULL, NULL)};
    llmops_gguf_value outer = arr_val(LLMOPS_GGUF_ARRAY, 2, NULL, NULL, nested);
    uint64_t ne1[2] = {4, 2}, ne2[1] = {32};
    int ok = !llmops_gguf_writer_set_str(w, "general.architecture", "llama", &err) &&
             !llmops_gguf_writer_set_bool(w, "b", 1, &err) &&
             !llmops_gguf_writer_set_arr(w, "u", LLMOPS_GGUF_UINT32, u, 3, &err) &&
             !llmops_gguf_writer_set_arr_str(w, "s", strs, NULL, 3, &err) &&
             !llmops_gguf_writer_set_value(w, (llmops_gguf_str){1, "n"}, &outer, &err) &&
             !llmops_gguf_writer_add_tensor(w, "w1", LLMOPS_DTYPE_F32, 2, ne1, data, &err) &&
             !llmops_gguf_writer_add_tensor(w, "w2", LLMOPS_DTYPE_Q8_0, 1, ne2, data, &err) &&
             !llmops_gguf_writer_write(w, test_tmpfile("small.gguf"), &err);
    llmops_gguf_writer_free(w);
    return ok ? slurp(test_tmpfile("small.gguf"), len) : NULL;
}

TEST(gguf_truncated_at_every_byte) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    size_t len = 0;
    uint8_t *file = small_valid_file(&len);
    CHECK(file != NULL);
    /* the last byte any tensor needs: padding after it may be cut off */
    llmops_gguf *g = NULL;
    llmops_status st = llmops_gguf_parse(file, len, "t.gguf", &g, &err);
    if (st) llmops_free(file);
    CHECK_OK(st, err);
    uint64_t need = 0;
    for (size_t i = 0; i < llmops_gguf_n_tensors(g); i++) {
        const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
        uint64_t end = llmops_gguf_data_offset(g) + t->offset + t->nbytes;
        if (end > need) need = end;
    }
    llmops_gguf_free(g);
    int bad = 0;
    for (size_t n = 0; n <= len && !bad; n++) {
        st = parse_bytes(file, n, &err);
        if (n >= need) bad = st != LLMOPS_OK;
        else bad = st != LLMOPS_ERR_FORMAT || !strstr(err.msg, "t.gguf");
        if (bad) fprintf(stderr, "    cut at %zu of %zu (need %llu): %s: %s\n", n, len, (unsigned long long)need,
                         llmops_status_str(st), err.msg);
    }
    llmops_free(file);
    CHECK(!bad);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(gguf_random_bit_flips) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    size_t len = 0;
    uint8_t *file = small_valid_file(&len);
    CHECK(file != NULL);
    uint8_t *m = malloc(len);
    CHECK(m != NULL);
    rng_seed(42);
    int ok = 0;
    for (int i = 0; i < 4000; i++) {
        memcpy(m, file, len);
        int flips = 1 + (int)(rnd() % 3);
        for (int k = 0; k < flips; k++) {
            size_t bit = (size_t)(rnd() % (len * 8));
            m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        if (parse_bytes(m, len, &err) == LLMOPS_OK) ok++;
    }
    free(m);
    llmops_free(file);
    CHECK(ok > 0);       /* flips in tensor data and padding keep the file valid */
    CHECK(ok < 4000);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(gguf_bad_header) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    static bb b;
    b_hdr(&b, 3, 0, 0);
    CHECK_OK(parse_bb(&b, &err), err);
    memcpy(b.d, "GGUG", 4);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 0: not a GGUF file");
    b_hdr(&b, 1, 0, 0);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_UNSUPPORTED, err, "offset 4: GGUF version 1 is not supported");
    b_hdr(&b, 4, 0, 0);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_UNSUPPORTED, err, "GGUF version 4");
    b_hdr(&b, 0x03000000u, 0, 0); /* version 3 written big-endian */
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_UNSUPPORTED, err, "offset 4: big-endian");
    b.n = 0;
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 0: magic needs 4 bytes");
    b_hdr(&b, 3, 0, 0);
    b.n = 20;
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 16: key/value count needs 8 bytes");
    /* counts that cannot fit in the file */
    b_hdr(&b, 3, 0, 1000000000000ull);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 16: key/value count 1000000000000 cannot fit");
    b_hdr(&b, 3, 0, UINT64_MAX);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "key/value count 18446744073709551615");
    b_hdr(&b, 3, 1000000000000ull, 0);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 8: tensor count 1000000000000 cannot fit");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(gguf_bad_kv) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    static bb b;
    /* huge key length */
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, (uint64_t)1 << 62);
    b_zeros(&b, 16);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 24: key has length 4611686018427387904");
    /* a string value that runs past the end */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "a");
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_u64(&b, 100);
    b_raw(&b, "hello", 5);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 37: string value has length 100 but only 5");
    CHECK(strstr(err.msg, "key 'a'") != NULL);
    /* unknown value type */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "a");
    b_u32(&b, 13);
    b_zeros(&b, 8);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 33: unknown value type 13");
    b.d[33] = 0xff;
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "unknown value type 255");
    /* bool 2, as a value and inside an array */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "b");
    b_u32(&b, LLMOPS_GGUF_BOOL);
    b_u8(&b, 2);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 37: bool value 2 is neither 0 nor 1");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "b");
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u32(&b, LLMOPS_GGUF_BOOL);
    b_u64(&b, 3);
    b_u8(&b, 0);
    b_u8(&b, 1);
    b_u8(&b, 2);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 51: bool value 2");
    /* huge array count */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u32(&b, LLMOPS_GGUF_UINT32);
    b_u64(&b, (uint64_t)1 << 60);
    b_zeros(&b, 16);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 39: array of 1152921504606846976 uint32 elements");
    for (uint32_t et = LLMOPS_GGUF_STRING; et <= LLMOPS_GGUF_ARRAY; et++) { /* strings, arrays: no alloc */
        b.d[39] = (uint8_t)et;
        CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 39: array of 1152921504606846976");
    }
    b.d[39] = 0xff;
    b.d[40] = 0xff;
    b.d[41] = 0xff;
    b.d[42] = 0xff; /* element count read as u64 */
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 39: unknown array element type 4294967295");
    /* a string inside a string array running past the end */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "s");
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_u64(&b, 2);
    b_str(&b, "ok");
    b_u64(&b, 9);
    b_raw(&b, "short", 5);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 59: array string has length 9 but only 5");
    /* duplicate key */
    b_hdr(&b, 3, 0, 2);
    b_str(&b, "a");
    b_u32(&b, LLMOPS_GGUF_UINT8);
    b_u8(&b, 1);
    b_str(&b, "a");
    b_u32(&b, LLMOPS_GGUF_UINT8);
    b_u8(&b, 2);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 38: duplicate key 'a'");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

static void b_nested(bb *b, int levels) {
    b_hdr(b, 3, 0, 1);
    b_str(b, "a");
    b_u32(b, LLMOPS_GGUF_ARRAY);
    for (int i = 0; i < levels - 1; i++) {
        b_u32(b, LLMOPS_GGUF_ARRAY);
        b_u64(b, 1);
    }
    b_u32(b, LLMOPS_GGUF_UINT8);
    b_u64(b, 0);
}

TEST(gguf_nesting_and_alignment_keys) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    static bb b;
    b_nested(&b, 8);
    CHECK_OK(parse_bb(&b, &err), err);
    b_nested(&b, 9);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 133: arrays nested deeper than 8");
    b_nested(&b, 1000);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 133: arrays nested deeper than 8");

    /* general.alignment: a uint32 power of two, nothing else */
    static const struct {
        uint32_t type;
        uint64_t value;
        size_t width;
        int ok;
    } cases[] = {{LLMOPS_GGUF_UINT32, 64, 4, 1},  {LLMOPS_GGUF_UINT32, 1, 4, 1}, {LLMOPS_GGUF_UINT32, 48, 4, 0},
                 {LLMOPS_GGUF_UINT32, 0, 4, 0},   {LLMOPS_GGUF_UINT64, 32, 8, 0}, {LLMOPS_GGUF_INT32, 32, 4, 0},
                 {LLMOPS_GGUF_UINT16, 32, 2, 0},  {LLMOPS_GGUF_FLOAT32, 0, 4, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b_hdr(&b, 3, 0, 1);
        b_str(&b, "general.alignment");
        b_u32(&b, cases[i].type);
        uint64_t v = cases[i].value;
        b_raw(&b, &v, cases[i].width);
        if (cases[i].ok) CHECK_OK(parse_bb(&b, &err), err);
        else CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err,
                       "offset 24: general.alignment must be a uint32 power of two");
    }
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_str(&b, "32");
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "general.alignment must be a uint32");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(gguf_bad_tensor_info) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    static bb b;
    uint64_t ne[5] = {4, 1, 1, 1, 1};
    /* a valid base: one F32 tensor of 4 elements */
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, 0);
    b_pad(&b, 32);
    b_zeros(&b, 16);
    CHECK_OK(parse_bb(&b, &err), err);
    /* five dimensions */
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 5, ne, LLMOPS_DTYPE_F32, 0);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 24: tensor 0 'w' has 5 dimensions (at most 4)");
    /* unknown type ids: never defined, removed (Q4_2 = 4), past the table */
    static const uint32_t bad_types[] = {4, 5, 31, 36, 99, 100, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        b_hdr(&b, 3, 1, 0);
        b_tinfo(&b, "w", 1, ne, bad_types[i], 0);
        b_zeros(&b, 32);
        char needle[64];
        snprintf(needle, sizeof needle, "offset 45: tensor 'w' has unknown GGML type id %u", bad_types[i]);
        CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_UNSUPPORTED, err, needle);
    }
    /* element count overflow */
    uint64_t huge[4] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 1, 1};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 2, huge, LLMOPS_DTYPE_F32, 0);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 24: tensor 'w' element count overflows");
    uint64_t neg[1] = {(uint64_t)1 << 63};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, neg, LLMOPS_DTYPE_I8, 0);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "element count overflows");
    /* bytes that overflow 64 bits though the element count does not */
    uint64_t big[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 2, big, LLMOPS_DTYPE_F64, 0);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "'w'");
    /* row length not a multiple of the block size */
    uint64_t odd[1] = {33};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, odd, LLMOPS_DTYPE_Q4_0, 0);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err,
              "offset 24: tensor 'w': row length 33 is not a multiple of the Q4_0 block size 32");
    uint64_t k[2] = {32, 8};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "wk", 2, k, LLMOPS_DTYPE_Q4_K, 0);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "row length 32 is not a multiple of the Q4_K block size 256");
    /* offset not a multiple of the alignment (default 32, then 64) */
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, 8);
    b_pad(&b, 32);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'w': offset 8 is not a multiple of the alignment 32");
    b_hdr(&b, 3, 1, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, LLMOPS_GGUF_UINT32);
    b_u32(&b, 64);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, 32);
    b_pad(&b, 64);
    b_zeros(&b, 128);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 32 is not a multiple of the alignment 64");
    /* past the end of the file: data at 64, 4000 bytes wanted, 32 there */
    uint64_t big1[1] = {1000};
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, big1, LLMOPS_DTYPE_F32, 0);
    b_pad(&b, 32);
    CHECK_EQ_INT(b.n, 64);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err,
              "tensor 'w': bytes [0, 4000) of the data section (file offset 64) run past the end of the 96-byte file");
    b_hdr(&b, 3, 1, 0);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, (uint64_t)-32);
    b_pad(&b, 32);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "run past the end");
    /* the data section itself past the end (the tensor infos fill the file) */
    b_hdr(&b, 3, 1, 0);
    uint64_t zero[1] = {0};
    b_tinfo(&b, "w", 1, zero, LLMOPS_DTYPE_F32, 0);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "data section at offset 64 starts past the end (57 bytes)");
    /* two tensors overlapping */
    uint64_t ne16[1] = {16};
    b_hdr(&b, 3, 2, 0);
    b_tinfo(&b, "a", 1, ne16, LLMOPS_DTYPE_F32, 0);
    b_tinfo(&b, "b", 1, ne16, LLMOPS_DTYPE_F32, 32);
    b_pad(&b, 32);
    b_zeros(&b, 96);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "tensors 'a' [0, 64) and 'b' [32, ...) overlap");
    b_hdr(&b, 3, 2, 0); /* listed in the other order: still found */
    b_tinfo(&b, "b", 1, ne16, LLMOPS_DTYPE_F32, 32);
    b_tinfo(&b, "a", 1, ne16, LLMOPS_DTYPE_F32, 0);
    b_pad(&b, 32);
    b_zeros(&b, 96);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "tensors 'a' [0, 64) and 'b' [32, ...) overlap");
    b_hdr(&b, 3, 2, 0); /* adjacent is fine */
    b_tinfo(&b, "a", 1, ne16, LLMOPS_DTYPE_F32, 0);
    b_tinfo(&b, "b", 1, ne16, LLMOPS_DTYPE_F32, 64);
    b_pad(&b, 32);
    b_zeros(&b, 128);
    CHECK_OK(parse_bb(&b, &err), err);
    /* duplicate tensor name */
    b_hdr(&b, 3, 2, 0);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, 0);
    b_tinfo(&b, "w", 1, ne, LLMOPS_DTYPE_F32, 32);
    b_pad(&b, 32);
    b_zeros(&b, 64);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "duplicate tensor name 'w'");
    /* a huge tensor name length */
    b_hdr(&b, 3, 1, 0);
    b_u64(&b, UINT64_MAX);
    b_zeros(&b, 32);
    CHECK_ERR(parse_bb(&b, &err), LLMOPS_ERR_FORMAT, err, "offset 24: tensor name has length 18446744073709551615");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- allocation failure ---------------------------------------------------------------- */

/* A file whose parse needs more than one arena block: 5000 strings, arrays, tensors. */
static uint8_t *alloc_test_file(size_t *len) {
    static bb b;
    b_hdr(&b, 3, 3, 3);
    b_str(&b, "tokens");
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_u64(&b, 5000);
    for (int i = 0; i < 5000; i++) b_strn(&b, "tok", (size_t)(i % 4));
    b_str(&b, "nested");
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u32(&b, LLMOPS_GGUF_ARRAY);
    b_u64(&b, 2);
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_u64(&b, 1);
    b_str(&b, "x");
    b_u32(&b, LLMOPS_GGUF_UINT16);
    b_u64(&b, 2);
    b_u32(&b, 0x00020001u);
    b_str(&b, "name");
    b_u32(&b, LLMOPS_GGUF_STRING);
    b_str(&b, "m");
    uint64_t ne[2] = {32, 2};
    b_tinfo(&b, "t0", 2, ne, LLMOPS_DTYPE_F16, 0);
    b_tinfo(&b, "t1", 1, ne, LLMOPS_DTYPE_Q8_0, 128);
    b_tinfo(&b, "t2", 1, ne, LLMOPS_DTYPE_F32, 192);
    b_pad(&b, 32);
    b_zeros(&b, 192 + 128);
    uint8_t *d = malloc(b.n);
    if (d) memcpy(d, b.d, b.n);
    *len = b.n;
    return d;
}

TEST(gguf_alloc_failure_parse) {
    long live = llmops_alloc_live();
    size_t len = 0;
    uint8_t *file = alloc_test_file(&len);
    CHECK(file != NULL);
    int done = 0, failures = 0;
    for (long n = 0; n < 1000 && !done; n++) {
        llmops_error err = {0};
        llmops_gguf *g = NULL;
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_gguf_parse(file, len, "a.gguf", &g, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        if (st == LLMOPS_OK) {
            CHECK(g != NULL);
            CHECK_EQ_INT(llmops_gguf_n_tensors(g), 3);
            llmops_gguf_array a;
            CHECK_OK(llmops_gguf_get_arr(g, "tokens", &a, &err), err);
            CHECK_EQ_INT(a.n, 5000);
            llmops_gguf_free(g);
            done = !fired;
        } else {
            CHECK(g == NULL);
            CHECK_MSG(st == LLMOPS_ERR_NOMEM, "n=%ld: %s: %s", n, llmops_status_str(st), err.msg);
            CHECK(strstr(err.msg, "a.gguf") != NULL);
            failures++;
        }
        CHECK_EQ_INT(llmops_alloc_live(), live);
    }
    free(file);
    CHECK(done);
    CHECK(failures >= 3); /* the object, the arena, the overlap check */
}

TEST(gguf_alloc_failure_write) {
    long live = llmops_alloc_live();
    int done = 0, failures = 0;
    rng_seed(99);
    build_expected_kvs(64);
    const char *path = test_tmpfile("af.gguf");
    static float data[256 * 2];
    uint64_t ne[2] = {256, 2};
    for (long n = 0; n < 2000 && !done; n++) {
        llmops_error err = {0};
        llmops_alloc_fail_nth(n);
        llmops_status st = LLMOPS_OK;
        llmops_gguf_writer *w = llmops_gguf_writer_create();
        if (!w) st = LLMOPS_ERR_NOMEM;
        for (size_t i = 0; i < g_nkv && !st; i++) st = set_expected_kv(w, &g_kv[i], &err);
        /* enough tensors to grow the tensor table past its first allocation */
        for (int i = 0; i < 70 && !st; i++) {
            char name[32];
            snprintf(name, sizeof name, "t.%d", i);
            st = llmops_gguf_writer_add_tensor(w, name, i % 2 ? LLMOPS_DTYPE_F16 : LLMOPS_DTYPE_Q4_K, 2, ne, data, &err);
        }
        if (!st) st = llmops_gguf_writer_write(w, path, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        llmops_gguf_writer_free(w);
        CHECK_EQ_INT(llmops_alloc_live(), live);
        if (st == LLMOPS_OK) {
            done = !fired;
        } else {
            CHECK_MSG(st == LLMOPS_ERR_NOMEM, "n=%ld: %s: %s", n, llmops_status_str(st), err.msg);
            failures++;
        }
    }
    CHECK(done);
    CHECK(failures >= 5);
    /* the file that finally got written is whole */
    llmops_error err = {0};
    llmops_gguf *g = NULL;
    CHECK_OK(llmops_gguf_open(path, &g, &err), err);
    CHECK_EQ_INT(llmops_gguf_n_tensors(g), 70);
    CHECK_EQ_INT(llmops_gguf_n_kv(g), g_nkv);
    llmops_gguf_free(g);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- llama.cpp's vocab files ----------------------------------------------------------- */

TEST(gguf_llama_cpp_vocab_files) {
    static const struct {
        const char *file;
        const char *arch;
        uint64_t n_tokens;
        int has_scores;
        int has_merges;
    } files[] = {
        {"ggml-vocab-bert-bge.gguf", "bert", 30522, 0, 0},
        {"ggml-vocab-deepseek-llm.gguf", "llama", 102400, 0, 1},
        {"ggml-vocab-gpt-2.gguf", "gpt2", 50257, 0, 1},
        {"ggml-vocab-llama-spm.gguf", "llama", 32000, 1, 0},
        {"ggml-vocab-phi-3.gguf", "phi3", 32064, 1, 0},
        {"ggml-vocab-refact.gguf", "refact", 49216, 0, 1},
    };
    long live = llmops_alloc_live();
    int found = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/%s", files[i].file);
        const char *path = test_asset(rel);
        if (!path) continue;
        found++;
        llmops_error err = {0};
        llmops_gguf *g = NULL;
        CHECK_OK(llmops_gguf_open(path, &g, &err), err);
        CHECK_EQ_INT(llmops_gguf_version(g), 3);
        CHECK_EQ_INT(llmops_gguf_n_tensors(g), 0);
        llmops_gguf_str arch;
        CHECK_OK(llmops_gguf_get_str(g, "general.architecture", &arch, &err), err);
        CHECK_MSG(llmops_gguf_str_eq(arch, files[i].arch), "%s: architecture '%.*s'", files[i].file, (int)arch.len,
                  arch.data);
        llmops_gguf_array tokens, types, scores, merges;
        CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, &err), err);
        CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, &err), err);
        CHECK_EQ_INT(tokens.type, LLMOPS_GGUF_STRING);
        CHECK_EQ_INT(types.type, LLMOPS_GGUF_INT32);
        CHECK_EQ_INT(tokens.n, files[i].n_tokens);
        CHECK_EQ_INT(types.n, tokens.n);
        if (files[i].has_scores) {
            CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.scores", &scores, &err), err);
            CHECK_EQ_INT(scores.type, LLMOPS_GGUF_FLOAT32);
            CHECK_EQ_INT(scores.n, tokens.n);
        }
        if (files[i].has_merges) {
            CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.merges", &merges, &err), err);
            CHECK(merges.n > 1000 && merges.n < tokens.n);
        }
        /* every token type is one of llama.cpp's (1 normal .. 6 byte) */
        for (uint64_t k = 0; k < types.n; k++) {
            int64_t t = llmops_gguf_arr_i64(&types, k);
            CHECK_MSG(t >= 0 && t <= 6, "%s: token %llu has type %lld", files[i].file, (unsigned long long)k,
                      (long long)t);
        }
        llmops_gguf_free(g);
    }
    CHECK_EQ_INT(llmops_alloc_live(), live);
    if (!found) SKIP("tokenizers/llama.cpp-vocab not found");
}
