/*
 * llmops/chat_template.h — chat templates: the Jinja2 programs that turn a
 * conversation into the prompt a model was trained on.
 *
 * A model ships its template as GGUF `tokenizer.chat_template` or as
 * `chat_template` in tokenizer_config.json. Hugging Face transformers renders
 * it with Python's jinja2 (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loop controls, plus raise_exception, strftime_now and a
 * json.dumps-based tojson). This module interprets the subset of Jinja that
 * chat templates use and renders byte for byte what jinja2 renders; anything
 * outside that subset is an error naming the construct and its line:column,
 * never a silently different prompt.
 *
 *     llmops_error err = {0};
 *     llmops_chat_template *t = NULL;
 *     const char *text = llmops_chat_template_builtin("chatml");
 *     if (llmops_chat_template_compile(text, strlen(text), &t, &err) != LLMOPS_OK)
 *         die(err.msg);                          // "chat template 3:14: ..."
 *
 *     llmops_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi!"}};
 *     llmops_chat_render_opts opts = {.add_generation_prompt = 1,
 *                                     .bos_token = "<s>", .eos_token = "</s>"};
 *     llmops_buf prompt;
 *     llmops_buf_init(&prompt, 1 << 24);
 *     if (llmops_chat_template_render(t, msgs, 2, &opts, &prompt, &err) != LLMOPS_OK)
 *         die(err.msg);                          // e.g. the template's raise_exception text
 *     puts(prompt.data);
 *     llmops_buf_free(&prompt);
 *     llmops_chat_template_free(t);
 *
 * Messages with more than role and content (tool_calls, tool_call_id, ...)
 * go through llmops_chat_template_render_json, and tools, documents,
 * date_string and the like through opts.extra_json.
 *
 * Supported Jinja: {{ }}, {% %}, {# #}, whitespace control (-, +),
 * trim_blocks/lstrip_blocks; if/elif/else, for (else, `if` filter, tuple
 * targets, loop.*), break/continue, set (names, tuples, namespace attributes,
 * set blocks), macro (positional/keyword arguments, defaults, recursion),
 * filter blocks, with, generation; the full expression grammar (literals,
 * slices, calls, filters, tests, `~`, ternaries, chained comparisons);
 * the filters and tests jinja2 ships that chat templates use, the str / dict
 * methods they call, namespace(), range(), dict(), raise_exception(),
 * strftime_now(). Not supported (error): include/import/extends/block/call
 * blocks, raw blocks, *args and **kwargs in calls, str % formatting, integers
 * outside int64.
 */
#ifndef LLMOPS_CHAT_TEMPLATE_H
#define LLMOPS_CHAT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A compiled template: immutable, so one may be rendered from many threads. */
typedef struct llmops_chat_template llmops_chat_template;

/* One message of a conversation (both strings UTF-8, NUL-terminated). */
typedef struct llmops_chat_message {
    const char *role;    /* "system", "user", "assistant", "tool", ... */
    const char *content;
} llmops_chat_message;

/* Render options; a zeroed struct (or NULL) means: no generation prompt,
 * empty bos/eos tokens, no extra variables, the clock, default limits. */
typedef struct llmops_chat_render_opts {
    int add_generation_prompt;  /* end with the opening of an assistant turn    */
    const char *bos_token;      /* NULL = ""                                    */
    const char *eos_token;      /* NULL = ""                                    */
    /* Optional JSON object text whose members become template variables
     * (tools, documents, date_string, enable_thinking, ...); they override
     * the variables above. NULL = none. */
    const char *extra_json;
    /* Time strftime_now() formats (Unix seconds, shown in local time);
     * 0 = the current time. Tests fix it so output is deterministic. */
    int64_t now;
    size_t max_output;          /* cap on rendered bytes; 0 = 16 MiB            */
    size_t max_memory;          /* cap on memory one render uses; 0 = 256 MiB   */
    uint64_t max_steps;         /* cap on evaluation steps; 0 = 50 million      */
} llmops_chat_render_opts;

/*
 * Compiles `len` bytes of template text (UTF-8; need not be NUL-terminated).
 * On success *out owns the template (free with llmops_chat_template_free).
 * Errors: LLMOPS_ERR_FORMAT for a syntax error, LLMOPS_ERR_UNSUPPORTED for a
 * construct this interpreter does not handle, LLMOPS_ERR_LIMIT for nesting
 * deeper than 100 levels, LLMOPS_ERR_NOMEM; the message reads
 * "chat template LINE:COL: ...".
 */
llmops_status llmops_chat_template_compile(const char *text, size_t len, llmops_chat_template **out,
                                           llmops_error *err);

/*
 * Renders the conversation `msgs[0..n)` and appends the prompt to `out`
 * (which the caller initialised; its cap also bounds the output). On error
 * `out` is left as it was. Errors:
 *   LLMOPS_ERR_INVALID_ARG   the template called raise_exception(msg): the
 *                            message holds msg (e.g. "Conversation roles must
 *                            alternate ..."), or an argument is unusable;
 *   LLMOPS_ERR_FORMAT        a runtime error jinja2 would raise too (an
 *                            undefined value used, a type error, ...);
 *   LLMOPS_ERR_UNSUPPORTED   a filter, test, method or feature not implemented;
 *   LLMOPS_ERR_LIMIT         output, memory, step or recursion cap reached;
 *   LLMOPS_ERR_NOMEM.
 */
llmops_status llmops_chat_template_render(const llmops_chat_template *tmpl,
                                          const llmops_chat_message *msgs, size_t n,
                                          const llmops_chat_render_opts *opts, llmops_buf *out,
                                          llmops_error *err);

/*
 * As llmops_chat_template_render, with the messages given as the text of a
 * JSON array of message objects (`len` bytes), e.g.
 *   [{"role":"user","content":"Hi"},
 *    {"role":"assistant","tool_calls":[{"type":"function","function":{...}}]}]
 */
llmops_status llmops_chat_template_render_json(const llmops_chat_template *tmpl,
                                               const char *messages_json, size_t len,
                                               const llmops_chat_render_opts *opts,
                                               llmops_buf *out, llmops_error *err);

/* Frees a template; NULL is a no-op. */
void llmops_chat_template_free(llmops_chat_template *tmpl);

/*
 * The published chat_template of a model family, for models whose files lack
 * one: "llama2", "llama3", "mistral", "chatml" (Qwen2), "phi3", "zephyr",
 * "gemma" (case-insensitive). Returns a static NUL-terminated string, or NULL
 * for an unknown name. Each text is copied verbatim from the model's
 * tokenizer_config.json; the source repositories are named in
 * src/tokenizer/chat_template_builtin.c.
 */
const char *llmops_chat_template_builtin(const char *name);

/* The names llmops_chat_template_builtin knows, NULL-terminated. */
const char *const *llmops_chat_template_builtin_names(void);

#ifdef __cplusplus
}
#endif
#endif
