#include "tokenizer/uregex.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "llmops/alloc.h"

/* ---- Unicode properties ---------------------------------------------------------- */

uint16_t llmops_ucp_flags(uint32_t cp) {
    uint16_t f = 0;
    if (cp > 0x10ffff) return UCP_C;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: f = UCP_L | UCP_LU; break;
    case UTF8PROC_CATEGORY_LL: f = UCP_L | UCP_LL; break;
    case UTF8PROC_CATEGORY_LT: f = UCP_L | UCP_LT; break;
    case UTF8PROC_CATEGORY_LM: f = UCP_L | UCP_LM; break;
    case UTF8PROC_CATEGORY_LO: f = UCP_L | UCP_LO; break;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: f = UCP_M; break;
    case UTF8PROC_CATEGORY_ND: f = UCP_N | UCP_ND; break;
    case UTF8PROC_CATEGORY_NL: f = UCP_N | UCP_NL; break;
    case UTF8PROC_CATEGORY_NO: f = UCP_N | UCP_NO; break;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: f = UCP_P; break;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO: f = UCP_S; break;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: f = UCP_Z | UCP_WS; break;
    default: f = UCP_C; break;
    }
    /* White_Space also holds TAB..CR and NEL, which are controls */
    if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x85) f |= UCP_WS;
    return f;
}

llmops_status llmops_utext_from_utf8(llmops_utext *t, const char *s, size_t len, llmops_error *err) {
    memset(t, 0, sizeof *t);
    t->cp = llmops_malloc((len + 1) * sizeof *t->cp);
    t->flags = llmops_malloc((len + 1) * sizeof *t->flags);
    t->off = llmops_malloc((len + 1) * sizeof *t->off);
    if (!t->cp || !t->flags || !t->off) {
        llmops_utext_free(t);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory decoding %zu bytes of text", len);
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        t->off[n] = i;
        if (k <= 0) {
            c = 0xfffd;
            k = 1;
        }
        t->cp[n] = (uint32_t)c;
        t->flags[n] = llmops_ucp_flags((uint32_t)c);
        n++;
        i += (size_t)k;
    }
    t->off[n] = len;
    t->n = n;
    return LLMOPS_OK;
}

void llmops_utext_free(llmops_utext *t) {
    llmops_free(t->cp);
    llmops_free(t->flags);
    llmops_free(t->off);
    memset(t, 0, sizeof *t);
}

/* ---- compiled form ------------------------------------------------------------------ */

typedef enum { IT_RANGE, IT_PROP, IT_NPROP } item_kind;

typedef struct {
    item_kind kind;
    uint32_t lo, hi;
    uint16_t mask;
} cls_item;

typedef struct {
    cls_item *items;
    int n, cap;
    int negate;
    int icase;
} cls;

typedef enum { N_CLASS, N_SEQ, N_ALT, N_REP, N_LOOK, N_BOL, N_EOL } node_kind;
enum { REP_GREEDY, REP_LAZY, REP_POSSESSIVE };

typedef struct {
    node_kind kind;
    int cls;          /* N_CLASS                      */
    int *kids;        /* N_SEQ, N_ALT                 */
    int nkids, capkids;
    int child;        /* N_REP, N_LOOK                */
    int min, max;     /* N_REP; max < 0 = unbounded   */
    int mode;         /* N_REP                        */
    int neg;          /* N_LOOK                       */
} node;

struct llmops_regex {
    node *nodes;
    int n_nodes, cap_nodes;
    cls *classes;
    int n_classes, cap_classes;
    int root;
};

typedef struct {
    llmops_regex *re;
    const char *p;
    size_t len, pos;
    int icase;
    int depth;
    llmops_error *err;
    llmops_status st;
} parser;

static int perr(parser *ps, const char *msg) {
    if (!ps->st)
        ps->st = llmops_error_set(ps->err, LLMOPS_ERR_FORMAT, "regex: byte %zu: %s", ps->pos, msg);
    return -1;
}

static int pnomem(parser *ps) {
    if (!ps->st) ps->st = llmops_error_set(ps->err, LLMOPS_ERR_NOMEM, "regex: out of memory");
    return -1;
}

