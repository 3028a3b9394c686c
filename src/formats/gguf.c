/*
 * GGUF reader and writer. Layout (GGUF v2/v3, little-endian):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv × {string key, u32 type, value},
 *   n_tensors × {string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset},
 *   padding to general.alignment (default 32), tensor data.
 * A string is u64 length + bytes; an array is u32 element type, u64 count,
 * elements. Every read below is checked against the bytes that remain.
 */
#include "llmops/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/fileio.h"

#define MAX_ARRAY_DEPTH 8

const char *llmops_gguf_type_name(int type) {
    static const char *const names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                        "int32", "float32", "bool",  "string", "array",
                                        "uint64", "int64", "float64"};
    return type >= 0 && type <= 12 ? names[type] : "?";
}

size_t llmops_gguf_type_size(int type) {
    switch (type) {
    case LLMOPS_GGUF_UINT8:
    case LLMOPS_GGUF_INT8:
    case LLMOPS_GGUF_BOOL: return 1;
    case LLMOPS_GGUF_UINT16:
    case LLMOPS_GGUF_INT16: return 2;
    case LLMOPS_GGUF_UINT32:
    case LLMOPS_GGUF_INT32:
    case LLMOPS_GGUF_FLOAT32: return 4;
    case LLMOPS_GGUF_UINT64:
    case LLMOPS_GGUF_INT64:
    case LLMOPS_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

int llmops_gguf_str_eq(llmops_gguf_str a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && memcmp(a.data, s, n) == 0;
}

/* ---- reader ------------------------------------------------------------------ */

struct llmops_gguf {
    llmops_mmap map; /* when opened from a path */
    const uint8_t *data;
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    llmops_gguf_kv *kvs;
    size_t n_kv;
    llmops_gguf_tensor *tensors;
    size_t n_tensors;
    uint32_t *tensor_index; /* open-addressing hash of tensor names → index+1 */
    size_t index_cap;
    llmops_arena *arena;
};

typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *origin;
    llmops_error *err;
    llmops_arena *arena;
} cursor;

static llmops_status short_read(cursor *c, uint64_t n, const char *what) {
    return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                            "%s: offset %zu: %s needs %llu bytes but only %zu remain (truncated or corrupt file)",
                            c->origin, c->pos, what, (unsigned long long)n, c->size - c->pos);
}

static llmops_status nomem(cursor *c) {
    return llmops_error_set(c->err, LLMOPS_ERR_NOMEM, "%s: out of memory at offset %zu", c->origin, c->pos);
}

static llmops_status rd(cursor *c, void *dst, size_t n, const char *what) {
    if (n > c->size - c->pos) return short_read(c, n, what);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return LLMOPS_OK;
}

static llmops_status rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static llmops_status rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static llmops_status rd_str(cursor *c, llmops_gguf_str *s, const char *what) {
    size_t at = c->pos;
    uint64_t len = 0;
    llmops_status st = rd_u64(c, &len, what);
    if (st) return st;
    if (len > c->size - c->pos) {
        c->pos = at;
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                "%s: offset %zu: %s has length %llu but only %zu bytes remain",
                                c->origin, at, what, (unsigned long long)len, c->size - c->pos - 8);
    }
    s->len = len;
    s->data = (const char *)c->p + c->pos;
    c->pos += (size_t)len;
    return LLMOPS_OK;
}

static llmops_status rd_scalar(cursor *c, llmops_gguf_type type, llmops_gguf_value *v) {
    uint8_t buf[8];
    size_t n = llmops_gguf_type_size(type);
    llmops_status st = rd(c, buf, n, llmops_gguf_type_name(type));
    if (st) return st;
    v->type = type;
    switch (type) {
    case LLMOPS_GGUF_UINT8: v->v.u64 = buf[0]; break;
    case LLMOPS_GGUF_INT8: v->v.i64 = (int8_t)buf[0]; break;
    case LLMOPS_GGUF_BOOL:
        if (buf[0] > 1)
            return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: offset %zu: bool value %u is neither 0 nor 1",
                                    c->origin, c->pos - 1, buf[0]);
        v->v.u64 = buf[0];
        break;
    case LLMOPS_GGUF_UINT16: { uint16_t x; memcpy(&x, buf, 2); v->v.u64 = x; break; }
    case LLMOPS_GGUF_INT16: { int16_t x; memcpy(&x, buf, 2); v->v.i64 = x; break; }
    case LLMOPS_GGUF_UINT32: { uint32_t x; memcpy(&x, buf, 4); v->v.u64 = x; break; }
    case LLMOPS_GGUF_INT32: { int32_t x; memcpy(&x, buf, 4); v->v.i64 = x; break; }
    case LLMOPS_GGUF_FLOAT32: { float x; memcpy(&x, buf, 4); v->v.f64 = x; break; }
    case LLMOPS_GGUF_UINT64: memcpy(&v->v.u64, buf, 8); break;
    case LLMOPS_GGUF_INT64: memcpy(&v->v.i64, buf, 8); break;
    case LLMOPS_GGUF_FLOAT64: memcpy(&v->v.f64, buf, 8); break;
    default: return llmops_error_set(c->err, LLMOPS_ERR_INTERNAL, "rd_scalar: type %d", type);
    }
    return LLMOPS_OK;
}

static llmops_status rd_value(cursor *c, uint32_t type, llmops_gguf_value *v, int depth);

