#include "llmops/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"

struct llmops_safetensors {
    llmops_mmap map;
    const uint8_t *data;
    size_t size;
    uint64_t header_len;
    llmops_st_tensor *tensors;
    size_t n_tensors;
    const char **meta_keys;
    const char **meta_values;
    size_t n_meta;
    llmops_arena *arena;
};

static llmops_status st_nomem(const char *origin, llmops_error *err) {
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
}

static int cmp_range(const void *a, const void *b) {
    const llmops_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads one tensor entry `name: {dtype, shape, data_offsets}`. */
static llmops_status parse_entry(llmops_safetensors *st, const char *origin, const char *name, json_t *v,
                                 llmops_st_tensor *t, uint64_t buf_len, llmops_error *err) {
    if (!json_is_object(v))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s' is %s, expected an object", origin,
                                name, llmops_json_type_name(v));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s' has unknown field '%s'", origin,
                                    name, key);
    }
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s': \"dtype\" must be a string", origin, name);
    const llmops_dtype_info *ti = llmops_dtype_by_st_name(json_string_value(dt), json_string_length(dt));
    if (!ti)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: header: tensor '%s': unknown dtype '%s'", origin, name,
                                json_string_value(dt));
    if (!json_is_array(shape))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s': \"shape\" must be an array", origin, name);
    if (json_array_size(shape) > LLMOPS_MAX_DIMS)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: header: tensor '%s' has %zu dimensions (at most %d)",
                                origin, name, json_array_size(shape), LLMOPS_MAX_DIMS);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: header: tensor '%s': \"data_offsets\" must be [begin, end] integers", origin, name);
    t->name = llmops_arena_strndup(st->arena, name, strlen(name));
    if (!t->name) return st_nomem(origin, err);
    t->type = ti->type;
    t->n_dims = (uint32_t)json_array_size(shape);
    uint64_t count = 1;
    for (uint32_t d = 0; d < LLMOPS_MAX_DIMS; d++) t->shape[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        json_t *x = json_array_get(shape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: header: tensor '%s': shape[%u] must be a non-negative integer", origin, name, d);
        t->shape[d] = (uint64_t)json_integer_value(x);
        if (!llmops_mul_ok(count, t->shape[d], &count))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s': element count overflows", origin,
                                    name);
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0)), e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: tensor '%s': data_offsets [%lld, %lld] are not ordered",
                                origin, name, (long long)b, (long long)e);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    uint64_t nbytes;
    if (!llmops_mul_ok(count, ti->type_size, &nbytes) || nbytes != t->end - t->begin)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: header: tensor '%s': %s × %llu elements needs %llu bytes but data_offsets span %llu",
                                origin, name, ti->st_name, (unsigned long long)count,
                                (unsigned long long)(count * ti->type_size), (unsigned long long)(t->end - t->begin));
    if (t->end > buf_len)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: tensor '%s': bytes [%llu, %llu) run past the %llu-byte buffer (file offset %llu)",
                                origin, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                (unsigned long long)buf_len, (unsigned long long)(8 + st->header_len + t->begin));
    return LLMOPS_OK;
}

