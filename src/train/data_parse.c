/*
 * Record readers of the data pipeline: RFC 4180 CSV, JSON Lines, JSON arrays
 * and plain text, each turned into examples of one schema (see
 * data_internal.h). Bad records are located as FILE:LINE and skipped or fatal.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/json.h"
#include "llmops/log.h"
#include "train/data_internal.h"

/* ---- CSV --------------------------------------------------------------------------- */

void llmops_csv_record_init(llmops_csv_record *r) {
    memset(r, 0, sizeof *r);
    llmops_buf_init(&r->text, SIZE_MAX / 2);
}

void llmops_csv_record_free(llmops_csv_record *r) {
    llmops_buf_free(&r->text);
    llmops_free(r->off);
    llmops_free(r->len);
    memset(r, 0, sizeof *r);
}

/* Ends the current field (starting at text offset `start`). */
static llmops_status csv_end_field(llmops_csv_record *r, size_t start, llmops_error *err) {
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        size_t *o = llmops_reallocarray(r->off, nc, sizeof *o);
        if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        r->off = o;
        size_t *l = llmops_reallocarray(r->len, nc, sizeof *l);
        if (!l) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        r->len = l;
        r->cap = nc;
    }
    r->off[r->n] = start;
    r->len[r->n] = r->text.len - start;
    r->n++;
    return llmops_buf_append(&r->text, "", 1, err); /* the terminator, counted in text.len */
}

/* Skips to just past the end of the physical line containing data[*pos]. */
static void csv_skip_line(const char *d, size_t n, size_t *pos, uint64_t *line) {
    size_t p = *pos;
    while (p < n && d[p] != '\n' && d[p] != '\r') p++;
    if (p < n && d[p] == '\r') p++;
    if (p < n && d[p] == '\n') p++;
    *pos = p;
    (*line)++;
}

llmops_status llmops_csv_next(const char *d, size_t n, size_t *pos, uint64_t *line, char delim,
                              llmops_csv_record *r, llmops_error *err) {
    r->n = 0;
    r->text.len = 0;
    size_t p = *pos;
    uint64_t ln = *line;
    /* skip empty lines */
    while (p < n && (d[p] == '\n' || d[p] == '\r')) {
        if (d[p] == '\r' && p + 1 < n && d[p + 1] == '\n') p++;
        p++;
        ln++;
    }
    if (p >= n) {
        *pos = p;
        *line = ln;
        return LLMOPS_ERR_NOT_FOUND;
    }
    r->line = ln;
    llmops_status st;
    for (;;) { /* one field per iteration */
        size_t start = r->text.len;
        if (p < n && d[p] == '"') {
            uint64_t qline = ln;
            size_t field_no = r->n + 1;
            p++;
            for (;;) {
                if (p >= n) {
                    *pos = p;
                    *line = ln;
                    return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                            "%llu: field %zu: unterminated quoted field (opened on line %llu)",
                                            (unsigned long long)r->line, field_no, (unsigned long long)qline);
                }
                /* copy the run up to the next quote */
                const char *q = memchr(d + p, '"', n - p);
                size_t e = q ? (size_t)(q - d) : n;
                for (size_t i = p; i < e; i++)
                    if (d[i] == '\n' || (d[i] == '\r' && !(i + 1 < e && d[i + 1] == '\n'))) ln++;
                st = llmops_buf_append(&r->text, d + p, e - p, err);
                if (st) return st;
                p = e;
                if (p >= n) continue; /* reports the unterminated quote */
                if (p + 1 < n && d[p + 1] == '"') { /* "" */
                    st = llmops_buf_append(&r->text, "\"", 1, err);
                    if (st) return st;
                    p += 2;
                    continue;
                }
                p++; /* the closing quote */
                break;
            }
            if (p < n && d[p] != delim && d[p] != '\n' && d[p] != '\r') {
                size_t at = p;
                *line = ln;
                *pos = at;
                csv_skip_line(d, n, pos, line);
                return llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                        "%llu: field %zu: unexpected byte 0x%02x after a closing quote",
                                        (unsigned long long)ln, field_no, (unsigned char)d[at]);
            }
        } else {
            /* unquoted: up to the delimiter or end of line; a quote inside is kept as is (as Python's csv) */
            size_t e = p;
            while (e < n && d[e] != delim && d[e] != '\n' && d[e] != '\r') e++;
            st = llmops_buf_append(&r->text, d + p, e - p, err);
            if (st) return st;
            p = e;
        }
        st = csv_end_field(r, start, err);
        if (st) return st;
        if (p < n && d[p] == delim) {
            p++;
            continue;
        }
        /* end of record */
        if (p < n && d[p] == '\r') p++;
        if (p < n && d[p] == '\n') p++;
        ln++;
        break;
    }
    /* text.len counted terminators; keep it as the byte size used */
    *pos = p;
    *line = ln;
    return LLMOPS_OK;
}