static llmops_status rd_array(cursor *c, llmops_gguf_value *v, int depth) {
    size_t at = c->pos;
    uint32_t et;
    uint64_t n;
    llmops_status st = rd_u32(c, &et, "array element type");
    if (!st) st = rd_u64(c, &n, "array length");
    if (st) return st;
    if (et > LLMOPS_GGUF_FLOAT64)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: offset %zu: unknown array element type %u",
                                c->origin, at, et);
    if (depth >= MAX_ARRAY_DEPTH)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: offset %zu: arrays nested deeper than %d",
                                c->origin, at, MAX_ARRAY_DEPTH);
    size_t left = c->size - c->pos;
    llmops_gguf_array *a = &v->v.arr;
    v->type = LLMOPS_GGUF_ARRAY;
    a->type = (llmops_gguf_type)et;
    a->n = n;
    a->data = NULL;
    a->strs = NULL;
    a->items = NULL;
    size_t es = llmops_gguf_type_size((int)et);
    /* each element occupies at least `min` bytes: bound n before allocating */
    size_t min = es ? es : et == LLMOPS_GGUF_STRING ? 8 : 12;
    if (n > left / min)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                "%s: offset %zu: array of %llu %s elements cannot fit in the %zu bytes that remain",
                                c->origin, at, (unsigned long long)n, llmops_gguf_type_name((int)et), left);
    if (es) {
        a->data = c->p + c->pos;
        if (et == LLMOPS_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->pos + i] > 1)
                    return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                            "%s: offset %zu: bool value %u is neither 0 nor 1", c->origin,
                                            c->pos + (size_t)i, c->p[c->pos + i]);
        }
        c->pos += (size_t)(n * es);
        return LLMOPS_OK;
    }
    if (et == LLMOPS_GGUF_STRING) {
        llmops_gguf_str *s = n ? llmops_arena_alloc(c->arena, (size_t)n * sizeof *s, _Alignof(llmops_gguf_str)) : NULL;
        if (n && !s) return nomem(c);
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_str(c, &s[i], "array string")) != LLMOPS_OK) return st;
        a->strs = s;
        return LLMOPS_OK;
    }
    llmops_gguf_value *items = n ? llmops_arena_alloc(c->arena, (size_t)n * sizeof *items, _Alignof(llmops_gguf_value)) : NULL;
    if (n && !items) return nomem(c);
    for (uint64_t i = 0; i < n; i++)
        if ((st = rd_value(c, LLMOPS_GGUF_ARRAY, &items[i], depth + 1)) != LLMOPS_OK) return st;
    a->items = items;
    return LLMOPS_OK;
}

static llmops_status rd_value(cursor *c, uint32_t type, llmops_gguf_value *v, int depth) {
    if (type == LLMOPS_GGUF_STRING) {
        v->type = LLMOPS_GGUF_STRING;
        return rd_str(c, &v->v.str, "string value");
    }
    if (type == LLMOPS_GGUF_ARRAY) return rd_array(c, v, depth);
    if (type > LLMOPS_GGUF_FLOAT64)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: offset %zu: unknown value type %u",
                                c->origin, c->pos - 4, type);
    return rd_scalar(c, (llmops_gguf_type)type, v);
}

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* Builds the name index; fails with FORMAT on a duplicate name. */
static llmops_status index_tensors(llmops_gguf *g, cursor *c) {
    size_t cap = 16;
    while (cap < g->n_tensors * 2) cap *= 2;
    g->tensor_index = llmops_arena_alloc(g->arena, cap * sizeof(uint32_t), _Alignof(uint32_t));
    if (!g->tensor_index) return nomem(c);
    memset(g->tensor_index, 0, cap * sizeof(uint32_t));
    g->index_cap = cap;
    for (size_t i = 0; i < g->n_tensors; i++) {
        llmops_gguf_str nm = g->tensors[i].name;
        size_t slot = (size_t)name_hash(nm.data, (size_t)nm.len) & (cap - 1);
        while (g->tensor_index[slot]) {
            llmops_gguf_str o = g->tensors[g->tensor_index[slot] - 1].name;
            if (o.len == nm.len && memcmp(o.data, nm.data, (size_t)nm.len) == 0)
                return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: duplicate tensor name '%.*s'",
                                        c->origin, (int)(nm.len > 200 ? 200 : nm.len), nm.data);
            slot = (slot + 1) & (cap - 1);
        }
        g->tensor_index[slot] = (uint32_t)(i + 1);
    }
    return LLMOPS_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const llmops_gguf_tensor *x = *(const llmops_gguf_tensor *const *)a;
    const llmops_gguf_tensor *y = *(const llmops_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static llmops_status check_overlaps(llmops_gguf *g, cursor *c) {
    if (g->n_tensors < 2) return LLMOPS_OK;
    const llmops_gguf_tensor **order = llmops_malloc(g->n_tensors * sizeof *order);
    if (!order) return nomem(c);
    for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, cmp_by_offset);
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i + 1 < g->n_tensors; i++) {
        const llmops_gguf_tensor *a = order[i], *b = order[i + 1];
        if (a->offset + a->nbytes > b->offset) {
            st = llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                  "%s: tensors '%.*s' [%llu, %llu) and '%.*s' [%llu, ...) overlap in the data section",
                                  c->origin, (int)(a->name.len > 100 ? 100 : a->name.len), a->name.data,
                                  (unsigned long long)a->offset, (unsigned long long)(a->offset + a->nbytes),
                                  (int)(b->name.len > 100 ? 100 : b->name.len), b->name.data,
                                  (unsigned long long)b->offset);
            break;
        }
    }
    llmops_free(order);
    return st;
}

