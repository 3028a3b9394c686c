/*
 * llmops/finetune.h — a fine-tuning job from a YAML file: load the base model
 * (or define a new one), read and split the data, train with LoRA, QLoRA,
 * full fine-tuning or from scratch, evaluate, checkpoint, resume, and export
 * the adapter or the model — in one process or data-parallel under mpirun.
 *
 *     llmops_finetune_options o;
 *     llmops_finetune_options_init(&o);
 *     o.resume = NULL;                       // or a run directory
 *     llmops_finetune_result r;
 *     if (llmops_finetune_run("examples/lora-stories.yaml", &o, &r, &err))
 *         fprintf(stderr, "%s\n", err.msg); // "lora.yaml:7:9: training.lr: expected a number, got a string"
 *     printf("val loss %.3f → %.3f, adapter in %s\n", r.val_loss_first, r.val_loss_last, r.out_dir);
 *
 * The run directory (output.dir) holds config.yaml (a copy), metrics.jsonl
 * (one JSON object per logged step and per evaluation), checkpoints/step-N/
 * (trainable.safetensors, optimizer.safetensors, state.json; the newest named
 * by checkpoints/latest), best/ (the weights with the lowest validation loss)
 * and the exports: adapter/ (Hugging Face PEFT), adapter.gguf (llama.cpp LoRA),
 * merged.gguf / merged-hf/, or for full and from-scratch runs model.gguf /
 * model-hf/. Relative paths in the YAML are relative to the YAML file's folder.
 * llmops_finetune_write_docs lists every key with its default.
 */
#ifndef LLMOPS_FINETUNE_H
#define LLMOPS_FINETUNE_H

#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_finetune_options {
    const char *resume;    /* run directory to continue from its latest checkpoint, or NULL       */
    int progress;          /* -1 (default): a live bar when stderr is a terminal, else a line per
                              log interval; 0: quiet; 1: always lines                               */
    int64_t stop_after;    /* > 0: stop (as if interrupted) after this many optimizer steps of
                              this invocation, after its checkpoint logic; for tests and demos    */
} llmops_finetune_options;

void llmops_finetune_options_init(llmops_finetune_options *o);

typedef struct llmops_finetune_result {
    int64_t steps;             /* optimizer steps done in total (resumed runs included)  */
    double train_loss;         /* mean loss of the last step                              */
    double val_loss_first;     /* validation loss before the first step (NAN: no split)   */
    double val_loss_last;      /* validation loss after the last step                     */
    double best_val_loss;
    int64_t best_step;
    double tokens_per_s;       /* training tokens per second over this invocation        */
    double peak_rss_mib;       /* peak resident memory of this process                    */
    int early_stopped;
    char out_dir[1024];
} llmops_finetune_result;

/* Runs the job described by the YAML file at config_path (see the README for the keys). */
llmops_status llmops_finetune_run(const char *config_path, const llmops_finetune_options *o,
                                  llmops_finetune_result *r, llmops_error *err);

/* Checks a config without running it: keys, types, ranges, files that must exist. */
llmops_status llmops_finetune_check(const char *config_path, llmops_error *err);

/* Appends the Markdown table of every config key (type, default, doc) to out. */
llmops_status llmops_finetune_write_docs(llmops_buf *out, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
