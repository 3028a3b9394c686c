/*
 * YAML configuration: libyaml events -> a node tree in an arena -> a caller's struct via a schema.
 *
 * The tree builder keeps one stack of open collections (frames) and one shared vector of
 * finished children (`pending`): a frame's children are the slice pending[frame.start ..], so
 * when a collection ends its slice is copied into the arena and the vector shrinks back. The key
 * path of any position can be read off the frames, which is how build-time errors name a key.
 *
 * Aliases share the anchored node. Each node carries its `weight`, the size of its subtree with
 * every alias expanded, and the builder keeps the running total of the expanded document, so the
 * cost of any later walk (duplicate check, binding) is bounded by max_nodes.
 */
#include "llmops/config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "llmops/fileio.h"

struct llmops_config_node {
    llmops_config_node_kind kind;
    bool plain;              /* scalar: plain style and no tag                        */
    bool complete;           /* collection: its end event has been seen               */
    unsigned line, col;      /* 1-based                                               */
    const char *text;        /* scalar: NUL-terminated (no NUL inside)                */
    size_t len;              /* scalar: strlen(text)                                  */
    size_t count;            /* seq: items; map: pairs                                */
    llmops_config_node **kids; /* seq: count items; map: 2*count, key and value in turn */
    size_t weight;           /* nodes in the subtree with aliases expanded            */
};

struct llmops_config {
    llmops_arena *arena;
    llmops_config_node *root;
    const char *origin;
    unsigned max_errors;
};

/* The shape of every LLMOPS_CONFIG_LIST(T) member. */
typedef struct raw_list {
    void *items;
    size_t count;
} raw_list;

#define ARENA_BLOCK (16u * 1024u)
#define SCHEMA_MAX_DEPTH 32
#define SCHEMA_MAX_VISITED 128

/* ---- key paths ------------------------------------------------------------------ */

typedef struct pathbuf {
    char s[512];
    size_t len;
} pathbuf;

static void path_reset(pathbuf *p) {
    p->len = 0;
    p->s[0] = '\0';
}

static void path_appendf(pathbuf *p, const char *fmt, ...) LLMOPS_PRINTF(2, 3);
static void path_appendf(pathbuf *p, const char *fmt, ...) {
    size_t room = sizeof p->s - p->len;
    if (room <= 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->s + p->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        p->s[p->len] = '\0';
        return;
    }
    p->len = (size_t)n < room ? p->len + (size_t)n : sizeof p->s - 1;
}

/* Appends ".key" (or "key" at the start); returns the length to restore with path_pop. */
static size_t path_push_key(pathbuf *p, const char *key) {
    size_t old = p->len;
    path_appendf(p, "%s%s", p->len ? "." : "", key);
    return old;
}

static size_t path_push_index(pathbuf *p, size_t i) {
    size_t old = p->len;
    path_appendf(p, "[%zu]", i);
    return old;
}

static void path_pop(pathbuf *p, size_t old) {
    p->len = old;
    p->s[old] = '\0';
}

/* ---- node accessors ------------------------------------------------------------- */

static bool text_is_null(const char *t) {
    return t[0] == '\0' || strcmp(t, "~") == 0 || strcmp(t, "null") == 0 ||
           strcmp(t, "Null") == 0 || strcmp(t, "NULL") == 0;
}

const llmops_config_node *llmops_config_root(const llmops_config *cfg) {
    return cfg ? cfg->root : NULL;
}

const char *llmops_config_origin(const llmops_config *cfg) { return cfg ? cfg->origin : NULL; }

llmops_config_node_kind llmops_config_node_kind_of(const llmops_config_node *n) { return n->kind; }
unsigned llmops_config_node_line(const llmops_config_node *n) { return n->line; }
unsigned llmops_config_node_col(const llmops_config_node *n) { return n->col; }

const char *llmops_config_node_text(const llmops_config_node *n) {
    return n && n->kind == LLMOPS_CONFIG_NODE_SCALAR ? n->text : NULL;
}

bool llmops_config_node_is_plain(const llmops_config_node *n) {
    return n && n->kind == LLMOPS_CONFIG_NODE_SCALAR && n->plain;
}

bool llmops_config_node_is_null(const llmops_config_node *n) {
    return llmops_config_node_is_plain(n) && text_is_null(n->text);
}

size_t llmops_config_node_count(const llmops_config_node *n) {
    return n && n->kind != LLMOPS_CONFIG_NODE_SCALAR ? n->count : 0;
}

const llmops_config_node *llmops_config_node_item(const llmops_config_node *n, size_t i) {
    if (!n || n->kind == LLMOPS_CONFIG_NODE_SCALAR || i >= n->count) return NULL;
    return n->kind == LLMOPS_CONFIG_NODE_SEQ ? n->kids[i] : n->kids[2 * i + 1];
}

const llmops_config_node *llmops_config_node_key(const llmops_config_node *n, size_t i) {
    if (!n || n->kind != LLMOPS_CONFIG_NODE_MAP || i >= n->count) return NULL;
    return n->kids[2 * i];
}

/* The value of `key` (len bytes) in mapping `map`, or NULL. */
static const llmops_config_node *map_find(const llmops_config_node *map, const char *key, size_t len) {
    for (size_t i = 0; i < map->count; i++) {
        const llmops_config_node *k = map->kids[2 * i];
        if (k->len == len && memcmp(k->text, key, len) == 0) return map->kids[2 * i + 1];
    }
    return NULL;
}

const llmops_config_node *llmops_config_node_get(const llmops_config_node *n, const char *path) {
    if (!path) return n;
    const char *s = path;
    while (n && *s) {
        if (*s == '[') {
            s++;
            size_t idx = 0;
            int digits = 0;
            while (*s >= '0' && *s <= '9') {
                if (++digits > 18) return NULL;
                idx = idx * 10 + (size_t)(*s++ - '0');
            }
            if (!digits || *s != ']') return NULL;
            s++;
            if (n->kind != LLMOPS_CONFIG_NODE_SEQ || idx >= n->count) return NULL;
            n = n->kids[idx];
        } else {
            if (*s == '.') s++;
            size_t len = strcspn(s, ".[");
            if (len == 0 || n->kind != LLMOPS_CONFIG_NODE_MAP) return NULL;
            n = map_find(n, s, len);
            s += len;
        }
        if (*s && *s != '.' && *s != '[') return NULL;
    }
    return n;
}

const llmops_config_node *llmops_config_get(const llmops_config *cfg, const char *path) {
    return cfg ? llmops_config_node_get(cfg->root, path) : NULL;
}

/* ---- tree builder --------------------------------------------------------------- */

typedef struct frame {
    llmops_config_node *node;
    size_t start;            /* its children begin at pending[start] */
} frame;

typedef struct anchor {
    const char *name;
    llmops_config_node *node;
} anchor;

