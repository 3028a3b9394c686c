/* llmops tokenizer train: a byte-level BPE tokenizer learned from a corpus. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmops/tokenizer_train.h"

void usage_tokenizer(FILE *out) {
    fprintf(out,
            "usage: llmops tokenizer train --corpus FILE... --vocab-size N --out DIR\n"
            "                              [--special TOKEN...] [--min-frequency F] [--threads N] [--name NAME]\n\n"
            "Trains a byte-level BPE tokenizer (GPT-2 pre-tokenizer) on the corpus files and writes into DIR:\n"
            "  tokenizer.json          Hugging Face tokenizers (BPE, ByteLevel), specials as added tokens\n"
            "  vocab.json, merges.txt  GPT-2 vocabulary files\n"
            "  tokenizer_config.json   GPT2TokenizerFast; the first special token is bos/eos/unk\n"
            "  tokenizer.gguf          vocabulary-only GGUF (tokenizer.ggml.* keys)\n\n"
            "The training follows the Stanford CS336 reference: the text is split on the special tokens,\n"
            "pre-tokenized with the GPT-2 regex, and the most frequent adjacent pair is merged (ties to the\n"
            "lexicographically greater pair of byte strings) until the vocabulary has N ids: the special\n"
            "tokens, the 256 bytes, then one id per merge.\n\n"
            "options:\n"
            "  --corpus FILE...      text files to learn from (the option may repeat)\n"
            "  --vocab-size N        ids in all, at least 256 + the number of special tokens\n"
            "  --special TOKEN...    special tokens such as '<|endoftext|>': ids 0.., never merged\n"
            "  --min-frequency F     stop when the best pair occurs fewer than F times (default 1)\n"
            "  --threads N           pre-tokenization threads (default: physical cores)\n"
            "  --name NAME           general.name of the GGUF (default bpe-N)\n"
            "  --out DIR             output folder (created when missing)\n\n"
            "example:\n"
            "  llmops tokenizer train --corpus data/*.txt --vocab-size 32000 --special '<|endoftext|>' --out tok/\n"
            "  llmops tokenize -m tok/tokenizer.gguf -p 'Hello world'\n");
}

typedef struct progress_state {
    int tty;
    double last_line;
    llmops_bpe_train_phase phase;
    uint64_t done;
} progress_state;

static void on_progress(void *ctx, llmops_bpe_train_phase phase, uint64_t done, uint64_t total, double elapsed) {
    progress_state *ps = ctx;
    int last = done >= total;
    if (phase == ps->phase && done == ps->done) return; /* nothing new */
    ps->phase = phase;
    ps->done = done;
    /* on a terminal, one line redrawn; in a log, a line every 5 s and at the end */
    if (!ps->tty && !last && elapsed - ps->last_line < 5.0) return;
    ps->last_line = elapsed;
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (phase == LLMOPS_BPE_TRAIN_PRETOKENIZE)
        fprintf(stderr, "%spre-tokenizing: %.1f / %.1f MiB (%.0f%%)  %.1f s%s", ps->tty ? "\r" : "",
                (double)done / 1048576.0, (double)total / 1048576.0, pct, elapsed, ps->tty && !last ? "" : "\n");
    else
        fprintf(stderr, "%smerges: %llu / %llu (%.0f%%)  %.1f s%s", ps->tty ? "\r" : "", (unsigned long long)done,
                (unsigned long long)total, pct, elapsed, ps->tty && !last ? "" : "\n");
    fflush(stderr);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
    char *end;
    errno = 0;
    if (!s || *s == '-' || *s == '\0') return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return 0;
    *out = v;
    return 1;
}

