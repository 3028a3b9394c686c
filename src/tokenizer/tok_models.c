/*
 * The tokenization algorithms, following llama.cpp's (which follow the
 * references): SentencePiece BPE by scores with byte fallback, byte-level
 * BPE by merge rank after the model's regex pre-tokenizer, and WordPiece's
 * greedy longest match.
 */
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "llmops/hash.h"
#include "tokenizer/tok_internal.h"

/* ---- pre-tokenizers ------------------------------------------------------------------ */

#define P_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define P_LLAMA3                                                                                                       \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "             \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define P_QWEN2                                                                                                        \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                  \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names; /* '|'-separated llama.cpp names */
    const char *regex[6];
    int ignore_merges;
} pre_def;

/* The regexes of each llama.cpp pre-tokenizer type (llama-vocab.cpp). */
static const pre_def k_pre[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|pixtral", {P_LLAMA3}, 1},
    {"dbrx|smaug-bpe|chatglm-bpe", {P_LLAMA3}, 0},
    {"qwen2|deepseek-r1-qwen|stablelm2|hunyuan|megrez|grok-2", {P_QWEN2}, 0},
    {"gpt-2|mpt|olmo|jais|phi-2|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|roberta-bpe|trillion|"
     "granite-docling",
     {P_GPT2},
     0},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {"\\p{N}", P_GPT2}, 0},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", P_GPT2, "[0-9][0-9][0-9]"}, 0},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93\xca\x95-"
      "\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce"
      "\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-"
      "\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab"
      "\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-"
      "\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-"
      "\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-"
      "\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4"
      "\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d"
      "\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-"
      "\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-"
      "\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b"
      "\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-"
      "\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90"
      "\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0"
      "\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
      "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
      "\\s+$", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}+"},
     0},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
      "\\p{N}"},
     0},
    {"poro-chat|bloom|gpt3-finnish", {" ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"}, 0},
    {"default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", P_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     0},
};

static int name_in(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

llmops_status llmops_tok_add_regex(llmops_tokenizer *tok, const char *pattern, llmops_error *err) {
    llmops_regex **n = llmops_reallocarray(tok->re, tok->n_re + 1, sizeof *n);
    if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    tok->re = n;
    llmops_status st = llmops_regex_compile(pattern, -1, &tok->re[tok->n_re], err);
    if (st) return st;
    tok->n_re++;
    return LLMOPS_OK;
}

llmops_status llmops_tok_set_pre(llmops_tokenizer *tok, const char *name, llmops_error *err) {
    snprintf(tok->pre, sizeof tok->pre, "%s", name);
    if (tok->kind != LLMOPS_TOKENIZER_BPE) return LLMOPS_OK;
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++) {
        if (!name_in(k_pre[i].names, name)) continue;
        for (size_t r = 0; r < 6 && k_pre[i].regex[r]; r++) {
            llmops_status st = llmops_tok_add_regex(tok, k_pre[i].regex[r], err);
            if (st) return llmops_error_prefix(err, "pre-tokenizer '%s': ", name);
        }
        tok->ignore_merges = k_pre[i].ignore_merges;
        return LLMOPS_OK;
    }
    return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", name);
}

/* ---- a binary heap of candidate merges ------------------------------------------------- */

typedef struct {
    int left, right;
    float score; /* SPM: higher first; BPE: rank, lower first (stored negated) */
    size_t size;
} bigram;

typedef struct {
    bigram *b;
    size_t n, cap;
} heap;

static int bigram_before(const bigram *x, const bigram *y) {
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static int heap_push(heap *h, bigram g) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        bigram *n = llmops_reallocarray(h->b, nc, sizeof *n);
        if (!n) return -1;
        h->b = n;
        h->cap = nc;
    }
    size_t i = h->n++;
    h->b[i] = g;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&h->b[i], &h->b[p])) break;
        bigram t = h->b[i];
        h->b[i] = h->b[p];
        h->b[p] = t;
        i = p;
    }
    return 0;
}