static int new_node(parser *ps, node_kind k) {
    llmops_regex *re = ps->re;
    if (re->n_nodes == re->cap_nodes) {
        int nc = re->cap_nodes ? re->cap_nodes * 2 : 32;
        node *n = llmops_reallocarray(re->nodes, (size_t)nc, sizeof *n);
        if (!n) return pnomem(ps);
        re->nodes = n;
        re->cap_nodes = nc;
    }
    memset(&re->nodes[re->n_nodes], 0, sizeof(node));
    re->nodes[re->n_nodes].kind = k;
    return re->n_nodes++;
}

static int add_kid(parser *ps, int parent, int kid) {
    node *n = &ps->re->nodes[parent];
    if (n->nkids == n->capkids) {
        int nc = n->capkids ? n->capkids * 2 : 4;
        int *k = llmops_reallocarray(n->kids, (size_t)nc, sizeof *k);
        if (!k) return pnomem(ps);
        n->kids = k;
        n->capkids = nc;
    }
    n->kids[n->nkids++] = kid;
    return 0;
}

static int new_class(parser *ps) {
    llmops_regex *re = ps->re;
    if (re->n_classes == re->cap_classes) {
        int nc = re->cap_classes ? re->cap_classes * 2 : 16;
        cls *c = llmops_reallocarray(re->classes, (size_t)nc, sizeof *c);
        if (!c) return pnomem(ps);
        re->classes = c;
        re->cap_classes = nc;
    }
    memset(&re->classes[re->n_classes], 0, sizeof(cls));
    re->classes[re->n_classes].icase = ps->icase;
    return re->n_classes++;
}

static int cls_add(parser *ps, int ci, cls_item it) {
    cls *c = &ps->re->classes[ci];
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 4;
        cls_item *n = llmops_reallocarray(c->items, (size_t)nc, sizeof *n);
        if (!n) return pnomem(ps);
        c->items = n;
        c->cap = nc;
    }
    c->items[c->n++] = it;
    return 0;
}

static int class_node(parser *ps, int ci) {
    int n = new_node(ps, N_CLASS);
    if (n >= 0) ps->re->nodes[n].cls = ci;
    return n;
}

/* Decodes one UTF-8 code point of the pattern. */
static int next_cp(parser *ps, uint32_t *cp) {
    if (ps->pos >= ps->len) return perr(ps, "unexpected end of pattern");
    utf8proc_int32_t c;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)ps->p + ps->pos, (utf8proc_ssize_t)(ps->len - ps->pos), &c);
    if (k <= 0) return perr(ps, "invalid UTF-8 in pattern");
    ps->pos += (size_t)k;
    *cp = (uint32_t)c;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex(parser *ps, int min_digits, int max_digits, uint32_t *out) {
    uint32_t v = 0;
    int d = 0;
    while (d < max_digits && ps->pos < ps->len && hexval(ps->p[ps->pos]) >= 0) {
        v = v * 16 + (uint32_t)hexval(ps->p[ps->pos++]);
        d++;
    }
    if (d < min_digits || v > 0x10ffff) return perr(ps, "bad hexadecimal escape");
    *out = v;
    return 0;
}

/* \p{NAME} → the property mask. */
static int prop_mask(parser *ps, uint16_t *mask) {
    if (ps->pos >= ps->len) return perr(ps, "\\p needs a property");
    char name[32];
    size_t n = 0;
    if (ps->p[ps->pos] == '{') {
        ps->pos++;
        while (ps->pos < ps->len && ps->p[ps->pos] != '}' && n < sizeof name - 1) name[n++] = ps->p[ps->pos++];
        if (ps->pos >= ps->len || ps->p[ps->pos] != '}') return perr(ps, "unterminated \\p{...}");
        ps->pos++;
    } else {
        name[n++] = ps->p[ps->pos++];
    }
    name[n] = '\0';
    static const struct {
        const char *name;
        uint16_t mask;
    } props[] = {{"L", UCP_L},     {"Letter", UCP_L},   {"Lu", UCP_LU},      {"Ll", UCP_LL},        {"Lt", UCP_LT},
                 {"Lm", UCP_LM},   {"Lo", UCP_LO},      {"N", UCP_N},        {"Number", UCP_N},     {"Nd", UCP_ND},
                 {"Nl", UCP_NL},   {"No", UCP_NO},      {"M", UCP_M},        {"Mark", UCP_M},       {"Mn", UCP_M},
                 {"Mc", UCP_M},    {"Me", UCP_M},       {"P", UCP_P},        {"Punctuation", UCP_P}, {"S", UCP_S},
                 {"Symbol", UCP_S}, {"Z", UCP_Z},       {"Separator", UCP_Z}, {"C", UCP_C},         {"Other", UCP_C}};
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        if (!strcmp(props[i].name, name)) {
            if (!strcmp(name, "Mn") || !strcmp(name, "Mc") || !strcmp(name, "Me"))
                return perr(ps, "\\p{Mn}/\\p{Mc}/\\p{Me} are not distinguished; use \\p{M}");
            *mask = props[i].mask;
            return 0;
        }
    return perr(ps, "unknown Unicode property");
}