typedef struct builder {
    llmops_config *cfg;
    const unsigned char *data;
    size_t len;
    llmops_error *err;
    size_t max_nodes;
    unsigned max_depth;
    size_t total;            /* nodes of the document with aliases expanded */
    unsigned depth;
    unsigned ndocs;
    frame frames[LLMOPS_CONFIG_MAX_DEPTH_LIMIT];
    llmops_config_node **pending;
    size_t npending, cap_pending;
    anchor *anchors;
    size_t nanchors, cap_anchors;
} builder;

static llmops_status nomem(llmops_error *err, const char *origin) {
    return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", origin);
}

/* The key path of the position where the next child of frame nframes-1 goes. */
static void builder_path(const builder *b, unsigned nframes, pathbuf *p) {
    path_reset(p);
    for (unsigned i = 0; i < nframes; i++) {
        size_t start = b->frames[i].start;
        size_t end = i + 1 < b->depth ? b->frames[i + 1].start : b->npending;
        size_t r = end - start;
        if (b->frames[i].node->kind == LLMOPS_CONFIG_NODE_MAP) {
            if (r & 1) path_push_key(p, b->pending[end - 1]->text);
        } else {
            path_push_index(p, r);
        }
    }
}

static llmops_status build_error(builder *b, llmops_status code, unsigned line, unsigned col,
                                 const char *key, const char *fmt, ...) LLMOPS_PRINTF(6, 7);
/* "origin:L:C: path: message" with the path of the current position (plus `key`). */
static llmops_status build_error(builder *b, llmops_status code, unsigned line, unsigned col,
                                 const char *key, const char *fmt, ...) {
    pathbuf p;
    builder_path(b, b->depth, &p);
    if (key) path_push_key(&p, key);
    char msg[LLMOPS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p.len)
        return llmops_error_set(b->err, code, "%s:%u:%u: %s: %s", b->cfg->origin, line, col, p.s, msg);
    return llmops_error_set(b->err, code, "%s:%u:%u: %s", b->cfg->origin, line, col, msg);
}

static llmops_status new_node(builder *b, llmops_config_node_kind kind, const yaml_mark_t *mark,
                              llmops_config_node **out) {
    if (b->total >= b->max_nodes)
        return build_error(b, LLMOPS_ERR_LIMIT, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
                           NULL, "the document has more than %zu nodes", b->max_nodes);
    llmops_config_node *n = llmops_arena_alloc(b->cfg->arena, sizeof *n, _Alignof(llmops_config_node));
    if (!n) return nomem(b->err, b->cfg->origin);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = (unsigned)mark->line + 1;
    n->col = (unsigned)mark->column + 1;
    n->weight = 1;
    b->total++;
    *out = n;
    return LLMOPS_OK;
}

static llmops_status add_anchor(builder *b, const yaml_char_t *name, llmops_config_node *n) {
    if (!name) return LLMOPS_OK;
    if (b->nanchors >= LLMOPS_CONFIG_MAX_ANCHORS)
        return build_error(b, LLMOPS_ERR_LIMIT, n->line, n->col, NULL,
                           "more than %u anchors", LLMOPS_CONFIG_MAX_ANCHORS);
    if (b->nanchors == b->cap_anchors) {
        size_t ncap = b->cap_anchors ? b->cap_anchors * 2 : 16;
        anchor *na = llmops_reallocarray(b->anchors, ncap, sizeof *na);
        if (!na) return nomem(b->err, b->cfg->origin);
        b->anchors = na;
        b->cap_anchors = ncap;
    }
    const char *s = (const char *)name;
    char *copy = llmops_arena_strndup(b->cfg->arena, s, strlen(s));
    if (!copy) return nomem(b->err, b->cfg->origin);
    b->anchors[b->nanchors++] = (anchor){copy, n};
    return LLMOPS_OK;
}

/* Hands a finished node to the open collection (or makes it the root). */
static llmops_status attach(builder *b, llmops_config_node *n, unsigned line, unsigned col) {
    if (b->depth == 0) {
        b->cfg->root = n;
        return LLMOPS_OK;
    }
    const frame *f = &b->frames[b->depth - 1];
    if (f->node->kind == LLMOPS_CONFIG_NODE_MAP && ((b->npending - f->start) & 1) == 0) {
        if (n->kind != LLMOPS_CONFIG_NODE_SCALAR)
            return build_error(b, LLMOPS_ERR_CONFIG, line, col, NULL,
                               "mapping keys must be scalars, not %s",
                               n->kind == LLMOPS_CONFIG_NODE_MAP ? "mappings" : "lists");
        if (n->plain && strcmp(n->text, "<<") == 0)
            return build_error(b, LLMOPS_ERR_UNSUPPORTED, line, col, NULL,
                               "merge keys ('<<') are not supported; alias the whole value instead");
    }
    if (b->npending == b->cap_pending) {
        size_t ncap = b->cap_pending ? b->cap_pending * 2 : 64;
        llmops_config_node **np = llmops_reallocarray(b->pending, ncap, sizeof *np);
        if (!np) return nomem(b->err, b->cfg->origin);
        b->pending = np;
        b->cap_pending = ncap;
    }
    b->pending[b->npending++] = n;
    return LLMOPS_OK;
}

typedef struct key_ref {
    const llmops_config_node *key;
    size_t idx;
} key_ref;

