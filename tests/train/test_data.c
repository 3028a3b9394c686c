/*
 * The data pipeline (llmops/train_data.h), checked against independent
 * references: Python's csv module for CSV parsing, Python's jinja2
 * (tests/tokenizer/render_jinja.py) for chat rendering, the Alpaca prompt
 * written out here, the whole-text tokenization for packing, and set
 * arithmetic for splits, epochs, resumption and sharding.
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "../unit/test.h"
#include "base/json.h"
#include "llmops/alloc.h"
#include "llmops/chat_template.h"
#include "llmops/log.h"
#include "llmops/tokenizer.h"
#include "llmops/train_data.h"
#include "train/data_internal.h"

#define PYTHON "/usr/bin/python3"

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static llmops_tokenizer *stories_tok(void) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", test_repo_root());
    llmops_tokenizer *t = NULL;
    llmops_error err = {0};
    if (llmops_tokenizer_load(path, &t, &err) != LLMOPS_OK) {
        fprintf(stderr, "    tokenizer: %s\n", err.msg);
        return NULL;
    }
    return t;
}

/* Decodes ids (flags as llmops_detokenize) into a malloc'd string. */
static char *decode(const llmops_tokenizer *t, const int32_t *ids, size_t n, unsigned flags) {
    llmops_buf b;
    llmops_buf_init(&b, 1 << 24);
    llmops_error err = {0};
    if (llmops_detokenize(t, ids, n, flags, &b, &err) != LLMOPS_OK) {
        llmops_buf_free(&b);
        return NULL;
    }
    char *s = strdup(b.data ? b.data : "");
    llmops_buf_free(&b);
    return s;
}

static llmops_dataset *load1(const char *path, const llmops_tokenizer *t, const llmops_data_params *p,
                             llmops_error *err) {
    llmops_dataset *ds = NULL;
    const char *src[] = {path};
    if (llmops_dataset_load(src, 1, t, NULL, p, &ds, err) != LLMOPS_OK) return NULL;
    return ds;
}

/* ---- CSV against Python's csv module -------------------------------------------------- */

static const char *const csv_cases[] = {
    "a,b,c\n1,2,3\n",
    "x,\"y \"\"quoted\"\" z\",w\r\n\"multi\nline\",,\"\"\r\n",
    ",,\n,\n\"\",\n",
    "a,b\r\nc,d\r\ne,f",
    "\"a\r\nb\",c\r\n\"\"\"\",\"x,y\"\n",
    "h1,h2\n\nv1,v2\n\n\n",
    "caf\xc3\xa9,\"\xe2\x96\x81 \"\"\"\"\"\n",
    "a\"b,c\n",
    "one\rtwo\r\"th\rree\"\r",
    "trailing,\n",
    /* malformed: both must refuse */
    "\"abc\n",
    "a,\"b\"c,d\n",
    "\"x\"\"\n",
};

/* Our parse of the whole input as JSON: [[fields...], ...] or "error". */
static char *our_csv(const char *in) {
    llmops_csv_record r;
    llmops_csv_record_init(&r);
    llmops_buf out;
    llmops_buf_init(&out, 1 << 20);
    size_t pos = 0, n = strlen(in);
    uint64_t line = 1;
    llmops_error err = {0};
    json_t *arr = json_array();
    llmops_status st;
    while ((st = llmops_csv_next(in, n, &pos, &line, ',', &r, &err)) == LLMOPS_OK) {
        json_t *row = json_array();
        for (size_t i = 0; i < r.n; i++) json_array_append_new(row, json_stringn(r.text.data + r.off[i], r.len[i]));
        json_array_append_new(arr, row);
    }
    char *s;
    if (st != LLMOPS_ERR_NOT_FOUND) s = strdup("\"error\"");
    else s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    llmops_csv_record_free(&r);
    llmops_buf_free(&out);
    return s;
}

TEST(data_csv_matches_python_csv) {
    if (system(PYTHON " -c 'import csv' >/dev/null 2>&1") != 0) SKIP("no python3");
    llmops_json_init();
    for (size_t c = 0; c < sizeof csv_cases / sizeof *csv_cases; c++) {
        const char *path = test_tmpfile("case.csv");
        CHECK(write_file(path, csv_cases[c]));
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 PYTHON " -c \"import csv,json,sys\n"
                        "try:\n"
                        "  rows=[r for r in csv.reader(open(sys.argv[1],newline='',encoding='utf-8'),strict=True) if r]\n"
                        "  print(json.dumps(rows,separators=(',',':')))\n"
                        "except csv.Error:\n"
                        "  print(json.dumps('error'))\n\" '%s'",
                 path);
        char *want = test_run_capture(cmd);
        CHECK_MSG(want != NULL, "python failed on case %zu", c);
        want[strcspn(want, "\n")] = 0;
        char *got = our_csv(csv_cases[c]);
        json_error_t je;
        json_t *jg = got ? json_loads(got, JSON_DECODE_ANY, &je) : NULL, *jw = json_loads(want, JSON_DECODE_ANY, &je);
        int same = jg && jw && json_equal(jg, jw);
        json_decref(jg);
        json_decref(jw);
        CHECK_MSG(same, "case %zu: ours %s, python %s", c, got ? got : "?", want);
        free(got);
        free(want);
    }
}

