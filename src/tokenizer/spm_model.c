/*
 * SentencePiece tokenizer.model reader: a bounded protobuf wire-format reader
 * and the ModelProto schema on top of it (see llmops/spm_model.h).
 *
 * The wire format: a message is a run of fields; each field is a varint tag
 * (field_number << 3 | wire_type) and a value whose shape the wire type gives:
 * 0 varint, 1 fixed64, 2 varint length + bytes, 3/4 start/end of a group (a
 * legacy nested message closed by a matching end tag), 5 fixed32.
 *
 * Parsing runs twice over the same bytes with the same code. The first pass
 * validates everything and counts pieces and string bytes without allocating;
 * the second fills two exactly-sized allocations (the piece array and one block
 * holding every string). So a malformed file allocates nothing, and the only
 * failures after the first allocation are the allocations themselves.
 */
#include "llmops/spm_model.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/fileio.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

#define PB_MAX_FIELD 0x1fffffffu /* field numbers are 29 bits */

static const char *wt_name(unsigned wt) {
    switch (wt) {
    case WT_VARINT: return "varint";
    case WT_I64: return "fixed64";
    case WT_LEN: return "length-delimited";
    case WT_SGROUP: return "start-group";
    case WT_EGROUP: return "end-group";
    case WT_I32: return "fixed32";
    default: return "invalid";
    }
}

/* A field this reader knows: its number, the wire type it must have, its name. */
typedef struct {
    uint32_t num;
    unsigned wt;
    const char *name;
} pb_known;

/* The message being read, for error messages: top level, "trainer_spec" or "pieces[17]". */
typedef struct {
    const char *name; /* NULL at the top level                   */
    size_t idx;       /* SIZE_MAX unless an element of a repeated  */
    const pb_known *known;
    size_t n_known;
} pb_scope;

typedef struct {
    uint32_t num;
    unsigned wt;
    const char *name;  /* NULL for a field this reader does not know */
    size_t tag_off;    /* offset of the tag                           */
    size_t val_off;    /* offset of the value (LEN: of the payload)   */
    uint64_t u;        /* varint, fixed32, fixed64 value or LEN length */
} pb_field;

typedef struct {
    const uint8_t *base;
    size_t size;
    const char *origin;
    llmops_error *err;
    /* counted (pass 1) or filled (pass 2) */
    size_t n_pieces;
    uint64_t piece_bytes;  /* sum of len + 1 */
    llmops_spm_trainer_spec trainer;
    llmops_spm_normalizer_spec normalizer;
    int has_trainer_spec, has_normalizer_spec;
    const uint8_t *name;   /* last normalizer_spec.name seen (points into the input) */
    size_t name_len;
    const uint8_t *charsmap;
    size_t charsmap_len;
    /* pass 2 only */
    llmops_spm_piece *pieces; /* NULL in pass 1 */
    size_t pieces_cap;
    char *cursor, *block_end;
} spm_ctx;

