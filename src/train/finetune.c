/*
 * The fine-tuning job (llmops/finetune.h): YAML → model, data, trainer,
 * optimizer → steps with gradient accumulation and data-parallel gradient
 * sums → evaluation, checkpoints, metrics → exports.
 */
#include "llmops/finetune.h"

#include <errno.h>
#include <float.h>
#include <libgen.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "llmops/adapter.h"
#include "llmops/config.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/log.h"
#include "llmops/model.h"
#include "llmops/safetensors.h"
#include "llmops/tensor.h"
#include "llmops/train.h"
#include "llmops/train_data.h"
#include "train/dist.h"
#include "train/finetune_internal.h"

/* ---- the configuration schema ------------------------------------------------------ */

static const char *const k_methods[] = {"lora", "qlora", "full", "scratch", NULL};
static const char *const k_base_types[] = {"q8_0", "q4_0", "q4_k", NULL};
static const char *const k_schedules[] = {"constant", "linear", "cosine", NULL};
static const char *const k_formats[] = {"auto", "text", "jsonl", "json", "csv", NULL};
static const char *const k_schemas[] = {"auto", "text", "alpaca", "completion", "chat", NULL};
static const char *const k_bad_rows[] = {"skip", "fail", NULL};
static const char *const k_families[] = {"llama", "qwen2", "mistral", "gpt2", NULL};
static const char *const k_out_types[] = {"f32", "f16", NULL};

#define F(T, m) offsetof(T, m)

static const llmops_config_field k_model_fields[] = {
    {.key = "path", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_model_cfg, path),
     .doc = "base model: a GGUF file, a Hugging Face folder or a llama2.c checkpoint (not for scratch)"},
    {.key = "tokenizer", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_model_cfg, tokenizer),
     .doc = "tokenizer file or folder; default: the model's own (required for scratch)"},
    {.key = "chat_template", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_model_cfg, chat_template),
     .doc = "chat template (a built-in name such as chatml, or template text) for chat data"},
};
static const llmops_config_schema k_model = LLMOPS_CONFIG_SCHEMA(ft_model_cfg, k_model_fields);

static const llmops_config_field k_lora_fields[] = {
    {.key = "rank", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_lora_cfg, rank), .def = "8", .min = 1,
     .max = 4096, .doc = "LoRA rank r"},
    {.key = "alpha", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_lora_cfg, alpha), .def = "16", .fmin = 1e-6,
     .fmax = 1e6, .doc = "LoRA alpha; the update is scaled by alpha / r"},
    {.key = "dropout", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_lora_cfg, dropout), .def = "0", .fmin = 0,
     .fmax = 0.99, .doc = "dropout on the LoRA branch's input"},
    {.key = "targets", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = F(ft_lora_cfg, targets),
     .doc = "modules to adapt: q, k, v, o, gate, up, down (or q_proj ...), qkv for GPT-2, all; default [q, v]"},
    {.key = "base_type", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_lora_cfg, base_type), .def = "q8_0",
     .enum_values = k_base_types, .doc = "qlora: the type the frozen base weights are kept in"},
};
static const llmops_config_schema k_lora = LLMOPS_CONFIG_SCHEMA(ft_lora_cfg, k_lora_fields);

static const llmops_config_field k_arch_fields[] = {
    {.key = "family", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_arch_cfg, family), .def = "llama",
     .enum_values = k_families, .doc = "scratch: architecture family"},
    {.key = "config", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_arch_cfg, config),
     .doc = "scratch: a Hugging Face config.json instead of the keys below"},
    {.key = "hidden_size", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, hidden_size), .def = "256",
     .min = 8, .max = 65536, .doc = "scratch: model width"},
    {.key = "layers", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, layers), .def = "4", .min = 1,
     .max = 1024, .doc = "scratch: transformer blocks"},
    {.key = "heads", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, heads), .def = "8", .min = 1,
     .max = 1024, .doc = "scratch: attention heads"},
    {.key = "kv_heads", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, kv_heads), .def = "0", .min = 0,
     .max = 1024, .doc = "scratch: key/value heads (0 = heads)"},
    {.key = "ffn_size", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, ffn_size), .def = "0", .min = 0,
     .max = 1 << 20, .doc = "scratch: feed-forward width (0 = 8/3·hidden rounded to 32 for llama, 4·hidden for gpt2)"},
    {.key = "context", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_arch_cfg, context), .def = "512", .min = 8,
     .max = 1 << 20, .doc = "scratch: context length"},
    {.key = "rope_theta", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_arch_cfg, rope_theta), .def = "10000",
     .fmin = 1, .fmax = 1e9, .doc = "scratch: RoPE base"},
    {.key = "norm_eps", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_arch_cfg, norm_eps), .def = "1e-5",
     .fmin = 1e-12, .fmax = 1, .doc = "scratch: normalisation epsilon"},
    {.key = "tie_embeddings", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = F(ft_arch_cfg, tie_embeddings),
     .def = "true", .doc = "scratch: output projection shares the token embedding"},
};
static const llmops_config_schema k_arch = LLMOPS_CONFIG_SCHEMA(ft_arch_cfg, k_arch_fields);

static const llmops_config_field k_s3_fields[] = {
    {.key = "endpoint", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_s3_cfg, endpoint),
     .doc = "S3 endpoint URL (MinIO, LeoFS); default $AWS_ENDPOINT_URL or AWS"},
    {.key = "region", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_s3_cfg, region),
     .doc = "S3 region; default $AWS_REGION or us-east-1"},
    {.key = "access_key", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_s3_cfg, access_key),
     .doc = "default $AWS_ACCESS_KEY_ID"},
    {.key = "secret_key", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_s3_cfg, secret_key),
     .doc = "default $AWS_SECRET_ACCESS_KEY"},
};
static const llmops_config_schema k_s3 = LLMOPS_CONFIG_SCHEMA(ft_s3_cfg, k_s3_fields);