static llmops_status rd_tensor_info(cursor *c, llmops_gguf_tensor *t, size_t idx) {
    size_t at = c->pos;
    llmops_status st = rd_str(c, &t->name, "tensor name");
    if (!st) st = rd_u32(c, &t->n_dims, "tensor dimension count");
    if (st) return st;
    int nl = (int)(t->name.len > 100 ? 100 : t->name.len);
    if (t->n_dims > LLMOPS_GGUF_MAX_DIMS)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                "%s: offset %zu: tensor %zu '%.*s' has %u dimensions (at most %d)", c->origin,
                                at, idx, nl, t->name.data, t->n_dims, LLMOPS_GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (uint32_t d = 0; d < LLMOPS_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        if ((st = rd_u64(c, &t->ne[d], "tensor dimension")) != LLMOPS_OK) return st;
        if (t->ne[d] > (uint64_t)INT64_MAX || !llmops_mul_ok(count, t->ne[d], &count) || count > (uint64_t)INT64_MAX)
            return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                    "%s: offset %zu: tensor '%.*s' element count overflows", c->origin, at, nl,
                                    t->name.data);
    }
    uint32_t type;
    if ((st = rd_u32(c, &type, "tensor type")) != LLMOPS_OK) return st;
    const llmops_dtype_info *ti = llmops_dtype_get((int)type);
    if (!ti || !ti->in_gguf)
        return llmops_error_set(c->err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: offset %zu: tensor '%.*s' has unknown GGML type id %u", c->origin,
                                c->pos - 4, nl, t->name.data, type);
    t->type = (llmops_dtype)type;
    if ((st = rd_u64(c, &t->offset, "tensor offset")) != LLMOPS_OK) return st;
    llmops_error sub = {0};
    if (llmops_dtype_nbytes((int)type, t->ne[0], count, &t->nbytes, &sub))
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT, "%s: offset %zu: tensor '%.*s': %s", c->origin, at, nl,
                                t->name.data, sub.msg);
    return LLMOPS_OK;
}

llmops_status llmops_gguf_parse(const void *data, size_t size, const char *origin, llmops_gguf **out,
                                llmops_error *err) {
    *out = NULL;
    if (!origin) origin = "<gguf>";
    llmops_gguf *g = llmops_calloc(1, sizeof *g);
    if (!g) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    g->arena = llmops_arena_create(64 * 1024, 0);
    if (!g->arena) {
        llmops_free(g);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
    }
    g->data = data;
    g->size = size;
    cursor c = {data, size, 0, origin, err, g->arena};
    llmops_status st;
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if ((st = rd_u32(&c, &magic, "magic")) != LLMOPS_OK) goto fail;
    if (magic != LLMOPS_GGUF_MAGIC) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset 0: not a GGUF file (magic %08x, expected \"GGUF\")",
                              origin, magic);
        goto fail;
    }
    if ((st = rd_u32(&c, &g->version, "version")) != LLMOPS_OK) goto fail;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version != 0)
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: offset 4: big-endian GGUF files are not supported",
                                  origin);
        else
            st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                  "%s: offset 4: GGUF version %u is not supported (only 2 and 3)", origin,
                                  g->version);
        goto fail;
    }
    if ((st = rd_u64(&c, &n_tensors, "tensor count")) != LLMOPS_OK) goto fail;
    if ((st = rd_u64(&c, &n_kv, "key/value count")) != LLMOPS_OK) goto fail;
    /* a kv takes at least 8+4+1 bytes, a tensor info at least 8+4+4+8 */
    if (n_kv > (size - c.pos) / 13) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT,
                              "%s: offset 16: key/value count %llu cannot fit in a %zu-byte file", origin,
                              (unsigned long long)n_kv, size);
        goto fail;
    }
    if (n_tensors > (size - c.pos) / 24 || n_tensors > UINT32_MAX - 1) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT,
                              "%s: offset 8: tensor count %llu cannot fit in a %zu-byte file", origin,
                              (unsigned long long)n_tensors, size);
        goto fail;
    }
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    if (n_kv) {
        g->kvs = llmops_arena_alloc(g->arena, g->n_kv * sizeof *g->kvs, _Alignof(llmops_gguf_kv));
        if (!g->kvs) { st = nomem(&c); goto fail; }
    }
    if (n_tensors) {
        g->tensors = llmops_arena_alloc(g->arena, g->n_tensors * sizeof *g->tensors, _Alignof(llmops_gguf_tensor));
        if (!g->tensors) { st = nomem(&c); goto fail; }
    }
    g->alignment = LLMOPS_GGUF_DEFAULT_ALIGNMENT;
    size_t key_cap = 16;
    while (key_cap < g->n_kv * 2) key_cap *= 2;
    uint32_t *key_set = llmops_arena_alloc(g->arena, key_cap * sizeof *key_set, _Alignof(uint32_t));
    if (!key_set) {
        st = nomem(&c);
        goto fail;
    }
    memset(key_set, 0, key_cap * sizeof *key_set);
    for (size_t i = 0; i < g->n_kv; i++) {
        llmops_gguf_kv *kv = &g->kvs[i];
        kv->offset = c.pos;
        uint32_t type;
        if ((st = rd_str(&c, &kv->key, "key")) != LLMOPS_OK) goto fail;
        if ((st = rd_u32(&c, &type, "value type")) != LLMOPS_OK) goto fail;
        if ((st = rd_value(&c, type, &kv->value, 0)) != LLMOPS_OK) {
            llmops_error_prefix(err, "key '%.*s': ", (int)(kv->key.len > 100 ? 100 : kv->key.len), kv->key.data);
            goto fail;
        }
        /* duplicate keys: an open-addressing set of the keys seen so far */
        {
            size_t slot = (size_t)name_hash(kv->key.data, (size_t)kv->key.len) & (key_cap - 1);
            while (key_set[slot]) {
                const llmops_gguf_str *o = &g->kvs[key_set[slot] - 1].key;
                if (o->len == kv->key.len && memcmp(o->data, kv->key.data, (size_t)kv->key.len) == 0) {
                    st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset %llu: duplicate key '%.*s'", origin,
                                          (unsigned long long)kv->offset, (int)(kv->key.len > 100 ? 100 : kv->key.len),
                                          kv->key.data);
                    goto fail;
                }
                slot = (slot + 1) & (key_cap - 1);
            }
            key_set[slot] = (uint32_t)i + 1;
        }
        if (llmops_gguf_str_eq(kv->key, "general.alignment")) {
            uint64_t a = kv->value.v.u64;
            if (kv->value.type != LLMOPS_GGUF_UINT32 || a == 0 || (a & (a - 1))) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                      "%s: offset %llu: general.alignment must be a uint32 power of two",
                                      origin, (unsigned long long)kv->offset);
                goto fail;
            }
            g->alignment = (uint32_t)a;
        }
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        if ((st = rd_tensor_info(&c, &g->tensors[i], i)) != LLMOPS_OK) goto fail;
    g->data_offset = ((uint64_t)c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > size) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: data section at offset %llu starts past the end (%zu bytes)",
                              origin, (unsigned long long)g->data_offset, size);
        goto fail;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        llmops_gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        int nl = (int)(t->name.len > 100 ? 100 : t->name.len);
        if (t->offset % g->alignment) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%.*s': offset %llu is not a multiple of the alignment %u",
                                  origin, nl, t->name.data, (unsigned long long)t->offset, g->alignment);
            goto fail;
        }
        if (!llmops_add_ok(g->data_offset, t->offset, &end) || !llmops_add_ok(end, t->nbytes, &end) || end > size) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                  "%s: tensor '%.*s': bytes [%llu, %llu) of the data section (file offset %llu) run past the end of the %zu-byte file",
                                  origin, nl, t->name.data, (unsigned long long)t->offset,
                                  (unsigned long long)(t->offset + t->nbytes),
                                  (unsigned long long)(g->data_offset + t->offset), size);
            goto fail;
        }
    }
    if ((st = index_tensors(g, &c)) != LLMOPS_OK) goto fail;
    if ((st = check_overlaps(g, &c)) != LLMOPS_OK) goto fail;
    *out = g;
    return LLMOPS_OK;