TEST(data_csv_bad_quote_names_file_line_field) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *path = test_tmpfile("bad.csv");
    CHECK(write_file(path, "instruction,input,output\n\"a\",\"\",\"b\"\n\"c\",\"x\"y,\"d\"\n\"e\",,\"f\"\n"));
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 64;
    p.bad_rows = LLMOPS_DATA_BAD_FAIL;
    llmops_error err = {0};
    llmops_dataset *ds = NULL;
    const char *src[] = {path};
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_FORMAT, err, "bad.csv:3: field 2");
    p.bad_rows = LLMOPS_DATA_BAD_SKIP;
    p.max_logged = 0;
    ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    llmops_data_stats s = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN);
    CHECK_EQ_INT(s.n_skipped, 1);
    CHECK_EQ_INT(s.n_examples, 2);
    CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_ALPACA);
    llmops_dataset_free(ds);
    /* a missing column is a configuration error naming the column */
    CHECK(write_file(path, "instruction,answer\na,b\n"));
    p.schema = LLMOPS_DATA_SCHEMA_ALPACA;
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_CONFIG, err, "no column \"output\"");
    llmops_tokenizer_free(t);
}

/* ---- bad JSON records ----------------------------------------------------------------- */

TEST(data_jsonl_bad_rows_skip_or_fail) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *path = test_tmpfile("bad.jsonl");
    CHECK(write_file(path, "{\"text\": \"Once upon a time\"}\n"
                           "{\"text\": \"There was a cat\"}\n"
                           "{\"text\": \"broken\n"
                           "{\"other\": \"no text here\"}\n"
                           "\n"
                           "{\"text\": 42}\n"
                           "{\"text\": \"The end\"}\n"));
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 32;
    p.max_logged = 0;
    llmops_error err = {0};
    llmops_dataset *ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    llmops_data_stats s = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN);
    CHECK_EQ_INT(s.n_skipped, 3);
    CHECK_EQ_INT(s.n_examples, 3);
    CHECK_EQ_INT(s.n_rows, 3);
    llmops_dataset_free(ds);

    p.bad_rows = LLMOPS_DATA_BAD_FAIL;
    const char *src[] = {path};
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_FORMAT, err, "bad.jsonl:3: invalid JSON");
    CHECK(write_file(path, "{\"text\": \"ok\"}\n{\"other\": 1}\n"));
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_FORMAT, err,
              "bad.jsonl:2: missing field \"text\"");
    CHECK(write_file(path, "{\"text\": \"ok\"}\n{\"text\": \"fine\"}\n{\"text\": [1]}\n"));
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_FORMAT, err,
              "bad.jsonl:3: field \"text\": expected a string, got array");
    /* a configured field name */
    CHECK(write_file(path, "{\"body\": \"Once upon a time\"}\n"));
    p.text_field = "body";
    p.schema = LLMOPS_DATA_SCHEMA_TEXT;
    ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_examples, 1);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

/* ---- Alpaca masks --------------------------------------------------------------------- */

/* The Stanford Alpaca prompts, written out independently of src/train/data.c. */
static void alpaca_prompt(char *out, size_t cap, const char *instr, const char *input) {
    if (input && *input)
        snprintf(out, cap,
                 "Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.\n\n"
                 "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n",
                 instr, input);
    else
        snprintf(out, cap,
                 "Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\n%s\n\n### Response:\n",
                 instr);
}

TEST(data_alpaca_masks_prompt) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *path = test_tmpfile("alpaca.jsonl");
    const char *rec[][3] = {{"Tell a story about a dog.", "", "The dog ran to the park. He was happy."},
                            {"Add the numbers.", "2 and 3", "5"},
                            {"Say hi.", NULL, "Hi there!"}};
    CHECK(write_file(path, "{\"instruction\": \"Tell a story about a dog.\", \"input\": \"\", \"output\": \"The dog ran "
                           "to the park. He was happy.\"}\n"
                           "{\"instruction\": \"Add the numbers.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n"
                           "{\"instruction\": \"Say hi.\", \"output\": \"Hi there!\"}\n"));
    for (int mask = 1; mask >= 0; mask--) {
        llmops_data_params p;
        llmops_data_params_init(&p);
        p.seq_len = 256;
        p.mask_prompt = mask;
        llmops_error err = {0};
        llmops_dataset *ds = load1(path, t, &p, &err);
        CHECK_MSG(ds, "%s", err.msg);
        CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_ALPACA);
        CHECK_EQ_INT(llmops_dataset_n_rows(ds, LLMOPS_SPLIT_TRAIN), 3);
        for (int r = 0; r < 3; r++) {
            int32_t tokens[256], targets[256];
            int64_t nt = 0;
            CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, r, tokens, targets, &nt, &err), err);
            char prompt[2048], full[4096];
            alpaca_prompt(prompt, sizeof prompt, rec[r][0], rec[r][1]);
            snprintf(full, sizeof full, "%s%s", prompt, rec[r][2]);
            /* the row is [BOS] tokens(prompt + output) [EOS] */
            llmops_tokens want = {0};
            CHECK_OK(llmops_tokenize(t, full, strlen(full), LLMOPS_TOKENIZE_ADD_SPECIAL, &want, &err), err);
            CHECK_OK(llmops_tokens_push(&want, llmops_tokenizer_eos(t), &err), err);
            CHECK(want.n <= 257);
            for (size_t i = 0; i < 256; i++) {
                int32_t tk = i < want.n ? want.ids[i] : llmops_dataset_pad_id(ds);
                CHECK_EQ_INT(tokens[i], tk);
            }
            /* trained targets: exactly output + EOS; masked inputs: exactly the prompt */
            int32_t tr[256], pr[256];
            size_t ntr = 0, npr = 0, first = 0;
            for (size_t i = 0; i + 1 < want.n; i++) {
                if (targets[i] >= 0) {
                    CHECK_EQ_INT(targets[i], want.ids[i + 1]);
                    if (!ntr) first = i + 1;
                    tr[ntr++] = targets[i];
                } else {
                    CHECK_MSG(ntr == 0, "row %d: a masked target after trained ones at %zu", r, i);
                }
            }
            for (size_t i = 1; i < first; i++) pr[npr++] = tokens[i];
            CHECK_EQ_INT(nt, (int64_t)ntr);
            if (mask) {
                char *got = decode(t, tr, ntr, 0), *gotp = decode(t, pr, npr, 0);
                char want_out[1024];
                snprintf(want_out, sizeof want_out, "%s</s>", rec[r][2]);
                CHECK_EQ_STR(got, want_out);
                CHECK_EQ_STR(gotp, prompt);
                free(got);
                free(gotp);
            } else {
                CHECK_EQ_INT(ntr, want.n - 1);
            }
            llmops_tokens_free(&want);
        }
        llmops_dataset_free(ds);
    }
    llmops_tokenizer_free(t);
}