static const pb_known k_model[] = {
    {1, WT_LEN, "pieces"},         {2, WT_LEN, "trainer_spec"},      {3, WT_LEN, "normalizer_spec"},
    {4, WT_LEN, "self_test_data"}, {5, WT_LEN, "denormalizer_spec"},
};
static const pb_known k_piece[] = {{1, WT_LEN, "piece"}, {2, WT_I32, "score"}, {3, WT_VARINT, "type"}};
static const pb_known k_trainer[] = {
    {3, WT_VARINT, "model_type"},     {4, WT_VARINT, "vocab_size"},
    {24, WT_VARINT, "treat_whitespace_as_suffix"}, {25, WT_VARINT, "split_digits"},
    {35, WT_VARINT, "byte_fallback"}, {40, WT_VARINT, "unk_id"},
    {41, WT_VARINT, "bos_id"},        {42, WT_VARINT, "eos_id"},
    {43, WT_VARINT, "pad_id"},
};
static const pb_known k_normalizer[] = {
    {1, WT_LEN, "name"}, {2, WT_LEN, "precompiled_charsmap"}, {3, WT_VARINT, "add_dummy_prefix"},
    {4, WT_VARINT, "remove_extra_whitespaces"}, {5, WT_VARINT, "escape_whitespaces"},
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors ------------------------------------------------------------------ */

/* "field 2 (pieces[17].score)", "field 1 (pieces)"; without a field: "in pieces[17]". */
static void where(char *buf, size_t cap, const pb_scope *s, const pb_field *f) {
    const char *fname = f && f->name ? f->name : "unknown";
    if (!f) {
        if (!s->name) snprintf(buf, cap, "in ModelProto");
        else if (s->idx != SIZE_MAX) snprintf(buf, cap, "in %s[%zu]", s->name, s->idx);
        else snprintf(buf, cap, "in %s", s->name);
    } else if (!s->name) {
        snprintf(buf, cap, "field %u (%s)", (unsigned)f->num, fname);
    } else if (s->idx != SIZE_MAX) {
        snprintf(buf, cap, "field %u (%s[%zu].%s)", (unsigned)f->num, s->name, s->idx, fname);
    } else {
        snprintf(buf, cap, "field %u (%s.%s)", (unsigned)f->num, s->name, fname);
    }
}

static llmops_status fail(spm_ctx *c, llmops_status code, size_t off, const pb_scope *s, const pb_field *f,
                          const char *fmt, ...) LLMOPS_PRINTF(6, 7);
static llmops_status fail(spm_ctx *c, llmops_status code, size_t off, const pb_scope *s, const pb_field *f,
                          const char *fmt, ...) {
    char loc[160], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where(loc, sizeof loc, s, f);
    return llmops_error_set(c->err, code, "%s: offset %zu: %s: %s", c->origin, off, loc, msg);
}

/* "the end" of the file, or "the end of pieces[17]" for an embedded message. */
typedef struct {
    char s[96];
} end_text;

static end_text end_name(const pb_scope *s) {
    end_text t;
    if (!s->name) snprintf(t.s, sizeof t.s, "the end");
    else if (s->idx != SIZE_MAX) snprintf(t.s, sizeof t.s, "the end of %s[%zu]", s->name, s->idx);
    else snprintf(t.s, sizeof t.s, "the end of %s", s->name);
    return t;
}

/* ---- wire format ----------------------------------------------------------------- */

/* A varint of at most 10 bytes whose value fits 64 bits, inside [*pos, end). */
static llmops_status read_varint(spm_ctx *c, size_t *pos, size_t end, uint64_t *out, const pb_scope *s,
                                 const pb_field *f, const char *what) {
    size_t start = *pos;
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*pos >= end)
            return fail(c, LLMOPS_ERR_FORMAT, start, s, f, "%s varint is cut off by %s", what, end_name(s).s);
        uint8_t b = c->base[(*pos)++];
        if (i == 9 && (b & 0x80))
            return fail(c, LLMOPS_ERR_FORMAT, start, s, f, "%s varint is longer than 10 bytes", what);
        if (i == 9 && b > 1) return fail(c, LLMOPS_ERR_FORMAT, start, s, f, "%s varint overflows 64 bits", what);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return LLMOPS_OK;
        }
    }
    return fail(c, LLMOPS_ERR_INTERNAL, start, s, f, "unreachable varint state"); /* the loop always returns */
}

static uint64_t load_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The tag at *pos: field number (1 .. 2^29-1) and wire type. */
static llmops_status read_tag(spm_ctx *c, size_t *pos, size_t end, const pb_scope *s, pb_field *f) {
    memset(f, 0, sizeof *f);
    f->tag_off = *pos;
    uint64_t tag;
    llmops_status st = read_varint(c, pos, end, &tag, s, NULL, "tag");
    if (st) return st;
    if ((tag >> 3) == 0 || (tag >> 3) > PB_MAX_FIELD)
        return fail(c, LLMOPS_ERR_FORMAT, f->tag_off, s, NULL, "tag %llu has an invalid field number %llu",
                    (unsigned long long)tag, (unsigned long long)(tag >> 3));
    f->num = (uint32_t)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    return LLMOPS_OK;
}

/*
 * The value of a varint, fixed64, fixed32 or length-delimited field; for LEN,
 * f->u is the length, checked against what remains, and *pos moves past the
 * payload.
 */
static llmops_status read_scalar(spm_ctx *c, size_t *pos, size_t end, const pb_scope *s, pb_field *f) {
    f->val_off = *pos;
    switch (f->wt) {
    case WT_VARINT: return read_varint(c, pos, end, &f->u, s, f, "value");
    case WT_I64:
    case WT_I32: {
        unsigned n = f->wt == WT_I64 ? 8 : 4;
        if (end - *pos < n)
            return fail(c, LLMOPS_ERR_FORMAT, *pos, s, f, "%s value needs %u bytes, %zu left before %s",
                        wt_name(f->wt), n, end - *pos, end_name(s).s);
        f->u = load_le(c->base + *pos, n);
        *pos += n;
        return LLMOPS_OK;
    }
    case WT_LEN: {
        size_t len_off = *pos;
        llmops_status st = read_varint(c, pos, end, &f->u, s, f, "length");
        if (st) return st;
        if (f->u > end - *pos)
            return fail(c, LLMOPS_ERR_FORMAT, len_off, s, f, "length %llu runs past %s (%zu bytes left)",
                        (unsigned long long)f->u, end_name(s).s, end - *pos);
        f->val_off = *pos;
        *pos += (size_t)f->u;
        return LLMOPS_OK;
    }
    default:
        return fail(c, LLMOPS_ERR_FORMAT, f->tag_off, s, f, "invalid wire type %u", f->wt);
    }
}