/*
 * An escape after '\': adds to class ci (inside [...]) or returns a new class
 * in *out_ci. Sets *is_cp with the code point for a literal escape.
 */
static int parse_escape(parser *ps, int ci, int in_class, uint32_t *lit, int *is_lit) {
    *is_lit = 0;
    if (ps->pos >= ps->len) return perr(ps, "pattern ends with a backslash");
    char c = ps->p[ps->pos++];
    uint16_t mask = 0;
    int neg = 0;
    switch (c) {
    case 's': mask = UCP_WS; break;
    case 'S': mask = UCP_WS; neg = 1; break;
    case 'd': mask = UCP_ND; break;
    case 'D': mask = UCP_ND; neg = 1; break;
    case 'w': mask = UCP_L | UCP_M | UCP_N; break;
    case 'W': mask = UCP_L | UCP_M | UCP_N; neg = 1; break;
    case 'p':
    case 'P':
        if (prop_mask(ps, &mask)) return -1;
        neg = c == 'P';
        break;
    case 'n': *lit = '\n'; *is_lit = 1; return 0;
    case 'r': *lit = '\r'; *is_lit = 1; return 0;
    case 't': *lit = '\t'; *is_lit = 1; return 0;
    case 'f': *lit = '\f'; *is_lit = 1; return 0;
    case 'v': *lit = '\v'; *is_lit = 1; return 0;
    case '0': *lit = 0; *is_lit = 1; return 0;
    case 'x':
        if (ps->pos < ps->len && ps->p[ps->pos] == '{') {
            ps->pos++;
            if (read_hex(ps, 1, 6, lit)) return -1;
            if (ps->pos >= ps->len || ps->p[ps->pos] != '}') return perr(ps, "unterminated \\x{...}");
            ps->pos++;
        } else if (read_hex(ps, 2, 2, lit)) {
            return -1;
        }
        *is_lit = 1;
        return 0;
    case 'u':
        if (read_hex(ps, 4, 4, lit)) return -1;
        *is_lit = 1;
        return 0;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return perr(ps, "unsupported escape");
        ps->pos--;
        if (next_cp(ps, lit)) return -1;
        *is_lit = 1;
        return 0;
    }
    (void)in_class;
    /* \w includes the connector punctuation '_' */
    if (c == 'w' || c == 'W') {
        /* modelled as PROP mask plus '_' via a separate range when not negated */
        if (!neg) {
            if (cls_add(ps, ci, (cls_item){IT_PROP, 0, 0, mask})) return -1;
            return cls_add(ps, ci, (cls_item){IT_RANGE, '_', '_', 0});
        }
    }
    return cls_add(ps, ci, (cls_item){neg ? IT_NPROP : IT_PROP, 0, 0, mask});
}

static int parse_class(parser *ps) {
    int ci = new_class(ps);
    if (ci < 0) return -1;
    if (ps->pos < ps->len && ps->p[ps->pos] == '^') {
        ps->re->classes[ci].negate = 1;
        ps->pos++;
    }
    int first = 1;
    for (;;) {
        if (ps->pos >= ps->len) return perr(ps, "unterminated character class");
        char c = ps->p[ps->pos];
        if (c == ']' && !first) {
            ps->pos++;
            break;
        }
        first = 0;
        if (c == '[') return perr(ps, "nested character classes are not supported");
        uint32_t lo;
        int is_lit = 1;
        if (c == '\\') {
            ps->pos++;
            if (parse_escape(ps, ci, 1, &lo, &is_lit)) return -1;
            if (!is_lit) continue;
        } else if (next_cp(ps, &lo)) {
            return -1;
        }
        uint32_t hi = lo;
        if (ps->pos + 1 < ps->len && ps->p[ps->pos] == '-' && ps->p[ps->pos + 1] != ']') {
            ps->pos++;
            if (ps->p[ps->pos] == '\\') {
                ps->pos++;
                if (parse_escape(ps, ci, 1, &hi, &is_lit)) return -1;
                if (!is_lit) return perr(ps, "a range cannot end in a class escape");
            } else if (next_cp(ps, &hi)) {
                return -1;
            }
            if (hi < lo) return perr(ps, "range out of order");
        }
        if (cls_add(ps, ci, (cls_item){IT_RANGE, lo, hi, 0})) return -1;
    }
    return class_node(ps, ci);
}

