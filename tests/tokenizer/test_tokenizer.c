/*
 * Tokenizers against published references: llama.cpp's conformance vectors
 * (tokenized by the Hugging Face reference tokenizers), the same vocabulary
 * in its different file formats, and round trips.
 */
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/fileio.h"
#include "llmops/tokenizer.h"

static char *slurp(const char *path, size_t *len) {
    char *d = NULL;
    llmops_error err = {0};
    if (llmops_file_read_all(path, 64u << 20, &d, len, &err)) return NULL;
    return d;
}

/* Splits the .inp file on "\n__ggml_vocab_test__\n" into n strings (in place). */
static size_t split_inputs(char *text, size_t len, char **parts, size_t *lens, size_t max) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n = 0, sl = sizeof sep - 1;
    char *p = text, *end = text + len;
    while (n < max) {
        char *hit = memmem(p, (size_t)(end - p), sep, sl);
        parts[n] = p;
        lens[n] = hit ? (size_t)(hit - p) : (size_t)(end - p);
        n++;
        if (!hit) break;
        p = hit + sl;
    }
    return n;
}

/* Checks every conformance string of one vocabulary, token for token. */
static void conformance(const char *vocab) {
    char rel[256], path_inp[256], path_out[256];
    snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/%s", vocab);
    const char *gguf = test_asset(rel);
    if (!gguf) SKIP("%s not in ../shared/assets", rel);
    snprintf(path_inp, sizeof path_inp, "%s.inp", gguf);
    snprintf(path_out, sizeof path_out, "%s.out", gguf);
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_load(gguf, &tok, &err), err);
    size_t il, ol;
    char *inp = slurp(path_inp, &il), *outs = slurp(path_out, &ol);
    CHECK(inp && outs);
    char *parts[128];
    size_t lens[128];
    size_t n = split_inputs(inp, il, parts, lens, 128);
    char *line = outs;
    size_t checked = 0;
    for (size_t i = 0; i < n && line; i++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        llmops_tokens ids = {0};
        CHECK_OK(llmops_tokenize(tok, parts[i], lens[i], 0, &ids, &err), err);
        char got[8192];
        size_t o = 0;
        got[0] = '\0';
        for (size_t k = 0; k < ids.n && o < sizeof got - 16; k++) o += (size_t)snprintf(got + o, sizeof got - o, " %d", ids.ids[k]);
        const char *want = line;
        CHECK_MSG(strcmp(got, want) == 0 || (ids.n == 0 && want[strspn(want, " ")] == '\0'),
                  "%s: string %zu \"%.*s\":\n      want%s\n      got %s", vocab, i, (int)(lens[i] > 60 ? 60 : lens[i]),
                  parts[i], want, got);
        llmops_tokens_free(&ids);
        checked++;
        line = nl ? nl + 1 : NULL;
    }
    CHECK(checked >= 40);
    free(inp);
    free(outs);
    llmops_tokenizer_free(tok);
}

TEST(tokenizer_conformance_llama_spm) { conformance("ggml-vocab-llama-spm.gguf"); }
TEST(tokenizer_conformance_phi3) { conformance("ggml-vocab-phi-3.gguf"); }
TEST(tokenizer_conformance_gpt2) { conformance("ggml-vocab-gpt-2.gguf"); }
TEST(tokenizer_conformance_bert_bge) { conformance("ggml-vocab-bert-bge.gguf"); }
TEST(tokenizer_conformance_deepseek_llm) { conformance("ggml-vocab-deepseek-llm.gguf"); }
TEST(tokenizer_conformance_refact) { conformance("ggml-vocab-refact.gguf"); }

/* Tokenizes every conformance string (and a Shakespeare excerpt) with two
 * tokenizers and requires identical ids. */
