/*
 * The pre-tokenizer regex engine on arbitrary patterns and texts: the first
 * input byte splits pattern from text. Compile errors must be clean; matches
 * must lie inside the text and advance.
 */
#include <stdint.h>
#include <stdlib.h>

#include "llmops/alloc.h"
#include "tokenizer/uregex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 2048) return 0;
    size_t plen = data[0] % (size);
    const char *pat = (const char *)data + 1;
    if (plen > size - 1) plen = size - 1;
    const char *text = pat + plen;
    size_t tlen = size - 1 - plen;
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_regex *re = NULL;
    if (llmops_regex_compile(pat, (long)plen, &re, &err) == LLMOPS_OK) {
        llmops_utext t;
        if (llmops_utext_from_utf8(&t, text, tlen, &err) == LLMOPS_OK) {
            size_t at = 0, mb, me;
            int r, guard = 0;
            while (at <= t.n && (r = llmops_regex_search(re, &t, 0, t.n, at, &mb, &me)) == 1) {
                if (mb < at || me < mb || me > t.n) abort();
                at = me > mb ? me : mb + 1;
                if (++guard > 100000) abort();
            }
            llmops_utext_free(&t);
        }
        llmops_regex_free(re);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    if (llmops_alloc_live() != live) abort();
    return 0;
}
