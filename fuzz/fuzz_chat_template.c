/*
 * libFuzzer target: arbitrary bytes as a chat template -> compile -> render
 * with a fixed conversation (system/user/assistant, a tool call, tools,
 * add_generation_prompt) under small caps. Any input must give OK or an error
 * status with a message, never a crash, a hang or a leak: the interpreter
 * bounds nesting at compile time and steps, recursion, memory and output at
 * render time.
 */
// clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
//     fuzz/fuzz_chat_template.c src/base/*.c src/tokenizer/chat_template*.c -o /tmp/fuzz_chat
//     -ljansson -lyaml -lsodium -lutf8proc -lpthread -lm
// /tmp/fuzz_chat -max_total_time=60 fuzz/corpus/fuzz_chat_template
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/chat_template.h"

static const char k_messages[] =
    "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris? {{ x }} \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call12345\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call12345\",\"content\":\"21 C\"},"
    "{\"role\":\"assistant\",\"content\":\"It is 21 C.\"},"
    "{\"role\":\"user\",\"content\":\"Thanks\"}]";

static const char k_extra[] =
    "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"days\":{\"type\":[\"integer\",\"string\"]}},\"required\":[\"city\"]}}}],"
    "\"date_string\":\"26 Jul 2024\",\"n\":3,\"f\":1.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0;
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_chat_template *t = NULL;
    if (llmops_chat_template_compile((const char *)data, size, &t, &err) == LLMOPS_OK) {
        llmops_chat_render_opts o = {
            .add_generation_prompt = 1,
            .bos_token = "<s>",
            .eos_token = "</s>",
            .extra_json = k_extra,
            .now = 1721995200,
            .max_output = 1 << 20,
            .max_memory = 32 << 20,
            .max_steps = 200000,
        };
        llmops_buf out;
        llmops_buf_init(&out, 1 << 20);
        llmops_status st = llmops_chat_template_render_json(t, k_messages, sizeof k_messages - 1, &o, &out, &err);
        if (st != LLMOPS_OK && err.msg[0] == 0) abort(); /* every error explains itself */
        if (st == LLMOPS_OK && out.len && out.data[out.len] != 0) abort();
        llmops_buf_free(&out);
        llmops_chat_template_free(t);
    } else if (err.msg[0] == 0) {
        abort();
    }
    if (llmops_alloc_live() != live) abort();
    return 0;
}