static llmops_status parse_header(llmops_safetensors *st, const char *origin, json_t *root, llmops_error *err) {
    uint64_t buf_len = st->size - 8 - st->header_len;
    if (!json_is_object(root))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header is %s, expected a JSON object", origin,
                                llmops_json_type_name(root));
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        if (!json_is_object(meta))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: \"__metadata__\" must be an object", origin);
        n--;
        st->n_meta = json_object_size(meta);
        if (st->n_meta) {
            st->meta_keys = llmops_arena_alloc(st->arena, st->n_meta * sizeof(char *), _Alignof(char *));
            st->meta_values = llmops_arena_alloc(st->arena, st->n_meta * sizeof(char *), _Alignof(char *));
            if (!st->meta_keys || !st->meta_values) return st_nomem(origin, err);
        }
        size_t i = 0;
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v))
                return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: header: __metadata__.%s must be a string, got %s",
                                        origin, k, llmops_json_type_name(v));
            st->meta_keys[i] = llmops_arena_strndup(st->arena, k, strlen(k));
            st->meta_values[i] = llmops_arena_strndup(st->arena, json_string_value(v), json_string_length(v));
            if (!st->meta_keys[i] || !st->meta_values[i]) return st_nomem(origin, err);
            i++;
        }
    }
    st->n_tensors = n;
    if (n) {
        st->tensors = llmops_arena_alloc(st->arena, n * sizeof *st->tensors, _Alignof(llmops_st_tensor));
        if (!st->tensors) return st_nomem(origin, err);
    }
    size_t i = 0;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0) continue;
        llmops_status s = parse_entry(st, origin, name, v, &st->tensors[i], buf_len, err);
        if (s) return s;
        i++;
    }
    if (n) qsort(st->tensors, n, sizeof *st->tensors, cmp_range); /* NULL with n == 0 is UB */
    /* the ranges must tile [0, buf_len) exactly, as the reference reader demands */
    uint64_t expect = 0;
    for (i = 0; i < n; i++) {
        const llmops_st_tensor *t = &st->tensors[i];
        if (t->begin < expect)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: tensor '%s' bytes [%llu, %llu) overlap '%s' which ends at %llu", origin,
                                    t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                    st->tensors[i - 1].name, (unsigned long long)expect);
        if (t->begin > expect)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "%s: hole in the byte buffer: bytes [%llu, %llu) belong to no tensor (before '%s')",
                                    origin, (unsigned long long)expect, (unsigned long long)t->begin, t->name);
        expect = t->end;
    }
    if (expect != buf_len)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: the byte buffer has %llu bytes but the tensors cover only %llu", origin,
                                (unsigned long long)buf_len, (unsigned long long)expect);
    return LLMOPS_OK;
}

llmops_status llmops_safetensors_parse(const void *data, size_t size, const char *origin, llmops_safetensors **out,
                                       llmops_error *err) {
    *out = NULL;
    if (!origin) origin = "<safetensors>";
    if (size < 8)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", origin, size);
    uint64_t hl;
    memcpy(&hl, data, 8);
    if (hl > LLMOPS_ST_MAX_HEADER)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset 0: header length %llu exceeds the %u-byte limit",
                                origin, (unsigned long long)hl, LLMOPS_ST_MAX_HEADER);
    if (hl > size - 8)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                "%s: offset 0: header length %llu runs past the end of the %zu-byte file", origin,
                                (unsigned long long)hl, size);
    const char *hdr = (const char *)data + 8;
    if (hl == 0 || hdr[0] != '{')
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: offset 8: header does not start with '{'", origin);
    llmops_safetensors *st = llmops_calloc(1, sizeof *st);
    if (!st) return st_nomem(origin, err);
    st->arena = llmops_arena_create(16 * 1024, 0);
    if (!st->arena) {
        llmops_free(st);
        return st_nomem(origin, err);
    }
    st->data = data;
    st->size = size;
    st->header_len = hl;
    /* trailing spaces pad the header to 8 bytes; jansson accepts whitespace */
    char sub_origin[512];
    snprintf(sub_origin, sizeof sub_origin, "%s: header", origin);
    json_t *root = NULL;
    llmops_status s = llmops_json_parse(hdr, (size_t)hl, sub_origin, &root, err);
    if (!s) s = parse_header(st, origin, root, err);
    json_decref(root);
    if (s) {
        llmops_safetensors_free(st);
        return s;
    }
    *out = st;
    return LLMOPS_OK;
}

llmops_status llmops_safetensors_open(const char *path, llmops_safetensors **out, llmops_error *err) {
    llmops_mmap m;
    *out = NULL;
    llmops_status s = llmops_mmap_open(path, &m, err);
    if (s) return s;
    s = llmops_safetensors_parse(m.data, m.size, path, out, err);
    if (s) {
        llmops_mmap_close(&m);
        return s;
    }
    (*out)->map = m;
    return LLMOPS_OK;
}

void llmops_safetensors_free(llmops_safetensors *st) {
    if (!st) return;
    llmops_mmap_close(&st->map);
    llmops_arena_free(st->arena);
    llmops_free(st);
}

size_t llmops_safetensors_n_tensors(const llmops_safetensors *st) { return st->n_tensors; }

