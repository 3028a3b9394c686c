/*
 * The tokenizer object: vocabulary tables, special-token partitioning,
 * encode/decode entry points. The per-family algorithms are in tok_models.c,
 * loaders in tok_load.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/hash.h"
#include "tokenizer/tok_internal.h"

/* ---- GPT-2 byte map ------------------------------------------------------------------ */

static int byte_prints(uint8_t b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

/* The non-printing bytes take 256, 257, ... in byte order. */
static const uint16_t *byte_map(void) {
    static uint16_t map[256];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        uint16_t k = 0;
        for (int x = 0; x < 256; x++) map[x] = byte_prints((uint8_t)x) ? (uint16_t)x : (uint16_t)(256 + k++);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return map;
}

uint32_t llmops_bpe_byte_to_cp(uint8_t b) { return byte_map()[b]; }

int llmops_bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_prints((uint8_t)cp) ? (int)cp : -1;
    uint32_t k = cp - 256, seen = 0;
    for (int x = 0; x < 256; x++)
        if (!byte_prints((uint8_t)x) && seen++ == k) return x;
    return -1;
}

/* ---- construction ------------------------------------------------------------------- */

llmops_status llmops_tok_alloc(llmops_tokenizer **out, size_t n, llmops_error *err) {
    *out = NULL;
    llmops_tokenizer *t = llmops_calloc(1, sizeof *t);
    if (!t) goto oom;
    t->arena = llmops_arena_create(256 * 1024, 0);
    t->text = llmops_calloc(n ? n : 1, sizeof *t->text);
    t->len = llmops_calloc(n ? n : 1, sizeof *t->len);
    t->scores = llmops_calloc(n ? n : 1, sizeof *t->scores);
    t->types = llmops_calloc(n ? n : 1, sizeof *t->types);
    if (!t->arena || !t->text || !t->len || !t->scores || !t->types) goto oom;
    t->n = n;
    t->bos = t->eos = t->eot = t->eom = t->pad = t->unk = t->sep = t->cls = t->mask = -1;
    for (int i = 0; i < 256; i++) t->byte_token[i] = -1;
    strcpy(t->pre, "default");
    t->wpm_lowercase = t->wpm_strip_accents = 1;
    *out = t;
    return LLMOPS_OK;
oom:
    llmops_tokenizer_free(t);
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory allocating a vocabulary of %zu tokens", n);
}

void llmops_tokenizer_free(llmops_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_re; i++) llmops_regex_free(t->re[i]);
    llmops_free(t->re);
    llmops_free(t->text);
    llmops_free(t->len);
    llmops_free(t->scores);
    llmops_free(t->types);
    llmops_free(t->map);
    llmops_free(t->merges);
    llmops_free(t->merge_map);
    llmops_free(t->pair_key);
    llmops_free(t->pair_rank);
    llmops_free(t->pair_result);
    llmops_free(t->specials);
    llmops_free(t->eog);
    llmops_free(t->chat_template);
    llmops_arena_free(t->arena);
    llmops_free(t);
}

llmops_status llmops_tok_set(llmops_tokenizer *tok, size_t i, const char *text, size_t len, float score, int32_t type,
                             llmops_error *err) {
    if (i >= tok->n) return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "token index %zu out of range", i);
    if (len > UINT32_MAX) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "token %zu is too long", i);
    char *c = llmops_arena_strndup(tok->arena, text, len);
    if (!c) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    tok->text[i] = c;
    tok->len[i] = (uint32_t)len;
    tok->scores[i] = score;
    tok->types[i] = type;
    return LLMOPS_OK;
}

