/*
 * llmops/gguf.h — GGUF v2/v3 files (llama.cpp's model format): read and write.
 *
 * Reading maps the file and validates every length, count and offset against
 * the bytes that remain; nothing is copied but the small index:
 *
 *     llmops_gguf *g;
 *     if (llmops_gguf_open("m.gguf", &g, &err)) { ... err.msg ... }
 *     const llmops_gguf_kv *kv = llmops_gguf_find_kv(g, "general.architecture");
 *     const llmops_gguf_tensor *t = llmops_gguf_find_tensor(g, "token_embd.weight");
 *     const void *w = llmops_gguf_tensor_data(g, t);
 *     llmops_gguf_free(g);
 *
 * Writing collects key/values and tensors, then streams the file out
 * atomically (temporary file, fsync, rename):
 *
 *     llmops_gguf_writer *w = llmops_gguf_writer_create();
 *     llmops_gguf_writer_set_str(w, "general.architecture", "llama", &err);
 *     llmops_gguf_writer_set_u32(w, "llama.block_count", 5, &err);
 *     uint64_t ne[2] = {64, 512};                 // ne[0] is the innermost dimension
 *     llmops_gguf_writer_add_tensor(w, "token_embd.weight", LLMOPS_DTYPE_F32, 2, ne, data, &err);
 *     llmops_gguf_writer_write(w, "out.gguf", &err);
 *     llmops_gguf_writer_free(w);
 */
#ifndef LLMOPS_GGUF_H
#define LLMOPS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"
#include "llmops/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define LLMOPS_GGUF_DEFAULT_ALIGNMENT 32
#define LLMOPS_GGUF_MAX_DIMS 4         /* as GGML_MAX_DIMS */

typedef enum llmops_gguf_type {
    LLMOPS_GGUF_UINT8 = 0,
    LLMOPS_GGUF_INT8 = 1,
    LLMOPS_GGUF_UINT16 = 2,
    LLMOPS_GGUF_INT16 = 3,
    LLMOPS_GGUF_UINT32 = 4,
    LLMOPS_GGUF_INT32 = 5,
    LLMOPS_GGUF_FLOAT32 = 6,
    LLMOPS_GGUF_BOOL = 7,
    LLMOPS_GGUF_STRING = 8,
    LLMOPS_GGUF_ARRAY = 9,
    LLMOPS_GGUF_UINT64 = 10,
    LLMOPS_GGUF_INT64 = 11,
    LLMOPS_GGUF_FLOAT64 = 12
} llmops_gguf_type;

/* "uint32", "string", ... ; "?" for an unknown id. */
const char *llmops_gguf_type_name(int type);
/* Bytes of one scalar of `type` (0 for string/array/unknown). */
size_t llmops_gguf_type_size(int type);

/* A length-carrying string; not NUL-terminated when it points into a file. */
typedef struct llmops_gguf_str {
    uint64_t len;
    const char *data;
} llmops_gguf_str;

typedef struct llmops_gguf_value llmops_gguf_value;

typedef struct llmops_gguf_array {
    llmops_gguf_type type;           /* element type                                  */
    uint64_t n;                      /* element count                                 */
    const void *data;                /* scalar elements: n × size, little-endian,
                                        possibly unaligned: read with memcpy or the
                                        llmops_gguf_arr_* helpers                     */
    const llmops_gguf_str *strs;     /* string elements                               */
    const llmops_gguf_value *items;  /* array elements (nested arrays)                */
} llmops_gguf_array;

struct llmops_gguf_value {
    llmops_gguf_type type;
    union {
        uint64_t u64; /* UINT8/16/32/64 and BOOL are widened here */
        int64_t i64;  /* INT8/16/32/64 are sign-extended here     */
        double f64;   /* FLOAT32 and FLOAT64                       */
        llmops_gguf_str str;
        llmops_gguf_array arr;
    } v;
};

typedef struct llmops_gguf_kv {
    llmops_gguf_str key;
    llmops_gguf_value value;
    uint64_t offset; /* byte offset of the entry in the file (reader only) */
} llmops_gguf_kv;

typedef struct llmops_gguf_tensor {
    llmops_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[LLMOPS_GGUF_MAX_DIMS]; /* ne[0] innermost; unused dims are 1             */
    llmops_dtype type;
    uint64_t offset;                   /* relative to the data section                   */
    uint64_t nbytes;
} llmops_gguf_tensor;

/* ---- reader ------------------------------------------------------------------ */

typedef struct llmops_gguf llmops_gguf;

/* Maps and parses `path`. */
llmops_status llmops_gguf_open(const char *path, llmops_gguf **out, llmops_error *err);
/* Parses `size` bytes at `data`, which must outlive the result (not copied). */
llmops_status llmops_gguf_parse(const void *data, size_t size, const char *origin,
                                llmops_gguf **out, llmops_error *err);
void llmops_gguf_free(llmops_gguf *g);

uint32_t llmops_gguf_version(const llmops_gguf *g);
uint32_t llmops_gguf_alignment(const llmops_gguf *g);
/* Absolute file offset of the tensor data section. */
uint64_t llmops_gguf_data_offset(const llmops_gguf *g);
uint64_t llmops_gguf_file_size(const llmops_gguf *g);

