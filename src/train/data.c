/*
 * The data pipeline of fine-tuning (llmops/train_data.h): sources to
 * examples (data_parse.c), examples to tokens with a trained flag per token,
 * tokens to rows (windows, one example per row, or packed), the train /
 * validation split, and batches in a per-epoch shuffled order.
 *
 * Storage: every token of every row lives in one pool (tok, trn); a row is a
 * slice (off, len <= seq_len+1) of it. Windows of plain text overlap by one
 * token, so the stream is stored once.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "llmops/chat_template.h"
#include "llmops/fileio.h"
#include "llmops/log.h"
#include "llmops/train_data.h"
#include "train/data_internal.h"

#define DATA_MAX_SEQ_LEN (1 << 20)

void llmops_data_params_init(llmops_data_params *p) {
    memset(p, 0, sizeof *p);
    p->seq_len = 256;
    p->mask_prompt = 1;
    p->seed = 42;
    p->bad_rows = LLMOPS_DATA_BAD_SKIP;
    p->max_logged = 5;
    p->max_file_bytes = (size_t)1 << 30;
    llmops_fetch_params_init(&p->fetch);
}

static const char *const g_schema_names[] = {"auto", "text", "alpaca", "completion", "chat"};
static const char *const g_format_names[] = {"auto", "text", "jsonl", "json", "csv"};

const char *llmops_data_schema_name(llmops_data_schema s) {
    return (unsigned)s < sizeof g_schema_names / sizeof *g_schema_names ? g_schema_names[s] : "?";
}

llmops_status llmops_data_format_parse(const char *s, llmops_data_format *out, llmops_error *err) {
    for (int i = 0; i < 5; i++)
        if (s && !strcasecmp(s, g_format_names[i])) {
            *out = (llmops_data_format)i;
            return LLMOPS_OK;
        }
    if (s && !strcasecmp(s, "tsv")) {
        *out = LLMOPS_DATA_FORMAT_CSV;
        return LLMOPS_OK;
    }
    return llmops_error_set(err, LLMOPS_ERR_CONFIG, "unknown data format \"%s\" (auto, text, jsonl, json, csv)",
                            s ? s : "");
}

llmops_status llmops_data_schema_parse(const char *s, llmops_data_schema *out, llmops_error *err) {
    for (int i = 0; i < 5; i++)
        if (s && !strcasecmp(s, g_schema_names[i])) {
            *out = (llmops_data_schema)i;
            return LLMOPS_OK;
        }
    if (s && (!strcasecmp(s, "prompt_completion") || !strcasecmp(s, "instruction"))) {
        *out = !strcasecmp(s, "instruction") ? LLMOPS_DATA_SCHEMA_ALPACA : LLMOPS_DATA_SCHEMA_COMPLETION;
        return LLMOPS_OK;
    }
    return llmops_error_set(err, LLMOPS_ERR_CONFIG,
                            "unknown data schema \"%s\" (auto, text, alpaca, completion, chat)", s ? s : "");
}

/* ---- the dataset ---------------------------------------------------------------------- */

typedef struct data_row {
    uint64_t off;       /* first token in the pool        */
    uint32_t len;       /* tokens, <= seq_len + 1          */
    uint32_t n_ex;      /* examples that start in the row  */
    uint32_t n_trunc;   /* of those, truncated             */
    uint32_t n_trained; /* trained targets                 */
} data_row;

typedef struct data_split {
    uint32_t *rows; /* (n) row ids, ascending */
    int64_t n;
    llmops_data_stats st;
    llmops_data_pos pos;
    int64_t *perm;  /* (n) the order of perm_epoch */
    int64_t perm_epoch;
} data_split;

struct llmops_dataset {
    int seq_len;
    int32_t pad;
    llmops_data_schema schema;
    uint64_t seed;
    int32_t *tok;  /* (n_tok) */
    uint8_t *trn;  /* (n_tok) 1: the token is a trained target */
    size_t n_tok, cap_tok;
    data_row *rows;
    size_t n_rows, cap_rows;
    data_split split[2];
};

int llmops_dataset_seq_len(const llmops_dataset *ds) { return ds->seq_len; }
int32_t llmops_dataset_pad_id(const llmops_dataset *ds) { return ds->pad; }
llmops_data_schema llmops_dataset_schema(const llmops_dataset *ds) { return ds->schema; }

void llmops_dataset_free(llmops_dataset *ds) {
    if (!ds) return;
    llmops_free(ds->tok);
    llmops_free(ds->trn);
    llmops_free(ds->rows);
    for (int s = 0; s < 2; s++) {
        llmops_free(ds->split[s].rows);
        llmops_free(ds->split[s].perm);
    }
    llmops_free(ds);
}

static llmops_status pool_reserve(llmops_dataset *ds, size_t extra, llmops_error *err) {
    if (ds->n_tok + extra <= ds->cap_tok) return LLMOPS_OK;
    size_t nc = ds->cap_tok ? ds->cap_tok : 4096;
    while (nc < ds->n_tok + extra) nc *= 2;
    int32_t *t = llmops_reallocarray(ds->tok, nc, sizeof *t);
    if (!t) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory (%zu tokens)", nc);
    ds->tok = t;
    uint8_t *f = llmops_realloc(ds->trn, nc);
    if (!f) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory (%zu tokens)", nc);
    ds->trn = f;
    ds->cap_tok = nc;
    return LLMOPS_OK;
}