fail:
    llmops_gguf_free(g);
    return st;
}

llmops_status llmops_gguf_open(const char *path, llmops_gguf **out, llmops_error *err) {
    llmops_mmap m;
    *out = NULL;
    llmops_status st = llmops_mmap_open(path, &m, err);
    if (st) return st;
    st = llmops_gguf_parse(m.data, m.size, path, out, err);
    if (st) {
        llmops_mmap_close(&m);
        return st;
    }
    (*out)->map = m;
    return LLMOPS_OK;
}

void llmops_gguf_free(llmops_gguf *g) {
    if (!g) return;
    llmops_mmap_close(&g->map);
    llmops_arena_free(g->arena);
    llmops_free(g);
}

uint32_t llmops_gguf_version(const llmops_gguf *g) { return g->version; }
uint32_t llmops_gguf_alignment(const llmops_gguf *g) { return g->alignment; }
uint64_t llmops_gguf_data_offset(const llmops_gguf *g) { return g->data_offset; }
uint64_t llmops_gguf_file_size(const llmops_gguf *g) { return g->size; }
size_t llmops_gguf_n_kv(const llmops_gguf *g) { return g->n_kv; }
size_t llmops_gguf_n_tensors(const llmops_gguf *g) { return g->n_tensors; }

const llmops_gguf_kv *llmops_gguf_kv_at(const llmops_gguf *g, size_t i) {
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const llmops_gguf_kv *llmops_gguf_find_kv(const llmops_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (llmops_gguf_str_eq(g->kvs[i].key, key)) return &g->kvs[i];
    return NULL;
}

const llmops_gguf_tensor *llmops_gguf_tensor_at(const llmops_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const llmops_gguf_tensor *llmops_gguf_find_tensor(const llmops_gguf *g, const char *name) {
    if (!g->n_tensors) return NULL;
    size_t n = strlen(name);
    size_t slot = (size_t)name_hash(name, n) & (g->index_cap - 1);
    while (g->tensor_index[slot]) {
        const llmops_gguf_tensor *t = &g->tensors[g->tensor_index[slot] - 1];
        if (t->name.len == n && memcmp(t->name.data, name, n) == 0) return t;
        slot = (slot + 1) & (g->index_cap - 1);
    }
    return NULL;
}

const void *llmops_gguf_tensor_data(const llmops_gguf *g, const llmops_gguf_tensor *t) {
    return g->data + g->data_offset + t->offset;
}

static llmops_status need_kv(const llmops_gguf *g, const char *key, const llmops_gguf_kv **kv,
                             llmops_error *err) {
    *kv = llmops_gguf_find_kv(g, key);
    if (!*kv) return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "GGUF key '%s' is missing", key);
    return LLMOPS_OK;
}

static int is_unsigned(llmops_gguf_type t) {
    return t == LLMOPS_GGUF_UINT8 || t == LLMOPS_GGUF_UINT16 || t == LLMOPS_GGUF_UINT32 || t == LLMOPS_GGUF_UINT64;
}

static int is_signed(llmops_gguf_type t) {
    return t == LLMOPS_GGUF_INT8 || t == LLMOPS_GGUF_INT16 || t == LLMOPS_GGUF_INT32 || t == LLMOPS_GGUF_INT64;
}

static llmops_status wrong_kv_type(const char *key, const llmops_gguf_kv *kv, const char *want, llmops_error *err) {
    return llmops_error_set(err, LLMOPS_ERR_FORMAT, "GGUF key '%s' is %s, expected %s", key,
                            llmops_gguf_type_name(kv->value.type), want);
}

llmops_status llmops_gguf_get_u64(const llmops_gguf *g, const char *key, uint64_t *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (is_unsigned(kv->value.type)) *out = kv->value.v.u64;
    else if (is_signed(kv->value.type) && kv->value.v.i64 >= 0) *out = (uint64_t)kv->value.v.i64;
    else return wrong_kv_type(key, kv, "a non-negative integer", err);
    return LLMOPS_OK;
}

llmops_status llmops_gguf_get_i64(const llmops_gguf *g, const char *key, int64_t *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (is_signed(kv->value.type)) *out = kv->value.v.i64;
    else if (is_unsigned(kv->value.type) && kv->value.v.u64 <= (uint64_t)INT64_MAX) *out = (int64_t)kv->value.v.u64;
    else return wrong_kv_type(key, kv, "an integer", err);
    return LLMOPS_OK;
}

llmops_status llmops_gguf_get_f64(const llmops_gguf *g, const char *key, double *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (kv->value.type != LLMOPS_GGUF_FLOAT32 && kv->value.type != LLMOPS_GGUF_FLOAT64)
        return wrong_kv_type(key, kv, "a float", err);
    *out = kv->value.v.f64;
    return LLMOPS_OK;
}

llmops_status llmops_gguf_get_bool(const llmops_gguf *g, const char *key, int *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (kv->value.type != LLMOPS_GGUF_BOOL) return wrong_kv_type(key, kv, "a bool", err);
    *out = (int)kv->value.v.u64;
    return LLMOPS_OK;
}

llmops_status llmops_gguf_get_str(const llmops_gguf *g, const char *key, llmops_gguf_str *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (kv->value.type != LLMOPS_GGUF_STRING) return wrong_kv_type(key, kv, "a string", err);
    *out = kv->value.v.str;
    return LLMOPS_OK;
}

llmops_status llmops_gguf_get_arr(const llmops_gguf *g, const char *key, llmops_gguf_array *out, llmops_error *err) {
    const llmops_gguf_kv *kv;
    llmops_status st = need_kv(g, key, &kv, err);
    if (st) return st;
    if (kv->value.type != LLMOPS_GGUF_ARRAY) return wrong_kv_type(key, kv, "an array", err);
    *out = kv->value.v.arr;
    return LLMOPS_OK;
}

uint64_t llmops_gguf_arr_u64(const llmops_gguf_array *a, uint64_t i) {
    const uint8_t *p = (const uint8_t *)a->data + i * llmops_gguf_type_size(a->type);
    switch (a->type) {
    case LLMOPS_GGUF_UINT8:
    case LLMOPS_GGUF_BOOL: return p[0];
    case LLMOPS_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case LLMOPS_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case LLMOPS_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); return x; }
    default: return (uint64_t)llmops_gguf_arr_i64(a, i);
    }
}

