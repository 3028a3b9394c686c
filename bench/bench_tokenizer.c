/*
 * Encoding throughput of each tokenizer family on tinyshakespeare (1.1 MB),
 * one thread: MB/s and tokens/s, best of three runs. The vocabularies are
 * llama.cpp's conformance GGUFs from ../shared/assets (or $LLMOPS_ASSETS).
 *
 *     make bench && build/release/bench_tokenizer
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmops/fileio.h"
#include "llmops/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *assets = getenv("LLMOPS_ASSETS");
    if (!assets) assets = "../shared/assets";
    int json = argc > 1 && !strcmp(argv[1], "--json");
    char path[1024];
    snprintf(path, sizeof path, "%s/text/tinyshakespeare/input.txt", assets);
    char *text;
    size_t len;
    llmops_error err = {0};
    if (llmops_file_read_all(path, 64u << 20, &text, &len, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    static const char *const vocabs[][2] = {
        {"SentencePiece BPE (Llama 2)", "ggml-vocab-llama-spm.gguf"},
        {"SentencePiece BPE (Phi-3)", "ggml-vocab-phi-3.gguf"},
        {"byte-level BPE (GPT-2)", "ggml-vocab-gpt-2.gguf"},
        {"byte-level BPE (StarCoder/Refact)", "ggml-vocab-refact.gguf"},
        {"byte-level BPE (DeepSeek LLM, 6 regexes)", "ggml-vocab-deepseek-llm.gguf"},
        {"WordPiece (BERT / bge)", "ggml-vocab-bert-bge.gguf"},
    };
    if (json) printf("[\n");
    else printf("%-42s %10s %12s %10s\n", "tokenizer (tinyshakespeare, 1 thread)", "MB/s", "tokens/s", "tokens");
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        snprintf(path, sizeof path, "%s/tokenizers/llama.cpp-vocab/%s", assets, vocabs[v][1]);
        llmops_tokenizer *tok;
        if (llmops_tokenizer_load(path, &tok, &err)) {
            fprintf(stderr, "skip %s: %s\n", vocabs[v][1], err.msg);
            continue;
        }
        double best = 1e30;
        size_t n_tokens = 0;
        for (int rep = 0; rep < 3; rep++) {
            llmops_tokens ids = {0};
            double t0 = now();
            if (llmops_tokenize(tok, text, len, 0, &ids, &err)) {
                fprintf(stderr, "%s: %s\n", vocabs[v][1], err.msg);
                return 1;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
            n_tokens = ids.n;
            llmops_tokens_free(&ids);
        }
        double mbs = (double)len / best / 1e6, tps = (double)n_tokens / best;
        if (json)
            printf("  {\"tokenizer\": \"%s\", \"vocab\": \"%s\", \"mb_per_s\": %.2f, \"tokens_per_s\": %.0f, \"tokens\": %zu}%s\n",
                   vocabs[v][0], vocabs[v][1], mbs, tps, n_tokens, v + 1 < sizeof vocabs / sizeof vocabs[0] ? "," : "");
        else printf("%-42s %10.2f %12.0f %10zu\n", vocabs[v][0], mbs, tps, n_tokens);
        llmops_tokenizer_free(tok);
    }
    if (json) printf("]\n");
    free(text);
    return 0;
}