static size_t next_pow2(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int32_t llmops_tokenizer_find(const llmops_tokenizer *tok, const char *text, size_t len) {
    if (!tok->map_cap) return -1;
    size_t mask = tok->map_cap - 1, slot = (size_t)llmops_hash_fnv1a64(text, len) & mask;
    while (tok->map[slot]) {
        uint32_t id = tok->map[slot] - 1;
        if (tok->len[id] == len && memcmp(tok->text[id], text, len) == 0) return (int32_t)id;
        slot = (slot + 1) & mask;
    }
    return -1;
}

int llmops_tok_merge_rank(const llmops_tokenizer *tok, const char *l, size_t ll, const char *r, size_t rl) {
    if (!tok->merge_cap) return -1;
    uint64_t h = llmops_hash_fnv1a64(l, ll);
    h = llmops_hash_fnv1a64_continue(h, " ", 1);
    h = llmops_hash_fnv1a64_continue(h, r, rl);
    size_t mask = tok->merge_cap - 1, slot = (size_t)h & mask;
    while (tok->merge_map[slot]) {
        uint32_t rank = tok->merge_map[slot] - 1;
        const char *m = tok->merges[rank];
        if (strncmp(m, l, ll) == 0 && m[ll] == ' ' && strncmp(m + ll + 1, r, rl) == 0 && m[ll + 1 + rl] == '\0')
            return (int)rank;
        slot = (slot + 1) & mask;
    }
    return -1;
}

static int special_longer_first(const void *a, const void *b, void *ctx) {
    const llmops_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static uint64_t pair_hash(uint64_t key) { return key * 0x9e3779b97f4a7c15ull ^ (key >> 29); }

int llmops_tok_pair_rank(const llmops_tokenizer *tok, int32_t l, int32_t r, int32_t *result) {
    if (!tok->pair_cap || l < 0 || r < 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
    size_t mask = tok->pair_cap - 1, slot = (size_t)pair_hash(key) & mask;
    while (tok->pair_key[slot]) {
        if (tok->pair_key[slot] == key) {
            *result = tok->pair_result[slot];
            return (int)tok->pair_rank[slot];
        }
        slot = (slot + 1) & mask;
    }
    return -1;
}

/* Drops the derived tables, so that finish can run again after a loader changes the vocabulary. */
static void drop_tables(llmops_tokenizer *tok) {
    llmops_free(tok->map);
    llmops_free(tok->merge_map);
    llmops_free(tok->pair_key);
    llmops_free(tok->pair_rank);
    llmops_free(tok->pair_result);
    llmops_free(tok->specials);
    llmops_free(tok->eog);
    tok->map = tok->merge_map = tok->pair_rank = NULL;
    tok->pair_key = NULL;
    tok->pair_result = tok->specials = tok->eog = NULL;
    tok->map_cap = tok->merge_cap = tok->pair_cap = 0;
    tok->n_specials = tok->n_eog = 0;
    memset(tok->special_first, 0, sizeof tok->special_first);
}

llmops_status llmops_tok_finish(llmops_tokenizer *tok, llmops_error *err) {
    drop_tables(tok);
    tok->map_cap = next_pow2(tok->n * 2 + 1);
    tok->map = llmops_calloc(tok->map_cap, sizeof *tok->map);
    if (!tok->map) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    size_t mask = tok->map_cap - 1;
    for (size_t i = 0; i < tok->n; i++) {
        if (!tok->text[i]) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "token %zu has no text", i);
        if (tok->len[i] > tok->max_token_len) tok->max_token_len = tok->len[i];
        size_t slot = (size_t)llmops_hash_fnv1a64(tok->text[i], tok->len[i]) & mask;
        int dup = 0;
        while (tok->map[slot]) {
            uint32_t o = tok->map[slot] - 1;
            if (tok->len[o] == tok->len[i] && memcmp(tok->text[o], tok->text[i], tok->len[i]) == 0) {
                dup = 1; /* the first id keeps the text, as llama.cpp does */
                break;
            }
            slot = (slot + 1) & mask;
        }
        if (!dup) tok->map[slot] = (uint32_t)i + 1;
    }
    if (tok->n_merges) {
        tok->merge_cap = next_pow2(tok->n_merges * 2 + 1);
        tok->merge_map = llmops_calloc(tok->merge_cap, sizeof *tok->merge_map);
        if (!tok->merge_map) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        mask = tok->merge_cap - 1;
        for (size_t i = 0; i < tok->n_merges; i++) {
            const char *m = tok->merges[i];
            const char *sp = strchr(m + (m[0] == ' ' ? 1 : 0), ' ');
            if (!sp) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "merge %zu (\"%s\") has no space separator", i, m);
            size_t ll = (size_t)(sp - m);
            if (llmops_tok_merge_rank(tok, m, ll, sp + 1, strlen(sp + 1)) >= 0) continue; /* duplicate: keep the first */
            uint64_t h = llmops_hash_fnv1a64(m, strlen(m));
            size_t slot = (size_t)h & mask;
            while (tok->merge_map[slot]) slot = (slot + 1) & mask;
            tok->merge_map[slot] = (uint32_t)i + 1;
        }
        /* the same ranks keyed by token ids, for the merge loop */
        tok->pair_cap = next_pow2(tok->n_merges * 2 + 1);
        tok->pair_key = llmops_calloc(tok->pair_cap, sizeof *tok->pair_key);
        tok->pair_rank = llmops_calloc(tok->pair_cap, sizeof *tok->pair_rank);
        tok->pair_result = llmops_calloc(tok->pair_cap, sizeof *tok->pair_result);
        if (!tok->pair_key || !tok->pair_rank || !tok->pair_result)
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        mask = tok->pair_cap - 1;
        char *joined = NULL;
        size_t joined_cap = 0;
        for (size_t i = 0; i < tok->n_merges; i++) {
            const char *m = tok->merges[i];
            const char *sp = strchr(m + (m[0] == ' ' ? 1 : 0), ' ');
            size_t ll = (size_t)(sp - m), rl = strlen(sp + 1);
            int32_t l = llmops_tokenizer_find(tok, m, ll), r = llmops_tokenizer_find(tok, sp + 1, rl);
            if (l < 0 || r < 0) continue;
            if (ll + rl > joined_cap) {
                char *nj = llmops_realloc(joined, ll + rl);
                if (!nj) {
                    llmops_free(joined);
                    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                }
                joined = nj;
                joined_cap = ll + rl;
            }
            memcpy(joined, m, ll);
            memcpy(joined + ll, sp + 1, rl);
            uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
            size_t slot = (size_t)pair_hash(key) & mask;
            while (tok->pair_key[slot] && tok->pair_key[slot] != key) slot = (slot + 1) & mask;
            if (tok->pair_key[slot]) continue; /* a duplicate merge keeps its first rank */
            tok->pair_key[slot] = key;
            tok->pair_rank[slot] = (uint32_t)i;
            tok->pair_result[slot] = llmops_tokenizer_find(tok, joined, ll + rl);
        }
        llmops_free(joined);
    }
    /* when no token longer than one byte holds a newline, no SPM merge crosses one */
    tok->spm_split_newlines = 1;
    for (size_t i = 0; i < tok->n && tok->spm_split_newlines; i++)
        if (tok->len[i] > 1 && memchr(tok->text[i], '\n', tok->len[i])) tok->spm_split_newlines = 0;
    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        if (tok->kind == LLMOPS_TOKENIZER_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            tok->byte_token[b] = llmops_tokenizer_find(tok, buf, 6);
        } else if (tok->kind == LLMOPS_TOKENIZER_BPE) {
            uint32_t cp = llmops_bpe_byte_to_cp((uint8_t)b);
            size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
            if (n == 1) buf[0] = (char)cp;
            else if (n == 2) {
                buf[0] = (char)(0xc0 | (cp >> 6));
                buf[1] = (char)(0x80 | (cp & 0x3f));
            } else {
                buf[0] = (char)(0xe0 | (cp >> 12));
                buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                buf[2] = (char)(0x80 | (cp & 0x3f));
            }
            tok->byte_token[b] = llmops_tokenizer_find(tok, buf, n);
        }
    }
    /* tokens partitioned out of the text: control/user-defined ones, longest first */
    size_t ns = 0;
    for (size_t i = 0; i < tok->n; i++)
        if ((tok->types[i] == LLMOPS_TOKEN_CONTROL || tok->types[i] == LLMOPS_TOKEN_USER_DEFINED) && tok->len[i] > 0)
            ns++;
    if (ns) {
        tok->specials = llmops_malloc(ns * sizeof *tok->specials);
        if (!tok->specials) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < tok->n; i++)
            if ((tok->types[i] == LLMOPS_TOKEN_CONTROL || tok->types[i] == LLMOPS_TOKEN_USER_DEFINED) && tok->len[i] > 0) {
                tok->specials[tok->n_specials++] = (int32_t)i;
                unsigned char c = (unsigned char)tok->text[i][0];
                tok->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
            }
        qsort_r(tok->specials, tok->n_specials, sizeof *tok->specials, special_longer_first, tok);
    }
    /* end of generation: EOS, EOT, EOM and the usual end-of-turn texts */
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<|end_of_text|>", "<|eom_id|>", "</s>", "<|return|>", "<|call|>"};
    tok->eog = llmops_malloc((sizeof eot_texts / sizeof eot_texts[0] + 3) * sizeof *tok->eog);
    if (!tok->eog) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    if (tok->eos >= 0) tok->eog[tok->n_eog++] = tok->eos;
    for (size_t i = 0; i < sizeof eot_texts / sizeof eot_texts[0]; i++) {
        int32_t id = llmops_tokenizer_find(tok, eot_texts[i], strlen(eot_texts[i]));
        if (id < 0 || tok->types[id] != LLMOPS_TOKEN_CONTROL) continue;
        if (tok->eot < 0 && i < 4) tok->eot = id;
        int seen = 0;
        for (size_t k = 0; k < tok->n_eog; k++) seen |= tok->eog[k] == id;
        if (!seen) tok->eog[tok->n_eog++] = id;
    }
    if (tok->eot >= 0) {
        int seen = 0;
        for (size_t k = 0; k < tok->n_eog; k++) seen |= tok->eog[k] == tok->eot;
        if (!seen) tok->eog[tok->n_eog++] = tok->eot;
    }
    return LLMOPS_OK;
}