int64_t llmops_gguf_arr_i64(const llmops_gguf_array *a, uint64_t i) {
    const uint8_t *p = (const uint8_t *)a->data + i * llmops_gguf_type_size(a->type);
    switch (a->type) {
    case LLMOPS_GGUF_INT8: return (int8_t)p[0];
    case LLMOPS_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); return x; }
    case LLMOPS_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
    case LLMOPS_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); return x; }
    case LLMOPS_GGUF_FLOAT32:
    case LLMOPS_GGUF_FLOAT64: {
        /* the cast is UB for NaN and outside int64, both a file's to choose: saturate */
        double d = llmops_gguf_arr_f64(a, i);
        if (d != d) return 0;
        if (d >= 0x1p63) return INT64_MAX;
        if (d < -0x1p63) return INT64_MIN;
        return (int64_t)d;
    }
    default: return is_unsigned(a->type) || a->type == LLMOPS_GGUF_BOOL ? (int64_t)llmops_gguf_arr_u64(a, i) : 0;
    }
}

double llmops_gguf_arr_f64(const llmops_gguf_array *a, uint64_t i) {
    const uint8_t *p = (const uint8_t *)a->data + i * llmops_gguf_type_size(a->type);
    if (a->type == LLMOPS_GGUF_FLOAT32) { float x; memcpy(&x, p, 4); return x; }
    if (a->type == LLMOPS_GGUF_FLOAT64) { double x; memcpy(&x, p, 8); return x; }
    if (is_signed(a->type)) return (double)llmops_gguf_arr_i64(a, i);
    return (double)llmops_gguf_arr_u64(a, i);
}

/* ---- writer ------------------------------------------------------------------ */

