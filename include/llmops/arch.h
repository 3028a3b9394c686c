/*
 * llmops/arch.h — the architecture descriptor: every shape and switch the
 * model code needs to run a transformer, filled from a Hugging Face
 * config.json, from GGUF metadata, or from a llama2.c header.
 *
 *     llmops_arch a;
 *     if (llmops_arch_from_hf_config_file("model/config.json", &a, &err)) ...
 *     printf("%s: %d layers, %d heads (%d KV)\n", a.hf_model_type, a.n_layers,
 *            a.n_heads, a.n_kv_heads);
 */
#ifndef LLMOPS_ARCH_H
#define LLMOPS_ARCH_H

#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_arch_family {
    LLMOPS_ARCH_UNKNOWN = 0,
    LLMOPS_ARCH_LLAMA,   /* Llama 1/2/3, TinyLlama, SmolLM, llama2.c */
    LLMOPS_ARCH_MISTRAL,
    LLMOPS_ARCH_QWEN2,
    LLMOPS_ARCH_GPT2,
    LLMOPS_ARCH_BERT
} llmops_arch_family;

typedef enum llmops_norm_kind { LLMOPS_NORM_RMS = 0, LLMOPS_NORM_LAYER } llmops_norm_kind;

typedef enum llmops_act_kind {
    LLMOPS_ACT_SILU = 0,  /* "silu"/"swish"                         */
    LLMOPS_ACT_GELU,      /* exact erf GELU ("gelu")               */
    LLMOPS_ACT_GELU_TANH, /* tanh approximation ("gelu_new", "gelu_pytorch_tanh") */
    LLMOPS_ACT_RELU
} llmops_act_kind;

typedef enum llmops_pos_kind {
    LLMOPS_POS_ROPE = 0,  /* rotary, applied to q and k                  */
    LLMOPS_POS_LEARNED    /* absolute position embedding table (GPT-2, BERT) */
} llmops_pos_kind;

typedef enum llmops_rope_scaling {
    LLMOPS_ROPE_SCALING_NONE = 0,
    LLMOPS_ROPE_SCALING_LINEAR,
    LLMOPS_ROPE_SCALING_LLAMA3,
    LLMOPS_ROPE_SCALING_YARN,
    LLMOPS_ROPE_SCALING_DYNAMIC
} llmops_rope_scaling;

typedef struct llmops_arch {
    llmops_arch_family family;
    char hf_model_type[32];     /* "llama", "qwen2", "gpt2", "bert", ...     */
    char hf_architecture[64];   /* "LlamaForCausalLM", ...                    */
    int64_t vocab_size;
    int64_t hidden_size;        /* model width (n_embd)                       */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;         /* = n_heads without GQA                      */
    int64_t head_dim;           /* usually hidden_size / n_heads              */
    int64_t ffn_size;           /* intermediate size                          */
    int64_t max_positions;      /* context length the model was trained for  */
    double norm_eps;
    llmops_norm_kind norm;
    llmops_act_kind act;
    int gated_ffn;              /* SwiGLU-style gate·up → down               */
    llmops_pos_kind pos;
    double rope_theta;
    int64_t rope_dim;           /* rotated dimensions per head (= head_dim)   */
    llmops_rope_scaling rope_scaling;
    double rope_factor;
    double rope_low_freq_factor;     /* llama3 */
    double rope_high_freq_factor;    /* llama3 */
    int64_t rope_original_max_positions;
    int qkv_bias;               /* biases on q, k, v (Qwen2, GPT-2, BERT)    */
    int attn_out_bias;          /* bias on the attention output projection  */
    int mlp_bias;               /* biases in the MLP                          */
    int norm_bias;              /* LayerNorm with bias                        */
    int tie_embeddings;         /* output projection shares the embedding     */
    int fused_qkv;              /* one [3·d, d] projection (GPT-2 c_attn)     */
    int64_t sliding_window;     /* 0 = none                                   */
    int64_t type_vocab_size;    /* BERT token types                           */
    int causal;                 /* decoder (1) or bidirectional encoder (0)   */
    int64_t bos_token_id, eos_token_id, pad_token_id; /* -1 when unknown */
} llmops_arch;

/* Fills `a` with neutral defaults (ids -1, theta 10000, eps 1e-5). */
void llmops_arch_init(llmops_arch *a);
const char *llmops_arch_family_name(llmops_arch_family f);
/* llama.cpp's architecture name ("llama", "qwen2", "gpt2", "bert"). */
const char *llmops_arch_gguf_name(llmops_arch_family f);

/*
 * Maps a Hugging Face config.json (text of `len` bytes; `origin` names it in
 * messages) to a descriptor. Unknown model_type is UNSUPPORTED; missing or
 * ill-typed required fields are FORMAT errors naming the field.
 */
llmops_status llmops_arch_from_hf_config(const char *json, size_t len, const char *origin, llmops_arch *a,
                                         llmops_error *err);
llmops_status llmops_arch_from_hf_config_file(const char *path, llmops_arch *a, llmops_error *err);

/* Checks internal consistency (heads divide width, GQA divides heads, ...). */
llmops_status llmops_arch_validate(const llmops_arch *a, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
