/* Internal interface of the `llmops` command-line tool. */
#ifndef LLMOPS_CLI_H
#define LLMOPS_CLI_H

#include <stdio.h>

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *out);
} cli_command;

int cmd_inspect(int argc, char **argv);
void usage_inspect(FILE *out);
int cmd_convert(int argc, char **argv);
void usage_convert(FILE *out);
int cmd_bench(int argc, char **argv);
void usage_bench(FILE *out);
int cmd_quantize(int argc, char **argv);
void usage_quantize(FILE *out);
int cmd_tokenize(int argc, char **argv);
void usage_tokenize(FILE *out);
int cmd_detokenize(int argc, char **argv);
void usage_detokenize(FILE *out);
int cmd_embed(int argc, char **argv);
void usage_embed(FILE *out);
int cmd_perplexity(int argc, char **argv);
void usage_perplexity(FILE *out);
int cmd_generate(int argc, char **argv);
void usage_generate(FILE *out);
int cmd_tokenizer(int argc, char **argv);
void usage_tokenizer(FILE *out);
int cmd_merge(int argc, char **argv);
void usage_merge(FILE *out);
int cmd_adapter_convert(int argc, char **argv);
void usage_adapter_convert(FILE *out);
int cmd_vdb(int argc, char **argv);
void usage_vdb(FILE *out);
int cmd_finetune(int argc, char **argv);
void usage_finetune(FILE *out);

/* 1 when argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);
/* Prints "llmops: error: MSG" to stderr and returns exit code 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a usage error plus a pointer to --help; returns exit code 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
