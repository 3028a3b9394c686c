/* llmops finetune: a LoRA / QLoRA / full / from-scratch training run from a YAML file. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli.h"
#include "llmops/finetune.h"

void usage_finetune(FILE *out) {
    fprintf(out,
            "usage: llmops finetune CONFIG.yaml [--resume RUN_DIR] [--quiet] [--stop-after N] [--json]\n"
            "       llmops finetune --check CONFIG.yaml\n"
            "       llmops finetune --docs\n"
            "       mpirun -np N llmops finetune CONFIG.yaml      (data-parallel; --hostfile for several nodes)\n\n"
            "Fine-tunes the model named in CONFIG.yaml (LoRA, QLoRA, full) or trains a new one (scratch),\n"
            "with validation, checkpoints and exports in output.dir: adapter/ (Hugging Face PEFT),\n"
            "adapter.gguf (llama.cpp LoRA), merged.gguf, or model.gguf for full and scratch runs;\n"
            "metrics.jsonl holds step, loss, learning rate, tokens/s and memory.\n\n"
            "options:\n"
            "  --resume RUN_DIR   continue the run in RUN_DIR from its latest checkpoint; the result equals\n"
            "                     an uninterrupted run\n"
            "  --quiet            no progress output\n"
            "  --stop-after N     stop after N steps of this invocation (as if interrupted)\n"
            "  --json             print the result as JSON on stdout\n"
            "  --check            validate the config (keys, types, ranges, paths) and exit\n"
            "  --docs             print every config key with its type, default and meaning (Markdown)\n\n"
            "examples:\n"
            "  llmops finetune examples/lora-stories.yaml\n"
            "  llmops generate -m models/stories260K/stories260K.bin --lora runs/lora-stories/adapter -p 'Once'\n");
}

int cmd_finetune(int argc, char **argv) {
    const char *config = NULL, *resume = NULL;
    int quiet = 0, json = 0, check = 0, docs = 0;
    long long stop_after = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume") && i + 1 < argc) resume = argv[++i];
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--docs")) docs = 1;
        else if (!strcmp(a, "--stop-after") && i + 1 < argc) {
            char *end;
            errno = 0;
            stop_after = strtoll(argv[++i], &end, 10);
            if (errno || *end || stop_after < 1) return cli_usage_error("finetune", "--stop-after needs a positive integer");
        } else if (a[0] == '-' && a[1]) return cli_usage_error("finetune", "unknown option '%s'", a);
        else if (!config) config = a;
        else return cli_usage_error("finetune", "one config file, please ('%s' and '%s')", config, a);
    }
    llmops_error err = {0};
    if (docs) {
        llmops_buf b;
        llmops_buf_init(&b, 1 << 20);
        if (llmops_finetune_write_docs(&b, &err)) return cli_fail("%s", err.msg);
        fwrite(b.data, 1, b.len, stdout);
        llmops_buf_free(&b);
        return 0;
    }
    if (!config) return cli_usage_error("finetune", "missing CONFIG.yaml");
    if (check) {
        if (llmops_finetune_check(config, &err)) return cli_fail("%s", err.msg);
        printf("%s: ok\n", config);
        return 0;
    }
    llmops_finetune_options o;
    llmops_finetune_options_init(&o);
    o.resume = resume;
    o.progress = quiet ? 0 : -1;
    o.stop_after = stop_after;
    llmops_finetune_result r;
    if (llmops_finetune_run(config, &o, &r, &err)) return cli_fail("%s", err.msg);
    if (json) {
        /* a loss that was never measured (no validation split) is null, not a number */
        json_t *j = json_pack("{s:I,s:o,s:o,s:o,s:o,s:I,s:f,s:f,s:b,s:s}", "steps", (json_int_t)r.steps, "train_loss",
                              llmops_json_num_or_null(r.train_loss), "val_loss_first", llmops_json_num_or_null(r.val_loss_first),
                              "val_loss_last", llmops_json_num_or_null(r.val_loss_last), "best_val_loss",
                              llmops_json_num_or_null(r.best_val_loss), "best_step", (json_int_t)r.best_step, "tokens_per_s",
                              r.tokens_per_s, "peak_rss_mib", r.peak_rss_mib, "early_stopped", r.early_stopped,
                              "out_dir", r.out_dir);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!s) return cli_fail("out of memory");
        printf("%s\n", s);
        free(s);
    } else if (!quiet) {
        if (!isnan(r.val_loss_first))
            fprintf(stderr, "finetune: validation loss %.4f → %.4f (best %.4f at step %lld); %.0f tokens/s; peak %.0f MiB; %s\n",
                    r.val_loss_first, r.val_loss_last, r.best_val_loss, (long long)r.best_step, r.tokens_per_s,
                    r.peak_rss_mib, r.out_dir);
        else
            fprintf(stderr, "finetune: %lld steps, loss %.4f; %.0f tokens/s; peak %.0f MiB; %s\n", (long long)r.steps,
                    r.train_loss, r.tokens_per_s, r.peak_rss_mib, r.out_dir);
    }
    return 0;
}
