/*
 * llmops/tokenizer.h — tokenizers that agree with the reference
 * implementations token for token: SentencePiece-BPE (Llama 1/2, Mistral,
 * TinyLlama, Phi-3), byte-level BPE with each model's pre-tokenizer (GPT-2,
 * Llama 3, Qwen2, DeepSeek, StarCoder/Refact, ...), and WordPiece (BERT).
 *
 *     llmops_tokenizer *tok;
 *     if (llmops_tokenizer_load("model.gguf", &tok, &err)) ...   // or a HF folder,
 *                      // tokenizer.json, tokenizer.model, tokenizer.bin
 *     llmops_tokens ids = {0};
 *     llmops_tokenize(tok, "Hello world", 11, LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err);
 *     llmops_buf text; llmops_buf_init(&text, 1 << 20);
 *     llmops_detokenize(tok, ids.ids, ids.n, 0, &text, &err);
 *     llmops_tokens_free(&ids); llmops_buf_free(&text); llmops_tokenizer_free(tok);
 */
#ifndef LLMOPS_TOKENIZER_H
#define LLMOPS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/gguf.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_tokenizer_kind {
    LLMOPS_TOKENIZER_SPM = 1,  /* SentencePiece BPE: scores, '▁', byte fallback   */
    LLMOPS_TOKENIZER_BPE,      /* byte-level BPE: merges ranked, GPT-2 byte map   */
    LLMOPS_TOKENIZER_WPM       /* WordPiece (BERT)                                */
} llmops_tokenizer_kind;

/* Token types, as llama.cpp and SentencePiece number them. */
typedef enum llmops_token_type {
    LLMOPS_TOKEN_NORMAL = 1,
    LLMOPS_TOKEN_UNKNOWN = 2,
    LLMOPS_TOKEN_CONTROL = 3,
    LLMOPS_TOKEN_USER_DEFINED = 4,
    LLMOPS_TOKEN_UNUSED = 5,
    LLMOPS_TOKEN_BYTE = 6
} llmops_token_type;

typedef struct llmops_tokenizer llmops_tokenizer;

/*
 * Loads a tokenizer from any source the project knows: a GGUF file
 * (tokenizer.ggml.*), a Hugging Face folder or tokenizer.json (with
 * tokenizer_config.json beside it), a SentencePiece tokenizer.model, a
 * llama2.c tokenizer.bin (or a llama2.c checkpoint with its tokenizer.bin or
 * tok<N>.bin beside it).
 */
llmops_status llmops_tokenizer_load(const char *path, llmops_tokenizer **out, llmops_error *err);
llmops_status llmops_tokenizer_from_gguf(const llmops_gguf *g, const char *origin, llmops_tokenizer **out,
                                         llmops_error *err);
/* A tokenizer.json held in memory (no side files); `origin` names it in messages. */
llmops_status llmops_tokenizer_from_json(const char *json, size_t len, const char *origin, llmops_tokenizer **out,
                                         llmops_error *err);
void llmops_tokenizer_free(llmops_tokenizer *tok);

/* Writes the tokenizer.ggml.* keys (and the chat template when known). */
llmops_status llmops_tokenizer_to_gguf(const llmops_tokenizer *tok, llmops_gguf_writer *w, llmops_error *err);

llmops_tokenizer_kind llmops_tokenizer_kind_of(const llmops_tokenizer *tok);
/* llama.cpp's name of the pre-tokenizer ("gpt-2", "llama-bpe", "default", ...). */
const char *llmops_tokenizer_pre(const llmops_tokenizer *tok);
size_t llmops_tokenizer_n_vocab(const llmops_tokenizer *tok);
/* The token's stored text (not NUL-terminated inside; *len receives its length). */
const char *llmops_tokenizer_token_text(const llmops_tokenizer *tok, int32_t id, size_t *len);
llmops_token_type llmops_tokenizer_token_type(const llmops_tokenizer *tok, int32_t id);
float llmops_tokenizer_token_score(const llmops_tokenizer *tok, int32_t id);
/* Looks a token up by its exact stored text; -1 when absent. */
int32_t llmops_tokenizer_find(const llmops_tokenizer *tok, const char *text, size_t len);