static int key_ref_cmp(const void *pa, const void *pb) {
    const key_ref *a = pa, *b = pb;
    if (a->key->len != b->key->len) return a->key->len < b->key->len ? -1 : 1;
    int c = memcmp(a->key->text, b->key->text, a->key->len);
    if (c) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool same_key(const llmops_config_node *a, const llmops_config_node *b) {
    return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

/* Reports the earliest key of `map` that repeats an earlier one. Called while the map's frame
 * is still on the stack, so the path is the map's own. */
static llmops_status check_duplicates(builder *b, const llmops_config_node *map) {
    size_t n = map->count, dup = SIZE_MAX, first = 0;
    if (n <= 16) {
        for (size_t j = 1; j < n && dup == SIZE_MAX; j++)
            for (size_t i = 0; i < j; i++)
                if (same_key(map->kids[2 * i], map->kids[2 * j])) {
                    dup = j;
                    first = i;
                    break;
                }
    } else {
        key_ref *refs = llmops_reallocarray(NULL, n, sizeof *refs);
        if (!refs) return nomem(b->err, b->cfg->origin);
        for (size_t i = 0; i < n; i++) refs[i] = (key_ref){map->kids[2 * i], i};
        qsort(refs, n, sizeof *refs, key_ref_cmp);
        for (size_t i = 1; i < n; i++) {
            if (same_key(refs[i - 1].key, refs[i].key) && refs[i].idx < dup) {
                /* the run's first member is the original definition */
                size_t j = i - 1;
                while (j > 0 && same_key(refs[j - 1].key, refs[i].key)) j--;
                dup = refs[i].idx;
                first = refs[j].idx;
            }
        }
        llmops_free(refs);
    }
    if (dup == SIZE_MAX) return LLMOPS_OK;
    const llmops_config_node *k = map->kids[2 * dup], *f = map->kids[2 * first];
    pathbuf p;
    builder_path(b, b->depth - 1, &p);
    path_push_key(&p, k->text);
    return llmops_error_set(b->err, LLMOPS_ERR_CONFIG,
                            "%s:%u:%u: %s: duplicate key (first defined at line %u, column %u)",
                            b->cfg->origin, k->line, k->col, p.s, f->line, f->col);
}

static llmops_status end_collection(builder *b) {
    frame *f = &b->frames[b->depth - 1];
    llmops_config_node *n = f->node;
    size_t r = b->npending - f->start;
    if (r) {
        n->kids = llmops_arena_alloc(b->cfg->arena, r * sizeof *n->kids, _Alignof(llmops_config_node *));
        if (!n->kids) return nomem(b->err, b->cfg->origin);
        memcpy(n->kids, b->pending + f->start, r * sizeof *n->kids);
    }
    n->count = n->kind == LLMOPS_CONFIG_NODE_MAP ? r / 2 : r;
    for (size_t i = 0; i < r; i++) n->weight += n->kids[i]->weight; /* <= total: no overflow */
    if (n->kind == LLMOPS_CONFIG_NODE_MAP) {
        llmops_status st = check_duplicates(b, n);
        if (st) return st;
    }
    n->complete = true;
    b->npending = f->start;
    b->depth--;
    return attach(b, n, n->line, n->col);
}

static bool is_tag(const yaml_char_t *tag, const char *want) {
    return tag && strcmp((const char *)tag, want) == 0;
}

static llmops_status start_collection(builder *b, const yaml_event_t *ev) {
    bool is_map = ev->type == YAML_MAPPING_START_EVENT;
    const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const yaml_char_t *anchor_name = is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    if (tag && !is_tag(tag, is_map ? YAML_MAP_TAG : YAML_SEQ_TAG))
        return build_error(b, LLMOPS_ERR_UNSUPPORTED, line, col, NULL, "unsupported tag '%s'",
                           (const char *)tag);
    if (b->depth >= b->max_depth)
        return build_error(b, LLMOPS_ERR_LIMIT, line, col, NULL,
                           "nesting is deeper than the limit of %u levels", b->max_depth);
    llmops_config_node *n;
    llmops_status st = new_node(b, is_map ? LLMOPS_CONFIG_NODE_MAP : LLMOPS_CONFIG_NODE_SEQ,
                                &ev->start_mark, &n);
    if (st) return st;
    if ((st = add_anchor(b, anchor_name, n))) return st;
    b->frames[b->depth++] = (frame){n, b->npending};
    return LLMOPS_OK;
}

static llmops_status on_scalar(builder *b, const yaml_event_t *ev) {
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    const yaml_char_t *tag = ev->data.scalar.tag;
    /* "!" is the non-specific tag: like !!str, it makes the scalar a string */
    if (tag && !is_tag(tag, YAML_STR_TAG) && !is_tag(tag, "!"))
        return build_error(b, LLMOPS_ERR_UNSUPPORTED, line, col, NULL,
                           "unsupported tag '%s' (only !!str is allowed)", (const char *)tag);
    const char *val = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(val, '\0', len))
        return build_error(b, LLMOPS_ERR_FORMAT, line, col, NULL, "a scalar contains a NUL character");
    llmops_config_node *n;
    llmops_status st = new_node(b, LLMOPS_CONFIG_NODE_SCALAR, &ev->start_mark, &n);
    if (st) return st;
    char *text = llmops_arena_strndup(b->cfg->arena, val, len);
    if (!text) return nomem(b->err, b->cfg->origin);
    n->text = text;
    n->len = len;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag;
    if ((st = add_anchor(b, ev->data.scalar.anchor, n))) return st;
    return attach(b, n, line, col);
}

static llmops_status on_alias(builder *b, const yaml_event_t *ev) {
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    const char *name = (const char *)ev->data.alias.anchor;
    llmops_config_node *n = NULL;
    for (size_t i = b->nanchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0) {
            n = b->anchors[i].node;
            break;
        }
    if (!n) return build_error(b, LLMOPS_ERR_FORMAT, line, col, NULL, "undefined alias *%s", name);
    if (n->kind != LLMOPS_CONFIG_NODE_SCALAR && !n->complete)
        return build_error(b, LLMOPS_ERR_FORMAT, line, col, NULL,
                           "alias *%s refers to a node that contains it (recursive alias)", name);
    if (n->weight > b->max_nodes - b->total)
        return build_error(b, LLMOPS_ERR_LIMIT, line, col, NULL,
                           "alias *%s expands the document past the limit of %zu nodes", name,
                           b->max_nodes);
    b->total += n->weight;
    return attach(b, n, line, col);
}

static llmops_status on_event(builder *b, const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->ndocs > 1)
            return build_error(b, LLMOPS_ERR_FORMAT, (unsigned)ev->start_mark.line + 1,
                               (unsigned)ev->start_mark.column + 1, NULL,
                               "a second document ('---'): only one document per file is allowed");
        return LLMOPS_OK;
    case YAML_SCALAR_EVENT: return on_scalar(b, ev);
    case YAML_ALIAS_EVENT: return on_alias(b, ev);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: return start_collection(b, ev);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth == 0) return llmops_error_set(b->err, LLMOPS_ERR_INTERNAL, "unbalanced YAML events");
        return end_collection(b);
    default: return LLMOPS_OK;
    }
}

/* "origin:L:C: <libyaml's problem> (<context> at L:C)". */
static llmops_status syntax_error(builder *b, const yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) return nomem(b->err, b->cfg->origin);
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR) {
        /* the reader reports a byte offset: turn it into a line and column */
        size_t off = p->problem_offset < b->len ? p->problem_offset : b->len;
        unsigned line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (b->data[i] == '\n') {
                line++;
                col = 1;
            } else if ((b->data[i] & 0xC0) != 0x80) {
                col++;
            }
        }
        if (p->problem_value >= 0)
            return llmops_error_set(b->err, LLMOPS_ERR_FORMAT, "%s:%u:%u: %s (byte 0x%02X)",
                                    b->cfg->origin, line, col, problem, (unsigned)p->problem_value & 0xFFu);
        return llmops_error_set(b->err, LLMOPS_ERR_FORMAT, "%s:%u:%u: %s", b->cfg->origin, line, col, problem);
    }
    unsigned line = (unsigned)p->problem_mark.line + 1, col = (unsigned)p->problem_mark.column + 1;
    if (p->context)
        return llmops_error_set(b->err, LLMOPS_ERR_FORMAT, "%s:%u:%u: %s (%s at %u:%u)", b->cfg->origin,
                                line, col, problem, p->context, (unsigned)p->context_mark.line + 1,
                                (unsigned)p->context_mark.column + 1);
    return llmops_error_set(b->err, LLMOPS_ERR_FORMAT, "%s:%u:%u: %s", b->cfg->origin, line, col, problem);
}

