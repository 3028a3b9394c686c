/*
 * llmops — the AIMLFW-LLMOps command-line tool. One binary, one subcommand
 * per capability; every subcommand is a thin layer over a library call.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "llmops/log.h"

#define LLMOPS_VERSION "0.1.0"

static int cmd_version(int argc, char **argv);
static void usage_version(FILE *out) { fprintf(out, "usage: llmops version\n\nPrints the version.\n"); }

static const cli_command k_commands[] = {
    {"inspect", "show the metadata and tensor table of a model file or folder", cmd_inspect, usage_inspect},
    {"convert", "convert llama2.c / Hugging Face models to GGUF, and GGUF to Hugging Face", cmd_convert, usage_convert},
    {"quantize", "quantize a model's weights to Q8_0, Q4_0, Q4_K, Q6_K or the Q4_K_M mix", cmd_quantize, usage_quantize},
    {"generate", "generate text with a model (greedy or sampled), streaming", cmd_generate, usage_generate},
    {"embed", "sentence embeddings with an encoder (BERT) model", cmd_embed, usage_embed},
    {"perplexity", "perplexity of a model on a text file", cmd_perplexity, usage_perplexity},
    {"bench", "prompt and generation speed against the memory bandwidth measured in the same run", cmd_bench, usage_bench},
    {"tokenize", "split text into the token ids of a model's tokenizer", cmd_tokenize, usage_tokenize},
    {"detokenize", "turn token ids back into text", cmd_detokenize, usage_detokenize},
    {"tokenizer", "train a byte-level BPE tokenizer on a corpus", cmd_tokenizer, usage_tokenizer},
    {"finetune", "fine-tune a model (LoRA, QLoRA, full) or train one from scratch, from a YAML file", cmd_finetune, usage_finetune},
    {"merge", "merge LoRA adapters into a base model (GGUF or Hugging Face folder)", cmd_merge, usage_merge},
    {"adapter-convert", "convert a LoRA adapter between PEFT and llama.cpp GGUF", cmd_adapter_convert, usage_adapter_convert},
    {"vdb", "the vector database: collections, add, query, filters, backup", cmd_vdb, usage_vdb},
    {"version", "print the version", cmd_version, usage_version},
};
#define N_COMMANDS (sizeof k_commands / sizeof k_commands[0])

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("llmops %s\n", LLMOPS_VERSION);
    return 0;
}

static void usage(FILE *out) {
    fprintf(out,
            "llmops %s — AIMLFW-LLMOps: the LLM lifecycle for the O-RAN SC AI/ML Framework\n\n"
            "usage: llmops [--log-level LEVEL] <command> [options]\n\ncommands:\n",
            LLMOPS_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-15s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(out, "\n'llmops <command> --help' describes each command.\n"
                 "LEVEL is error, warn, info, debug or trace (default warn; also $LLMOPS_LOG).\n");
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llmops: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llmops %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'llmops %s --help'.\n", cmd);
    va_end(ap);
    return 2;
}

int main(int argc, char **argv) {
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) return cmd_version(0, NULL);
        if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            llmops_log_level lv;
            if (!llmops_log_parse_level(argv[i + 1], &lv)) {
                fprintf(stderr, "llmops: unknown log level '%s'\n", argv[i + 1]);
                return 2;
            }
            llmops_log_set_level(lv);
            i += 2;
            continue;
        }
        fprintf(stderr, "llmops: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[i], "help")) {
        if (i + 1 < argc)
            for (size_t k = 0; k < N_COMMANDS; k++)
                if (!strcmp(argv[i + 1], k_commands[k].name)) {
                    k_commands[k].usage(stdout);
                    return 0;
                }
        usage(stdout);
        return 0;
    }
    for (size_t k = 0; k < N_COMMANDS; k++) {
        if (strcmp(argv[i], k_commands[k].name)) continue;
        if (cli_wants_help(argc - i, argv + i)) {
            k_commands[k].usage(stdout);
            return 0;
        }
        optind = 1;
        return k_commands[k].run(argc - i, argv + i);
    }
    fprintf(stderr, "llmops: unknown command '%s'\n\n", argv[i]);
    usage(stderr);
    return 2;
}