/* Special ids (-1 when the model has none). */
int32_t llmops_tokenizer_bos(const llmops_tokenizer *tok);
int32_t llmops_tokenizer_eos(const llmops_tokenizer *tok);
/* End of turn for chat models (<|eot_id|>, <|im_end|>, <|end|>, ...), else EOS. */
int32_t llmops_tokenizer_eot(const llmops_tokenizer *tok);
int32_t llmops_tokenizer_pad(const llmops_tokenizer *tok);
int32_t llmops_tokenizer_unk(const llmops_tokenizer *tok);
/* 1 when the token ends generation (EOS, EOT, or another end-of-generation id). */
int llmops_tokenizer_is_eog(const llmops_tokenizer *tok, int32_t id);
int llmops_tokenizer_add_bos(const llmops_tokenizer *tok);
int llmops_tokenizer_add_eos(const llmops_tokenizer *tok);
/* The chat template the model carries (NUL-terminated), or NULL. */
const char *llmops_tokenizer_chat_template(const llmops_tokenizer *tok);

/* ---- encode / decode ------------------------------------------------------------ */

typedef struct llmops_tokens {
    int32_t *ids;
    size_t n, cap;
} llmops_tokens;

void llmops_tokens_free(llmops_tokens *t);
llmops_status llmops_tokens_push(llmops_tokens *t, int32_t id, llmops_error *err);

enum {
    LLMOPS_TOKENIZE_ADD_SPECIAL = 1 << 0,   /* BOS/EOS (and BERT's [CLS]/[SEP]) as the model's config says */
    LLMOPS_TOKENIZE_PARSE_SPECIAL = 1 << 1  /* match control/added tokens in the text before splitting */
};

/* Appends the ids of `len` bytes of text to *out. Invalid UTF-8 is handled as
 * the reference does (byte fallback or U+FFFD), never an error. */
llmops_status llmops_tokenize(const llmops_tokenizer *tok, const char *text, size_t len, unsigned flags,
                              llmops_tokens *out, llmops_error *err);

enum {
    LLMOPS_DETOKENIZE_SKIP_SPECIAL = 1 << 0, /* leave out control tokens (BOS, EOS, ...)  */
    LLMOPS_DETOKENIZE_KEEP_LEADING_SPACE = 1 << 1 /* SPM: keep the dummy-prefix space of the first token */
};

/* Appends the text of ids[0..n) to out (exact bytes for byte pieces). */
llmops_status llmops_detokenize(const llmops_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                                llmops_buf *out, llmops_error *err);

/* The bytes one token stands for (its piece as text): '▁' → ' ', <0xNN> → byte,
 * GPT-2 byte-unicode → bytes, "##x" → "x". */
llmops_status llmops_token_to_piece(const llmops_tokenizer *tok, int32_t id, unsigned flags, llmops_buf *out,
                                    llmops_error *err);

/*
 * Streaming decode for generation: feed ids one at a time; only complete
 * UTF-8 characters come out, the rest waits for the next token.
 */
typedef struct llmops_detok_stream {
    const llmops_tokenizer *tok;
    unsigned flags;
    int first;          /* no text emitted yet (leading-space rule) */
    char pending[8];    /* bytes of an unfinished UTF-8 character     */
    size_t n_pending;
} llmops_detok_stream;

void llmops_detok_stream_init(llmops_detok_stream *s, const llmops_tokenizer *tok, unsigned flags);
llmops_status llmops_detok_stream_push(llmops_detok_stream *s, int32_t id, llmops_buf *out, llmops_error *err);
/* Flushes what is left (an unfinished character becomes U+FFFD). */
llmops_status llmops_detok_stream_finish(llmops_detok_stream *s, llmops_buf *out, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