static bigram heap_pop(heap *h) {
    bigram top = h->b[0];
    h->b[0] = h->b[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && bigram_before(&h->b[l], &h->b[m])) m = l;
        if (r < h->n && bigram_before(&h->b[r], &h->b[m])) m = r;
        if (m == i) break;
        bigram t = h->b[i];
        h->b[i] = h->b[m];
        h->b[m] = t;
        i = m;
    }
    return top;
}

typedef struct {
    const char *text;
    size_t n;
    int prev, next;
} symbol;

static size_t utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* Splits text into UTF-8 characters as linked symbols. A lead byte whose
 * continuation bytes are missing stands alone, so invalid input falls back to
 * one byte token per byte and decodes back to the same bytes. */
static symbol *split_chars(const char *text, size_t len, size_t *n_out) {
    symbol *s = llmops_malloc((len ? len : 1) * sizeof *s);
    if (!s) return NULL;
    size_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t k = utf8_len((unsigned char)text[off]);
        if (k > len - off) k = 1;
        for (size_t c = 1; c < k; c++)
            if (((unsigned char)text[off + c] & 0xc0) != 0x80) k = 1;
        s[n].text = text + off;
        s[n].n = k;
        s[n].prev = (int)n - 1;
        off += k;
        s[n].next = off == len ? -1 : (int)n + 1;
        n++;
    }
    *n_out = n;
    return s;
}

/* ---- SentencePiece BPE -------------------------------------------------------------------- */

static int spm_try_bigram(const llmops_tokenizer *tok, symbol *s, heap *h, int left, int right) {
    if (left < 0 || right < 0) return 0;
    size_t n = s[left].n + s[right].n;
    int32_t id = llmops_tokenizer_find(tok, s[left].text, n);
    if (id < 0) return 0;
    return heap_push(h, (bigram){left, right, tok->scores[id], n});
}

static llmops_status spm_segment(const llmops_tokenizer *tok, const char *raw, size_t raw_len, llmops_tokens *out,
                                 llmops_error *err);

/* Lines are merged one at a time when no merge can cross a newline: the same
 * result, with small heaps instead of one over the whole text. */
llmops_status llmops_tok_spm(const llmops_tokenizer *tok, const char *raw, size_t raw_len, llmops_tokens *out,
                             llmops_error *err) {
    if (!tok->spm_split_newlines) return spm_segment(tok, raw, raw_len, out, err);
    size_t start = 0;
    while (start < raw_len) {
        const char *nl = memchr(raw + start, '\n', raw_len - start);
        size_t end = nl ? (size_t)(nl - raw) + 1 : raw_len;
        llmops_status st = spm_segment(tok, raw + start, end - start, out, err);
        if (st) return st;
        start = end;
    }
    return LLMOPS_OK;
}

static llmops_status spm_segment(const llmops_tokenizer *tok, const char *raw, size_t raw_len, llmops_tokens *out,
                                 llmops_error *err) {
    /* spaces become '▁' */
    size_t spaces = 0;
    for (size_t i = 0; i < raw_len; i++) spaces += raw[i] == ' ';
    char *text = llmops_malloc(raw_len + spaces * 2 + 1);
    if (!text) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < raw_len; i++) {
        if (raw[i] == ' ') {
            memcpy(text + len, "\xe2\x96\x81", 3);
            len += 3;
        } else {
            text[len++] = raw[i];
        }
    }
    size_t ns;
    symbol *s = split_chars(text, len, &ns);
    heap h = {0};
    llmops_status st = LLMOPS_OK;
    if (!s) goto oom;
    for (size_t i = 1; i < ns; i++)
        if (spm_try_bigram(tok, s, &h, (int)i - 1, (int)i)) goto oom;
    while (h.n) {
        bigram g = heap_pop(&h);
        symbol *l = &s[g.left], *r = &s[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = g.left;
        if (spm_try_bigram(tok, s, &h, l->prev, g.left) || spm_try_bigram(tok, s, &h, g.left, l->next)) goto oom;
    }
    for (int i = ns ? 0 : -1; !st && i != -1; i = s[i].next) {
        int32_t id = llmops_tokenizer_find(tok, s[i].text, s[i].n);
        if (id >= 0) {
            st = llmops_tokens_push(out, id, err);
            continue;
        }
        /* not in the vocabulary: one <0xNN> token per byte (unknown when absent) */
        for (size_t b = 0; !st && b < s[i].n; b++) {
            int32_t bt = tok->byte_token[(unsigned char)s[i].text[b]];
            st = llmops_tokens_push(out, bt >= 0 ? bt : tok->unk, err);
        }
    }
    goto done;
oom:
    st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
done:
    llmops_free(h.b);
    llmops_free(s);
    llmops_free(text);
    return st;
}

