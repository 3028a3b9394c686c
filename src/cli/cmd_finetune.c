/* llmops finetune: a LoRA / QLoRA / full / from-scratch training run from a YAML file. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        printf("{\"steps\": %lld, \"train_loss\": %.6f, \"val_loss_first\": %s%.6f%s, \"val_loss_last\": %s%.6f%s, "
               "\"best_step\": %lld, \"tokens_per_s\": %.1f, \"peak_rss_mib\": %.1f, \"early_stopped\": %s, "
               "\"out_dir\": \"%s\"}\n",
               (long long)r.steps, r.train_loss, isnan(r.val_loss_first) ? "\"" : "",
               isnan(r.val_loss_first) ? 0.0 : r.val_loss_first, isnan(r.val_loss_first) ? "\"" : "",
               isnan(r.val_loss_last) ? "\"" : "", isnan(r.val_loss_last) ? 0.0 : r.val_loss_last,
               isnan(r.val_loss_last) ? "\"" : "", (long long)r.best_step, r.tokens_per_s, r.peak_rss_mib,
               r.early_stopped ? "true" : "false", r.out_dir);
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