/* ---- chat masks against jinja2 ---------------------------------------------------------- */

TEST(data_chat_masks_assistant_turns) {
    if (system(PYTHON " -c 'import jinja2' >/dev/null 2>&1") != 0) SKIP("python3-jinja2 missing");
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *lines[2] = {
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": "
        "\"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"Tell me a story.\"}, {\"role\": "
        "\"assistant\", \"content\": \"Once upon a time, a cat sat.\"}]",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]"};
    char data[4096], ctx[4096];
    snprintf(data, sizeof data, "%s}\n%s}\n", lines[0], lines[1]);
    /* the jinja2 contexts: the same messages plus the tokenizer's special-token texts */
    snprintf(ctx, sizeof ctx, "[%s, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}, %s, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}]",
             lines[0], lines[1]);
    const char *path = test_tmpfile("chat.jsonl");
    CHECK(write_file(path, data));
    json_error_t je;
    json_t *convs = json_loads(ctx, 0, &je);
    CHECK(convs);
    const char *names[] = {"llama2", "chatml"};
    for (int k = 0; k < 2; k++) {
        const char *tpath = test_tmpfile("tmpl.jinja"), *cpath = test_tmpfile("ctx.json");
        CHECK(write_file(tpath, llmops_chat_template_builtin(names[k])));
        CHECK(write_file(cpath, ctx));
        char cmd[4096];
        snprintf(cmd, sizeof cmd, PYTHON " '%s/tests/tokenizer/render_jinja.py' '%s' '%s'", test_repo_root(), tpath, cpath);
        char *out = test_run_capture(cmd);
        CHECK(out);
        json_t *res = json_loads(out, 0, &je);
        free(out);
        CHECK(json_is_array(res) && json_array_size(res) == 2);

        llmops_data_params p;
        llmops_data_params_init(&p);
        p.seq_len = 512;
        p.chat_template = names[k];
        llmops_error err = {0};
        llmops_dataset *ds = load1(path, t, &p, &err);
        CHECK_MSG(ds, "%s", err.msg);
        CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_CHAT);
        for (int r = 0; r < 2; r++) {
            const char *rendered = json_string_value(json_object_get(json_array_get(res, (size_t)r), "ok"));
            CHECK_MSG(rendered, "jinja2 did not render conversation %d", r);
            int32_t tokens[512], targets[512];
            CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, r, tokens, targets, NULL, &err), err);
            /* the row is the tokenization of jinja2's text (BOS added only when the template did not) */
            llmops_tokens want = {0};
            if (strncmp(rendered, "<s>", 3) != 0) CHECK_OK(llmops_tokens_push(&want, llmops_tokenizer_bos(t), &err), err);
            CHECK_OK(llmops_tokenize(t, rendered, strlen(rendered), LLMOPS_TOKENIZE_PARSE_SPECIAL, &want, &err), err);
            CHECK(want.n < 512);
            for (size_t i = 0; i < want.n; i++) CHECK_EQ_INT(tokens[i], want.ids[i]);
            /* each run of trained targets decodes to one assistant content (+ " </s>" for llama2) */
            json_t *conv = json_object_get(json_array_get(convs, (size_t)r), "messages");
            size_t i = 0, a = 0;
            for (size_t m = 0; m < json_array_size(conv); m++) {
                json_t *msg = json_array_get(conv, m);
                if (strcmp(json_string_value(json_object_get(msg, "role")), "assistant")) continue;
                while (i < 511 && targets[i] < 0) i++;
                CHECK_MSG(i < 511, "conversation %d: no trained run for assistant turn %zu", r, a);
                int32_t run[512];
                size_t n = 0;
                while (i < 511 && targets[i] >= 0) {
                    CHECK_EQ_INT(targets[i], want.ids[i + 1]);
                    run[n++] = targets[i++];
                }
                char *got = decode(t, run, n, LLMOPS_DETOKENIZE_KEEP_LEADING_SPACE);
                char want_s[1024];
                snprintf(want_s, sizeof want_s, "%s%s", json_string_value(json_object_get(msg, "content")),
                         k == 0 ? " </s>" : "");
                const char *g = got;
                while (*g == ' ') g++;
                CHECK_MSG(!strcmp(g, want_s), "%s conversation %d turn %zu: trained \"%s\", want \"%s\"", names[k], r,
                          a, got, want_s);
                free(got);
                a++;
            }
            while (i < 511 && targets[i] < 0) i++;
            CHECK_MSG(i == 511, "%s conversation %d: trained targets after the last assistant turn", names[k], r);
            llmops_tokens_free(&want);
        }
        llmops_dataset_free(ds);
        json_decref(res);

        /* mask_prompt = 0 trains every target */
        p.mask_prompt = 0;
        ds = load1(path, t, &p, &err);
        CHECK_MSG(ds, "%s", err.msg);
        llmops_data_stats s = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN);
        CHECK_EQ_INT(s.n_trained, s.n_tokens - s.n_rows);
        llmops_dataset_free(ds);
    }
    json_decref(convs);
    llmops_tokenizer_free(t);
}