static int parse_alt(parser *ps);

static int parse_atom(parser *ps) {
    char c = ps->p[ps->pos];
    if (c == '(') {
        ps->pos++;
        if (++ps->depth > 64) return perr(ps, "groups nested too deeply");
        int saved_icase = ps->icase;
        int look = 0, neg = 0;
        if (ps->pos < ps->len && ps->p[ps->pos] == '?') {
            ps->pos++;
            if (ps->pos >= ps->len) return perr(ps, "unterminated group");
            char k = ps->p[ps->pos];
            if (k == ':') {
                ps->pos++;
            } else if (k == '=' || k == '!') {
                ps->pos++;
                look = 1;
                neg = k == '!';
            } else if (k == 'i' && ps->pos + 1 < ps->len && ps->p[ps->pos + 1] == ':') {
                ps->pos += 2;
                ps->icase = 1;
            } else {
                return perr(ps, "unsupported group syntax");
            }
        }
        int inner = parse_alt(ps);
        ps->icase = saved_icase;
        ps->depth--;
        if (inner < 0) return -1;
        if (ps->pos >= ps->len || ps->p[ps->pos] != ')') return perr(ps, "missing ')'");
        ps->pos++;
        if (!look) return inner;
        int n = new_node(ps, N_LOOK);
        if (n < 0) return -1;
        ps->re->nodes[n].child = inner;
        ps->re->nodes[n].neg = neg;
        return n;
    }
    if (c == '[') {
        ps->pos++;
        return parse_class(ps);
    }
    if (c == '^' || c == '$') {
        ps->pos++;
        return new_node(ps, c == '^' ? N_BOL : N_EOL);
    }
    int ci = new_class(ps);
    if (ci < 0) return -1;
    if (c == '.') {
        ps->pos++;
        ps->re->classes[ci].negate = 1;
        if (cls_add(ps, ci, (cls_item){IT_RANGE, '\n', '\n', 0})) return -1;
        return class_node(ps, ci);
    }
    uint32_t cp;
    int is_lit = 1;
    if (c == '\\') {
        ps->pos++;
        if (parse_escape(ps, ci, 0, &cp, &is_lit)) return -1;
        if (!is_lit) return class_node(ps, ci);
    } else {
        if (c == ')' || c == '|') return perr(ps, "internal: empty atom");
        if (c == '*' || c == '+' || c == '?' || c == '{') return perr(ps, "nothing to repeat");
        if (next_cp(ps, &cp)) return -1;
    }
    if (cls_add(ps, ci, (cls_item){IT_RANGE, cp, cp, 0})) return -1;
    return class_node(ps, ci);
}

static int parse_int(parser *ps, int *out) {
    long v = 0;
    size_t start = ps->pos;
    while (ps->pos < ps->len && ps->p[ps->pos] >= '0' && ps->p[ps->pos] <= '9') {
        v = v * 10 + (ps->p[ps->pos++] - '0');
        if (v > 100000) return perr(ps, "repetition count too large");
    }
    if (ps->pos == start) return -2;
    *out = (int)v;
    return 0;
}

