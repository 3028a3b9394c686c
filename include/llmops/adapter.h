/*
 * llmops/adapter.h — LoRA adapters: export trained factors as a Hugging Face
 * PEFT folder or a llama.cpp GGUF LoRA file, load either kind into the engine
 * and apply several at once during decoding, and merge adapters into a base
 * model written as GGUF or as a Hugging Face folder.
 *
 *     // after training: the trainer's ".lora_a"/".lora_b" tensors
 *     llmops_adapter_export_params ep;
 *     llmops_adapter_export_params_init(&ep);
 *     ep.arch = llmops_model_arch(model);
 *     ep.rope_neox = llmops_trainer_rope_neox(t);
 *     ep.rank = 8;
 *     ep.alpha = 16;
 *     ep.base_model = "TinyLlama/TinyLlama-1.1B-Chat-v1.0";
 *     llmops_adapter_export(&ep, lora_tensors, n_lora, LLMOPS_ADAPTER_PEFT, "out/adapter", &err);
 *
 *     // inference: y = W x + Σ scale_i · (alpha_i / r_i) · B_i (A_i x)
 *     llmops_adapter *a, *b;
 *     llmops_adapter_load(model, "out/adapter", &a, &err);       // PEFT folder
 *     llmops_adapter_load(model, "style.gguf", &b, &err);        // GGUF LoRA
 *     llmops_adapter *set[2] = {a, b};
 *     float scales[2] = {1.0f, 0.5f};
 *     llmops_context_set_adapters(ctx, set, scales, 2, &err);
 *     llmops_decode(ctx, batch, n, &err);
 *     llmops_context_set_adapters(ctx, NULL, NULL, 0, &err);     // back to the base model
 *     llmops_adapter_free(b);
 *     llmops_adapter_free(a);
 *
 *     // merge: base + adapters → one model
 *     const char *paths[1] = {"out/adapter"};
 *     llmops_adapter_merge("base.gguf", paths, NULL, 1, "merged.gguf", NULL, &err);
 *
 * Row order of q/k. llama.cpp stores the q and k projections of llama-family
 * models (llama, mistral) with their rows permuted for adjacent-pair RoPE;
 * Hugging Face keeps rotate-half order (and so do Qwen2 GGUF files). LoRA B
 * factors of q/k follow the same rule: PEFT files hold Hugging Face order,
 * GGUF LoRA files llama.cpp's order. Exporters and the loader permute B rows
 * between the file's order and the model's as needed.
 */
#ifndef LLMOPS_ADAPTER_H
#define LLMOPS_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/arch.h"
#include "llmops/model.h"
#include "llmops/status.h"
#include "llmops/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_adapter_format {
    LLMOPS_ADAPTER_PEFT = 0, /* folder: adapter_config.json + adapter_model.safetensors  */
    LLMOPS_ADAPTER_GGUF      /* one llama.cpp LoRA file (general.type = "adapter")       */
} llmops_adapter_format;

/* ---- export ------------------------------------------------------------------------ */

typedef struct llmops_adapter_export_params {
    const llmops_arch *arch; /* the base model's architecture (required)                    */
    int rope_neox;           /* row order of the tensors' q/k B factors: 1 = Hugging Face
                                (rotate-half), 0 = llama.cpp's permuted order (a GGUF llama
                                model); llmops_trainer_rope_neox() says which            */
    int rank;                /* r; every A must have r rows (default 8)                     */
    float alpha;             /* lora_alpha (default 16)                                     */
    float dropout;           /* lora_dropout, recorded in adapter_config.json (default 0)   */
    unsigned targets;        /* LLMOPS_LORA_* bits: every factor must adapt one of them (0 =
                                any); target_modules lists the modules the factors adapt  */
    const char *base_model;  /* base_model_name_or_path / general.name; NULL = ""           */
    int out_type;            /* LLMOPS_DTYPE_F32 (default) or F16                            */
} llmops_adapter_export_params;

void llmops_adapter_export_params_init(llmops_adapter_export_params *p);