static llmops_status build_tree(builder *b) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return nomem(b->err, b->cfg->origin);
    static const unsigned char empty[1] = {0};
    yaml_parser_set_input_string(&p, b->len ? b->data : empty, b->len);
    llmops_status st = LLMOPS_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            st = syntax_error(b, &p);
            break;
        }
        bool done = ev.type == YAML_STREAM_END_EVENT;
        st = on_event(b, &ev);
        yaml_event_delete(&ev);
        if (st || done) break;
    }
    yaml_parser_delete(&p);
    return st;
}

llmops_status llmops_config_parse_buffer(const void *data, size_t len, const char *origin,
                                         const llmops_config_options *opts, llmops_config **out,
                                         llmops_error *err) {
    if (!out || (!data && len))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    *out = NULL;
    if (!origin) origin = "<buffer>";
    llmops_config_options o = opts ? *opts : (llmops_config_options){0};
    if (!o.max_bytes) o.max_bytes = LLMOPS_CONFIG_DEFAULT_MAX_BYTES;
    if (!o.max_depth) o.max_depth = LLMOPS_CONFIG_DEFAULT_MAX_DEPTH;
    if (o.max_depth > LLMOPS_CONFIG_MAX_DEPTH_LIMIT) o.max_depth = LLMOPS_CONFIG_MAX_DEPTH_LIMIT;
    if (!o.max_nodes) o.max_nodes = LLMOPS_CONFIG_DEFAULT_MAX_NODES;
    if (!o.max_errors) o.max_errors = 1;
    if (len > o.max_bytes)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "%s: %zu bytes is larger than the limit of %zu bytes",
                                origin, len, o.max_bytes);

    llmops_config *cfg = llmops_calloc(1, sizeof *cfg);
    if (!cfg) return nomem(err, origin);
    cfg->max_errors = o.max_errors;
    cfg->arena = llmops_arena_create(ARENA_BLOCK, 0);
    if (!cfg->arena) {
        llmops_free(cfg);
        return nomem(err, origin);
    }
    cfg->origin = llmops_arena_strndup(cfg->arena, origin, strlen(origin));
    if (!cfg->origin) {
        llmops_config_free(cfg);
        return nomem(err, origin);
    }
    builder *b = llmops_calloc(1, sizeof *b);
    if (!b) {
        llmops_config_free(cfg);
        return nomem(err, origin);
    }
    b->cfg = cfg;
    b->data = data;
    b->len = len;
    b->err = err;
    b->max_nodes = o.max_nodes;
    b->max_depth = o.max_depth;
    llmops_status st = build_tree(b);
    llmops_free(b->pending);
    llmops_free(b->anchors);
    llmops_free(b);
    if (st) {
        llmops_config_free(cfg);
        return st;
    }
    *out = cfg;
    return LLMOPS_OK;
}

llmops_status llmops_config_parse_file(const char *path, const llmops_config_options *opts,
                                       llmops_config **out, llmops_error *err) {
    if (!path || !out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    *out = NULL;
    size_t max = opts && opts->max_bytes ? opts->max_bytes : LLMOPS_CONFIG_DEFAULT_MAX_BYTES;
    char *data = NULL;
    size_t len = 0;
    llmops_status st = llmops_file_read_all(path, max, &data, &len, err);
    if (st) return st;
    st = llmops_config_parse_buffer(data, len, path, opts, out, err);
    llmops_free(data);
    return st;
}

void llmops_config_free(llmops_config *cfg) {
    if (!cfg) return;
    llmops_arena_free(cfg->arena);
    llmops_free(cfg);
}

/* ---- scalar conversion ------------------------------------------------------------ */

/* 0: ok, 1: not an integer, 2: out of int64 range, 3: ambiguous leading zero. */
static int parse_int(const char *s, int64_t *out) {
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    } else if (s[0] == '0' && s[1] == 'o') {
        base = 8;
        s += 2;
    } else if (s[0] == '0' && s[1] != '\0') {
        return 3;
    }
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    bool big = false, prev_digit = false;
    int ndigits = 0;
    for (; *s; s++) {
        unsigned d;
        char c = *s;
        if (c == '_') {
            if (!prev_digit || !s[1]) return 1;
            prev_digit = false;
            continue;
        }
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return 1;
        if (d >= base) return 1;
        prev_digit = true;
        ndigits++;
        if (v > (limit - d) / base) big = true;
        else v = v * base + d;
    }
    if (!ndigits || !prev_digit) return 1;
    if (big) return 2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* 0: ok, 1: not a number, 2: too large for a double, 3: inf or nan. */
static int parse_float(const char *s, double *out) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (p[0] == '.' && (strcmp(p + 1, "inf") == 0 || strcmp(p + 1, "Inf") == 0 ||
                        strcmp(p + 1, "INF") == 0))
        return 3;
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) return 3;
    size_t int_digits = 0, frac_digits = 0;
    while (*p >= '0' && *p <= '9') p++, int_digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, frac_digits++;
    }
    if (int_digits + frac_digits == 0) return 1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        size_t exp_digits = 0;
        while (*p >= '0' && *p <= '9') p++, exp_digits++;
        if (!exp_digits) return 1;
    }
    if (*p) return 1;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE && fabs(v) > 1.0) return 2;
    if (!isfinite(v)) return 2;
    *out = v;
    return 0;
}

static const char *const k_yaml11_bools[] = {"yes", "Yes", "YES", "no", "No", "NO", "on", "On",
                                             "ON", "off", "Off", "OFF", "y", "Y", "n", "N", NULL};

/* Range as text: "[lo, hi]", "(at least lo)", "(at most hi)". */
static void int_range_text(int64_t lo, int64_t hi, char *buf, size_t size) {
    if (lo == INT64_MIN) snprintf(buf, size, "(at most %lld)", (long long)hi);
    else if (hi == INT64_MAX) snprintf(buf, size, "(at least %lld)", (long long)lo);
    else snprintf(buf, size, "[%lld, %lld]", (long long)lo, (long long)hi);
}

static void float_range_text(double lo, double hi, char *buf, size_t size) {
    if (lo <= -DBL_MAX) snprintf(buf, size, "(at most %g)", hi);
    else if (hi >= DBL_MAX) snprintf(buf, size, "(at least %g)", lo);
    else snprintf(buf, size, "[%g, %g]", lo, hi);
}

static bool has_int_range(const llmops_config_field *f) { return f->min != 0 || f->max != 0; }
static bool has_float_range(const llmops_config_field *f) { return f->fmin != 0 || f->fmax != 0; }

/*
 * Converts one scalar for a STRING/INT/FLOAT/BOOL/ENUM field and stores it at dst. `text` must
 * outlive the config (it is stored as is for strings). Returns false with a message in msg.
 */