static llmops_status row_push(llmops_dataset *ds, data_row r, llmops_error *err) {
    if (ds->n_rows >= UINT32_MAX) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "more than 2^32 rows");
    if (ds->n_rows == ds->cap_rows) {
        size_t nc = ds->cap_rows ? ds->cap_rows * 2 : 256;
        data_row *n = llmops_reallocarray(ds->rows, nc, sizeof *n);
        if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        ds->rows = n;
        ds->cap_rows = nc;
    }
    ds->rows[ds->n_rows++] = r;
    return LLMOPS_OK;
}

static uint32_t count_trained(const llmops_dataset *ds, uint64_t off, uint32_t len) {
    uint32_t c = 0;
    for (uint32_t j = 1; j < len; j++) c += ds->trn[off + j];
    return c;
}

/* ---- building ------------------------------------------------------------------------- */

typedef struct span {
    size_t start, end; /* bytes of the rendered text that are trained */
} span;

typedef struct build {
    llmops_dataset *ds;
    const llmops_tokenizer *tok;
    const llmops_data_params *p;
    int seq_len;
    int stream;                 /* plain text (or TEXT + pack): one token stream cut into windows */
    int file_text;              /* the current source is plain text */
    /* the example being built */
    llmops_tokens ids;
    uint8_t *fl;
    size_t fl_cap;
    llmops_buf text, piece, prefix;
    span *spans;
    size_t n_spans, cap_spans;
    /* stream mode */
    uint64_t stream_start;
    uint64_t *doc_starts;
    size_t n_docs, cap_docs;
    /* packing: the row still open (index), or SIZE_MAX */
    size_t open_row;
    /* special tokens */
    int32_t bos, eos, eot;
    char *bos_text, *eos_text, *eot_text;
    int add_bos;
    /* chat */
    const char *tmpl_src;       /* where the template text comes from (for messages) */
    const char *tmpl_text;
    llmops_chat_template *tmpl;
    int64_t n_dropped;          /* examples with fewer than 2 tokens */
} build;

static char *token_text_dup(const llmops_tokenizer *tok, int32_t id) {
    if (id < 0) return NULL;
    size_t n = 0;
    const char *s = llmops_tokenizer_token_text(tok, id, &n);
    return s ? llmops_strndup(s, n) : NULL;
}

static llmops_status fl_fit(build *b, size_t n, llmops_error *err) {
    if (n <= b->fl_cap) return LLMOPS_OK;
    size_t nc = b->fl_cap ? b->fl_cap : 1024;
    while (nc < n) nc *= 2;
    uint8_t *f = llmops_realloc(b->fl, nc);
    if (!f) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    b->fl = f;
    b->fl_cap = nc;
    return LLMOPS_OK;
}

static llmops_status push_tok(build *b, int32_t id, int trained, llmops_error *err) {
    llmops_status st = llmops_tokens_push(&b->ids, id, err);
    if (!st) st = fl_fit(b, b->ids.n, err);
    if (!st) b->fl[b->ids.n - 1] = (uint8_t)trained;
    return st;
}

static size_t utf8_len(unsigned char c) {
    if (c < 0xc0) return 1;
    if (c < 0xe0) return 2;
    if (c < 0xf0) return 3;
    return 4;
}

/*
 * Tokenizes text[0..len) onto b->ids and flags each new token: trained when its
 * bytes overlap one of b->spans (all when all_trained). Token bytes are found
 * by matching each token's piece against the text: a SentencePiece dummy-prefix
 * space has no byte of its own; a piece that does not match (unknown token,
 * normalised text) is resynchronised on its next occurrence.
 */
static llmops_status tokenize_marked(build *b, const char *text, size_t len, unsigned flags, int all_trained,
                                     llmops_error *err) {
    size_t first = b->ids.n;
    llmops_status st = llmops_tokenize(b->tok, text, len, flags, &b->ids, err);
    if (!st) st = fl_fit(b, b->ids.n, err);
    if (st) return st;
    if (all_trained || b->n_spans == 0) {
        memset(b->fl + first, all_trained ? 1 : 0, b->ids.n - first);
        return LLMOPS_OK;
    }
    size_t pos = 0;
    for (size_t i = first; i < b->ids.n; i++) {
        b->piece.len = 0;
        st = llmops_token_to_piece(b->tok, b->ids.ids[i], 0, &b->piece, err);
        if (st) return st;
        const char *pc = b->piece.data ? b->piece.data : "";
        size_t pl = b->piece.len, rest = len - pos, s = pos, e;
        if (pl <= rest && memcmp(text + pos, pc, pl) == 0) {
            e = pos + pl;
        } else if (pl >= 1 && pc[0] == ' ' && pl - 1 <= rest && memcmp(text + pos, pc + 1, pl - 1) == 0) {
            e = pos + pl - 1; /* dummy prefix */
        } else {
            const char *want = pc + (pl && pc[0] == ' ');
            size_t wl = pl - (size_t)(pl && pc[0] == ' ');
            size_t window = rest < wl + 64 ? rest : wl + 64;
            const char *hit = wl ? memmem(text + pos, window, want, wl) : NULL;
            if (hit) e = (size_t)(hit - text) + wl;
            else e = pos + (rest ? (utf8_len((unsigned char)text[pos]) < rest ? utf8_len((unsigned char)text[pos]) : rest) : 0);
        }
        int tr = 0;
        for (size_t k = 0; k < b->n_spans && !tr; k++) {
            const span *sp = &b->spans[k];
            if (e > s) tr = s < sp->end && e > sp->start;
            else tr = sp->start <= s && s < sp->end;
        }
        b->fl[i] = (uint8_t)tr;
        pos = e;
    }
    return LLMOPS_OK;
}