static const llmops_config_field k_data_fields[] = {
    {.key = "train", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = F(ft_data_cfg, train),
     .flags = LLMOPS_CONFIG_REQUIRED, .min = 1, .max = 100000,
     .doc = "training data: files, folders, http(s):// URLs, s3://bucket/key"},
    {.key = "validation", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = F(ft_data_cfg, validation),
     .doc = "validation data (else val_ratio of the training rows)"},
    {.key = "val_ratio", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_data_cfg, val_ratio), .def = "0",
     .fmin = 0, .fmax = 0.9, .doc = "fraction of training rows held out for validation"},
    {.key = "format", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_data_cfg, format), .def = "auto",
     .enum_values = k_formats, .doc = "file syntax (auto: by extension)"},
    {.key = "schema", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_data_cfg, schema), .def = "auto",
     .enum_values = k_schemas, .doc = "what a record is (auto: by its fields)"},
    {.key = "text_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, text_field), .def = "text",
     .doc = "JSON key or CSV column of text records"},
    {.key = "instruction_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, instruction_field),
     .def = "instruction", .doc = "Alpaca instruction key/column"},
    {.key = "input_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, input_field), .def = "input",
     .doc = "Alpaca input key/column"},
    {.key = "output_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, output_field),
     .def = "output", .doc = "Alpaca output key/column"},
    {.key = "prompt_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, prompt_field),
     .def = "prompt", .doc = "prompt/completion: prompt key/column"},
    {.key = "completion_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, completion_field),
     .def = "completion", .doc = "prompt/completion: completion key/column"},
    {.key = "messages_field", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, messages_field),
     .def = "messages", .doc = "chat: key of the list of {role, content} messages"},
    {.key = "seq_len", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_data_cfg, seq_len), .def = "256", .min = 2,
     .max = 1 << 20, .doc = "tokens per training row"},
    {.key = "mask_prompt", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = F(ft_data_cfg, mask_prompt), .def = "true",
     .doc = "instruction and chat data: train only on responses"},
    {.key = "pack", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = F(ft_data_cfg, pack), .def = "false",
     .doc = "put several short examples in one row"},
    {.key = "doc_separator", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, doc_separator),
     .doc = "plain text: a line that separates documents"},
    {.key = "bad_rows", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_data_cfg, bad_rows), .def = "skip",
     .enum_values = k_bad_rows, .doc = "bad records: skip (reported with file:line) or fail"},
    {.key = "cache_dir", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_data_cfg, cache_dir),
     .doc = "keep downloaded sources here"},
    {.key = "s3", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_data_cfg, s3), .sub = &k_s3,
     .doc = "S3 settings for s3:// sources"},
};
static const llmops_config_schema k_data = LLMOPS_CONFIG_SCHEMA(ft_data_cfg, k_data_fields);

static const llmops_config_field k_train_fields[] = {
    {.key = "epochs", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, epochs), .def = "1", .fmin = 0,
     .fmax = 1e6, .doc = "passes over the training rows (when max_steps is 0)"},
    {.key = "max_steps", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, max_steps), .def = "0", .min = 0,
     .max = INT64_MAX, .doc = "optimizer steps (0: from epochs)"},
    {.key = "batch_size", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, batch_size), .def = "4",
     .min = 1, .max = 65536, .doc = "rows per forward pass on each process"},
    {.key = "grad_accum", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, grad_accum), .def = "1",
     .min = 1, .max = 65536, .doc = "forward passes per optimizer step; global batch = batch_size·grad_accum·processes"},
    {.key = "lr", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, lr), .def = "2e-4", .fmin = 0,
     .fmax = 10, .doc = "peak learning rate"},
    {.key = "min_lr", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, min_lr), .def = "0", .fmin = 0,
     .fmax = 10, .doc = "floor of the linear/cosine decay"},
    {.key = "schedule", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_train_cfg, schedule), .def = "cosine",
     .enum_values = k_schedules, .doc = "learning-rate schedule after warmup"},
    {.key = "warmup_steps", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, warmup_steps), .def = "0",
     .min = 0, .max = INT64_MAX, .doc = "linear warmup steps"},
    {.key = "weight_decay", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, weight_decay), .def = "0",
     .fmin = 0, .fmax = 10, .doc = "AdamW decoupled weight decay (2-D weights only)"},
    {.key = "beta1", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, beta1), .def = "0.9", .fmin = 0,
     .fmax = 0.999999, .doc = "AdamW beta1"},
    {.key = "beta2", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, beta2), .def = "0.999", .fmin = 0,
     .fmax = 0.999999, .doc = "AdamW beta2"},
    {.key = "eps", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, eps), .def = "1e-8", .fmin = 1e-30,
     .fmax = 1, .doc = "AdamW epsilon"},
    {.key = "max_grad_norm", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = F(ft_train_cfg, max_grad_norm),
     .def = "1.0", .fmin = 0, .fmax = 1e9, .doc = "clip gradients to this global L2 norm (0: off)"},
    {.key = "recompute", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = F(ft_train_cfg, recompute), .def = "false",
     .doc = "recompute activations per layer in the backward pass (less memory)"},
    {.key = "threads", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, threads), .def = "0", .min = 0,
     .max = 4096, .doc = "threads per process (0: the physical cores / processes on this node)"},
    {.key = "seed", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, seed), .def = "42", .min = 0,
     .max = INT64_MAX, .doc = "seed of initialisation, dropout, split and shuffling"},
    {.key = "log_every", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_train_cfg, log_every), .def = "1", .min = 1,
     .max = INT64_MAX, .doc = "steps between metrics lines"},
};
static const llmops_config_schema k_train = LLMOPS_CONFIG_SCHEMA(ft_train_cfg, k_train_fields);

static const llmops_config_field k_eval_fields[] = {
    {.key = "every", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_eval_cfg, every), .def = "0", .min = 0,
     .max = INT64_MAX, .doc = "steps between validation passes (0: before and after training only)"},
    {.key = "max_rows", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_eval_cfg, max_rows), .def = "0", .min = 0,
     .max = INT64_MAX, .doc = "validation rows per pass (0: all)"},
    {.key = "early_stopping_patience", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_eval_cfg, patience),
     .def = "0", .min = 0, .max = INT64_MAX,
     .doc = "stop after this many validation passes without a new best (0: never)"},
};
static const llmops_config_schema k_eval = LLMOPS_CONFIG_SCHEMA(ft_eval_cfg, k_eval_fields);

static const llmops_config_field k_ckpt_fields[] = {
    {.key = "every", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_ckpt_cfg, every), .def = "100", .min = 0,
     .max = INT64_MAX, .doc = "steps between checkpoints (0: only at the end)"},
    {.key = "keep", .type = LLMOPS_CONFIG_TYPE_INT, .offset = F(ft_ckpt_cfg, keep), .def = "2", .min = 1,
     .max = 1000000, .doc = "newest checkpoints kept"},
};
static const llmops_config_schema k_ckpt = LLMOPS_CONFIG_SCHEMA(ft_ckpt_cfg, k_ckpt_fields);