typedef struct {
    llmops_gguf_str key;
    llmops_gguf_value value;
} wkv;

typedef struct {
    char *name;
    llmops_dtype type;
    uint32_t n_dims;
    uint64_t ne[LLMOPS_GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    llmops_gguf_fill_fn fn;
    void *ctx;
} wtensor;

struct llmops_gguf_writer {
    llmops_arena *arena; /* keys, values, names */
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t version;
};

llmops_gguf_writer *llmops_gguf_writer_create(void) {
    llmops_gguf_writer *w = llmops_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->arena = llmops_arena_create(64 * 1024, 0);
    if (!w->arena) {
        llmops_free(w);
        return NULL;
    }
    w->version = 3;
    return w;
}

void llmops_gguf_writer_free(llmops_gguf_writer *w) {
    if (!w) return;
    llmops_arena_free(w->arena);
    llmops_free(w->kvs);
    llmops_free(w->tensors);
    llmops_free(w);
}

void llmops_gguf_writer_set_version(llmops_gguf_writer *w, uint32_t version) { w->version = version; }

static llmops_status w_nomem(llmops_error *err) {
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory building a GGUF file");
}

/* Deep-copies v into the arena. */
static llmops_status copy_value(llmops_arena *a, const llmops_gguf_value *v, llmops_gguf_value *out, int depth,
                                llmops_error *err) {
    *out = *v;
    if (v->type == LLMOPS_GGUF_STRING) {
        char *d = llmops_arena_alloc(a, (size_t)v->v.str.len + 1, 1);
        if (!d) return w_nomem(err);
        if (v->v.str.len) memcpy(d, v->v.str.data, (size_t)v->v.str.len);
        d[v->v.str.len] = '\0';
        out->v.str.data = d;
        return LLMOPS_OK;
    }
    if (v->type != LLMOPS_GGUF_ARRAY) {
        if (v->type > LLMOPS_GGUF_FLOAT64)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "unknown GGUF value type %d", v->type);
        return LLMOPS_OK;
    }
    if (depth >= MAX_ARRAY_DEPTH)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "arrays nested deeper than %d", MAX_ARRAY_DEPTH);
    const llmops_gguf_array *s = &v->v.arr;
    llmops_gguf_array *d = &out->v.arr;
    d->data = NULL;
    d->strs = NULL;
    d->items = NULL;
    if (s->type > LLMOPS_GGUF_FLOAT64)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "unknown GGUF array element type %d", s->type);
    size_t es = llmops_gguf_type_size(s->type);
    if (s->n == 0) return LLMOPS_OK;
    if (s->n > SIZE_MAX / 64) return w_nomem(err);
    if (es) {
        void *p = llmops_arena_alloc(a, (size_t)s->n * es, 8);
        if (!p) return w_nomem(err);
        memcpy(p, s->data, (size_t)s->n * es);
        d->data = p;
    } else if (s->type == LLMOPS_GGUF_STRING) {
        llmops_gguf_str *strs = llmops_arena_alloc(a, (size_t)s->n * sizeof *strs, _Alignof(llmops_gguf_str));
        if (!strs) return w_nomem(err);
        for (uint64_t i = 0; i < s->n; i++) {
            char *c = llmops_arena_alloc(a, (size_t)s->strs[i].len + 1, 1);
            if (!c) return w_nomem(err);
            if (s->strs[i].len) memcpy(c, s->strs[i].data, (size_t)s->strs[i].len);
            c[s->strs[i].len] = '\0';
            strs[i].len = s->strs[i].len;
            strs[i].data = c;
        }
        d->strs = strs;
    } else {
        llmops_gguf_value *items = llmops_arena_alloc(a, (size_t)s->n * sizeof *items, _Alignof(llmops_gguf_value));
        if (!items) return w_nomem(err);
        for (uint64_t i = 0; i < s->n; i++) {
            if (s->items[i].type != LLMOPS_GGUF_ARRAY)
                return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "array of arrays holds a non-array element");
            llmops_status st = copy_value(a, &s->items[i], &items[i], depth + 1, err);
            if (st) return st;
        }
        d->items = items;
    }
    return LLMOPS_OK;
}

llmops_status llmops_gguf_writer_set_value(llmops_gguf_writer *w, llmops_gguf_str key, const llmops_gguf_value *v,
                                           llmops_error *err) {
    llmops_gguf_value copy;
    llmops_status st = copy_value(w->arena, v, &copy, 0, err);
    if (st) return st;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (w->kvs[i].key.len == key.len && memcmp(w->kvs[i].key.data, key.data, (size_t)key.len) == 0) {
            w->kvs[i].value = copy;
            return LLMOPS_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *n = llmops_reallocarray(w->kvs, nc, sizeof *n);
        if (!n) return w_nomem(err);
        w->kvs = n;
        w->cap_kv = nc;
    }
    char *k = llmops_arena_strndup(w->arena, key.data, (size_t)key.len);
    if (!k) return w_nomem(err);
    w->kvs[w->n_kv].key = (llmops_gguf_str){key.len, k};
    w->kvs[w->n_kv].value = copy;
    w->n_kv++;
    return LLMOPS_OK;
}

void llmops_gguf_writer_remove(llmops_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (llmops_gguf_str_eq(w->kvs[i].key, key)) {
            memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
            w->n_kv--;
            return;
        }
    }
}

static llmops_gguf_str cstr(const char *s) { return (llmops_gguf_str){strlen(s), s}; }

