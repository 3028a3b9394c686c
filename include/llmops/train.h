/*
 * llmops/train.h — the training core: forward and backward passes of a
 * decoder (Llama 2/3, Mistral, Qwen2, SmolLM/TinyLlama shapes, GPT-2) over
 * micro-batches of token sequences, with LoRA, QLoRA-style (frozen weights
 * kept quantized and dequantised on the fly), full fine-tuning and training
 * from scratch; AdamW, gradient clipping and learning-rate schedules.
 *
 *     llmops_trainer_params tp;
 *     llmops_trainer_params_init(&tp);           // LoRA r=8, alpha=16 on q,v
 *     llmops_trainer *t;
 *     llmops_trainer_create(model, &tp, &t, &err);
 *     llmops_adamw_params ap;
 *     llmops_adamw_params_init(&ap);
 *     llmops_adamw *opt;
 *     llmops_adamw_create(t, &ap, &opt, &err);
 *     for (step...) {
 *         llmops_trainer_zero_grad(t);
 *         llmops_trainer_forward_backward(t, tokens, targets, 4, 256, 1.0f / n_target_tokens,
 *                                         &loss_sum, &n_counted, &err);
 *         llmops_clip_grad_norm(t, 1.0f);
 *         llmops_adamw_step(opt, llmops_lr_at(&sched, step));
 *     }
 *
 * Trainable tensors carry llama.cpp's tensor names ("blk.3.attn_q.weight");
 * LoRA factors add ".lora_a" (rows = rank, cols = in features) and ".lora_b"
 * (rows = out features, cols = rank) — the layout of a llama.cpp GGUF LoRA
 * adapter, and (transposed names aside) of PEFT's lora_A / lora_B.
 * Rows of q/k weights follow the row order of the loaded model: a GGUF llama
 * model stores them permuted for adjacent-pair RoPE (llmops_trainer_rope_neox
 * returns 0), a Hugging Face folder does not (returns 1); exporters un-permute.
 */
#ifndef LLMOPS_TRAIN_H
#define LLMOPS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/model.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_train_method {
    LLMOPS_TRAIN_LORA = 0, /* frozen base as loaded (F32/F16/BF16/quantized), LoRA factors in F32     */
    LLMOPS_TRAIN_QLORA,    /* frozen base re-quantized to base_type at create, LoRA factors in F32     */
    LLMOPS_TRAIN_FULL,     /* every weight trainable, F32 master copies                                */
    LLMOPS_TRAIN_SCRATCH   /* every weight trainable, initialised from the seed (no base model)        */
} llmops_train_method;

/* LoRA target modules (bit set). GPT-2's fused c_attn is LLMOPS_LORA_QKV. */
enum {
    LLMOPS_LORA_Q = 1u << 0,
    LLMOPS_LORA_K = 1u << 1,
    LLMOPS_LORA_V = 1u << 2,
    LLMOPS_LORA_O = 1u << 3,
    LLMOPS_LORA_GATE = 1u << 4,
    LLMOPS_LORA_UP = 1u << 5,
    LLMOPS_LORA_DOWN = 1u << 6,
    LLMOPS_LORA_QKV = 1u << 7
};

/* Parses "q,v" / "q_proj,v_proj" / "all" (every linear of the architecture) into target bits. */
llmops_status llmops_lora_targets_parse(const char *s, unsigned *out, llmops_error *err);

typedef struct llmops_trainer_params {
    llmops_train_method method;
    int lora_rank;          /* default 8                                                  */
    float lora_alpha;       /* default 16; the update is (alpha / rank) · B A x           */
    float lora_dropout;     /* default 0: dropout on the input of the A branch            */
    unsigned lora_targets;  /* default LLMOPS_LORA_Q | LLMOPS_LORA_V (GPT-2: QKV)        */
    int base_type;          /* QLoRA: LLMOPS_DTYPE_Q8_0 (default), Q4_0 or Q4_K          */
    int recompute;          /* 1: keep only each layer's input, recompute in backward     */
    int n_threads;          /* 0 = the physical cores                                      */
    int head_chunk;         /* positions whose logits exist at once (≥ 16); 0: 32 Mi floats, ≤ 1024 */
    uint64_t seed;          /* LoRA A init, dropout masks, from-scratch init; default 42  */
} llmops_trainer_params;