/* ---- accessors ------------------------------------------------------------------- */

llmops_tokenizer_kind llmops_tokenizer_kind_of(const llmops_tokenizer *t) { return t->kind; }
const char *llmops_tokenizer_pre(const llmops_tokenizer *t) { return t->pre; }
size_t llmops_tokenizer_n_vocab(const llmops_tokenizer *t) { return t->n; }

const char *llmops_tokenizer_token_text(const llmops_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->text[id];
}

llmops_token_type llmops_tokenizer_token_type(const llmops_tokenizer *t, int32_t id) {
    return id < 0 || (size_t)id >= t->n ? LLMOPS_TOKEN_UNUSED : (llmops_token_type)t->types[id];
}

float llmops_tokenizer_token_score(const llmops_tokenizer *t, int32_t id) {
    return id < 0 || (size_t)id >= t->n ? 0.0f : t->scores[id];
}

int32_t llmops_tokenizer_bos(const llmops_tokenizer *t) { return t->bos; }
int32_t llmops_tokenizer_eos(const llmops_tokenizer *t) { return t->eos; }
int32_t llmops_tokenizer_eot(const llmops_tokenizer *t) { return t->eot >= 0 ? t->eot : t->eos; }
int32_t llmops_tokenizer_pad(const llmops_tokenizer *t) { return t->pad; }
int32_t llmops_tokenizer_unk(const llmops_tokenizer *t) { return t->unk; }
int llmops_tokenizer_add_bos(const llmops_tokenizer *t) { return t->add_bos; }
int llmops_tokenizer_add_eos(const llmops_tokenizer *t) { return t->add_eos; }
const char *llmops_tokenizer_chat_template(const llmops_tokenizer *t) { return t->chat_template; }