/* ---- reader ------------------------------------------------------------------------- */

void llmops_data_reader_init(llmops_data_reader *r, const llmops_data_params *p) {
    memset(r, 0, sizeof *r);
    r->format = p->format;
    r->schema = p->schema;
    r->names[DATA_F_TEXT] = p->text_field ? p->text_field : "text";
    r->names[DATA_F_INSTRUCTION] = p->instruction_field ? p->instruction_field : "instruction";
    r->names[DATA_F_INPUT] = p->input_field ? p->input_field : "input";
    r->names[DATA_F_OUTPUT] = p->output_field ? p->output_field : "output";
    r->names[DATA_F_PROMPT] = p->prompt_field ? p->prompt_field : "prompt";
    r->names[DATA_F_COMPLETION] = p->completion_field ? p->completion_field : "completion";
    r->names[DATA_F_MESSAGES] = p->messages_field ? p->messages_field : "messages";
    r->delim = p->csv_delimiter ? p->csv_delimiter : ',';
    r->doc_separator = p->doc_separator;
    r->bad_rows = p->bad_rows;
    r->max_logged = p->max_logged;
}

llmops_data_format llmops_data_format_of_path(const char *path, char *delim) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t bl = strcspn(base, "?#");
    const char *dot = NULL;
    for (size_t i = 0; i < bl; i++)
        if (base[i] == '.') dot = base + i;
    if (!dot) return LLMOPS_DATA_FORMAT_AUTO;
    size_t el = bl - (size_t)(dot + 1 - base);
    char ext[16];
    if (el >= sizeof ext) return LLMOPS_DATA_FORMAT_AUTO;
    memcpy(ext, dot + 1, el);
    ext[el] = '\0';
    if (!strcasecmp(ext, "txt") || !strcasecmp(ext, "md") || !strcasecmp(ext, "rst") || !strcasecmp(ext, "text"))
        return LLMOPS_DATA_FORMAT_TEXT;
    if (!strcasecmp(ext, "jsonl") || !strcasecmp(ext, "ndjson")) return LLMOPS_DATA_FORMAT_JSONL;
    if (!strcasecmp(ext, "json")) return LLMOPS_DATA_FORMAT_JSON;
    if (!strcasecmp(ext, "csv")) return LLMOPS_DATA_FORMAT_CSV;
    if (!strcasecmp(ext, "tsv")) {
        if (delim) *delim = '\t';
        return LLMOPS_DATA_FORMAT_CSV;
    }
    return LLMOPS_DATA_FORMAT_AUTO;
}

llmops_data_format llmops_data_format_sniff(const char *d, size_t n) {
    size_t i = 0;
    if (n >= 3 && (unsigned char)d[0] == 0xef && (unsigned char)d[1] == 0xbb && (unsigned char)d[2] == 0xbf) i = 3;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
    if (i < n && d[i] == '{') return LLMOPS_DATA_FORMAT_JSONL;
    if (i < n && d[i] == '[') return LLMOPS_DATA_FORMAT_JSON;
    return LLMOPS_DATA_FORMAT_AUTO;
}

typedef struct {
    llmops_data_reader *r;
    const char *origin;
    llmops_data_example_fn fn;
    void *user;
    llmops_chat_message *msgs; /* scratch for CHAT */
    size_t msgs_cap;
} read_ctx;