/* ---- packing ----------------------------------------------------------------------------- */

TEST(data_text_windows_cover_the_stream) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *text =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.\n"
        "One day, she saw a big red ball in the park. She ran to get it, but a dog took it first!\n"
        "Lily laughed and played with the dog all day. The end.\n";
    const char *path = test_tmpfile("story.txt");
    CHECK(write_file(path, text));
    for (int S = 7; S <= 64; S += 19) {
        llmops_data_params p;
        llmops_data_params_init(&p);
        p.seq_len = S;
        llmops_error err = {0};
        llmops_dataset *ds = load1(path, t, &p, &err);
        CHECK_MSG(ds, "%s", err.msg);
        llmops_tokens want = {0};
        CHECK_OK(llmops_tokenize(t, text, strlen(text), LLMOPS_TOKENIZE_ADD_SPECIAL, &want, &err), err);
        CHECK_OK(llmops_tokens_push(&want, llmops_tokenizer_eos(t), &err), err);
        int64_t rows = llmops_dataset_n_rows(ds, LLMOPS_SPLIT_TRAIN);
        CHECK_EQ_INT(rows, ((int64_t)want.n - 1 + S - 1) / S);
        int32_t *tk = malloc((size_t)S * 4), *tg = malloc((size_t)S * 4);
        int64_t trained = 0;
        for (int64_t r = 0; r < rows; r++) {
            CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, r, tk, tg, NULL, &err), err);
            for (int i = 0; i < S; i++) {
                size_t at = (size_t)(r * S + i);
                if (at < want.n) CHECK_EQ_INT(tk[i], want.ids[at]);
                else CHECK_EQ_INT(tk[i], llmops_dataset_pad_id(ds));
                CHECK_EQ_INT(tg[i], at + 1 < want.n ? want.ids[at + 1] : -1);
                trained += tg[i] >= 0;
            }
        }
        CHECK_EQ_INT(trained, (int64_t)want.n - 1); /* every token predicted exactly once */
        CHECK_EQ_INT(llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_trained, trained);
        free(tk);
        free(tg);
        llmops_tokens_free(&want);
        llmops_dataset_free(ds);
    }
    llmops_tokenizer_free(t);
}

TEST(data_pack_examples_and_truncate) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *path = test_tmpfile("pc.jsonl");
    CHECK(write_file(path, "{\"prompt\": \"Q: a\\nA:\", \"completion\": \" yes\"}\n"
                           "{\"prompt\": \"Q: b\\nA:\", \"completion\": \" no\"}\n"
                           "{\"prompt\": \"Q: c\\nA:\", \"completion\": \" maybe\"}\n"
                           "{\"prompt\": \"Q: a very long question that goes on and on and on\\nA:\", \"completion\": "
                           "\" and a very long answer that also goes on and on and on and on\"}\n"));
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 24;
    llmops_error err = {0};
    llmops_dataset *ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_COMPLETION);
    llmops_data_stats s1 = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN);
    CHECK_EQ_INT(s1.n_rows, 4);
    CHECK_EQ_INT(s1.n_truncated, 1);
    llmops_dataset_free(ds);
    p.pack = 1;
    ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    llmops_data_stats s2 = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN);
    CHECK(s2.n_rows < s1.n_rows);
    CHECK_EQ_INT(s2.n_examples, 4);
    CHECK_EQ_INT(s2.n_truncated, 1);
    CHECK_EQ_INT(s2.n_trained, s1.n_trained); /* packing keeps every trained target */
    /* a packed row: the first example's tokens, then the second's from BOS on */
    int32_t tk[24], tg[24];
    CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, 0, tk, tg, NULL, &err), err);
    int bos_seen = 0;
    for (int i = 1; i < 24; i++) bos_seen += tk[i] == llmops_tokenizer_bos(t);
    CHECK(bos_seen >= 1);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

/* ---- split, shuffle, resume, shard ---------------------------------------------------------- */

/* 60 one-line documents "item N ..." */
static const char *make_items(int n) {
    const char *path = test_tmpfile("items.jsonl");
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    for (int i = 0; i < n; i++) fprintf(f, "{\"text\": \"item %d is here\"}\n", i);
    fclose(f);
    return path;
}