static bool convert_scalar(const llmops_config_field *f, const char *text, bool plain, void *dst,
                           char *msg, size_t msz) {
    char range[96];
    switch (f->type) {
    case LLMOPS_CONFIG_TYPE_STRING: {
        size_t len = strlen(text);
        if (has_int_range(f) && ((int64_t)len < f->min || (uint64_t)len > (uint64_t)f->max)) {
            int_range_text(f->min, f->max, range, sizeof range);
            snprintf(msg, msz, "length %zu is out of range %s", len, range);
            return false;
        }
        *(const char **)dst = text;
        return true;
    }
    case LLMOPS_CONFIG_TYPE_INT: {
        if (!plain) {
            snprintf(msg, msz, "expected an integer, got a quoted string \"%.64s\"", text);
            return false;
        }
        int64_t v = 0;
        int r = parse_int(text, &v);
        if (r == 1) snprintf(msg, msz, "expected an integer, got '%.64s'", text);
        else if (r == 2) snprintf(msg, msz, "%.64s does not fit in a 64-bit integer", text);
        else if (r == 3)
            snprintf(msg, msz, "'%.64s': a leading zero is ambiguous (octal in YAML 1.1); "
                     "write 0o%s for octal or drop the zero", text, text + strspn(text, "+-0"));
        if (r) return false;
        if (has_int_range(f) && (v < f->min || v > f->max)) {
            int_range_text(f->min, f->max, range, sizeof range);
            snprintf(msg, msz, "%.64s is out of range %s", text, range);
            return false;
        }
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case LLMOPS_CONFIG_TYPE_FLOAT: {
        if (!plain) {
            snprintf(msg, msz, "expected a number, got a quoted string \"%.64s\"", text);
            return false;
        }
        double v = 0;
        int r = parse_float(text, &v);
        if (r == 1) snprintf(msg, msz, "expected a number, got '%.64s'", text);
        else if (r == 2) snprintf(msg, msz, "%.64s does not fit in a double", text);
        else if (r == 3) snprintf(msg, msz, "%.64s: infinite and NaN values are not allowed", text);
        if (r) return false;
        if (has_float_range(f) && (v < f->fmin || v > f->fmax)) {
            float_range_text(f->fmin, f->fmax, range, sizeof range);
            snprintf(msg, msz, "%.64s is out of range %s", text, range);
            return false;
        }
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case LLMOPS_CONFIG_TYPE_BOOL: {
        bool v;
        if (plain && (!strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "TRUE"))) v = true;
        else if (plain && (!strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "FALSE")))
            v = false;
        else {
            bool yaml11 = false;
            for (size_t i = 0; plain && k_yaml11_bools[i]; i++)
                if (!strcmp(text, k_yaml11_bools[i])) yaml11 = true;
            if (yaml11)
                snprintf(msg, msz, "expected true or false, got '%s' (YAML 1.1 booleans are not accepted)", text);
            else if (!plain)
                snprintf(msg, msz, "expected true or false, got a quoted string \"%.64s\"", text);
            else
                snprintf(msg, msz, "expected true or false, got '%.64s'", text);
            return false;
        }
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case LLMOPS_CONFIG_TYPE_ENUM: {
        for (int i = 0; f->enum_values[i]; i++)
            if (!strcmp(text, f->enum_values[i])) {
                memcpy(dst, &i, sizeof i);
                return true;
            }
        size_t off = (size_t)snprintf(msg, msz, "'%.64s' is not one of: ", text);
        for (int i = 0; f->enum_values[i] && off < msz; i++)
            off += (size_t)snprintf(msg + off, msz - off, "%s%s", i ? ", " : "", f->enum_values[i]);
        return false;
    }
    default:
        snprintf(msg, msz, "not a scalar field");
        return false;
    }
}

/* ---- schema check ------------------------------------------------------------------- */

static size_t member_size(const llmops_config_field *f) {
    switch (f->type) {
    case LLMOPS_CONFIG_TYPE_STRING: return sizeof(const char *);
    case LLMOPS_CONFIG_TYPE_INT: return sizeof(int64_t);
    case LLMOPS_CONFIG_TYPE_FLOAT: return sizeof(double);
    case LLMOPS_CONFIG_TYPE_BOOL: return sizeof(bool);
    case LLMOPS_CONFIG_TYPE_ENUM: return sizeof(int);
    case LLMOPS_CONFIG_TYPE_OBJECT: return f->sub ? f->sub->size : 0;
    case LLMOPS_CONFIG_TYPE_STRING_LIST:
    case LLMOPS_CONFIG_TYPE_OBJECT_LIST:
    case LLMOPS_CONFIG_TYPE_SCALAR_MAP: return sizeof(raw_list);
    }
    return 0;
}

static bool is_scalar_type(llmops_config_type t) {
    return t == LLMOPS_CONFIG_TYPE_STRING || t == LLMOPS_CONFIG_TYPE_INT || t == LLMOPS_CONFIG_TYPE_FLOAT ||
           t == LLMOPS_CONFIG_TYPE_BOOL || t == LLMOPS_CONFIG_TYPE_ENUM;
}

typedef struct schema_walk {
    const llmops_config_schema *visited[SCHEMA_MAX_VISITED];
    size_t nvisited;
    const llmops_config_schema *chain[SCHEMA_MAX_DEPTH]; /* schemas from the top to here  */
    size_t depth;
    size_t base;             /* chain[base..depth): embedded in one another (OBJECT) */
} schema_walk;

static llmops_status check_schema(const llmops_config_schema *s, schema_walk *w, pathbuf *p,
                                  llmops_error *err) {
    const char *where = p->len ? p->s : "(top level)";
    if (!s || (!s->fields && s->nfields) || !s->size)
        return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: missing fields or size", where);
    for (size_t i = 0; i < w->nvisited; i++)
        if (w->visited[i] == s) return LLMOPS_OK;
    if (w->nvisited < SCHEMA_MAX_VISITED) w->visited[w->nvisited++] = s;
    for (size_t i = 0; i < s->nfields; i++) {
        const llmops_config_field *f = &s->fields[i];
        if (!f->key || !f->key[0] || strpbrk(f->key, ".[]"))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                    "config schema %s: field %zu has an empty key or one with '.', '[', ']'",
                                    where, i);
        size_t old = path_push_key(p, f->key);
        const char *fp = p->s;
        llmops_status st = LLMOPS_OK;
        size_t msize = member_size(f);
        for (size_t j = 0; j < i && !st; j++)
            if (!strcmp(s->fields[j].key, f->key))
                st = llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: duplicate key", fp);
        if (st) return st;
        if ((unsigned)f->type > LLMOPS_CONFIG_TYPE_SCALAR_MAP)
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: unknown type %d", fp,
                                    (int)f->type);
        if ((f->type == LLMOPS_CONFIG_TYPE_OBJECT || f->type == LLMOPS_CONFIG_TYPE_OBJECT_LIST) &&
            (!f->sub || !f->sub->size))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: no sub-schema", fp);
        if (f->type == LLMOPS_CONFIG_TYPE_ENUM && (!f->enum_values || !f->enum_values[0]))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: enum without values", fp);
        if (msize > s->size || f->offset > s->size - msize)
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                    "config schema %s: member at offset %zu does not fit in %zu bytes", fp,
                                    f->offset, s->size);
        if (has_int_range(f) && f->min > f->max)
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: min > max", fp);
        if (has_float_range(f) && !(f->fmin <= f->fmax))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: fmin > fmax", fp);
        if (f->def && (f->flags & LLMOPS_CONFIG_REQUIRED))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                    "config schema %s: a required key cannot have a default", fp);
        if (f->def && !is_scalar_type(f->type))
            return llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                    "config schema %s: defaults are only for scalar fields", fp);
        if (f->def) {
            char msg[256];
            union {
                const char *s;
                int64_t i;
                double d;
                bool b;
                int e;
            } scratch;
            if (!convert_scalar(f, f->def, true, &scratch, msg, sizeof msg))
                return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: default: %s", fp, msg);
        }
        if (f->type == LLMOPS_CONFIG_TYPE_OBJECT || f->type == LLMOPS_CONFIG_TYPE_OBJECT_LIST) {
            bool embedded = f->type == LLMOPS_CONFIG_TYPE_OBJECT;
            /* a struct cannot contain itself, but a list may hold its own type (a tree) */
            for (size_t j = w->base; embedded && j < w->depth; j++)
                if (w->chain[j] == f->sub)
                    return llmops_error_set(err, LLMOPS_ERR_INTERNAL,
                                            "config schema %s: an object field contains itself", fp);
            if (w->depth >= SCHEMA_MAX_DEPTH)
                return llmops_error_set(err, LLMOPS_ERR_INTERNAL, "config schema %s: nested too deeply", fp);
            size_t saved_base = w->base;
            if (!embedded) w->base = w->depth;
            w->chain[w->depth++] = f->sub;
            st = check_schema(f->sub, w, p, err);
            w->depth--;
            w->base = saved_base;
        }
        if (st) return st;
        path_pop(p, old);
    }
    return LLMOPS_OK;
}