const llmops_st_tensor *llmops_safetensors_tensor_at(const llmops_safetensors *st, size_t i) {
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const llmops_st_tensor *llmops_safetensors_find(const llmops_safetensors *st, const char *name) {
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const void *llmops_safetensors_data(const llmops_safetensors *st, const llmops_st_tensor *t) {
    return st->data + 8 + st->header_len + t->begin;
}

uint64_t llmops_safetensors_buffer_offset(const llmops_safetensors *st) { return 8 + st->header_len; }

size_t llmops_safetensors_n_metadata(const llmops_safetensors *st) { return st->n_meta; }

void llmops_safetensors_metadata_at(const llmops_safetensors *st, size_t i, const char **key, const char **value) {
    *key = i < st->n_meta ? st->meta_keys[i] : NULL;
    *value = i < st->n_meta ? st->meta_values[i] : NULL;
}

const char *llmops_safetensors_find_metadata(const llmops_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* ---- sharded model ------------------------------------------------------------ */

typedef struct {
    size_t shard;
    const llmops_st_tensor *t;
} model_entry;

struct llmops_st_model {
    char **paths;
    llmops_safetensors **shards;
    size_t n_shards;
    model_entry *entries;
    size_t n_entries;
};

void llmops_st_model_free(llmops_st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_shards; i++) {
        llmops_safetensors_free(m->shards[i]);
        llmops_free(m->paths[i]);
    }
    llmops_free(m->paths);
    llmops_free(m->shards);
    llmops_free(m->entries);
    llmops_free(m);
}

static llmops_status model_add_shard(llmops_st_model *m, const char *path, llmops_error *err) {
    char **np = llmops_reallocarray(m->paths, m->n_shards + 1, sizeof *np);
    if (!np) return st_nomem(path, err);
    m->paths = np;
    llmops_safetensors **ns = llmops_reallocarray(m->shards, m->n_shards + 1, sizeof *ns);
    if (!ns) return st_nomem(path, err);
    m->shards = ns;
    m->paths[m->n_shards] = llmops_strdup(path);
    if (!m->paths[m->n_shards]) return st_nomem(path, err);
    llmops_status s = llmops_safetensors_open(path, &m->shards[m->n_shards], err);
    if (s) {
        llmops_free(m->paths[m->n_shards]);
        return s;
    }
    m->n_shards++;
    return LLMOPS_OK;
}

static llmops_status model_index_entries(llmops_st_model *m, llmops_error *err) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_shards; i++) n += llmops_safetensors_n_tensors(m->shards[i]);
    m->entries = n ? llmops_malloc(n * sizeof *m->entries) : NULL;
    if (n && !m->entries) return st_nomem("safetensors model", err);
    size_t k = 0;
    for (size_t i = 0; i < m->n_shards; i++)
        for (size_t j = 0; j < llmops_safetensors_n_tensors(m->shards[i]); j++)
            m->entries[k++] = (model_entry){i, llmops_safetensors_tensor_at(m->shards[i], j)};
    m->n_entries = n;
    /* a name in two shards is ambiguous */
    for (size_t a = 0; a < m->n_shards; a++)
        for (size_t b = a + 1; b < m->n_shards; b++)
            for (size_t j = 0; j < llmops_safetensors_n_tensors(m->shards[a]); j++) {
                const char *nm = llmops_safetensors_tensor_at(m->shards[a], j)->name;
                if (llmops_safetensors_find(m->shards[b], nm))
                    return llmops_error_set(err, LLMOPS_ERR_FORMAT, "tensor '%s' is in both %s and %s", nm,
                                            m->paths[a], m->paths[b]);
            }
    return LLMOPS_OK;
}

static llmops_status open_index(llmops_st_model *m, const char *index_path, llmops_error *err) {
    json_t *root = NULL;
    llmops_status s = llmops_json_load_file(index_path, 64u << 20, &root, err);
    if (s) return s;
    char *dir = llmops_strdup(index_path);
    if (!dir) {
        json_decref(root);
        return st_nomem(index_path, err);
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    json_t *map = json_object_get(root, "weight_map");
    const char *name;
    json_t *file;
    if (!json_is_object(map)) {
        s = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"weight_map\" must be an object", index_path);
        goto done;
    }
    json_object_foreach(map, name, file) {
        if (!json_is_string(file)) {
            s = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: weight_map.%s must be a file name", index_path, name);
            goto done;
        }
        const char *fn = json_string_value(file);
        if (strchr(fn, '/') || strcmp(fn, "..") == 0 || fn[0] == '\0') {
            s = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: weight_map.%s: shard name '%s' must be a plain file name",
                                 index_path, name, fn);
            goto done;
        }
        char *path = llmops_path_join(dir, fn);
        if (!path) {
            s = st_nomem(index_path, err);
            goto done;
        }
        size_t k;
        for (k = 0; k < m->n_shards; k++)
            if (strcmp(m->paths[k], path) == 0) break;
        if (k == m->n_shards && (s = model_add_shard(m, path, err)) != LLMOPS_OK) {
            llmops_free(path);
            goto done;
        }
        if (!llmops_safetensors_find(m->shards[k], name)) {
            s = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: weight_map puts '%s' in %s, which does not hold it",
                                 index_path, name, fn);
            llmops_free(path);
            goto done;
        }
        llmops_free(path);
    }
    if (m->n_shards == 0) s = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: weight_map is empty", index_path);
