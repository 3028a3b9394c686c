/*
 * Chat templates: every template is rendered over a set of conversations
 * (tests/tokenizer/data/chat/contexts.json) both by our interpreter and by
 * Python's jinja2 configured as Hugging Face transformers configures it
 * (tests/tokenizer/render_jinja.py), and the outputs must agree byte for byte;
 * where jinja2 raises, we must fail too (with the template's own message for
 * raise_exception).
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "../unit/test.h"
#include "base/json.h"
#include "llmops/alloc.h"
#include "llmops/chat_template.h"

#define PYTHON "/usr/bin/python3"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int have_oracle(void) {
    static int have = -1;
    if (have < 0) have = system(PYTHON " -c 'import jinja2' >/dev/null 2>&1") == 0;
    return have;
}

/* Runs the oracle on one template over a contexts file; returns the parsed
 * JSON list of results (caller decrefs) or NULL. */
static json_t *oracle(const char *tmpl_path, const char *ctx_path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PYTHON " '%s/tests/tokenizer/render_jinja.py' '%s' '%s'", test_repo_root(), tmpl_path, ctx_path);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    int rc = pclose(p);
    if (!buf || rc != 0) {
        free(buf);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, n, 0, &je);
    free(buf);
    return j;
}

/* Renders one context (an object: messages, add_generation_prompt, bos_token,
 * eos_token, __now__, anything else = extra variables) with our interpreter. */
static llmops_status render_ctx(const llmops_chat_template *t, json_t *ctx, llmops_buf *out, llmops_error *err) {
    json_t *extra = json_deep_copy(ctx);
    json_t *msgs = json_object_get(ctx, "messages");
    llmops_chat_render_opts o = {0};
    o.add_generation_prompt = json_is_true(json_object_get(ctx, "add_generation_prompt"));
    o.bos_token = json_string_value(json_object_get(ctx, "bos_token"));
    o.eos_token = json_string_value(json_object_get(ctx, "eos_token"));
    o.now = json_integer_value(json_object_get(ctx, "__now__"));
    const char *strip[] = {"messages", "add_generation_prompt", "bos_token", "eos_token", "__now__"};
    for (size_t i = 0; i < 5; i++) json_object_del(extra, strip[i]);
    char *extra_text = json_dumps(extra, JSON_COMPACT);
    char *msgs_text = json_dumps(msgs, JSON_COMPACT);
    o.extra_json = extra_text;
    llmops_status st = llmops_chat_template_render_json(t, msgs_text, strlen(msgs_text), &o, out, err);
    free(extra_text);
    free(msgs_text);
    json_decref(extra);
    return st;
}

/* First differing byte, for messages. */
static size_t diff_at(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i]) i++;
    return i;
}

/* Compares our rendering of every context with jinja2's. Returns the number
 * of mismatches (each reported). */