static void same_ids(const char *a_path, const char *b_path, unsigned flags) {
    llmops_error err = {0};
    llmops_tokenizer *a, *b;
    CHECK_OK(llmops_tokenizer_load(a_path, &a, &err), err);
    CHECK_OK(llmops_tokenizer_load(b_path, &b, &err), err);
    const char *inp_path = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp");
    const char *shk = test_asset("text/tinyshakespeare/input.txt");
    size_t il = 0, sl = 0;
    char *inp = inp_path ? slurp(inp_path, &il) : NULL, *sh = shk ? slurp(shk, &sl) : NULL;
    char *parts[130];
    size_t lens[130];
    size_t n = inp ? split_inputs(inp, il, parts, lens, 128) : 0;
    if (sh) {
        parts[n] = sh;
        lens[n++] = sl > 20000 ? 20000 : sl;
    }
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
        llmops_tokens x = {0}, y = {0};
        CHECK_OK(llmops_tokenize(a, parts[i], lens[i], flags, &x, &err), err);
        CHECK_OK(llmops_tokenize(b, parts[i], lens[i], flags, &y, &err), err);
        CHECK_MSG(x.n == y.n && (x.n == 0 || memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0),
                  "string %zu: %zu vs %zu tokens", i, x.n, y.n);
        llmops_tokens_free(&x);
        llmops_tokens_free(&y);
    }
    free(inp);
    free(sh);
    llmops_tokenizer_free(a);
    llmops_tokenizer_free(b);
}

TEST(tokenizer_llama2_model_bin_gguf_agree) {
    const char *model = test_asset("llm/llama2-tokenizer/tokenizer.model");
    const char *bin = test_asset("llm/llama2-tokenizer/tokenizer.bin");
    const char *gguf = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    if (!model || !bin || !gguf) SKIP("Llama 2 tokenizer files not in ../shared/assets");
    same_ids(model, gguf, LLMOPS_TOKENIZE_ADD_SPECIAL);
    if (test_failed()) return;
    same_ids(bin, gguf, LLMOPS_TOKENIZE_ADD_SPECIAL);
}

TEST(tokenizer_gpt2_json_agrees_with_vocab_files) {
    const char *tj = test_asset("hf/tiny-random-gpt2/tokenizer.json");
    const char *vj = test_asset("hf/tiny-random-gpt2/vocab.json");
    if (!tj || !vj) SKIP("tiny-random-gpt2 not in ../shared/assets");
    same_ids(tj, vj, 0);
    if (test_failed()) return;
    const char *enc = test_asset("tokenizers/gpt2/encoder.json");
    const char *gguf = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    if (enc && gguf) same_ids(enc, gguf, 0);
}

/* ---- round trips ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static size_t put_cp(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Random text from many scripts: ASCII, Latin-1, Cyrillic, CJK, emoji, marks, spaces, controls. */
static size_t random_text(char *buf, size_t max_cps) {
    static const uint32_t ranges[][2] = {{0x20, 0x7e},     {0x09, 0x0d},       {0xa0, 0xff},     {0x400, 0x4ff},
                                         {0x300, 0x36f},   {0x4e00, 0x9fff},   {0x1f300, 0x1f64f}, {0x2000, 0x206f},
                                         {0xac00, 0xd7a3}, {0x10000, 0x1007f}, {0x20, 0x20}};
    size_t o = 0, n = 1 + rnd() % max_cps;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *r = ranges[rnd() % (sizeof ranges / sizeof ranges[0])];
        o += put_cp(buf + o, r[0] + rnd() % (r[1] - r[0] + 1));
    }
    return o;
}