/* ---- byte-level BPE ------------------------------------------------------------------------ */

/* Symbol ids let the merge loop look pairs up by id; a symbol that is not a
 * token (id -1) falls back to the text lookup. */
static int bpe_rank(const llmops_tokenizer *tok, const symbol *s, const int32_t *sid, int left, int right,
                    int32_t *result) {
    if (sid[left] >= 0 && sid[right] >= 0) return llmops_tok_pair_rank(tok, sid[left], sid[right], result);
    *result = -1;
    return llmops_tok_merge_rank(tok, s[left].text, s[left].n, s[right].text, s[right].n);
}

static int bpe_try_bigram(const llmops_tokenizer *tok, symbol *s, const int32_t *sid, heap *h, int left, int right) {
    if (left < 0 || right < 0) return 0;
    int32_t result;
    int rank = bpe_rank(tok, s, sid, left, right, &result);
    if (rank < 0) return 0;
    return heap_push(h, (bigram){left, right, -(float)rank, s[left].n + s[right].n});
}

/* Merges one pre-tokenized word (already in GPT-2's byte-unicode spelling). */
static llmops_status bpe_word(const llmops_tokenizer *tok, const char *w, size_t wl, llmops_tokens *out,
                              llmops_error *err) {
    if (tok->ignore_merges) {
        int32_t id = llmops_tokenizer_find(tok, w, wl);
        if (id >= 0) return llmops_tokens_push(out, id, err);
    }
    size_t ns;
    symbol *s = split_chars(w, wl, &ns);
    int32_t *sid = llmops_malloc((ns ? ns : 1) * sizeof *sid);
    heap h = {0};
    llmops_status st = LLMOPS_OK;
    if (!s || !sid) goto oom;
    for (size_t i = 0; i < ns; i++) sid[i] = llmops_tokenizer_find(tok, s[i].text, s[i].n);
    for (size_t i = 1; i < ns; i++)
        if (bpe_try_bigram(tok, s, sid, &h, (int)i - 1, (int)i)) goto oom;
    while (h.n) {
        bigram g = heap_pop(&h);
        symbol *l = &s[g.left], *r = &s[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size || l->next != g.right) continue; /* stale */
        /* the pair must still be the one ranked (llama.cpp checks the text) */
        int32_t result;
        if (bpe_rank(tok, s, sid, g.left, g.right, &result) != (int)-g.score) continue;
        l->n += r->n;
        r->n = 0;
        sid[g.left] = result >= 0 ? result : llmops_tokenizer_find(tok, l->text, l->n);
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = g.left;
        if (bpe_try_bigram(tok, s, sid, &h, l->prev, g.left) || bpe_try_bigram(tok, s, sid, &h, g.left, l->next))
            goto oom;
    }
    for (int i = ns ? 0 : -1; !st && i != -1; i = s[i].next) {
        int32_t id = sid[i];
        if (id >= 0) {
            st = llmops_tokens_push(out, id, err);
            continue;
        }
        for (size_t b = 0; !st && b < s[i].n; b++) {
            int32_t bt = llmops_tokenizer_find(tok, s[i].text + b, 1);
            if (bt >= 0) st = llmops_tokens_push(out, bt, err);
        }
    }
    goto done;
oom:
    st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
done:
    llmops_free(h.b);
    llmops_free(sid);
    llmops_free(s);
    return st;
}

typedef struct {
    size_t *b, *e; /* code point ranges */
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t b, size_t e) {
    if (b >= e) return 0;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        size_t *nb = llmops_reallocarray(s->b, nc, sizeof *nb);
        if (!nb) return -1;
        s->b = nb;
        size_t *ne = llmops_reallocarray(s->e, nc, sizeof *ne);
        if (!ne) return -1;
        s->e = ne;
        s->cap = nc;
    }
    s->b[s->n] = b;
    s->e[s->n] = e;
    s->n++;
    return 0;
}