llmops_status llmops_config_schema_check(const llmops_config_schema *schema, llmops_error *err) {
    schema_walk w;
    w.nvisited = 0;
    w.chain[0] = schema;
    w.depth = 1;
    w.base = 0;
    pathbuf p;
    path_reset(&p);
    return check_schema(schema, &w, &p, err);
}

/* ---- binding -------------------------------------------------------------------------- */

typedef struct binder {
    llmops_config *cfg;
    llmops_error *err;
    llmops_status st;        /* first failure */
    unsigned nerr, max_errors;
    bool stop;               /* out of memory or max_errors reached */
    unsigned depth;
    pathbuf path;
} binder;

static void bind_fail(binder *b, unsigned line, unsigned col, const char *fmt, ...) LLMOPS_PRINTF(4, 5);
/* Records "origin:L:C: path: message"; further errors go on new lines up to max_errors. */
static void bind_fail(binder *b, unsigned line, unsigned col, const char *fmt, ...) {
    char msg[512], full[2 * LLMOPS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->path.len)
        snprintf(full, sizeof full, "%s:%u:%u: %s: %s", b->cfg->origin, line, col, b->path.s, msg);
    else
        snprintf(full, sizeof full, "%s:%u:%u: %s", b->cfg->origin, line, col, msg);
    if (b->nerr == 0) {
        b->st = LLMOPS_ERR_CONFIG;
        llmops_error_set(b->err, LLMOPS_ERR_CONFIG, "%s", full);
    } else if (b->err) {
        size_t used = strlen(b->err->msg);
        snprintf(b->err->msg + used, sizeof b->err->msg - used, "\n%s", full);
    }
    if (++b->nerr >= b->max_errors) b->stop = true;
}

static void bind_nomem(binder *b) {
    nomem(b->err, b->cfg->origin);
    b->st = LLMOPS_ERR_NOMEM;
    b->stop = true;
}

static const char *kind_name(const llmops_config_node *n) {
    if (n->kind == LLMOPS_CONFIG_NODE_MAP) return "a mapping";
    if (n->kind == LLMOPS_CONFIG_NODE_SEQ) return "a list";
    if (n->plain && text_is_null(n->text)) return "null";
    return "a scalar";
}

static void *arena_array(binder *b, size_t n, size_t size) {
    uint64_t total;
    if (!llmops_mul_ok(n, size, &total) || total > SIZE_MAX / 2) return NULL;
    void *p = llmops_arena_alloc(b->cfg->arena, total ? (size_t)total : 1, _Alignof(max_align_t));
    if (p) memset(p, 0, total ? (size_t)total : 1);
    return p;
}

static bool check_count(binder *b, const llmops_config_field *f, const llmops_config_node *n) {
    if (!has_int_range(f)) return true;
    if ((uint64_t)n->count > (uint64_t)INT64_MAX || (int64_t)n->count < f->min || (int64_t)n->count > f->max) {
        char range[96];
        int_range_text(f->min, f->max, range, sizeof range);
        bind_fail(b, n->line, n->col, "%zu items is out of range %s", n->count, range);
        return false;
    }
    return true;
}

static void bind_object(binder *b, const llmops_config_schema *s, const llmops_config_node *map,
                        unsigned wline, unsigned wcol, char *base);

static const char *suggest_key(const llmops_config_schema *s, const char *key) {
    size_t kl = strlen(key);
    if (kl > 64) return NULL;
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < s->nfields; i++) {
        const char *c = s->fields[i].key;
        size_t cl = strlen(c);
        if (cl > 64) continue;
        size_t row[65];
        for (size_t j = 0; j <= cl; j++) row[j] = j;
        for (size_t a = 1; a <= kl; a++) {
            size_t diag = row[0];
            row[0] = a;
            for (size_t j = 1; j <= cl; j++) {
                size_t up = row[j];
                size_t cost = key[a - 1] == c[j - 1] ? 0 : 1;
                size_t v = diag + cost;
                if (row[j] + 1 < v) v = row[j] + 1;
                if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
                row[j] = v;
                diag = up;
            }
        }
        if (row[cl] < best_d && row[cl] < kl) {
            best_d = row[cl];
            best = c;
        }
    }
    return best;
}

