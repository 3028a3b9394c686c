/*
 * llmops/convert.h — model conversion between the ecosystem's formats, and
 * detection of what a path holds.
 *
 *   llama2.c checkpoint (+ tokenizer.bin)  ─┐
 *   Hugging Face folder (safetensors,       ├─→ GGUF (llama.cpp's names and keys)
 *     config.json, tokenizer.json)         ─┘
 *   GGUF ─→ Hugging Face folder (model.safetensors or shards + config.json)
 *
 *     llmops_convert_opts o;
 *     llmops_convert_opts_init(&o);
 *     o.out_type = LLMOPS_DTYPE_F16;
 *     llmops_convert("stories260K.bin", "stories260K.gguf", &o, &err);
 */
#ifndef LLMOPS_CONVERT_H
#define LLMOPS_CONVERT_H

#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/gguf.h"
#include "llmops/status.h"
#include "llmops/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_model_format {
    LLMOPS_FORMAT_UNKNOWN = 0,
    LLMOPS_FORMAT_GGUF,
    LLMOPS_FORMAT_SAFETENSORS,  /* one file, or an index .json              */
    LLMOPS_FORMAT_HF_DIR,       /* folder with config.json                 */
    LLMOPS_FORMAT_LLAMA2C
} llmops_model_format;

const char *llmops_model_format_name(llmops_model_format f);
/* Looks at the path (folder contents, magic bytes, sizes). */
llmops_model_format llmops_detect_format(const char *path);

typedef struct llmops_convert_opts {
    int out_type;              /* LLMOPS_DTYPE_F32/F16/BF16, or -1: keep the source float type */
    const char *vocab_path;    /* llama2.c tokenizer.bin; NULL: tokenizer.bin or tok<N>.bin beside it */
    const char *name;          /* general.name; NULL: derived from the input path             */
    uint64_t max_shard_bytes;  /* Hugging Face output: split above this size (0 = 5 GB)       */
} llmops_convert_opts;

void llmops_convert_opts_init(llmops_convert_opts *o);

/*
 * Converts `in` to `out`: to GGUF when `out` ends in ".gguf", otherwise
 * (from a GGUF input) to a Hugging Face folder. Writes are atomic per file.
 */
llmops_status llmops_convert(const char *in, const char *out, const llmops_convert_opts *o, llmops_error *err);

/*
 * Quantizes a model into a GGUF file. `recipe` is a type name (q8_0, q4_0,
 * q4_k, q6_k, f16, bf16, f32) applied to every weight matrix, or q4_k_m: Q4_K
 * with the sensitive tensors kept at Q6_K (output, and attn_v / ffn_down of
 * the first and last eighth of the layers and every third layer between),
 * as llama.cpp's Q4_K_M does. Norms, biases and position embeddings stay F32;
 * a matrix whose rows do not split into the type's blocks falls back to Q8_0
 * (or F16). The input may be any model `convert` reads.
 */
llmops_status llmops_quantize_model(const char *in, const char *out, const char *recipe, int n_threads,
                                    llmops_error *err);

/* The descriptor stored in a GGUF file's {arch}.* keys and tensor set. */
llmops_status llmops_arch_from_gguf(const llmops_gguf *g, llmops_arch *a, llmops_error *err);

/* A named F32 tensor in memory: rows × cols row-major (1-D tensors: rows = 1). */
typedef struct llmops_named_f32 {
    const char *name; /* llama.cpp's tensor name */
    int64_t rows, cols;
    const float *data;
} llmops_named_f32;

/*
 * Writes a GGUF model: the architecture's metadata, the tokenizer (may be NULL)
 * and the tensors, 2-D ones in out_type (LLMOPS_DTYPE_F32, F16 or BF16; -1 = F32),
 * 1-D ones in F32. hf_row_order = 1 says the q/k rows of a llama/mistral model are
 * in Hugging Face order and are permuted into llama.cpp's order on the way out.
 */
llmops_status llmops_gguf_write_model(const llmops_arch *a, const llmops_tokenizer *tok, const char *name,
                                      const llmops_named_f32 *ts, size_t n, int hf_row_order, int out_type,
                                      const char *path, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