/* Identifies a row by its decoded text: the item number. */
static int item_of(const llmops_tokenizer *t, const int32_t *tk, int S) {
    char *s = decode(t, tk, (size_t)S, LLMOPS_DETOKENIZE_SKIP_SPECIAL);
    int v = -1;
    const char *p = s ? strstr(s, "item ") : NULL;
    if (p) v = (int)strtol(p + 5, NULL, 10);
    free(s);
    return v;
}

TEST(data_split_shuffle_resume_shard) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const int N = 60, S = 12;
    const char *path = make_items(N);
    CHECK(path);
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = S;
    p.val_ratio = 0.25;
    p.seed = 7;
    llmops_error err = {0};
    llmops_dataset *a = load1(path, t, &p, &err), *b = load1(path, t, &p, &err);
    CHECK_MSG(a && b, "%s", err.msg);
    int64_t ntr = llmops_dataset_n_rows(a, LLMOPS_SPLIT_TRAIN), nva = llmops_dataset_n_rows(a, LLMOPS_SPLIT_VAL);
    CHECK_EQ_INT(ntr + nva, N);
    CHECK_EQ_INT(nva, 15);
    int seen[60] = {0};
    int32_t tk[4 * 12], tg[4 * 12];
    for (int sp = 0; sp < 2; sp++)
        for (int64_t i = 0; i < llmops_dataset_n_rows(a, (llmops_data_split)sp); i++) {
            CHECK_OK(llmops_dataset_row(a, (llmops_data_split)sp, i, tk, tg, NULL, &err), err);
            int it = item_of(t, tk, S);
            CHECK(it >= 0 && it < N);
            seen[it] += 1 + sp * 10; /* train 1, val 11 */
        }
    for (int i = 0; i < N; i++) CHECK_MSG(seen[i] == 1 || seen[i] == 11, "item %d seen %d", i, seen[i]);
    /* another seed, another split */
    llmops_data_params p2 = p;
    p2.seed = 8;
    llmops_dataset *c = load1(path, t, &p2, &err);
    CHECK(c);
    int differs = 0;
    for (int64_t i = 0; i < nva; i++) {
        int32_t tk2[12], tg2[12];
        CHECK_OK(llmops_dataset_row(a, LLMOPS_SPLIT_VAL, i, tk, tg, NULL, &err), err);
        CHECK_OK(llmops_dataset_row(c, LLMOPS_SPLIT_VAL, i, tk2, tg2, NULL, &err), err);
        differs |= item_of(t, tk, S) != item_of(t, tk2, S);
    }
    CHECK(differs);
    llmops_dataset_free(c);

    /* epochs: every train row exactly once per epoch, a new order each epoch */
    const int B = 4;
    int order[3][60];
    for (int e = 0; e < 3; e++) {
        int count[60] = {0};
        for (int64_t k = 0; k < ntr; k++) {
            int64_t row = llmops_dataset_order(a, LLMOPS_SPLIT_TRAIN, (llmops_data_pos){e, k});
            CHECK(row >= 0 && row < ntr);
            count[row]++;
            order[e][k] = (int)row;
        }
        for (int64_t k = 0; k < ntr; k++) CHECK_EQ_INT(count[k], 1);
    }
    CHECK(memcmp(order[0], order[1], (size_t)ntr * sizeof(int)) != 0);
    /* batches follow that order across epoch boundaries */
    int64_t walked = 0;
    for (int step = 0; step < 25; step++) {
        llmops_data_batch bi;
        CHECK_OK(llmops_dataset_next_batch(a, LLMOPS_SPLIT_TRAIN, B, 0, 1, tk, tg, &bi, &err), err);
        CHECK_EQ_INT(bi.n_rows, B);
        for (int r = 0; r < B; r++, walked++) {
            int64_t e = walked / ntr, k = walked % ntr;
            int32_t rt[12], rg[12];
            CHECK_OK(llmops_dataset_row(a, LLMOPS_SPLIT_TRAIN, order[e][k], rt, rg, NULL, &err), err);
            CHECK(!memcmp(rt, tk + r * S, sizeof rt) && !memcmp(rg, tg + r * S, sizeof rg));
        }
    }
    /* resume: b jumps to a's position and then sees the same batches */
    llmops_data_pos pos = llmops_dataset_get_pos(a, LLMOPS_SPLIT_TRAIN);
    CHECK_EQ_INT(pos.epoch * ntr + pos.index, 100);
    CHECK_OK(llmops_dataset_set_pos(b, LLMOPS_SPLIT_TRAIN, pos, &err), err);
    for (int step = 0; step < 12; step++) {
        int32_t tk2[4 * 12], tg2[4 * 12];
        llmops_data_batch b1, b2;
        CHECK_OK(llmops_dataset_next_batch(a, LLMOPS_SPLIT_TRAIN, B, 0, 1, tk, tg, &b1, &err), err);
        CHECK_OK(llmops_dataset_next_batch(b, LLMOPS_SPLIT_TRAIN, B, 0, 1, tk2, tg2, &b2, &err), err);
        CHECK(!memcmp(tk, tk2, sizeof tk) && !memcmp(tg, tg2, sizeof tg));
        CHECK_EQ_INT(b1.epoch, b2.epoch);
    }
    CHECK_ERR(llmops_dataset_set_pos(b, LLMOPS_SPLIT_TRAIN, (llmops_data_pos){0, ntr}, &err), LLMOPS_ERR_INVALID_ARG,
              err, "outside");

    /* sharding: ranks 0..2 of 3 with a global batch of 5 make up the single-process batch */
    CHECK_OK(llmops_dataset_set_pos(a, LLMOPS_SPLIT_TRAIN, (llmops_data_pos){0, 0}, &err), err);
    const int G = 5, W = 3;
    for (int step = 0; step < 20; step++) {
        int32_t gt[5 * 12], gg[5 * 12];
        llmops_data_batch g1;
        llmops_data_pos at = llmops_dataset_get_pos(a, LLMOPS_SPLIT_TRAIN);
        CHECK_OK(llmops_dataset_next_batch(a, LLMOPS_SPLIT_TRAIN, G, 0, 1, gt, gg, &g1, &err), err);
        int off = 0;
        for (int r = 0; r < W; r++) {
            int32_t st[2 * 12], sg[2 * 12];
            llmops_data_batch bi;
            CHECK_OK(llmops_dataset_set_pos(b, LLMOPS_SPLIT_TRAIN, at, &err), err);
            CHECK_OK(llmops_dataset_next_batch(b, LLMOPS_SPLIT_TRAIN, G, r, W, st, sg, &bi, &err), err);
            CHECK_EQ_INT(bi.n_rows, llmops_data_shard_rows(G, r, W));
            CHECK_EQ_INT(bi.n_trained_global, g1.n_trained_global);
            CHECK(!memcmp(st, gt + off * S, (size_t)bi.n_rows * S * 4));
            CHECK(!memcmp(sg, gg + off * S, (size_t)bi.n_rows * S * 4));
            for (int k = bi.n_rows; k < 2; k++) /* the short rank's spare row is padding */
                for (int i = 0; i < S; i++) CHECK_EQ_INT(sg[k * S + i], -1);
            off += bi.n_rows;
        }
        CHECK_EQ_INT(off, G);
        llmops_data_pos after = llmops_dataset_get_pos(b, LLMOPS_SPLIT_TRAIN), want = llmops_dataset_get_pos(a, LLMOPS_SPLIT_TRAIN);
        CHECK(after.epoch == want.epoch && after.index == want.index);
    }
    llmops_dataset_free(a);
    llmops_dataset_free(b);
    llmops_tokenizer_free(t);
}