static llmops_status span_push(build *b, size_t start, size_t end, llmops_error *err) {
    if (b->n_spans == b->cap_spans) {
        size_t nc = b->cap_spans ? b->cap_spans * 2 : 16;
        span *n = llmops_reallocarray(b->spans, nc, sizeof *n);
        if (!n) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        b->spans = n;
        b->cap_spans = nc;
    }
    b->spans[b->n_spans++] = (span){start, end};
    return LLMOPS_OK;
}

static const char ALPACA_WITH_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### "
    "Response:\n";
static const char ALPACA_NO_INPUT[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n%s\n\n### Response:\n";

static llmops_status chat_template_ready(build *b, llmops_error *err) {
    if (b->tmpl) return LLMOPS_OK;
    if (!b->tmpl_text)
        return llmops_error_set(err, LLMOPS_ERR_CONFIG,
                                "chat data needs a chat template: the model has none; set the data chat_template "
                                "(a builtin name: chatml, llama2, llama3, mistral, phi3, zephyr, gemma, or template "
                                "text)");
    llmops_status st = llmops_chat_template_compile(b->tmpl_text, strlen(b->tmpl_text), &b->tmpl, err);
    if (st) {
        llmops_error_prefix(err, "%s: ", b->tmpl_src);
        return st == LLMOPS_ERR_NOMEM ? st : LLMOPS_ERR_CONFIG;
    }
    return LLMOPS_OK;
}

static llmops_status render(build *b, const llmops_chat_message *m, size_t n, int gen, llmops_buf *out,
                            llmops_error *err) {
    llmops_chat_render_opts o;
    memset(&o, 0, sizeof o);
    o.add_generation_prompt = gen;
    o.bos_token = b->bos_text ? b->bos_text : "";
    o.eos_token = b->eos_text ? b->eos_text : "";
    o.now = 1700000000; /* data must not depend on the clock */
    out->len = 0;
    if (out->data) out->data[0] = '\0';
    llmops_status st = llmops_chat_template_render(b->tmpl, m, n, &o, out, err);
    if (st == LLMOPS_ERR_INVALID_ARG || st == LLMOPS_ERR_FORMAT) {
        llmops_error_prefix(err, "chat template: ");
        return LLMOPS_ERR_FORMAT; /* a conversation the template refuses is a bad record */
    }
    if (st == LLMOPS_OK && !out->data) st = llmops_buf_append(out, "", 0, err);
    return st;
}

/* The spans of assistant contents in b->text (see the header). */
static llmops_status chat_spans(build *b, const llmops_data_example *ex, llmops_error *err) {
    const char *F = b->text.data;
    size_t FL = b->text.len, from = 0;
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; !st && i < ex->n_msgs; i++) {
        if (strcmp(ex->msgs[i].role, "assistant") != 0) continue;
        st = render(b, ex->msgs, i, 1, &b->prefix, err);
        if (st) break;
        if (b->prefix.len <= FL && memcmp(F, b->prefix.data, b->prefix.len) == 0 && b->prefix.len > from)
            from = b->prefix.len;
        const char *c = ex->msgs[i].content;
        size_t cl = strlen(c);
        const char *hit = cl ? memmem(F + from, FL - from, c, cl) : F + from;
        if (!hit) { /* templates that strip the content */
            while (cl && (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r')) c++, cl--;
            while (cl && (c[cl - 1] == ' ' || c[cl - 1] == '\n' || c[cl - 1] == '\t' || c[cl - 1] == '\r')) cl--;
            hit = cl ? memmem(F + from, FL - from, c, cl) : F + from;
        }
        if (!hit)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                    "message %zu (assistant): its content does not appear in the rendered chat", i);
        size_t s = (size_t)(hit - F), e = s + cl;
        /* the end-of-turn / EOS token the template writes after the content */
        size_t w = e;
        while (w < FL && (F[w] == ' ' || F[w] == '\n' || F[w] == '\r' || F[w] == '\t')) w++;
        const char *ends[2] = {b->eot_text, b->eos_text};
        for (int k = 0; k < 2; k++) {
            size_t el = ends[k] ? strlen(ends[k]) : 0;
            if (el && w + el <= FL && memcmp(F + w, ends[k], el) == 0) {
                e = w + el;
                break;
            }
        }
        st = span_push(b, s, e, err);
        from = e;
    }
    return st;
}

/* Appends the example in b->ids/b->fl to the dataset (window stream, own row, or packed). */
static llmops_status commit(build *b, llmops_error *err) {
    llmops_dataset *ds = b->ds;
    size_t n = b->ids.n, lim = (size_t)b->seq_len + 1;
    if (b->stream) {
        if (!n) return LLMOPS_OK;
        llmops_status st = pool_reserve(ds, n, err);
        if (st) return st;
        if (b->n_docs == b->cap_docs) {
            size_t nc = b->cap_docs ? b->cap_docs * 2 : 64;
            uint64_t *d = llmops_reallocarray(b->doc_starts, nc, sizeof *d);
            if (!d) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            b->doc_starts = d;
            b->cap_docs = nc;
        }
        b->doc_starts[b->n_docs++] = ds->n_tok;
        memcpy(ds->tok + ds->n_tok, b->ids.ids, n * sizeof(int32_t));
        memcpy(ds->trn + ds->n_tok, b->fl, n);
        ds->n_tok += n;
        return LLMOPS_OK;
    }
    if (n < 2) {
        b->n_dropped++;
        return LLMOPS_OK;
    }
    int trunc = n > lim;
    if (trunc) n = lim;
    llmops_status st = pool_reserve(ds, n, err);
    if (st) return st;
    uint64_t off = ds->n_tok;
    memcpy(ds->tok + off, b->ids.ids, n * sizeof(int32_t));
    memcpy(ds->trn + off, b->fl, n);
    ds->n_tok += n;
    if (b->p->pack && b->open_row != SIZE_MAX) {
        data_row *r = &ds->rows[b->open_row];
        if (r->len + n <= lim && r->off + r->len == off) {
            r->len += (uint32_t)n;
            r->n_ex++;
            r->n_trunc += (uint32_t)trunc;
            return LLMOPS_OK;
        }
    }
    st = row_push(ds, (data_row){off, (uint32_t)n, 1, (uint32_t)trunc, 0}, err);
    if (!st) b->open_row = n < lim ? ds->n_rows - 1 : SIZE_MAX;
    return st;
}

/* Cuts the stream gathered since stream_start into windows of seq_len+1 with stride seq_len. */
static llmops_status cut_stream(build *b, llmops_error *err) {
    llmops_dataset *ds = b->ds;
    uint64_t base = b->stream_start, total = ds->n_tok - base, S = (uint64_t)b->seq_len;
    size_t first = ds->n_rows, d = 0;
    llmops_status st = LLMOPS_OK;
    for (uint64_t k = 0; !st && total >= 2 && k * S + 1 < total; k++) {
        uint64_t off = base + k * S, len = total - k * S;
        if (len > S + 1) len = S + 1;
        st = row_push(ds, (data_row){off, (uint32_t)len, 0, 0, 0}, err);
    }
    /* documents are attributed to the window where they start */
    size_t nr = ds->n_rows - first;
    for (; !st && nr && d < b->n_docs; d++) {
        uint64_t k = (b->doc_starts[d] - base) / S;
        if (k >= nr) k = nr - 1;
        ds->rows[first + k].n_ex++;
    }
    b->n_docs = 0;
    b->stream_start = ds->n_tok;
    return st;
}

static llmops_status on_example(void *user, const llmops_data_example *ex, llmops_error *err) {
    build *b = user;
    const llmops_data_params *p = b->p;
    llmops_status st = LLMOPS_OK;
    b->ids.n = 0;
    b->n_spans = 0;
    b->text.len = 0;
    int bos = b->add_bos && b->bos >= 0;
    int want_stream = ex->schema == LLMOPS_DATA_SCHEMA_TEXT && (b->file_text || p->pack);
    if (want_stream != b->stream) {
        if (b->stream) st = cut_stream(b, err);
        if (st) return st;
        b->stream = want_stream;
        b->stream_start = b->ds->n_tok;
        b->open_row = SIZE_MAX;
    }
    switch (ex->schema) {
    case LLMOPS_DATA_SCHEMA_TEXT:
        if (bos) st = push_tok(b, b->bos, b->stream, err);
        if (!st) st = tokenize_marked(b, ex->s[DATA_F_TEXT], ex->n[DATA_F_TEXT], 0, 1, err);
        if (!st && b->eos >= 0) st = push_tok(b, b->eos, 1, err);
        break;
    case LLMOPS_DATA_SCHEMA_ALPACA:
    case LLMOPS_DATA_SCHEMA_COMPLETION: {
        const char *resp;
        size_t rl;
        if (ex->schema == LLMOPS_DATA_SCHEMA_ALPACA) {
            if (ex->n[DATA_F_INPUT]) st = llmops_buf_printf(&b->text, err, ALPACA_WITH_INPUT, ex->s[DATA_F_INSTRUCTION], ex->s[DATA_F_INPUT]);
            else st = llmops_buf_printf(&b->text, err, ALPACA_NO_INPUT, ex->s[DATA_F_INSTRUCTION]);
            resp = ex->s[DATA_F_OUTPUT];
            rl = ex->n[DATA_F_OUTPUT];
        } else {
            st = llmops_buf_append(&b->text, ex->s[DATA_F_PROMPT], ex->n[DATA_F_PROMPT], err);
            resp = ex->s[DATA_F_COMPLETION];
            rl = ex->n[DATA_F_COMPLETION];
        }
        size_t plen = b->text.len;
        if (!st) st = llmops_buf_append(&b->text, resp, rl, err);
        if (!st) st = span_push(b, plen, b->text.len, err);
        if (!st && bos) st = push_tok(b, b->bos, 0, err);
        if (!st) st = tokenize_marked(b, b->text.data ? b->text.data : "", b->text.len, 0, !p->mask_prompt, err);
        if (!st && b->eos >= 0) st = push_tok(b, b->eos, 1, err);
        break;
    }
    case LLMOPS_DATA_SCHEMA_CHAT: {
        st = chat_template_ready(b, err);
        if (st) return st == LLMOPS_ERR_FORMAT ? LLMOPS_ERR_CONFIG : st;
        st = render(b, ex->msgs, ex->n_msgs, 0, &b->text, err);
        if (!st && p->mask_prompt) st = chat_spans(b, ex, err);
        size_t bl = b->bos_text ? strlen(b->bos_text) : 0;
        if (!st && bos && !(bl && b->text.len >= bl && !memcmp(b->text.data, b->bos_text, bl)))
            st = push_tok(b, b->bos, 0, err);
        if (!st)
            st = tokenize_marked(b, b->text.data, b->text.len, LLMOPS_TOKENIZE_PARSE_SPECIAL, !p->mask_prompt, err);
        break;
    }
    default: return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "no schema");
    }
    if (st) return st;
    return commit(b, err);
}