/* Binds a present, non-null value `n` of field f at base + f->offset. */
static void bind_value(binder *b, const llmops_config_field *f, const llmops_config_node *n, char *base) {
    char *dst = base + f->offset;
    char msg[LLMOPS_ERROR_MSG_MAX / 2];
    switch (f->type) {
    case LLMOPS_CONFIG_TYPE_STRING:
    case LLMOPS_CONFIG_TYPE_INT:
    case LLMOPS_CONFIG_TYPE_FLOAT:
    case LLMOPS_CONFIG_TYPE_BOOL:
    case LLMOPS_CONFIG_TYPE_ENUM: {
        static const char *const what[] = {"a string", "an integer", "a number", "true or false",
                                           "a string"};
        if (n->kind != LLMOPS_CONFIG_NODE_SCALAR) {
            bind_fail(b, n->line, n->col, "expected %s, got %s", what[f->type], kind_name(n));
            return;
        }
        if (!convert_scalar(f, n->text, n->plain, dst, msg, sizeof msg)) bind_fail(b, n->line, n->col, "%s", msg);
        return;
    }
    case LLMOPS_CONFIG_TYPE_OBJECT:
        bind_object(b, f->sub, n, n->line, n->col, dst);
        return;
    case LLMOPS_CONFIG_TYPE_STRING_LIST:
    case LLMOPS_CONFIG_TYPE_OBJECT_LIST: {
        if (n->kind != LLMOPS_CONFIG_NODE_SEQ) {
            bind_fail(b, n->line, n->col, "expected a list, got %s", kind_name(n));
            return;
        }
        if (!check_count(b, f, n)) return;
        bool strings = f->type == LLMOPS_CONFIG_TYPE_STRING_LIST;
        size_t esize = strings ? sizeof(const char *) : f->sub->size;
        char *items = arena_array(b, n->count, esize);
        if (!items) {
            bind_nomem(b);
            return;
        }
        for (size_t i = 0; i < n->count && !b->stop; i++) {
            const llmops_config_node *it = n->kids[i];
            size_t old = path_push_index(&b->path, i);
            if (strings) {
                if (it->kind != LLMOPS_CONFIG_NODE_SCALAR || llmops_config_node_is_null(it))
                    bind_fail(b, it->line, it->col, "expected a string, got %s", kind_name(it));
                else
                    ((const char **)(void *)items)[i] = it->text;
            } else {
                bind_object(b, f->sub, it, it->line, it->col, items + i * esize);
            }
            path_pop(&b->path, old);
        }
        raw_list l = {items, n->count};
        memcpy(dst, &l, sizeof l);
        return;
    }
    case LLMOPS_CONFIG_TYPE_SCALAR_MAP: {
        if (n->kind != LLMOPS_CONFIG_NODE_MAP) {
            bind_fail(b, n->line, n->col, "expected a mapping, got %s", kind_name(n));
            return;
        }
        if (!check_count(b, f, n)) return;
        llmops_config_pair *pairs = arena_array(b, n->count, sizeof *pairs);
        if (!pairs) {
            bind_nomem(b);
            return;
        }
        for (size_t i = 0; i < n->count && !b->stop; i++) {
            const llmops_config_node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
            if (v->kind != LLMOPS_CONFIG_NODE_SCALAR) {
                size_t old = path_push_key(&b->path, k->text);
                bind_fail(b, v->line, v->col, "expected a scalar value, got %s", kind_name(v));
                path_pop(&b->path, old);
                continue;
            }
            pairs[i] = (llmops_config_pair){k->text, v->text};
        }
        raw_list l = {pairs, n->count};
        memcpy(dst, &l, sizeof l);
        return;
    }
    }
}

/* Applies f's default (or binds an absent object) at base + f->offset. */
static void bind_default(binder *b, const llmops_config_field *f, unsigned wline, unsigned wcol, char *base) {
    if (f->type == LLMOPS_CONFIG_TYPE_OBJECT) {
        bind_object(b, f->sub, NULL, wline, wcol, base + f->offset);
        return;
    }
    if (!f->def) return; /* zero: the struct was cleared */
    char *text = llmops_arena_strndup(b->cfg->arena, f->def, strlen(f->def));
    if (!text) {
        bind_nomem(b);
        return;
    }
    char msg[256];
    if (!convert_scalar(f, text, true, base + f->offset, msg, sizeof msg)) {
        /* llmops_config_schema_check accepted it: not reachable */
        b->st = llmops_error_set(b->err, LLMOPS_ERR_INTERNAL, "config schema %s: default: %s", b->path.s, msg);
        b->stop = true;
    }
}

/*
 * Binds mapping `map` (NULL: absent, bind defaults) into the struct at `base`. A missing
 * required key is reported at (wline, wcol): the mapping, or where it should have been.
 */
static void bind_object(binder *b, const llmops_config_schema *s, const llmops_config_node *map,
                        unsigned wline, unsigned wcol, char *base) {
    if (map && llmops_config_node_is_null(map)) map = NULL;
    if (map && map->kind != LLMOPS_CONFIG_NODE_MAP) {
        bind_fail(b, map->line, map->col, "expected a mapping, got %s", kind_name(map));
        return;
    }
    if (++b->depth > LLMOPS_CONFIG_MAX_DEPTH_LIMIT + SCHEMA_MAX_DEPTH) {
        b->st = llmops_error_set(b->err, LLMOPS_ERR_INTERNAL, "config schema: recursion too deep at %s",
                                 b->path.s);
        b->stop = true;
        b->depth--;
        return;
    }
    if (map) {
        wline = map->line;
        wcol = map->col;
    }
    /* keys in document order, so the first error reported is the first in the file */
    for (size_t i = 0; map && i < map->count && !b->stop; i++) {
        const llmops_config_node *k = map->kids[2 * i], *v = map->kids[2 * i + 1];
        const llmops_config_field *f = NULL;
        for (size_t j = 0; j < s->nfields && !f; j++)
            if (!strcmp(s->fields[j].key, k->text)) f = &s->fields[j];
        size_t old = path_push_key(&b->path, k->text);
        if (!f) {
            const char *hint = suggest_key(s, k->text);
            if (hint) bind_fail(b, k->line, k->col, "unknown key (did you mean '%s'?)", hint);
            else bind_fail(b, k->line, k->col, "unknown key");
        } else if (llmops_config_node_is_null(v)) {
            if (f->flags & LLMOPS_CONFIG_REQUIRED) bind_fail(b, v->line, v->col, "required key has no value");
            else bind_default(b, f, v->line, v->col, base);
        } else {
            bind_value(b, f, v, base);
        }
        path_pop(&b->path, old);
    }
    for (size_t j = 0; j < s->nfields && !b->stop; j++) {
        const llmops_config_field *f = &s->fields[j];
        if (map && map_find(map, f->key, strlen(f->key))) continue;
        size_t old = path_push_key(&b->path, f->key);
        if (f->flags & LLMOPS_CONFIG_REQUIRED) bind_fail(b, wline, wcol, "missing required key");
        else bind_default(b, f, wline, wcol, base);
        path_pop(&b->path, old);
    }
    b->depth--;
}

llmops_status llmops_config_bind(llmops_config *cfg, const char *path, const llmops_config_schema *schema,
                                 void *out, llmops_error *err) {
    if (!cfg || !schema || !out)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    llmops_status st = llmops_config_schema_check(schema, err);
    if (st) return st;
    memset(out, 0, schema->size);
    binder b;
    memset(&b, 0, sizeof b);
    b.cfg = cfg;
    b.err = err;
    b.max_errors = cfg->max_errors ? cfg->max_errors : 1;
    path_reset(&b.path);
    const llmops_config_node *n = cfg->root;
    if (path && *path) {
        n = llmops_config_get(cfg, path);
        path_appendf(&b.path, "%s", path);
    }
    unsigned wline = cfg->root ? cfg->root->line : 1, wcol = cfg->root ? cfg->root->col : 1;
    if (n && n->kind != LLMOPS_CONFIG_NODE_MAP && !llmops_config_node_is_null(n) && !b.path.len)
        bind_fail(&b, n->line, n->col, "the top level must be a mapping, got %s", kind_name(n));
    else
        bind_object(&b, schema, n, wline, wcol, out);
    if (b.st) {
        memset(out, 0, schema->size);
        return b.st;
    }
    return LLMOPS_OK;
}

