/*
 * Tokenizer loaders: GGUF tokenizer.ggml.* metadata, Hugging Face
 * tokenizer.json (+ tokenizer_config.json, config.json), SentencePiece
 * tokenizer.model and llama2.c tokenizer.bin; and the writer of GGUF
 * tokenizer metadata.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/llama2c.h"
#include "llmops/spm_model.h"
#include "tokenizer/tok_internal.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        llmops_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                       \
    } while (0)

/* ---- GGUF --------------------------------------------------------------------------------- */

static int32_t gguf_id(const llmops_gguf *g, const char *key, int32_t def, size_t n) {
    uint64_t v;
    if (llmops_gguf_get_u64(g, key, &v, NULL)) {
        int64_t sv;
        if (!llmops_gguf_get_i64(g, key, &sv, NULL) && sv < 0) return -1;
        return def;
    }
    return v < n ? (int32_t)v : -1;
}

static int gguf_flag(const llmops_gguf *g, const char *key, int def) {
    int v;
    return llmops_gguf_get_bool(g, key, &v, NULL) ? def : v;
}

llmops_status llmops_tokenizer_from_gguf(const llmops_gguf *g, const char *origin, llmops_tokenizer **out,
                                         llmops_error *err) {
    *out = NULL;
    if (!origin) origin = "<gguf>";
    llmops_gguf_str model;
    llmops_gguf_array toks, scores = {0}, types = {0}, merges = {0};
    llmops_status st = llmops_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st) return llmops_error_prefix(err, "%s: ", origin);
    if ((st = llmops_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks, err))) return llmops_error_prefix(err, "%s: ", origin);
    llmops_tokenizer_kind kind;
    if (llmops_gguf_str_eq(model, "llama")) kind = LLMOPS_TOKENIZER_SPM;
    else if (llmops_gguf_str_eq(model, "gpt2")) kind = LLMOPS_TOKENIZER_BPE;
    else if (llmops_gguf_str_eq(model, "bert")) kind = LLMOPS_TOKENIZER_WPM;
    else
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: tokenizer.ggml.model '%.*s' is not supported (llama, gpt2, bert)", origin,
                                (int)(model.len > 40 ? 40 : model.len), model.data);
    if (toks.type != LLMOPS_GGUF_STRING || toks.n == 0)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tokenizer.ggml.tokens must be a non-empty string array", origin);
    size_t n = (size_t)toks.n;
    int has_scores = !llmops_gguf_get_arr(g, "tokenizer.ggml.scores", &scores, NULL);
    int has_types = !llmops_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, NULL);
    if (has_scores && (scores.n != n || (scores.type != LLMOPS_GGUF_FLOAT32 && scores.type != LLMOPS_GGUF_FLOAT64)))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tokenizer.ggml.scores must hold %zu floats", origin, n);
    if (has_types && (types.n != n || !llmops_gguf_type_size(types.type) || types.type == LLMOPS_GGUF_FLOAT32 ||
                      types.type == LLMOPS_GGUF_FLOAT64))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tokenizer.ggml.token_type must hold %zu integers", origin, n);
    llmops_tokenizer *t;
    TRY(llmops_tok_alloc(&t, n, err));
    t->kind = kind;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t type = has_types ? (int32_t)llmops_gguf_arr_i64(&types, i) : LLMOPS_TOKEN_NORMAL;
        float sc = has_scores ? (float)llmops_gguf_arr_f64(&scores, i) : 0.0f;
        st = llmops_tok_set(t, i, toks.strs[i].data, (size_t)toks.strs[i].len, sc, type, err);
    }
    if (!st && kind == LLMOPS_TOKENIZER_BPE) {
        if ((st = llmops_gguf_get_arr(g, "tokenizer.ggml.merges", &merges, err)) || merges.type != LLMOPS_GGUF_STRING) {
            if (!st) st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "tokenizer.ggml.merges must be a string array");
            llmops_error_prefix(err, "%s: ", origin);
        } else {
            t->merges = llmops_calloc(merges.n ? (size_t)merges.n : 1, sizeof *t->merges);
            if (!t->merges) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            for (size_t i = 0; !st && i < merges.n; i++) {
                t->merges[i] = llmops_arena_strndup(t->arena, merges.strs[i].data, (size_t)merges.strs[i].len);
                if (!t->merges[i]) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            }
            t->n_merges = (size_t)merges.n;
        }
    }
    if (!st) {
        /* llama.cpp's defaults when a key is absent */
        int spm = kind == LLMOPS_TOKENIZER_SPM, wpm = kind == LLMOPS_TOKENIZER_WPM;
        t->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : wpm ? 101 : -1, n);
        t->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n);
        t->eot = gguf_id(g, "tokenizer.ggml.eot_token_id", -1, n);
        t->eom = gguf_id(g, "tokenizer.ggml.eom_token_id", -1, n);
        t->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : wpm ? 100 : -1, n);
        t->sep = gguf_id(g, "tokenizer.ggml.seperator_token_id", wpm ? 102 : -1, n);
        t->pad = gguf_id(g, "tokenizer.ggml.padding_token_id", wpm ? 0 : -1, n);
        t->cls = gguf_id(g, "tokenizer.ggml.cls_token_id", wpm ? t->bos : -1, n);
        t->mask = gguf_id(g, "tokenizer.ggml.mask_token_id", wpm ? 103 : -1, n);
        t->add_bos = gguf_flag(g, "tokenizer.ggml.add_bos_token", spm);
        t->add_eos = gguf_flag(g, "tokenizer.ggml.add_eos_token", 0);
        t->add_space_prefix = gguf_flag(g, "tokenizer.ggml.add_space_prefix", spm);
        llmops_gguf_str pre = {7, "default"};
        if (kind == LLMOPS_TOKENIZER_BPE) llmops_gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL);
        char name[48];
        snprintf(name, sizeof name, "%.*s", (int)(pre.len > 47 ? 47 : pre.len), pre.data);
        st = llmops_tok_set_pre(t, name, err);
        if (st) llmops_error_prefix(err, "%s: ", origin);
    }
    llmops_gguf_str tmpl;
    if (!st && !llmops_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL)) {
        t->chat_template = llmops_strndup(tmpl.data, (size_t)tmpl.len);
        if (!t->chat_template) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    if (!st) st = llmops_tok_finish(t, err);
    if (st) {
        llmops_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LLMOPS_OK;
}

/* ---- llama2.c tokenizer.bin ---------------------------------------------------------------- */

static llmops_status from_llama2c_vocab(const llmops_llama2c_vocab *v, llmops_tokenizer **out, llmops_error *err) {
    llmops_tokenizer *t;
    TRY(llmops_tok_alloc(&t, v->n, err));
    t->kind = LLMOPS_TOKENIZER_SPM;
    llmops_status st = LLMOPS_OK;
    char *buf = NULL;
    for (size_t i = 0; i < v->n && !st; i++) {
        const char *p = v->pieces[i];
        uint32_t len = v->lens[i];
        /* llama2.c wrote '▁' as ' ' and BOS/EOS as "\n<s>\n" / "\n</s>\n" */
        if (i == 1 && strcmp(p, "\n<s>\n") == 0) p = "<s>", len = 3;
        else if (i == 2 && strcmp(p, "\n</s>\n") == 0) p = "</s>", len = 4;
        llmops_free(buf);
        buf = llmops_malloc((size_t)len * 3 + 1);
        if (!buf) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            break;
        }
        size_t o = 0;
        for (uint32_t k = 0; k < len; k++) {
            if (p[k] == ' ') {
                memcpy(buf + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                buf[o++] = p[k];
            }
        }
        unsigned byte;
        char tail;
        int32_t type = i == 0                                                    ? LLMOPS_TOKEN_UNKNOWN
                       : (i == 1 || i == 2 || len == 0)                          ? LLMOPS_TOKEN_CONTROL
                       : len == 6 && sscanf(p, "<0x%2X>%c", &byte, &tail) == 1 ? LLMOPS_TOKEN_BYTE
                                                                                 : LLMOPS_TOKEN_NORMAL;
        st = llmops_tok_set(t, i, buf, o, v->scores[i], type, err);
    }
    llmops_free(buf);
    if (!st) {
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
        st = llmops_tok_finish(t, err);
    }
    if (st) {
        llmops_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LLMOPS_OK;
}

/* ---- SentencePiece tokenizer.model ----------------------------------------------------------- */

static llmops_status from_spm_model(const char *path, llmops_tokenizer **out, llmops_error *err) {
    llmops_spm_model m;
    TRY(llmops_spm_model_load(path, &m, err));
    llmops_status st = LLMOPS_OK;
    llmops_tokenizer *t = NULL;
    if (m.trainer.model_type != LLMOPS_SPM_MODEL_BPE) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                              "%s: SentencePiece model type %d is not supported (only BPE, as Llama uses)", path,
                              m.trainer.model_type);
        goto done;
    }
    if ((st = llmops_tok_alloc(&t, m.n, err))) goto done;
    t->kind = LLMOPS_TOKENIZER_SPM;
    for (size_t i = 0; i < m.n && !st; i++)
        st = llmops_tok_set(t, i, m.pieces[i].text, m.pieces[i].len, m.pieces[i].score, m.pieces[i].type, err);
    if (st) goto done;
    int32_t n = (int32_t)m.n;
    t->bos = m.trainer.bos_id < n ? m.trainer.bos_id : -1;
    t->eos = m.trainer.eos_id < n ? m.trainer.eos_id : -1;
    t->unk = m.trainer.unk_id < n ? m.trainer.unk_id : -1;
    t->pad = m.trainer.pad_id < n ? m.trainer.pad_id : -1;
    t->add_bos = 1;
    t->add_space_prefix = m.normalizer.add_dummy_prefix;
    st = llmops_tok_finish(t, err);
done:
    llmops_spm_model_free(&m);
    if (st) {
        llmops_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LLMOPS_OK;
}

/* ---- Hugging Face tokenizer.json -------------------------------------------------------------- */

/* A special token in tokenizer_config.json is "text" or {"content": "text"}. */
static const char *special_content(const json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int has_type(const json_t *node, const char *type) {
    if (!json_is_object(node)) return 0;
    json_t *t = json_object_get(node, "type");
    if (json_is_string(t) && strcmp(json_string_value(t), type) == 0) return 1;
    json_t *seq = json_object_get(node, "pretokenizers");
    if (!seq) seq = json_object_get(node, "decoders");
    if (!seq) seq = json_object_get(node, "normalizers");
    size_t i;
    json_t *e;
    json_array_foreach(seq, i, e) if (has_type(e, type)) return 1;
    return 0;
}

/* The original tokenizer.json patterns of the pre-tokenizers llama.cpp names. */
static const struct {
    const char *name;
    const char *pattern;
} k_hf_patterns[] = {
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* Installs the pre-tokenizer a tokenizer.json describes (ByteLevel with its
 * GPT-2 regex, Split regexes, Digits). */
static llmops_status hf_pre(llmops_tokenizer *t, const json_t *pre, const char *origin, int depth, llmops_error *err) {
    if (!json_is_object(pre) || depth > 8) return LLMOPS_OK;
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (!type) return LLMOPS_OK;
    if (!strcmp(type, "Sequence")) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(pre, "pretokenizers"), i, e) TRY(hf_pre(t, e, origin, depth + 1, err));
        return LLMOPS_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        json_t *ur = json_object_get(pre, "use_regex");
        if (!ur || json_is_true(ur)) {
            TRY(llmops_tok_add_regex(t, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", err));
            if (!strcmp(t->pre, "custom")) snprintf(t->pre, sizeof t->pre, "gpt-2");
        }
        return LLMOPS_OK;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(pre, "pattern");
        const char *rx = json_string_value(json_object_get(pat, "Regex"));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        const char *behavior = json_string_value(json_object_get(pre, "behavior"));
        if (behavior && strcmp(behavior, "Isolated"))
            return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported (Isolated is)",
                                    origin, behavior);
        if (json_is_true(json_object_get(pre, "invert")))
            return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: inverted Split is not supported", origin);
        if (!rx && !lit) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: Split without a pattern", origin);
        if (rx) {
            llmops_status st = llmops_tok_add_regex(t, rx, err);
            if (st) return llmops_error_prefix(err, "%s: Split pattern: ", origin);
            for (size_t i = 0; i < sizeof k_hf_patterns / sizeof k_hf_patterns[0]; i++)
                if (!strcmp(rx, k_hf_patterns[i].pattern)) snprintf(t->pre, sizeof t->pre, "%s", k_hf_patterns[i].name);
        } else {
            /* a literal: escape it into a regex */
            char esc[512];
            size_t o = 0;
            for (const char *p = lit; *p && o + 3 < sizeof esc; p++) {
                if (strchr("\\^$.|?*+()[]{}", *p)) esc[o++] = '\\';
                esc[o++] = *p;
            }
            esc[o] = '\0';
            TRY(llmops_tok_add_regex(t, esc, err));
        }
        return LLMOPS_OK;
    }
    if (!strcmp(type, "Digits"))
        return llmops_tok_add_regex(t, json_is_true(json_object_get(pre, "individual_digits")) ? "\\p{N}" : "\\p{N}+", err);
    if (!strcmp(type, "Metaspace") || !strcmp(type, "BertPreTokenizer") || !strcmp(type, "Whitespace")) return LLMOPS_OK;
    return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: pre-tokenizer type '%s' is not supported", origin, type);
}

static llmops_status hf_set_token(llmops_tokenizer *t, int64_t id, const char *text, size_t len, float score,
                                  int32_t type, const char *origin, llmops_error *err) {
    if (id < 0 || (uint64_t)id >= t->n)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: token '%.40s' has id %lld outside the vocabulary of %zu",
                                origin, text, (long long)id, t->n);
    return llmops_tok_set(t, (size_t)id, text, len, score, type, err);
}

/*
 * tokenizer.json → tokenizer. The JSON comes from `json_text` (text_len bytes)
 * or, when it is NULL, from the file tj_path; side files (tokenizer_config.json,
 * config.json, chat_template.jinja) are read from `dir` when it is not NULL.
 */
static llmops_status from_hf(const char *tj_path, const char *json_text, size_t text_len, const char *dir,
                             llmops_tokenizer **out, llmops_error *err) {
    *out = NULL;
    char *tc_path = dir ? llmops_path_join(dir, "tokenizer_config.json") : NULL;
    char *cfg_path = dir ? llmops_path_join(dir, "config.json") : NULL;
    char *ct_path = dir ? llmops_path_join(dir, "chat_template.jinja") : NULL;
    json_t *tj = NULL, *tc = NULL, *cfg = NULL;
    llmops_tokenizer *t = NULL;
    llmops_status st = LLMOPS_OK;
    if (dir && (!tc_path || !cfg_path || !ct_path)) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (json_text) st = llmops_json_parse(json_text, text_len, tj_path, &tj, err);
    else st = llmops_json_load_file(tj_path, 256u << 20, &tj, err);
    if (st) goto done;
    if (tc_path && llmops_path_is_file(tc_path) && (st = llmops_json_load_file(tc_path, 64u << 20, &tc, err))) goto done;
    if (cfg_path && llmops_path_is_file(cfg_path) && (st = llmops_json_load_file(cfg_path, 16u << 20, &cfg, err)))
        goto done;
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = json_object_get(model, "vocab");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype && json_is_object(vocab) && json_object_get(model, "merges")) mtype = "BPE";
    if (!json_is_object(vocab) || !mtype) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"model\" needs a \"type\" and a \"vocab\" object", tj_path);
        goto done;
    }
    int bpe = !strcmp(mtype, "BPE"), wordpiece = !strcmp(mtype, "WordPiece");
    int byte_level = has_type(json_object_get(tj, "pre_tokenizer"), "ByteLevel") ||
                     has_type(json_object_get(tj, "decoder"), "ByteLevel");
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    if (!bpe && !wordpiece) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (BPE, WordPiece)",
                              tj_path, mtype);
        goto done;
    }
    if (bpe && !byte_level && !byte_fallback) {
        st = llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                              "%s: a BPE model that is neither byte-level nor byte-fallback is not supported", tj_path);
        goto done;
    }
    /* the id space covers the vocabulary, the added tokens and config.json's vocab_size */
    int64_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: model.vocab[\"%.40s\"] must be a token id", tj_path, key);
            goto done;
        }
        if (json_integer_value(val) >= n) n = json_integer_value(val) + 1;
    }
    json_t *added = json_object_get(tj, "added_tokens");
    size_t ai;
    json_t *at;
    json_array_foreach(added, ai, at) {
        json_t *id = json_object_get(at, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24) ||
            !json_is_string(json_object_get(at, "content"))) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: added_tokens[%zu] needs an \"id\" and a \"content\"",
                                  tj_path, ai);
            goto done;
        }
        if (json_integer_value(id) >= n) n = json_integer_value(id) + 1;
    }
    int64_t cfg_vocab = 0;
    if (cfg && !llmops_json_opt_int(cfg, "vocab_size", &cfg_vocab, cfg_path, NULL) && cfg_vocab > n && cfg_vocab < (1 << 24))
        n = cfg_vocab;
    if ((st = llmops_tok_alloc(&t, (size_t)n, err))) goto done;
    t->kind = wordpiece ? LLMOPS_TOKENIZER_WPM : byte_level ? LLMOPS_TOKENIZER_BPE : LLMOPS_TOKENIZER_SPM;
    snprintf(t->pre, sizeof t->pre, "custom");
    json_object_foreach(vocab, key, val) {
        char buf[1024];
        const char *text = key;
        size_t len = strlen(key);
        if (wordpiece && !(len && key[0] == '[' && key[len - 1] == ']')) {
            /* llama.cpp's BERT spelling: "##x" → "x", a word start → "▁" + word */
            if (!strncmp(key, "##", 2)) text = key + 2, len -= 2;
            else if (len + 4 < sizeof buf) {
                memcpy(buf, "\xe2\x96\x81", 3);
                memcpy(buf + 3, key, len + 1);
                text = buf;
                len += 3;
            }
        }
        if ((st = hf_set_token(t, json_integer_value(val), text, len, 0.0f, LLMOPS_TOKEN_NORMAL, tj_path, err))) goto done;
    }
    json_array_foreach(added, ai, at) {
        json_t *content = json_object_get(at, "content");
        int special = json_is_true(json_object_get(at, "special"));
        if ((st = hf_set_token(t, json_integer_value(json_object_get(at, "id")), json_string_value(content),
                               json_string_length(content), 0.0f, special ? LLMOPS_TOKEN_CONTROL : LLMOPS_TOKEN_USER_DEFINED,
                               tj_path, err)))
            goto done;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->text[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        if ((st = llmops_tok_set(t, i, pad, strlen(pad), 0.0f, LLMOPS_TOKEN_UNUSED, err))) goto done;
    }
    if (wordpiece)
        for (size_t i = 0; i < t->n; i++)
            if (t->types[i] == LLMOPS_TOKEN_NORMAL && t->len[i] > 2 && t->text[i][0] == '[' &&
                t->text[i][t->len[i] - 1] == ']')
                t->types[i] = LLMOPS_TOKEN_CONTROL;
    if (bpe) {
        json_t *jm = json_object_get(model, "merges");
        size_t nm = json_array_size(jm);
        t->merges = llmops_calloc(nm ? nm : 1, sizeof *t->merges);
        if (!t->merges) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nm; i++) {
            json_t *m = json_array_get(jm, i);
            char *s = NULL;
            if (json_is_string(m)) s = llmops_arena_strndup(t->arena, json_string_value(m), json_string_length(m));
            else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                     json_is_string(json_array_get(m, 1))) {
                json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
                size_t ll = json_string_length(l), rl = json_string_length(r);
                s = llmops_arena_alloc(t->arena, ll + rl + 2, 1);
                if (s) {
                    memcpy(s, json_string_value(l), ll);
                    s[ll] = ' ';
                    memcpy(s + ll + 1, json_string_value(r), rl);
                    s[ll + 1 + rl] = '\0';
                }
            } else {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: model.merges[%zu] must be \"a b\" or [a, b]", tj_path, i);
                goto done;
            }
            if (!s) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                goto done;
            }
            t->merges[i] = s;
        }
        t->n_merges = nm;
        if (t->kind == LLMOPS_TOKENIZER_SPM) {
            /* SentencePiece-style BPE: a merged piece scores by its merge's rank */
            for (size_t i = 0; i < t->n; i++) t->scores[i] = t->types[i] == LLMOPS_TOKEN_NORMAL ? -1e9f : 0.0f;
            for (size_t i = 0; i < nm; i++) {
                char *sp = strchr(t->merges[i] + 1, ' ');
                if (!sp) continue;
                size_t ll = (size_t)(sp - t->merges[i]), rl = strlen(sp + 1);
                char tmp[1024];
                if (ll + rl >= sizeof tmp) continue;
                memcpy(tmp, t->merges[i], ll);
                memcpy(tmp + ll, sp + 1, rl);
                for (size_t k = 0; k < t->n; k++) {
                    (void)k;
                    break;
                }
                /* looked up after the map is built, below */
            }
            for (size_t i = 0; i < t->n; i++) {
                unsigned byte;
                char tail;
                if (t->len[i] == 6 && sscanf(t->text[i], "<0x%2X>%c", &byte, &tail) == 1) t->types[i] = LLMOPS_TOKEN_BYTE;
            }
        }
    }
    /* special ids: by text from tokenizer_config.json, else config.json's ids */
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                       "mask_token"};
    int32_t *slots[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad, &t->cls, &t->mask};
    if ((st = llmops_tok_finish(t, err))) goto done;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *text = tc ? special_content(tc, keys[i]) : NULL;
        if (text) *slots[i] = llmops_tokenizer_find(t, text, strlen(text));
    }
    if (cfg) {
        const char *ck[] = {"bos_token_id", "eos_token_id", NULL, NULL, "pad_token_id"};
        for (size_t i = 0; i < 5; i++) {
            if (!ck[i] || *slots[i] >= 0) continue;
            json_t *v = json_object_get(cfg, ck[i]);
            if (json_is_array(v)) v = json_array_get(v, 0);
            if (json_is_integer(v) && json_integer_value(v) >= 0 && (uint64_t)json_integer_value(v) < t->n)
                *slots[i] = (int32_t)json_integer_value(v);
        }
    }
    if (t->unk < 0) { /* the model section names its unknown token */
        const char *ut = json_string_value(json_object_get(model, "unk_token"));
        if (!ut) ut = t->kind == LLMOPS_TOKENIZER_WPM ? "[UNK]" : NULL;
        if (ut) t->unk = llmops_tokenizer_find(t, ut, strlen(ut));
    }
    if (t->kind == LLMOPS_TOKENIZER_SPM) {
        if (t->unk < 0) t->unk = llmops_tokenizer_find(t, "<unk>", 5);
        /* rank-derived scores, now that texts can be looked up */
        for (size_t i = 0; i < t->n_merges; i++) {
            char *sp = strchr(t->merges[i] + 1, ' ');
            if (!sp) continue;
            size_t ll = (size_t)(sp - t->merges[i]), rl = strlen(sp + 1);
            char tmp[1024];
            if (ll + rl >= sizeof tmp) continue;
            memcpy(tmp, t->merges[i], ll);
            memcpy(tmp + ll, sp + 1, rl);
            int32_t id = llmops_tokenizer_find(t, tmp, ll + rl);
            if (id >= 0 && t->scores[id] < -(float)i) t->scores[id] = -(float)i;
        }
        t->add_space_prefix = has_type(json_object_get(tj, "normalizer"), "Prepend") ||
                              has_type(json_object_get(tj, "pre_tokenizer"), "Metaspace");
    } else if (t->kind == LLMOPS_TOKENIZER_BPE) {
        if ((st = hf_pre(t, json_object_get(tj, "pre_tokenizer"), tj_path, 0, err))) goto done;
        if (!strcmp(t->pre, "custom") && t->n_re == 0) snprintf(t->pre, sizeof t->pre, "default");
    } else {
        snprintf(t->pre, sizeof t->pre, "default");
        /* BertNormalizer: lowercase (default true); strip_accents null follows lowercase */
        json_t *norm = json_object_get(tj, "normalizer");
        if (json_is_object(norm) && json_is_string(json_object_get(norm, "type")) &&
            !strcmp(json_string_value(json_object_get(norm, "type")), "BertNormalizer")) {
            json_t *lc = json_object_get(norm, "lowercase"), *sa = json_object_get(norm, "strip_accents");
            if (json_is_boolean(lc)) t->wpm_lowercase = json_is_true(lc);
            t->wpm_strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->wpm_lowercase;
        }
        if (t->cls < 0) t->cls = t->bos;
        if (t->bos < 0) t->bos = t->cls;
    }
    /* BOS/EOS additions: tokenizer_config.json, else the post-processor's template */
    json_t *pp = json_object_get(tj, "post_processor");
    json_t *single = json_object_get(pp, "single");
    if (json_is_array(single) && json_array_size(single) > 0) {
        t->add_bos = json_object_get(json_array_get(single, 0), "SpecialToken") != NULL;
        t->add_eos = json_object_get(json_array_get(single, json_array_size(single) - 1), "SpecialToken") != NULL;
    } else if (t->kind == LLMOPS_TOKENIZER_SPM) {
        t->add_bos = 1;
    }
    if (tc) {
        json_t *ab = json_object_get(tc, "add_bos_token"), *ae = json_object_get(tc, "add_eos_token");
        if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
        if (json_is_boolean(ae)) t->add_eos = json_is_true(ae);
    }
    if (t->kind == LLMOPS_TOKENIZER_BPE && !tc) t->add_bos = 0;
    /* chat template */
    if (ct_path && llmops_path_is_file(ct_path)) {
        if ((st = llmops_file_read_all(ct_path, 4u << 20, &t->chat_template, NULL, err))) goto done;
    } else if (tc) {
        json_t *ct = json_object_get(tc, "chat_template");
        const char *tmpl = json_string_value(ct);
        size_t ci;
        json_t *ce;
        json_array_foreach(ct, ci, ce) {
            const char *nm = json_string_value(json_object_get(ce, "name"));
            if (nm && !strcmp(nm, "default")) tmpl = json_string_value(json_object_get(ce, "template"));
        }
        if (tmpl && !(t->chat_template = llmops_strdup(tmpl))) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    /* the special ids are known only now: derive the tables again */
    t->eot = -1;
    st = llmops_tok_finish(t, err);
done:
    json_decref(tj);
    json_decref(tc);
    json_decref(cfg);
    llmops_free(tc_path);
    llmops_free(cfg_path);
    llmops_free(ct_path);
    if (st) {
        llmops_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LLMOPS_OK;
}

/* ---- GPT-2 vocabulary files: vocab.json (or encoder.json) + merges.txt (or vocab.bpe) ----------- */

static llmops_status from_bpe_files(const char *vocab_path, const char *merges_path, llmops_tokenizer **out,
                                    llmops_error *err) {
    *out = NULL;
    json_t *vocab = NULL, *tc = NULL;
    char *merges_text = NULL;
    size_t merges_len = 0;
    llmops_tokenizer *t = NULL;
    char *dir = llmops_strdup(vocab_path);
    char *tc_path = dir ? llmops_path_join(dirname(dir), "tokenizer_config.json") : NULL;
    llmops_status st = LLMOPS_OK;
    if (!tc_path) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = llmops_json_load_file(vocab_path, 256u << 20, &vocab, err))) goto done;
    if (!json_is_object(vocab)) {
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: expected an object of token → id", vocab_path);
        goto done;
    }
    if ((st = llmops_file_read_all(merges_path, 256u << 20, &merges_text, &merges_len, err))) goto done;
    if (llmops_path_is_file(tc_path) && (st = llmops_json_load_file(tc_path, 64u << 20, &tc, err))) goto done;
    int64_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"%.40s\" must map to a token id", vocab_path, key);
            goto done;
        }
        if (json_integer_value(val) >= n) n = json_integer_value(val) + 1;
    }
    if ((st = llmops_tok_alloc(&t, (size_t)n, err))) goto done;
    t->kind = LLMOPS_TOKENIZER_BPE;
    json_object_foreach(vocab, key, val) {
        size_t len = strlen(key);
        /* <|endoftext|>-style entries are control tokens */
        int special = len > 4 && !strncmp(key, "<|", 2) && !strcmp(key + len - 2, "|>");
        if ((st = hf_set_token(t, json_integer_value(val), key, len, 0.0f,
                               special ? LLMOPS_TOKEN_CONTROL : LLMOPS_TOKEN_NORMAL, vocab_path, err)))
            goto done;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->text[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        if ((st = llmops_tok_set(t, i, pad, strlen(pad), 0.0f, LLMOPS_TOKEN_UNUSED, err))) goto done;
    }
    /* merges: one "a b" per line after an optional "#version" header */
    size_t lines = 1;
    for (size_t i = 0; i < merges_len; i++) lines += merges_text[i] == '\n';
    t->merges = llmops_calloc(lines, sizeof *t->merges);
    if (!t->merges) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t line_no = 0;
    for (char *p = merges_text; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        line_no++;
        if (l && p[l - 1] == '\r') l--;
        if (l && !(line_no == 1 && p[0] == '#')) {
            if (!memchr(p + 1, ' ', l > 1 ? l - 1 : 0)) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s:%zu: a merge must read \"left right\"", merges_path,
                                      line_no);
                goto done;
            }
            if (!(t->merges[t->n_merges++] = llmops_arena_strndup(t->arena, p, l))) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    if ((st = llmops_tok_set_pre(t, "gpt-2", err))) goto done;
    if ((st = llmops_tok_finish(t, err))) goto done;
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    int32_t *slots[] = {&t->bos, &t->eos, &t->unk, &t->pad};
    for (size_t i = 0; i < 4; i++) {
        const char *text = tc ? special_content(tc, keys[i]) : NULL;
        if (!text && i < 3) text = "<|endoftext|>";
        if (text) *slots[i] = llmops_tokenizer_find(t, text, strlen(text));
    }
    /* eos is known only now: derive the tables again */
    st = llmops_tok_finish(t, err);
done:
    json_decref(vocab);
    json_decref(tc);
    llmops_free(merges_text);
    llmops_free(dir);
    llmops_free(tc_path);
    if (st) {
        llmops_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LLMOPS_OK;
}

/* vocab.json → merges.txt, encoder.json → vocab.bpe, in the same folder. */
static llmops_status bpe_files_for(const char *vocab_path, llmops_tokenizer **out, int *found, llmops_error *err) {
    *found = 0;
    char *copy = llmops_strdup(vocab_path);
    if (!copy) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    const char *base = strrchr(vocab_path, '/');
    base = base ? base + 1 : vocab_path;
    const char *merges = !strcmp(base, "vocab.json") ? "merges.txt" : !strcmp(base, "encoder.json") ? "vocab.bpe" : NULL;
    llmops_status st = LLMOPS_OK;
    if (merges) {
        char *mp = llmops_path_join(dirname(copy), merges);
        if (!mp) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        else if (llmops_path_is_file(mp)) {
            *found = 1;
            st = from_bpe_files(vocab_path, mp, out, err);
        }
        llmops_free(mp);
    }
    llmops_free(copy);
    return st;
}

/* ---- any path -------------------------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static llmops_status from_file_in(const char *dir, const char *name, llmops_tokenizer **out, int *found,
                                  llmops_error *err) {
    char *p = llmops_path_join(dir, name);
    if (!p) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    *found = llmops_path_is_file(p);
    llmops_status st = *found ? llmops_tokenizer_load(p, out, err) : LLMOPS_OK;
    llmops_free(p);
    return st;
}

llmops_status llmops_tokenizer_load(const char *path, llmops_tokenizer **out, llmops_error *err) {
    *out = NULL;
    if (llmops_path_is_dir(path)) {
        static const char *const names[] = {"tokenizer.json", "tokenizer.model", "vocab.json", "encoder.json",
                                            "tokenizer.bin"};
        for (size_t i = 0; i < 5; i++) {
            int found;
            TRY(from_file_in(path, names[i], out, &found, err));
            if (found) return LLMOPS_OK;
        }
        return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND,
                                "%s: no tokenizer.json, tokenizer.model, vocab.json+merges.txt or tokenizer.bin in this "
                                "folder", path);
    }
    if (!llmops_path_is_file(path)) return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no such file or folder", path);
    if (has_suffix(path, ".json")) {
        int found;
        TRY(bpe_files_for(path, out, &found, err));
        if (found) return LLMOPS_OK;
        char *copy = llmops_strdup(path);
        if (!copy) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        llmops_status st = from_hf(path, NULL, 0, dirname(copy), out, err);
        llmops_free(copy);
        return st;
    }
    llmops_model_format f = llmops_detect_format(path);
    if (f == LLMOPS_FORMAT_GGUF) {
        llmops_gguf *g;
        TRY(llmops_gguf_open(path, &g, err));
        llmops_status st = llmops_tokenizer_from_gguf(g, path, out, err);
        llmops_gguf_free(g);
        return st;
    }
    if (f == LLMOPS_FORMAT_LLAMA2C) {
        /* a checkpoint: its vocabulary sits beside it */
        llmops_llama2c *m;
        TRY(llmops_llama2c_open(path, &m, err));
        int32_t nv = m->vocab_size;
        llmops_llama2c_free(m);
        char *copy = llmops_strdup(path);
        if (!copy) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        char tokname[64];
        snprintf(tokname, sizeof tokname, "tok%d.bin", nv);
        int found = 0;
        llmops_status st = from_file_in(dirname(copy), tokname, out, &found, err);
        if (!st && !found) {
            strcpy(copy, path);
            st = from_file_in(dirname(copy), "tokenizer.bin", out, &found, err);
        }
        llmops_free(copy);
        if (!st && !found)
            st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no tokenizer.bin or %s beside the checkpoint", path,
                                  tokname);
        return st;
    }
    if (has_suffix(path, ".model")) return from_spm_model(path, out, err);
    /* a llama2.c tokenizer.bin has no magic: try it last */
    llmops_llama2c_vocab v;
    llmops_error sub = {0};
    if (!llmops_llama2c_vocab_load(path, 0, &v, &sub)) {
        llmops_status st = from_llama2c_vocab(&v, out, err);
        llmops_llama2c_vocab_free(&v);
        return st;
    }
    return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                            "%s: not a GGUF file, tokenizer.json, tokenizer.model, tokenizer.bin or llama2.c checkpoint "
                            "(as tokenizer.bin: %s)",
                            path, sub.msg);
}