/* ---- sources ----------------------------------------------------------------------------- */

typedef struct path_list {
    char **v;
    size_t n, cap;
} path_list;

static llmops_status paths_push(path_list *l, char *s, llmops_error *err) {
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        char **v = llmops_reallocarray(l->v, nc, sizeof *v);
        if (!v) {
            llmops_free(s);
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        }
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    return LLMOPS_OK;
}

static void paths_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) llmops_free(l->v[i]);
    llmops_free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every file of a known extension under dir (recursively, hidden names skipped). */
static llmops_status walk(const char *dir, path_list *out, int depth, llmops_error *err) {
    if (depth > 32) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot open folder", dir);
    llmops_status st = LLMOPS_OK;
    struct dirent *e;
    while (!st && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *path = llmops_path_join(dir, e->d_name);
        if (!path) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            break;
        }
        if (llmops_path_is_dir(path)) {
            st = walk(path, out, depth + 1, err);
            llmops_free(path);
        } else if (llmops_path_is_file(path) && llmops_data_format_of_path(path, NULL) != LLMOPS_DATA_FORMAT_AUTO) {
            st = paths_push(out, path, err);
        } else {
            llmops_free(path);
        }
    }
    closedir(d);
    return st;
}

static llmops_status expand_sources(const char *const *src, size_t n, path_list *out, llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; !st && i < n; i++) {
        if (!src[i] || !*src[i]) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "empty data source");
        if (llmops_fetch_is_url(src[i]) || !llmops_path_is_dir(src[i])) {
            st = paths_push(out, llmops_strdup(src[i]), err);
            continue;
        }
        path_list sub = {0};
        st = walk(src[i], &sub, 0, err);
        if (!st && sub.n == 0)
            st = llmops_error_set(err, LLMOPS_ERR_NOT_FOUND,
                                  "%s: no data files (.txt .md .rst .jsonl .json .csv .tsv) in this folder", src[i]);
        if (!st) qsort(sub.v, sub.n, sizeof *sub.v, cmp_str);
        for (size_t k = 0; !st && k < sub.n; k++) {
            st = paths_push(out, sub.v[k], err);
            sub.v[k] = NULL;
        }
        paths_free(&sub);
    }
    return st;
}