static const llmops_config_field k_output_fields[] = {
    {.key = "dir", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_output_cfg, dir),
     .flags = LLMOPS_CONFIG_REQUIRED, .min = 1, .max = 4000, .doc = "run directory"},
    {.key = "export", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = F(ft_output_cfg, exports),
     .doc = "what to write at the end: peft, gguf (LoRA adapters), merged_gguf, merged_hf (LoRA merged "
            "into the base), model_gguf, model_hf (full/scratch); default peft+gguf or model_gguf"},
    {.key = "type", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_output_cfg, out_type), .def = "f32",
     .enum_values = k_out_types, .doc = "float type of exported adapters and models"},
    {.key = "use_best", .type = LLMOPS_CONFIG_TYPE_BOOL, .offset = F(ft_output_cfg, use_best), .def = "false",
     .doc = "export the weights with the best validation loss instead of the last"},
    {.key = "name", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = F(ft_output_cfg, name),
     .doc = "model name written into exports"},
};
static const llmops_config_schema k_output = LLMOPS_CONFIG_SCHEMA(ft_output_cfg, k_output_fields);

static const llmops_config_field k_fields[] = {
    {.key = "model", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, model), .sub = &k_model,
     .doc = "the base model"},
    {.key = "method", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = F(ft_cfg, method), .def = "lora",
     .enum_values = k_methods, .doc = "lora, qlora, full or scratch"},
    {.key = "lora", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, lora), .sub = &k_lora,
     .doc = "LoRA / QLoRA settings"},
    {.key = "architecture", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, arch), .sub = &k_arch,
     .doc = "the new model of a scratch run"},
    {.key = "data", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, data), .sub = &k_data,
     .doc = "datasets"},
    {.key = "training", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, train), .sub = &k_train,
     .doc = "optimisation"},
    {.key = "eval", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, eval), .sub = &k_eval,
     .doc = "validation"},
    {.key = "checkpoint", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, ckpt), .sub = &k_ckpt,
     .doc = "checkpoints"},
    {.key = "output", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = F(ft_cfg, output), .sub = &k_output,
     .doc = "results"},
};
static const llmops_config_schema k_schema = LLMOPS_CONFIG_SCHEMA(ft_cfg, k_fields);

llmops_status llmops_finetune_write_docs(llmops_buf *out, llmops_error *err) {
    return llmops_config_write_docs(&k_schema, NULL, out, err);
}

void llmops_finetune_options_init(llmops_finetune_options *o) {
    o->resume = NULL;
    o->progress = -1;
    o->stop_after = 0;
}

/* ---- loading and checking ---------------------------------------------------------- */

/* Paths in the YAML are relative to its folder; URLs and absolute paths stay. */
static const char *resolve(ft_job *j, const char *p) {
    if (!p || !*p || p[0] == '/' || llmops_fetch_is_url(p)) return p;
    if (j->n_strings == FT_MAX_STRINGS) return p;
    char *s = llmops_path_join(j->base_dir, p);
    if (!s) return p;
    j->strings[j->n_strings++] = s;
    return s;
}

static llmops_status cfg_error(const ft_job *j, const char *key, llmops_error *err, const char *fmt, const char *arg) {
    const llmops_config_node *n = llmops_config_get(j->cfg, key);
    char msg[600];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    if (n)
        return llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s:%u:%u: %s: %s", j->config_path, llmops_config_node_line(n),
                                llmops_config_node_col(n), key, msg);
    return llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s: %s: %s", j->config_path, key, msg);
}

llmops_status ft_load_config(const char *path, ft_job *j, llmops_error *err) {
    memset(j, 0, sizeof *j);
    snprintf(j->config_path, sizeof j->config_path, "%s", path);
    char tmp[sizeof j->config_path];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(j->base_dir, sizeof j->base_dir, "%s", dirname(tmp));
    llmops_status st = llmops_config_load_file(path, &k_schema, &j->c, &j->cfg, err);
    if (st) return st;
    ft_cfg *c = &j->c;
    int scratch = c->method == FT_SCRATCH;
    if (!scratch && !c->model.path) return cfg_error(j, "model", err, "model.path is required for method %s",
                                                   k_methods[c->method]);
    if (scratch && c->model.path)
        return cfg_error(j, "model.path", err, "a scratch run defines its model under architecture:, not model.path%s",
                         NULL);
    if (scratch && !c->model.tokenizer)
        return cfg_error(j, "model", err, "a scratch run needs model.tokenizer%s", NULL);
    c->model.path = resolve(j, c->model.path);
    c->model.tokenizer = resolve(j, c->model.tokenizer);
    c->arch.config = resolve(j, c->arch.config);
    c->output.dir = resolve(j, c->output.dir);
    c->data.cache_dir = resolve(j, c->data.cache_dir);
    for (size_t i = 0; i < c->data.train.count; i++) c->data.train.items[i] = resolve(j, c->data.train.items[i]);
    for (size_t i = 0; i < c->data.validation.count; i++)
        c->data.validation.items[i] = resolve(j, c->data.validation.items[i]);
    /* LoRA targets */
    j->targets = 0;
    for (size_t i = 0; i < c->lora.targets.count; i++) {
        unsigned bits;
        llmops_error e2 = {0};
        if (llmops_lora_targets_parse(c->lora.targets.items[i], &bits, &e2)) {
            char key[64];
            snprintf(key, sizeof key, "lora.targets[%zu]", i);
            return cfg_error(j, key, err, "%s", e2.msg);
        }
        j->targets |= bits;
    }
    if (c->train.min_lr > c->train.lr) return cfg_error(j, "training.min_lr", err, "min_lr is above lr%s", NULL);
    if (c->data.validation.count && c->data.val_ratio > 0)
        return cfg_error(j, "data.val_ratio", err, "give either data.validation or data.val_ratio, not both%s", NULL);
    for (size_t i = 0; i < c->output.exports.count; i++) {
        const char *e = c->output.exports.items[i];
        int lora_kind = !strcmp(e, "peft") || !strcmp(e, "gguf") || !strcmp(e, "merged_gguf") || !strcmp(e, "merged_hf");
        int model_kind = !strcmp(e, "model_gguf") || !strcmp(e, "model_hf");
        char key[64];
        snprintf(key, sizeof key, "output.export[%zu]", i);
        if (!lora_kind && !model_kind)
            return cfg_error(j, key, err,
                             "unknown export '%s' (peft, gguf, merged_gguf, merged_hf, model_gguf, model_hf)", e);
        int is_lora = c->method == FT_LORA || c->method == FT_QLORA;
        if (lora_kind && !is_lora) return cfg_error(j, key, err, "'%s' exports a LoRA adapter; this run trains the whole model", e);
        if (model_kind && is_lora) return cfg_error(j, key, err, "'%s' exports a whole model; this run trains a LoRA adapter (use merged_gguf/merged_hf)", e);
    }
    return LLMOPS_OK;
}

