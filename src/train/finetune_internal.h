/* Internal state of a fine-tuning job (finetune.c) and its checkpoints (checkpoint.c). */
#ifndef LLMOPS_FINETUNE_INTERNAL_H
#define LLMOPS_FINETUNE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "llmops/config.h"
#include "llmops/model.h"
#include "llmops/train.h"
#include "llmops/train_data.h"
#include "train/dist.h"

enum { FT_LORA = 0, FT_QLORA, FT_FULL, FT_SCRATCH };

typedef struct {
    const char *path, *tokenizer, *chat_template;
} ft_model_cfg;

typedef struct {
    int64_t rank;
    double alpha, dropout;
    LLMOPS_CONFIG_LIST(const char *) targets;
    int base_type;
} ft_lora_cfg;

typedef struct {
    int family;
    const char *config;
    int64_t hidden_size, layers, heads, kv_heads, ffn_size, context;
    double rope_theta, norm_eps;
    bool tie_embeddings;
} ft_arch_cfg;

typedef struct {
    const char *endpoint, *region, *access_key, *secret_key;
} ft_s3_cfg;

typedef struct {
    LLMOPS_CONFIG_LIST(const char *) train;
    LLMOPS_CONFIG_LIST(const char *) validation;
    double val_ratio;
    int format, schema;
    const char *text_field, *instruction_field, *input_field, *output_field, *prompt_field, *completion_field,
        *messages_field;
    int64_t seq_len;
    bool mask_prompt, pack;
    const char *doc_separator;
    int bad_rows;
    const char *cache_dir;
    ft_s3_cfg s3;
} ft_data_cfg;

typedef struct {
    double epochs;
    int64_t max_steps, batch_size, grad_accum;
    double lr, min_lr;
    int schedule;
    int64_t warmup_steps;
    double weight_decay, beta1, beta2, eps, max_grad_norm;
    bool recompute;
    int64_t threads, seed, log_every;
} ft_train_cfg;

typedef struct {
    int64_t every, max_rows, patience;
} ft_eval_cfg;

typedef struct {
    int64_t every, keep;
} ft_ckpt_cfg;

typedef struct {
    const char *dir;
    LLMOPS_CONFIG_LIST(const char *) exports;
    int out_type;
    bool use_best;
    const char *name;
} ft_output_cfg;

typedef struct {
    ft_model_cfg model;
    int method;
    ft_lora_cfg lora;
    ft_arch_cfg arch;
    ft_data_cfg data;
    ft_train_cfg train;
    ft_eval_cfg eval;
    ft_ckpt_cfg ckpt;
    ft_output_cfg output;
} ft_cfg;

#define FT_MAX_STRINGS 4096

typedef struct {
    char config_path[1024];
    char base_dir[1024];
    llmops_config *cfg;
    ft_cfg c;
    unsigned targets;           /* parsed lora.targets (0: the trainer's default) */
    char *strings[FT_MAX_STRINGS]; /* resolved paths */
    size_t n_strings;
} ft_job;

typedef struct {
    ft_job *job;
    dist_ctx dist;
    char dir[1024];
    llmops_model *model;
    llmops_tokenizer *own_tok;
    const llmops_tokenizer *tok;
    llmops_arch arch;
    llmops_dataset *ds;
    llmops_trainer *t;
    llmops_adamw *opt;
    llmops_lr_schedule sched;
    int seq_len;
    int64_t total_steps, step, step_start, epoch;
    int32_t *share_tokens, *share_targets; /* this rank's share of a global batch */
    int32_t *tokens, *targets;             /* one micro-batch (evaluation)         */
    int64_t tokens_run;
    double t_start, last_loss, last_lr;
    double val_first, val_last, best_val;
    int64_t best_step, bad_evals;
    int early_stopped;
    int progress;                          /* 0 quiet, 1 lines, 2 live bar */
    FILE *metrics;
} ft_run;

llmops_status ft_load_config(const char *path, ft_job *j, llmops_error *err);
void ft_job_free(ft_job *j);

/* checkpoint.c */
/* A fresh run: refuses a directory that already holds checkpoints; copies the config. */
llmops_status ft_start_run_dir(ft_run *r, llmops_error *err);
/* Opens metrics.jsonl for appending (rank 0), dropping lines past the current step. */
llmops_status ft_open_metrics(ft_run *r, llmops_error *err);
/* checkpoints/step-N/ written to a temporary folder and renamed; then checkpoints/latest. */
llmops_status ft_save_checkpoint(ft_run *r, llmops_error *err);
/* Loads checkpoints/latest: weights, optimizer moments, step, RNG, data position, best. */
llmops_status ft_resume(ft_run *r, llmops_error *err);
llmops_status ft_save_best(ft_run *r, llmops_error *err);
llmops_status ft_load_best(ft_run *r, llmops_error *err);

#endif