/* Reads every source of one group into rows; returns the bad records it skipped. */
static llmops_status load_group(build *b, const char *const *src, size_t n, int64_t *skipped, llmops_error *err) {
    const llmops_data_params *p = b->p;
    path_list files = {0};
    llmops_status st = expand_sources(src, n, &files, err);
    llmops_data_reader rd;
    llmops_data_reader_init(&rd, p);
    if (rd.max_logged < 0) rd.max_logged = 0;
    if (b->ds->schema != LLMOPS_DATA_SCHEMA_AUTO) rd.schema = b->ds->schema;
    b->open_row = SIZE_MAX;
    b->stream_start = b->ds->n_tok;
    for (size_t i = 0; !st && i < files.n; i++) {
        const char *path = files.v[i];
        char delim = 0;
        llmops_data_format f = llmops_data_format_of_path(path, &delim);
        if (p->format != LLMOPS_DATA_FORMAT_AUTO) f = p->format;
        rd.delim = p->csv_delimiter ? p->csv_delimiter : delim ? delim : ',';
        char *data = NULL;
        size_t len = 0;
        if (llmops_fetch_is_url(path)) {
            llmops_fetch_params fp = p->fetch;
            if (!fp.max_bytes || fp.max_bytes > p->max_file_bytes) fp.max_bytes = p->max_file_bytes;
            st = llmops_fetch(path, &fp, &data, &len, err);
        } else {
            st = llmops_file_read_all(path, p->max_file_bytes, &data, &len, err);
        }
        if (st) break;
        if (f == LLMOPS_DATA_FORMAT_AUTO) f = llmops_data_format_sniff(data, len);
        if (f == LLMOPS_DATA_FORMAT_AUTO) {
            llmops_free(data);
            st = llmops_error_set(err, LLMOPS_ERR_CONFIG,
                                  "%s: unknown data file extension and not JSON (set the format: text, jsonl, json or "
                                  "csv)",
                                  path);
            break;
        }
        rd.format = f;
        b->file_text = f == LLMOPS_DATA_FORMAT_TEXT;
        if (!st) st = llmops_data_read(&rd, data, len, path, on_example, b, err);
        llmops_free(data);
        if (!st && b->ds->schema == LLMOPS_DATA_SCHEMA_AUTO && rd.schema != LLMOPS_DATA_SCHEMA_AUTO)
            b->ds->schema = rd.schema;
    }
    if (!st && b->stream) st = cut_stream(b, err);
    b->stream = 0;
    if (!st && rd.n_skipped)
        LLMOPS_WARN("dataset: %lld bad records skipped, %lld kept", (long long)rd.n_skipped, (long long)rd.n_records);
    *skipped = rd.n_skipped;
    paths_free(&files);
    return st;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) by rejection. */
