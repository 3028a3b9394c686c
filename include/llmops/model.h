/*
 * llmops/model.h — the language-model service: load a decoder (Llama 2/3,
 * Mistral, Qwen2, SmolLM, TinyLlama, GPT-2) or a BERT encoder from GGUF, a
 * Hugging Face folder or a llama2.c checkpoint (weights stay memory-mapped),
 * and evaluate batches of tokens from several sequences against one KV cache.
 *
 *     llmops_model *m;
 *     llmops_model_load("stories260K.bin", NULL, &m, &err);
 *     llmops_context_params cp;
 *     llmops_context_params_init(&cp);
 *     llmops_context *ctx;
 *     llmops_context_create(m, &cp, &ctx, &err);
 *     llmops_batch_item b[2] = {{.token = 1, .pos = 0, .seq = 0, .logits = 0},
 *                               {.token = 403, .pos = 1, .seq = 0, .logits = 1}};
 *     llmops_decode(ctx, b, 2, &err);
 *     const float *logits = llmops_get_logits(ctx, 1);   // vocabulary-sized row of item 1
 *     llmops_context_free(ctx);
 *     llmops_model_free(m);
 */
#ifndef LLMOPS_MODEL_H
#define LLMOPS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/status.h"
#include "llmops/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_model llmops_model;

typedef struct llmops_model_params {
    int load_tokenizer; /* 1 (default): load the tokenizer that comes with the model */
} llmops_model_params;

void llmops_model_params_init(llmops_model_params *p);

/* A GGUF file, a Hugging Face folder (config.json + safetensors) or a llama2.c
 * checkpoint (its tokenizer.bin / tok<N>.bin beside it). */
llmops_status llmops_model_load(const char *path, const llmops_model_params *p, llmops_model **out, llmops_error *err);
void llmops_model_free(llmops_model *m);

const llmops_arch *llmops_model_arch(const llmops_model *m);
/* The model's tokenizer (owned by the model), or NULL when not loaded. */
const llmops_tokenizer *llmops_model_tokenizer(const llmops_model *m);
int64_t llmops_model_n_vocab(const llmops_model *m);
/* Bytes of weight data one decode step reads: every matrix once, one row of each embedding table
 * (the whole table when it is also the output projection). */
uint64_t llmops_model_weight_bytes(const llmops_model *m);
/* Number of parameters. */
uint64_t llmops_model_n_params(const llmops_model *m);
/* A short description: "llama 5 layers, dim 64, F32 (260K parameters)". */
const char *llmops_model_desc(const llmops_model *m);

/* ---- evaluation context --------------------------------------------------------- */

typedef struct llmops_context llmops_context;

typedef enum llmops_kv_type { LLMOPS_KV_F16 = 0, LLMOPS_KV_F32 = 1 } llmops_kv_type;

typedef struct llmops_context_params {
    uint32_t n_ctx;       /* KV cells shared by all sequences; 0 = the model's context length (capped at 4096) */
    uint32_t n_batch;     /* most tokens evaluated in one pass (longer batches are split); default 512        */
    uint32_t n_seq_max;   /* sequence ids 0 .. n_seq_max-1 (at most 64); default 1                             */
    int n_threads;        /* 0 = the physical cores                                                            */
    llmops_kv_type kv_type;
} llmops_context_params;

void llmops_context_params_init(llmops_context_params *p);
llmops_status llmops_context_create(const llmops_model *m, const llmops_context_params *p, llmops_context **out,
                                    llmops_error *err);
void llmops_context_free(llmops_context *ctx);
uint32_t llmops_context_n_ctx(const llmops_context *ctx);

/* One token of a batch: which sequence it belongs to and where. */
typedef struct llmops_batch_item {
    int32_t token;
    int32_t pos;
    int32_t seq;
    int logits;     /* 1: keep this token's output row (logits for decoders, the hidden state for BERT) */
} llmops_batch_item;

/*
 * Evaluates n tokens drawn from any sequences (some prefilling, some
 * decoding) in one pass, storing their keys and values in the cache. Each
 * token attends to the cached tokens of its own sequence at positions <= its
 * own (BERT: to the tokens of its sequence in this batch, both ways).
 * Errors: a full cache ("context full"), a position past the model's limit,
 * a token outside the vocabulary, a sequence id out of range.
 */
llmops_status llmops_decode(llmops_context *ctx, const llmops_batch_item *items, size_t n, llmops_error *err);

/* The output row of item i of the last decode (NULL if it asked for none). */
const float *llmops_get_logits(const llmops_context *ctx, size_t i);
/* Width of that row: the vocabulary (decoders) or the hidden size (BERT). */
size_t llmops_output_width(const llmops_context *ctx);

/* ---- KV cache, per sequence ------------------------------------------------------- */

/* Forgets seq's tokens at positions [p0, p1) (p1 < 0: to the end; seq < 0: every sequence). */
void llmops_kv_seq_rm(llmops_context *ctx, int32_t seq, int32_t p0, int32_t p1);
/* Shares src's cached tokens at [p0, p1) with dst (no copy: a forked prefix). */
void llmops_kv_seq_cp(llmops_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1);
/* Largest cached position of seq, or -1. */
int32_t llmops_kv_seq_pos_max(const llmops_context *ctx, int32_t seq);
void llmops_kv_clear(llmops_context *ctx);
/* Cells in use. */
uint32_t llmops_kv_used(const llmops_context *ctx);

#ifdef __cplusplus
}
#endif
#endif