void ft_job_free(ft_job *j) {
    llmops_config_free(j->cfg);
    for (size_t i = 0; i < j->n_strings; i++) llmops_free(j->strings[i]);
    j->cfg = NULL;
    j->n_strings = 0;
}

llmops_status llmops_finetune_check(const char *config_path, llmops_error *err) {
    ft_job j;
    llmops_status st = ft_load_config(config_path, &j, err);
    if (!st && j.c.model.path && !llmops_path_is_file(j.c.model.path) && !llmops_path_is_dir(j.c.model.path))
        st = cfg_error(&j, "model.path", err, "'%s' does not exist", j.c.model.path);
    for (size_t i = 0; !st && i < j.c.data.train.count; i++) {
        const char *p = j.c.data.train.items[i];
        if (!llmops_fetch_is_url(p) && !llmops_path_is_file(p) && !llmops_path_is_dir(p)) {
            char key[64];
            snprintf(key, sizeof key, "data.train[%zu]", i);
            st = cfg_error(&j, key, err, "'%s' does not exist", p);
        }
    }
    ft_job_free(&j);
    return st;
}

/* ---- the scratch architecture -------------------------------------------------------- */

static llmops_status scratch_arch(ft_job *j, int64_t vocab, llmops_arch *a, llmops_error *err) {
    const ft_arch_cfg *s = &j->c.arch;
    if (s->config) {
        llmops_status st = llmops_arch_from_hf_config_file(s->config, a, err);
        if (st) return st;
        if (a->vocab_size < vocab)
            return cfg_error(j, "architecture.config", err, "the config's vocab_size is below the tokenizer's%s", NULL);
        return llmops_arch_validate(a, err);
    }
    llmops_arch_init(a);
    const char *fam = k_families[s->family];
    a->vocab_size = vocab;
    a->hidden_size = s->hidden_size;
    a->n_layers = s->layers;
    a->n_heads = s->heads;
    a->n_kv_heads = s->kv_heads ? s->kv_heads : s->heads;
    if (s->hidden_size % s->heads) return cfg_error(j, "architecture.heads", err, "heads must divide hidden_size%s", NULL);
    a->head_dim = s->hidden_size / s->heads;
    a->max_positions = s->context;
    a->norm_eps = s->norm_eps;
    a->rope_theta = s->rope_theta;
    a->rope_dim = a->head_dim;
    a->tie_embeddings = s->tie_embeddings;
    a->causal = 1;
    snprintf(a->hf_model_type, sizeof a->hf_model_type, "%s", fam);
    if (!strcmp(fam, "gpt2")) {
        a->family = LLMOPS_ARCH_GPT2;
        a->norm = LLMOPS_NORM_LAYER;
        a->act = LLMOPS_ACT_GELU_TANH;
        a->gated_ffn = 0;
        a->pos = LLMOPS_POS_LEARNED;
        a->qkv_bias = a->attn_out_bias = a->mlp_bias = a->norm_bias = 1;
        a->fused_qkv = 1;
        a->tie_embeddings = 1;
        a->ffn_size = s->ffn_size ? s->ffn_size : 4 * s->hidden_size;
        snprintf(a->hf_architecture, sizeof a->hf_architecture, "GPT2LMHeadModel");
    } else {
        a->family = !strcmp(fam, "qwen2") ? LLMOPS_ARCH_QWEN2 : !strcmp(fam, "mistral") ? LLMOPS_ARCH_MISTRAL : LLMOPS_ARCH_LLAMA;
        a->norm = LLMOPS_NORM_RMS;
        a->act = LLMOPS_ACT_SILU;
        a->gated_ffn = 1;
        a->pos = LLMOPS_POS_ROPE;
        a->qkv_bias = a->family == LLMOPS_ARCH_QWEN2;
        a->ffn_size = s->ffn_size ? s->ffn_size : ((s->hidden_size * 8 / 3 + 31) / 32) * 32;
        snprintf(a->hf_architecture, sizeof a->hf_architecture, "%s",
                 a->family == LLMOPS_ARCH_QWEN2     ? "Qwen2ForCausalLM"
                 : a->family == LLMOPS_ARCH_MISTRAL ? "MistralForCausalLM"
                                                    : "LlamaForCausalLM");
    }
    return llmops_arch_validate(a, err);
}

/* ---- small utilities ------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void fmt_duration(double s, char *out, size_t n) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(out, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

/* ---- the run -------------------------------------------------------------------------- */

static int dtype_of_base(int e) {
    return e == 1 ? LLMOPS_DTYPE_Q4_0 : e == 2 ? LLMOPS_DTYPE_Q4_K : LLMOPS_DTYPE_Q8_0;
}