llmops_status llmops_tokenizer_from_json(const char *json, size_t len, const char *origin, llmops_tokenizer **out,
                                         llmops_error *err) {
    return from_hf(origin ? origin : "<tokenizer.json>", json, len, NULL, out, err);
}

/* ---- GGUF writer ------------------------------------------------------------------------------- */

llmops_status llmops_tokenizer_to_gguf(const llmops_tokenizer *t, llmops_gguf_writer *w, llmops_error *err) {
    const char *model = t->kind == LLMOPS_TOKENIZER_SPM ? "llama" : t->kind == LLMOPS_TOKENIZER_BPE ? "gpt2" : "bert";
    size_t *lens = llmops_malloc(t->n * sizeof *lens);
    if (!lens) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n; i++) lens[i] = t->len[i];
    llmops_status st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.model", model, err);
    if (!st && t->kind != LLMOPS_TOKENIZER_SPM)
        st = llmops_gguf_writer_set_str(w, "tokenizer.ggml.pre", strcmp(t->pre, "custom") ? t->pre : "default", err);
    if (!st)
        st = llmops_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)t->text, lens, t->n, err);
    llmops_free(lens);
    if (!st && t->kind == LLMOPS_TOKENIZER_SPM)
        st = llmops_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LLMOPS_GGUF_FLOAT32, t->scores, t->n, err);
    if (!st) st = llmops_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LLMOPS_GGUF_INT32, t->types, t->n, err);
    if (!st && t->kind == LLMOPS_TOKENIZER_BPE)
        st = llmops_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)t->merges, NULL,
                                            t->n_merges, err);
    const struct {
        const char *key;
        int32_t id;
    } ids[] = {{"tokenizer.ggml.bos_token_id", t->kind == LLMOPS_TOKENIZER_WPM ? -1 : t->bos},
               {"tokenizer.ggml.eos_token_id", t->eos},
               {"tokenizer.ggml.unknown_token_id", t->unk},
               {"tokenizer.ggml.seperator_token_id", t->sep},
               {"tokenizer.ggml.padding_token_id", t->pad},
               {"tokenizer.ggml.cls_token_id", t->cls},
               {"tokenizer.ggml.mask_token_id", t->mask}};
    for (size_t i = 0; !st && i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0) st = llmops_gguf_writer_set_u32(w, ids[i].key, (uint32_t)ids[i].id, err);
    if (!st && t->kind != LLMOPS_TOKENIZER_WPM) {
        st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos, err);
        if (!st) st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos, err);
    }
    if (!st && t->kind == LLMOPS_TOKENIZER_SPM && !t->add_space_prefix)
        st = llmops_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 0, err);
    if (!st && t->chat_template) st = llmops_gguf_writer_set_str(w, "tokenizer.chat_template", t->chat_template, err);
    return st;
}