done:
    llmops_free(dir);
    json_decref(root);
    return s;
}

llmops_status llmops_st_model_open(const char *path, llmops_st_model **out, llmops_error *err) {
    *out = NULL;
    llmops_st_model *m = llmops_calloc(1, sizeof *m);
    if (!m) return st_nomem(path, err);
    llmops_status s;
    size_t pl = strlen(path);
    if (llmops_path_is_dir(path)) {
        char *idx = llmops_path_join(path, "model.safetensors.index.json");
        char *one = llmops_path_join(path, "model.safetensors");
        if (!idx || !one) s = st_nomem(path, err);
        else if (llmops_path_is_file(idx)) s = open_index(m, idx, err);
        else if (llmops_path_is_file(one)) s = model_add_shard(m, one, err);
        else s = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", path);
        llmops_free(idx);
        llmops_free(one);
    } else if (pl > 5 && strcmp(path + pl - 5, ".json") == 0) {
        s = open_index(m, path, err);
    } else {
        s = model_add_shard(m, path, err);
    }
    if (!s) s = model_index_entries(m, err);
    if (s) {
        llmops_st_model_free(m);
        return s;
    }
    *out = m;
    return LLMOPS_OK;
}

size_t llmops_st_model_n_tensors(const llmops_st_model *m) { return m->n_entries; }

const llmops_st_tensor *llmops_st_model_tensor_at(const llmops_st_model *m, size_t i, const llmops_safetensors **shard) {
    if (i >= m->n_entries) return NULL;
    if (shard) *shard = m->shards[m->entries[i].shard];
    return m->entries[i].t;
}

const llmops_st_tensor *llmops_st_model_find(const llmops_st_model *m, const char *name, const llmops_safetensors **shard) {
    for (size_t i = 0; i < m->n_shards; i++) {
        const llmops_st_tensor *t = llmops_safetensors_find(m->shards[i], name);
        if (t) {
            if (shard) *shard = m->shards[i];
            return t;
        }
    }
    return NULL;
}

size_t llmops_st_model_n_shards(const llmops_st_model *m) { return m->n_shards; }
const char *llmops_st_model_shard_path(const llmops_st_model *m, size_t i) { return m->paths[i]; }
const llmops_safetensors *llmops_st_model_shard(const llmops_st_model *m, size_t i) { return m->shards[i]; }

/* ---- writer --------------------------------------------------------------------- */

typedef struct {
    char *name;
    llmops_dtype type;
    uint32_t n_dims;
    uint64_t shape[LLMOPS_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    llmops_st_fill_fn fn;
    void *ctx;
} st_wtensor;

struct llmops_st_writer {
    st_wtensor *t;
    size_t n, cap;
    char **meta_k, **meta_v;
    size_t n_meta;
};

llmops_st_writer *llmops_st_writer_create(void) { return llmops_calloc(1, sizeof(llmops_st_writer)); }

void llmops_st_writer_free(llmops_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) llmops_free(w->t[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        llmops_free(w->meta_k[i]);
        llmops_free(w->meta_v[i]);
    }
    llmops_free(w->meta_k);
    llmops_free(w->meta_v);
    llmops_free(w->t);
    llmops_free(w);
}

llmops_status llmops_st_writer_set_metadata(llmops_st_writer *w, const char *key, const char *value, llmops_error *err) {
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_k[i], key) == 0) {
            char *v = llmops_strdup(value);
            if (!v) return st_nomem("safetensors writer", err);
            llmops_free(w->meta_v[i]);
            w->meta_v[i] = v;
            return LLMOPS_OK;
        }
    }
    char **nk = llmops_reallocarray(w->meta_k, w->n_meta + 1, sizeof *nk);
    if (!nk) return st_nomem("safetensors writer", err);
    w->meta_k = nk;
    char **nv = llmops_reallocarray(w->meta_v, w->n_meta + 1, sizeof *nv);
    if (!nv) return st_nomem("safetensors writer", err);
    w->meta_v = nv;
    char *k = llmops_strdup(key), *v = llmops_strdup(value);
    if (!k || !v) {
        llmops_free(k);
        llmops_free(v);
        return st_nomem("safetensors writer", err);
    }
    w->meta_k[w->n_meta] = k;
    w->meta_v[w->n_meta] = v;
    w->n_meta++;
    return LLMOPS_OK;
}