static llmops_status metrics_line(ft_run *r, json_t *o, llmops_error *err) {
    if (r->dist.rank != 0 || !r->metrics) {
        json_decref(o);
        return LLMOPS_OK;
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    int bad = fprintf(r->metrics, "%s\n", s) < 0 || fflush(r->metrics) != 0;
    free(s);
    if (bad) return llmops_error_set(err, LLMOPS_ERR_IO, "%s/metrics.jsonl: %s", r->dir, strerror(errno));
    return LLMOPS_OK;
}

/* Mean loss over (at most max_rows of) the validation split, summed over ranks. */
static llmops_status evaluate(ft_run *r, double *loss, llmops_error *err) {
    *loss = NAN;
    int64_t rows = llmops_dataset_n_rows(r->ds, LLMOPS_SPLIT_VAL);
    if (rows <= 0) return LLMOPS_OK;
    if (r->job->c.eval.max_rows > 0 && rows > r->job->c.eval.max_rows) rows = r->job->c.eval.max_rows;
    int B = (int)r->job->c.train.batch_size, L = r->seq_len;
    double acc[2] = {0, 0};
    int64_t i = r->dist.rank;
    while (i < rows) {
        int n = 0;
        for (; n < B && i < rows; n++, i += r->dist.world) {
            llmops_status st = llmops_dataset_row(r->ds, LLMOPS_SPLIT_VAL, i, r->tokens + (size_t)n * L,
                                                  r->targets + (size_t)n * L, NULL, err);
            if (st) return st;
        }
        double ls = 0;
        int64_t cnt = 0;
        llmops_status st = llmops_trainer_eval(r->t, r->tokens, r->targets, n, L, &ls, &cnt, err);
        if (st) return st;
        acc[0] += ls;
        acc[1] += (double)cnt;
    }
    llmops_status st = dist_sum_doubles(&r->dist, acc, 2, err);
    if (st) return st;
    if (acc[1] > 0) *loss = acc[0] / acc[1];
    return LLMOPS_OK;
}

static void progress(ft_run *r, int final) {
    if (r->progress == 0 || r->dist.rank != 0) return;
    double el = now_s() - r->t_start;
    double tps = el > 0 ? (double)r->tokens_run / el : 0;
    int64_t done = r->step - r->step_start, left = r->total_steps - r->step;
    double eta = done > 0 ? el / (double)done * (double)left : -1;
    char eta_s[32];
    fmt_duration(eta, eta_s, sizeof eta_s);
    int width = 24, fill = r->total_steps > 0 ? (int)((double)width * (double)r->step / (double)r->total_steps) : 0;
    if (fill > width) fill = width;
    char bar[64];
    for (int k = 0; k < width; k++) bar[k] = k < fill ? '#' : '.';
    bar[width] = '\0';
    char line[512];
    snprintf(line, sizeof line, "step %lld/%lld [%s] loss %.4f lr %.2e %.0f tok/s ETA %s mem %.0f MiB",
             (long long)r->step, (long long)r->total_steps, bar, r->last_loss, r->last_lr, tps, eta_s, peak_rss_mib());
    if (r->progress == 2) fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    else if (final || r->step % r->job->c.train.log_every == 0) fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static llmops_status do_eval(ft_run *r, const char *when, llmops_error *err) {
    double vl;
    llmops_status st = evaluate(r, &vl, err);
    if (st || isnan(vl)) return st;
    if (isnan(r->val_first)) r->val_first = vl;
    r->val_last = vl;
    int improved = isnan(r->best_val) || vl < r->best_val;
    if (improved) {
        r->best_val = vl;
        r->best_step = r->step;
        r->bad_evals = 0;
        if (r->dist.rank == 0 && (st = ft_save_best(r, err))) return st;
    } else {
        r->bad_evals++;
    }
    if (r->progress && r->dist.rank == 0) {
        if (r->progress == 2) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "eval %-6s step %lld: val loss %.4f ppl %.3f%s\n", when, (long long)r->step, vl, exp(vl),
                improved ? " (best)" : "");
    }
    json_t *o = json_pack("{s:s,s:I,s:o,s:o,s:b}", "event", "eval", "step", (json_int_t)r->step, "val_loss",
                          llmops_json_num_or_null(vl), "val_ppl", llmops_json_num_or_null(exp(vl)), "best", improved);
    if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    return metrics_line(r, o, err);
}

/* One optimizer step: this rank's share of a global batch in micro-batches, summed gradients. */
static llmops_status train_step(ft_run *r, llmops_error *err) {
    const ft_train_cfg *tc = &r->job->c.train;
    int B = (int)tc->batch_size, L = r->seq_len;
    int global = (int)(tc->batch_size * tc->grad_accum) * r->dist.world;
    llmops_trainer_zero_grad(r->t);
    llmops_data_batch info;
    llmops_status st = llmops_dataset_next_batch(r->ds, LLMOPS_SPLIT_TRAIN, global, r->dist.rank, r->dist.world,
                                                 r->share_tokens, r->share_targets, &info, err);
    if (st) return st;
    float scale = info.n_trained_global > 0 ? 1.0f / (float)info.n_trained_global : 0.0f;
    double sums[2] = {0, 0};
    for (int row = 0; row < info.n_rows; row += B) {
        int n = info.n_rows - row < B ? info.n_rows - row : B;
        double ls = 0;
        int64_t cnt = 0;
        st = llmops_trainer_forward_backward(r->t, r->share_tokens + (size_t)row * L, r->share_targets + (size_t)row * L,
                                             n, L, scale, &ls, &cnt, err);
        if (st) return st;
        sums[0] += ls;
        sums[1] += (double)cnt;
        r->tokens_run += (int64_t)n * L;
    }
    if (r->dist.world > 1) {
        for (size_t i = 0; i < llmops_trainer_n_tensors(r->t); i++) {
            llmops_train_tensor *x = llmops_trainer_tensor(r->t, i);
            if ((st = dist_sum_floats(&r->dist, x->g, (size_t)(x->rows * x->cols), err))) return st;
        }
        if ((st = dist_sum_doubles(&r->dist, sums, 2, err))) return st;
        r->tokens_run += (int64_t)(global - info.n_rows) * L; /* the other ranks' rows */
    }
    double lr = llmops_lr_at(&r->sched, r->step);
    double norm = llmops_adamw_clip_step(r->opt, (float)lr, tc->max_grad_norm);
    r->step++;
    r->epoch = info.epoch;
    r->last_loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    r->last_lr = lr;
    if (!isfinite(r->last_loss) && sums[1] > 0)
        return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "step %lld: the loss is %f (diverged; lower training.lr)",
                                (long long)r->step, r->last_loss);
    if (r->step % tc->log_every == 0 || r->step == r->total_steps) {
        double el = now_s() - r->t_start;
        json_t *o = json_pack("{s:s,s:I,s:I,s:o,s:f,s:o,s:f,s:f,s:f,s:I}", "event", "train", "step",
                              (json_int_t)r->step, "epoch", (json_int_t)r->epoch, "loss",
                              llmops_json_num_or_null(r->last_loss), "lr", lr, "grad_norm", llmops_json_num_or_null(norm), "tokens_per_s", el > 0 ? (double)r->tokens_run / el : 0.0,
                              "elapsed_s", el, "peak_rss_mib", peak_rss_mib(), "tokens", (json_int_t)r->tokens_run);
        if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        if ((st = metrics_line(r, o, err))) return st;
    }
    return LLMOPS_OK;
}

