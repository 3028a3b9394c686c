/*
 * Arbitrary bytes through each tokenizer family: the bundled stories260K
 * SentencePiece vocabulary, and (when ../shared/assets is present) the GPT-2,
 * DeepSeek (multi-regex pre-tokenizer) and BERT vocabularies. Encoding must
 * never crash, decoding must give back the bytes for the byte-level GPT-2 and
 * byte-fallback SentencePiece vocabularies, and streaming decode must agree with plain decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/tokenizer.h"

#define N_TOK 4
static llmops_tokenizer *g_tok[N_TOK];
static int g_exact[N_TOK];

static void load(int i, const char *path, int exact) {
    llmops_error err = {0};
    if (llmops_tokenizer_load(path, &g_tok[i], &err) == LLMOPS_OK) g_exact[i] = exact;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *assets = getenv("LLMOPS_ASSETS");
    char p[1024];
    load(0, "models/stories260K/tok512.bin", 1);
    snprintf(p, sizeof p, "%s/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", assets ? assets : "../shared/assets");
    load(1, p, 1);
    snprintf(p, sizeof p, "%s/tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf", assets ? assets : "../shared/assets");
    load(2, p, 0); /* its vocabulary holds user-defined byte tokens such as "\xc3\xbf" that decode as text */
    snprintf(p, sizeof p, "%s/tokenizers/llama.cpp-vocab/ggml-vocab-bert-bge.gguf", assets ? assets : "../shared/assets");
    load(3, p, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    unsigned flags = data[0] & 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    for (int i = 0; i < N_TOK; i++) {
        if (!g_tok[i]) continue;
        llmops_error err = {0};
        llmops_tokens ids = {0};
        if (llmops_tokenize(g_tok[i], text, len, flags, &ids, &err) != LLMOPS_OK) abort();
        for (size_t k = 0; k < ids.n; k++)
            if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= llmops_tokenizer_n_vocab(g_tok[i])) abort();
        llmops_buf out, st;
        llmops_buf_init(&out, 1 << 24);
        llmops_buf_init(&st, 1 << 24);
        if (llmops_detokenize(g_tok[i], ids.ids, ids.n, 0, &out, &err) != LLMOPS_OK) abort();
        /* without special-token parsing, byte-level and byte-fallback vocabularies are lossless */
        /* (SentencePiece decodes a literal U+2581 in the input as a space, as the reference does) */
        int spm_marker = i == 0 && memmem(text, len, "\xe2\x96\x81", 3) != NULL;
        if (g_exact[i] && !spm_marker && !(flags & 3) && (out.len != len || (len && memcmp(out.data, text, len) != 0))) abort();
        llmops_detok_stream s;
        llmops_detok_stream_init(&s, g_tok[i], 0);
        for (size_t k = 0; k < ids.n; k++)
            if (llmops_detok_stream_push(&s, ids.ids[k], &st, &err) != LLMOPS_OK) abort();
        llmops_detok_stream_finish(&s, &st, &err);
        llmops_buf_free(&out);
        llmops_buf_free(&st);
        llmops_tokens_free(&ids);
    }
    return 0;
}