static uint64_t rand_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = splitmix(s);
    while (r >= lim);
    return r % n;
}

static void shuffle(int64_t *v, int64_t n, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rand_below(&s, (uint64_t)i + 1);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static void split_stats(llmops_dataset *ds, data_split *sp, int64_t skipped) {
    llmops_data_stats st = {0};
    for (int64_t i = 0; i < sp->n; i++) {
        const data_row *r = &ds->rows[sp->rows[i]];
        st.n_examples += r->n_ex;
        st.n_rows++;
        st.n_tokens += r->len > (uint32_t)ds->seq_len ? (uint32_t)ds->seq_len : r->len;
        st.n_trained += r->n_trained;
        st.n_truncated += r->n_trunc;
    }
    st.n_skipped = skipped;
    sp->st = st;
    sp->perm_epoch = -1;
}

static llmops_status split_alloc(data_split *sp, int64_t n, llmops_error *err) {
    sp->rows = llmops_malloc((size_t)(n ? n : 1) * sizeof *sp->rows);
    if (!sp->rows) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    sp->n = 0;
    return LLMOPS_OK;
}

llmops_status llmops_dataset_load(const char *const *sources, size_t n, const llmops_tokenizer *tok,
                                  const char *chat_template, const llmops_data_params *p, llmops_dataset **out,
                                  llmops_error *err) {
    llmops_data_params defaults;
    if (!p) {
        llmops_data_params_init(&defaults);
        p = &defaults;
    }
    *out = NULL;
    if (!tok || (n && !sources)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "dataset: no tokenizer or sources");
    if (n == 0) return llmops_error_set(err, LLMOPS_ERR_CONFIG, "dataset: no data sources");
    if (p->seq_len < 1 || p->seq_len > DATA_MAX_SEQ_LEN)
        return llmops_error_set(err, LLMOPS_ERR_CONFIG, "dataset: seq_len %d outside 1..%d", p->seq_len,
                                DATA_MAX_SEQ_LEN);
    if (!(p->val_ratio >= 0 && p->val_ratio < 1))
        return llmops_error_set(err, LLMOPS_ERR_CONFIG, "dataset: val_ratio %g outside [0, 1)", p->val_ratio);
    llmops_dataset *ds = llmops_calloc(1, sizeof *ds);
    if (!ds) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    ds->seq_len = p->seq_len;
    ds->seed = p->seed;
    ds->schema = p->schema;
    int32_t pad = llmops_tokenizer_pad(tok);
    if (pad < 0) pad = llmops_tokenizer_eos(tok);
    ds->pad = pad < 0 ? 0 : pad;

    build b;
    memset(&b, 0, sizeof b);
    b.ds = ds;
    b.tok = tok;
    b.p = p;
    b.seq_len = p->seq_len;
    b.open_row = SIZE_MAX;
    b.bos = llmops_tokenizer_bos(tok);
    b.eos = llmops_tokenizer_eos(tok);
    b.eot = llmops_tokenizer_eot(tok);
    b.add_bos = llmops_tokenizer_add_bos(tok);
    b.bos_text = token_text_dup(tok, b.bos);
    b.eos_text = token_text_dup(tok, b.eos);
    b.eot_text = token_text_dup(tok, b.eot);
    llmops_buf_init(&b.text, (size_t)1 << 30);
    llmops_buf_init(&b.piece, 1 << 16);
    llmops_buf_init(&b.prefix, (size_t)1 << 30);
    if (p->chat_template && *p->chat_template) {
        const char *bi = llmops_chat_template_builtin(p->chat_template);
        b.tmpl_text = bi ? bi : p->chat_template;
        b.tmpl_src = bi ? p->chat_template : "the data chat_template";
    } else if (chat_template && *chat_template) {
        b.tmpl_text = chat_template;
        b.tmpl_src = "the model's chat template";
    } else {
        b.tmpl_text = llmops_tokenizer_chat_template(tok);
        b.tmpl_src = "the tokenizer's chat template";
    }

    llmops_status st = LLMOPS_OK;
    if ((b.bos >= 0 && !b.bos_text) || (b.eos >= 0 && !b.eos_text) || (b.eot >= 0 && !b.eot_text))
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    int64_t skipped_train = 0, skipped_val = 0;
    if (!st) st = load_group(&b, sources, n, &skipped_train, err);
    size_t n_train_rows = ds->n_rows;
    if (!st && p->n_val_sources) st = load_group(&b, p->val_sources, p->n_val_sources, &skipped_val, err);
    if (!st && b.n_dropped) LLMOPS_INFO("dataset: %lld examples with fewer than 2 tokens left out", (long long)b.n_dropped);
    for (size_t i = 0; !st && i < ds->n_rows; i++) ds->rows[i].n_trained = count_trained(ds, ds->rows[i].off, ds->rows[i].len);
    if (!st && n_train_rows == 0)
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "dataset: no usable rows in the training sources (%lld bad records skipped)",
                              (long long)skipped_train);
    if (!st && p->n_val_sources && ds->n_rows == n_train_rows)
        st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "dataset: no usable rows in the validation sources");

    /* split */
    data_split *tr = &ds->split[LLMOPS_SPLIT_TRAIN], *va = &ds->split[LLMOPS_SPLIT_VAL];
    if (!st && p->n_val_sources) {
        st = split_alloc(tr, (int64_t)n_train_rows, err);
        if (!st) st = split_alloc(va, (int64_t)(ds->n_rows - n_train_rows), err);
        for (size_t i = 0; !st && i < ds->n_rows; i++) {
            data_split *s = i < n_train_rows ? tr : va;
            s->rows[s->n++] = (uint32_t)i;
        }
    } else if (!st) {
        int64_t R = (int64_t)n_train_rows, nv = 0;
        if (p->val_ratio > 0 && R >= 2) {
            nv = (int64_t)(p->val_ratio * (double)R + 0.5);
            if (nv < 1) nv = 1;
            if (nv > R - 1) nv = R - 1;
        }
        uint8_t *is_val = llmops_calloc((size_t)R, 1);
        int64_t *order = llmops_malloc((size_t)R * sizeof *order);
        if (!is_val || !order) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        if (!st) {
            for (int64_t i = 0; i < R; i++) order[i] = i;
            shuffle(order, R, p->seed ^ 0x5eed5eed5eed5eedull);
            for (int64_t i = 0; i < nv; i++) is_val[order[i]] = 1;
            st = split_alloc(tr, R - nv, err);
        }
        if (!st) st = split_alloc(va, nv, err);
        for (int64_t i = 0; !st && i < R; i++) {
            data_split *s = is_val[i] ? va : tr;
            s->rows[s->n++] = (uint32_t)i;
        }
        llmops_free(is_val);
        llmops_free(order);
    }
    if (!st) {
        split_stats(ds, tr, skipped_train);
        split_stats(ds, va, skipped_val);
        if (ds->schema == LLMOPS_DATA_SCHEMA_AUTO) ds->schema = LLMOPS_DATA_SCHEMA_TEXT;
        for (int k = 0; k < 2; k++) {
            const llmops_data_stats *x = &ds->split[k].st;
            if (!x->n_rows) continue;
            LLMOPS_INFO("dataset %s (%s): %lld rows of %d, %lld examples, %lld tokens, %lld trained, %lld truncated, "
                        "%lld bad records skipped",
                        k ? "val" : "train", llmops_data_schema_name(ds->schema), (long long)x->n_rows, ds->seq_len,
                        (long long)x->n_examples, (long long)x->n_tokens, (long long)x->n_trained,
                        (long long)x->n_truncated, (long long)x->n_skipped);
        }
    }

    llmops_tokens_free(&b.ids);
    llmops_free(b.fl);
    llmops_buf_free(&b.text);
    llmops_buf_free(&b.piece);
    llmops_buf_free(&b.prefix);
    llmops_free(b.spans);
    llmops_free(b.doc_starts);
    llmops_free(b.bos_text);
    llmops_free(b.eos_text);
    llmops_free(b.eot_text);
    llmops_chat_template_free(b.tmpl);
    if (st) {
        llmops_dataset_free(ds);
        return st;
    }
    *out = ds;
    return LLMOPS_OK;
}

