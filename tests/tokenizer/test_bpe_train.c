/*
 * Byte-level BPE training against the Stanford CS336 assignment-1 reference
 * (merges and vocabulary produced by the course's reference implementation),
 * a corpus small enough to derive by hand, and the written files read back
 * by the project's tokenizer loaders.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/fileio.h"
#include "llmops/tokenizer.h"
#include "llmops/tokenizer_train.h"

/* GPT-2's bytes_to_unicode, written out here (not the library's table). */
static void b2u_spell(const uint8_t *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < cap; i++) {
        unsigned b = p[i], cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
            cp = b;
        } else {
            unsigned k = 0; /* rank of b among the bytes that are not printable */
            for (unsigned x = 0; x < b; x++)
                if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
            cp = 256 + k;
        }
        if (cp < 0x80) out[o++] = (char)cp;
        else {
            out[o++] = (char)(0xc0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[o] = '\0';
}

/* "left right" of merge k, as merges.txt spells it; specials stay raw. */
static void merge_line(const llmops_bpe_train_result *r, size_t k, char *out, size_t cap) {
    char a[512], b[512];
    const llmops_bpe_token *l = &r->vocab[r->merges[k].left], *rt = &r->vocab[r->merges[k].right];
    b2u_spell(l->bytes, l->len, a, sizeof a);
    b2u_spell(rt->bytes, rt->len, b, sizeof b);
    snprintf(out, cap, "%s %s", a, b);
}

static char *slurp(const char *path, size_t *len) {
    char *d = NULL;
    llmops_error err = {0};
    if (llmops_file_read_all(path, 64u << 20, &d, len, &err)) return NULL;
    return d;
}

static const char *const k_eot[] = {"<|endoftext|>"};

/* ---- the CS336 reference ------------------------------------------------------------------ */

TEST(bpe_train_cs336_reference) {
    const char *corpus = test_asset("text/cs336-bpe/corpus.en");
    const char *ref_merges = test_asset("text/cs336-bpe/train-bpe-reference-merges.txt");
    const char *ref_vocab = test_asset("text/cs336-bpe/train-bpe-reference-vocab.json");
    if (!corpus || !ref_merges || !ref_vocab) SKIP("text/cs336-bpe not in ../shared/assets");
    llmops_error err = {0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 500;
    o.special_tokens = k_eot;
    o.n_special = 1;
    llmops_bpe_train_result *r = NULL;
    CHECK_OK(llmops_bpe_train_files(&corpus, 1, &o, &r, &err), err);
    CHECK_EQ_INT(r->n_vocab, 500);
    CHECK_EQ_INT(r->n_special, 1);
    CHECK_EQ_INT(r->n_merges, 243);

    /* merges: identical, in order */
    size_t ml;
    char *mt = slurp(ref_merges, &ml);
    CHECK(mt);
    char *line = mt;
    size_t k = 0;
    for (char *nl; line && *line; line = nl ? nl + 1 : NULL, k++) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (k == 0 && line[0] == '#') {
            k--;
            continue;
        }
        char got[1100];
        CHECK_MSG(k < r->n_merges, "the reference has more than %zu merges", r->n_merges);
        merge_line(r, k, got, sizeof got);
        CHECK_MSG(!strcmp(got, line), "merge %zu: want \"%s\", got \"%s\"", k, line, got);
    }
    CHECK_EQ_INT(k, r->n_merges);
    free(mt);

    /* vocabulary: the same token → id map (specials, bytes in GPT-2 order, merges) */
    json_error_t je;
    json_t *ref = json_load_file(ref_vocab, 0, &je);
    CHECK_MSG(ref, "%s: %s", ref_vocab, je.text);
    CHECK_EQ_INT(json_object_size(ref), r->n_vocab);
    for (size_t id = 0; id < r->n_vocab; id++) {
        char spelled[600];
        if (id < r->n_special) snprintf(spelled, sizeof spelled, "%.*s", (int)r->vocab[id].len, r->vocab[id].bytes);
        else b2u_spell(r->vocab[id].bytes, r->vocab[id].len, spelled, sizeof spelled);
        json_t *v = json_object_get(ref, spelled);
        CHECK_MSG(v && json_integer_value(v) == (json_int_t)id, "token %zu \"%s\": reference id %lld", id, spelled,
                  v ? (long long)json_integer_value(v) : -1LL);
    }
    /* each merge's result is the next id */
    for (k = 0; k < r->n_merges; k++) CHECK_EQ_INT(r->merges[k].result, 257 + (int)k);
    json_decref(ref);
    llmops_bpe_train_result_free(r);
}

/* ---- a corpus derived by hand ------------------------------------------------------------- */

/*
 * The CS336 handout's example, pre-tokenized by the GPT-2 regex into
 *   "low" x1, " low" x4, " lower" x2, " widest" x3, " newest" x6   (␠ = space)
 * Initial pair counts: (e,s)=(s,t)=9, (w,e)=8, (l,o)=(o,w)=7, (␠,l)=(␠,n)=(n,e)=(e,w)=6,
 * (␠,w)=(w,i)=(i,d)=(d,e)=3, (e,r)=2.
 *   1  s t      9, ties (e,s): ("s","t") > ("e","s")
 *   2  e st     9
 *   3  o w      7, ties (l,o): "o" > "l"            (w,e) fell to 2: newest is n e w est
 *   4  l ow     7
 *   5  w est    6, ties (␠,low) (␠,n) (n,e) (e,w): "w" is the greatest first element
 *   6  n e      6, over (␠,low) (␠,n) (e,west)
 *   7  ne west  6, over (␠,low) (␠,ne)
 *   8  ␠ newest 6, over (␠,low): "newest" > "low"
 *   9  ␠ low    6
 *  10  w i      3, ties (␠,w) (i,d) (d,est)
 *  11  wi d     3, over (␠,wi) (d,est)
 *  12  wid est  3, over (␠,wid)
 *  13  ␠ widest 3
 *  14  e r      2, ties (" low", e): "e" > " low"
 *  15  ␠low er  2
 * after which every word is one symbol.
 */
static const char k_hand_corpus[] =
    "low low low low low lower lower widest widest widest newest newest newest newest newest newest";
static const char *const k_hand_merges[] = {"s t",    "e st",    "o w",    "l ow",     "w est",
                                            "n e",    "ne west", "Ġ newest", "Ġ low",  "w i",
                                            "wi d",   "wid est", "Ġ widest", "e r",    "Ġlow er"};

TEST(bpe_train_hand_derived) {
    llmops_error err = {0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 1000;
    llmops_bpe_train_result *r = NULL;
    CHECK_OK(llmops_bpe_train_buffer(k_hand_corpus, strlen(k_hand_corpus), &o, &r, &err), err);
    CHECK_EQ_INT(r->n_words, 5);
    CHECK_EQ_INT(r->n_pretokens, 16);
    CHECK_EQ_INT(r->n_merges, 15);
    CHECK_EQ_INT(r->n_vocab, 256 + 15); /* stopped early: nothing left to merge */
    for (size_t k = 0; k < 15; k++) {
        char got[256];
        merge_line(r, k, got, sizeof got);
        CHECK_MSG(!strcmp(got, k_hand_merges[k]), "merge %zu: want \"%s\", got \"%s\"", k + 1, k_hand_merges[k], got);
        CHECK_EQ_INT(r->merges[k].result, 256 + (int)k);
    }
    /* byte ids follow GPT-2's order: '!' is id 0, 'A' 32, ' ' (Ġ) 256-68+32 */
    CHECK(r->vocab[0].len == 1 && r->vocab[0].bytes[0] == '!');
    CHECK(r->vocab[32].len == 1 && r->vocab[32].bytes[0] == 'A');
    CHECK(r->vocab[188 + 32].len == 1 && r->vocab[188 + 32].bytes[0] == ' ');
    CHECK(r->vocab[270].len == 6 && !memcmp(r->vocab[270].bytes, " lower", 6));
    llmops_bpe_train_result_free(r);

    /* vocab_size caps the merges; min_frequency stops at the first rarer pair */
    o.vocab_size = 256 + 5;
    CHECK_OK(llmops_bpe_train_buffer(k_hand_corpus, strlen(k_hand_corpus), &o, &r, &err), err);
    CHECK_EQ_INT(r->n_merges, 5);
    CHECK_EQ_INT(r->n_vocab, 261);
    llmops_bpe_train_result_free(r);
    o.vocab_size = 1000;
    o.min_frequency = 7;
    CHECK_OK(llmops_bpe_train_buffer(k_hand_corpus, strlen(k_hand_corpus), &o, &r, &err), err);
    CHECK_EQ_INT(r->n_merges, 4); /* counts 9, 9, 7, 7, then 6 */
    llmops_bpe_train_result_free(r);
}

/* ---- special tokens ----------------------------------------------------------------------- */

TEST(bpe_train_special_tokens) {
    llmops_error err = {0};
    const char *specials[] = {"<s>", "<s><s>", "<pad>"};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 300;
    o.special_tokens = specials;
    o.n_special = 3;
    /* "<s><s>" wins over "<s>" (longest first); no merge spans a special */
    const char text[] = "ab<s><s>ab<pad>ab<s>ab";
    llmops_bpe_train_result *r = NULL;
    CHECK_OK(llmops_bpe_train_buffer(text, strlen(text), &o, &r, &err), err);
    CHECK_EQ_INT(r->n_pretokens, 4);
    CHECK_EQ_INT(r->n_words, 1);
    CHECK_EQ_INT(r->n_merges, 1);
    char got[64];
    merge_line(r, 0, got, sizeof got);
    CHECK_EQ_STR(got, "a b");
    CHECK(r->vocab[1].len == 6 && !memcmp(r->vocab[1].bytes, "<s><s>", 6));
    CHECK_EQ_INT(r->merges[0].result, 3 + 256);
    llmops_bpe_train_result_free(r);

    /* written out, every loader treats them as single special ids */
    const char *dir = test_tmpfile("spec");
    const char corpus[] = "the cat sat<pad>on the mat<s>the end<s><s>";
    CHECK_OK(llmops_bpe_train_buffer(corpus, strlen(corpus), &o, &r, &err), err);
    CHECK_OK(llmops_bpe_train_write(r, dir, "spec-test", &err), err);
    llmops_bpe_train_result_free(r);
    const char *names[] = {"tokenizer.json", "tokenizer.gguf"};
    for (size_t f = 0; f < 2; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        llmops_tokenizer *tok;
        CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err);
        llmops_tokens ids = {0};
        const char probe[] = "the<pad>mat<s><s>x<s>";
        CHECK_OK(llmops_tokenize(tok, probe, strlen(probe), LLMOPS_TOKENIZE_PARSE_SPECIAL, &ids, &err), err);
        int n_pad = 0, n_ss = 0, n_s = 0;
        for (size_t i = 0; i < ids.n; i++) {
            n_s += ids.ids[i] == 0;
            n_ss += ids.ids[i] == 1;
            n_pad += ids.ids[i] == 2;
        }
        CHECK_MSG(n_pad == 1 && n_ss == 1 && n_s == 1, "%s: specials not single ids (%d %d %d of %zu)", names[f], n_s,
                  n_ss, n_pad, ids.n);
        CHECK_EQ_INT(llmops_tokenizer_token_type(tok, 2), LLMOPS_TOKEN_CONTROL);
        CHECK_EQ_INT(llmops_tokenizer_bos(tok), 0);
        CHECK_EQ_INT(llmops_tokenizer_eos(tok), 0);
        llmops_buf back;
        llmops_buf_init(&back, 1 << 20);
        CHECK_OK(llmops_detokenize(tok, ids.ids, ids.n, 0, &back, &err), err);
        CHECK_EQ_STR(back.data, probe);
        llmops_buf_free(&back);
        llmops_tokens_free(&ids);
        llmops_tokenizer_free(tok);
    }
}

/* ---- the written files --------------------------------------------------------------------- */

static void check_file_starts(const char *dir, const char *name, const char *prefix) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n;
    char *d = slurp(path, &n);
    CHECK_MSG(d, "%s was not written", path);
    CHECK_MSG(n >= strlen(prefix) && !memcmp(d, prefix, strlen(prefix)), "%s does not start with %s", path, prefix);
    free(d);
}

