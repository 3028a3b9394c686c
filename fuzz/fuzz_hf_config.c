/*
 * libFuzzer target: config.json bytes -> llmops_arch_from_hf_config (the Hugging Face
 * config mapping: JSON parse, model_type dispatch, typed fields, rope_scaling, token ids)
 * -> llmops_arch_validate and the name helpers. Any input must give OK or an error status
 * with a message, never a crash, UB, a hang or a leak; an accepted config must validate.
 */
// make fuzz && build/fuzz/fuzz_hf_config -max_total_time=60 -rss_limit_mb=2048 fuzz/corpus/fuzz_hf_config
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/arch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = llmops_alloc_live();
    llmops_arch a;
    llmops_error err = {0};
    volatile size_t sink = 0;
    llmops_status st = llmops_arch_from_hf_config((const char *)data, size, "fuzz/config.json", &a, &err);
    if (st == LLMOPS_OK) {
        /* the descriptor is whole: strings terminated, the shapes consistent */
        if (memchr(a.hf_model_type, '\0', sizeof a.hf_model_type) == NULL) abort();
        if (memchr(a.hf_architecture, '\0', sizeof a.hf_architecture) == NULL) abort();
        if (a.family == LLMOPS_ARCH_UNKNOWN) abort();
        llmops_error verr = {0};
        if (llmops_arch_validate(&a, &verr) != LLMOPS_OK) abort();
        sink += strlen(llmops_arch_family_name(a.family)) + strlen(llmops_arch_gguf_name(a.family));
        sink += strlen(a.hf_model_type) + strlen(a.hf_architecture);
        sink += (size_t)(a.hidden_size / a.n_heads) + (size_t)(a.n_heads / a.n_kv_heads);
    } else if (!err.msg[0] || err.code != st) {
        abort(); /* a failure always says why */
    }
    if (llmops_alloc_live() != live) abort(); /* every allocation went back */
    (void)sink;
    return 0;
}