static int compare_template(const char *name, const char *tmpl_path, const char *ctx_path, int *n_ok, int *n_raise) {
    size_t len;
    char *text = slurp(tmpl_path, &len);
    if (!text) {
        test_fail(__FILE__, __LINE__, "%s: cannot read %s", name, tmpl_path);
        return 1;
    }
    json_t *want = oracle(tmpl_path, ctx_path);
    json_t *ctxs = json_load_file(ctx_path, 0, NULL);
    int bad = 0;
    if (!want || !ctxs || json_array_size(want) != json_array_size(ctxs)) {
        test_fail(__FILE__, __LINE__, "%s: oracle failed", name);
        bad = 1;
        goto done;
    }
    llmops_error err = {0};
    llmops_chat_template *t = NULL;
    llmops_status cst = llmops_chat_template_compile(text, len, &t, &err);
    for (size_t i = 0; i < json_array_size(ctxs); i++) {
        json_t *w = json_array_get(want, i);
        const char *ok = json_string_value(json_object_get(w, "ok"));
        const char *raised = json_string_value(json_object_get(w, "raise"));
        const char *jerr = json_string_value(json_object_get(w, "error"));
        size_t ok_len = ok ? json_string_length(json_object_get(w, "ok")) : 0;
        llmops_buf out;
        llmops_buf_init(&out, 1 << 24);
        llmops_status st = cst;
        if (!cst) st = render_ctx(t, json_array_get(ctxs, i), &out, &err);
        if (ok) {
            if (st != LLMOPS_OK) {
                test_fail(__FILE__, __LINE__, "%s ctx %zu: jinja2 renders, we fail: %s", name, i, err.msg);
                bad++;
            } else if (out.len != ok_len || memcmp(out.data, ok, ok_len) != 0) {
                size_t d = diff_at(out.data, out.len, ok, ok_len);
                size_t from = d > 40 ? d - 40 : 0;
                test_fail(__FILE__, __LINE__, "%s ctx %zu: differs at byte %zu (ours %zu bytes, jinja2 %zu)\n      ours:   ...%.*s|%.40s\n      jinja2: ...%.*s|%.40s",
                          name, i, d, out.len, ok_len, (int)(d - from), out.data + from, out.data + d,
                          (int)(d - from), ok + from, ok + d);
                bad++;
            } else {
                (*n_ok)++;
            }
        } else if (raised) {
            char needle[200];
            snprintf(needle, sizeof needle, "%s", raised);
            if (st != LLMOPS_ERR_INVALID_ARG || !strstr(err.msg, needle)) {
                test_fail(__FILE__, __LINE__, "%s ctx %zu: jinja2 raises \"%s\", we give %s: %s", name, i, raised,
                          llmops_status_str(st), st ? err.msg : "(rendered)");
                bad++;
            } else {
                (*n_raise)++;
            }
        } else if (st == LLMOPS_OK) {
            test_fail(__FILE__, __LINE__, "%s ctx %zu: jinja2 fails (%s), we render", name, i, jerr ? jerr : "?");
            bad++;
        }
        llmops_buf_free(&out);
    }
    llmops_chat_template_free(t);
done:
    json_decref(want);
    json_decref(ctxs);
    free(text);
    return bad;
}

static const char *data_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 1024, "%s/tests/tokenizer/data/chat/%s", test_repo_root(), rel);
    return p;
}

/* ---- the oracle comparisons ------------------------------------------------------ */

