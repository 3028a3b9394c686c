/*
 * llmops/tokenizer_train.h — training a byte-level BPE tokenizer (GPT-2 style)
 * on a text corpus, and writing it as a Hugging Face tokenizer folder plus a
 * vocabulary-only GGUF.
 *
 *     const char *specials[] = {"<|endoftext|>"};
 *     llmops_bpe_train_options o = {0};
 *     o.vocab_size = 32000;
 *     o.special_tokens = specials;
 *     o.n_special = 1;
 *     llmops_bpe_train_result *r = NULL;
 *     const char *files[] = {"corpus.txt"};
 *     if (llmops_bpe_train_files(files, 1, &o, &r, &err)) { ... err.msg ... }
 *     // r->vocab[id] holds the raw bytes of each id, r->merges[k] the k-th merge
 *     llmops_bpe_train_write(r, "out/", "my-tokenizer", &err);
 *     llmops_bpe_train_result_free(r);
 *
 * The algorithm is the Stanford CS336 (assignment 1) reference, to the merge:
 *   1. the corpus is split on the special tokens (leftmost, longest first),
 *      which never take part in merges;
 *   2. each remaining piece is pre-tokenized with the GPT-2 regex
 *        '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      and the pre-tokens are counted;
 *   3. the vocabulary starts as the special tokens, then the 256 single bytes
 *      (in GPT-2's bytes_to_unicode order: '!'..'~', '¡'..'¬', '®'..'ÿ', then
 *      the remaining bytes 0x00.., as GPT-2's own vocabulary numbers them);
 *   4. the most frequent adjacent pair (counts weighted by pre-token
 *      frequency) is merged, ties going to the lexicographically greater pair
 *      of byte strings (Python's comparison of (bytes, bytes) tuples), until
 *      the vocabulary has vocab_size ids or no pair occurs min_frequency
 *      times.
 * Pair counts are kept incrementally (an index from each pair to the words
 * that hold it, and a max-heap), so each merge costs time in proportion to
 * the words it touches, not to the corpus.
 *
 * Files are memory-mapped (read as raw bytes: no newline translation) and
 * pre-tokenized in pieces of about 1 MiB cut where the regex cannot match
 * across (before "\n" + a visible ASCII character, or before " " + an ASCII
 * letter, never inside a special token), in parallel on a thread pool. Only
 * a piece with no such place in 4 MiB is cut at a character boundary, where
 * its pre-tokens may differ from the reference's. Memory grows with the
 * number of distinct pre-tokens, not with the corpus size.
 *
 * One deliberate difference from the CS336 reference: when a merge yields
 * the bytes of a token that exists already (possible in rare corpora: "ab"+"c"
 * and "a"+"bc"), the merge is recorded but reuses that token's id, as the
 * Hugging Face trainer does, since the output files map each spelling to one
 * id.
 */
#ifndef LLMOPS_TOKENIZER_TRAIN_H
#define LLMOPS_TOKENIZER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hard caps on what training accepts. */
#define LLMOPS_BPE_TRAIN_MAX_VOCAB (1u << 22)
#define LLMOPS_BPE_TRAIN_MAX_SPECIAL 1024
#define LLMOPS_BPE_TRAIN_MAX_SPECIAL_LEN 256

/* Phases reported to the progress callback. */
typedef enum llmops_bpe_train_phase {
    LLMOPS_BPE_TRAIN_PRETOKENIZE = 1, /* done/total: bytes of corpus               */
    LLMOPS_BPE_TRAIN_MERGE            /* done/total: merges made / merges wanted    */
} llmops_bpe_train_phase;

/* Called now and then from the calling thread; elapsed_s counts from the start. */
typedef void (*llmops_bpe_train_progress_fn)(void *ctx, llmops_bpe_train_phase phase, uint64_t done,
                                             uint64_t total, double elapsed_s);