static llmops_status set_scalar(llmops_gguf_writer *w, const char *key, llmops_gguf_value v, llmops_error *err) {
    return llmops_gguf_writer_set_value(w, cstr(key), &v, err);
}

llmops_status llmops_gguf_writer_set_u32(llmops_gguf_writer *w, const char *key, uint32_t v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_UINT32, .v.u64 = v};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_i32(llmops_gguf_writer *w, const char *key, int32_t v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_INT32, .v.i64 = v};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_u64(llmops_gguf_writer *w, const char *key, uint64_t v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_UINT64, .v.u64 = v};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_f32(llmops_gguf_writer *w, const char *key, float v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_FLOAT32, .v.f64 = v};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_bool(llmops_gguf_writer *w, const char *key, int v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_BOOL, .v.u64 = v ? 1 : 0};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_str(llmops_gguf_writer *w, const char *key, const char *v, llmops_error *err) {
    llmops_gguf_value x = {.type = LLMOPS_GGUF_STRING, .v.str = cstr(v)};
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_arr(llmops_gguf_writer *w, const char *key, llmops_gguf_type elem_type,
                                         const void *data, size_t n, llmops_error *err) {
    if (!llmops_gguf_type_size(elem_type))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: set_arr needs a scalar element type", key);
    llmops_gguf_value x = {.type = LLMOPS_GGUF_ARRAY};
    x.v.arr.type = elem_type;
    x.v.arr.n = n;
    x.v.arr.data = data;
    return set_scalar(w, key, x, err);
}

llmops_status llmops_gguf_writer_set_arr_str(llmops_gguf_writer *w, const char *key, const char *const *strs,
                                             const size_t *lens, size_t n, llmops_error *err) {
    llmops_gguf_str *tmp = n ? llmops_malloc(n * sizeof *tmp) : NULL;
    if (n && !tmp) return w_nomem(err);
    for (size_t i = 0; i < n; i++) tmp[i] = (llmops_gguf_str){lens ? lens[i] : strlen(strs[i]), strs[i]};
    llmops_gguf_value x = {.type = LLMOPS_GGUF_ARRAY};
    x.v.arr.type = LLMOPS_GGUF_STRING;
    x.v.arr.n = n;
    x.v.arr.strs = tmp;
    llmops_status st = set_scalar(w, key, x, err);
    llmops_free(tmp);
    return st;
}

static llmops_status add_tensor(llmops_gguf_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                                const uint64_t *ne, const void *data, llmops_gguf_fill_fn fn, void *ctx,
                                llmops_error *err) {
    size_t nl = strlen(name);
    /* llama.cpp keeps names in GGML_MAX_NAME (64) bytes including the NUL */
    if (nl == 0 || nl >= 64)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor name '%s' must be 1..63 bytes (llama.cpp's limit)",
                                name);
    if (n_dims == 0 || n_dims > LLMOPS_GGUF_MAX_DIMS)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': %u dimensions (1..%d allowed)", name, n_dims,
                                LLMOPS_GGUF_MAX_DIMS);
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti || !ti->in_gguf)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': type %s cannot be stored in GGUF", name,
                                llmops_dtype_name(type));
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' added twice", name);
    wtensor t = {0};
    uint64_t count = 1;
    for (uint32_t d = 0; d < LLMOPS_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (!llmops_mul_ok(count, t.ne[d], &count) || count > (uint64_t)INT64_MAX)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': element count overflows", name);
    }
    llmops_status st = llmops_dtype_nbytes(type, t.ne[0], count, &t.nbytes, err);
    if (st) return llmops_error_prefix(err, "tensor '%s': ", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *n = llmops_reallocarray(w->tensors, nc, sizeof *n);
        if (!n) return w_nomem(err);
        w->tensors = n;
        w->cap_tensors = nc;
    }
    t.name = llmops_arena_strndup(w->arena, name, nl);
    if (!t.name) return w_nomem(err);
    t.type = type;
    t.n_dims = n_dims;
    t.data = data;
    t.fn = fn;
    t.ctx = ctx;
    w->tensors[w->n_tensors++] = t;
    return LLMOPS_OK;
}

llmops_status llmops_gguf_writer_add_tensor(llmops_gguf_writer *w, const char *name, llmops_dtype type,
                                            uint32_t n_dims, const uint64_t *ne, const void *data,
                                            llmops_error *err) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL, err);
}

llmops_status llmops_gguf_writer_add_tensor_fn(llmops_gguf_writer *w, const char *name, llmops_dtype type,
                                               uint32_t n_dims, const uint64_t *ne, llmops_gguf_fill_fn fn,
                                               void *ctx, llmops_error *err) {
    return add_tensor(w, name, type, n_dims, ne, NULL, fn, ctx, err);
}

static llmops_status w_bytes(llmops_atomic_file *f, const void *p, size_t n, llmops_error *err) {
    return llmops_atomic_file_write(f, p, n, err);
}

static llmops_status w_u32(llmops_atomic_file *f, uint32_t v, llmops_error *err) { return w_bytes(f, &v, 4, err); }
static llmops_status w_u64(llmops_atomic_file *f, uint64_t v, llmops_error *err) { return w_bytes(f, &v, 8, err); }

static llmops_status w_str(llmops_atomic_file *f, llmops_gguf_str s, llmops_error *err) {
    llmops_status st = w_u64(f, s.len, err);
    if (!st && s.len) st = w_bytes(f, s.data, (size_t)s.len, err);
    return st;
}