int llmops_tokenizer_is_eog(const llmops_tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}

void llmops_tokens_free(llmops_tokens *t) {
    llmops_free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

llmops_status llmops_tokens_push(llmops_tokens *t, int32_t id, llmops_error *err) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        int32_t *n = llmops_reallocarray(t->ids, nc, sizeof *n);
        if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        t->ids = n;
        t->cap = nc;
    }
    t->ids[t->n++] = id;
    return LLMOPS_OK;
}

/* ---- encode ----------------------------------------------------------------------- */

typedef struct {
    size_t off, len;
    int32_t token; /* -1: raw text */
} fragment;

typedef struct {
    fragment *f;
    size_t n, cap;
} frag_list;

static llmops_status frag_push(frag_list *l, fragment f, llmops_error *err) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        fragment *n = llmops_reallocarray(l->f, nc, sizeof *n);
        if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        l->f = n;
        l->cap = nc;
    }
    l->f[l->n++] = f;
    return LLMOPS_OK;
}

/* Splits raw fragments around special tokens, longest tokens first, as
 * llama.cpp's tokenizer_st_partition does. User-defined tokens are always
 * matched; control tokens only with parse_special. */
static llmops_status partition(const llmops_tokenizer *tok, const char *text, size_t len, int parse_special,
                               frag_list *out, llmops_error *err) {
    frag_list cur = {0}, next = {0};
    llmops_status st = frag_push(&cur, (fragment){0, len, -1}, err);
    /* one pass finds which first bytes of special tokens occur at all, so
     * that the (longest-first) search below skips tokens that cannot match */
    uint8_t seen[32] = {0};
    int any = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (tok->special_first[c >> 3] & (1u << (c & 7))) {
            seen[c >> 3] |= (uint8_t)(1u << (c & 7));
            any = 1;
        }
    }
    for (size_t s = 0; any && !st && s < tok->n_specials; s++) {
        int32_t id = tok->specials[s];
        if (!parse_special && tok->types[id] == LLMOPS_TOKEN_CONTROL) continue;
        unsigned char c0 = (unsigned char)tok->text[id][0];
        if (!(seen[c0 >> 3] & (1u << (c0 & 7)))) continue;
        const char *sp = tok->text[id];
        size_t sl = tok->len[id];
        next.n = 0;
        for (size_t i = 0; !st && i < cur.n; i++) {
            fragment f = cur.f[i];
            if (f.token >= 0 || f.len < sl) {
                st = frag_push(&next, f, err);
                continue;
            }
            size_t base = f.off, end = f.off + f.len;
            while (!st && base + sl <= end) {
                const char *hit = memmem(text + base, end - base, sp, sl);
                if (!hit) break;
                size_t at = (size_t)(hit - text);
                if (at > base) st = frag_push(&next, (fragment){base, at - base, -1}, err);
                if (!st) st = frag_push(&next, (fragment){at, sl, id}, err);
                base = at + sl;
            }
            if (!st && base < end) st = frag_push(&next, (fragment){base, end - base, -1}, err);
        }
        frag_list tmp = cur;
        cur = next;
        next = tmp;
    }
    llmops_free(next.f);
    if (st) {
        llmops_free(cur.f);
        return st;
    }
    *out = cur;
    return LLMOPS_OK;
}