/* ---- sources ------------------------------------------------------------------------------- */

TEST(data_folder_sources_sorted) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    char dir[4096], sub[4200], f[4400];
    snprintf(dir, sizeof dir, "%s/data", test_tmpdir());
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(dir, 0755) == 0 && mkdir(sub, 0755) == 0);
    snprintf(f, sizeof f, "%s/b.jsonl", dir);
    CHECK(write_file(f, "{\"text\": \"item 1 b\"}\n"));
    snprintf(f, sizeof f, "%s/a.jsonl", dir);
    CHECK(write_file(f, "{\"text\": \"item 0 a\"}\n"));
    snprintf(f, sizeof f, "%s/c.jsonl", sub);
    CHECK(write_file(f, "{\"text\": \"item 2 c\"}\n"));
    snprintf(f, sizeof f, "%s/notes.bin", dir);
    CHECK(write_file(f, "\x01\x02"));
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 16;
    llmops_error err = {0};
    llmops_dataset *ds = load1(dir, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_n_rows(ds, LLMOPS_SPLIT_TRAIN), 3);
    for (int i = 0; i < 3; i++) {
        int32_t tk[16], tg[16];
        CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, i, tk, tg, NULL, &err), err);
        CHECK_EQ_INT(item_of(t, tk, 16), i);
    }
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

/* ---- real assets ------------------------------------------------------------------------------- */

TEST(data_wikisql_asset_with_stories_tokenizer) {
    const char *train = test_asset("text/wikisql-mlx-lora/train.jsonl");
    const char *valid = test_asset("text/wikisql-mlx-lora/valid.jsonl");
    if (!train || !valid) SKIP("wikisql-mlx-lora asset absent");
    char tr[4096], va[4096];
    snprintf(tr, sizeof tr, "%s", train);
    snprintf(va, sizeof va, "%s", valid);
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 128;
    const char *vs[] = {va};
    p.val_sources = vs;
    p.n_val_sources = 1;
    llmops_error err = {0};
    llmops_dataset *ds = load1(tr, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    llmops_data_stats s = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN), v = llmops_dataset_stats(ds, LLMOPS_SPLIT_VAL);
    CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_TEXT);
    CHECK_EQ_INT(s.n_examples, 1000);
    CHECK_EQ_INT(s.n_skipped, 0);
    CHECK_EQ_INT(v.n_examples, 100);
    /* truncation counts and row contents against a direct read of the file with jansson */
    FILE *f = fopen(tr, "rb");
    CHECK(f);
    char line[16384];
    int64_t row = 0, trunc = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        CHECK(o);
        const char *text = json_string_value(json_object_get(o, "text"));
        llmops_tokens ids = {0};
        CHECK_OK(llmops_tokenize(t, text, strlen(text), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err), err);
        size_t n = ids.n + 1; /* + EOS */
        trunc += n > 129;
        if (row < 50) {
            int32_t tk[128], tg[128];
            CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, row, tk, tg, NULL, &err), err);
            for (size_t i = 0; i < ids.n && i < 128; i++) CHECK_EQ_INT(tk[i], ids.ids[i]);
            if (n <= 128) {
                char *got = decode(t, tk, n, LLMOPS_DETOKENIZE_SKIP_SPECIAL);
                CHECK_EQ_STR(got, text);
                free(got);
            }
        }
        llmops_tokens_free(&ids);
        json_decref(o);
        row++;
    }
    fclose(f);
    CHECK_EQ_INT(row, 1000);
    CHECK_EQ_INT(s.n_truncated, trunc);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