/* A bad record: prefix FILE:LINE, then skip (count, maybe log) or fail. */
static llmops_status bad_record(read_ctx *c, uint64_t line, int is_elem, llmops_error *inner, llmops_error *err) {
    char where[64];
    if (is_elem) snprintf(where, sizeof where, "record %llu", (unsigned long long)line);
    else snprintf(where, sizeof where, "%llu", (unsigned long long)line);
    if (c->r->bad_rows == LLMOPS_DATA_BAD_FAIL)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s:%s: %s", c->origin, where, inner->msg);
    c->r->n_skipped++;
    if (c->r->n_skipped <= c->r->max_logged)
        LLMOPS_WARN("%s:%s: %s (record skipped)", c->origin, where, inner->msg);
    return LLMOPS_OK;
}

static const char *schema_field_name(int f) {
    static const char *const n[DATA_F_COUNT] = {"text", "instruction", "input", "output", "prompt", "completion",
                                                "messages"};
    return n[f];
}

/* Messages from a JSON array into c->msgs (pointers into the JSON). */
static llmops_status json_messages(read_ctx *c, const json_t *arr, const char *field, size_t *n_out,
                                   llmops_error *err) {
    if (!json_is_array(arr))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "field \"%s\": expected an array of messages, got %s", field,
                                llmops_json_type_name(arr));
    size_t n = json_array_size(arr);
    if (n == 0) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "field \"%s\": no messages", field);
    if (n > c->msgs_cap) {
        llmops_chat_message *m = llmops_reallocarray(c->msgs, n, sizeof *m);
        if (!m) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        c->msgs = m;
        c->msgs_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(arr, i);
        if (!json_is_object(m))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "field \"%s\"[%zu]: expected an object, got %s", field, i,
                                    llmops_json_type_name(m));
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "field \"%s\"[%zu].role: expected a string, got %s",
                                    field, i, role ? llmops_json_type_name(role) : "nothing");
        if (!json_is_string(content))
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "field \"%s\"[%zu].content: expected a string, got %s",
                                    field, i, content ? llmops_json_type_name(content) : "nothing");
        c->msgs[i].role = json_string_value(role);
        c->msgs[i].content = json_string_value(content);
    }
    *n_out = n;
    return LLMOPS_OK;
}

/* Which fields a schema needs; bit set of DATA_F_*. Optional: ALPACA's input. */
static unsigned schema_fields(llmops_data_schema s) {
    switch (s) {
    case LLMOPS_DATA_SCHEMA_TEXT: return 1u << DATA_F_TEXT;
    case LLMOPS_DATA_SCHEMA_ALPACA: return 1u << DATA_F_INSTRUCTION | 1u << DATA_F_INPUT | 1u << DATA_F_OUTPUT;
    case LLMOPS_DATA_SCHEMA_COMPLETION: return 1u << DATA_F_PROMPT | 1u << DATA_F_COMPLETION;
    case LLMOPS_DATA_SCHEMA_CHAT: return 1u << DATA_F_MESSAGES;
    default: return 0;
    }
}

/* Schema from the names a record has (has(f) = 1 when field f is present). */
static llmops_data_schema detect(const int *has) {
    if (has[DATA_F_MESSAGES]) return LLMOPS_DATA_SCHEMA_CHAT;
    if (has[DATA_F_INSTRUCTION] && has[DATA_F_OUTPUT]) return LLMOPS_DATA_SCHEMA_ALPACA;
    if (has[DATA_F_PROMPT] && has[DATA_F_COMPLETION]) return LLMOPS_DATA_SCHEMA_COMPLETION;
    return LLMOPS_DATA_SCHEMA_TEXT;
}