llmops_status llmops_tokenize(const llmops_tokenizer *tok, const char *text, size_t len, unsigned flags,
                              llmops_tokens *out, llmops_error *err) {
    int add_special = (flags & LLMOPS_TOKENIZE_ADD_SPECIAL) != 0;
    frag_list fl = {0};
    llmops_status st = LLMOPS_OK;
    if (len) st = partition(tok, text, len, (flags & LLMOPS_TOKENIZE_PARSE_SPECIAL) != 0, &fl, err);
    if (st) return st;
    if (tok->kind == LLMOPS_TOKENIZER_WPM) {
        if (add_special && tok->cls >= 0) st = llmops_tokens_push(out, tok->cls, err);
    } else if (add_special && tok->add_bos && tok->bos >= 0) {
        st = llmops_tokens_push(out, tok->bos, err);
    }
    int prev_special = 1;
    char *buf = NULL;
    for (size_t i = 0; !st && i < fl.n; i++) {
        fragment f = fl.f[i];
        if (f.token >= 0) {
            st = llmops_tokens_push(out, f.token, err);
            prev_special = 1;
            continue;
        }
        switch (tok->kind) {
        case LLMOPS_TOKENIZER_SPM: {
            /* a dummy-prefix space before text that starts the input or follows a special token */
            int pre = tok->add_space_prefix && prev_special;
            buf = llmops_malloc(f.len + 2);
            if (!buf) {
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
                break;
            }
            if (pre) buf[0] = ' ';
            memcpy(buf + pre, text + f.off, f.len);
            st = llmops_tok_spm(tok, buf, f.len + (size_t)pre, out, err);
            llmops_free(buf);
            buf = NULL;
            break;
        }
        case LLMOPS_TOKENIZER_BPE: st = llmops_tok_bpe(tok, text + f.off, f.len, out, err); break;
        case LLMOPS_TOKENIZER_WPM: st = llmops_tok_wpm(tok, text + f.off, f.len, out, err); break;
        }
        prev_special = 0;
    }
    llmops_free(fl.f);
    if (st) return st;
    if (tok->kind == LLMOPS_TOKENIZER_WPM) {
        if (add_special && tok->sep >= 0) st = llmops_tokens_push(out, tok->sep, err);
    } else if (add_special && tok->add_eos && tok->eos >= 0) {
        st = llmops_tokens_push(out, tok->eos, err);
    }
    return st;
}