TEST(bpe_train_outputs_load_and_agree) {
    const char *corpus = test_asset("text/cs336-bpe/corpus.en");
    if (!corpus) SKIP("text/cs336-bpe/corpus.en not in ../shared/assets");
    llmops_error err = {0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 500;
    o.special_tokens = k_eot;
    o.n_special = 1;
    llmops_bpe_train_result *r = NULL;
    CHECK_OK(llmops_bpe_train_files(&corpus, 1, &o, &r, &err), err);
    const char *dir = test_tmpfile("out/nested");
    CHECK_OK(llmops_bpe_train_write(r, dir, NULL, &err), err);
    check_file_starts(dir, "merges.txt", "#version: 0.2\nĠ t\nĠ a\nh e\n");
    check_file_starts(dir, "tokenizer.gguf", "GGUF");

    size_t len;
    char *text = slurp(corpus, &len);
    CHECK(text);
    /* tokenizer.json, vocab.json + merges.txt and the GGUF give the same ids */
    const char *files[] = {"tokenizer.json", "vocab.json", "tokenizer.gguf"};
    llmops_tokens first = {0};
    for (size_t f = 0; f < 3; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        llmops_tokenizer *tok;
        CHECK_OK(llmops_tokenizer_load(path, &tok, &err), err);
        CHECK_EQ_INT(llmops_tokenizer_n_vocab(tok), 500);
        CHECK_EQ_INT(llmops_tokenizer_kind_of(tok), LLMOPS_TOKENIZER_BPE);
        /* every id's bytes are what training learned */
        for (int32_t id = 1; id < 500; id++) {
            llmops_buf piece;
            llmops_buf_init(&piece, 1024);
            CHECK_OK(llmops_token_to_piece(tok, id, 0, &piece, &err), err);
            CHECK_MSG(piece.len == r->vocab[id].len && !memcmp(piece.data, r->vocab[id].bytes, piece.len),
                      "%s: id %d has other bytes", files[f], id);
            llmops_buf_free(&piece);
        }
        llmops_tokens ids = {0};
        CHECK_OK(llmops_tokenize(tok, text, len, 0, &ids, &err), err);
        CHECK(ids.n > 0 && ids.n < len / 2);
        if (f == 0) {
            first = ids;
        } else {
            CHECK_EQ_INT(ids.n, first.n);
            CHECK_MSG(!memcmp(ids.ids, first.ids, ids.n * sizeof *ids.ids), "%s gives other ids than tokenizer.json",
                      files[f]);
        }
        llmops_buf back;
        llmops_buf_init(&back, 64u << 20);
        CHECK_OK(llmops_detokenize(tok, ids.ids, ids.n, 0, &back, &err), err);
        CHECK_MSG(back.len == len && !memcmp(back.data, text, len), "%s: the corpus does not round-trip", files[f]);
        llmops_buf_free(&back);
        /* the special token parses as id 0 */
        llmops_tokens sp = {0};
        CHECK_OK(llmops_tokenize(tok, "a<|endoftext|>b", 15, LLMOPS_TOKENIZE_PARSE_SPECIAL, &sp, &err), err);
        CHECK_MSG(sp.n == 3 && sp.ids[1] == 0, "%s: <|endoftext|> is not one id", files[f]);
        llmops_tokens_free(&sp);
        if (f) llmops_tokens_free(&ids);
        llmops_tokenizer_free(tok);
    }
    llmops_tokens_free(&first);
    free(text);
    llmops_bpe_train_result_free(r);
}

/* Cutting the corpus into small pieces and using threads changes nothing. */
TEST(bpe_train_pieces_and_threads_agree) {
    const char *corpus = test_asset("text/cs336-bpe/corpus.en");
    if (!corpus) SKIP("text/cs336-bpe/corpus.en not in ../shared/assets");
    size_t len;
    char *base = slurp(corpus, &len);
    CHECK(base);
    /* the corpus, plus text that tests the cut rules: Unicode, runs of blanks, CRLF */
    const char extra[] = "na\xc3\xafve caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac 123 \xd9\xa1\xd9\xa2 \t  x\n\n\n  y\r\n\r\n"
                         "it's we'll \xc2\xa0 nbsp<|endoftext|>\n<|endoftext|> z\n";
    size_t n = len + 40 * (sizeof extra - 1);
    char *text = malloc(n);
    CHECK(text);
    size_t o = 0;
    for (size_t i = 0; i < 40; i++) {
        size_t at = len * i / 40, to = len * (i + 1) / 40;
        memcpy(text + o, base + at, to - at);
        o += to - at;
        memcpy(text + o, extra, sizeof extra - 1);
        o += sizeof extra - 1;
    }
    llmops_error err = {0};
    llmops_bpe_train_options o1 = {0};
    o1.vocab_size = 700;
    o1.special_tokens = k_eot;
    o1.n_special = 1;
    o1.n_threads = 1;
    o1.piece_size = 64u << 20; /* one piece: nothing cut */
    llmops_bpe_train_result *whole = NULL, *cut = NULL;
    CHECK_OK(llmops_bpe_train_buffer(text, o, &o1, &whole, &err), err);
    llmops_bpe_train_options o2 = o1;
    o2.n_threads = 4;
    o2.piece_size = 64; /* a piece every line or so */
    CHECK_OK(llmops_bpe_train_buffer(text, o, &o2, &cut, &err), err);
    CHECK_EQ_INT(cut->n_pretokens, whole->n_pretokens);
    CHECK_EQ_INT(cut->n_words, whole->n_words);
    CHECK_EQ_INT(cut->n_merges, whole->n_merges);
    for (size_t k = 0; k < whole->n_merges; k++)
        CHECK_MSG(cut->merges[k].left == whole->merges[k].left && cut->merges[k].right == whole->merges[k].right,
                  "merge %zu differs", k);
    llmops_bpe_train_result_free(whole);
    llmops_bpe_train_result_free(cut);
    free(text);
    free(base);
}

/*
 * An independent, deliberately naive trainer (every pair recounted from
 * scratch before each merge) on random words over a small alphabet, where
 * equal counts are common, so the order of ties is exercised hard.
 */
#define NV_MAX_TOK 600
#define NV_MAX_LEN 64

typedef struct naive {
    char tok[NV_MAX_TOK][NV_MAX_LEN];
    size_t tok_len[NV_MAX_TOK];
    size_t n_tok;
} naive;

static int naive_cmp(const naive *v, int x, int y) {
    size_t m = v->tok_len[x] < v->tok_len[y] ? v->tok_len[x] : v->tok_len[y];
    int c = memcmp(v->tok[x], v->tok[y], m);
    return c ? c : (v->tok_len[x] > v->tok_len[y]) - (v->tok_len[x] < v->tok_len[y]);
}

TEST(bpe_train_matches_naive_trainer) {
    /* words: "w" then " w" " w" ...; lengths 1..9 over "abcdef", skewed by an LCG */
    enum { N_WORDS = 30000, N_MERGES = 300 };
    static char text[N_WORDS * 11];
    size_t len = 0;
    uint64_t seed = 12345;
    for (int i = 0; i < N_WORDS; i++) {
        if (i) text[len++] = ' ';
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int wl = 1 + (int)((seed >> 33) % 9);
        for (int k = 0; k < wl; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)((seed >> 33) % 16);
            text[len++] = "aaaaabbbbcccddef"[r];
        }
    }
    /* the naive side: distinct words (with their leading space) and counts */
    static naive v;
    static int words[N_WORDS][11];
    static int wlen[N_WORDS];
    static long wcount[N_WORDS];
    int n_words = 0;
    memset(&v, 0, sizeof v);
    for (int b = 0; b < 256; b++) {
        v.tok[b][0] = (char)b;
        v.tok_len[b] = 1;
    }
    v.n_tok = 256;
    for (size_t at = 0; at < len;) {
        size_t end = at + 1;
        while (end < len && text[end] != ' ') end++;
        int found = -1;
        for (int w = 0; w < n_words && found < 0; w++) {
            if ((size_t)wlen[w] != end - at) continue;
            int same = 1;
            for (size_t k = 0; k < end - at && same; k++) same = words[w][k] == (unsigned char)text[at + k];
            if (same) found = w;
        }
        if (found < 0) {
            found = n_words++;
            wlen[found] = (int)(end - at);
            for (size_t k = 0; k < end - at; k++) words[found][k] = (unsigned char)text[at + k];
        }
        wcount[found]++;
        at = end;
    }
    static long counts[NV_MAX_TOK][NV_MAX_TOK];
    int naive_l[N_MERGES], naive_r[N_MERGES];
    for (int m = 0; m < N_MERGES; m++) {
        memset(counts, 0, sizeof counts);
        for (int w = 0; w < n_words; w++)
            for (int k = 0; k + 1 < wlen[w]; k++) counts[words[w][k]][words[w][k + 1]] += wcount[w];
        int ba = -1, bb = -1;
        for (int a = 0; a < (int)v.n_tok; a++)
            for (int b = 0; b < (int)v.n_tok; b++) {
                if (!counts[a][b]) continue;
                int better = ba < 0 || counts[a][b] > counts[ba][bb];
                if (!better && counts[a][b] == counts[ba][bb]) {
                    int c = naive_cmp(&v, a, ba);
                    better = c > 0 || (c == 0 && naive_cmp(&v, b, bb) > 0);
                }
                if (better) ba = a, bb = b;
            }
        CHECK(ba >= 0 && v.n_tok < NV_MAX_TOK);
        int id = (int)v.n_tok++;
        memcpy(v.tok[id], v.tok[ba], v.tok_len[ba]);
        memcpy(v.tok[id] + v.tok_len[ba], v.tok[bb], v.tok_len[bb]);
        v.tok_len[id] = v.tok_len[ba] + v.tok_len[bb];
        CHECK(v.tok_len[id] < NV_MAX_LEN);
        naive_l[m] = ba;
        naive_r[m] = bb;
        for (int w = 0; w < n_words; w++) {
            int o = 0;
            for (int k = 0; k < wlen[w];) {
                if (k + 1 < wlen[w] && words[w][k] == ba && words[w][k + 1] == bb) {
                    words[w][o++] = id;
                    k += 2;
                } else {
                    words[w][o++] = words[w][k++];
                }
            }
            wlen[w] = o;
        }
    }
    /* the library, with and without threads */
    for (int threads = 1; threads <= 3; threads += 2) {
        llmops_error err = {0};
        llmops_bpe_train_options o = {0};
        o.vocab_size = 256 + N_MERGES;
        o.n_threads = threads;
        llmops_bpe_train_result *r = NULL;
        CHECK_OK(llmops_bpe_train_buffer(text, len, &o, &r, &err), err);
        CHECK_EQ_INT(r->n_merges, N_MERGES);
        CHECK_EQ_INT(r->n_words, n_words);
        for (int m = 0; m < N_MERGES; m++) {
            const llmops_bpe_token *l = &r->vocab[r->merges[m].left], *rt = &r->vocab[r->merges[m].right];
            int ok = l->len == v.tok_len[naive_l[m]] && !memcmp(l->bytes, v.tok[naive_l[m]], l->len) &&
                     rt->len == v.tok_len[naive_r[m]] && !memcmp(rt->bytes, v.tok[naive_r[m]], rt->len);
            CHECK_MSG(ok, "merge %d: naive \"%.*s\" + \"%.*s\", got \"%.*s\" + \"%.*s\"", m,
                      (int)v.tok_len[naive_l[m]], v.tok[naive_l[m]], (int)v.tok_len[naive_r[m]], v.tok[naive_r[m]],
                      (int)l->len, l->bytes, (int)rt->len, rt->bytes);
        }
        llmops_bpe_train_result_free(r);
    }
}