TEST(data_alpaca_demo_asset_json_array) {
    const char *path = test_asset("text/alpaca-en-demo/alpaca_en_demo.json");
    if (!path) SKIP("alpaca-en-demo asset absent");
    char ap[4096];
    snprintf(ap, sizeof ap, "%s", path);
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 256;
    p.val_ratio = 0.1;
    llmops_error err = {0};
    llmops_dataset *ds = load1(ap, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_ALPACA);
    llmops_data_stats s = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN), v = llmops_dataset_stats(ds, LLMOPS_SPLIT_VAL);
    CHECK_EQ_INT(s.n_examples + v.n_examples, 999);
    CHECK_EQ_INT(v.n_rows, 100);
    CHECK(s.n_trained > 0 && s.n_trained < s.n_tokens);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

/* ---- parser robustness: every allocation failure cleans up -------------------------------------- */

static llmops_status count_fn(void *user, const llmops_data_example *ex, llmops_error *err) {
    (void)err;
    (void)ex;
    ++*(int *)user;
    return LLMOPS_OK;
}

TEST(data_reader_allocation_failures) {
    const char *csv = "instruction,input,output\n\"a\nb\",\"\",\"c\"\"d\"\nx,y,z\n";
    const char *jsonl = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"bad\n";
    for (int which = 0; which < 2; which++) {
        for (long nth = 0;; nth++) {
            llmops_data_params p;
            llmops_data_params_init(&p);
            p.max_logged = 0;
            llmops_data_reader r;
            llmops_data_reader_init(&r, &p);
            r.format = which ? LLMOPS_DATA_FORMAT_JSONL : LLMOPS_DATA_FORMAT_CSV;
            long live = llmops_alloc_live();
            int n = 0;
            llmops_error err = {0};
            llmops_alloc_fail_nth(nth);
            const char *d = which ? jsonl : csv;
            llmops_status st = llmops_data_read(&r, d, strlen(d), "mem", count_fn, &n, &err);
            int fired = llmops_alloc_failure_fired();
            llmops_alloc_fail_nth(-1);
            CHECK_EQ_INT(llmops_alloc_live(), live);
            if (!fired) {
                CHECK_OK(st, err);
                CHECK_EQ_INT(n, 2 - which);
                break;
            }
            CHECK(nth < 1000);
        }
    }
}

/* Every allocation of a whole load may fail: the load fails cleanly (no leak) or succeeds. */
TEST(data_load_allocation_failures) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *a = test_tmpfile("a.jsonl"), *c = test_tmpfile("c.csv"), *h = test_tmpfile("h.jsonl");
    CHECK(write_file(a, "{\"instruction\": \"Say hi.\", \"input\": \"x\", \"output\": \"Hi!\"}\n{\"bad\n"
                        "{\"instruction\": \"Go.\", \"output\": \"Gone.\"}\n"));
    CHECK(write_file(c, "instruction,input,output\n\"Add\",\"1, 2\",\"3\"\n"));
    CHECK(write_file(h, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                        "\"content\": \"Hello.\"}]}\n"));
    const char *srcs[][2] = {{a, c}, {h, NULL}};
    llmops_log_set_level(LLMOPS_LOG_ERROR);
    long iterations = 0;
    for (int k = 0; k < 2; k++) {
        llmops_data_params p;
        llmops_data_params_init(&p);
        p.seq_len = 48;
        p.pack = k == 0;
        p.val_ratio = k == 0 ? 0.3 : 0;
        p.max_logged = 0;
        p.chat_template = k ? "llama2" : NULL;
        for (long nth = 0;; nth++) {
            long live = llmops_alloc_live();
            llmops_error err = {0};
            llmops_dataset *ds = NULL;
            llmops_alloc_fail_nth(nth);
            llmops_status st = llmops_dataset_load(srcs[k], k ? 1 : 2, t, NULL, &p, &ds, &err);
            int fired = llmops_alloc_failure_fired();
            llmops_alloc_fail_nth(-1);
            int64_t skipped = -1;
            if (st == LLMOPS_OK) {
                CHECK(ds);
                skipped = llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_skipped;
                llmops_dataset_free(ds);
            } else {
                CHECK(ds == NULL && err.msg[0]);
            }
            CHECK_MSG(llmops_alloc_live() == live, "leak after failing allocation %ld (%s)", nth, err.msg);
            iterations++;
            if (!fired) {
                CHECK_OK(st, err);
                CHECK_EQ_INT(skipped, 1 - k);
                break;
            }
            CHECK(nth < 20000);
        }
    }
    CHECK(iterations > 100);
    llmops_tokenizer_free(t);
}

/* A real chat vocabulary (Phi-3: SentencePiece with <|user|>, <|assistant|>, <|end|> as
 * control tokens) and its own template: each trained run is the assistant content
 * followed by the end-of-turn token, and the row is the tokenization of jinja2's text. */