void llmops_trainer_params_init(llmops_trainer_params *p);

typedef struct llmops_train_tensor {
    char name[96];          /* llama.cpp name, ".lora_a"/".lora_b" for LoRA factors        */
    int64_t rows, cols;     /* 1-D tensors (norms, biases) have rows = 1                   */
    float *w;               /* rows·cols values, row-major                                 */
    float *g;               /* gradient accumulator, same shape                            */
    int decay;              /* 1: weight decay applies (2-D weights); 0: norms and biases  */
    int layer;              /* block index, or -1                                          */
} llmops_train_tensor;

typedef struct llmops_trainer llmops_trainer;

/*
 * A trainer over a loaded decoder (method LORA, QLORA or FULL). The model must outlive it.
 * LORA/QLORA train only the factors: embeddings, norms, biases and the LM head stay frozen.
 * Fused q|k|v (GPT-2's attn_qkv) takes a LoRA pair when any of Q, K, V or QKV is targeted;
 * QKV on separate projections targets all three. Targets a model lacks (gate on GPT-2) are skipped.
 * QLORA re-quantizes the tensors llmops_quantize_model converts — every layer linear, the token
 * embedding and an untied output (not the position table) — to base_type into trainer-owned
 * buffers; rows that do not split into its blocks use Q8_0 (rows of 32s) or F16.
 * BERT and other encoders are UNSUPPORTED.
 */
llmops_status llmops_trainer_create(const llmops_model *m, const llmops_trainer_params *p, llmops_trainer **out,
                                    llmops_error *err);
/* A trainer for a new model of architecture `a` (method SCRATCH): weights N(0, 0.02), norms 1,
 * biases 0, residual output projections scaled by 1/sqrt(2·layers) as GPT-2 does. */
llmops_status llmops_trainer_create_scratch(const llmops_arch *a, const llmops_trainer_params *p,
                                            llmops_trainer **out, llmops_error *err);
void llmops_trainer_free(llmops_trainer *t);

const llmops_arch *llmops_trainer_arch(const llmops_trainer *t);
int llmops_trainer_rope_neox(const llmops_trainer *t);
const llmops_trainer_params *llmops_trainer_get_params(const llmops_trainer *t);

size_t llmops_trainer_n_tensors(const llmops_trainer *t);
llmops_train_tensor *llmops_trainer_tensor(llmops_trainer *t, size_t i);
llmops_train_tensor *llmops_trainer_find(llmops_trainer *t, const char *name);
uint64_t llmops_trainer_n_trainable(const llmops_trainer *t);

void llmops_trainer_zero_grad(llmops_trainer *t);
/* The trainer's thread pool (n_threads of its params); the optimizer's passes run on it. */
struct llmops_threadpool *llmops_trainer_pool(llmops_trainer *t);
/* The LoRA dropout of the last forward_backward on the input of `weight` (e.g. "blk.0.attn_q.weight"):
 * mask (n tokens × in features) ← 0 for a dropped element, 1 / (1 − p) for a kept one, so that the
 * branch saw mask ⊙ x. For comparisons with a reference that cannot draw the same random numbers. */
llmops_status llmops_trainer_dropout_mask(const llmops_trainer *t, const char *weight, size_t n, float *mask,
                                          llmops_error *err);

/*
 * One micro-batch: n_seq sequences of seq_len tokens (row-major), each
 * starting at position 0, causal attention within its row. targets[i] is
 * the token to predict at position i, or -1 (not counted: prompt, padding).
 * Adds loss_scale · d(sum of cross-entropies)/d(weights) into the gradient
 * accumulators (pass 1 / the number of counted targets of the whole global
 * batch for a mean loss). Returns the summed cross-entropy and the count.
 */