static llmops_status st_add(llmops_st_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                            const uint64_t *shape, const void *data, llmops_st_fill_fn fn, void *ctx,
                            llmops_error *err) {
    const llmops_dtype_info *ti = llmops_dtype_get(type);
    if (!ti || !ti->st_name)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': type %s cannot be stored in safetensors",
                                name, llmops_dtype_name(type));
    if (n_dims > LLMOPS_MAX_DIMS)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': %u dimensions", name, n_dims);
    if (strcmp(name, "__metadata__") == 0 || name[0] == '\0')
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor name '%s' is reserved or empty", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s' added twice", name);
    st_wtensor t = {0};
    uint64_t count = 1;
    for (uint32_t d = 0; d < LLMOPS_MAX_DIMS; d++) {
        t.shape[d] = d < n_dims ? shape[d] : 1;
        if (!llmops_mul_ok(count, t.shape[d], &count))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': element count overflows", name);
    }
    if (!llmops_mul_ok(count, ti->type_size, &t.nbytes))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "tensor '%s': byte size overflows", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        st_wtensor *n = llmops_reallocarray(w->t, nc, sizeof *n);
        if (!n) return st_nomem("safetensors writer", err);
        w->t = n;
        w->cap = nc;
    }
    t.name = llmops_strdup(name);
    if (!t.name) return st_nomem("safetensors writer", err);
    t.type = type;
    t.n_dims = n_dims;
    t.data = data;
    t.fn = fn;
    t.ctx = ctx;
    w->t[w->n++] = t;
    return LLMOPS_OK;
}

llmops_status llmops_st_writer_add(llmops_st_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                                   const uint64_t *shape, const void *data, llmops_error *err) {
    return st_add(w, name, type, n_dims, shape, data, NULL, NULL, err);
}

llmops_status llmops_st_writer_add_fn(llmops_st_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                                      const uint64_t *shape, llmops_st_fill_fn fn, void *ctx, llmops_error *err) {
    return st_add(w, name, type, n_dims, shape, NULL, fn, ctx, err);
}

/* Writes tensors [first, last) of w into one file at path. */
static llmops_status write_range(llmops_st_writer *w, size_t first, size_t last, const char *path, int with_meta,
                                 llmops_error *err) {
    llmops_json_init();
    llmops_status s = LLMOPS_OK;
    json_t *root = json_object();
    llmops_buf hdr;
    llmops_buf_init(&hdr, LLMOPS_ST_MAX_HEADER);
    uint8_t *scratch = NULL;
    uint64_t scratch_cap = 0;
    llmops_atomic_file f = {0};
    int f_open = 0;
    if (!root) goto oom;
    if (with_meta && w->n_meta) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta)) goto oom;
        for (size_t i = 0; i < w->n_meta; i++)
            if (json_object_set_new(meta, w->meta_k[i], json_string(w->meta_v[i]))) goto oom;
    }
    uint64_t off = 0;
    for (size_t i = first; i < last; i++) {
        st_wtensor *t = &w->t[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        if (!e || !shape || !offs) {
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            goto oom;
        }
        if (json_object_set_new(root, t->name, e)) {
            json_decref(shape);
            json_decref(offs);
            goto oom;
        }
        if (json_object_set_new(e, "dtype", json_string(llmops_dtype_get(t->type)->st_name))) {
            json_decref(shape);
            json_decref(offs);
            goto oom;
        }
        if (json_object_set_new(e, "shape", shape)) {
            json_decref(offs);
            goto oom;
        }
        if (json_object_set_new(e, "data_offsets", offs)) goto oom;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d]))) goto oom;
        if (json_array_append_new(offs, json_integer((json_int_t)off)) ||
            json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes))))
            goto oom;
        off += t->nbytes;
    }
    if ((s = llmops_json_dump(root, 0, &hdr, err))) goto done;
    while (hdr.len % 8)
        if ((s = llmops_buf_append(&hdr, " ", 1, err))) goto done;
    if ((s = llmops_atomic_file_open(&f, path, err))) goto done;
    f_open = 1;
    uint64_t hl = hdr.len;
    if ((s = llmops_atomic_file_write(&f, &hl, 8, err)) || (s = llmops_atomic_file_write(&f, hdr.data, hdr.len, err)))
        goto done;
    for (size_t i = first; i < last; i++) {
        st_wtensor *t = &w->t[i];
        const void *src = t->data;
        if (t->fn) {
            if (t->nbytes > scratch_cap) {
                uint8_t *n = llmops_realloc(scratch, (size_t)t->nbytes);
                if (!n) goto oom;
                scratch = n;
                scratch_cap = t->nbytes;
            }
            if ((s = t->fn(t->ctx, scratch, t->nbytes, err))) {
                llmops_error_prefix(err, "tensor '%s': ", t->name);
                goto done;
            }
            src = scratch;
        }
        if ((s = llmops_atomic_file_write(&f, src, (size_t)t->nbytes, err))) goto done;
    }
    s = llmops_atomic_file_commit(&f, err);
    f_open = 0;
    goto done;
