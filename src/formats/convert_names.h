/*
 * Tensor-name maps between Hugging Face checkpoints and llama.cpp's GGUF
 * names, per architecture family. "%d" stands for the layer index. The same
 * table serves both directions.
 */
#ifndef LLMOPS_CONVERT_NAMES_H
#define LLMOPS_CONVERT_NAMES_H

#include <stddef.h>

#include "llmops/arch.h"

typedef enum {
    XF_NONE = 0,
    XF_TRANSPOSE,  /* GPT-2 Conv1D stores [in, out]; GGUF wants [out, in] rows          */
    XF_PERMUTE_Q,  /* Llama q_proj: HF rotate-half rows ↔ llama.cpp's interleaved pairs  */
    XF_PERMUTE_K   /* the same with the KV head count                                    */
} conv_xform;

typedef struct {
    const char *hf;
    const char *gguf;
    conv_xform xf;
} conv_name;

/* The table for a family; *n receives its length. */
const conv_name *conv_names(llmops_arch_family f, size_t *n);

/* 1 when `name` matches `pattern` ("%d" matches a decimal layer index). */
int conv_match(const char *pattern, const char *name, int *layer);
/* Writes pattern with the layer substituted. */
void conv_format(const char *pattern, int layer, char *out, size_t cap);

/* HF tensors that carry no weights (buffers) and are dropped. */
int conv_hf_ignored(const char *name);

#endif
