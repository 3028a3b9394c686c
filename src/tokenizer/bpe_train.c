/*
 * Byte-level BPE training (the CS336 assignment-1 reference algorithm) and
 * the writer of the trained tokenizer's folder. See
 * include/llmops/tokenizer_train.h for the contract.
 *
 * Layout of the trainer:
 *   pre-tokenization  corpus → pieces cut where the regex cannot match across →
 *                     (threads) split on specials, GPT-2 regex, count in a
 *                     per-thread table of byte strings → one table
 *   words             each distinct pre-token as a run of symbol ids, with its count
 *   pairs             (left, right) → count, heap slot, list of words holding it
 *   merge loop        pop the best pair, rewrite only the words on its list, adjust
 *                     the counts of the pairs those words lose and gain, re-seat
 *                     the touched pairs in the heap
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "llmops/fileio.h"
#include "llmops/gguf.h"
#include "llmops/threadpool.h"
#include "llmops/tokenizer.h"
#include "llmops/tokenizer_train.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/uregex.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        llmops_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                       \
    } while (0)

/* The CS336 / GPT-2 pre-tokenizer. */
static const char k_gpt2_pattern[] =
    "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Pre-tokenization pieces: about this many bytes by default, at most 4x. */
#define PIECE_DEFAULT ((size_t)1 << 20)
#define PIECE_SIZE_MAX ((size_t)64 << 20) /* 4x of it decoded costs 14 bytes a byte */
/* Words longer than this many bytes are refused (symbol counts are 32-bit). */
#define WORD_MAX_LEN ((size_t)1 << 30)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ---- a table of byte strings → uint64 (open addressing) -------------------------------- */

typedef struct smap_entry {
    uint64_t hash;
    const uint8_t *key; /* NULL: empty slot */
    size_t len;
    uint64_t val;
} smap_entry;

typedef struct smap {
    smap_entry *e;
    size_t cap, n; /* cap: a power of two */
    llmops_arena *keys;
} smap;

static llmops_status smap_init(smap *m, size_t cap, llmops_error *err) {
    memset(m, 0, sizeof *m);
    m->e = llmops_calloc(cap, sizeof *m->e);
    m->keys = llmops_arena_create(1u << 20, 0);
    if (!m->e || !m->keys) {
        llmops_free(m->e);
        llmops_arena_free(m->keys);
        memset(m, 0, sizeof *m);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    m->cap = cap;
    return LLMOPS_OK;
}

static void smap_free(smap *m) {
    llmops_free(m->e);
    llmops_arena_free(m->keys);
    memset(m, 0, sizeof *m);
}

static smap_entry *smap_slot(smap_entry *e, size_t cap, uint64_t h, const uint8_t *k, size_t len) {
    size_t i = (size_t)h & (cap - 1);
    while (e[i].key && !(e[i].hash == h && e[i].len == len && !memcmp(e[i].key, k, len))) i = (i + 1) & (cap - 1);
    return &e[i];
}

static llmops_status smap_grow(smap *m, llmops_error *err) {
    size_t cap = m->cap * 2;
    smap_entry *e = llmops_calloc(cap, sizeof *e);
    if (!e) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory growing a table of %zu strings", m->n);
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key) *smap_slot(e, cap, m->e[i].hash, m->e[i].key, m->e[i].len) = m->e[i];
    llmops_free(m->e);
    m->e = e;
    m->cap = cap;
    return LLMOPS_OK;
}

/* Adds `delta` to the value of key (copied into the table's arena when new). */
static llmops_status smap_add(smap *m, const uint8_t *k, size_t len, uint64_t h, uint64_t delta, llmops_error *err) {
    smap_entry *s = smap_slot(m->e, m->cap, h, k, len);
    if (s->key) {
        s->val += delta;
        return LLMOPS_OK;
    }
    uint8_t *copy = llmops_arena_alloc(m->keys, len ? len : 1, 1);
    if (!copy) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory storing pre-tokens");
    memcpy(copy, k, len);
    s->hash = h;
    s->key = copy;
    s->len = len;
    s->val = delta;
    m->n++;
    return m->n * 2 > m->cap ? smap_grow(m, err) : LLMOPS_OK;
}

/* ---- options and special tokens ------------------------------------------------------------ */

typedef struct special_set {
    const char *const *text;  /* as given                                          */
    size_t n;
    size_t *order;            /* indices, longest first (ties: as given)            */
    size_t *len;
    uint8_t first[256];       /* 1 when some special starts with this byte           */
} special_set;

