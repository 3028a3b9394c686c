/*
 * src/tokenizer/uregex.h — a small backtracking regular-expression engine over
 * Unicode code points, for tokenizer pre-tokenizers (the GPT-2, Llama 3,
 * Qwen2, DeepSeek ... split patterns and tokenizer.json "Split" regexes).
 *
 * Syntax (Oniguruma/PCRE flavour, the subset tokenizer patterns use):
 *   literals (UTF-8), .  ^  $  |  (...)  (?:...)  (?i:...)  (?=...)  (?!...)
 *   * + ? {n} {n,} {n,m}, each greedy, lazy (?) or possessive (+)
 *   [...] [^...] with ranges and escapes; \s \S \d \D \w \W \p{X} \P{X}
 *   (X = L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No P S Z C, or Letter/Number/...)
 *   \r \n \t \f \v \0 \xHH \x{H..} \uHHHH and escaped punctuation.
 * Matching is leftmost-first with backtracking, like Oniguruma; single-class
 * repetitions run without recursion so long runs of letters cost no stack.
 *
 *     llmops_regex *re;
 *     llmops_regex_compile("'s|'t| ?\\p{L}+| ?\\p{N}+", -1, &re, &err);
 *     llmops_utext t;  llmops_utext_from_utf8(&t, text, len, &err);
 *     size_t b, e;
 *     for (size_t at = 0; llmops_regex_search(re, &t, 0, t.n, at, &b, &e) == 1; at = e) ...
 */
#ifndef LLMOPS_UREGEX_H
#define LLMOPS_UREGEX_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

/* Unicode property bits of a code point. */
enum {
    UCP_L = 1 << 0,   /* letter (any Lx)               */
    UCP_N = 1 << 1,   /* number (any Nx)               */
    UCP_M = 1 << 2,   /* mark                          */
    UCP_P = 1 << 3,   /* punctuation                   */
    UCP_S = 1 << 4,   /* symbol                        */
    UCP_Z = 1 << 5,   /* separator                     */
    UCP_C = 1 << 6,   /* other (control, format, ...)  */
    UCP_WS = 1 << 7,  /* White_Space                   */
    UCP_LU = 1 << 8,
    UCP_LL = 1 << 9,
    UCP_LT = 1 << 10,
    UCP_LM = 1 << 11,
    UCP_LO = 1 << 12,
    UCP_ND = 1 << 13,
    UCP_NL = 1 << 14,
    UCP_NO = 1 << 15
};

/* The property bits of one code point. */
uint16_t llmops_ucp_flags(uint32_t cp);

/* Decoded text: code points, their properties and their byte offsets. */
typedef struct llmops_utext {
    uint32_t *cp;
    uint16_t *flags;
    size_t *off;     /* byte offset of cp[i] in the source; off[n] = source length */
    size_t n;
} llmops_utext;

/*
 * Decodes UTF-8. Invalid bytes each become U+FFFD (flags of U+FFFD) but keep
 * their byte offsets, so that slicing the source by off[] returns the
 * original bytes.
 */
llmops_status llmops_utext_from_utf8(llmops_utext *t, const char *s, size_t len, llmops_error *err);
void llmops_utext_free(llmops_utext *t);

typedef struct llmops_regex llmops_regex;

/* len < 0: NUL-terminated. Syntax errors name the byte offset in the pattern. */
llmops_status llmops_regex_compile(const char *pattern, long len, llmops_regex **out, llmops_error *err);
void llmops_regex_free(llmops_regex *re);

/*
 * Leftmost match inside the fragment [begin, end) of t starting at or after
 * code point `from`: returns 1 and sets [*mb, *me) (code point indices), 0
 * when there is none, -1 when the backtracking budget ran out (a pathological
 * pattern). ^ and $ match at the fragment's bounds.
 */
int llmops_regex_search(const llmops_regex *re, const llmops_utext *t, size_t begin, size_t end, size_t from,
                        size_t *mb, size_t *me);

#endif