/* ---- decode ----------------------------------------------------------------------- */

static llmops_status put_utf8(llmops_buf *out, uint32_t cp, llmops_error *err) {
    char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xc0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xe0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        b[0] = (char)(0xf0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    return llmops_buf_append(out, b, n, err);
}

/* '▁' (U+2581) → ' ' in `s`, appended to out. */
static llmops_status unescape_spaces(const char *s, size_t n, llmops_buf *out, llmops_error *err) {
    size_t i = 0, run = 0;
    llmops_status st = LLMOPS_OK;
    while (!st && i < n) {
        if (i + 3 <= n && (unsigned char)s[i] == 0xe2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81) {
            st = llmops_buf_append(out, s + run, i - run, err);
            if (!st) st = llmops_buf_append(out, " ", 1, err);
            i += 3;
            run = i;
        } else {
            i++;
        }
    }
    if (!st) st = llmops_buf_append(out, s + run, n - run, err);
    return st;
}

llmops_status llmops_token_to_piece(const llmops_tokenizer *tok, int32_t id, unsigned flags, llmops_buf *out,
                                    llmops_error *err) {
    if (id < 0 || (size_t)id >= tok->n)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "token id %d is outside the vocabulary of %zu", id, tok->n);
    const char *s = tok->text[id];
    size_t n = tok->len[id];
    int type = tok->types[id];
    if (type == LLMOPS_TOKEN_CONTROL) {
        if (flags & LLMOPS_DETOKENIZE_SKIP_SPECIAL) return LLMOPS_OK;
        return llmops_buf_append(out, s, n, err);
    }
    if (type == LLMOPS_TOKEN_USER_DEFINED) return llmops_buf_append(out, s, n, err);
    switch (tok->kind) {
    case LLMOPS_TOKENIZER_SPM: {
        unsigned b;
        char tail;
        if (type == LLMOPS_TOKEN_BYTE && n == 6 && sscanf(s, "<0x%2X>%c", &b, &tail) == 1) {
            char c = (char)b;
            return llmops_buf_append(out, &c, 1, err);
        }
        if (type == LLMOPS_TOKEN_UNKNOWN) return llmops_buf_append(out, "\xe2\x96\x85", 3, err); /* ▅ as llama.cpp */
        return unescape_spaces(s, n, out, err);
    }
    case LLMOPS_TOKENIZER_WPM: return unescape_spaces(s, n, out, err);
    case LLMOPS_TOKENIZER_BPE: {
        /* each code point of the piece is one byte in GPT-2's map */
        llmops_utext t;
        llmops_status st = llmops_utext_from_utf8(&t, s, n, err);
        for (size_t i = 0; !st && i < t.n; i++) {
            int byte = llmops_bpe_cp_to_byte(t.cp[i]);
            if (byte >= 0) {
                char c = (char)byte;
                st = llmops_buf_append(out, &c, 1, err);
            } else {
                st = put_utf8(out, t.cp[i], err); /* not byte-level: keep the character */
            }
        }
        llmops_utext_free(&t);
        return st;
    }
    }
    return LLMOPS_OK;
}

