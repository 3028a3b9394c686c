/*
 * llmops merge: base model + LoRA adapters → one model (GGUF or Hugging Face folder).
 * llmops adapter-convert: a LoRA adapter between PEFT and llama.cpp GGUF LoRA.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/adapter.h"
#include "llmops/tensor.h"

void usage_merge(FILE *out) {
    fprintf(out,
            "usage: llmops merge -m BASE --lora ADAPTER [--lora-scale S] [--lora ADAPTER ...] -o OUT [--type f32|f16]\n\n"
            "Writes BASE with the LoRA adapters merged into its weights: W + S·(alpha/r)·B·A per adapter.\n"
            "BASE is a GGUF file, a Hugging Face folder or a llama2.c checkpoint; an ADAPTER is a PEFT folder\n"
            "or a llama.cpp GGUF LoRA file. OUT ending in .gguf is a GGUF file with the base's metadata and\n"
            "tokenizer; otherwise a Hugging Face folder (safetensors + config.json).\n\n"
            "options:\n"
            "  --lora-scale S   scale of the preceding --lora (default 1)\n"
            "  --type T         f32 or f16 for the weight matrices (default: the base's float type)\n");
}

void usage_adapter_convert(FILE *out) {
    fprintf(out,
            "usage: llmops adapter-convert -m BASE ADAPTER -o OUT [--type f32|f16]\n\n"
            "Converts a LoRA adapter for BASE between the Hugging Face PEFT layout (a folder) and a\n"
            "llama.cpp GGUF LoRA file: OUT ending in .gguf is GGUF, anything else a PEFT folder.\n"
            "q/k factors are permuted between the two row orders as llama.cpp's converter does.\n");
}

static int parse_type(const char *cmd, const char *s, int *out) {
    if (!strcmp(s, "f32")) *out = LLMOPS_DTYPE_F32;
    else if (!strcmp(s, "f16")) *out = LLMOPS_DTYPE_F16;
    else return cli_usage_error(cmd, "--type must be f32 or f16, not '%s'", s);
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int cmd_merge(int argc, char **argv) {
    enum { O_LORA = 1000, O_SCALE, O_TYPE, MAX_LORA = 16 };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"output", required_argument, 0, 'o'},
                                         {"lora", required_argument, 0, O_LORA},
                                         {"lora-scale", required_argument, 0, O_SCALE},
                                         {"type", required_argument, 0, O_TYPE},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL, *loras[MAX_LORA];
    float scales[MAX_LORA];
    size_t n = 0;
    llmops_merge_params mp;
    llmops_merge_params_init(&mp);
    int c;
    while ((c = getopt_long(argc, argv, "m:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case O_LORA:
            if (n == MAX_LORA) return cli_usage_error("merge", "at most %d --lora adapters", MAX_LORA);
            loras[n] = optarg;
            scales[n++] = 1.0f;
            break;
        case O_SCALE: {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end) return cli_usage_error("merge", "'%s' is not a number", optarg);
            if (!n) return cli_usage_error("merge", "--lora-scale applies to a preceding --lora");
            scales[n - 1] = (float)v;
            break;
        }
        case O_TYPE:
            if (parse_type("merge", optarg, &mp.out_type)) return 2;
            break;
        default: return cli_usage_error("merge", "unknown option");
        }
    }
    if (optind != argc) return cli_usage_error("merge", "unexpected argument '%s'", argv[optind]);
    if (!model || !out || !n) return cli_usage_error("merge", "-m BASE, at least one --lora and -o OUT are required");
    llmops_error err = {0};
    if (llmops_adapter_merge(model, loras, scales, n, out, &mp, &err)) return cli_fail("%s", err.msg);
    fprintf(stderr, "merged %zu adapter%s into %s\n", n, n == 1 ? "" : "s", out);
    return 0;
}

int cmd_adapter_convert(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"output", required_argument, 0, 'o'},
                                         {"type", required_argument, 0, 't'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL;
    int type = LLMOPS_DTYPE_F32, c;
    while ((c = getopt_long(argc, argv, "m:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 't':
            if (parse_type("adapter-convert", optarg, &type)) return 2;
            break;
        default: return cli_usage_error("adapter-convert", "unknown option");
        }
    }
    if (optind + 1 != argc || !model || !out)
        return cli_usage_error("adapter-convert", "-m BASE, one ADAPTER and -o OUT are required");
    llmops_error err = {0};
    llmops_model_params p;
    llmops_model_params_init(&p);
    p.load_tokenizer = 0;
    llmops_model *m = NULL;
    llmops_adapter *a = NULL;
    int r = 0;
    if (llmops_model_load(model, &p, &m, &err) || llmops_adapter_load(m, argv[optind], &a, &err)) {
        r = cli_fail("%s", err.msg);
        goto done;
    }
    if (llmops_adapter_save(a, ends_with(out, ".gguf") ? LLMOPS_ADAPTER_GGUF : LLMOPS_ADAPTER_PEFT, out, type, &err))
        r = cli_fail("%s", err.msg);
done:
    llmops_adapter_free(a);
    llmops_model_free(m);
    return r;
}