/*
 * Skips the rest of a group opened by `open` (its start tag already read),
 * through the matching end tag. Iterative, with nesting capped.
 */
static llmops_status skip_group(spm_ctx *c, size_t *pos, size_t end, const pb_scope *s, const pb_field *open) {
    uint32_t stack[LLMOPS_SPM_MAX_GROUP_DEPTH];
    size_t depth = 0;
    stack[depth++] = open->num;
    while (depth > 0) {
        if (*pos >= end)
            return fail(c, LLMOPS_ERR_FORMAT, open->tag_off, s, open, "group is not closed before %s",
                        end_name(s).s);
        pb_field f;
        llmops_status st = read_tag(c, pos, end, s, &f);
        if (st) return st;
        if (f.wt == WT_SGROUP) {
            if (depth == LLMOPS_SPM_MAX_GROUP_DEPTH)
                return fail(c, LLMOPS_ERR_LIMIT, f.tag_off, s, &f, "groups nested deeper than %d",
                            LLMOPS_SPM_MAX_GROUP_DEPTH);
            stack[depth++] = f.num;
        } else if (f.wt == WT_EGROUP) {
            if (f.num != stack[depth - 1])
                return fail(c, LLMOPS_ERR_FORMAT, f.tag_off, s, &f, "end-group closes the group of field %u",
                            (unsigned)stack[depth - 1]);
            depth--;
        } else {
            st = read_scalar(c, pos, end, s, &f);
            if (st) return st;
        }
    }
    return LLMOPS_OK;
}

/*
 * The next field of the message in [*pos, end): its tag, its value (groups
 * skipped whole), its name when the scope knows it, and a wire-type check for
 * a known field.
 */
static llmops_status read_field(spm_ctx *c, size_t *pos, size_t end, const pb_scope *s, pb_field *f) {
    llmops_status st = read_tag(c, pos, end, s, f);
    if (st) return st;
    for (size_t i = 0; i < s->n_known; i++) {
        if (s->known[i].num != f->num) continue;
        f->name = s->known[i].name;
        if (f->wt != s->known[i].wt)
            return fail(c, LLMOPS_ERR_FORMAT, f->tag_off, s, f, "wire type %u (%s), expected %u (%s)", f->wt,
                        wt_name(f->wt), s->known[i].wt, wt_name(s->known[i].wt));
        break;
    }
    if (f->wt == WT_SGROUP) {
        f->val_off = *pos;
        return skip_group(c, pos, end, s, f);
    }
    if (f->wt == WT_EGROUP)
        return fail(c, LLMOPS_ERR_FORMAT, f->tag_off, s, f, "end-group without a matching start-group");
    return read_scalar(c, pos, end, s, f);
}

/* int32 and enum fields: protobuf keeps the low 32 bits of the varint (so -1,
 * written sign-extended in 10 bytes, reads back as -1). */
static int32_t as_int32(uint64_t u) {
    uint32_t lo = (uint32_t)u;
    int32_t v;
    memcpy(&v, &lo, sizeof v);
    return v;
}

/* ---- ModelProto ------------------------------------------------------------------ */