llmops_status llmops_detokenize(const llmops_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                                llmops_buf *out, llmops_error *err) {
    /* SentencePiece and WordPiece add a space before the first word: drop it, as the references do */
    int strip = (tok->kind == LLMOPS_TOKENIZER_WPM || (tok->kind == LLMOPS_TOKENIZER_SPM && tok->add_space_prefix)) &&
                !(flags & LLMOPS_DETOKENIZE_KEEP_LEADING_SPACE);
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        llmops_status st = llmops_token_to_piece(tok, ids[i], flags, out, err);
        if (st) return st;
        if (strip && out->len > before) {
            if (out->data[before] == ' ') {
                memmove(out->data + before, out->data + before + 1, out->len - before - 1);
                out->len--;
                out->data[out->len] = '\0';
            }
            strip = 0;
        }
    }
    return LLMOPS_OK;
}

/* ---- streaming decode -------------------------------------------------------------- */

void llmops_detok_stream_init(llmops_detok_stream *s, const llmops_tokenizer *tok, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->flags = flags;
    s->first = 1;
}

/* Length of the UTF-8 sequence a lead byte announces (1 for invalid leads). */
static size_t utf8_need(unsigned char c) {
    if (c < 0xc0) return 1;
    if (c < 0xe0) return 2;
    if (c < 0xf0) return 3;
    if (c < 0xf8) return 4;
    return 1;
}

llmops_status llmops_detok_stream_push(llmops_detok_stream *s, int32_t id, llmops_buf *out, llmops_error *err) {
    llmops_buf piece;
    llmops_buf_init(&piece, 1 << 20);
    llmops_status st = llmops_buf_append(&piece, s->pending, s->n_pending, err);
    size_t from = piece.len;
    if (!st) st = llmops_detokenize(s->tok, &id, 1, s->flags | (s->first ? 0 : LLMOPS_DETOKENIZE_KEEP_LEADING_SPACE),
                                    &piece, err);
    if (st) {
        llmops_buf_free(&piece);
        return st;
    }
    if (piece.len > from) s->first = 0;
    /* emit everything up to the last complete character */
    size_t end = piece.len, cut = end;
    for (size_t back = 1; back <= 4 && back <= end; back++) {
        unsigned char c = (unsigned char)piece.data[end - back];
        if ((c & 0xc0) == 0x80) continue; /* continuation byte */
        if (utf8_need(c) > back) cut = end - back;
        break;
    }
    st = llmops_buf_append(out, piece.data, cut, err);
    s->n_pending = end - cut;
    if (s->n_pending) memcpy(s->pending, piece.data + cut, s->n_pending);
    llmops_buf_free(&piece);
    return st;
}

llmops_status llmops_detok_stream_finish(llmops_detok_stream *s, llmops_buf *out, llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    if (s->n_pending) st = llmops_buf_append(out, "\xef\xbf\xbd", 3, err);
    s->n_pending = 0;
    return st;
}