oom:
    s = st_nomem(path, err);
done:
    if (f_open) llmops_atomic_file_abort(&f);
    llmops_free(scratch);
    llmops_buf_free(&hdr);
    json_decref(root);
    return s;
}

llmops_status llmops_st_writer_write(llmops_st_writer *w, const char *path, llmops_error *err) {
    return write_range(w, 0, w->n, path, 1, err);
}

llmops_status llmops_st_writer_write_dir(llmops_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                         llmops_error *err) {
    llmops_status s = llmops_mkdirs(dir, err);
    if (s) return s;
    /* split greedily in order: a shard closes when the next tensor would overflow it */
    size_t *starts = llmops_malloc((w->n + 2) * sizeof *starts);
    if (!starts) return st_nomem(dir, err);
    size_t n_shards = 0;
    uint64_t cur = 0, total = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (i == 0 || (max_shard_bytes && cur > 0 && cur + w->t[i].nbytes > max_shard_bytes)) {
            starts[n_shards++] = i;
            cur = 0;
        }
        cur += w->t[i].nbytes;
        total += w->t[i].nbytes;
    }
    if (n_shards == 0) starts[n_shards++] = 0;
    starts[n_shards] = w->n;
    char name[96];
    char *path = NULL;
    json_t *index = NULL;
    if (n_shards == 1) {
        path = llmops_path_join(dir, "model.safetensors");
        s = path ? write_range(w, 0, w->n, path, 1, err) : st_nomem(dir, err);
        goto done;
    }
    llmops_json_init();
    index = json_object();
    json_t *meta = json_object(), *map = json_object();
    /* json_object_set_new consumes its value even when it fails; free the rest by hand */
    if (!index || !meta || !map || json_object_set_new(index, "metadata", meta)) {
        if (!index || !meta || !map) json_decref(meta);
        json_decref(map);
        s = st_nomem(dir, err);
        goto done;
    }
    if (json_object_set_new(index, "weight_map", map) ||
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total))) {
        s = st_nomem(dir, err);
        goto done;
    }
    for (size_t k = 0; k < n_shards; k++) {
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        llmops_free(path);
        path = llmops_path_join(dir, name);
        if (!path) {
            s = st_nomem(dir, err);
            goto done;
        }
        if ((s = write_range(w, starts[k], starts[k + 1], path, 1, err))) goto done;
        for (size_t i = starts[k]; i < starts[k + 1]; i++)
            if (json_object_set_new(map, w->t[i].name, json_string(name))) {
                s = st_nomem(dir, err);
                goto done;
            }
    }
    llmops_free(path);
    path = llmops_path_join(dir, "model.safetensors.index.json");
    s = path ? llmops_json_write_file(index, path, 2, err) : st_nomem(dir, err);
done:
    json_decref(index);
    llmops_free(path);
    llmops_free(starts);
    return s;
}
