/* llmops embed / llmops perplexity. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/adapter.h"
#include "llmops/fileio.h"
#include "llmops/generate.h"

void usage_embed(FILE *out) {
    fprintf(out,
            "usage: llmops embed -m MODEL [--pooling mean|cls] [--no-normalize] [--threads N] (-p TEXT | -f FILE)\n\n"
            "Prints the sentence embedding of TEXT, or of each line of FILE, one vector per line\n"
            "(space-separated floats). MODEL is a BERT / sentence-transformers model.\n");
}

void usage_perplexity(FILE *out) {
    fprintf(out,
            "usage: llmops perplexity -m MODEL -f TEXTFILE [--ctx N] [--threads N] [--lora ADAPTER [--lora-scale S]]...\n\n"
            "Prints the perplexity of the model on the file: chunks of N tokens (default 512),\n"
            "second half of each chunk scored, as llama.cpp's perplexity tool does. --lora applies\n"
            "LoRA adapters (PEFT folders or GGUF LoRA files; --lora-scale scales the preceding one).\n");
}

static int open_model(const char *path, uint32_t n_ctx, int threads, llmops_model **m, llmops_context **ctx) {
    llmops_error err = {0};
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_ctx = n_ctx;
    cp.n_threads = threads;
    if (llmops_model_load(path, NULL, m, &err) || llmops_context_create(*m, &cp, ctx, &err)) return cli_fail("%s", err.msg);
    return 0;
}

int cmd_embed(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},   {"prompt", required_argument, 0, 'p'},
                                         {"file", required_argument, 0, 'f'},    {"pooling", required_argument, 0, 'P'},
                                         {"no-normalize", no_argument, 0, 'N'},  {"threads", required_argument, 0, 't'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *file = NULL;
    llmops_pooling pooling = LLMOPS_POOLING_MEAN;
    int normalize = 1, threads = 0, c;
    while ((c = getopt_long(argc, argv, "m:p:f:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': file = optarg; break;
        case 'N': normalize = 0; break;
        case 't': threads = atoi(optarg); break;
        case 'P':
            if (!strcmp(optarg, "mean")) pooling = LLMOPS_POOLING_MEAN;
            else if (!strcmp(optarg, "cls")) pooling = LLMOPS_POOLING_CLS;
            else return cli_usage_error("embed", "--pooling is mean or cls, not '%s'", optarg);
            break;
        default: return cli_usage_error("embed", "unknown option");
        }
    }
    if (!model || !prompt == !file) return cli_usage_error("embed", "need -m MODEL and one of -p TEXT or -f FILE");
    llmops_model *m = NULL;
    llmops_context *ctx = NULL;
    int r = open_model(model, 0, threads, &m, &ctx);
    char *text = NULL;
    llmops_error err = {0};
    if (!r && file && llmops_file_read_all(file, 1u << 28, &text, NULL, &err)) r = cli_fail("%s", err.msg);
    float *v = r ? NULL : malloc((size_t)llmops_model_arch(m)->hidden_size * sizeof(float));
    for (char *line = file ? text : (char *)prompt; !r && line;) {
        char *nl = file ? strchr(line, '\n') : NULL;
        if (nl) *nl = '\0';
        if (*line || !file) {
            if (llmops_embed(m, ctx, line, pooling, normalize, v, &err)) {
                r = cli_fail("%s", err.msg);
                break;
            }
            for (int64_t i = 0; i < llmops_model_arch(m)->hidden_size; i++) printf(i ? " %.7g" : "%.7g", v[i]);
            putchar('\n');
        }
        line = nl ? nl + 1 : NULL;
    }
    free(v);
    llmops_free(text);
    llmops_context_free(ctx);
    llmops_model_free(m);
    return r;
}

int cmd_perplexity(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
                                         {"ctx", required_argument, 0, 'c'},   {"threads", required_argument, 0, 't'},
                                         {"lora", required_argument, 0, 'L'},  {"lora-scale", required_argument, 0, 'S'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *file = NULL;
    int n_ctx = 512, threads = 0, c;
    enum { MAX_LORA = 16 };
    const char *loras[MAX_LORA];
    float scales[MAX_LORA];
    llmops_adapter *adapters[MAX_LORA] = {0};
    size_t n_lora = 0;
    while ((c = getopt_long(argc, argv, "m:f:c:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case 'c': n_ctx = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'L':
            if (n_lora == MAX_LORA) return cli_usage_error("perplexity", "at most %d --lora adapters", MAX_LORA);
            loras[n_lora] = optarg;
            scales[n_lora++] = 1.0f;
            break;
        case 'S': {
            char *end;
            double v = strtod(optarg, &end);
            if (!n_lora) return cli_usage_error("perplexity", "--lora-scale applies to a preceding --lora");
            if (*end || end == optarg) return cli_usage_error("perplexity", "--lora-scale '%s' is not a number", optarg);
            scales[n_lora - 1] = (float)v;
            break;
        }
        default: return cli_usage_error("perplexity", "unknown option");
        }
    }
    if (!model || !file) return cli_usage_error("perplexity", "need -m MODEL and -f TEXTFILE");
    if (n_ctx < 4) return cli_usage_error("perplexity", "--ctx must be at least 4");
    llmops_model *m = NULL;
    llmops_context *ctx = NULL;
    int r = open_model(model, (uint32_t)n_ctx, threads, &m, &ctx);
    char *text = NULL;
    size_t len = 0;
    llmops_error err = {0};
    llmops_ppl_result pr;
    for (size_t i = 0; !r && i < n_lora; i++)
        if (llmops_adapter_load(m, loras[i], &adapters[i], &err)) r = cli_fail("%s", err.msg);
    if (!r && n_lora && llmops_context_set_adapters(ctx, adapters, scales, n_lora, &err)) r = cli_fail("%s", err.msg);
    if (!r && llmops_file_read_all(file, 1u << 30, &text, &len, &err)) r = cli_fail("%s", err.msg);
    if (!r && llmops_perplexity(m, ctx, text, len, (uint32_t)n_ctx, &pr, &err)) r = cli_fail("%s", err.msg);
    if (!r) {
        printf("perplexity %.4f\n", pr.ppl);
        fprintf(stderr, "%zu chunks of %d tokens, %zu tokens scored, mean NLL %.5f\n", pr.n_chunks, n_ctx, pr.n_scored,
                pr.nll);
    }
    llmops_free(text);
    llmops_context_free(ctx);
    for (size_t i = 0; i < n_lora; i++) llmops_adapter_free(adapters[i]);
    llmops_model_free(m);
    return r;
}