/* Maps piece i of `text` into GPT-2's byte-unicode spelling in `word`; returns its length. */
static size_t map_piece(const char *text, const llmops_utext *t, const spans *cur, size_t i, char *word) {
    size_t bb = t->off[cur->b[i]], be = t->off[cur->e[i]], wl = 0;
    for (size_t k = bb; k < be; k++) {
        uint32_t cp = llmops_bpe_byte_to_cp((uint8_t)text[k]);
        if (cp < 0x80) word[wl++] = (char)cp;
        else {
            word[wl++] = (char)(0xc0 | (cp >> 6));
            word[wl++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return wl;
}

/*
 * Long texts repeat their words: a cache from piece bytes to ids, local to
 * this call (so the tokenizer stays read-only and shareable between threads).
 */
typedef struct {
    size_t off, len;     /* of the piece's text in `text`; len 0 = empty slot */
    size_t id_off, n_ids;
} cache_slot;

static llmops_status bpe_cached(const llmops_tokenizer *tok, const char *text, const llmops_utext *t, const spans *cur,
                                char *word, llmops_tokens *out, llmops_error *err) {
    size_t cap = 1024;
    while (cap < cur->n && cap < (1u << 20)) cap *= 2;
    cache_slot *slots = llmops_calloc(cap, sizeof *slots);
    llmops_tokens ids = {0}; /* ids of cached pieces */
    size_t used = 0;
    llmops_status st = LLMOPS_OK;
    if (!slots) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cur->n && !st; i++) {
        size_t bb = t->off[cur->b[i]], be = t->off[cur->e[i]], bl = be - bb;
        size_t slot = (size_t)llmops_hash_fnv1a64(text + bb, bl) & (cap - 1);
        while (slots[slot].len && !(slots[slot].len == bl && !memcmp(text + slots[slot].off, text + bb, bl)))
            slot = (slot + 1) & (cap - 1);
        if (slots[slot].len) {
            for (size_t k = 0; k < slots[slot].n_ids && !st; k++)
                st = llmops_tokens_push(out, ids.ids[slots[slot].id_off + k], err);
            continue;
        }
        size_t before = out->n;
        if ((st = bpe_word(tok, word, map_piece(text, t, cur, i, word), out, err))) break;
        if (used * 2 < cap) { /* keep the table at most half full; later words just skip the cache */
            slots[slot] = (cache_slot){bb, bl, ids.n, out->n - before};
            for (size_t k = before; k < out->n && !st; k++) st = llmops_tokens_push(&ids, out->ids[k], err);
            used++;
        }
    }
    llmops_tokens_free(&ids);
    llmops_free(slots);
    return st;
}

llmops_status llmops_tok_bpe(const llmops_tokenizer *tok, const char *text, size_t len, llmops_tokens *out,
                             llmops_error *err) {
    llmops_utext t;
    llmops_status st = llmops_utext_from_utf8(&t, text, len, err);
    if (st) return st;
    spans cur = {0}, next = {0};
    char *word = NULL;
    if (spans_push(&cur, 0, t.n)) goto oom;
    /* each regex splits every piece further: matches and the gaps between them */
    for (size_t r = 0; r < tok->n_re; r++) {
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            size_t at = cur.b[i], end = cur.e[i], mb, me;
            int found;
            while (at < end && (found = llmops_regex_search(tok->re[r], &t, cur.b[i], end, at, &mb, &me)) != 0) {
                if (found < 0) {
                    st = llmops_error_set(err, LLMOPS_ERR_LIMIT, "pre-tokenizer regex %zu exceeded its matching budget", r);
                    goto done;
                }
                if (me == mb) { /* empty match: step over one character */
                    if (mb >= end) break;
                    if (spans_push(&next, at, mb + 1)) goto oom;
                    at = mb + 1;
                    continue;
                }
                if (spans_push(&next, at, mb) || spans_push(&next, mb, me)) goto oom;
                at = me;
            }
            if (spans_push(&next, at, end)) goto oom;
        }
        spans tmp = cur;
        cur = next;
        next = tmp;
    }
    /* each piece: bytes → GPT-2 byte-unicode → merges; repeated words come from a cache */
    word = llmops_malloc(len * 2 + 1);
    if (!word) goto oom;
    if (cur.n > 64) {
        st = bpe_cached(tok, text, &t, &cur, word, out, err);
        goto done;
    }
    for (size_t i = 0; i < cur.n; i++)
        if ((st = bpe_word(tok, word, map_piece(text, &t, &cur, i, word), out, err))) goto done;
    goto done;
oom:
    st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
done:
    llmops_free(word);
    llmops_free(cur.b);
    llmops_free(cur.e);
    llmops_free(next.b);
    llmops_free(next.e);
    llmops_utext_free(&t);
    return st;
}

/* ---- WordPiece ------------------------------------------------------------------------------- */

static int is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static llmops_status wpm_word(const llmops_tokenizer *tok, const char *w, size_t wl, llmops_tokens *out,
                              llmops_error *err) {
    if (!wl) return LLMOPS_OK;
    /* the word with llama.cpp's phantom space, matched greedily longest first */
    char *w1 = llmops_malloc(wl + 4);
    if (!w1) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    memcpy(w1, "\xe2\x96\x81", 3);
    memcpy(w1 + 3, w, wl);
    size_t n = wl + 3, start = out->n;
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        int matched = 0;
        size_t jmax = i + tok->max_token_len + 1 < n ? i + tok->max_token_len + 1 : n;
        for (size_t j = jmax; j > i; j--) {
            int32_t id = llmops_tokenizer_find(tok, w1 + i, j - i);
            if (id >= 0) {
                st = llmops_tokens_push(out, id, err);
                matched = 1;
                i = j - 1;
                break;
            }
        }
        if (!matched) {
            out->n = start; /* discard the partial word */
            break;
        }
    }
    if (!st && out->n == start) {
        if (tok->unk < 0)
            st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "the WordPiece vocabulary has no unknown token for a word it cannot split");
        else
            st = llmops_tokens_push(out, tok->unk, err);
    }
    llmops_free(w1);
    return st;
}