llmops_status llmops_config_load_buffer(const void *data, size_t len, const char *origin,
                                        const llmops_config_schema *schema, void *out,
                                        llmops_config **cfg, llmops_error *err) {
    if (!cfg || !schema || !out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    *cfg = NULL;
    memset(out, 0, schema->size);
    llmops_config *c = NULL;
    llmops_status st = llmops_config_parse_buffer(data, len, origin, NULL, &c, err);
    if (st) return st;
    if ((st = llmops_config_bind(c, NULL, schema, out, err))) {
        llmops_config_free(c);
        return st;
    }
    *cfg = c;
    return LLMOPS_OK;
}

llmops_status llmops_config_load_file(const char *path, const llmops_config_schema *schema, void *out,
                                      llmops_config **cfg, llmops_error *err) {
    if (!path || !cfg || !schema || !out)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    *cfg = NULL;
    memset(out, 0, schema->size);
    llmops_config *c = NULL;
    llmops_status st = llmops_config_parse_file(path, NULL, &c, err);
    if (st) return st;
    if ((st = llmops_config_bind(c, NULL, schema, out, err))) {
        llmops_config_free(c);
        return st;
    }
    *cfg = c;
    return LLMOPS_OK;
}

/* ---- documentation ---------------------------------------------------------------------- */

static const char *const k_type_names[] = {"string", "int", "float", "bool", "enum", "object",
                                           "list of strings", "list of objects", "map of string to scalar"};

/* Appends s with '|' escaped and newlines flattened, for a Markdown table cell. */
static llmops_status md_cell(llmops_buf *out, const char *s, llmops_error *err) {
    for (; *s; s++) {
        llmops_status st;
        if (*s == '|') st = llmops_buf_puts(out, "\\|", err);
        else if (*s == '\n' || *s == '\r') st = llmops_buf_puts(out, " ", err);
        else st = llmops_buf_append(out, s, 1, err);
        if (st) return st;
    }
    return LLMOPS_OK;
}

typedef struct docs_walk {
    const llmops_config_schema *chain[SCHEMA_MAX_DEPTH];
    size_t depth;
} docs_walk;

static llmops_status docs_rows(const llmops_config_schema *s, pathbuf *p, docs_walk *w, llmops_buf *out,
                               llmops_error *err) {
    for (size_t i = 0; i < s->nfields; i++) {
        const llmops_config_field *f = &s->fields[i];
        size_t old = path_push_key(p, f->key);
        char def[256], allowed[512];
        def[0] = allowed[0] = '\0';
        if (f->flags & LLMOPS_CONFIG_REQUIRED) snprintf(def, sizeof def, "*required*");
        else if (f->def) snprintf(def, sizeof def, "`%s`", f->def);
        else {
            switch (f->type) {
            case LLMOPS_CONFIG_TYPE_INT:
            case LLMOPS_CONFIG_TYPE_FLOAT: snprintf(def, sizeof def, "`0`"); break;
            case LLMOPS_CONFIG_TYPE_BOOL: snprintf(def, sizeof def, "`false`"); break;
            case LLMOPS_CONFIG_TYPE_ENUM: snprintf(def, sizeof def, "`%s`", f->enum_values[0]); break;
            case LLMOPS_CONFIG_TYPE_STRING_LIST:
            case LLMOPS_CONFIG_TYPE_OBJECT_LIST: snprintf(def, sizeof def, "`[]`"); break;
            case LLMOPS_CONFIG_TYPE_SCALAR_MAP: snprintf(def, sizeof def, "`{}`"); break;
            default: snprintf(def, sizeof def, "—"); break;
            }
        }
        char range[96];
        switch (f->type) {
        case LLMOPS_CONFIG_TYPE_INT:
            if (has_int_range(f)) int_range_text(f->min, f->max, allowed, sizeof allowed);
            break;
        case LLMOPS_CONFIG_TYPE_FLOAT:
            if (has_float_range(f)) float_range_text(f->fmin, f->fmax, allowed, sizeof allowed);
            break;
        case LLMOPS_CONFIG_TYPE_STRING:
            if (has_int_range(f)) {
                int_range_text(f->min, f->max, range, sizeof range);
                snprintf(allowed, sizeof allowed, "length %s", range);
            }
            break;
        case LLMOPS_CONFIG_TYPE_ENUM: {
            size_t off = 0;
            for (int k = 0; f->enum_values[k] && off < sizeof allowed; k++)
                off += (size_t)snprintf(allowed + off, sizeof allowed - off, "%s`%s`", k ? ", " : "",
                                        f->enum_values[k]);
            break;
        }
        case LLMOPS_CONFIG_TYPE_STRING_LIST:
        case LLMOPS_CONFIG_TYPE_OBJECT_LIST:
        case LLMOPS_CONFIG_TYPE_SCALAR_MAP:
            if (has_int_range(f)) {
                int_range_text(f->min, f->max, range, sizeof range);
                snprintf(allowed, sizeof allowed, "%s items", range);
            }
            break;
        default: break;
        }
        llmops_status st = llmops_buf_printf(out, err, "| `%s` | %s | ", p->s, k_type_names[f->type]);
        if (!st) st = md_cell(out, def, err);
        if (!st) st = llmops_buf_puts(out, " | ", err);
        if (!st) st = md_cell(out, allowed, err);
        if (!st) st = llmops_buf_puts(out, " | ", err);
        if (!st) st = md_cell(out, f->doc ? f->doc : "", err);
        if (!st) st = llmops_buf_puts(out, " |\n", err);
        if (st) return st;
        if (f->type == LLMOPS_CONFIG_TYPE_OBJECT || f->type == LLMOPS_CONFIG_TYPE_OBJECT_LIST) {
            size_t seen = 0;
            for (size_t k = 0; k < w->depth; k++) seen += w->chain[k] == f->sub;
            if (f->type == LLMOPS_CONFIG_TYPE_OBJECT_LIST) path_appendf(p, "[]");
            if (seen < 2 && w->depth < SCHEMA_MAX_DEPTH) {
                /* a schema that holds itself (a tree) is listed once below itself */
                w->chain[w->depth++] = f->sub;
                st = docs_rows(f->sub, p, w, out, err);
                w->depth--;
                if (st) return st;
            }
        }
        path_pop(p, old);
    }
    return LLMOPS_OK;
}

llmops_status llmops_config_write_docs(const llmops_config_schema *schema, const char *prefix, llmops_buf *out,
                                       llmops_error *err) {
    if (!schema || !out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "config: NULL argument");
    llmops_status st = llmops_config_schema_check(schema, err);
    if (st) return st;
    st = llmops_buf_puts(out, "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n", err);
    if (st) return st;
    pathbuf p;
    path_reset(&p);
    if (prefix) path_appendf(&p, "%s", prefix);
    docs_walk w;
    w.depth = 1;
    w.chain[0] = schema;
    return docs_rows(schema, &p, &w, out, err);
}