llmops_status llmops_trainer_forward_backward(llmops_trainer *t, const int32_t *tokens, const int32_t *targets,
                                              int n_seq, int seq_len, float loss_scale, double *loss_sum,
                                              int64_t *n_counted, llmops_error *err);
/* The same forward pass without gradients (dropout off): evaluation. */
llmops_status llmops_trainer_eval(llmops_trainer *t, const int32_t *tokens, const int32_t *targets, int n_seq,
                                  int seq_len, double *loss_sum, int64_t *n_counted, llmops_error *err);
/* Logits of every position into out (n_seq·seq_len × vocab floats), dropout off; for tests and merged checks. */
llmops_status llmops_trainer_logits(llmops_trainer *t, const int32_t *tokens, int n_seq, int seq_len, float *out,
                                    llmops_error *err);

/* Dropout random state, saved in checkpoints: each forward_backward draws one key from it (the masks
 * of that call, reproduced when the layer is recomputed) and advances it; eval and logits leave it. */
uint64_t llmops_trainer_rng_get(const llmops_trainer *t);
void llmops_trainer_rng_set(llmops_trainer *t, uint64_t state);
/* Largest number of bytes the trainer has held at once (weights it owns, gradients, activations). */
uint64_t llmops_trainer_peak_bytes(const llmops_trainer *t);

/* ---- optimizer ----------------------------------------------------------------- */

typedef struct llmops_adamw_params {
    float beta1, beta2, eps; /* 0.9, 0.999, 1e-8                                     */
    float weight_decay;      /* 0.0; decoupled (w -= lr·wd·w), only tensors with decay */
} llmops_adamw_params;

void llmops_adamw_params_init(llmops_adamw_params *p);

typedef struct llmops_adamw llmops_adamw;

/* Moments for every trainable tensor of t (zeros), step 0. */
llmops_status llmops_adamw_create(llmops_trainer *t, const llmops_adamw_params *p, llmops_adamw **out,
                                  llmops_error *err);
void llmops_adamw_free(llmops_adamw *o);
/* One update with learning rate lr from the accumulated gradients (PyTorch's AdamW, bias-corrected). */
void llmops_adamw_step(llmops_adamw *o, float lr);
int64_t llmops_adamw_steps(const llmops_adamw *o);
void llmops_adamw_set_steps(llmops_adamw *o, int64_t steps);
/* First and second moments of tensor i (same shape as the tensor), for checkpoints. */
float *llmops_adamw_m(llmops_adamw *o, size_t i);
float *llmops_adamw_v(llmops_adamw *o, size_t i);

/* Scales every gradient so that their global L2 norm is at most max_norm (<= 0: no clipping).
 * Returns the norm before clipping. */
double llmops_grad_norm(llmops_trainer *t);
double llmops_clip_grad_norm(llmops_trainer *t, double max_norm);
/* llmops_clip_grad_norm then llmops_adamw_step in one pass over the weights (the same result bit for
 * bit, but the gradients are left unscaled). Returns the norm before clipping. */
double llmops_adamw_clip_step(llmops_adamw *o, float lr, double max_norm);

/* ---- learning-rate schedules ----------------------------------------------------- */

typedef enum llmops_lr_kind { LLMOPS_LR_CONSTANT = 0, LLMOPS_LR_LINEAR, LLMOPS_LR_COSINE } llmops_lr_kind;

typedef struct llmops_lr_schedule {
    llmops_lr_kind kind;
    double lr;            /* peak learning rate                                    */
    double min_lr;        /* floor of linear/cosine decay (0 = decay to zero)      */
    int64_t warmup_steps; /* linear ramp from lr/warmup to lr over these steps     */
    int64_t total_steps;  /* decay ends here                                        */
} llmops_lr_schedule;

/* Learning rate for optimizer step `step` (0-based), as transformers' schedules:
 * warmup: lr·(step+1)/warmup; then constant, linear to min_lr, or half-cosine to min_lr. */
double llmops_lr_at(const llmops_lr_schedule *s, int64_t step);
llmops_status llmops_lr_kind_parse(const char *s, llmops_lr_kind *out, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