static int train(int argc, char **argv) {
    const char **corpus = calloc((size_t)argc, sizeof *corpus);
    const char **specials = calloc((size_t)argc, sizeof *specials);
    size_t n_corpus = 0, n_special = 0;
    const char *out = NULL, *name = NULL;
    uint64_t vocab = 0, minf = 0, threads = 0;
    int have_vocab = 0, r = 0;
    if (!corpus || !specials) {
        free(corpus);
        free(specials);
        return cli_fail("out of memory");
    }
    /* --corpus and --special take every following argument up to the next option */
    for (int i = 1; i < argc && !r; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--corpus") || !strcmp(a, "--special")) {
            int is_corpus = a[2] == 'c';
            int k = i + 1;
            for (; k < argc && strncmp(argv[k], "--", 2); k++) {
                if (is_corpus) corpus[n_corpus++] = argv[k];
                else specials[n_special++] = argv[k];
            }
            if (k == i + 1) r = cli_usage_error("tokenizer train", "%s needs at least one value", a);
            i = k - 1;
        } else if (!strcmp(a, "--vocab-size")) {
            if (!parse_u64(val, LLMOPS_BPE_TRAIN_MAX_VOCAB, &vocab))
                r = cli_usage_error("tokenizer train", "--vocab-size needs a count up to %u", LLMOPS_BPE_TRAIN_MAX_VOCAB);
            have_vocab = 1;
            i++;
        } else if (!strcmp(a, "--min-frequency")) {
            if (!parse_u64(val, UINT64_MAX, &minf)) r = cli_usage_error("tokenizer train", "--min-frequency needs a count");
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_u64(val, 512, &threads)) r = cli_usage_error("tokenizer train", "--threads needs a count (0..512)");
            i++;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!val) r = cli_usage_error("tokenizer train", "--out needs a folder");
            out = val;
            i++;
        } else if (!strcmp(a, "--name")) {
            if (!val) r = cli_usage_error("tokenizer train", "--name needs a value");
            name = val;
            i++;
        } else {
            r = cli_usage_error("tokenizer train", "unknown argument '%s'", a);
        }
    }
    if (!r && !n_corpus) r = cli_usage_error("tokenizer train", "--corpus FILE... is required");
    if (!r && !have_vocab) r = cli_usage_error("tokenizer train", "--vocab-size N is required");
    if (!r && !out) r = cli_usage_error("tokenizer train", "--out DIR is required");
    if (r) {
        free(corpus);
        free(specials);
        return r;
    }
    progress_state ps = {isatty(2), -1e9, 0, 0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = (size_t)vocab;
    o.special_tokens = specials;
    o.n_special = n_special;
    o.min_frequency = minf;
    o.n_threads = (int)threads;
    o.progress = on_progress;
    o.progress_ctx = &ps;
    llmops_error err = {0};
    llmops_bpe_train_result *res = NULL;
    if (llmops_bpe_train_files(corpus, n_corpus, &o, &res, &err)) {
        r = cli_fail("%s", err.msg);
    } else if (llmops_bpe_train_write(res, out, name, &err)) {
        r = cli_fail("%s", err.msg);
    } else {
        fprintf(stderr,
                "trained %zu ids (%zu special, 256 bytes, %zu merges) on %.2f MiB: %llu pre-tokens, %llu distinct, "
                "in %.2f s\nwrote %s/{tokenizer.json,vocab.json,merges.txt,tokenizer_config.json,tokenizer.gguf}\n",
                res->n_vocab, res->n_special, res->n_merges, (double)res->corpus_bytes / 1048576.0,
                (unsigned long long)res->n_pretokens, (unsigned long long)res->n_words, res->seconds, out);
        if (res->n_vocab < o.vocab_size)
            fprintf(stderr, "note: stopped at %zu ids: %s\n", res->n_vocab,
                    minf > 1 ? "no pair occurs --min-frequency times" : "no pairs are left to merge");
    }
    llmops_bpe_train_result_free(res);
    free(corpus);
    free(specials);
    return r;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("tokenizer", "give a subcommand: train");
    if (!strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    return cli_usage_error("tokenizer", "unknown subcommand '%s' (train)", argv[1]);
}