static llmops_status export_all(ft_run *r, llmops_error *err);

static llmops_status run(ft_job *j, const llmops_finetune_options *o, llmops_finetune_result *res, ft_run *r,
                         llmops_error *err) {
    const ft_cfg *c = &j->c;
    llmops_status st;
    r->job = j;
    r->val_first = r->val_last = r->best_val = NAN;
    snprintf(r->dir, sizeof r->dir, "%s", o->resume ? o->resume : c->output.dir);
    if ((st = dist_init(&r->dist, err))) return st;
    int is_lora = c->method == FT_LORA || c->method == FT_QLORA;

    /* the model and tokenizer */
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    if (c->method != FT_SCRATCH) {
        if ((st = llmops_model_load(c->model.path, &mp, &r->model, err))) return st;
    }
    if (c->model.tokenizer) {
        if ((st = llmops_tokenizer_load(c->model.tokenizer, &r->own_tok, err))) return st;
        r->tok = r->own_tok;
    } else {
        r->tok = llmops_model_tokenizer(r->model);
        if (!r->tok)
            return cfg_error(j, "model", err, "the model has no tokenizer; give model.tokenizer%s", NULL);
    }

    /* data */
    llmops_data_params dp;
    llmops_data_params_init(&dp);
    dp.format = (llmops_data_format)c->data.format;
    dp.schema = (llmops_data_schema)c->data.schema;
    dp.text_field = c->data.text_field;
    dp.instruction_field = c->data.instruction_field;
    dp.input_field = c->data.input_field;
    dp.output_field = c->data.output_field;
    dp.prompt_field = c->data.prompt_field;
    dp.completion_field = c->data.completion_field;
    dp.messages_field = c->data.messages_field;
    dp.doc_separator = c->data.doc_separator;
    dp.seq_len = (int)c->data.seq_len;
    dp.mask_prompt = c->data.mask_prompt;
    dp.pack = c->data.pack;
    dp.chat_template = c->model.chat_template;
    dp.val_ratio = c->data.val_ratio;
    dp.val_sources = c->data.validation.items;
    dp.n_val_sources = c->data.validation.count;
    dp.seed = (uint64_t)c->train.seed;
    dp.bad_rows = c->data.bad_rows ? LLMOPS_DATA_BAD_FAIL : LLMOPS_DATA_BAD_SKIP;
    dp.fetch.cache_dir = c->data.cache_dir;
    dp.fetch.s3_endpoint = c->data.s3.endpoint;
    dp.fetch.s3_region = c->data.s3.region;
    dp.fetch.access_key = c->data.s3.access_key;
    dp.fetch.secret_key = c->data.s3.secret_key;
    if ((st = llmops_dataset_load(c->data.train.items, c->data.train.count, r->tok, NULL, &dp, &r->ds, err)))
        return st;
    r->seq_len = (int)c->data.seq_len;
    int64_t train_rows = llmops_dataset_n_rows(r->ds, LLMOPS_SPLIT_TRAIN);
    if (train_rows <= 0) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: no training rows", j->config_path);

    /* trainer and optimizer */
    llmops_trainer_params tp;
    llmops_trainer_params_init(&tp);
    tp.method = c->method == FT_LORA ? LLMOPS_TRAIN_LORA
                : c->method == FT_QLORA ? LLMOPS_TRAIN_QLORA
                : c->method == FT_FULL  ? LLMOPS_TRAIN_FULL
                                        : LLMOPS_TRAIN_SCRATCH;
    tp.lora_rank = (int)c->lora.rank;
    tp.lora_alpha = (float)c->lora.alpha;
    tp.lora_dropout = (float)c->lora.dropout;
    if (j->targets) tp.lora_targets = j->targets;
    tp.base_type = dtype_of_base(c->lora.base_type);
    tp.recompute = c->train.recompute;
    int threads = (int)c->train.threads;
    if (threads == 0 && r->dist.world > 1) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(ncpu / r->dist.world);
        if (threads < 1) threads = 1;
    }
    tp.n_threads = threads;
    tp.seed = (uint64_t)c->train.seed;
    if (c->method == FT_SCRATCH) {
        if ((st = scratch_arch(j, (int64_t)llmops_tokenizer_n_vocab(r->tok), &r->arch, err))) return st;
        if ((st = llmops_trainer_create_scratch(&r->arch, &tp, &r->t, err))) return st;
    } else {
        r->arch = *llmops_model_arch(r->model);
        if (is_lora && r->arch.family == LLMOPS_ARCH_GPT2 && !j->targets) tp.lora_targets = LLMOPS_LORA_QKV;
        if ((st = llmops_trainer_create(r->model, &tp, &r->t, err))) return st;
    }
    llmops_adamw_params ap;
    llmops_adamw_params_init(&ap);
    ap.beta1 = (float)c->train.beta1;
    ap.beta2 = (float)c->train.beta2;
    ap.eps = (float)c->train.eps;
    ap.weight_decay = (float)c->train.weight_decay;
    if ((st = llmops_adamw_create(r->t, &ap, &r->opt, err))) return st;

    /* the schedule */
    int64_t global = c->train.batch_size * c->train.grad_accum * r->dist.world;
    r->total_steps = c->train.max_steps;
    if (r->total_steps == 0) {
        double steps_per_epoch = ceil((double)train_rows / (double)global);
        r->total_steps = (int64_t)ceil(steps_per_epoch * c->train.epochs);
        if (r->total_steps < 1) r->total_steps = 1;
    }
    r->sched.kind = (llmops_lr_kind)c->train.schedule;
    r->sched.lr = c->train.lr;
    r->sched.min_lr = c->train.min_lr;
    r->sched.warmup_steps = c->train.warmup_steps;
    r->sched.total_steps = r->total_steps;

    size_t share_rows = (size_t)((global + r->dist.world - 1) / r->dist.world);
    size_t cap_rows = share_rows > (size_t)c->train.batch_size ? share_rows : (size_t)c->train.batch_size;
    r->share_tokens = llmops_malloc(cap_rows * (size_t)r->seq_len * sizeof(int32_t));
    r->share_targets = llmops_malloc(cap_rows * (size_t)r->seq_len * sizeof(int32_t));
    r->tokens = llmops_malloc((size_t)c->train.batch_size * (size_t)r->seq_len * sizeof(int32_t));
    r->targets = llmops_malloc((size_t)c->train.batch_size * (size_t)r->seq_len * sizeof(int32_t));
    if (!r->share_tokens || !r->share_targets || !r->tokens || !r->targets)
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for batches");

    /* run directory, resume */
    if (r->dist.rank == 0 && (st = llmops_mkdirs(r->dir, err))) return st;
    dist_barrier(&r->dist);
    if (o->resume) {
        if ((st = ft_resume(r, err))) return st;
    } else if (r->dist.rank == 0) {
        if ((st = ft_start_run_dir(r, err))) return st;
    }
    if ((st = ft_open_metrics(r, err))) return st;
    r->progress = o->progress < 0 ? (isatty(2) ? 2 : 1) : o->progress;

    if (r->dist.rank == 0 && r->progress) {
        llmops_data_stats ts = llmops_dataset_stats(r->ds, LLMOPS_SPLIT_TRAIN);
        fprintf(stderr,
                "finetune: %s %s, %llu trainable parameters; %lld training rows (%lld trained tokens), %lld "
                "validation rows; %lld steps of %lld rows × %d tokens on %d process%s\n",
                k_methods[c->method], r->model ? llmops_model_desc(r->model) : r->arch.hf_model_type,
                (unsigned long long)llmops_trainer_n_trainable(r->t), (long long)train_rows, (long long)ts.n_trained,
                (long long)llmops_dataset_n_rows(r->ds, LLMOPS_SPLIT_VAL), (long long)r->total_steps,
                (long long)global, r->seq_len, r->dist.world, r->dist.world > 1 ? "es" : "");
    }

    r->t_start = now_s();
    r->step_start = r->step;
    if (r->step == 0 && (st = do_eval(r, "start", err))) return st;
    int64_t done_here = 0;
    int stopped = 0;
    while (r->step < r->total_steps) {
        if ((st = train_step(r, err))) return st;
        done_here++;
        progress(r, 0);
        int last = r->step == r->total_steps;
        if (c->eval.every > 0 && r->step % c->eval.every == 0 && !last) {
            if ((st = do_eval(r, "", err))) return st;
            if (c->eval.patience > 0 && r->bad_evals >= c->eval.patience) {
                r->early_stopped = 1;
                last = 1;
            }
        }
        if (c->ckpt.every > 0 && r->step % c->ckpt.every == 0 && !last && r->dist.rank == 0 &&
            (st = ft_save_checkpoint(r, err)))
            return st;
        if (r->early_stopped) break;
        if (o->stop_after > 0 && done_here >= o->stop_after && !last) {
            stopped = 1;
            break;
        }
    }
    if (!stopped) {
        if (r->progress == 2 && r->dist.rank == 0) progress(r, 1);
        if ((st = do_eval(r, "end", err))) return st;
        if (r->dist.rank == 0 && (st = ft_save_checkpoint(r, err))) return st;
        if (r->dist.rank == 0 && (st = export_all(r, err))) return st;
    }
    double el = now_s() - r->t_start;
    res->steps = r->step;
    res->train_loss = r->last_loss;
    res->val_loss_first = r->val_first;
    res->val_loss_last = r->val_last;
    res->best_val_loss = r->best_val;
    res->best_step = r->best_step;
    res->tokens_per_s = el > 0 ? (double)r->tokens_run / el : 0;
    res->peak_rss_mib = peak_rss_mib();
    res->early_stopped = r->early_stopped;
    snprintf(res->out_dir, sizeof res->out_dir, "%s", r->dir);
    if (r->dist.rank == 0 && !stopped) {
        json_t *s = json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:I,s:f,s:f,s:b,s:I}", "event", "done", "steps",
                              (json_int_t)r->step, "train_loss", llmops_json_num_or_null(r->last_loss),
                              "val_loss_first", llmops_json_num_or_null(r->val_first), "val_loss_last",
                              llmops_json_num_or_null(r->val_last), "best_val_loss",
                              llmops_json_num_or_null(r->best_val), "best_step",
                              (json_int_t)r->best_step, "tokens_per_s", res->tokens_per_s, "peak_rss_mib",
                              res->peak_rss_mib, "early_stopped", r->early_stopped, "trainer_peak_bytes",
                              (json_int_t)llmops_trainer_peak_bytes(r->t));
        if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        if ((st = metrics_line(r, s, err))) return st;
    }
    return LLMOPS_OK;
}

