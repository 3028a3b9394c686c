/*
 * llmops/llama2c.h — llama2.c checkpoints (Karpathy's run.c format) and their
 * tokenizer.bin vocabularies.
 *
 * Two checkpoint layouts are read: the legacy one (7 int32: dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size — negative when the classifier is
 * separate — seq_len, then float32 weights) and version 1 ("ak42" magic,
 * 256-byte header, float32 weights in a different order). Weights stay in
 * the read-only mapping.
 *
 *     llmops_llama2c *m;
 *     llmops_llama2c_open("stories260K.bin", &m, &err);
 *     const llmops_llama2c_tensor *wq = llmops_llama2c_find(m, "wq");  // (L, dim, dim)
 *     llmops_llama2c_free(m);
 */
#ifndef LLMOPS_LLAMA2C_H
#define LLMOPS_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_llama2c_tensor {
    const char *name;      /* llama2.c's names: token_embedding_table, rms_att_weight, wq, ... */
    uint32_t n_dims;
    uint64_t shape[3];     /* row-major; per-layer tensors have shape[0] = n_layers              */
    uint64_t offset;       /* byte offset in the file                                            */
    const float *data;
} llmops_llama2c_tensor;

typedef struct llmops_llama2c {
    int version;           /* 0 legacy, 1 "ak42" v1                     */
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;
    llmops_llama2c_tensor tensors[16];
    size_t n_tensors;
    const uint8_t *data;   /* the whole file                               */
    size_t size;
    void *map_;            /* internal                                     */
} llmops_llama2c;

llmops_status llmops_llama2c_open(const char *path, llmops_llama2c **out, llmops_error *err);
/* Parses bytes that must outlive the result. */
llmops_status llmops_llama2c_parse(const void *data, size_t size, const char *origin, llmops_llama2c **out,
                                   llmops_error *err);
void llmops_llama2c_free(llmops_llama2c *m);
const llmops_llama2c_tensor *llmops_llama2c_find(const llmops_llama2c *m, const char *name);
/* 1 when the first bytes look like a llama2.c checkpoint of exactly this size: data holds the file's first
 * 256 bytes (or all of it, if shorter), size is the file's size. */
int llmops_llama2c_sniff(const void *data, size_t size);
/* The descriptor of the network (llama family, RMSNorm eps 1e-5, theta 10000). */
void llmops_llama2c_arch(const llmops_llama2c *m, llmops_arch *a);

/* ---- tokenizer.bin ------------------------------------------------------------ */

typedef struct llmops_llama2c_vocab {
    int32_t max_token_length;
    size_t n;
    char **pieces;     /* raw bytes as stored (llama2.c writes ' ' for '▁'), NUL-terminated */
    uint32_t *lens;
    float *scores;
} llmops_llama2c_vocab;

/* Reads every entry up to the end of the file; `expect` > 0 requires that count. */
llmops_status llmops_llama2c_vocab_load(const char *path, size_t expect, llmops_llama2c_vocab *v, llmops_error *err);
llmops_status llmops_llama2c_vocab_parse(const void *data, size_t size, const char *origin, size_t expect,
                                         llmops_llama2c_vocab *v, llmops_error *err);
void llmops_llama2c_vocab_free(llmops_llama2c_vocab *v);

#ifdef __cplusplus
}
#endif
#endif