TEST(data_chat_phi3_vocab_trains_end_of_turn) {
    const char *vocab = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-phi-3.gguf");
    if (!vocab) SKIP("ggml-vocab-phi-3.gguf asset absent");
    if (system(PYTHON " -c 'import jinja2' >/dev/null 2>&1") != 0) SKIP("python3-jinja2 missing");
    char vp[4096];
    snprintf(vp, sizeof vp, "%s", vocab);
    llmops_tokenizer *t = NULL;
    llmops_error err = {0};
    CHECK_OK(llmops_tokenizer_load(vp, &t, &err), err);
    const char *tmpl = llmops_tokenizer_chat_template(t);
    if (!tmpl) {
        llmops_tokenizer_free(t);
        SKIP("the phi-3 vocabulary carries no chat template");
    }
    size_t n;
    const char *eot = llmops_tokenizer_token_text(t, llmops_tokenizer_eot(t), &n);
    char eot_s[64], bos_s[64], eos_s[64];
    snprintf(eot_s, sizeof eot_s, "%.*s", (int)n, eot);
    const char *bos = llmops_tokenizer_token_text(t, llmops_tokenizer_bos(t), &n);
    snprintf(bos_s, sizeof bos_s, "%.*s", (int)n, bos);
    const char *eos = llmops_tokenizer_token_text(t, llmops_tokenizer_eos(t), &n);
    snprintf(eos_s, sizeof eos_s, "%.*s", (int)n, eos);
    const char *msgs = "[{\"role\": \"user\", \"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"content\": "
                       "\"It is 4.\"}, {\"role\": \"user\", \"content\": \"And 3+3?\"}, {\"role\": \"assistant\", "
                       "\"content\": \"Six.\"}]";
    const char *path = test_tmpfile("phi.jsonl"), *tpath = test_tmpfile("phi.jinja"), *cpath = test_tmpfile("phi.json");
    char line[2048], ctx[2048];
    snprintf(line, sizeof line, "{\"messages\": %s}\n", msgs);
    snprintf(ctx, sizeof ctx, "[{\"messages\": %s, \"bos_token\": \"%s\", \"eos_token\": \"%s\"}]", msgs, bos_s, eos_s);
    CHECK(write_file(path, line) && write_file(tpath, tmpl) && write_file(cpath, ctx));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PYTHON " '%s/tests/tokenizer/render_jinja.py' '%s' '%s'", test_repo_root(), tpath, cpath);
    char *out = test_run_capture(cmd);
    CHECK(out);
    json_error_t je;
    json_t *res = json_loads(out, 0, &je);
    free(out);
    const char *rendered = json_string_value(json_object_get(json_array_get(res, 0), "ok"));
    CHECK_MSG(rendered, "jinja2 did not render the phi-3 template");

    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 128;
    llmops_dataset *ds = load1(path, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    int32_t tk[128], tg[128];
    CHECK_OK(llmops_dataset_row(ds, LLMOPS_SPLIT_TRAIN, 0, tk, tg, NULL, &err), err);
    llmops_tokens want = {0};
    size_t bl = strlen(bos_s);
    if (llmops_tokenizer_add_bos(t) && strncmp(rendered, bos_s, bl) != 0)
        CHECK_OK(llmops_tokens_push(&want, llmops_tokenizer_bos(t), &err), err);
    CHECK_OK(llmops_tokenize(t, rendered, strlen(rendered), LLMOPS_TOKENIZE_PARSE_SPECIAL, &want, &err), err);
    CHECK(want.n < 128);
    for (size_t i = 0; i < want.n; i++) CHECK_EQ_INT(tk[i], want.ids[i]);
    const char *contents[] = {"It is 4.", "Six."};
    size_t i = 0;
    for (int a = 0; a < 2; a++) {
        while (i < 127 && tg[i] < 0) i++;
        int32_t run[128];
        size_t m = 0;
        while (i < 127 && tg[i] >= 0) run[m++] = tg[i++];
        CHECK_MSG(m > 0, "no trained run for assistant turn %d", a);
        CHECK_EQ_INT(run[m - 1], llmops_tokenizer_eot(t));
        char *got = decode(t, run, m, 0);
        char w[256];
        snprintf(w, sizeof w, "%s%s", contents[a], eot_s);
        CHECK_EQ_STR(got, w);
        free(got);
    }
    while (i < 127 && tg[i] < 0) i++;
    CHECK_EQ_INT(i, 127);
    llmops_tokens_free(&want);
    json_decref(res);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

TEST(data_format_from_content_when_extension_unknown) {
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    const char *j = test_tmpfile("records.dat"), *a = test_tmpfile("array.dat"), *x = test_tmpfile("notes.dat");
    CHECK(write_file(j, "\n{\"text\": \"one\"}\n{\"text\": \"two\"}\n"));
    CHECK(write_file(a, "[{\"prompt\": \"p\", \"completion\": \" c\"}]"));
    CHECK(write_file(x, "just some words\n"));
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 16;
    llmops_error err = {0};
    llmops_dataset *ds = load1(j, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_examples, 2);
    llmops_dataset_free(ds);
    ds = load1(a, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    CHECK_EQ_INT(llmops_dataset_schema(ds), LLMOPS_DATA_SCHEMA_COMPLETION);
    llmops_dataset_free(ds);
    const char *src[] = {x};
    CHECK_ERR(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_CONFIG, err, "notes.dat: unknown data file extension");
    p.format = LLMOPS_DATA_FORMAT_TEXT; /* told */
    ds = load1(x, t, &p, &err);
    CHECK_MSG(ds, "%s", err.msg);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}
