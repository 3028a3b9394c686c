/* Arbitrary bytes as a Hugging Face tokenizer.json: a clean error or a tokenizer that works. */
#include <stdint.h>
#include <stdlib.h>

#include "llmops/alloc.h"
#include "llmops/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_tokenizer *tok = NULL;
    if (llmops_tokenizer_from_json((const char *)data, size, "fuzz.json", &tok, &err) == LLMOPS_OK) {
        static const char sample[] = "Hello world! <s> 123 \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x81 \n\t x";
        llmops_tokens ids = {0};
        if (llmops_tokenize(tok, sample, sizeof sample - 1, LLMOPS_TOKENIZE_ADD_SPECIAL | LLMOPS_TOKENIZE_PARSE_SPECIAL,
                            &ids, &err) == LLMOPS_OK) {
            llmops_buf out;
            llmops_buf_init(&out, 1 << 20);
            llmops_detokenize(tok, ids.ids, ids.n, 0, &out, &err);
            llmops_buf_free(&out);
        }
        llmops_tokens_free(&ids);
        llmops_tokenizer_free(tok);
    } else if (err.msg[0] == '\0') {
        abort(); /* a failure must say why */
    }
    if (llmops_alloc_live() != live) abort();
    return 0;
}