static int utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xc0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static llmops_status check_options(const llmops_bpe_train_options *o, special_set *sp, llmops_error *err) {
    memset(sp, 0, sizeof *sp);
    if (!o) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no training options");
    if (o->n_special && !o->special_tokens)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "n_special is %zu but special_tokens is NULL", o->n_special);
    if (o->n_special > LLMOPS_BPE_TRAIN_MAX_SPECIAL)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%zu special tokens (at most %d)", o->n_special,
                                LLMOPS_BPE_TRAIN_MAX_SPECIAL);
    if (o->vocab_size < o->n_special + 256)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "vocab size %zu is below the %zu ids of the 256 bytes and %zu special token(s)",
                                o->vocab_size, o->n_special + 256, o->n_special);
    if (o->vocab_size > LLMOPS_BPE_TRAIN_MAX_VOCAB)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "vocab size %zu exceeds the cap of %u", o->vocab_size,
                                LLMOPS_BPE_TRAIN_MAX_VOCAB);
    if (o->piece_size > PIECE_SIZE_MAX || (o->piece_size && o->piece_size < 16))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "piece size %zu is outside 16..%zu bytes", o->piece_size,
                                PIECE_SIZE_MAX);
    if (o->n_threads < 0 || o->n_threads > LLMOPS_THREADPOOL_MAX_THREADS)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "thread count %d is outside 0..%d", o->n_threads,
                                LLMOPS_THREADPOOL_MAX_THREADS);
    sp->n = o->n_special;
    sp->text = o->special_tokens;
    sp->order = llmops_calloc(sp->n + 1, sizeof *sp->order);
    sp->len = llmops_calloc(sp->n + 1, sizeof *sp->len);
    if (!sp->order || !sp->len) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sp->n; i++) {
        const char *s = sp->text[i];
        if (!s || !*s) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "special token %zu is empty", i);
        size_t l = strnlen(s, LLMOPS_BPE_TRAIN_MAX_SPECIAL_LEN + 1);
        if (l > LLMOPS_BPE_TRAIN_MAX_SPECIAL_LEN)
            return llmops_error_set(err, LLMOPS_ERR_LIMIT, "special token %zu ('%.40s...') is longer than %d bytes", i, s,
                                    LLMOPS_BPE_TRAIN_MAX_SPECIAL_LEN);
        if (l == 1)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                    "special token '%s' is a single byte, which is a token already", s);
        if (!utf8_valid(s, l))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "special token %zu is not valid UTF-8", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(sp->text[j], s))
                return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "special token '%s' is given twice", s);
        sp->len[i] = l;
        sp->first[(uint8_t)s[0]] = 1;
        /* insertion sort, longest first, stable */
        size_t k = i;
        while (k > 0 && sp->len[sp->order[k - 1]] < l) {
            sp->order[k] = sp->order[k - 1];
            k--;
        }
        sp->order[k] = i;
    }
    return LLMOPS_OK;
}

static void special_set_free(special_set *sp) {
    llmops_free(sp->order);
    llmops_free(sp->len);
    memset(sp, 0, sizeof *sp);
}

/* Leftmost occurrence at or after `from` of any special (longest at a tie);
 * returns its start or `n` when there is none. `cache[k]` remembers the next
 * occurrence of special k (SIZE_MAX: not looked up yet), so a scan over a
 * piece costs one pass per special. */
static size_t next_special(const special_set *sp, const uint8_t *p, size_t n, size_t from, size_t *cache,
                           size_t *mlen) {
    size_t best = n;
    *mlen = 0;
    for (size_t oi = 0; oi < sp->n; oi++) {
        size_t k = sp->order[oi], l = sp->len[k];
        if (cache[k] == SIZE_MAX || (cache[k] < from && cache[k] != n)) {
            const uint8_t *hit = from + l <= n ? memmem(p + from, n - from, sp->text[k], l) : NULL;
            cache[k] = hit ? (size_t)(hit - p) : n;
        }
        if (cache[k] < best) { /* longest-first order: a later one wins only when strictly left */
            best = cache[k];
            *mlen = l;
        }
    }
    return best;
}

/* 1 when an occurrence of some special covers both p[c-1] and p[c]. */
static int special_spans(const special_set *sp, const uint8_t *p, size_t n, size_t c) {
    for (size_t k = 0; k < sp->n; k++) {
        size_t l = sp->len[k];
        size_t lo = c >= l - 1 ? c - (l - 1) : 0, hi = c + l - 1 < n ? c + l - 1 : n;
        if (hi <= lo || hi - lo < l) continue;
        const uint8_t *q = p + lo;
        while ((q = memmem(q, (size_t)(p + hi - q), sp->text[k], l)) != NULL) {
            size_t s = (size_t)(q - p);
            if (s < c && s + l > c) return 1;
            q++;
            if (q + l > p + hi) break;
        }
    }
    return 0;
}

static int ascii_letter(uint8_t b) { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'); }

/*
 * Whether the pre-tokenization of p[0..n) equals that of p[0..c) followed by
 * that of p[c..n). Two shapes are safe for the GPT-2 regex: "\n" + a visible
 * ASCII character (the newline is a token of its own there, and a whitespace
 * run before it ends as it would at the end of the text), and " " + an ASCII
 * letter (the space starts " word"). The character after must not begin a
 * special token (it could end the text segment there), and no special may
 * span the cut.
 */
static int safe_cut(const special_set *sp, const uint8_t *p, size_t n, size_t c) {
    if (c == 0 || c + 1 >= n) return 0;
    uint8_t a = p[c], b = p[c + 1];
    int ok = (a == '\n' && b > 0x20 && b < 0x7f) || (a == ' ' && ascii_letter(b));
    return ok && !sp->first[b] && !special_spans(sp, p, n, c);
}

/* ---- pre-tokenization ------------------------------------------------------------------------ */

typedef struct piece {
    const uint8_t *p;
    size_t n;
} piece;

typedef struct pretok_thread {
    smap counts;
    uint64_t n_pretokens;
    llmops_status st;
    llmops_error err;
} pretok_thread;

typedef struct pretok_job {
    const piece *pieces;
    const special_set *sp;
    const llmops_regex *re;
    pretok_thread *th;
    _Atomic uint64_t bytes_done;
    _Atomic int failed;
    uint64_t bytes_total;
    double t0, last_report;
    const llmops_bpe_train_options *opt;
} pretok_job;

/* Index of the code point that starts at byte offset `off` (off[] is increasing). */
static size_t cp_at(const llmops_utext *t, size_t off) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->off[mid] < off) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static llmops_status pretok_piece(pretok_job *J, pretok_thread *T, const piece *pc) {
    llmops_utext t;
    TRY(llmops_utext_from_utf8(&t, (const char *)pc->p, pc->n, &T->err));
    size_t cache[LLMOPS_BPE_TRAIN_MAX_SPECIAL + 1];
    for (size_t k = 0; k < J->sp->n; k++) cache[k] = SIZE_MAX;
    llmops_status st = LLMOPS_OK;
    for (size_t seg = 0; seg < pc->n && !st;) {
        size_t ml = 0;
        size_t s = J->sp->n ? next_special(J->sp, pc->p, pc->n, seg, cache, &ml) : pc->n;
        if (s > seg) {
            size_t b = cp_at(&t, seg), e = cp_at(&t, s);
            for (size_t at = b; at < e && !st;) {
                size_t mb, me;
                int r = llmops_regex_search(J->re, &t, b, e, at, &mb, &me);
                if (r < 0) {
                    st = llmops_error_set(&T->err, LLMOPS_ERR_LIMIT,
                                          "the pre-tokenizer regex ran out of its backtracking budget near byte %zu",
                                          t.off[at]);
                    break;
                }
                if (r == 0) break;
                if (me <= mb) { /* cannot happen with this pattern; never loop */
                    at = mb + 1;
                    continue;
                }
                const uint8_t *w = pc->p + t.off[mb];
                size_t wl = t.off[me] - t.off[mb];
                if (wl > WORD_MAX_LEN) {
                    st = llmops_error_set(&T->err, LLMOPS_ERR_LIMIT, "a pre-token of %zu bytes is too long", wl);
                    break;
                }
                st = smap_add(&T->counts, w, wl, hash_bytes(w, wl), 1, &T->err);
                T->n_pretokens++;
                at = me;
            }
        }
        seg = s + ml;
        if (s >= pc->n) break;
    }
    llmops_utext_free(&t);
    return st;
}