llmops_status llmops_tok_wpm(const llmops_tokenizer *tok, const char *text, size_t len, llmops_tokens *out,
                             llmops_error *err) {
    llmops_utext t;
    llmops_status st = llmops_utext_from_utf8(&t, text, len, err);
    if (st) return st;
    /* NFD, then split on whitespace and around punctuation, symbols and CJK; lower-case */
    llmops_buf word;
    llmops_buf_init(&word, (size_t)1 << 30);
    for (size_t i = 0; i < t.n && !st; i++) {
        utf8proc_int32_t dec[32];
        utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)t.cp[i], dec, 32, UTF8PROC_DECOMPOSE, NULL);
        if (nd < 0 || nd > 32) {
            dec[0] = (utf8proc_int32_t)t.cp[i];
            nd = 1;
        }
        for (utf8proc_ssize_t k = 0; k < nd && !st; k++) {
            uint32_t cp = (uint32_t)dec[k];
            uint16_t fl = llmops_ucp_flags(cp);
            if (fl & UCP_WS) {
                st = wpm_word(tok, word.data, word.len, out, err);
                word.len = 0;
                continue;
            }
            if (cp == 0 || cp == 0xfffd || (fl & UCP_C)) continue;
            /* accents are stripped after NFD, as BertNormalizer does for uncased models */
            if (tok->wpm_strip_accents && utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN) continue;
            uint32_t lc = tok->wpm_lowercase ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp) : cp;
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t el = utf8proc_encode_char((utf8proc_int32_t)lc, enc);
            if ((fl & UCP_P) || (cp < 0x7f && (fl & UCP_S)) || is_chinese(cp)) {
                st = wpm_word(tok, word.data, word.len, out, err);
                word.len = 0;
                if (!st) st = wpm_word(tok, (const char *)enc, (size_t)el, out, err);
            } else {
                st = llmops_buf_append(&word, enc, (size_t)el, err);
            }
        }
    }
    if (!st) st = wpm_word(tok, word.data, word.len, out, err);
    llmops_buf_free(&word);
    llmops_utext_free(&t);
    return st;
}
