/*
 * llmops/safetensors.h — safetensors files (Hugging Face's tensor format) and
 * sharded checkpoints (model.safetensors.index.json): read and write.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header
 * {"__metadata__": {str: str}, NAME: {"dtype", "shape", "data_offsets": [b, e]}},
 * then the byte buffer. The reader checks that every tensor's byte range is
 * in bounds, matches dtype × shape, and that the ranges tile the buffer
 * without overlaps or holes.
 *
 *     llmops_safetensors *st;
 *     llmops_safetensors_open("model.safetensors", &st, &err);
 *     const llmops_st_tensor *t = llmops_safetensors_find(st, "wte.weight");
 *     const void *p = llmops_safetensors_data(st, t);     // t->shape is row-major
 *     llmops_safetensors_free(st);
 *
 *     llmops_st_model *m;                                 // one file or shards
 *     llmops_st_model_open("path/to/hf-folder", &m, &err);
 */
#ifndef LLMOPS_SAFETENSORS_H
#define LLMOPS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"
#include "llmops/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_ST_MAX_HEADER (100u * 1000u * 1000u) /* as the reference implementation */

typedef struct llmops_st_tensor {
    const char *name;
    llmops_dtype type;
    uint32_t n_dims;
    uint64_t shape[LLMOPS_MAX_DIMS]; /* row-major: shape[0] outermost */
    uint64_t begin, end;             /* byte range within the buffer   */
} llmops_st_tensor;

typedef struct llmops_safetensors llmops_safetensors;

llmops_status llmops_safetensors_open(const char *path, llmops_safetensors **out, llmops_error *err);
/* Parses bytes that must outlive the result. */
llmops_status llmops_safetensors_parse(const void *data, size_t size, const char *origin,
                                       llmops_safetensors **out, llmops_error *err);
void llmops_safetensors_free(llmops_safetensors *st);

/* Tensors in ascending offset order. */
size_t llmops_safetensors_n_tensors(const llmops_safetensors *st);
const llmops_st_tensor *llmops_safetensors_tensor_at(const llmops_safetensors *st, size_t i);
const llmops_st_tensor *llmops_safetensors_find(const llmops_safetensors *st, const char *name);
const void *llmops_safetensors_data(const llmops_safetensors *st, const llmops_st_tensor *t);
/* Absolute file offset of the byte buffer (8 + header length). */
uint64_t llmops_safetensors_buffer_offset(const llmops_safetensors *st);

/* "__metadata__" entries in header order. */
size_t llmops_safetensors_n_metadata(const llmops_safetensors *st);
void llmops_safetensors_metadata_at(const llmops_safetensors *st, size_t i, const char **key, const char **value);
const char *llmops_safetensors_find_metadata(const llmops_safetensors *st, const char *key);

/* ---- a model split over shards ------------------------------------------------ */

typedef struct llmops_st_model llmops_st_model;

/*
 * Opens a folder holding model.safetensors or model.safetensors.index.json
 * (every shard it names, each tensor checked to be where the map says), or a
 * single .safetensors / .index.json path.
 */
llmops_status llmops_st_model_open(const char *path, llmops_st_model **out, llmops_error *err);
void llmops_st_model_free(llmops_st_model *m);
size_t llmops_st_model_n_tensors(const llmops_st_model *m);
/* Tensor i (shard order, then offset order); *shard receives its file. */
const llmops_st_tensor *llmops_st_model_tensor_at(const llmops_st_model *m, size_t i, const llmops_safetensors **shard);
const llmops_st_tensor *llmops_st_model_find(const llmops_st_model *m, const char *name, const llmops_safetensors **shard);
size_t llmops_st_model_n_shards(const llmops_st_model *m);
const char *llmops_st_model_shard_path(const llmops_st_model *m, size_t i);
const llmops_safetensors *llmops_st_model_shard(const llmops_st_model *m, size_t i);

/* ---- writer --------------------------------------------------------------------- */

typedef struct llmops_st_writer llmops_st_writer;
typedef llmops_status (*llmops_st_fill_fn)(void *ctx, void *dst, uint64_t nbytes, llmops_error *err);

llmops_st_writer *llmops_st_writer_create(void);
void llmops_st_writer_free(llmops_st_writer *w);
llmops_status llmops_st_writer_set_metadata(llmops_st_writer *w, const char *key, const char *value, llmops_error *err);
/* shape is row-major; data is not copied (keep it alive until written). */
llmops_status llmops_st_writer_add(llmops_st_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                                   const uint64_t *shape, const void *data, llmops_error *err);
llmops_status llmops_st_writer_add_fn(llmops_st_writer *w, const char *name, llmops_dtype type, uint32_t n_dims,
                                      const uint64_t *shape, llmops_st_fill_fn fn, void *ctx, llmops_error *err);
/* One file, tensors in the order added. */
llmops_status llmops_st_writer_write(llmops_st_writer *w, const char *path, llmops_error *err);
/*
 * Into folder `dir`: model.safetensors when everything fits in max_shard_bytes
 * (0 = no limit), else model-0000K-of-0000N.safetensors shards plus
 * model.safetensors.index.json, as transformers' save_pretrained names them.
 */
llmops_status llmops_st_writer_write_dir(llmops_st_writer *w, const char *dir, uint64_t max_shard_bytes,
                                         llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