static void pretok_range(void *ctx, size_t begin, size_t end, int ith) {
    pretok_job *J = ctx;
    pretok_thread *T = &J->th[ith];
    for (size_t i = begin; i < end; i++) {
        if (T->st || atomic_load(&J->failed)) return;
        T->st = pretok_piece(J, T, &J->pieces[i]);
        if (T->st) {
            atomic_store(&J->failed, 1);
            return;
        }
        uint64_t done = atomic_fetch_add(&J->bytes_done, J->pieces[i].n) + J->pieces[i].n;
        if (ith == 0 && J->opt->progress) {
            double t = now_s();
            if (t - J->last_report >= 0.25) {
                J->last_report = t;
                J->opt->progress(J->opt->progress_ctx, LLMOPS_BPE_TRAIN_PRETOKENIZE, done, J->bytes_total, t - J->t0);
            }
        }
    }
}

/* Cuts one text (a file or the buffer) into pieces and appends them. */
static llmops_status cut_text(const special_set *sp, const uint8_t *p, size_t n, size_t target, piece **pieces,
                              size_t *np, size_t *cap, llmops_error *err) {
    for (size_t pos = 0; pos < n;) {
        size_t end = n;
        if (n - pos > target + target / 2) {
            size_t lim = n - pos > 4 * target ? pos + 4 * target : n;
            end = 0;
            for (size_t c = pos + target; c < lim && !end; c++)
                if (safe_cut(sp, p, n, c)) end = c;
            if (!end) {
                /* no safe cut in 4x the piece size (no line or word starts): cut at a
                 * character boundary outside specials; tokens at the cut may differ */
                end = lim;
                while (end > pos + 1 && end < n && ((p[end] & 0xc0) == 0x80 || special_spans(sp, p, n, end))) end--;
            }
        }
        if (*np == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            piece *q = llmops_reallocarray(*pieces, nc, sizeof *q);
            if (!q) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            *pieces = q;
            *cap = nc;
        }
        (*pieces)[(*np)++] = (piece){p + pos, end - pos};
        pos = end;
    }
    return LLMOPS_OK;
}

/* Counts the pre-tokens of all texts into *out (whose keys own their bytes). */
static llmops_status pretokenize(const piece *texts, size_t n_texts, const special_set *sp,
                                 const llmops_bpe_train_options *opt, double t0, smap *out, uint64_t *n_pretokens,
                                 llmops_error *err) {
    piece *pieces = NULL;
    size_t np = 0, cap = 0;
    uint64_t total = 0;
    llmops_status st = LLMOPS_OK;
    size_t target = opt->piece_size ? opt->piece_size : PIECE_DEFAULT;
    for (size_t i = 0; i < n_texts && !st; i++) {
        st = cut_text(sp, texts[i].p, texts[i].n, target, &pieces, &np, &cap, err);
        total += texts[i].n;
    }
    llmops_regex *re = NULL;
    llmops_threadpool *pool = NULL;
    pretok_thread *th = NULL;
    int nth = 0;
    if (!st) st = llmops_regex_compile(k_gpt2_pattern, -1, &re, err);
    if (!st) {
        int want = opt->n_threads ? opt->n_threads : llmops_cpu_physical_cores();
        if ((size_t)want > np) want = np ? (int)np : 1;
        st = llmops_threadpool_create(want, &pool, err);
    }
    if (!st) {
        nth = llmops_threadpool_n_threads(pool);
        th = llmops_calloc((size_t)nth, sizeof *th);
        if (!th) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        for (int i = 0; i < nth && !st; i++) st = smap_init(&th[i].counts, 1u << 12, err);
    }
    if (!st) {
        pretok_job J = {.pieces = pieces, .sp = sp, .re = re, .th = th, .bytes_total = total, .t0 = t0,
                        .last_report = 0, .opt = opt};
        atomic_init(&J.bytes_done, 0);
        atomic_init(&J.failed, 0);
        st = llmops_threadpool_parallel_for(pool, np, 1, pretok_range, &J);
        if (st) llmops_error_set(err, st, "cannot run the pre-tokenization threads");
        for (int i = 0; i < nth && !st; i++)
            if (th[i].st) {
                *err = th[i].err;
                st = th[i].st;
            }
        if (!st && opt->progress)
            opt->progress(opt->progress_ctx, LLMOPS_BPE_TRAIN_PRETOKENIZE, total, total, now_s() - t0);
    }
    /* fold the threads' tables into the first */
    *n_pretokens = 0;
    for (int i = 0; i < nth && !st; i++) {
        *n_pretokens += th[i].n_pretokens;
        if (i == 0) continue;
        for (size_t k = 0; k < th[i].counts.cap && !st; k++) {
            const smap_entry *e = &th[i].counts.e[k];
            if (e->key) st = smap_add(&th[0].counts, e->key, e->len, e->hash, e->val, err);
        }
        smap_free(&th[i].counts);
    }
    if (!st) {
        *out = th[0].counts;
        memset(&th[0].counts, 0, sizeof th[0].counts);
    }
    for (int i = 0; th && i < nth; i++) smap_free(&th[i].counts);
    llmops_free(th);
    llmops_threadpool_free(pool);
    llmops_regex_free(re);
    llmops_free(pieces);
    return st;
}