static void roundtrip(const char *rel, int invalid_bytes) {
    const char *path = test_asset(rel);
    if (!path) SKIP("%s not in ../shared/assets", rel);
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err);
    char text[4096];
    for (int iter = 0; iter < 300; iter++) {
        size_t len = random_text(text, 200);
        if (invalid_bytes && iter % 3 == 0) /* stray bytes that are not UTF-8 */
            for (int k = 0; k < 5; k++) text[rnd() % len] = (char)(0x80 + rnd() % 0x7f);
        llmops_tokens ids = {0};
        CHECK_OK(llmops_tokenize(tok, text, len, 0, &ids, &err), err);
        llmops_buf out;
        llmops_buf_init(&out, 1 << 20);
        CHECK_OK(llmops_detokenize(tok, ids.ids, ids.n, 0, &out, &err), err);
        CHECK_MSG(out.len == len && memcmp(out.data, text, len) == 0, "%s: round trip %d differs (%zu vs %zu bytes)",
                  rel, iter, out.len, len);
        /* streaming gives the same text and never splits a character */
        llmops_detok_stream s;
        llmops_detok_stream_init(&s, tok, 0);
        llmops_buf st;
        llmops_buf_init(&st, 1 << 20);
        for (size_t k = 0; k < ids.n; k++) {
            size_t before = st.len;
            CHECK_OK(llmops_detok_stream_push(&s, ids.ids[k], &st, &err), err);
            if (!invalid_bytes && st.len > before) {
                unsigned char last = (unsigned char)st.data[st.len - 1];
                CHECK_MSG(last < 0x80 || (last & 0xc0) == 0x80, "stream emitted a dangling lead byte");
            }
        }
        CHECK_OK(llmops_detok_stream_finish(&s, &st, &err), err);
        if (!invalid_bytes) CHECK_MSG(st.len == len && memcmp(st.data, text, len) == 0, "stream differs at %d", iter);
        llmops_buf_free(&st);
        llmops_buf_free(&out);
        llmops_tokens_free(&ids);
    }
    llmops_tokenizer_free(tok);
}

TEST(tokenizer_roundtrip_bpe_gpt2) { roundtrip("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", 1); }
TEST(tokenizer_roundtrip_spm_llama) { roundtrip("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", 1); }
TEST(tokenizer_roundtrip_bpe_deepseek) { roundtrip("tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf", 0); }

/* ---- special tokens and framing ---------------------------------------------------------- */

TEST(tokenizer_special_tokens_llama) {
    const char *path = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    if (!path) SKIP("llama-spm vocab not in ../shared/assets");
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err);
    CHECK_EQ_INT(llmops_tokenizer_bos(tok), 1);
    CHECK_EQ_INT(llmops_tokenizer_eos(tok), 2);
    CHECK(llmops_tokenizer_is_eog(tok, 2));
    llmops_tokens ids = {0};
    const char *s = "<s>Hi</s>";
    CHECK_OK(llmops_tokenize(tok, s, strlen(s), LLMOPS_TOKENIZE_PARSE_SPECIAL, &ids, &err), err);
    CHECK(ids.n >= 3 && ids.ids[0] == 1 && ids.ids[ids.n - 1] == 2);
    llmops_tokens_free(&ids);
    /* without parse_special "<s>" is text, and add_special puts BOS first */
    CHECK_OK(llmops_tokenize(tok, s, strlen(s), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err), err);
    CHECK(ids.n > 4 && ids.ids[0] == 1 && ids.ids[1] != 1);
    for (size_t i = 1; i < ids.n; i++) CHECK(ids.ids[i] != 1 && ids.ids[i] != 2);
    llmops_buf out;
    llmops_buf_init(&out, 1 << 16);
    CHECK_OK(llmops_detokenize(tok, ids.ids, ids.n, LLMOPS_DETOKENIZE_SKIP_SPECIAL, &out, &err), err);
    CHECK_EQ_STR(out.data, s);
    llmops_buf_free(&out);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
}

