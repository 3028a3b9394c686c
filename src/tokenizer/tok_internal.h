/* Internal layout of llmops_tokenizer, shared by the tokenizer's source files. */
#ifndef LLMOPS_TOK_INTERNAL_H
#define LLMOPS_TOK_INTERNAL_H

#include "llmops/tokenizer.h"
#include "tokenizer/uregex.h"

struct llmops_tokenizer {
    llmops_tokenizer_kind kind;
    char pre[48];                 /* llama.cpp pre-tokenizer name                   */
    size_t n;                     /* vocabulary size                                */
    char **text;                  /* token texts (arena), NUL-terminated            */
    uint32_t *len;
    float *scores;
    int32_t *types;
    uint32_t *map;                /* open addressing: text → id+1                   */
    size_t map_cap;
    char **merges;                /* BPE: "left right", rank = index                */
    size_t n_merges;
    uint32_t *merge_map;          /* open addressing: merge text → rank+1           */
    size_t merge_cap;
    uint64_t *pair_key;           /* BPE: (left id+1) << 32 | (right id+1) → slot   */
    uint32_t *pair_rank;          /* the merge's rank                                */
    int32_t *pair_result;         /* the merged token's id, -1 if not in the vocab  */
    size_t pair_cap;
    uint8_t special_first[32];    /* bitmap of the first bytes of special tokens    */
    int32_t bos, eos, eot, eom, pad, unk, sep, cls, mask;
    int add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;
    int32_t byte_token[256];      /* SPM: <0xNN>; BPE: the token of a lone mapped byte */
    llmops_regex **re;            /* pre-tokenizer regexes, applied in order        */
    size_t n_re;
    int32_t *specials;            /* tokens matched before splitting, longest first */
    size_t n_specials;
    int32_t *eog;                 /* end-of-generation ids                          */
    size_t n_eog;
    size_t max_token_len;
    int wpm_lowercase;            /* WordPiece: lower-case (BertNormalizer lowercase), default 1 */
    int wpm_strip_accents;        /* WordPiece: drop Mn marks after NFD, default = lowercase     */
    int spm_split_newlines;       /* SPM: no multi-byte token holds '\n', so lines merge independently */
    char *chat_template;
    llmops_arena *arena;
};

/* GPT-2's byte ↔ unicode map (bytes that print as themselves keep their code). */
uint32_t llmops_bpe_byte_to_cp(uint8_t b);
int llmops_bpe_cp_to_byte(uint32_t cp); /* -1 when cp is not in the map */

/* Builds the lookup tables after text/len/scores/types/merges are filled. */
llmops_status llmops_tok_finish(llmops_tokenizer *tok, llmops_error *err);
/* Allocates an empty tokenizer with n token slots. */
llmops_status llmops_tok_alloc(llmops_tokenizer **out, size_t n, llmops_error *err);
/* Sets token i (copied into the arena). */
llmops_status llmops_tok_set(llmops_tokenizer *tok, size_t i, const char *text, size_t len, float score, int32_t type,
                             llmops_error *err);
/* Installs the pre-tokenizer regexes of llama.cpp's pre-tokenizer `name`. */
llmops_status llmops_tok_set_pre(llmops_tokenizer *tok, const char *name, llmops_error *err);
/* Installs explicit regexes (tokenizer.json "Split" patterns). */
llmops_status llmops_tok_add_regex(llmops_tokenizer *tok, const char *pattern, llmops_error *err);
/* Merge rank of left+right, or -1. */
int llmops_tok_merge_rank(const llmops_tokenizer *tok, const char *l, size_t ll, const char *r, size_t rl);
/* Merge rank of two token ids, or -1; *result receives the merged token's id. */
int llmops_tok_pair_rank(const llmops_tokenizer *tok, int32_t l, int32_t r, int32_t *result);

/* The three algorithms; each appends ids for one fragment of raw text. */
llmops_status llmops_tok_spm(const llmops_tokenizer *tok, const char *text, size_t len, llmops_tokens *out,
                             llmops_error *err);
llmops_status llmops_tok_bpe(const llmops_tokenizer *tok, const char *text, size_t len, llmops_tokens *out,
                             llmops_error *err);
llmops_status llmops_tok_wpm(const llmops_tokenizer *tok, const char *text, size_t len, llmops_tokens *out,
                             llmops_error *err);

#endif