/* ---- the merge loop --------------------------------------------------------------------------- */

typedef struct word {
    uint64_t count;
    size_t off;   /* symbols at syms[off .. off+len) */
    uint32_t len;
    uint32_t stamp; /* last merge that rewrote it, +1 */
} word;

typedef struct pair {
    int32_t a, b;
    int64_t count;
    int64_t heap;      /* slot in the heap, -1 when out of it      */
    uint32_t *occ;     /* words that hold (or held) the pair       */
    uint32_t n_occ, cap_occ;
} pair;

typedef struct trainer {
    /* vocabulary */
    llmops_bpe_token *vocab;
    size_t n_vocab, cap_vocab;
    llmops_arena *arena;
    smap tok_ids;       /* learned tokens' bytes → id, to reuse an id for equal bytes */
    /* words */
    word *words;
    size_t n_words;
    int32_t *syms;
    /* pairs */
    pair *pairs;
    size_t n_pairs, cap_pairs;
    uint32_t *pmap;     /* open addressing: pair index + 1                     */
    size_t pmap_cap;
    uint32_t *heap;
    size_t n_heap;
    int heap_live;      /* 0 while the first counts are taken: no heap upkeep */
    llmops_error *err;
} trainer;

static int cmp_tok(const trainer *T, int32_t x, int32_t y) {
    if (x == y) return 0;
    const llmops_bpe_token *a = &T->vocab[x], *b = &T->vocab[y];
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->bytes, b->bytes, m);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/* 1 when pair p ranks above pair q: more frequent, or as frequent and the
 * greater (bytes(a), bytes(b)) tuple. */
static int pair_above(const trainer *T, uint32_t p, uint32_t q) {
    const pair *x = &T->pairs[p], *y = &T->pairs[q];
    if (x->count != y->count) return x->count > y->count;
    int c = cmp_tok(T, x->a, y->a);
    if (c) return c > 0;
    return cmp_tok(T, x->b, y->b) > 0;
}

static void heap_set(trainer *T, size_t i, uint32_t p) {
    T->heap[i] = p;
    T->pairs[p].heap = (int64_t)i;
}

static void heap_up(trainer *T, size_t i) {
    uint32_t p = T->heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_above(T, p, T->heap[up])) break;
        heap_set(T, i, T->heap[up]);
        i = up;
    }
    heap_set(T, i, p);
}

static void heap_down(trainer *T, size_t i) {
    uint32_t p = T->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        uint32_t bp = p;
        if (l < T->n_heap && pair_above(T, T->heap[l], bp)) best = l, bp = T->heap[l];
        if (l + 1 < T->n_heap && pair_above(T, T->heap[l + 1], bp)) best = l + 1, bp = T->heap[l + 1];
        if (best == i) break;
        heap_set(T, i, bp);
        i = best;
    }
    heap_set(T, i, p);
}

static void heap_remove(trainer *T, uint32_t p) {
    size_t i = (size_t)T->pairs[p].heap;
    T->pairs[p].heap = -1;
    uint32_t last = T->heap[--T->n_heap];
    if (i == T->n_heap) return;
    heap_set(T, i, last);
    heap_up(T, i);
    heap_down(T, (size_t)T->pairs[last].heap);
}

/* Re-seats a pair whose count changed (the heap has room for every pair). */
static void heap_fix(trainer *T, uint32_t p) {
    pair *x = &T->pairs[p];
    if (x->heap < 0) {
        if (x->count <= 0) return;
        T->heap[T->n_heap] = p;
        x->heap = (int64_t)T->n_heap++;
        heap_up(T, (size_t)x->heap);
    } else if (x->count <= 0) {
        heap_remove(T, p);
    } else {
        size_t i = (size_t)x->heap;
        heap_up(T, i);
        heap_down(T, (size_t)x->heap);
    }
}

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static llmops_status pmap_grow(trainer *T) {
    size_t cap = T->pmap_cap ? T->pmap_cap * 2 : 1u << 16;
    uint32_t *m = llmops_calloc(cap, sizeof *m);
    if (!m) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory indexing %zu pairs", T->n_pairs);
    for (size_t i = 0; i < T->n_pairs; i++) {
        size_t s = (size_t)hash_u64(pair_key(T->pairs[i].a, T->pairs[i].b)) & (cap - 1);
        while (m[s]) s = (s + 1) & (cap - 1);
        m[s] = (uint32_t)i + 1;
    }
    llmops_free(T->pmap);
    T->pmap = m;
    T->pmap_cap = cap;
    return LLMOPS_OK;
}