size_t llmops_gguf_n_kv(const llmops_gguf *g);
const llmops_gguf_kv *llmops_gguf_kv_at(const llmops_gguf *g, size_t i);
const llmops_gguf_kv *llmops_gguf_find_kv(const llmops_gguf *g, const char *key);

size_t llmops_gguf_n_tensors(const llmops_gguf *g);
const llmops_gguf_tensor *llmops_gguf_tensor_at(const llmops_gguf *g, size_t i);
const llmops_gguf_tensor *llmops_gguf_find_tensor(const llmops_gguf *g, const char *name);
/* Pointer to the tensor's bytes inside the mapping. */
const void *llmops_gguf_tensor_data(const llmops_gguf *g, const llmops_gguf_tensor *t);

/*
 * Typed lookups. An integer key is accepted from any integer type whose value
 * fits; a float key from FLOAT32 or FLOAT64. Missing key → NOT_FOUND, wrong
 * type → FORMAT, both naming the key.
 */
llmops_status llmops_gguf_get_u64(const llmops_gguf *g, const char *key, uint64_t *out, llmops_error *err);
llmops_status llmops_gguf_get_i64(const llmops_gguf *g, const char *key, int64_t *out, llmops_error *err);
llmops_status llmops_gguf_get_f64(const llmops_gguf *g, const char *key, double *out, llmops_error *err);
llmops_status llmops_gguf_get_bool(const llmops_gguf *g, const char *key, int *out, llmops_error *err);
llmops_status llmops_gguf_get_str(const llmops_gguf *g, const char *key, llmops_gguf_str *out, llmops_error *err);
llmops_status llmops_gguf_get_arr(const llmops_gguf *g, const char *key, llmops_gguf_array *out, llmops_error *err);

/* Element i of a scalar array, widened (caller checks i < n and the type). */
uint64_t llmops_gguf_arr_u64(const llmops_gguf_array *a, uint64_t i);
int64_t llmops_gguf_arr_i64(const llmops_gguf_array *a, uint64_t i);
double llmops_gguf_arr_f64(const llmops_gguf_array *a, uint64_t i);

/* 1 when the string equals the NUL-terminated `s`. */
int llmops_gguf_str_eq(llmops_gguf_str a, const char *s);

/* ---- writer ------------------------------------------------------------------ */

typedef struct llmops_gguf_writer llmops_gguf_writer;

llmops_gguf_writer *llmops_gguf_writer_create(void);
void llmops_gguf_writer_free(llmops_gguf_writer *w);

/* Setting a key that exists replaces its value in place (order kept). Values
 * are copied. */
llmops_status llmops_gguf_writer_set_u32(llmops_gguf_writer *w, const char *key, uint32_t v, llmops_error *err);
llmops_status llmops_gguf_writer_set_i32(llmops_gguf_writer *w, const char *key, int32_t v, llmops_error *err);
llmops_status llmops_gguf_writer_set_u64(llmops_gguf_writer *w, const char *key, uint64_t v, llmops_error *err);
llmops_status llmops_gguf_writer_set_f32(llmops_gguf_writer *w, const char *key, float v, llmops_error *err);
llmops_status llmops_gguf_writer_set_bool(llmops_gguf_writer *w, const char *key, int v, llmops_error *err);
llmops_status llmops_gguf_writer_set_str(llmops_gguf_writer *w, const char *key, const char *v, llmops_error *err);
/* n strings; lens may be NULL (NUL-terminated strings). */
llmops_status llmops_gguf_writer_set_arr_str(llmops_gguf_writer *w, const char *key, const char *const *strs,
                                             const size_t *lens, size_t n, llmops_error *err);
/* n scalars of elem_type, packed little-endian at data. */
llmops_status llmops_gguf_writer_set_arr(llmops_gguf_writer *w, const char *key, llmops_gguf_type elem_type,
                                         const void *data, size_t n, llmops_error *err);
/* Any value (deep copy), e.g. one read from another file; the key is len-carrying. */
llmops_status llmops_gguf_writer_set_value(llmops_gguf_writer *w, llmops_gguf_str key,
                                           const llmops_gguf_value *v, llmops_error *err);
/* Removes a key if present. */
void llmops_gguf_writer_remove(llmops_gguf_writer *w, const char *key);

/*
 * Adds a tensor whose bytes are at `data` (not copied: keep them alive until
 * the writer is written). ne[0] is the innermost dimension.
 */
llmops_status llmops_gguf_writer_add_tensor(llmops_gguf_writer *w, const char *name, llmops_dtype type,
                                            uint32_t n_dims, const uint64_t *ne, const void *data,
                                            llmops_error *err);

/* Produces a tensor's `nbytes` bytes into `dst` when the file is written. */
typedef llmops_status (*llmops_gguf_fill_fn)(void *ctx, void *dst, uint64_t nbytes, llmops_error *err);

/* Adds a tensor produced on demand, so a converter holds one tensor at a time. */
llmops_status llmops_gguf_writer_add_tensor_fn(llmops_gguf_writer *w, const char *name, llmops_dtype type,
                                               uint32_t n_dims, const uint64_t *ne, llmops_gguf_fill_fn fn,
                                               void *ctx, llmops_error *err);

/* Writes the file (version 3 unless set_version), atomically. */
void llmops_gguf_writer_set_version(llmops_gguf_writer *w, uint32_t version);
llmops_status llmops_gguf_writer_write(llmops_gguf_writer *w, const char *path, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