/* ---- access ----------------------------------------------------------------------------- */

llmops_data_stats llmops_dataset_stats(const llmops_dataset *ds, llmops_data_split split) {
    llmops_data_stats z = {0};
    if (!ds || (unsigned)split > 1) return z;
    return ds->split[split].st;
}

int64_t llmops_dataset_n_rows(const llmops_dataset *ds, llmops_data_split split) {
    return ds && (unsigned)split <= 1 ? ds->split[split].n : 0;
}

int llmops_data_shard_rows(int global_batch, int rank, int world) {
    if (global_batch < 1 || world < 1 || rank < 0 || rank >= world) return 0;
    return global_batch / world + (rank < global_batch % world);
}

static void write_row(const llmops_dataset *ds, const data_row *r, int32_t *tokens, int32_t *targets) {
    int S = ds->seq_len;
    const int32_t *t = ds->tok + r->off;
    const uint8_t *f = ds->trn + r->off;
    for (int i = 0; i < S; i++) {
        tokens[i] = (uint32_t)i < r->len ? t[i] : ds->pad;
        targets[i] = (uint32_t)i + 1 < r->len && f[i + 1] ? t[i + 1] : -1;
    }
}

static void write_pad(const llmops_dataset *ds, int32_t *tokens, int32_t *targets) {
    for (int i = 0; i < ds->seq_len; i++) {
        tokens[i] = ds->pad;
        targets[i] = -1;
    }
}