/* The index of pair (a, b), created (count 0) when new. */
static llmops_status pair_get(trainer *T, int32_t a, int32_t b, uint32_t *out) {
    uint64_t k = pair_key(a, b);
    size_t s = (size_t)hash_u64(k) & (T->pmap_cap - 1);
    while (T->pmap[s]) {
        const pair *x = &T->pairs[T->pmap[s] - 1];
        if (x->a == a && x->b == b) {
            *out = T->pmap[s] - 1;
            return LLMOPS_OK;
        }
        s = (s + 1) & (T->pmap_cap - 1);
    }
    if (T->n_pairs >= UINT32_MAX - 1) return llmops_error_set(T->err, LLMOPS_ERR_LIMIT, "more than 2^32 pairs");
    if (T->n_pairs == T->cap_pairs) {
        size_t nc = T->cap_pairs ? T->cap_pairs * 2 : 1u << 14;
        pair *p = llmops_reallocarray(T->pairs, nc, sizeof *p);
        uint32_t *h = llmops_reallocarray(T->heap, nc, sizeof *h);
        if (p) T->pairs = p;
        if (h) T->heap = h;
        if (!p || !h) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory holding %zu pairs", T->n_pairs);
        T->cap_pairs = nc;
    }
    uint32_t i = (uint32_t)T->n_pairs++;
    T->pairs[i] = (pair){.a = a, .b = b, .heap = -1};
    T->pmap[s] = i + 1;
    *out = i;
    if (T->n_pairs * 2 > T->pmap_cap) TRY(pmap_grow(T));
    return LLMOPS_OK;
}

/* Adds delta to the count of (a, b), re-seats it in the heap, and records
 * word w on its list when `note` (deduplicated against the last entry).
 * Each change is re-seated at once: fixing a batch of changed keys one by
 * one afterwards can leave the heap out of order. */
static llmops_status pair_add(trainer *T, int32_t a, int32_t b, int64_t delta, uint32_t w, int note) {
    uint32_t p;
    TRY(pair_get(T, a, b, &p));
    pair *x = &T->pairs[p];
    x->count += delta;
    if (T->heap_live) heap_fix(T, p);
    if (note && !(x->n_occ && x->occ[x->n_occ - 1] == w)) {
        if (x->n_occ == x->cap_occ) {
            uint32_t nc = x->cap_occ ? x->cap_occ * 2 : 2;
            uint32_t *o = llmops_reallocarray(x->occ, nc, sizeof *o);
            if (!o) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory");
            x->occ = o;
            x->cap_occ = nc;
        }
        x->occ[x->n_occ++] = w;
    }
    return LLMOPS_OK;
}


static llmops_status vocab_push(trainer *T, const uint8_t *bytes, size_t len) {
    if (T->n_vocab == T->cap_vocab) return llmops_error_set(T->err, LLMOPS_ERR_INTERNAL, "vocabulary overflow");
    uint8_t *c = llmops_arena_alloc(T->arena, len ? len : 1, 1);
    if (!c) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory");
    memcpy(c, bytes, len);
    T->vocab[T->n_vocab++] = (llmops_bpe_token){c, len};
    return LLMOPS_OK;
}

/* GPT-2's bytes_to_unicode order: the printable bytes first, then the rest. */
static void gpt2_byte_order(uint8_t order[256]) {
    size_t n = 0;
    int seen[256] = {0};
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) order[n++] = (uint8_t)b, seen[b] = 1;
    for (int b = 0; b < 256; b++)
        if (!seen[b]) order[n++] = (uint8_t)b;
}

static void trainer_free(trainer *T) {
    for (size_t i = 0; i < T->n_pairs; i++) llmops_free(T->pairs[i].occ);
    llmops_free(T->pairs);
    llmops_free(T->pmap);
    llmops_free(T->heap);
    llmops_free(T->words);
    llmops_free(T->syms);
    smap_free(&T->tok_ids);
}

/* Rewrites word w for merge (a, b) → id and moves its pair counts. */
static llmops_status merge_word(trainer *T, uint32_t w, int32_t a, int32_t b, int32_t id) {
    word *wd = &T->words[w];
    int32_t *s = T->syms + wd->off;
    uint32_t n = wd->len;
    uint32_t i = 0;
    while (i + 1 < n && !(s[i] == a && s[i + 1] == b)) i++;
    if (i + 1 >= n) return LLMOPS_OK; /* a stale entry: the word lost the pair earlier */
    int64_t c = (int64_t)wd->count;
    for (uint32_t k = 0; k + 1 < n; k++) TRY(pair_add(T, s[k], s[k + 1], -c, w, 0));
    uint32_t j = i;
    while (i < n) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[j++] = id;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    wd->len = j;
    for (uint32_t k = 0; k + 1 < j; k++) TRY(pair_add(T, s[k], s[k + 1], c, w, s[k] == id || s[k + 1] == id));
    return LLMOPS_OK;
}