/* One JSON value (a record): extract fields, call fn. */
static llmops_status json_record(read_ctx *c, const json_t *obj, uint64_t line, int is_elem, llmops_error *err) {
    llmops_data_reader *r = c->r;
    llmops_error inner = {0};
    llmops_status st = LLMOPS_OK;
    if (!json_is_object(obj)) {
        llmops_error_set(&inner, LLMOPS_ERR_FORMAT, "expected a JSON object, got %s", llmops_json_type_name(obj));
        return bad_record(c, line, is_elem, &inner, err);
    }
    if (r->schema == LLMOPS_DATA_SCHEMA_AUTO) {
        int has[DATA_F_COUNT];
        for (int f = 0; f < DATA_F_COUNT; f++) has[f] = json_object_get(obj, r->names[f]) != NULL;
        r->schema = detect(has);
    }
    llmops_data_example ex;
    memset(&ex, 0, sizeof ex);
    ex.schema = r->schema;
    ex.origin = c->origin;
    ex.line = line;
    unsigned need = schema_fields(r->schema);
    for (int f = 0; !st && f < DATA_F_COUNT; f++) {
        if (!(need & (1u << f))) continue;
        const json_t *v = json_object_get(obj, r->names[f]);
        if (f == DATA_F_MESSAGES) {
            if (!v) st = llmops_error_set(&inner, LLMOPS_ERR_FORMAT, "missing field \"%s\"", r->names[f]);
            else st = json_messages(c, v, r->names[f], &ex.n_msgs, &inner);
            ex.msgs = c->msgs;
            continue;
        }
        if ((!v || json_is_null(v)) && f == DATA_F_INPUT) {
            ex.s[f] = "";
            ex.n[f] = 0;
            continue;
        }
        if (!v) st = llmops_error_set(&inner, LLMOPS_ERR_FORMAT, "missing field \"%s\"", r->names[f]);
        else if (!json_is_string(v))
            st = llmops_error_set(&inner, LLMOPS_ERR_FORMAT, "field \"%s\": expected a string, got %s", r->names[f],
                                  llmops_json_type_name(v));
        else {
            ex.s[f] = json_string_value(v);
            ex.n[f] = json_string_length(v);
        }
    }
    if (!st) st = c->fn(c->user, &ex, &inner);
    if (st == LLMOPS_ERR_FORMAT) return bad_record(c, line, is_elem, &inner, err);
    if (st) {
        if (err) *err = inner;
        return st;
    }
    r->n_records++;
    return LLMOPS_OK;
}

/* Parses one JSON value (the wrapper notices allocation failures jansson hides);
 * a syntax error reads "invalid JSON at column C: what". */
static llmops_status parse_json_value(const char *d, size_t n, json_t **out, llmops_error *err) {
    llmops_error e = {0};
    llmops_status st = llmops_json_parse(d, n, "json", out, &e);
    if (st != LLMOPS_ERR_FORMAT) {
        if (st && err) *err = e;
        return st;
    }
    /* e.msg: "json:LINE:COL: text (byte N)" */
    const char *p = strchr(e.msg, ':');
    p = p ? strchr(p + 1, ':') : NULL;
    long col = p ? strtol(p + 1, NULL, 10) : 0;
    const char *text = p ? strstr(p + 1, ": ") : NULL;
    return llmops_error_set(err, LLMOPS_ERR_FORMAT, "invalid JSON at column %ld: %s", col, text ? text + 2 : e.msg);
}

static llmops_status read_jsonl(read_ctx *c, const char *d, size_t n, llmops_error *err) {
    uint64_t line = 0;
    size_t p = 0;
    while (p < n) {
        const char *nl = memchr(d + p, '\n', n - p);
        size_t e = nl ? (size_t)(nl - d) : n;
        line++;
        size_t a = p, b = e;
        while (a < b && (d[a] == ' ' || d[a] == '\t' || d[a] == '\r')) a++;
        while (b > a && (d[b - 1] == ' ' || d[b - 1] == '\t' || d[b - 1] == '\r')) b--;
        p = e + 1;
        if (a == b) continue;
        json_t *obj = NULL;
        llmops_error jerr = {0};
        llmops_status pst = parse_json_value(d + a, b - a, &obj, &jerr);
        if (pst == LLMOPS_ERR_FORMAT) {
            llmops_status st = bad_record(c, line, 0, &jerr, err);
            if (st) return st;
            continue;
        }
        if (pst) {
            if (err) *err = jerr;
            return pst;
        }
        llmops_status st = json_record(c, obj, line, 0, err);
        json_decref(obj);
        if (st) return st;
    }
    return LLMOPS_OK;
}