typedef struct progress_log {
    int merge_calls, pretok_calls;
    uint64_t last_done, last_total;
} progress_log;

static void log_progress(void *ctx, llmops_bpe_train_phase phase, uint64_t done, uint64_t total, double elapsed) {
    progress_log *p = ctx;
    (void)elapsed;
    if (phase == LLMOPS_BPE_TRAIN_PRETOKENIZE) p->pretok_calls++;
    else {
        p->merge_calls++;
        p->last_done = done;
        p->last_total = total;
    }
}

TEST(bpe_train_progress) {
    llmops_error err = {0};
    progress_log log = {0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 256 + 15;
    o.progress = log_progress;
    o.progress_ctx = &log;
    llmops_bpe_train_result *r = NULL;
    CHECK_OK(llmops_bpe_train_buffer(k_hand_corpus, strlen(k_hand_corpus), &o, &r, &err), err);
    CHECK(log.pretok_calls >= 1 && log.merge_calls >= 1);
    CHECK_EQ_INT(log.last_done, 15);
    CHECK_EQ_INT(log.last_total, 15);
    llmops_bpe_train_result_free(r);
}

/* ---- errors -------------------------------------------------------------------------------- */

TEST(bpe_train_errors) {
    llmops_error err = {0};
    llmops_bpe_train_result *r = NULL;
    llmops_bpe_train_options o = {0};
    o.vocab_size = 256;
    o.special_tokens = k_eot;
    o.n_special = 1;
    CHECK_ERR(llmops_bpe_train_buffer("abc", 3, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "below the 257 ids");
    CHECK(r == NULL);

    o.vocab_size = 300;
    const char *missing = test_tmpfile("no-such-corpus.txt");
    CHECK_ERR(llmops_bpe_train_files(&missing, 1, &o, &r, &err), LLMOPS_ERR_NOT_FOUND, err, missing);
    const char *dir = test_tmpdir();
    CHECK_ERR(llmops_bpe_train_files(&dir, 1, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "is a folder");

    const char *empty = test_tmpfile("empty.txt");
    CHECK_OK(llmops_file_write_atomic(empty, "", 0, &err), err);
    CHECK_ERR(llmops_bpe_train_files(&empty, 1, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "empty corpus");
    CHECK(strstr(err.msg, empty) != NULL);
    CHECK_ERR(llmops_bpe_train_buffer("<|endoftext|><|endoftext|>", 26, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err,
              "empty corpus");
    CHECK_ERR(llmops_bpe_train_buffer(NULL, 0, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "empty corpus");

    const char *dup[] = {"<a>", "<a>"};
    o.special_tokens = dup;
    o.n_special = 2;
    CHECK_ERR(llmops_bpe_train_buffer("abc", 3, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "given twice");
    const char *one[] = {"x"};
    o.special_tokens = one;
    o.n_special = 1;
    CHECK_ERR(llmops_bpe_train_buffer("abc", 3, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "single byte");
    const char *bad[] = {"<\xff>"};
    o.special_tokens = bad;
    CHECK_ERR(llmops_bpe_train_buffer("abc", 3, &o, &r, &err), LLMOPS_ERR_INVALID_ARG, err, "UTF-8");
    CHECK(r == NULL);
}

/* Allocation failures anywhere in training fail cleanly and leak nothing. */
TEST(bpe_train_alloc_failures) {
    llmops_error err = {0};
    llmops_bpe_train_options o = {0};
    o.vocab_size = 1000;
    o.n_threads = 1;
    long live = llmops_alloc_live();
    for (long n = 0;; n++) {
        llmops_bpe_train_result *r = NULL;
        llmops_alloc_fail_nth(n);
        llmops_status st = llmops_bpe_train_buffer(k_hand_corpus, strlen(k_hand_corpus), &o, &r, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        if (st == LLMOPS_OK) {
            CHECK_EQ_INT(r->n_merges, 15);
            llmops_bpe_train_result_free(r);
        } else {
            CHECK(r == NULL);
        }
        CHECK_EQ_INT(llmops_alloc_live(), live);
        if (!fired) break;
        CHECK_MSG(n < 100000, "no end to allocations");
    }
}