static llmops_status train_merges(trainer *T, const llmops_bpe_train_options *opt, double t0,
                                  llmops_bpe_merge **merges, size_t *n_merges) {
    size_t cap_merges = 0;
    uint64_t min_count = opt->min_frequency > 1 ? opt->min_frequency : 1;
    size_t want = opt->vocab_size - T->n_vocab;
    double last = now_s();
    uint32_t step = 0;
    *n_merges = 0;
    while (T->n_vocab < opt->vocab_size && T->n_heap > 0) {
        uint32_t top = T->heap[0];
        pair *x = &T->pairs[top];
        if ((uint64_t)x->count < min_count) break;
        int32_t a = x->a, b = x->b;
        /* the merged token's bytes; an existing token with equal bytes keeps its id */
        size_t la = T->vocab[a].len, lb = T->vocab[b].len;
        uint8_t *cat = llmops_arena_alloc(T->arena, la + lb, 1);
        if (!cat) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory");
        memcpy(cat, T->vocab[a].bytes, la);
        memcpy(cat + la, T->vocab[b].bytes, lb);
        uint64_t h = hash_bytes(cat, la + lb);
        smap_entry *e = smap_slot(T->tok_ids.e, T->tok_ids.cap, h, cat, la + lb);
        int32_t id;
        if (e->key) {
            id = (int32_t)e->val;
        } else {
            id = (int32_t)T->n_vocab;
            T->vocab[T->n_vocab++] = (llmops_bpe_token){cat, la + lb};
            TRY(smap_add(&T->tok_ids, cat, la + lb, h, (uint64_t)id, T->err));
        }
        if (*n_merges == cap_merges) { /* more merges than new ids when bytes repeat */
            size_t nc = cap_merges ? cap_merges * 2 : want + 16;
            llmops_bpe_merge *m = llmops_reallocarray(*merges, nc, sizeof *m);
            if (!m) return llmops_error_set(T->err, LLMOPS_ERR_NOMEM, "out of memory");
            *merges = m;
            cap_merges = nc;
        }
        (*merges)[(*n_merges)++] = (llmops_bpe_merge){a, b, id};
        step++;
        heap_remove(T, top);
        /* the word list may be reallocated by pair_add: detach it first */
        uint32_t *occ = x->occ, n_occ = x->n_occ;
        x->occ = NULL;
        x->n_occ = x->cap_occ = 0;
        llmops_status st = LLMOPS_OK;
        for (uint32_t k = 0; k < n_occ && !st; k++) {
            uint32_t w = occ[k];
            if (T->words[w].stamp == step) continue;
            T->words[w].stamp = step;
            st = merge_word(T, w, a, b, id);
        }
        llmops_free(occ);
        TRY(st);
        T->pairs[top].count = 0;
        if (opt->progress) {
            double t = now_s();
            if (t - last >= 0.25) {
                last = t;
                opt->progress(opt->progress_ctx, LLMOPS_BPE_TRAIN_MERGE, *n_merges, want, t - t0);
            }
        }
    }
    if (opt->progress) opt->progress(opt->progress_ctx, LLMOPS_BPE_TRAIN_MERGE, *n_merges, want, now_s() - t0);
    return LLMOPS_OK;
}

/* ---- training ------------------------------------------------------------------------------- */

void llmops_bpe_train_result_free(llmops_bpe_train_result *r) {
    if (!r) return;
    llmops_free(r->vocab);
    llmops_free(r->merges);
    llmops_arena_free(r->arena);
    llmops_free(r);
}

static llmops_status train(const piece *texts, size_t n_texts, const llmops_bpe_train_options *opt,
                           llmops_bpe_train_result **out, llmops_error *err) {
    double t0 = now_s();
    special_set sp;
    trainer T;
    memset(&T, 0, sizeof T);
    T.err = err;
    smap counts = {0};
    llmops_bpe_train_result *r = NULL;
    llmops_status st = check_options(opt, &sp, err);
    uint64_t n_pretokens = 0, corpus_bytes = 0;
    for (size_t i = 0; i < n_texts; i++) corpus_bytes += texts[i].n;
    if (!st) st = pretokenize(texts, n_texts, &sp, opt, t0, &counts, &n_pretokens, err);
    if (!st && counts.n == 0)
        st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                              "empty corpus: no text outside the special tokens to train on (%llu bytes read)",
                              (unsigned long long)corpus_bytes);
    if (!st) {
        r = llmops_calloc(1, sizeof *r);
        T.cap_vocab = opt->vocab_size;
        T.vocab = llmops_calloc(T.cap_vocab, sizeof *T.vocab);
        T.arena = llmops_arena_create(1u << 16, 0);
        if (!r || !T.vocab || !T.arena) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    if (!st) st = smap_init(&T.tok_ids, 1u << 10, err);
    /* the initial vocabulary: specials, then the bytes in GPT-2's order */
    int32_t byte_id[256] = {0};
    for (size_t i = 0; i < sp.n && !st; i++) st = vocab_push(&T, (const uint8_t *)sp.text[i], sp.len[i]);
    if (!st) {
        uint8_t order[256];
        gpt2_byte_order(order);
        for (int k = 0; k < 256 && !st; k++) {
            byte_id[order[k]] = (int32_t)T.n_vocab;
            st = vocab_push(&T, &order[k], 1);
        }
    }
    /* words */
    if (!st) {
        size_t total = 0;
        for (size_t i = 0; i < counts.cap; i++) total += counts.e[i].key ? counts.e[i].len : 0;
        T.words = llmops_calloc(counts.n, sizeof *T.words);
        T.syms = llmops_calloc(total ? total : 1, sizeof *T.syms);
        if (!T.words || !T.syms || counts.n > UINT32_MAX - 1)
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory holding %zu words", counts.n);
        size_t off = 0;
        for (size_t i = 0; i < counts.cap && !st; i++) {
            const smap_entry *e = &counts.e[i];
            if (!e->key) continue;
            word *w = &T.words[T.n_words++];
            w->count = e->val;
            w->off = off;
            w->len = (uint32_t)e->len;
            for (size_t k = 0; k < e->len; k++) T.syms[off + k] = byte_id[e->key[k]];
            off += e->len;
        }
    }
    smap_free(&counts);
    if (!st) st = pmap_grow(&T);
    for (size_t w = 0; w < T.n_words && !st; w++) {
        const int32_t *s = T.syms + T.words[w].off;
        for (uint32_t k = 0; k + 1 < T.words[w].len && !st; k++)
            st = pair_add(&T, s[k], s[k + 1], (int64_t)T.words[w].count, (uint32_t)w, 1);
    }
    for (size_t p = 0; p < T.n_pairs && !st; p++) heap_fix(&T, (uint32_t)p);
    T.heap_live = 1;
    llmops_bpe_merge *merges = NULL;
    size_t n_merges = 0;
    if (!st) st = train_merges(&T, opt, t0, &merges, &n_merges);
    if (!st) {
        r->n_vocab = T.n_vocab;
        r->vocab = T.vocab;
        r->n_special = sp.n;
        r->n_merges = n_merges;
        r->merges = merges;
        r->corpus_bytes = corpus_bytes;
        r->n_pretokens = n_pretokens;
        r->n_words = T.n_words;
        r->arena = T.arena;
        r->seconds = now_s() - t0;
        T.vocab = NULL;
        T.arena = NULL;
        merges = NULL;
        *out = r;
        r = NULL;
    }
    llmops_free(merges);
    llmops_free(T.vocab);
    llmops_arena_free(T.arena);
    llmops_free(r);
    trainer_free(&T);
    special_set_free(&sp);
    return st;
}