/* ---- exports ---------------------------------------------------------------------- */

static int wants(const ft_run *r, const char *what, int dflt) {
    const ft_output_cfg *oc = &r->job->c.output;
    if (!oc->exports.count) return dflt;
    for (size_t i = 0; i < oc->exports.count; i++)
        if (!strcmp(oc->exports.items[i], what)) return 1;
    return 0;
}

/*
 * A Hugging Face folder needs its tokenizer files beside the weights: copy them from the
 * tokenizer the run used (model.tokenizer, or the base model's folder, or the tokenizer.bin /
 * tok<N>.bin beside a llama2.c checkpoint) under the names the loaders look for.
 */
static llmops_status copy_tokenizer_files(ft_run *r, const char *out, llmops_error *err) {
    static const char *const known[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.model", "vocab.json", "merges.txt", "tokenizer.bin"};
    const char *src = r->job->c.model.tokenizer ? r->job->c.model.tokenizer : r->job->c.model.path;
    char from[2200], to[2200];
    if (!src) return LLMOPS_OK;
    if (llmops_path_is_dir(src)) {
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            snprintf(from, sizeof from, "%s/%s", src, known[i]);
            snprintf(to, sizeof to, "%s/%s", out, known[i]);
            llmops_status st;
            if (llmops_path_is_file(from) && (st = llmops_file_copy(from, to, err))) return st;
        }
        return LLMOPS_OK;
    }
    size_t n = strlen(src);
    const char *name = NULL;
    if (r->job->c.model.tokenizer) {
        /* an explicit tokenizer file: keep a known name, else name it by its kind */
        const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !name; i++)
            if (!strcmp(base, known[i])) name = known[i];
        if (!name && n > 4 && !strcmp(src + n - 4, ".bin")) name = "tokenizer.bin";
        if (!name && n > 6 && !strcmp(src + n - 6, ".model")) name = "tokenizer.model";
        if (!name && n > 5 && !strcmp(src + n - 5, ".json")) name = "tokenizer.json";
        if (!name) return LLMOPS_OK; /* a GGUF vocabulary: the folder stays without one */
        snprintf(to, sizeof to, "%s/%s", out, name);
        return llmops_file_copy(src, to, err);
    }
    /* a llama2.c checkpoint: its vocabulary lies beside it */
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", src);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    snprintf(from, sizeof from, "%s/tokenizer.bin", dir);
    if (!llmops_path_is_file(from)) snprintf(from, sizeof from, "%s/tok%lld.bin", dir, (long long)r->arch.vocab_size);
    if (!llmops_path_is_file(from)) return LLMOPS_OK;
    snprintf(to, sizeof to, "%s/tokenizer.bin", out);
    return llmops_file_copy(from, to, err);
}