static int parse_quant(parser *ps, int atom) {
    if (ps->pos >= ps->len) return atom;
    char c = ps->p[ps->pos];
    int min, max;
    if (c == '*') min = 0, max = -1;
    else if (c == '+') min = 1, max = -1;
    else if (c == '?') min = 0, max = 1;
    else if (c == '{') {
        size_t save = ps->pos;
        ps->pos++;
        int r = parse_int(ps, &min);
        if (r == -1) return -1;
        if (r == -2) { /* a literal '{' */
            ps->pos = save;
            return atom;
        }
        max = min;
        if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
            ps->pos++;
            r = parse_int(ps, &max);
            if (r == -1) return -1;
            if (r == -2) max = -1;
        }
        if (ps->pos >= ps->len || ps->p[ps->pos] != '}') return perr(ps, "unterminated {n,m}");
        if (max >= 0 && max < min) return perr(ps, "{n,m} with m < n");
        /* pos is on the '}': the common advance below steps over it */
    } else {
        return atom;
    }
    ps->pos++;
    int mode = REP_GREEDY;
    if (ps->pos < ps->len && ps->p[ps->pos] == '?') {
        mode = REP_LAZY;
        ps->pos++;
    } else if (ps->pos < ps->len && ps->p[ps->pos] == '+') {
        mode = REP_POSSESSIVE;
        ps->pos++;
    }
    int n = new_node(ps, N_REP);
    if (n < 0) return -1;
    node *nd = &ps->re->nodes[n];
    nd->child = atom;
    nd->min = min;
    nd->max = max;
    nd->mode = mode;
    if (ps->pos < ps->len && (ps->p[ps->pos] == '*' || ps->p[ps->pos] == '+' || ps->p[ps->pos] == '?'))
        return perr(ps, "nested quantifier");
    return n;
}

static int parse_seq(parser *ps) {
    int seq = new_node(ps, N_SEQ);
    if (seq < 0) return -1;
    while (ps->pos < ps->len && ps->p[ps->pos] != '|' && ps->p[ps->pos] != ')') {
        int a = parse_atom(ps);
        if (a < 0) return -1;
        a = parse_quant(ps, a);
        if (a < 0) return -1;
        if (add_kid(ps, seq, a)) return -1;
    }
    return seq;
}

static int parse_alt(parser *ps) {
    int first = parse_seq(ps);
    if (first < 0) return -1;
    if (ps->pos >= ps->len || ps->p[ps->pos] != '|') return first;
    int alt = new_node(ps, N_ALT);
    if (alt < 0 || add_kid(ps, alt, first)) return -1;
    while (ps->pos < ps->len && ps->p[ps->pos] == '|') {
        ps->pos++;
        int s = parse_seq(ps);
        if (s < 0 || add_kid(ps, alt, s)) return -1;
    }
    return alt;
}

void llmops_regex_free(llmops_regex *re) {
    if (!re) return;
    for (int i = 0; i < re->n_nodes; i++) llmops_free(re->nodes[i].kids);
    for (int i = 0; i < re->n_classes; i++) llmops_free(re->classes[i].items);
    llmops_free(re->nodes);
    llmops_free(re->classes);
    llmops_free(re);
}

llmops_status llmops_regex_compile(const char *pattern, long len, llmops_regex **out, llmops_error *err) {
    *out = NULL;
    llmops_regex *re = llmops_calloc(1, sizeof *re);
    if (!re) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "regex: out of memory");
    parser ps = {re, pattern, len < 0 ? strlen(pattern) : (size_t)len, 0, 0, 0, err, LLMOPS_OK};
    re->root = parse_alt(&ps);
    if (re->root >= 0 && ps.pos < ps.len) perr(&ps, "unmatched ')'");
    if (ps.st) {
        llmops_regex_free(re);
        return ps.st;
    }
    *out = re;
    return LLMOPS_OK;
}

/* ---- matching ----------------------------------------------------------------------- */

#define STEP_BUDGET 20000000L

typedef struct cont {
    int node;  /* -1: accept */
    int idx;   /* N_SEQ: next kid; N_REP: iterations done */
    size_t at; /* N_REP: where this iteration began */
    const struct cont *next;
} cont;

typedef struct {
    const llmops_regex *re;
    const llmops_utext *t;
    size_t begin, end;
    long steps;
    int overflow;
} mctx;

static int cls_match(const cls *c, uint32_t cp, uint16_t fl) {
    int hit = 0;
    for (int i = 0; i < c->n && !hit; i++) {
        const cls_item *it = &c->items[i];
        switch (it->kind) {
        case IT_RANGE:
            hit = cp >= it->lo && cp <= it->hi;
            if (!hit && c->icase) {
                uint32_t l = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
                uint32_t u = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
                hit = (l >= it->lo && l <= it->hi) || (u >= it->lo && u <= it->hi);
            }
            break;
        case IT_PROP: hit = (fl & it->mask) != 0; break;
        case IT_NPROP: hit = (fl & it->mask) == 0; break;
        }
    }
    return hit != c->negate;
}

static int m_node(mctx *c, int ni, size_t pos, const cont *k, size_t *endp);