llmops_status llmops_dataset_row(const llmops_dataset *ds, llmops_data_split split, int64_t i, int32_t *tokens,
                                 int32_t *targets, int64_t *n_trained, llmops_error *err) {
    if (!ds || (unsigned)split > 1 || i < 0 || i >= ds->split[split].n || !tokens || !targets)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "dataset: row %lld out of range", (long long)i);
    const data_row *r = &ds->rows[ds->split[split].rows[i]];
    write_row(ds, r, tokens, targets);
    if (n_trained) *n_trained = r->n_trained;
    return LLMOPS_OK;
}

static llmops_status ensure_perm(llmops_dataset *ds, llmops_data_split split, int64_t epoch, llmops_error *err) {
    data_split *sp = &ds->split[split];
    if (sp->perm && sp->perm_epoch == epoch) return LLMOPS_OK;
    if (!sp->perm) {
        sp->perm = llmops_malloc((size_t)(sp->n ? sp->n : 1) * sizeof *sp->perm);
        if (!sp->perm) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < sp->n; i++) sp->perm[i] = i;
    uint64_t s = ds->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull * (uint64_t)(split + 1);
    uint64_t mix = splitmix(&s) ^ (uint64_t)epoch * 0xd1b54a32d192ed03ull;
    shuffle(sp->perm, sp->n, mix);
    sp->perm_epoch = epoch;
    return LLMOPS_OK;
}

int64_t llmops_dataset_order(llmops_dataset *ds, llmops_data_split split, llmops_data_pos pos) {
    if (!ds || (unsigned)split > 1 || pos.index < 0 || pos.index >= ds->split[split].n || pos.epoch < 0) return -1;
    if (ensure_perm(ds, split, pos.epoch, NULL)) return -1;
    return ds->split[split].perm[pos.index];
}

llmops_status llmops_dataset_next_batch(llmops_dataset *ds, llmops_data_split split, int global_batch, int rank,
                                        int world, int32_t *tokens, int32_t *targets, llmops_data_batch *info,
                                        llmops_error *err) {
    if (!ds || (unsigned)split > 1 || global_batch < 1 || world < 1 || rank < 0 || rank >= world || !tokens ||
        !targets)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "dataset: bad batch request (global batch %d, rank %d of %d)", global_batch, rank,
                                world);
    data_split *sp = &ds->split[split];
    if (sp->n == 0)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "dataset: the %s split has no rows",
                                split == LLMOPS_SPLIT_TRAIN ? "train" : "validation");
    int per = global_batch / world, extra = global_batch % world;
    int mine = per + (rank < extra), first = rank * per + (rank < extra ? rank : extra);
    int cap = per + (extra > 0);
    llmops_data_batch bi = {0};
    bi.n_rows = mine;
    bi.epoch = sp->pos.epoch;
    size_t S = (size_t)ds->seq_len;
    for (int g = 0; g < global_batch; g++) {
        llmops_status st = ensure_perm(ds, split, sp->pos.epoch, err);
        if (st) return st;
        const data_row *r = &ds->rows[sp->rows[sp->perm[sp->pos.index]]];
        bi.n_trained_global += r->n_trained;
        if (g >= first && g < first + mine) {
            write_row(ds, r, tokens + (size_t)(g - first) * S, targets + (size_t)(g - first) * S);
            bi.n_trained += r->n_trained;
        }
        if (++sp->pos.index == sp->n) {
            sp->pos.index = 0;
            sp->pos.epoch++;
            bi.epoch_end = 1;
        }
    }
    for (int k = mine; k < cap; k++) write_pad(ds, tokens + (size_t)k * S, targets + (size_t)k * S);
    if (info) *info = bi;
    return LLMOPS_OK;
}

llmops_data_pos llmops_dataset_get_pos(const llmops_dataset *ds, llmops_data_split split) {
    llmops_data_pos z = {0, 0};
    return ds && (unsigned)split <= 1 ? ds->split[split].pos : z;
}

llmops_status llmops_dataset_set_pos(llmops_dataset *ds, llmops_data_split split, llmops_data_pos pos,
                                     llmops_error *err) {
    if (!ds || (unsigned)split > 1 || pos.epoch < 0 || pos.index < 0 ||
        (pos.index >= ds->split[split].n && !(pos.index == 0 && ds->split[split].n == 0)))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "dataset: position (epoch %lld, index %lld) outside the split of %lld rows",
                                (long long)pos.epoch, (long long)pos.index,
                                (long long)(ds && (unsigned)split <= 1 ? ds->split[split].n : 0));
    ds->split[split].pos = pos;
    return LLMOPS_OK;
}