static llmops_status parse_piece(spm_ctx *c, size_t start, size_t end, size_t idx) {
    pb_scope s = {"pieces", idx, k_piece, N_OF(k_piece)};
    const uint8_t *text = NULL;
    size_t len = 0;
    float score = 0.0f;
    int type = LLMOPS_SPM_PIECE_NORMAL;
    size_t pos = start;
    while (pos < end) {
        pb_field f;
        llmops_status st = read_field(c, &pos, end, &s, &f);
        if (st) return st;
        switch (f.num) {
        case 1:
            text = c->base + f.val_off;
            len = (size_t)f.u;
            break;
        case 2: {
            uint32_t bits = (uint32_t)f.u;
            memcpy(&score, &bits, sizeof score);
            break;
        }
        case 3: {
            int32_t t = as_int32(f.u);
            if (t < LLMOPS_SPM_PIECE_NORMAL || t > LLMOPS_SPM_PIECE_BYTE)
                return fail(c, LLMOPS_ERR_UNSUPPORTED, f.val_off, &s, &f, "unknown piece type %d", (int)t);
            type = t;
            break;
        }
        default: break;
        }
    }
    if (len == 0) return fail(c, LLMOPS_ERR_FORMAT, start, &s, NULL, "the piece is empty or missing");
    if (len > UINT32_MAX) return fail(c, LLMOPS_ERR_LIMIT, start, &s, NULL, "a piece of %zu bytes", len);
    c->piece_bytes += (uint64_t)len + 1; /* bounded by twice the input size */
    if (c->pieces) {
        if (idx >= c->pieces_cap || (size_t)(c->block_end - c->cursor) < len + 1)
            return fail(c, LLMOPS_ERR_INTERNAL, start, &s, NULL, "the second pass disagrees with the first");
        llmops_spm_piece *p = &c->pieces[idx];
        memcpy(c->cursor, text, len);
        c->cursor[len] = '\0';
        p->text = c->cursor;
        p->len = (uint32_t)len;
        p->score = score;
        p->type = type;
        c->cursor += len + 1;
    }
    return LLMOPS_OK;
}

/* Repeated occurrences of an embedded message merge: each field read overwrites. */
static llmops_status parse_trainer(spm_ctx *c, size_t start, size_t end) {
    pb_scope s = {"trainer_spec", SIZE_MAX, k_trainer, N_OF(k_trainer)};
    llmops_spm_trainer_spec *t = &c->trainer;
    size_t pos = start;
    while (pos < end) {
        pb_field f;
        llmops_status st = read_field(c, &pos, end, &s, &f);
        if (st) return st;
        switch (f.num) {
        case 3: {
            int32_t v = as_int32(f.u);
            if (v < LLMOPS_SPM_MODEL_UNIGRAM || v > LLMOPS_SPM_MODEL_CHAR)
                return fail(c, LLMOPS_ERR_UNSUPPORTED, f.val_off, &s, &f, "unknown model type %d", (int)v);
            t->model_type = v;
            break;
        }
        case 4: t->vocab_size = as_int32(f.u); break;
        case 24: t->treat_whitespace_as_suffix = f.u != 0; break;
        case 25: t->split_digits = f.u != 0; break;
        case 35: t->byte_fallback = f.u != 0; break;
        case 40: t->unk_id = as_int32(f.u); break;
        case 41: t->bos_id = as_int32(f.u); break;
        case 42: t->eos_id = as_int32(f.u); break;
        case 43: t->pad_id = as_int32(f.u); break;
        default: break;
        }
    }
    return LLMOPS_OK;
}

static llmops_status parse_normalizer(spm_ctx *c, size_t start, size_t end) {
    pb_scope s = {"normalizer_spec", SIZE_MAX, k_normalizer, N_OF(k_normalizer)};
    llmops_spm_normalizer_spec *n = &c->normalizer;
    size_t pos = start;
    while (pos < end) {
        pb_field f;
        llmops_status st = read_field(c, &pos, end, &s, &f);
        if (st) return st;
        switch (f.num) {
        case 1:
            c->name = c->base + f.val_off;
            c->name_len = (size_t)f.u;
            break;
        case 2:
            c->charsmap = c->base + f.val_off;
            c->charsmap_len = (size_t)f.u;
            break;
        case 3: n->add_dummy_prefix = f.u != 0; break;
        case 4: n->remove_extra_whitespaces = f.u != 0; break;
        case 5: n->escape_whitespaces = f.u != 0; break;
        default: break;
        }
    }
    return LLMOPS_OK;
}

static void ctx_init(spm_ctx *c, const void *data, size_t size, const char *origin, llmops_error *err) {
    memset(c, 0, sizeof *c);
    c->base = data;
    c->size = size;
    c->origin = origin;
    c->err = err;
    c->trainer = (llmops_spm_trainer_spec){
        .model_type = LLMOPS_SPM_MODEL_UNIGRAM,
        .vocab_size = 8000,
        .unk_id = 0,
        .bos_id = 1,
        .eos_id = 2,
        .pad_id = -1,
    };
    c->normalizer.add_dummy_prefix = 1;
    c->normalizer.remove_extra_whitespaces = 1;
    c->normalizer.escape_whitespaces = 1;
}