/* Zero-initialise, then set vocab_size (the only field without a default). */
typedef struct llmops_bpe_train_options {
    size_t vocab_size;                   /* ids in all: specials + 256 bytes + merges    */
    const char *const *special_tokens;   /* NUL-terminated texts, ids 0..n_special-1     */
    size_t n_special;
    uint64_t min_frequency;              /* stop when the best pair occurs fewer times
                                            (0 or 1: merge while any pair occurs)        */
    int n_threads;                       /* pre-tokenization threads; 0 = physical cores */
    size_t piece_size;                   /* bytes per pre-tokenization piece, cut at a safe
                                            place at most 4x further; 0 = 1 MiB           */
    llmops_bpe_train_progress_fn progress; /* NULL: silent                               */
    void *progress_ctx;
} llmops_bpe_train_options;

/* The raw bytes of one token. */
typedef struct llmops_bpe_token {
    const uint8_t *bytes;
    size_t len;
} llmops_bpe_token;

/* One merge: left + right → result (ids into vocab). */
typedef struct llmops_bpe_merge {
    int32_t left, right, result;
} llmops_bpe_merge;

/*
 * What training produced. Everything it points to belongs to the result and
 * lives until llmops_bpe_train_result_free.
 */
typedef struct llmops_bpe_train_result {
    size_t n_vocab;              /* ids 0..n_vocab-1                                  */
    llmops_bpe_token *vocab;     /* (n_vocab) bytes of each id                        */
    size_t n_special;            /* ids 0..n_special-1 are the special tokens         */
    size_t n_merges;
    llmops_bpe_merge *merges;    /* (n_merges) in the order they were learned         */
    uint64_t corpus_bytes;       /* bytes read                                         */
    uint64_t n_pretokens;        /* pre-tokens counted (with repeats)                  */
    uint64_t n_words;            /* distinct pre-tokens                                */
    double seconds;              /* wall time of training                              */
    llmops_arena *arena;         /* backs the token bytes                              */
} llmops_bpe_train_result;

/*
 * Trains on the concatenation of `n_paths` files (each file is its own text:
 * no pre-token spans two files). Fails with INVALID_ARG when vocab_size is
 * below n_special + 256 or a special token is empty, repeated or too long,
 * IO naming the path when a file cannot be read, and INVALID_ARG ("empty
 * corpus") when there is no text outside the special tokens.
 * *out is owned by the caller (llmops_bpe_train_result_free).
 */
llmops_status llmops_bpe_train_files(const char *const *paths, size_t n_paths, const llmops_bpe_train_options *opt,
                                     llmops_bpe_train_result **out, llmops_error *err);

/* As llmops_bpe_train_files, over `len` bytes in memory (not copied). */
llmops_status llmops_bpe_train_buffer(const char *text, size_t len, const llmops_bpe_train_options *opt,
                                      llmops_bpe_train_result **out, llmops_error *err);

/* NULL is a no-op. */
void llmops_bpe_train_result_free(llmops_bpe_train_result *r);

/*
 * Writes the trained tokenizer into `dir` (created when missing), each file
 * atomically:
 *   tokenizer.json         Hugging Face tokenizers: BPE model (vocab and merges in
 *                          GPT-2's byte-to-unicode spelling), ByteLevel pre-tokenizer
 *                          and decoder, the special tokens as added_tokens (special)
 *   vocab.json, merges.txt GPT-2 vocabulary files ("#version: 0.2" header)
 *   tokenizer_config.json  GPT2TokenizerFast; the first special token as bos/eos/unk
 *   tokenizer.gguf         vocabulary-only GGUF: general.name and the tokenizer.ggml.*
 *                          keys, as llmops_tokenizer_to_gguf writes them from the
 *                          tokenizer.json above (so both load to the same tokenizer)
 * `name` becomes general.name (NULL: "bpe-<n_vocab>").
 */
llmops_status llmops_bpe_train_write(const llmops_bpe_train_result *r, const char *dir, const char *name,
                                     llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