static llmops_status export_all(ft_run *r, llmops_error *err) {
    const ft_cfg *c = &r->job->c;
    llmops_status st;
    if (c->output.use_best && r->best_step > 0 && (st = ft_load_best(r, err))) return st;
    int out_type = c->output.out_type == 1 ? LLMOPS_DTYPE_F16 : LLMOPS_DTYPE_F32;
    char path[2048];
    if (c->method == FT_LORA || c->method == FT_QLORA) {
        llmops_adapter_export_params ep;
        llmops_adapter_export_params_init(&ep);
        ep.arch = &r->arch;
        ep.rope_neox = llmops_trainer_rope_neox(r->t);
        ep.rank = (int)c->lora.rank;
        ep.alpha = (float)c->lora.alpha;
        ep.dropout = (float)c->lora.dropout;
        ep.targets = 0; /* from the tensors */
        ep.base_model = c->output.name ? c->output.name : c->model.path;
        ep.out_type = out_type;
        size_t n = llmops_trainer_n_tensors(r->t);
        const llmops_train_tensor *ts = llmops_trainer_tensor(r->t, 0);
        snprintf(path, sizeof path, "%s/adapter", r->dir);
        int need_peft = wants(r, "peft", 1) || wants(r, "merged_gguf", 0) || wants(r, "merged_hf", 0);
        if (need_peft && (st = llmops_adapter_export(&ep, ts, n, LLMOPS_ADAPTER_PEFT, path, err))) return st;
        if (wants(r, "gguf", 1)) {
            snprintf(path, sizeof path, "%s/adapter.gguf", r->dir);
            if ((st = llmops_adapter_export(&ep, ts, n, LLMOPS_ADAPTER_GGUF, path, err))) return st;
        }
        snprintf(path, sizeof path, "%s/adapter", r->dir);
        const char *ad[1] = {path};
        llmops_merge_params mp;
        llmops_merge_params_init(&mp);
        mp.out_type = c->output.out_type == 1 ? LLMOPS_DTYPE_F16 : -1;
        char out[2100];
        if (wants(r, "merged_gguf", 0)) {
            snprintf(out, sizeof out, "%s/merged.gguf", r->dir);
            if ((st = llmops_adapter_merge(c->model.path, ad, NULL, 1, out, &mp, err))) return st;
        }
        if (wants(r, "merged_hf", 0)) {
            snprintf(out, sizeof out, "%s/merged-hf", r->dir);
            if ((st = llmops_adapter_merge(c->model.path, ad, NULL, 1, out, &mp, err))) return st;
        }
        return LLMOPS_OK;
    }
    /* full / scratch: the whole model */
    size_t n = llmops_trainer_n_tensors(r->t);
    llmops_named_f32 *nt = llmops_calloc(n ? n : 1, sizeof *nt);
    if (!nt) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const llmops_train_tensor *x = llmops_trainer_tensor(r->t, i);
        nt[i] = (llmops_named_f32){x->name, x->rows, x->cols, x->w};
    }
    snprintf(path, sizeof path, "%s/model.gguf", r->dir);
    const char *name = c->output.name ? c->output.name : "llmops-finetuned";
    st = llmops_gguf_write_model(&r->arch, r->tok, name, nt, n, llmops_trainer_rope_neox(r->t), out_type, path, err);
    llmops_free(nt);
    if (st) return st;
    if (wants(r, "model_hf", 0)) {
        char out[2100];
        snprintf(out, sizeof out, "%s/model-hf", r->dir);
        llmops_convert_opts co;
        llmops_convert_opts_init(&co);
        if ((st = llmops_convert(path, out, &co, err))) return st;
        if ((st = copy_tokenizer_files(r, out, err))) return st;
    }
    return LLMOPS_OK;
}

static void run_free(ft_run *r) {
    if (r->metrics) fclose(r->metrics);
    llmops_adamw_free(r->opt);
    llmops_trainer_free(r->t);
    llmops_dataset_free(r->ds);
    llmops_tokenizer_free(r->own_tok);
    llmops_model_free(r->model);
    llmops_free(r->share_tokens);
    llmops_free(r->share_targets);
    llmops_free(r->tokens);
    llmops_free(r->targets);
}

llmops_status llmops_finetune_run(const char *config_path, const llmops_finetune_options *o,
                                  llmops_finetune_result *res, llmops_error *err) {
    llmops_finetune_options def;
    if (!o) {
        llmops_finetune_options_init(&def);
        o = &def;
    }
    memset(res, 0, sizeof *res);
    res->val_loss_first = res->val_loss_last = res->best_val_loss = NAN;
    ft_job j;
    const char *cfg_path = config_path;
    char resumed_cfg[2048];
    if (o->resume && !config_path) {
        snprintf(resumed_cfg, sizeof resumed_cfg, "%s/config.yaml", o->resume);
        cfg_path = resumed_cfg;
    }
    llmops_status st = ft_load_config(cfg_path, &j, err);
    if (st) return st;
    ft_run r;
    memset(&r, 0, sizeof r);
    st = run(&j, o, res, &r, err);
    if (st && r.dist.world > 1) {
        fprintf(stderr, "llmops: rank %d: error: %s\n", r.dist.rank, err->msg);
        dist_abort(&r.dist, 1);
    }
    run_free(&r);
    dist_finalize(&r.dist);
    ft_job_free(&j);
    return st;
}