static llmops_status read_json(read_ctx *c, const char *d, size_t n, llmops_error *err) {
    size_t i = 0;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
    if (i + 3 <= n && (unsigned char)d[i] == 0xef && (unsigned char)d[i + 1] == 0xbb && (unsigned char)d[i + 2] == 0xbf)
        i += 3;
    if (i >= n || d[i] != '[') return read_jsonl(c, d, n, err); /* JSON Lines named .json */
    json_t *arr = NULL;
    llmops_status st = llmops_json_parse(d, n, c->origin, &arr, err);
    if (st) return st;
    if (!json_is_array(arr)) {
        json_decref(arr);
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: expected a JSON array of records", c->origin);
    }
    for (size_t k = 0; !st && k < json_array_size(arr); k++) st = json_record(c, json_array_get(arr, k), k + 1, 1, err);
    json_decref(arr);
    return st;
}

static llmops_status read_csv(read_ctx *c, const char *d, size_t n, llmops_error *err) {
    llmops_data_reader *r = c->r;
    llmops_csv_record rec;
    llmops_csv_record_init(&rec);
    size_t pos = 0;
    uint64_t line = 1;
    llmops_status st;
    if (n >= 3 && (unsigned char)d[0] == 0xef && (unsigned char)d[1] == 0xbb && (unsigned char)d[2] == 0xbf) pos = 3;
    /* header */
    st = llmops_csv_next(d, n, &pos, &line, r->delim, &rec, err);
    if (st == LLMOPS_ERR_NOT_FOUND) {
        llmops_csv_record_free(&rec);
        return LLMOPS_OK; /* empty file */
    }
    if (st) {
        llmops_csv_record_free(&rec);
        if (st == LLMOPS_ERR_FORMAT) llmops_error_prefix(err, "%s:", c->origin);
        return st;
    }
    size_t ncol = rec.n;
    size_t col[DATA_F_COUNT];
    int has[DATA_F_COUNT];
    for (int f = 0; f < DATA_F_COUNT; f++) {
        col[f] = SIZE_MAX;
        for (size_t k = 0; k < rec.n; k++)
            if (!strcmp(rec.text.data + rec.off[k], r->names[f])) {
                col[f] = k;
                break;
            }
        has[f] = col[f] != SIZE_MAX;
    }
    if (r->schema == LLMOPS_DATA_SCHEMA_AUTO) r->schema = detect(has);
    unsigned need = schema_fields(r->schema);
    for (int f = 0; f < DATA_F_COUNT; f++) {
        if (!(need & (1u << f)) || has[f] || f == DATA_F_INPUT) continue;
        llmops_buf cols;
        llmops_buf_init(&cols, 4096);
        for (size_t k = 0; k < rec.n && cols.len < 3000; k++)
            llmops_buf_printf(&cols, NULL, "%s\"%s\"", k ? ", " : "", rec.text.data + rec.off[k]);
        st = llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s: no column \"%s\" for the %s field in the header (columns: %s)",
                              c->origin, r->names[f], schema_field_name(f), cols.data ? cols.data : "");
        llmops_buf_free(&cols);
        llmops_csv_record_free(&rec);
        return st;
    }
    json_t *msgs_json = NULL;
    for (;;) {
        llmops_error inner = {0};
        st = llmops_csv_next(d, n, &pos, &line, r->delim, &rec, &inner);
        if (st == LLMOPS_ERR_NOT_FOUND) {
            st = LLMOPS_OK;
            break;
        }
        if (st == LLMOPS_ERR_FORMAT) {
            /* the message starts "LINE: ": re-prefix as FILE:LINE: */
            const char *colon = strchr(inner.msg, ':');
            uint64_t bl = strtoull(inner.msg, NULL, 10);
            llmops_error e2 = {0};
            llmops_error_set(&e2, LLMOPS_ERR_FORMAT, "%s", colon ? colon + 2 : inner.msg);
            st = bad_record(c, bl, 0, &e2, err);
            if (st) break;
            continue;
        }
        if (st) {
            if (err) *err = inner;
            break;
        }
        if (rec.n != ncol) {
            llmops_error_set(&inner, LLMOPS_ERR_FORMAT, "%zu fields, the header has %zu", rec.n, ncol);
            st = bad_record(c, rec.line, 0, &inner, err);
            if (st) break;
            continue;
        }
        llmops_data_example ex;
        memset(&ex, 0, sizeof ex);
        ex.schema = r->schema;
        ex.origin = c->origin;
        ex.line = rec.line;
        for (int f = 0; f < DATA_F_COUNT; f++) {
            if (!(need & (1u << f))) continue;
            if (col[f] == SIZE_MAX) {
                ex.s[f] = "";
                continue;
            }
            ex.s[f] = rec.text.data + rec.off[col[f]];
            ex.n[f] = rec.len[col[f]];
        }
        st = LLMOPS_OK;
        if (r->schema == LLMOPS_DATA_SCHEMA_CHAT) { /* the column holds a JSON array */
            json_decref(msgs_json);
            msgs_json = NULL;
            st = parse_json_value(ex.s[DATA_F_MESSAGES], ex.n[DATA_F_MESSAGES], &msgs_json, &inner);
            if (st == LLMOPS_ERR_FORMAT) llmops_error_prefix(&inner, "field \"%s\": ", r->names[DATA_F_MESSAGES]);
            if (!st) st = json_messages(c, msgs_json, r->names[DATA_F_MESSAGES], &ex.n_msgs, &inner);
            ex.msgs = c->msgs;
        }
        if (!st) st = c->fn(c->user, &ex, &inner);
        if (st == LLMOPS_ERR_FORMAT) {
            st = bad_record(c, rec.line, 0, &inner, err);
            if (st) break;
            continue;
        }
        if (st) {
            if (err) *err = inner;
            break;
        }
        r->n_records++;
    }
    json_decref(msgs_json);
    llmops_csv_record_free(&rec);
    return st;
}