static llmops_status parse_model(spm_ctx *c) {
    pb_scope top = {NULL, SIZE_MAX, k_model, N_OF(k_model)};
    size_t pos = 0;
    while (pos < c->size) {
        pb_field f;
        llmops_status st = read_field(c, &pos, c->size, &top, &f);
        if (st) return st;
        size_t start = f.val_off, end = f.val_off + (size_t)f.u;
        switch (f.num) {
        case 1:
            if (c->n_pieces >= LLMOPS_SPM_MAX_PIECES)
                return fail(c, LLMOPS_ERR_LIMIT, f.tag_off, &top, &f, "more than %u pieces",
                            (unsigned)LLMOPS_SPM_MAX_PIECES);
            st = parse_piece(c, start, end, c->n_pieces);
            c->n_pieces++;
            break;
        case 2:
            c->has_trainer_spec = 1;
            st = parse_trainer(c, start, end);
            break;
        case 3:
            c->has_normalizer_spec = 1;
            st = parse_normalizer(c, start, end);
            break;
        default: break; /* self_test_data, denormalizer_spec, extensions: framing checked, skipped */
        }
        if (st) return st;
    }
    if (c->n_pieces == 0)
        return llmops_error_set(c->err, LLMOPS_ERR_FORMAT,
                                "%s: holds no pieces (ModelProto field 1); is it a SentencePiece model?", c->origin);
    return LLMOPS_OK;
}

/* ---- public -------------------------------------------------------------------- */

llmops_status llmops_spm_model_parse(const void *data, size_t size, const char *origin, llmops_spm_model *out,
                                     llmops_error *err) {
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "llmops_spm_model_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!origin) origin = "tokenizer.model";
    if (!data && size)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s: NULL data of %zu bytes", origin, size);

    spm_ctx c;
    ctx_init(&c, data, size, origin, err);
    llmops_status st = parse_model(&c);
    if (st) return st;

    /* every string in one block: pieces, then the normalizer name, then the charsmap */
    uint64_t total = c.piece_bytes + (uint64_t)c.name_len + 1 + (uint64_t)c.charsmap_len;
    if (total > SIZE_MAX) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: strings too large", origin);
    size_t n = c.n_pieces;
    llmops_spm_piece *pieces = llmops_calloc(n, sizeof *pieces);
    char *block = pieces ? llmops_malloc((size_t)total) : NULL;
    if (!pieces || !block) {
        llmops_free(pieces);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory for %zu pieces (%llu bytes of text)",
                                origin, n, (unsigned long long)total);
    }

    ctx_init(&c, data, size, origin, err);
    c.pieces = pieces;
    c.pieces_cap = n;
    c.cursor = block;
    c.block_end = block + total;
    st = parse_model(&c);
    if (!st && (c.n_pieces != n || (size_t)(c.block_end - c.cursor) != c.name_len + 1 + c.charsmap_len))
        st = llmops_error_set(err, LLMOPS_ERR_INTERNAL, "%s: the second pass disagrees with the first", origin);
    if (st) {
        llmops_free(pieces);
        llmops_free(block);
        return st;
    }
    if (c.name_len) memcpy(c.cursor, c.name, c.name_len);
    c.cursor[c.name_len] = '\0';
    c.normalizer.name = c.cursor;
    c.normalizer.name_len = c.name_len;
    c.cursor += c.name_len + 1;
    if (c.charsmap_len) {
        memcpy(c.cursor, c.charsmap, c.charsmap_len);
        c.normalizer.precompiled_charsmap = (const uint8_t *)c.cursor;
        c.normalizer.precompiled_charsmap_len = c.charsmap_len;
    }

    out->n = n;
    out->pieces = pieces;
    out->trainer = c.trainer;
    out->normalizer = c.normalizer;
    out->has_trainer_spec = c.has_trainer_spec;
    out->has_normalizer_spec = c.has_normalizer_spec;
    out->bytes_ = block;
    return LLMOPS_OK;
}

llmops_status llmops_spm_model_load(const char *path, llmops_spm_model *out, llmops_error *err) {
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "llmops_spm_model_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "llmops_spm_model_load: path is NULL");
    llmops_mmap m;
    llmops_status st = llmops_mmap_open(path, &m, err);
    if (st) return st;
    st = llmops_spm_model_parse(m.data, m.size, path, out, err);
    llmops_mmap_close(&m);
    return st;
}

void llmops_spm_model_free(llmops_spm_model *m) {
    if (!m) return;
    llmops_free(m->pieces);
    llmops_free(m->bytes_);
    memset(m, 0, sizeof *m);
}