static int run_cont(mctx *c, size_t pos, const cont *k, size_t *endp);

static int m_rep_iter(mctx *c, int ni, int count, size_t pos, const cont *k, size_t *endp) {
    const node *n = &c->re->nodes[ni];
    int can_more = n->max < 0 || count < n->max;
    cont next = {ni, count + 1, pos, k};
    if (n->mode == REP_LAZY) {
        if (count >= n->min && run_cont(c, pos, k, endp)) return 1;
        return can_more && m_node(c, n->child, pos, &next, endp);
    }
    if (can_more && m_node(c, n->child, pos, &next, endp)) return 1;
    return count >= n->min && run_cont(c, pos, k, endp);
}

static int run_cont(mctx *c, size_t pos, const cont *k, size_t *endp) {
    if (!k || k->node < 0) {
        *endp = pos;
        return 1;
    }
    const node *n = &c->re->nodes[k->node];
    if (n->kind == N_SEQ) {
        if (k->idx >= n->nkids) return run_cont(c, pos, k->next, endp);
        cont next = {k->node, k->idx + 1, 0, k->next};
        return m_node(c, n->kids[k->idx], pos, &next, endp);
    }
    /* N_REP: one more iteration finished at pos; an empty iteration ends the loop */
    if (pos == k->at) return k->idx >= n->min ? run_cont(c, pos, k->next, endp) : 0;
    return m_rep_iter(c, k->node, k->idx, pos, k->next, endp);
}

static int m_node(mctx *c, int ni, size_t pos, const cont *k, size_t *endp) {
    if (++c->steps > STEP_BUDGET) {
        c->overflow = 1;
        return 0;
    }
    if (c->overflow) return 0;
    const node *n = &c->re->nodes[ni];
    const llmops_utext *t = c->t;
    switch (n->kind) {
    case N_CLASS:
        if (pos >= c->end || !cls_match(&c->re->classes[n->cls], t->cp[pos], t->flags[pos])) return 0;
        return run_cont(c, pos + 1, k, endp);
    case N_SEQ: {
        if (n->nkids == 0) return run_cont(c, pos, k, endp);
        cont next = {ni, 1, 0, k};
        return m_node(c, n->kids[0], pos, &next, endp);
    }
    case N_ALT:
        for (int i = 0; i < n->nkids; i++)
            if (m_node(c, n->kids[i], pos, k, endp)) return 1;
        return 0;
    case N_REP: {
        const node *ch = &c->re->nodes[n->child];
        if (ch->kind == N_CLASS) {
            /* one class repeated: count the run, then back off without recursion */
            const cls *cl = &c->re->classes[ch->cls];
            size_t lim = c->end - pos, run = 0;
            if (n->max >= 0 && (size_t)n->max < lim) lim = (size_t)n->max;
            while (run < lim && cls_match(cl, t->cp[pos + run], t->flags[pos + run])) run++;
            if (run < (size_t)n->min) return 0;
            if (n->mode == REP_POSSESSIVE) return run_cont(c, pos + run, k, endp);
            if (n->mode == REP_LAZY) {
                for (size_t r = (size_t)n->min; r <= run; r++)
                    if (run_cont(c, pos + r, k, endp)) return 1;
                return 0;
            }
            for (size_t r = run + 1; r-- > (size_t)n->min;)
                if (run_cont(c, pos + r, k, endp)) return 1;
            return 0;
        }
        return m_rep_iter(c, ni, 0, pos, k, endp);
    }
    case N_LOOK: {
        size_t dummy;
        int r = m_node(c, n->child, pos, NULL, &dummy);
        if (c->overflow) return 0;
        if (r == n->neg) return 0;
        return run_cont(c, pos, k, endp);
    }
    case N_BOL: return pos == c->begin ? run_cont(c, pos, k, endp) : 0;
    case N_EOL: return pos == c->end ? run_cont(c, pos, k, endp) : 0;
    }
    return 0;
}

int llmops_regex_search(const llmops_regex *re, const llmops_utext *t, size_t begin, size_t end, size_t from,
                        size_t *mb, size_t *me) {
    mctx c = {re, t, begin, end, 0, 0};
    for (size_t s = from; s <= end; s++) {
        size_t e;
        c.steps = 0;
        if (m_node(&c, re->root, s, NULL, &e)) {
            *mb = s;
            *me = e;
            return 1;
        }
        if (c.overflow) return -1;
    }
    return 0;
}