TEST(chat_template_builtin_families_match_jinja2) {
    if (!have_oracle()) SKIP("python3-jinja2 missing (bash scripts/setup.sh)");
    int ok = 0, raised = 0, bad = 0;
    for (const char *const *nm = llmops_chat_template_builtin_names(); *nm; nm++) {
        char file[64];
        snprintf(file, sizeof file, "%s.jinja", *nm);
        /* the fixture is the same text as the built-in */
        size_t len;
        char *text = slurp(data_path(file), &len);
        CHECK_MSG(text && strlen(llmops_chat_template_builtin(*nm)) == len &&
                      memcmp(text, llmops_chat_template_builtin(*nm), len) == 0,
                  "fixture %s differs from the built-in", file);
        free(text);
        bad += compare_template(*nm, data_path(file), data_path("contexts.json"), &ok, &raised);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(ok > 50 && raised > 10);
}

static const char *const g_assets[] = {
    "CohereForAI-c4ai-command-r-plus-tool_use", "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "Qwen-Qwen2.5-7B-Instruct", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "fireworks-ai-llama-3-firefunction-v2",
    "google-gemma-2-2b-it", "llama-cpp-deepseek-r1", "meetkai-functionary-medium-v3.1",
    "meetkai-functionary-medium-v3.2", "meta-llama-Llama-3.1-8B-Instruct",
    "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct",
    "microsoft-Phi-3.5-mini-instruct", "mistralai-Mistral-Nemo-Instruct-2407",
};

static void check_assets(size_t from, size_t to) {
    if (!have_oracle()) SKIP("python3-jinja2 missing (bash scripts/setup.sh)");
    char rel[256];
    snprintf(rel, sizeof rel, "chat-templates/%s.jinja", g_assets[0]);
    if (!test_asset(rel)) SKIP("chat-template assets absent");
    int ok = 0, raised = 0, bad = 0;
    for (size_t i = from; i < to; i++) {
        snprintf(rel, sizeof rel, "chat-templates/%s.jinja", g_assets[i]);
        const char *path = test_asset(rel);
        CHECK_MSG(path != NULL, "missing asset %s", rel);
        bad += compare_template(g_assets[i], path, data_path("contexts.json"), &ok, &raised);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(ok > 0);
}

TEST(chat_template_assets_a_match_jinja2) { check_assets(0, 6); }
TEST(chat_template_assets_b_match_jinja2) { check_assets(6, 12); }
TEST(chat_template_assets_c_match_jinja2) { check_assets(12, 17); }

/* ---- language features, one small template each --------------------------------------------- */

TEST(chat_template_snippets_match_jinja2) {
    if (!have_oracle()) SKIP("python3-jinja2 missing (bash scripts/setup.sh)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, PYTHON " '%s/tests/tokenizer/render_jinja.py' --snippets '%s'", test_repo_root(),
             data_path("snippets.json"));
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    json_error_t je;
    json_t *want = json_loadf(p, 0, &je);
    pclose(p);
    json_t *snips = json_load_file(data_path("snippets.json"), 0, &je);
    CHECK(want && snips && json_array_size(want) == json_array_size(snips));
    int bad = 0, ok = 0;
    for (size_t i = 0; i < json_array_size(snips); i++) {
        json_t *s = json_array_get(snips, i), *w = json_array_get(want, i);
        const char *text = json_string_value(json_object_get(s, "template"));
        json_t *ctx = json_object_get(s, "context");
        json_t *full = json_pack("{s:[]}", "messages");
        json_object_update(full, ctx);
        llmops_error err = {0};
        llmops_chat_template *t = NULL;
        llmops_buf out;
        llmops_buf_init(&out, 1 << 20);
        llmops_status st = llmops_chat_template_compile(text, strlen(text), &t, &err);
        if (!st) st = render_ctx(t, full, &out, &err);
        const char *okv = json_string_value(json_object_get(w, "ok"));
        const char *raised = json_string_value(json_object_get(w, "raise"));
        if (okv) {
            size_t n = json_string_length(json_object_get(w, "ok"));
            if (st || out.len != n || memcmp(out.data, okv, n)) {
                test_fail(__FILE__, __LINE__, "snippet %zu %s\n      ours:   %s\n      jinja2: %s", i, text,
                          st ? err.msg : out.data, okv);
                bad++;
            } else {
                ok++;
            }
        } else if (raised ? (st != LLMOPS_ERR_INVALID_ARG || !strstr(err.msg, raised)) : st == LLMOPS_OK) {
            test_fail(__FILE__, __LINE__, "snippet %zu %s: jinja2 %s %s; we: %s", i, text, raised ? "raises" : "fails",
                      raised ? raised : json_string_value(json_object_get(w, "error")), st ? err.msg : out.data);
            bad++;
        }
        llmops_buf_free(&out);
        llmops_chat_template_free(t);
        json_decref(full);
    }
    json_decref(want);
    json_decref(snips);
    CHECK_EQ_INT(bad, 0);
    CHECK(ok > 50);
}

/* ---- errors name what and where ------------------------------------------------------------------ */

static llmops_status compile_str(const char *text, llmops_chat_template **t, llmops_error *err) {
    return llmops_chat_template_compile(text, strlen(text), t, err);
}

static llmops_status render_str(const char *text, const char *msgs_json, const llmops_chat_render_opts *o,
                                llmops_buf *out, llmops_error *err) {
    llmops_chat_template *t = NULL;
    llmops_status st = compile_str(text, &t, err);
    if (!st) st = llmops_chat_template_render_json(t, msgs_json, strlen(msgs_json), o, out, err);
    llmops_chat_template_free(t);
    return st;
}

TEST(chat_template_errors_have_line_and_column) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_chat_template *t = NULL;
    CHECK_ERR(compile_str("line one\n  {% include 'other.jinja' %}", &t, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "chat template 2:6: unsupported tag 'include'");
    CHECK_ERR(compile_str("{% call m() %}x{% endcall %}", &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "1:4: unsupported tag 'call'");
    CHECK_ERR(compile_str("{% for x in y recursive %}{% endfor %}", &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "recursive");
    CHECK_ERR(compile_str("{{ f(*args) }}", &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "1:6:");
    CHECK_ERR(compile_str("{% if x %}\nno end", &t, &err), LLMOPS_ERR_FORMAT, err, "expected 'endif'");
    CHECK_ERR(compile_str("{% frobnicate %}", &t, &err), LLMOPS_ERR_FORMAT, err, "1:4: encountered unknown tag 'frobnicate'");
    CHECK_ERR(compile_str("a\nb {{ x + }}", &t, &err), LLMOPS_ERR_FORMAT, err, "2:10: unexpected end of print statement");
    CHECK_ERR(compile_str("{{ 'unterminated }}", &t, &err), LLMOPS_ERR_FORMAT, err, "1:4: unterminated string");
    CHECK_ERR(compile_str("{{ (1 ] }}", &t, &err), LLMOPS_ERR_FORMAT, err, "unexpected ']', expected ')'");
    CHECK_ERR(compile_str("{# open comment", &t, &err), LLMOPS_ERR_FORMAT, err, "missing end of comment");
    CHECK_ERR(compile_str("{% break %}", &t, &err), LLMOPS_ERR_FORMAT, err, "outside of a for loop");
    CHECK_ERR(compile_str("ok \xff\xfe", &t, &err), LLMOPS_ERR_FORMAT, err, "1:4: invalid UTF-8");
    CHECK_ERR(compile_str("{{ 99999999999999999999 }}", &t, &err), LLMOPS_ERR_UNSUPPORTED, err, "64-bit");
    CHECK(t == NULL);

    /* render-time errors carry the position of the expression */
    llmops_buf out;
    llmops_buf_init(&out, 1 << 20);
    CHECK_ERR(render_str("x\n  {{ 'a' | wordwrap(5) }}", "[]", NULL, &out, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "chat template 2:12: unsupported filter 'wordwrap'");
    CHECK_ERR(render_str("{{ 'a'.zfill(3) }}", "[]", NULL, &out, &err), LLMOPS_ERR_UNSUPPORTED, err, "unsupported method 'zfill'");
    CHECK_ERR(render_str("{{ 'a' | frob }}", "[]", NULL, &out, &err), LLMOPS_ERR_FORMAT, err, "no filter named 'frob'");
    CHECK_ERR(render_str("{{ '%s' % 1 }}", "[]", NULL, &out, &err), LLMOPS_ERR_UNSUPPORTED, err, "printf-style");
    CHECK_ERR(render_str("{{ messages[5].content }}", "[]", NULL, &out, &err), LLMOPS_ERR_FORMAT, err, "1:15: 'list object' has no attribute 5");
    CHECK_ERR(render_str("{{ 9223372036854775807 + 1 }}", "[]", NULL, &out, &err), LLMOPS_ERR_UNSUPPORTED, err, "64-bit");
    CHECK_ERR(render_str("{{ x }}", "{\"not\": \"a list\"}", NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err, "JSON array");
    CHECK_ERR(render_str("{{ x }}", "[", NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err, "messages");
    /* printing what jinja2 prints with a memory address is refused, not guessed */
    CHECK_ERR(render_str("{{ [1] | map('string') }}", "[]", NULL, &out, &err), LLMOPS_ERR_UNSUPPORTED, err, "generator");
    CHECK_EQ_INT(out.len, 0); /* failed renders leave the output alone */
    llmops_buf_free(&out);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(chat_template_raise_exception_message) {
    llmops_error err = {0};
    llmops_chat_template *t = NULL;
    llmops_buf out;
    llmops_buf_init(&out, 1 << 20);
    const char *text = llmops_chat_template_builtin("mistral");
    CHECK_OK(compile_str(text, &t, &err), err);
    llmops_chat_message bad[] = {{"user", "a"}, {"user", "b"}};
    CHECK_ERR(llmops_chat_template_render(t, bad, 2, NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err,
              "raise_exception: Conversation roles must alternate user/assistant/user/assistant/...");
    llmops_chat_message sys[] = {{"system", "s"}, {"user", "b"}};
    CHECK_ERR(llmops_chat_template_render(t, sys, 2, NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err,
              "Conversation roles must alternate");
    CHECK_EQ_INT(out.len, 0);
    llmops_chat_template_free(t);
    llmops_buf_free(&out);
}

/* ---- the C API: struct messages, options, builtins ------------------------------------------------------- */

TEST(chat_template_struct_messages_and_builtins) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    CHECK(llmops_chat_template_builtin("nope") == NULL);
    CHECK(llmops_chat_template_builtin(NULL) == NULL);
    CHECK(llmops_chat_template_builtin("ChatML") == llmops_chat_template_builtin("chatml"));
    int count = 0;
    for (const char *const *nm = llmops_chat_template_builtin_names(); *nm; nm++, count++) {
        llmops_chat_template *t = NULL;
        const char *text = llmops_chat_template_builtin(*nm);
        CHECK_MSG(text != NULL, "%s", *nm);
        CHECK_OK(compile_str(text, &t, &err), err);
        llmops_chat_template_free(t);
    }
    CHECK_EQ_INT(count, 7);

    llmops_chat_template *t = NULL;
    CHECK_OK(compile_str(llmops_chat_template_builtin("chatml"), &t, &err), err);
    llmops_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi {{ x }} ünï"}};
    llmops_chat_render_opts o = {.add_generation_prompt = 1};
    llmops_buf out;
    llmops_buf_init(&out, 1 << 20);
    CHECK_OK(llmops_chat_template_render(t, msgs, 2, &o, &out, &err), err);
    CHECK_EQ_STR(out.data, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi {{ x }} ünï<|im_end|>\n"
                           "<|im_start|>assistant\n");
    /* appends to what the buffer holds */
    CHECK_OK(llmops_chat_template_render(t, msgs + 1, 1, NULL, &out, &err), err);
    CHECK(strstr(out.data, "<|im_start|>assistant\n<|im_start|>system\nYou are a helpful assistant.") != NULL);
    /* the caller's cap bounds the output */
    llmops_buf small;
    llmops_buf_init(&small, 10);
    CHECK_ERR(llmops_chat_template_render(t, msgs, 2, &o, &small, &err), LLMOPS_ERR_LIMIT, err, "");
    CHECK_EQ_INT(small.len, 0);
    llmops_buf_free(&small);
    /* invalid UTF-8 in a message is refused */
    llmops_chat_message bad[] = {{"user", "\xc3("}};
    CHECK_ERR(llmops_chat_template_render(t, bad, 1, NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err, "UTF-8");
    CHECK_ERR(llmops_chat_template_render(NULL, msgs, 1, NULL, &out, &err), LLMOPS_ERR_INVALID_ARG, err, "missing");
    /* extra variables reach the template and override the defaults */
    llmops_chat_template *t2 = NULL;
    CHECK_OK(compile_str("{{ bos_token }}|{{ tools | length }}|{{ date_string }}|{{ strftime_now('%Y') }}", &t2, &err), err);
    llmops_chat_render_opts o2 = {.bos_token = "<s>", .extra_json = "{\"tools\": [1, 2], \"date_string\": \"today\"}",
                                  .now = 1721995200};
    llmops_buf_free(&out);
    llmops_buf_init(&out, 1 << 20);
    CHECK_OK(llmops_chat_template_render(t2, NULL, 0, &o2, &out, &err), err);
    CHECK_EQ_STR(out.data, "<s>|2|today|2024");
    o2.extra_json = "[1]";
    CHECK_ERR(llmops_chat_template_render(t2, NULL, 0, &o2, &out, &err), LLMOPS_ERR_INVALID_ARG, err, "JSON object");
    llmops_chat_template_free(t2);
    llmops_chat_template_free(t);
    llmops_chat_template_free(NULL);
    llmops_buf_free(&out);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- hostile templates are bounded ------------------------------------------------------------------------- */

TEST(chat_template_limits) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    llmops_chat_template *t = NULL;
    llmops_buf out;
    llmops_buf_init(&out, 1 << 26);
    /* nesting beyond 100 levels is refused at compile time */
    char deep[4096];
    size_t o = 0;
    o += (size_t)snprintf(deep + o, sizeof deep - o, "{{ ");
    for (int i = 0; i < 300; i++) deep[o++] = '(';
    deep[o++] = '1';
    for (int i = 0; i < 300; i++) deep[o++] = ')';
    snprintf(deep + o, sizeof deep - o, " }}");
    CHECK_ERR(compile_str(deep, &t, &err), LLMOPS_ERR_LIMIT, err, "nested deeper");
    o = 0;
    for (int i = 0; i < 200; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "{%% if 1 %%}");
    CHECK_ERR(compile_str(deep, &t, &err), LLMOPS_ERR_LIMIT, err, "nested deeper");
    o = 0;
    o += (size_t)snprintf(deep + o, sizeof deep - o, "{{ ");
    for (int i = 0; i < 1000; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "-");
    snprintf(deep + o, sizeof deep - o, "1 }}");
    CHECK_ERR(compile_str(deep, &t, &err), LLMOPS_ERR_LIMIT, err, "nested deeper");
    /* unbounded recursion, loops, output and memory stop at their caps */
    CHECK_ERR(render_str("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "[]", NULL, &out, &err),
              LLMOPS_ERR_LIMIT, err, "deeper than");
    llmops_chat_render_opts small = {.max_steps = 1000000, .max_output = 1 << 20, .max_memory = 16 << 20};
    CHECK_ERR(render_str("{% set r = range(1000) %}{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}{% endfor %}", "[]", &small,
                         &out, &err), LLMOPS_ERR_LIMIT, err, "steps");
    CHECK_ERR(render_str("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "[]", &small, &out, &err),
              LLMOPS_ERR_LIMIT, err, "cap");
    CHECK_ERR(render_str("{{ 'x' * 100000000000 }}", "[]", &small, &out, &err), LLMOPS_ERR_LIMIT, err, "cap");
    CHECK_ERR(render_str("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s + 'xxxxxxxxxxxxxxxx' %}"
                         "{% endfor %}", "[]", &small, &out, &err), LLMOPS_ERR_LIMIT, err, "");
    CHECK_ERR(render_str("{{ range(100001) | list | length }}", "[]", NULL, &out, &err), LLMOPS_ERR_LIMIT, err, "MAX_RANGE");
    CHECK_EQ_INT(out.len, 0);
    llmops_buf_free(&out);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* ---- allocation failure: every allocation of compile + render may fail cleanly ------------------------------------ */

TEST(chat_template_alloc_failure_injection) {
    static const char text[] =
        "{%- macro fmt(m, i) -%}{{ i }}:{{ m.role | upper }}={{ m.content | trim | tojson }}{%- endmacro -%}\n"
        "{%- set ns = namespace(n=0, seen=[]) -%}\n"
        "{%- for m in messages if m.role != 'skip' -%}\n"
        "  {%- set ns.n = ns.n + 1 -%}{%- set ns.seen = ns.seen + [m.role] -%}\n"
        "  {{ fmt(m, loop.index) }}{% if not loop.last %}, {% endif %}\n"
        "{%- endfor -%}\n"
        "|{{ ns.seen | unique | join('/') }}|{{ tools | map(attribute='name') | list }}|{{ {'a': [1, 2.5]} | tojson(indent=1) }}"
        "{%- if add_generation_prompt %}|{{ 'Assistant: ' ~ ns.n }}{% endif %}";
    static const char msgs[] = "[{\"role\":\"system\",\"content\":\" sys \"},{\"role\":\"user\",\"content\":\"hé\"},"
                               "{\"role\":\"skip\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"ok\"}]";
    llmops_chat_render_opts o = {.add_generation_prompt = 1, .extra_json = "{\"tools\":[{\"name\":\"t1\"},{\"name\":\"t2\"}]}"};
    long live = llmops_alloc_live();
    int successes = 0;
    for (long n = 0; n < 100000; n++) {
        llmops_error err = {0};
        llmops_buf out;
        llmops_buf_init(&out, 1 << 20);
        llmops_alloc_fail_nth(n);
        llmops_chat_template *t = NULL;
        llmops_status st = llmops_chat_template_compile(text, sizeof text - 1, &t, &err);
        if (!st) st = llmops_chat_template_render_json(t, msgs, sizeof msgs - 1, &o, &out, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        llmops_chat_template_free(t);
        CHECK_MSG(st == LLMOPS_OK || st == LLMOPS_ERR_NOMEM, "n=%ld: %s: %s", n, llmops_status_str(st), err.msg);
        if (st == LLMOPS_OK)
            CHECK_EQ_STR(out.data, "1:SYSTEM=\"sys\", 2:USER=\"hé\", 3:ASSISTANT=\"ok\"|system/user/assistant|['t1', 't2']|"
                                   "{\n \"a\": [\n  1,\n  2.5\n ]\n}|Assistant: 3");
        llmops_buf_free(&out);
        CHECK_MSG(llmops_alloc_live() == live, "n=%ld leaked %ld", n, llmops_alloc_live() - live);
        if (!fired) {
            CHECK(st == LLMOPS_OK);
            successes++;
            break;
        }
    }
    CHECK_EQ_INT(successes, 1);
}