static llmops_status read_text(read_ctx *c, const char *d, size_t n, llmops_error *err) {
    c->r->schema = LLMOPS_DATA_SCHEMA_TEXT;
    const char *sep = c->r->doc_separator;
    size_t sl = sep ? strlen(sep) : 0;
    size_t p = 0;
    uint64_t line = 1;
    llmops_status st = LLMOPS_OK;
    char *doc = NULL;
    while (!st && p <= n) {
        const char *hit = sl ? memmem(d + p, n - p, sep, sl) : NULL;
        size_t e = hit ? (size_t)(hit - d) : n;
        /* documents need NUL termination for the example */
        llmops_free(doc);
        doc = llmops_malloc(e - p + 1); /* not strndup: the text may hold NUL bytes */
        if (doc) {
            memcpy(doc, d + p, e - p);
            doc[e - p] = '\0';
        }
        if (!doc) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            break;
        }
        size_t dl = e - p;
        int blank = 1;
        for (size_t i = 0; i < dl && blank; i++)
            blank = doc[i] == ' ' || doc[i] == '\n' || doc[i] == '\r' || doc[i] == '\t';
        if (!blank) {
            llmops_data_example ex;
            memset(&ex, 0, sizeof ex);
            ex.schema = LLMOPS_DATA_SCHEMA_TEXT;
            ex.origin = c->origin;
            ex.line = line;
            ex.s[DATA_F_TEXT] = doc;
            ex.n[DATA_F_TEXT] = dl;
            llmops_error inner = {0};
            st = c->fn(c->user, &ex, &inner);
            if (st == LLMOPS_ERR_FORMAT) st = bad_record(c, line, 0, &inner, err);
            else if (st && err) *err = inner;
            else if (!st) c->r->n_records++;
        }
        for (size_t i = p; i < e + (hit ? sl : 0) && i < n; i++) line += d[i] == '\n';
        if (!hit) break;
        p = e + sl;
    }
    llmops_free(doc);
    return st;
}

llmops_status llmops_data_read(llmops_data_reader *r, const char *data, size_t len, const char *origin,
                               llmops_data_example_fn fn, void *user, llmops_error *err) {
    read_ctx c = {r, origin, fn, user, NULL, 0};
    llmops_status st;
    if (!data) len = 0;
    switch (r->format) {
    case LLMOPS_DATA_FORMAT_TEXT: st = read_text(&c, data ? data : "", len, err); break;
    case LLMOPS_DATA_FORMAT_JSONL: st = read_jsonl(&c, data, len, err); break;
    case LLMOPS_DATA_FORMAT_JSON: st = read_json(&c, data, len, err); break;
    case LLMOPS_DATA_FORMAT_CSV: st = read_csv(&c, data, len, err); break;
    default: st = llmops_error_set(err, LLMOPS_ERR_CONFIG, "%s: unknown data format", origin);
    }
    llmops_free(c.msgs);
    return st;
}