llmops_status llmops_bpe_train_buffer(const char *text, size_t len, const llmops_bpe_train_options *opt,
                                      llmops_bpe_train_result **out, llmops_error *err) {
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no result pointer");
    *out = NULL;
    if (!text && len) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "NULL text of %zu bytes", len);
    piece p = {(const uint8_t *)text, len};
    return train(&p, 1, opt, out, err);
}

llmops_status llmops_bpe_train_files(const char *const *paths, size_t n_paths, const llmops_bpe_train_options *opt,
                                     llmops_bpe_train_result **out, llmops_error *err) {
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no result pointer");
    *out = NULL;
    if (!paths || n_paths == 0) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no corpus files given");
    llmops_mmap *maps = llmops_calloc(n_paths, sizeof *maps);
    piece *texts = llmops_calloc(n_paths, sizeof *texts);
    llmops_status st = maps && texts ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    size_t opened = 0;
    for (; opened < n_paths && !st; opened++) {
        if (!paths[opened]) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "corpus path %zu is NULL", opened);
            break;
        }
        if (!llmops_path_is_file(paths[opened])) {
            st = llmops_error_set(err, llmops_path_is_dir(paths[opened]) ? LLMOPS_ERR_INVALID_ARG : LLMOPS_ERR_NOT_FOUND,
                                  "%s: %s", paths[opened],
                                  llmops_path_is_dir(paths[opened]) ? "is a folder, not a corpus file"
                                                                    : "no such corpus file");
            break;
        }
        st = llmops_mmap_open(paths[opened], &maps[opened], err);
        if (st) break;
        texts[opened] = (piece){maps[opened].data, maps[opened].size};
    }
    if (!st) {
        st = train(texts, n_paths, opt, out, err);
        if (st == LLMOPS_ERR_INVALID_ARG && strstr(err->msg, "empty corpus") && n_paths == 1)
            llmops_error_prefix(err, "%s: ", paths[0]);
    }
    for (size_t i = 0; maps && i < opened; i++) llmops_mmap_close(&maps[i]);
    llmops_free(maps);
    llmops_free(texts);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------------ */

/* The GPT-2 byte-to-unicode spelling of raw bytes into b (reset first). */
static llmops_status spell(const uint8_t *p, size_t n, llmops_buf *b, llmops_error *err) {
    b->len = 0;
    TRY(llmops_buf_reserve(b, n * 2 + 1, err));
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = llmops_bpe_byte_to_cp(p[i]);
        if (cp < 0x80) {
            b->data[b->len++] = (char)cp;
        } else { /* the map stays below U+0800 */
            b->data[b->len++] = (char)(0xc0 | (cp >> 6));
            b->data[b->len++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    b->data[b->len] = '\0';
    return LLMOPS_OK;
}

/* Token id's text as the files store it: specials raw, the rest spelled. */
static llmops_status token_text(const llmops_bpe_train_result *r, size_t id, llmops_buf *b, llmops_error *err) {
    if (id < r->n_special) {
        b->len = 0;
        return llmops_buf_append(b, r->vocab[id].bytes, r->vocab[id].len, err);
    }
    return spell(r->vocab[id].bytes, r->vocab[id].len, b, err);
}

static llmops_status jset(json_t *obj, const char *key, json_t *v, llmops_error *err) {
    if (!v || json_object_set_new(obj, key, v))
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "cannot build the JSON value of \"%s\"", key);
    return LLMOPS_OK;
}

static json_t *byte_level(int add_prefix_space, int trim_offsets) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", add_prefix_space, "trim_offsets",
                     trim_offsets, "use_regex", 1);
}

/* vocab (token → id) and merges ("a b") in GPT-2 spelling. */
static llmops_status build_vocab_merges(const llmops_bpe_train_result *r, json_t **vocab_out, llmops_buf *merges_txt,
                                        json_t **merges_out, llmops_error *err) {
    json_t *vocab = json_object(), *merges = json_array();
    llmops_buf a, b;
    llmops_buf_init(&a, 1u << 20);
    llmops_buf_init(&b, 1u << 20);
    llmops_status st = vocab && merges ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n_vocab && !st; i++) {
        if ((st = token_text(r, i, &a, err))) break;
        if (json_object_get(vocab, a.data)) {
            st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                  "token %zu ('%.60s') is spelled like an earlier token; rename the special token", i,
                                  a.data);
            break;
        }
        st = jset(vocab, a.data, json_integer((json_int_t)i), err);
    }
    if (!st) st = llmops_buf_puts(merges_txt, "#version: 0.2\n", err);
    for (size_t i = 0; i < r->n_merges && !st; i++) {
        if ((st = token_text(r, (size_t)r->merges[i].left, &a, err))) break;
        if ((st = token_text(r, (size_t)r->merges[i].right, &b, err))) break;
        size_t mark = merges_txt->len;
        st = llmops_buf_printf(merges_txt, err, "%s %s\n", a.data, b.data);
        if (!st && json_array_append_new(merges, json_stringn(merges_txt->data + mark, merges_txt->len - mark - 1)))
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    llmops_buf_free(&a);
    llmops_buf_free(&b);
    if (st) {
        json_decref(vocab);
        json_decref(merges);
        return st;
    }
    *vocab_out = vocab;
    *merges_out = merges;
    return LLMOPS_OK;
}