TEST(tokenizer_bert_framing) {
    const char *path = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-bert-bge.gguf");
    if (!path) SKIP("bert-bge vocab not in ../shared/assets");
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err);
    llmops_tokens ids = {0};
    CHECK_OK(llmops_tokenize(tok, "Hello world", 11, LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err), err);
    /* [CLS] hello world [SEP] in bert-base-uncased ids */
    CHECK_EQ_INT(ids.n, 4);
    CHECK_EQ_INT(ids.ids[0], 101);
    CHECK_EQ_INT(ids.ids[1], 7592);
    CHECK_EQ_INT(ids.ids[2], 2088);
    CHECK_EQ_INT(ids.ids[3], 102);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
}

TEST(tokenizer_bundled_stories260k) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", test_repo_root());
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err); /* finds tok512.bin beside it */
    CHECK_EQ_INT(llmops_tokenizer_n_vocab(tok), 512);
    llmops_tokens ids = {0};
    const char *s = "Once upon a time, there was a little girl.";
    CHECK_OK(llmops_tokenize(tok, s, strlen(s), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, &err), err);
    CHECK(ids.n > 5 && ids.ids[0] == 1);
    llmops_buf out;
    llmops_buf_init(&out, 1 << 16);
    CHECK_OK(llmops_detokenize(tok, ids.ids, ids.n, LLMOPS_DETOKENIZE_SKIP_SPECIAL, &out, &err), err);
    CHECK_EQ_STR(out.data, s);
    llmops_buf_free(&out);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
}

TEST(tokenizer_load_errors) {
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_ERR(llmops_tokenizer_load("/nonexistent/tok.json", &tok, &err), LLMOPS_ERR_NOT_FOUND, err, "no such file");
    const char *p = test_tmpfile("bad.json");
    FILE *f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", f);
    fclose(f);
    CHECK_ERR(llmops_tokenizer_load(p, &tok, &err), LLMOPS_ERR_UNSUPPORTED, err, "Unigram");
    f = fopen(p, "w");
    fputs("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", f);
    fclose(f);
    CHECK_ERR(llmops_tokenizer_load(p, &tok, &err), LLMOPS_ERR_FORMAT, err, "token id");
    f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"BPE\",", f);
    fclose(f);
    CHECK_ERR(llmops_tokenizer_load(p, &tok, &err), LLMOPS_ERR_FORMAT, err, "bad.json:1:");
}

/* A cased WordPiece model (BertNormalizer lowercase: false) keeps case and accents. */
TEST(tokenizer_wordpiece_cased_normalizer) {
    static const char tj[] =
        "{\"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": false, \"strip_accents\": null},"
        " \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"Hello\": 3,"
        " \"hello\": 4, \"caf\": 5, \"##\\u00e9\": 6, \"##e\": 7}}}";
    llmops_error err = {0};
    llmops_tokenizer *tok;
    CHECK_OK(llmops_tokenizer_from_json(tj, sizeof tj - 1, "cased.json", &tok, &err), err);
    llmops_tokens ids = {0};
    const char *text = "Hello caf\xc3\xa9";
    CHECK_OK(llmops_tokenize(tok, text, strlen(text), 0, &ids, &err), err);
    /* "Hello" keeps its case (id 3, not 4); NFD turns é into e + U+0301, and a cased model keeps
       the mark, so "cafe\xcc\x81" has no complete WordPiece split and becomes [UNK] */
    CHECK_EQ_INT(ids.n, 2);
    CHECK_EQ_INT(ids.ids[0], 3);
    CHECK_EQ_INT(ids.ids[1], 0);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
    /* the default (uncased) lower-cases */
    static const char tj2[] = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"hello\": 4, \"Hello\": 3}}}";
    CHECK_OK(llmops_tokenizer_from_json(tj2, sizeof tj2 - 1, "uncased.json", &tok, &err), err);
    CHECK_OK(llmops_tokenize(tok, "Hello", 5, 0, &ids, &err), err);
    CHECK_EQ_INT(ids.n, 1);
    CHECK_EQ_INT(ids.ids[0], 4);
    llmops_tokens_free(&ids);
    llmops_tokenizer_free(tok);
}