static llmops_status w_value(llmops_atomic_file *f, const llmops_gguf_value *v, llmops_error *err);

static llmops_status w_scalar(llmops_atomic_file *f, const llmops_gguf_value *v, llmops_error *err) {
    uint8_t buf[8];
    size_t n = llmops_gguf_type_size(v->type);
    switch (v->type) {
    case LLMOPS_GGUF_UINT8:
    case LLMOPS_GGUF_BOOL: buf[0] = (uint8_t)v->v.u64; break;
    case LLMOPS_GGUF_INT8: buf[0] = (uint8_t)(int8_t)v->v.i64; break;
    case LLMOPS_GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; memcpy(buf, &x, 2); break; }
    case LLMOPS_GGUF_INT16: { int16_t x = (int16_t)v->v.i64; memcpy(buf, &x, 2); break; }
    case LLMOPS_GGUF_UINT32: { uint32_t x = (uint32_t)v->v.u64; memcpy(buf, &x, 4); break; }
    case LLMOPS_GGUF_INT32: { int32_t x = (int32_t)v->v.i64; memcpy(buf, &x, 4); break; }
    case LLMOPS_GGUF_FLOAT32: { float x = (float)v->v.f64; memcpy(buf, &x, 4); break; }
    case LLMOPS_GGUF_UINT64: memcpy(buf, &v->v.u64, 8); break;
    case LLMOPS_GGUF_INT64: memcpy(buf, &v->v.i64, 8); break;
    case LLMOPS_GGUF_FLOAT64: memcpy(buf, &v->v.f64, 8); break;
    default: return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "w_scalar: type %d", v->type);
    }
    return w_bytes(f, buf, n, err);
}

/* Writes the value body (the type tag is written by the caller). */
static llmops_status w_value(llmops_atomic_file *f, const llmops_gguf_value *v, llmops_error *err) {
    llmops_status st;
    if (v->type == LLMOPS_GGUF_STRING) return w_str(f, v->v.str, err);
    if (v->type != LLMOPS_GGUF_ARRAY) return w_scalar(f, v, err);
    const llmops_gguf_array *a = &v->v.arr;
    if ((st = w_u32(f, a->type, err)) || (st = w_u64(f, a->n, err))) return st;
    size_t es = llmops_gguf_type_size(a->type);
    if (es) return a->n ? w_bytes(f, a->data, (size_t)a->n * es, err) : LLMOPS_OK;
    for (uint64_t i = 0; i < a->n; i++) {
        st = a->type == LLMOPS_GGUF_STRING ? w_str(f, a->strs[i], err) : w_value(f, &a->items[i], err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

llmops_status llmops_gguf_writer_write(llmops_gguf_writer *w, const char *path, llmops_error *err) {
    if (w->version != 2 && w->version != 3)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "can write GGUF versions 2 and 3, not %u", w->version);
    uint32_t align = LLMOPS_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!llmops_gguf_str_eq(w->kvs[i].key, "general.alignment")) continue;
        const llmops_gguf_value *v = &w->kvs[i].value;
        if (v->type != LLMOPS_GGUF_UINT32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "general.alignment must be a uint32 power of two");
        align = (uint32_t)v->v.u64;
    }
    llmops_atomic_file f;
    llmops_status st = llmops_atomic_file_open(&f, path, err);
    if (st) return st;
    uint8_t *scratch = NULL;
    uint64_t scratch_cap = 0;
    if ((st = w_u32(&f, LLMOPS_GGUF_MAGIC, err)) || (st = w_u32(&f, w->version, err)) ||
        (st = w_u64(&f, w->n_tensors, err)) || (st = w_u64(&f, w->n_kv, err)))
        goto fail;
    for (size_t i = 0; i < w->n_kv; i++) {
        if ((st = w_str(&f, w->kvs[i].key, err)) || (st = w_u32(&f, w->kvs[i].value.type, err)) ||
            (st = w_value(&f, &w->kvs[i].value, err)))
            goto fail;
    }
    /* tensors are laid out in order, each padded to the alignment, as llama.cpp expects */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        if ((st = w_str(&f, cstr(t->name), err)) || (st = w_u32(&f, t->n_dims, err))) goto fail;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = w_u64(&f, t->ne[d], err))) goto fail;
        if ((st = w_u32(&f, (uint32_t)t->type, err)) || (st = w_u64(&f, off, err))) goto fail;
        off += (t->nbytes + align - 1) / align * align;
    }
    if ((st = llmops_atomic_file_pad(&f, align, err))) goto fail;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        const void *src = t->data;
        if (t->fn) {
            if (t->nbytes > scratch_cap) {
                uint8_t *n = llmops_realloc(scratch, (size_t)t->nbytes);
                if (!n) {
                    st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for tensor '%s' (%llu bytes)", t->name,
                                          (unsigned long long)t->nbytes);
                    goto fail;
                }
                scratch = n;
                scratch_cap = t->nbytes;
            }
            if ((st = t->fn(t->ctx, scratch, t->nbytes, err))) {
                llmops_error_prefix(err, "tensor '%s': ", t->name);
                goto fail;
            }
            src = scratch;
        }
        if ((st = w_bytes(&f, src, (size_t)t->nbytes, err)) || (st = llmops_atomic_file_pad(&f, align, err)))
            goto fail;
    }
    llmops_free(scratch);
    return llmops_atomic_file_commit(&f, err);
fail:
    llmops_free(scratch);
    llmops_atomic_file_abort(&f);
    return st;
}