static llmops_status write_tokenizer_json(const llmops_bpe_train_result *r, json_t *vocab, json_t *merges,
                                          const char *path, llmops_error *err) {
    json_t *tj = json_object(), *added = json_array(), *model = json_object();
    llmops_status st = tj && added && model ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n_special && !st; i++) {
        json_t *t = json_pack("{s:I, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content",
                              (const char *)r->vocab[i].bytes, r->vocab[i].len, "single_word", 0, "lstrip", 0,
                              "rstrip", 0, "normalized", 0, "special", 1);
        if (!t || json_array_append_new(added, t)) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    if (!st) st = jset(tj, "version", json_string("1.0"), err);
    if (!st) st = jset(tj, "truncation", json_null(), err);
    if (!st) st = jset(tj, "padding", json_null(), err);
    if (!st) {
        st = jset(tj, "added_tokens", added, err);
        added = NULL;
    }
    if (!st) st = jset(tj, "normalizer", json_null(), err);
    if (!st) st = jset(tj, "pre_tokenizer", byte_level(0, 1), err);
    if (!st) st = jset(tj, "post_processor", byte_level(1, 0), err);
    if (!st) st = jset(tj, "decoder", byte_level(1, 1), err);
    if (!st) st = jset(model, "type", json_string("BPE"), err);
    if (!st) st = jset(model, "dropout", json_null(), err);
    if (!st) st = jset(model, "unk_token", json_null(), err);
    if (!st) st = jset(model, "continuing_subword_prefix", json_string(""), err);
    if (!st) st = jset(model, "end_of_word_suffix", json_string(""), err);
    if (!st) st = jset(model, "fuse_unk", json_false(), err);
    if (!st) st = jset(model, "byte_fallback", json_false(), err);
    if (!st) st = jset(model, "ignore_merges", json_false(), err);
    if (!st) st = jset(model, "vocab", json_incref(vocab), err);
    if (!st) st = jset(model, "merges", json_incref(merges), err);
    if (!st) {
        st = jset(tj, "model", model, err);
        model = NULL;
    }
    if (!st) st = llmops_json_write_file(tj, path, 2, err);
    json_decref(added);
    json_decref(model);
    json_decref(tj);
    return st;
}

static llmops_status write_config(const llmops_bpe_train_result *r, const char *path, llmops_error *err) {
    json_t *tc = json_object(), *dec = json_object();
    llmops_status st = tc && dec ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    if (!st) st = jset(tc, "add_bos_token", json_false(), err);
    if (!st) st = jset(tc, "add_eos_token", json_false(), err);
    if (!st) st = jset(tc, "add_prefix_space", json_false(), err);
    for (size_t i = 0; i < r->n_special && !st; i++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        st = jset(dec, key,
                  json_pack("{s:s%, s:b, s:b, s:b, s:b, s:b}", "content", (const char *)r->vocab[i].bytes,
                            r->vocab[i].len, "lstrip", 0, "normalized", 0, "rstrip", 0, "single_word", 0, "special", 1),
                  err);
    }
    if (!st) {
        st = jset(tc, "added_tokens_decoder", dec, err);
        dec = NULL;
    }
    if (!st && r->n_special) {
        static const char *const keys[] = {"bos_token", "eos_token", "unk_token"};
        for (size_t k = 0; k < 3 && !st; k++)
            st = jset(tc, keys[k], json_stringn((const char *)r->vocab[0].bytes, r->vocab[0].len), err);
    }
    if (!st) st = jset(tc, "clean_up_tokenization_spaces", json_false(), err);
    if (!st) st = jset(tc, "errors", json_string("replace"), err);
    if (!st) st = jset(tc, "tokenizer_class", json_string("GPT2TokenizerFast"), err);
    if (!st) st = llmops_json_write_file(tc, path, 2, err);
    json_decref(dec);
    json_decref(tc);
    return st;
}

static llmops_status write_gguf(const char *tj_path, const char *name, const char *path, llmops_error *err) {
    llmops_tokenizer *tok = NULL;
    TRY(llmops_tokenizer_load(tj_path, &tok, err));
    llmops_gguf_writer *w = llmops_gguf_writer_create();
    llmops_status st = w ? LLMOPS_OK : llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    if (!st) st = llmops_gguf_writer_set_str(w, "general.name", name, err);
    if (!st) st = llmops_tokenizer_to_gguf(tok, w, err);
    if (!st) st = llmops_gguf_writer_write(w, path, err);
    llmops_gguf_writer_free(w);
    llmops_tokenizer_free(tok);
    return st;
}

llmops_status llmops_bpe_train_write(const llmops_bpe_train_result *r, const char *dir, const char *name,
                                     llmops_error *err) {
    if (!r || !dir || !*dir) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no result or output folder");
    llmops_json_init();
    TRY(llmops_mkdirs(dir, err));
    char defname[48];
    snprintf(defname, sizeof defname, "bpe-%zu", r->n_vocab);
    if (!name) name = defname;
    static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                        "tokenizer.gguf"};
    char *paths[5] = {0};
    json_t *vocab = NULL, *merges = NULL;
    llmops_buf mt;
    llmops_buf_init(&mt, (size_t)1 << 30);
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i < 5 && !st; i++)
        if (!(paths[i] = llmops_path_join(dir, names[i]))) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    if (!st) st = build_vocab_merges(r, &vocab, &mt, &merges, err);
    /* tokenizer_config.json first: loading tokenizer.json for the GGUF reads it */
    if (!st) st = write_config(r, paths[3], err);
    if (!st) st = write_tokenizer_json(r, vocab, merges, paths[0], err);
    if (!st) st = llmops_json_write_file(vocab, paths[1], 2, err);
    if (!st) st = llmops_file_write_atomic(paths[2], mt.data, mt.len, err);
    if (!st) st = write_gguf(paths[0], name, paths[4], err);
    json_decref(vocab);
    json_decref(merges);
    llmops_buf_free(&mt);
    for (size_t i = 0; i < 5; i++) llmops_free(paths[i]);
    return st;
}