/*
 * Writes the LoRA factors among ts[0..n) (names "blk.N.<w>.weight.lora_a",
 * rows = r, cols = in; ".lora_b", rows = out, cols = r; other tensors are
 * ignored) as a PEFT folder `path` (created) or a GGUF LoRA file `path`.
 * Every lora_a needs its lora_b. PEFT names: base_model.model.model.layers.N.
 * self_attn.q_proj.lora_A.weight [r, in] and .lora_B.weight [out, r] (GPT-2:
 * base_model.model.transformer.h.N.attn.c_attn..., fan_in_fan_out true).
 * GGUF: "blk.N.attn_q.weight.lora_a" with ne = [in, r], ".lora_b" ne = [r, out],
 * adapter.lora.alpha. Errors name the offending tensor.
 */
llmops_status llmops_adapter_export(const llmops_adapter_export_params *p, const llmops_train_tensor *ts, size_t n,
                                    llmops_adapter_format format, const char *path, llmops_error *err);

/* ---- runtime ------------------------------------------------------------------------- */

typedef struct llmops_adapter llmops_adapter;

/*
 * Loads a PEFT folder (or its adapter_model.safetensors beside
 * adapter_config.json) or a GGUF LoRA file for model m, which must outlive
 * the adapter. Each factor is checked against the model: a module the model
 * lacks, a shape that does not fit the weight, a rank that differs from the
 * config's r, or a lora_A without its lora_B fails with FORMAT/UNSUPPORTED and
 * a message naming the tensor. Factors are kept in F32, in the model's row order.
 */
llmops_status llmops_adapter_load(const llmops_model *m, const char *path, llmops_adapter **out, llmops_error *err);
void llmops_adapter_free(llmops_adapter *a);

float llmops_adapter_alpha(const llmops_adapter *a);
int llmops_adapter_rank(const llmops_adapter *a);
/* Number of adapted weights (pairs of factors). */
size_t llmops_adapter_n_weights(const llmops_adapter *a);
/* The per-weight scale the adapter applies before the user's: alpha / r (rsLoRA: alpha / √r). */
float llmops_adapter_scaling(const llmops_adapter *a);
/*
 * The factors as trainer-style tensors (names "blk.N.attn_q.weight.lora_a" ...,
 * g = NULL), in the model's row order; owned by the adapter. With
 * llmops_adapter_export (rope_neox of the model) this converts between formats.
 */
const llmops_train_tensor *llmops_adapter_tensors(const llmops_adapter *a, size_t *n);

/*
 * Writes a loaded adapter as a PEFT folder or a GGUF LoRA file (format
 * conversion). The scaling is kept: alpha is written as scaling · r.
 */
llmops_status llmops_adapter_save(const llmops_adapter *a, llmops_adapter_format format, const char *path, int out_type,
                                  llmops_error *err);

/*
 * The adapters ctx applies from its next decode: y = W x + Σ scales[i] ·
 * llmops_adapter_scaling(a[i]) · B (A x) for every adapted weight. scales may
 * be NULL (all 1). n = 0 restores the base model. The adapters must belong
 * to ctx's model and outlive their use by ctx. The KV cache is kept: clear it
 * when a sequence should be recomputed with the new adapters.
 */
llmops_status llmops_context_set_adapters(llmops_context *ctx, llmops_adapter *const *a, const float *scales, size_t n,
                                          llmops_error *err);

/* ---- merge --------------------------------------------------------------------------- */

typedef struct llmops_merge_params {
    int out_type;           /* LLMOPS_DTYPE_F32 or F16 for every matrix; -1 (default): the
                               base's float type (quantized bases become F32)             */
} llmops_merge_params;

void llmops_merge_params_init(llmops_merge_params *p);

/*
 * Writes base + Σ scales[i] · scaling_i · B_i A_i as a new model: a GGUF file
 * when `out` ends in ".gguf" (the base's metadata, tokenizer and tensor names;
 * a Hugging Face base is converted first), otherwise a Hugging Face folder
 * (safetensors + config.json, plus the base folder's tokenizer files when
 * the base is one). `base` is any model llmops_model_load reads; scales may
 * be NULL. Temporary files are written beside `out` and removed.
 */
llmops_status llmops_adapter_merge(const char *base, const char *const *adapters, const float *scales, size_t n,
                                   const char *out, const llmops_merge_params *p, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
