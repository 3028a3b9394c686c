/*
 * Chat templates: a Jinja2 interpreter for the subset chat templates use.
 *
 * The goal is byte-for-byte agreement with Python's jinja2 as Hugging Face
 * transformers configures it (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loopcontrols, keep_trailing_newline=False, autoescape off),
 * so the semantics below follow jinja2's lexer, parser and runtime, and
 * Python's: str() / repr() of values, float repr, int floor division, str
 * methods over code points, json.dumps for tojson, Markup for |safe.
 *
 * Layout:
 *   1. values, memory, errors, UTF-8 helpers
 *   2. lexer   (source -> tokens, whitespace control applied to data)
 *   3. parser  (tokens -> AST; jinja2's grammar and precedence)
 *   4. runtime (scopes, attribute/item access, operators, str/repr, tojson)
 *   5. filters, tests, methods, globals
 *   6. statements and the public API
 *
 * Memory: a compiled template lives in one arena; each render uses a fresh
 * arena (capped) for every value it makes and frees it in one go, so no path
 * can leak. Untrusted templates are bounded: nesting depth at compile time,
 * recursion depth, evaluation steps, memory and output size at render time.
 */
#include "llmops/chat_template.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "base/json.h"

#define CT_MAX_NEST 100                        /* parser nesting                 */
#define CT_MAX_DEPTH 400                       /* runtime recursion (evaluations) */
#define CT_DEFAULT_OUTPUT ((size_t)16 << 20)
#define CT_DEFAULT_MEMORY ((size_t)256 << 20)
#define CT_DEFAULT_STEPS 50000000ull
#define CT_MAX_RANGE 100000                    /* jinja2 sandbox MAX_RANGE       */

/* ========================================================================== */
/* 1. values, memory, errors                                                  */
/* ========================================================================== */

typedef enum {
    V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS,
    V_MACRO, V_FUNC, V_METHOD, V_LOOP
} vkind;

struct vlist;
struct vdict;
struct node;
struct vmethod;
struct loopctx;

typedef struct value {
    uint8_t kind;
    uint8_t safe;   /* V_STR: a markupsafe.Markup (|safe)                      */
    uint8_t tuple;  /* V_LIST: a Python tuple                                  */
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;                    /* V_STR; V_UNDEF: the name, for messages      */
        struct vlist *l;
        struct vdict *d;        /* V_DICT, V_NS                                */
        const struct node *m;   /* V_MACRO                                     */
        int fn;                 /* V_FUNC                                      */
        struct vmethod *meth;   /* V_METHOD                                    */
        struct loopctx *loop;   /* V_LOOP                                      */
    } u;
} value;

/* What a V_LIST stands for in Python: jinja2 filters such as map and select
 * return generators, dict.items() a view, range() a range; they iterate like
 * lists but differ in len(), truth, printing and tojson. */
enum { LT_LIST, LT_GEN, LT_VIEW, LT_RANGE };

typedef struct vlist {
    value *v;
    size_t n, cap;
    uint8_t lt;        /* LT_*                                                   */
    uint8_t consumed;  /* LT_GEN: already iterated (generators run once)         */
} vlist;

typedef struct vdict {
    value *k, *v;
    size_t n, cap;
} vdict;

typedef struct vmethod {
    value self;
    int id;
} vmethod;

typedef struct loopctx {
    vlist *items;
    size_t i;
} loopctx;

static const value UNDEF = {.kind = V_UNDEF};
static const value NONE = {.kind = V_NONE};

static value mk_bool(int b) { value v = {.kind = V_BOOL}; v.u.b = b != 0; return v; }
static value mk_int(int64_t i) { value v = {.kind = V_INT}; v.u.i = i; return v; }
static value mk_float(double f) { value v = {.kind = V_FLOAT}; v.u.f = f; return v; }
static value mk_str(const char *p, size_t n) {
    value v = {.kind = V_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static value mk_undef(const char *name, size_t n) {
    value v = {.kind = V_UNDEF};
    v.u.s.p = name;
    v.u.s.n = n;
    return v;
}

/* ---- AST ------------------------------------------------------------------- */

typedef enum {
    E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_GETATTR, E_GETITEM, E_SLICE, E_CALL,
    E_FILTER, E_TEST, E_UNARY, E_BINOP, E_CONCAT, E_COMPARE, E_COND, E_NSREF,
    S_TEXT, S_OUTPUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_FILTERBLOCK, S_WITH,
    S_BREAK, S_CONTINUE, S_BLOCK
} nkind;

enum { U_NOT, U_NEG, U_POS };
enum {
    B_ADD, B_SUB, B_MUL, B_DIV, B_FLOORDIV, B_MOD, B_POW, B_AND, B_OR
};
enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_IN, C_NOTIN };

typedef struct nlist {
    struct node **v;
    size_t n;
} nlist;

typedef struct node {
    uint8_t kind;
    uint8_t op;
    uint8_t flag;           /* E_TEST: negated                                    */
    uint32_t pos;           /* byte offset in the (normalised) source             */
    int id;                 /* resolved filter / test id; -1 unknown              */
    value cval;             /* E_CONST                                            */
    const char *name;       /* names, attributes, filter/test/macro names, text  */
    size_t name_len;
    struct node *a, *b, *c; /* children (see the parser for each kind)            */
    nlist items, items2;    /* args / bodies / list items / dict values           */
    const char **kw;        /* keyword names (calls), parameters (macros)         */
    size_t *kwlen;
    uint8_t *ops;           /* E_COMPARE operators                                */
} node;

struct llmops_chat_template {
    llmops_arena *arena;
    char *src;              /* normalised source (newlines, trailing newline)     */
    size_t len;
    nlist body;
};

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Decodes one code point from valid UTF-8 at p (n bytes left); *len = bytes. */
static uint32_t utf8_dec(const char *p, size_t n, size_t *len) {
    const unsigned char *s = (const unsigned char *)p;
    if (s[0] < 0x80 || n < 2) { *len = 1; return s[0]; }
    if (s[0] < 0xE0) { *len = 2; return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); }
    if (s[0] < 0xF0 || n < 4) {
        *len = 3;
        if (n < 3) { *len = 1; return s[0]; }
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static size_t utf8_enc(uint32_t c, char *out) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | (c >> 6)); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Offset of the first invalid byte, or n when all of p is valid UTF-8 (no
 * surrogates, no overlongs). */
static size_t utf8_check(const char *p, size_t n) {
    size_t i = 0;
    const unsigned char *s = (const unsigned char *)p;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return n;
}

static size_t utf8_count(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80) c++;
    return c;
}

/* Python str.isspace(). */
static bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Length of the whitespace run that ends at p+n (scanning backwards). */
static size_t ws_suffix(const char *p, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        size_t l;
        if (!py_isspace(utf8_dec(p + st, end - st, &l))) break;
        end = st;
    }
    return n - end;
}

static size_t ws_prefix(const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t l;
        if (!py_isspace(utf8_dec(p + i, n - i, &l))) break;
        i += l;
    }
    return i;
}

/* Line and column (1-based, column in code points) of byte offset pos. */
static void line_col(const char *src, size_t len, size_t pos, int *line, int *col) {
    int ln = 1;
    size_t ls = 0;
    if (pos > len) pos = len;
    for (size_t i = 0; i < pos; i++)
        if (src[i] == '\n') { ln++; ls = i + 1; }
    *line = ln;
    *col = (int)utf8_count(src + ls, pos - ls) + 1;
}

/* ========================================================================== */
/* 2. lexer                                                                   */
/* ========================================================================== */

typedef enum {
    T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING,
    T_INT, T_FLOAT, T_OP
} tkind;

enum {
    O_ADD, O_SUB, O_DIV, O_FLOORDIV, O_MUL, O_POW, O_MOD, O_TILDE, O_LBRACKET, O_RBRACKET,
    O_LPAREN, O_RPAREN, O_LBRACE, O_RBRACE, O_EQ, O_NE, O_LT, O_GT, O_LE, O_GE, O_ASSIGN,
    O_DOT, O_COLON, O_PIPE, O_COMMA, O_SEMI
};

static const char *const g_op_text[] = {
    "+", "-", "/", "//", "*", "**", "%", "~", "[", "]", "(", ")", "{", "}", "==", "!=",
    "<", ">", "<=", ">=", "=", ".", ":", "|", ",", ";"};

typedef struct token {
    uint8_t kind, op;
    uint32_t pos;
    const char *s;  /* T_DATA, T_NAME, T_STRING (decoded)                          */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct cctx {
    llmops_chat_template *t;
    llmops_error *err;
    llmops_status st;
    token *tok;
    size_t ntok, cap;
    size_t p;        /* parser: current token                                     */
    int nest;        /* parser: nesting depth                                     */
    int loops;       /* parser: enclosing for loops (break/continue)              */
} cctx;

static llmops_status cerr(cctx *c, size_t pos, llmops_status code, const char *fmt, ...)
    LLMOPS_PRINTF(4, 5);
static llmops_status cerr(cctx *c, size_t pos, llmops_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(c->t->src, c->t->len, pos, &line, &col);
    c->st = code;
    return llmops_error_set(c->err, code, "chat template %d:%d: %s", line, col, msg);
}

static void *carena(cctx *c, size_t size) {
    void *p = llmops_arena_alloc(c->t->arena, size ? size : 1, 8);
    if (p) memset(p, 0, size);
    return p;
}

static llmops_status push_tok(cctx *c, token t) {
    if (c->ntok == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        token *nt = llmops_reallocarray(c->tok, ncap, sizeof *nt);
        if (!nt) return c->st = llmops_error_set(c->err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
        c->tok = nt;
        c->cap = ncap;
    }
    c->tok[c->ntok++] = t;
    return LLMOPS_OK;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_name_start(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}
static bool is_name_char(char ch) { return is_name_start(ch) || is_digit(ch); }

/* (\d+_)*\d+ starting at i; returns the end (== i when there is no digit). */
static size_t scan_digits(const char *s, size_t n, size_t i) {
    if (i >= n || !is_digit(s[i])) return i;
    while (i < n && is_digit(s[i])) i++;
    while (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) {
        i++;
        while (i < n && is_digit(s[i])) i++;
    }
    return i;
}

/* e[+-]?(\d+_)*\d+ at i; returns the end or i. */
static size_t scan_exponent(const char *s, size_t n, size_t i) {
    if (i >= n || (s[i] != 'e' && s[i] != 'E')) return i;
    size_t j = i + 1;
    if (j < n && (s[j] == '+' || s[j] == '-')) j++;
    size_t k = scan_digits(s, n, j);
    return k > j ? k : i;
}

/* Decodes a string literal's body as Python's unicode-escape codec does after
 * jinja2 backslash-replaces non-ASCII characters. */
static llmops_status unescape(cctx *c, size_t pos, const char *p, size_t n, token *t) {
    char *out = carena(c, n * 3 + 1);
    if (!out) return c->st = llmops_error_set(c->err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\') {
            out[o++] = p[i++];
            continue;
        }
        char d = p[i + 1]; /* the lexer guarantees a character after '\' */
        i += 2;
        uint32_t cp;
        int hex = 0;
        switch (d) {
        case '\n': continue;
        case '\\': case '\'': case '"': out[o++] = d; continue;
        case 'a': out[o++] = 7; continue;
        case 'b': out[o++] = 8; continue;
        case 'f': out[o++] = 12; continue;
        case 'n': out[o++] = 10; continue;
        case 'r': out[o++] = 13; continue;
        case 't': out[o++] = 9; continue;
        case 'v': out[o++] = 11; continue;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        case 'N':
            return cerr(c, pos, LLMOPS_ERR_UNSUPPORTED, "unsupported \\N{...} escape in a string literal");
        default:
            if (d >= '0' && d <= '7') {
                cp = (uint32_t)(d - '0');
                for (int k = 0; k < 2 && i < n && p[i] >= '0' && p[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(p[i++] - '0');
                o += utf8_enc(cp, out + o);
            } else if ((unsigned char)d >= 0x80) {
                /* "\é" became "\\xe9" under backslashreplace: a backslash, then text */
                size_t l;
                uint32_t u = utf8_dec(p + i - 1, n - (i - 1), &l);
                i += l - 1;
                o += (size_t)sprintf(out + o, u <= 0xFF ? "\\x%02x" : u <= 0xFFFF ? "\\u%04x" : "\\U%08x", u);
            } else {
                out[o++] = '\\';
                out[o++] = d;
            }
            continue;
        }
        cp = 0;
        for (int k = 0; k < hex; k++, i++) {
            char h = i < n ? p[i] : 0;
            int v = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (v < 0)
                return cerr(c, pos, LLMOPS_ERR_FORMAT, "truncated \\%c escape in a string literal", d);
            cp = cp * 16 + (uint32_t)v;
        }
        if (cp > 0x10FFFF)
            return cerr(c, pos, LLMOPS_ERR_FORMAT, "illegal Unicode character in a string literal");
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return cerr(c, pos, LLMOPS_ERR_UNSUPPORTED, "surrogate code point in a string literal");
        o += utf8_enc(cp, out + o);
    }
    out[o] = 0;
    t->s = out;
    t->n = o;
    return LLMOPS_OK;
}

/* Lexes the tokens inside {{ }} or {% %} starting at *pos, up to and including
 * the end delimiter. */
static llmops_status lex_tag(cctx *c, size_t *pos, char kind, bool *line_starting) {
    const char *s = c->t->src;
    size_t n = c->t->len, q = *pos;
    char stack[CT_MAX_NEST];
    int depth = 0;
    llmops_status st;
    for (;;) {
        q += ws_prefix(s + q, n - q);
        if (q >= n)
            return cerr(c, n, LLMOPS_ERR_FORMAT, "unexpected end of template, expected '%s'",
                        kind == '%' ? "%}" : "}}");
        if (depth == 0) {
            size_t e = 0;
            char cl = kind == '%' ? '%' : '}';
            if (s[q] == '-' && q + 2 < n && s[q + 1] == cl && s[q + 2] == '}') {
                e = q + 3;
                e += ws_prefix(s + e, n - e);
            } else if (kind == '%' && s[q] == '+' && q + 2 < n && s[q + 1] == '%' && s[q + 2] == '}') {
                e = q + 3;
            } else if (s[q] == cl && q + 1 < n && s[q + 1] == '}') {
                e = q + 2;
                if (kind == '%' && e < n && s[e] == '\n') e++;
            }
            if (e) {
                token t = {.kind = kind == '%' ? T_BLOCK_END : T_VAR_END, .pos = (uint32_t)q};
                if ((st = push_tok(c, t))) return st;
                *line_starting = s[e - 1] == '\n';
                *pos = e;
                return LLMOPS_OK;
            }
        }
        token t = {.pos = (uint32_t)q};
        char ch = s[q];
        if (ch == '\'' || ch == '"') {
            size_t j = q + 1;
            while (j < n && s[j] != ch) j += s[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j >= n) return cerr(c, q, LLMOPS_ERR_FORMAT, "unterminated string literal");
            t.kind = T_STRING;
            if ((st = unescape(c, q, s + q + 1, j - q - 1, &t))) return st;
            q = j + 1;
        } else if (is_digit(ch)) {
            size_t j = scan_digits(s, n, q), fe = 0;
            if (q == 0 || s[q - 1] != '.') {
                if (j < n && s[j] == '.' && j + 1 < n && is_digit(s[j + 1])) {
                    size_t k = scan_digits(s, n, j + 1);
                    size_t x = scan_exponent(s, n, k);
                    fe = x;
                } else {
                    size_t x = scan_exponent(s, n, j);
                    if (x > j) fe = x;
                }
            }
            if (fe) {
                char buf[128];
                size_t o = 0;
                for (size_t k = q; k < fe && o < sizeof buf - 1; k++)
                    if (s[k] != '_') buf[o++] = s[k];
                buf[o] = 0;
                if (fe - q >= sizeof buf - 1)
                    return cerr(c, q, LLMOPS_ERR_UNSUPPORTED, "float literal too long");
                t.kind = T_FLOAT;
                t.f = strtod(buf, NULL);
                q = fe;
            } else {
                /* jinja2: 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[0-9a-f])+ | [1-9](_?\d)* | 0(_?0)* */
                int base = 10;
                size_t k = q;
                uint64_t v = 0;
                bool overflow = false;
                if (ch == '0' && q + 1 < n && s[q + 1] && strchr("bBoOxX", s[q + 1])) {
                    char b = (char)(s[q + 1] | 0x20);
                    base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
                    k = q + 2;
                } else if (ch == '0') {
                    k = q + 1;
                    while (k < n && (s[k] == '0' || (s[k] == '_' && k + 1 < n && s[k + 1] == '0'))) k++;
                    base = 0;
                }
                if (base) {
                    size_t start = k;
                    for (;;) {
                        size_t kk = k < n && s[k] == '_' && (base != 10 || k > start) ? k + 1 : k;
                        if (kk >= n) break;
                        char lc = (char)(s[kk] | 0x20);
                        int dv = is_digit(s[kk]) ? s[kk] - '0' : (lc >= 'a' && lc <= 'f') ? lc - 'a' + 10 : 99;
                        if (dv >= base) break;
                        if (v > (UINT64_MAX - (uint64_t)dv) / (uint64_t)base) overflow = true;
                        v = v * (uint64_t)base + (uint64_t)dv;
                        k = kk + 1;
                    }
                    if (k == start) return cerr(c, q, LLMOPS_ERR_FORMAT, "invalid integer literal");
                }
                if (overflow || v > INT64_MAX)
                    return cerr(c, q, LLMOPS_ERR_UNSUPPORTED, "integer literal outside the 64-bit range");
                t.kind = T_INT;
                t.i = (int64_t)v;
                q = k;
            }
        } else if (is_name_start(ch)) {
            size_t j = q;
            while (j < n && is_name_char(s[j])) j++;
            t.kind = T_NAME;
            t.s = s + q;
            t.n = j - q;
            q = j;
        } else {
            static const char two[][3] = {"//", "**", "==", "!=", "<=", ">="};
            static const uint8_t two_op[] = {O_FLOORDIV, O_POW, O_EQ, O_NE, O_LE, O_GE};
            static const char one[] = "+-/*%~[](){}<>=.:|,;";
            static const uint8_t one_op[] = {O_ADD, O_SUB, O_DIV, O_MUL, O_MOD, O_TILDE, O_LBRACKET,
                                             O_RBRACKET, O_LPAREN, O_RPAREN, O_LBRACE, O_RBRACE, O_LT,
                                             O_GT, O_ASSIGN, O_DOT, O_COLON, O_PIPE, O_COMMA, O_SEMI};
            int op = -1;
            size_t len = 0;
            for (size_t k = 0; k < 6 && op < 0; k++)
                if (q + 1 < n && s[q] == two[k][0] && s[q + 1] == two[k][1]) op = two_op[k], len = 2;
            const char *hit = op < 0 && ch ? strchr(one, ch) : NULL;
            if (hit) op = one_op[hit - one], len = 1;
            if (op < 0) {
                size_t l;
                uint32_t cp = utf8_dec(s + q, n - q, &l);
                char u[8] = {0};
                utf8_enc(cp, u);
                return cerr(c, q, LLMOPS_ERR_FORMAT, "unexpected character '%s'", u);
            }
            if (op == O_LPAREN || op == O_LBRACKET || op == O_LBRACE) {
                if (depth >= CT_MAX_NEST)
                    return cerr(c, q, LLMOPS_ERR_LIMIT, "brackets nested deeper than %d", CT_MAX_NEST);
                stack[depth++] = op == O_LPAREN ? ')' : op == O_LBRACKET ? ']' : '}';
            } else if (op == O_RPAREN || op == O_RBRACKET || op == O_RBRACE) {
                if (depth == 0) return cerr(c, q, LLMOPS_ERR_FORMAT, "unexpected '%c'", ch);
                if (stack[depth - 1] != ch)
                    return cerr(c, q, LLMOPS_ERR_FORMAT, "unexpected '%c', expected '%c'", ch, stack[depth - 1]);
                depth--;
            }
            t.kind = T_OP;
            t.op = (uint8_t)op;
            q += len;
        }
        if ((st = push_tok(c, t))) return st;
    }
}

/* Splits the source into data and tags, applying -/+ whitespace control,
 * trim_blocks and lstrip_blocks exactly as jinja2's lexer does. */
static llmops_status lex(cctx *c) {
    const char *s = c->t->src;
    size_t n = c->t->len, pos = 0;
    bool line_starting = true;
    llmops_status st;
    for (;;) {
        size_t k = pos;
        while (k + 1 < n && !(s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#'))) k++;
        if (k + 1 >= n) {
            if (pos < n) {
                token t = {.kind = T_DATA, .pos = (uint32_t)pos, .s = s + pos, .n = n - pos};
                if ((st = push_tok(c, t))) return st;
            }
            break;
        }
        char kind = s[k + 1];
        char sign = k + 2 < n && (s[k + 2] == '-' || s[k + 2] == '+') ? s[k + 2] : 0;
        size_t text_end = k;
        if (sign == '-') {
            text_end = k - ws_suffix(s + pos, k - pos);
        } else if (sign != '+' && kind != '{') {
            size_t lp = k;
            while (lp > pos && s[lp - 1] != '\n') lp--;
            bool has_nl = lp > pos;
            if (has_nl || line_starting) {
                size_t j = lp;
                while (j < k && (s[j] == ' ' || s[j] == '\t')) j++;
                if (j == k) text_end = lp;
            }
        }
        if (text_end > pos) {
            token t = {.kind = T_DATA, .pos = (uint32_t)pos, .s = s + pos, .n = text_end - pos};
            if ((st = push_tok(c, t))) return st;
        }
        size_t q = k + 2 + (sign ? 1 : 0);
        line_starting = false;
        if (kind == '#') {
            size_t j = q;
            while (j + 1 < n && !(s[j] == '#' && s[j + 1] == '}')) j++;
            if (j + 1 >= n) return cerr(c, k, LLMOPS_ERR_FORMAT, "missing end of comment tag");
            size_t e = j + 2;
            if (j > q && s[j - 1] == '-') e += ws_prefix(s + e, n - e);
            else if (j > q && s[j - 1] == '+') {}
            else if (e < n && s[e] == '\n') e++;
            line_starting = s[e - 1] == '\n';
            pos = e;
            continue;
        }
        token t = {.kind = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, .pos = (uint32_t)k};
        if ((st = push_tok(c, t))) return st;
        pos = q;
        if ((st = lex_tag(c, &pos, kind, &line_starting))) return st;
    }
    token e = {.kind = T_EOF, .pos = (uint32_t)n};
    return push_tok(c, e);
}

/* ========================================================================== */
/* 3. parser                                                                  */
/* ========================================================================== */

/* jinja2's built-in filters and tests (plus transformers' tojson); names not
 * listed are an error as in jinja2, listed ones without an implementation
 * are LLMOPS_ERR_UNSUPPORTED when evaluated. */
enum {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E,
    F_ESCAPE, F_FILESIZEFORMAT, F_FIRST, F_FLOAT, F_FORCEESCAPE, F_FORMAT, F_GROUPBY, F_INDENT,
    F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_PPRINT,
    F_RANDOM, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT,
    F_SELECTATTR, F_SLICE, F_SORT, F_STRING, F_STRIPTAGS, F_SUM, F_TITLE, F_TOJSON, F_TRIM,
    F_TRUNCATE, F_UNIQUE, F_UPPER, F_URLENCODE, F_URLIZE, F_WORDCOUNT, F_WORDWRAP, F_XMLATTR,
    F_COUNT_
};
static const char *const g_filters[F_COUNT_] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e",
    "escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent",
    "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "pprint",
    "random", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
    "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"};

enum {
    X_BOOLEAN, X_CALLABLE, X_DEFINED, X_DIVISIBLEBY, X_EQ, X_EQUALTO, X_ESCAPED, X_EVEN, X_FALSE,
    X_FILTER, X_FLOAT, X_GE, X_GT, X_GREATERTHAN, X_IN, X_INTEGER, X_ITERABLE, X_LE, X_LESSTHAN,
    X_LOWER, X_LT, X_MAPPING, X_NE, X_NONE, X_NUMBER, X_ODD, X_SAMEAS, X_SEQUENCE, X_STRING,
    X_TEST, X_TRUE, X_UNDEFINED, X_UPPER, X_OP_EQ, X_OP_NE, X_OP_LT, X_OP_LE, X_OP_GT, X_OP_GE,
    X_COUNT_
};
static const char *const g_tests[X_COUNT_] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false",
    "filter", "float", "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lessthan",
    "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas", "sequence", "string",
    "test", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">="};

static int lookup_name(const char *const *table, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(table[i]) == len && memcmp(table[i], s, len) == 0) return i;
    return -1;
}

typedef struct nvec {
    node **v;
    size_t n, cap;
} nvec;

typedef struct callargs {
    nvec pos, kwv;
    const char **kw;
    size_t *kwlen;
    size_t nkw, kwcap;
} callargs;


static token *peek(cctx *c, size_t k) {
    size_t i = c->p + k;
    return i < c->ntok ? &c->tok[i] : &c->tok[c->ntok - 1];
}
static token *cur(cctx *c) { return peek(c, 0); }
static bool is_op(const token *t, int op) { return t->kind == T_OP && t->op == op; }
static bool is_name(const token *t, const char *nm) {
    return t->kind == T_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static const char *tok_desc(const token *t, char *buf, size_t sz) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    case T_NAME: snprintf(buf, sz, "'%.*s'", (int)(t->n > 60 ? 60 : t->n), t->s); return buf;
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default: snprintf(buf, sz, "'%s'", g_op_text[t->op]); return buf;
    }
}

static node *perr(cctx *c, const token *t, llmops_status code, const char *fmt, ...) LLMOPS_PRINTF(4, 5);
static node *perr(cctx *c, const token *t, llmops_status code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cerr(c, t->pos, code, "%s", msg);
    return NULL;
}

static node *nomem(cctx *c) {
    c->st = llmops_error_set(c->err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
    return NULL;
}

static node *nnew(cctx *c, int kind, size_t pos) {
    node *n = carena(c, sizeof *n);
    if (!n) return nomem(c);
    n->kind = (uint8_t)kind;
    n->pos = (uint32_t)pos;
    n->id = -1;
    return n;
}

static bool nvec_push(cctx *c, nvec *v, node *x) {
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 4;
        node **nv = carena(c, ncap * sizeof *nv);
        if (!nv) { nomem(c); return false; }
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = x;
    return true;
}

static nlist nvec_list(nvec v) { return (nlist){v.v, v.n}; }

static node *expect_op(cctx *c, int op) {
    token *t = cur(c);
    char b[80];
    if (!is_op(t, op))
        return perr(c, t, LLMOPS_ERR_FORMAT, "expected '%s', got %s", g_op_text[op], tok_desc(t, b, sizeof b));
    c->p++;
    return (node *)1;
}

static node *expect_end(cctx *c, const char *what) {
    token *t = cur(c);
    char b[80];
    if (t->kind != T_BLOCK_END)
        return perr(c, t, LLMOPS_ERR_FORMAT, "expected end of statement block after '%s', got %s", what,
                    tok_desc(t, b, sizeof b));
    c->p++;
    return (node *)1;
}

static node *parse_expression(cctx *c, bool with_condexpr);
static node *parse_tuple(cctx *c, int mode, bool explicit_parens, const char *extra_end);
static node *parse_unary(cctx *c, bool with_filter);
static node *parse_primary(cctx *c);
static node *parse_postfix(cctx *c, node *n);
static node *parse_filter_expr(cctx *c, node *n);
static node *parse_filter(cctx *c, node *n, bool start_inline);

static node *enter(cctx *c) {
    if (++c->nest > CT_MAX_NEST) return perr(c, cur(c), LLMOPS_ERR_LIMIT, "expression nested deeper than %d", CT_MAX_NEST);
    return (node *)1;
}
#define LEAVE(c, r) (c->nest--, (r))

static node *parse_condexpr(cctx *c);
static node *parse_or(cctx *c);

static node *parse_expression(cctx *c, bool with_condexpr) {
    if (!enter(c)) return NULL;
    node *r = with_condexpr ? parse_condexpr(c) : parse_or(c);
    return LEAVE(c, r);
}

static node *parse_and(cctx *c);
static node *parse_not(cctx *c);
static node *parse_compare(cctx *c);
static node *parse_math1(cctx *c);
static node *parse_concat(cctx *c);
static node *parse_math2(cctx *c);
static node *parse_pow(cctx *c);

static node *parse_condexpr(cctx *c) {
    node *e1 = parse_or(c);
    if (!e1) return NULL;
    while (is_name(cur(c), "if")) {
        size_t pos = cur(c)->pos;
        c->p++;
        node *e2 = parse_or(c);
        if (!e2) return NULL;
        node *e3 = NULL;
        if (is_name(cur(c), "else")) {
            c->p++;
            if (!enter(c)) return NULL;
            e3 = LEAVE(c, parse_condexpr(c));
            if (!e3) return NULL;
        }
        node *n = nnew(c, E_COND, pos);
        if (!n) return NULL;
        n->a = e2;
        n->b = e1;
        n->c = e3;
        e1 = n;
    }
    return e1;
}

static node *binop(cctx *c, int op, node *l, node *r, size_t pos) {
    node *n = nnew(c, E_BINOP, pos);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static node *parse_or(cctx *c) {
    node *l = parse_and(c);
    while (l && is_name(cur(c), "or")) {
        size_t pos = cur(c)->pos;
        c->p++;
        node *r = parse_and(c);
        if (!r) return NULL;
        l = binop(c, B_OR, l, r, pos);
    }
    return l;
}

static node *parse_and(cctx *c) {
    node *l = parse_not(c);
    while (l && is_name(cur(c), "and")) {
        size_t pos = cur(c)->pos;
        c->p++;
        node *r = parse_not(c);
        if (!r) return NULL;
        l = binop(c, B_AND, l, r, pos);
    }
    return l;
}

static node *parse_not(cctx *c) {
    if (is_name(cur(c), "not")) {
        size_t pos = cur(c)->pos;
        c->p++;
        if (!enter(c)) return NULL;
        node *a = LEAVE(c, parse_not(c));
        if (!a) return NULL;
        node *n = nnew(c, E_UNARY, pos);
        if (!n) return NULL;
        n->op = U_NOT;
        n->a = a;
        return n;
    }
    return parse_compare(c);
}

static node *parse_compare(cctx *c) {
    size_t pos = cur(c)->pos;
    node *e = parse_math1(c);
    if (!e) return NULL;
    nvec operands = {0};
    uint8_t opsbuf[64];
    size_t nops = 0;
    for (;;) {
        token *t = cur(c);
        int op = -1;
        if (t->kind == T_OP) {
            switch (t->op) {
            case O_EQ: op = C_EQ; break;
            case O_NE: op = C_NE; break;
            case O_LT: op = C_LT; break;
            case O_LE: op = C_LE; break;
            case O_GT: op = C_GT; break;
            case O_GE: op = C_GE; break;
            default: break;
            }
            if (op >= 0) c->p++;
        } else if (is_name(t, "in")) {
            op = C_IN;
            c->p++;
        } else if (is_name(t, "not") && is_name(peek(c, 1), "in")) {
            op = C_NOTIN;
            c->p += 2;
        }
        if (op < 0) break;
        if (nops >= sizeof opsbuf) return perr(c, t, LLMOPS_ERR_LIMIT, "comparison chain too long");
        node *r = parse_math1(c);
        if (!r || !nvec_push(c, &operands, r)) return NULL;
        opsbuf[nops++] = (uint8_t)op;
    }
    if (!nops) return e;
    node *n = nnew(c, E_COMPARE, pos);
    if (!n) return NULL;
    n->a = e;
    n->items = nvec_list(operands);
    n->ops = carena(c, nops);
    if (!n->ops) return nomem(c);
    memcpy(n->ops, opsbuf, nops);
    return n;
}

static node *parse_math1(cctx *c) {
    node *l = parse_concat(c);
    while (l && (is_op(cur(c), O_ADD) || is_op(cur(c), O_SUB))) {
        token *t = cur(c);
        c->p++;
        node *r = parse_concat(c);
        if (!r) return NULL;
        l = binop(c, t->op == O_ADD ? B_ADD : B_SUB, l, r, t->pos);
    }
    return l;
}

static node *parse_concat(cctx *c) {
    size_t pos = cur(c)->pos;
    node *first = parse_math2(c);
    if (!first || !is_op(cur(c), O_TILDE)) return first;
    nvec args = {0};
    if (!nvec_push(c, &args, first)) return NULL;
    while (is_op(cur(c), O_TILDE)) {
        c->p++;
        node *r = parse_math2(c);
        if (!r || !nvec_push(c, &args, r)) return NULL;
    }
    node *n = nnew(c, E_CONCAT, pos);
    if (!n) return NULL;
    n->items = nvec_list(args);
    return n;
}

static node *parse_math2(cctx *c) {
    node *l = parse_pow(c);
    while (l) {
        token *t = cur(c);
        int op = is_op(t, O_MUL) ? B_MUL : is_op(t, O_DIV) ? B_DIV : is_op(t, O_FLOORDIV) ? B_FLOORDIV
               : is_op(t, O_MOD) ? B_MOD : -1;
        if (op < 0) break;
        c->p++;
        node *r = parse_pow(c);
        if (!r) return NULL;
        l = binop(c, op, l, r, t->pos);
    }
    return l;
}

static node *parse_pow(cctx *c) {
    node *l = parse_unary(c, true);
    while (l && is_op(cur(c), O_POW)) {
        token *t = cur(c);
        c->p++;
        node *r = parse_unary(c, true);
        if (!r) return NULL;
        l = binop(c, B_POW, l, r, t->pos);
    }
    return l;
}

static node *parse_unary(cctx *c, bool with_filter) {
    token *t = cur(c);
    node *n;
    if (!enter(c)) return NULL;
    if (is_op(t, O_SUB) || is_op(t, O_ADD)) {
        c->p++;
        node *a = parse_unary(c, false);
        if (!a) return LEAVE(c, (node *)NULL);
        n = nnew(c, E_UNARY, t->pos);
        if (!n) return LEAVE(c, (node *)NULL);
        n->op = t->op == O_SUB ? U_NEG : U_POS;
        n->a = a;
    } else {
        n = parse_primary(c);
    }
    if (n) n = parse_postfix(c, n);
    if (n && with_filter) n = parse_filter_expr(c, n);
    return LEAVE(c, n);
}

static node *mk_const(cctx *c, value v, size_t pos) {
    node *n = nnew(c, E_CONST, pos);
    if (n) n->cval = v;
    return n;
}

static node *parse_list_or_dict(cctx *c, bool dict) {
    token *open = cur(c);
    c->p++;
    nvec keys = {0}, vals = {0};
    int close = dict ? O_RBRACE : O_RBRACKET;
    while (!is_op(cur(c), close)) {
        if (keys.n && !expect_op(c, O_COMMA)) return NULL;
        if (is_op(cur(c), close)) break;
        node *k = parse_expression(c, true);
        if (!k || !nvec_push(c, &keys, k)) return NULL;
        if (dict) {
            if (!expect_op(c, O_COLON)) return NULL;
            node *v = parse_expression(c, true);
            if (!v || !nvec_push(c, &vals, v)) return NULL;
        }
    }
    if (!expect_op(c, close)) return NULL;
    node *n = nnew(c, dict ? E_DICT : E_LIST, open->pos);
    if (!n) return NULL;
    n->items = nvec_list(keys);
    n->items2 = nvec_list(vals);
    return n;
}

static node *parse_primary(cctx *c) {
    token *t = cur(c);
    char b[80];
    switch (t->kind) {
    case T_NAME:
        c->p++;
        if (is_name(t, "true") || is_name(t, "True")) return mk_const(c, mk_bool(1), t->pos);
        if (is_name(t, "false") || is_name(t, "False")) return mk_const(c, mk_bool(0), t->pos);
        if (is_name(t, "none") || is_name(t, "None")) return mk_const(c, NONE, t->pos);
        {
            node *n = nnew(c, E_NAME, t->pos);
            if (n) n->name = t->s, n->name_len = t->n;
            return n;
        }
    case T_STRING: {
        /* adjacent string literals concatenate */
        size_t total = 0, k = c->p;
        while (k < c->ntok && c->tok[k].kind == T_STRING) total += c->tok[k++].n;
        char *s = carena(c, total + 1);
        if (!s) return nomem(c);
        size_t o = 0;
        while (c->p < k) {
            memcpy(s + o, c->tok[c->p].s, c->tok[c->p].n);
            o += c->tok[c->p++].n;
        }
        return mk_const(c, mk_str(s, o), t->pos);
    }
    case T_INT: c->p++; return mk_const(c, mk_int(t->i), t->pos);
    case T_FLOAT: c->p++; return mk_const(c, mk_float(t->f), t->pos);
    case T_OP:
        if (t->op == O_LPAREN) {
            c->p++;
            node *n = parse_tuple(c, 0, true, NULL);
            if (!n || !expect_op(c, O_RPAREN)) return NULL;
            return n;
        }
        if (t->op == O_LBRACKET) return parse_list_or_dict(c, false);
        if (t->op == O_LBRACE) return parse_list_or_dict(c, true);
        break;
    default: break;
    }
    return perr(c, t, LLMOPS_ERR_FORMAT, "unexpected %s", tok_desc(t, b, sizeof b));
}

static bool is_tuple_end(cctx *c, const char *extra_end) {
    token *t = cur(c);
    if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || is_op(t, O_RPAREN)) return true;
    return extra_end && is_name(t, extra_end);
}

/* mode 0: full expressions; 1: no conditional expressions; 2: primaries only
 * (assignment targets). */
static node *parse_tuple(cctx *c, int mode, bool explicit_parens, const char *extra_end) {
    size_t pos = cur(c)->pos;
    nvec args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n && !expect_op(c, O_COMMA)) return NULL;
        if (is_tuple_end(c, extra_end)) break;
        node *e;
        if (mode == 2) {
            e = parse_primary(c);
        } else {
            e = parse_expression(c, mode == 0);
        }
        if (!e || !nvec_push(c, &args, e)) return NULL;
        if (is_op(cur(c), O_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) {
            char b[80];
            return perr(c, cur(c), LLMOPS_ERR_FORMAT, "expected an expression, got %s", tok_desc(cur(c), b, sizeof b));
        }
    }
    node *n = nnew(c, E_TUPLE, pos);
    if (n) n->items = nvec_list(args);
    return n;
}

static node *parse_subscribed(cctx *c) {
    token *t = cur(c);
    node *args[3] = {NULL, NULL, NULL};
    if (is_op(t, O_COLON)) {
        c->p++;
    } else {
        node *e = parse_expression(c, true);
        if (!e) return NULL;
        if (!is_op(cur(c), O_COLON)) return e;
        c->p++;
        args[0] = e;
    }
    if (!is_op(cur(c), O_COLON) && !is_op(cur(c), O_RBRACKET) && !is_op(cur(c), O_COMMA)) {
        if (!(args[1] = parse_expression(c, true))) return NULL;
    }
    if (is_op(cur(c), O_COLON)) {
        c->p++;
        if (!is_op(cur(c), O_RBRACKET) && !is_op(cur(c), O_COMMA))
            if (!(args[2] = parse_expression(c, true))) return NULL;
    }
    node *n = nnew(c, E_SLICE, t->pos);
    if (!n) return NULL;
    n->a = args[0];
    n->b = args[1];
    n->c = args[2];
    return n;
}

static bool parse_call_args(cctx *c, callargs *ca) {
    if (!expect_op(c, O_LPAREN)) return false;
    bool need_comma = false;
    while (!is_op(cur(c), O_RPAREN)) {
        if (need_comma) {
            if (!expect_op(c, O_COMMA)) return false;
            if (is_op(cur(c), O_RPAREN)) break;
        }
        token *t = cur(c);
        if (is_op(t, O_MUL) || is_op(t, O_POW)) {
            perr(c, t, LLMOPS_ERR_UNSUPPORTED, "unsupported *args / **kwargs in a call");
            return false;
        }
        if (t->kind == T_NAME && is_op(peek(c, 1), O_ASSIGN)) {
            c->p += 2;
            node *v = parse_expression(c, true);
            if (!v || !nvec_push(c, &ca->kwv, v)) return false;
            if (ca->nkw == ca->kwcap) {
                size_t ncap = ca->kwcap ? ca->kwcap * 2 : 4;
                const char **nk = carena(c, ncap * sizeof *nk);
                size_t *nl = carena(c, ncap * sizeof *nl);
                if (!nk || !nl) { nomem(c); return false; }
                if (ca->nkw) {
                    memcpy(nk, ca->kw, ca->nkw * sizeof *nk);
                    memcpy(nl, ca->kwlen, ca->nkw * sizeof *nl);
                }
                ca->kw = nk;
                ca->kwlen = nl;
                ca->kwcap = ncap;
            }
            ca->kw[ca->nkw] = t->s;
            ca->kwlen[ca->nkw++] = t->n;
        } else {
            if (ca->nkw) {
                perr(c, t, LLMOPS_ERR_FORMAT, "positional argument follows keyword argument");
                return false;
            }
            node *v = parse_expression(c, true);
            if (!v || !nvec_push(c, &ca->pos, v)) return false;
        }
        need_comma = true;
    }
    c->p++;
    return true;
}

static void set_args(node *n, const callargs *ca) {
    n->items = nvec_list(ca->pos);
    n->items2 = nvec_list(ca->kwv);
    n->kw = ca->kw;
    n->kwlen = ca->kwlen;
}

static node *parse_postfix(cctx *c, node *n) {
    char b[80];
    while (n) {
        token *t = cur(c);
        if (is_op(t, O_DOT)) {
            c->p++;
            token *a = cur(c);
            if (a->kind == T_NAME) {
                c->p++;
                node *g = nnew(c, E_GETATTR, t->pos);
                if (!g) return NULL;
                g->a = n;
                g->name = a->s;
                g->name_len = a->n;
                n = g;
            } else if (a->kind == T_INT) {
                c->p++;
                node *k = mk_const(c, mk_int(a->i), a->pos);
                node *g = nnew(c, E_GETITEM, t->pos);
                if (!k || !g) return NULL;
                g->a = n;
                g->b = k;
                n = g;
            } else {
                return perr(c, a, LLMOPS_ERR_FORMAT, "expected a name or number after '.', got %s", tok_desc(a, b, sizeof b));
            }
        } else if (is_op(t, O_LBRACKET)) {
            c->p++;
            nvec args = {0};
            while (!is_op(cur(c), O_RBRACKET)) {
                if (args.n && !expect_op(c, O_COMMA)) return NULL;
                node *s = parse_subscribed(c);
                if (!s || !nvec_push(c, &args, s)) return NULL;
            }
            c->p++;
            node *key;
            if (args.n == 1) {
                key = args.v[0];
            } else {
                key = nnew(c, E_TUPLE, t->pos);
                if (!key) return NULL;
                key->items = nvec_list(args);
            }
            node *g = nnew(c, E_GETITEM, t->pos);
            if (!g) return NULL;
            g->a = n;
            g->b = key;
            n = g;
        } else if (is_op(t, O_LPAREN)) {
            callargs ca = {0};
            if (!parse_call_args(c, &ca)) return NULL;
            node *call = nnew(c, E_CALL, t->pos);
            if (!call) return NULL;
            call->a = n;
            set_args(call, &ca);
            n = call;
        } else {
            break;
        }
    }
    return n;
}

static node *parse_test(cctx *c, node *n) {
    token *is = cur(c);
    c->p++;
    bool negated = false;
    if (is_name(cur(c), "not")) {
        c->p++;
        negated = true;
    }
    token *nm = cur(c);
    char b[80];
    if (nm->kind != T_NAME) return perr(c, nm, LLMOPS_ERR_FORMAT, "expected a test name, got %s", tok_desc(nm, b, sizeof b));
    c->p++;
    if (is_op(cur(c), O_DOT)) return perr(c, cur(c), LLMOPS_ERR_UNSUPPORTED, "unsupported dotted test name");
    node *t = nnew(c, E_TEST, is->pos);
    if (!t) return NULL;
    t->a = n;
    t->name = nm->s;
    t->name_len = nm->n;
    t->id = lookup_name(g_tests, X_COUNT_, nm->s, nm->n);
    t->flag = negated;
    token *k = cur(c);
    if (is_op(k, O_LPAREN)) {
        callargs ca = {0};
        if (!parse_call_args(c, &ca)) return NULL;
        set_args(t, &ca);
    } else if ((k->kind == T_NAME || k->kind == T_STRING || k->kind == T_INT || k->kind == T_FLOAT ||
                is_op(k, O_LPAREN) || is_op(k, O_LBRACKET) || is_op(k, O_LBRACE)) &&
               !is_name(k, "else") && !is_name(k, "or") && !is_name(k, "and")) {
        if (is_name(k, "is")) return perr(c, k, LLMOPS_ERR_FORMAT, "you cannot chain multiple tests with is");
        node *arg = parse_primary(c);
        if (arg) arg = parse_postfix(c, arg);
        if (!arg) return NULL;
        nvec v = {0};
        if (!nvec_push(c, &v, arg)) return NULL;
        t->items = nvec_list(v);
    }
    return t;
}

static node *parse_filter(cctx *c, node *n, bool start_inline) {
    char b[80];
    while (is_op(cur(c), O_PIPE) || start_inline) {
        if (!start_inline) c->p++;
        start_inline = false;
        token *nm = cur(c);
        if (nm->kind != T_NAME) return perr(c, nm, LLMOPS_ERR_FORMAT, "expected a filter name, got %s", tok_desc(nm, b, sizeof b));
        c->p++;
        if (is_op(cur(c), O_DOT)) return perr(c, cur(c), LLMOPS_ERR_UNSUPPORTED, "unsupported dotted filter name");
        node *f = nnew(c, E_FILTER, nm->pos);
        if (!f) return NULL;
        f->a = n;
        f->name = nm->s;
        f->name_len = nm->n;
        f->id = lookup_name(g_filters, F_COUNT_, nm->s, nm->n);
        if (is_op(cur(c), O_LPAREN)) {
            callargs ca = {0};
            if (!parse_call_args(c, &ca)) return NULL;
            set_args(f, &ca);
        }
        n = f;
    }
    return n;
}

static node *parse_filter_expr(cctx *c, node *n) {
    while (n) {
        token *t = cur(c);
        if (is_op(t, O_PIPE)) n = parse_filter(c, n, false);
        else if (is_name(t, "is")) n = parse_test(c, n);
        else if (is_op(t, O_LPAREN)) n = parse_postfix(c, n);
        else break;
    }
    return n;
}

/* ---- statements ---------------------------------------------------------------- */

static bool parse_body(cctx *c, nvec *out, const char *const *ends);
static node *parse_statement(cctx *c);

static bool in_list(const token *t, const char *const *ends) {
    for (; ends && *ends; ends++)
        if (is_name(t, *ends)) return true;
    return false;
}

static bool parse_body(cctx *c, nvec *out, const char *const *ends) {
    for (;;) {
        token *t = cur(c);
        switch (t->kind) {
        case T_EOF:
            if (ends && ends[0]) {
                const char *want = ends[0];
                for (const char *const *e = ends; *e; e++)
                    if (!strncmp(*e, "end", 3)) want = *e;
                cerr(c, t->pos, LLMOPS_ERR_FORMAT, "unexpected end of template; expected '%s'", want);
                return false;
            }
            return true;
        case T_DATA: {
            node *n = nnew(c, S_TEXT, t->pos);
            if (!n) return false;
            n->name = t->s;
            n->name_len = t->n;
            c->p++;
            if (!nvec_push(c, out, n)) return false;
            break;
        }
        case T_VAR_BEGIN: {
            c->p++;
            node *e = parse_tuple(c, 0, false, NULL);
            if (!e) return false;
            if (cur(c)->kind != T_VAR_END) {
                char b[80];
                perr(c, cur(c), LLMOPS_ERR_FORMAT, "expected end of print statement, got %s", tok_desc(cur(c), b, sizeof b));
                return false;
            }
            c->p++;
            node *n = nnew(c, S_OUTPUT, t->pos);
            if (!n) return false;
            n->a = e;
            if (!nvec_push(c, out, n)) return false;
            break;
        }
        case T_BLOCK_BEGIN: {
            if (in_list(peek(c, 1), ends)) return true;
            c->p++;
            if (!enter(c)) return false;
            node *n = parse_statement(c);
            c->nest--;
            if (!n) return false;
            if (!nvec_push(c, out, n)) return false;
            break;
        }
        default: {
            char b[80];
            perr(c, t, LLMOPS_ERR_FORMAT, "unexpected %s", tok_desc(t, b, sizeof b));
            return false;
        }
        }
    }
}

/* Consumes "{% NAME" where NAME is the end tag found by parse_body. */
static const token *take_end_tag(cctx *c) {
    c->p++;           /* block begin */
    return &c->tok[c->p++];
}

static node *parse_assign_target(cctx *c, bool with_namespace, const char *extra_end) {
    token *t = cur(c);
    char b[80];
    if (with_namespace && t->kind == T_NAME && is_op(peek(c, 1), O_DOT) && peek(c, 2)->kind == T_NAME) {
        node *ns = nnew(c, E_NAME, t->pos);
        node *n = nnew(c, E_NSREF, t->pos);
        if (!ns || !n) return NULL;
        ns->name = t->s;
        ns->name_len = t->n;
        n->a = ns;
        n->name = peek(c, 2)->s;
        n->name_len = peek(c, 2)->n;
        c->p += 3;
        return n;
    }
    node *n = parse_tuple(c, 2, false, extra_end);
    if (!n) return NULL;
    if (n->kind == E_NAME) goto check_name;
    if (n->kind == E_TUPLE) {
        for (size_t i = 0; i < n->items.n; i++)
            if (n->items.v[i]->kind != E_NAME)
                return perr(c, t, LLMOPS_ERR_FORMAT, "can't assign to %s", "this expression");
        return n;
    }
    return perr(c, t, LLMOPS_ERR_FORMAT, "can't assign to %s", tok_desc(t, b, sizeof b));
check_name:
    if ((n->name_len == 4 && (!memcmp(n->name, "true", 4) || !memcmp(n->name, "none", 4))) ||
        (n->name_len == 5 && !memcmp(n->name, "false", 5)))
        return perr(c, t, LLMOPS_ERR_FORMAT, "can't assign to a constant");
    return n;
}

static node *parse_if(cctx *c, size_t pos) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    node *n = nnew(c, S_IF, pos);
    if (!n) return NULL;
    node *test = parse_tuple(c, 1, false, NULL);
    if (!test || !expect_end(c, "if")) return NULL;
    n->a = test;
    nvec body = {0};
    if (!parse_body(c, &body, ends)) return NULL;
    n->items = nvec_list(body);
    const token *e = take_end_tag(c);
    if (is_name(e, "elif")) {
        node *sub = parse_if(c, e->pos);
        if (!sub) return NULL;
        nvec eb = {0};
        if (!nvec_push(c, &eb, sub)) return NULL;
        n->items2 = nvec_list(eb);
        return n; /* the nested if consumed the endif */
    }
    if (is_name(e, "else")) {
        if (!expect_end(c, "else")) return NULL;
        nvec eb = {0};
        if (!parse_body(c, &eb, endif)) return NULL;
        n->items2 = nvec_list(eb);
        take_end_tag(c);
    }
    if (!expect_end(c, "endif")) return NULL;
    return n;
}

static node *parse_for(cctx *c, size_t pos) {
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const endfor[] = {"endfor", NULL};
    node *n = nnew(c, S_FOR, pos);
    if (!n) return NULL;
    node *target = parse_assign_target(c, false, "in");
    if (!target) return NULL;
    char b[80];
    if (!is_name(cur(c), "in")) return perr(c, cur(c), LLMOPS_ERR_FORMAT, "expected 'in', got %s", tok_desc(cur(c), b, sizeof b));
    c->p++;
    node *iter = parse_tuple(c, 1, false, "recursive");
    if (!iter) return NULL;
    node *test = NULL;
    if (is_name(cur(c), "if")) {
        c->p++;
        if (!(test = parse_expression(c, true))) return NULL;
    }
    if (is_name(cur(c), "recursive")) return perr(c, cur(c), LLMOPS_ERR_UNSUPPORTED, "unsupported recursive for loop");
    if (!expect_end(c, "for")) return NULL;
    n->a = target;
    n->b = iter;
    n->c = test;
    nvec body = {0}, eb = {0};
    c->loops++;
    bool ok = parse_body(c, &body, ends);
    c->loops--;
    if (!ok) return NULL;
    const token *e = take_end_tag(c);
    if (is_name(e, "else")) {
        if (!expect_end(c, "else")) return NULL;
        if (!parse_body(c, &eb, endfor)) return NULL;
        take_end_tag(c);
    }
    if (!expect_end(c, "endfor")) return NULL;
    n->items = nvec_list(body);
    n->items2 = nvec_list(eb);
    return n;
}

static node *parse_block_until(cctx *c, node *n, const char *end) {
    const char *ends[] = {end, NULL};
    nvec body = {0};
    int saved = c->loops;
    if (n->kind == S_MACRO) c->loops = 0;
    bool ok = parse_body(c, &body, ends);
    c->loops = saved;
    if (!ok) return NULL;
    take_end_tag(c);
    if (!expect_end(c, end)) return NULL;
    n->items = nvec_list(body);
    return n;
}

static node *parse_set(cctx *c, size_t pos) {
    node *target = parse_assign_target(c, true, NULL);
    if (!target) return NULL;
    if (is_op(cur(c), O_ASSIGN)) {
        c->p++;
        node *v = parse_tuple(c, 0, false, NULL);
        if (!v || !expect_end(c, "set")) return NULL;
        node *n = nnew(c, S_SET, pos);
        if (!n) return NULL;
        n->a = target;
        n->b = v;
        return n;
    }
    node *n = nnew(c, S_SETBLOCK, pos);
    if (!n) return NULL;
    n->a = target;
    if (is_op(cur(c), O_PIPE)) {
        if (!(n->b = parse_filter(c, NULL, false))) return NULL;
    }
    if (!expect_end(c, "set")) return NULL;
    return parse_block_until(c, n, "endset");
}

static node *parse_macro(cctx *c, size_t pos) {
    token *nm = cur(c);
    char b[80];
    if (nm->kind != T_NAME) return perr(c, nm, LLMOPS_ERR_FORMAT, "expected a macro name, got %s", tok_desc(nm, b, sizeof b));
    c->p++;
    node *n = nnew(c, S_MACRO, pos);
    if (!n) return NULL;
    n->name = nm->s;
    n->name_len = nm->n;
    if (!expect_op(c, O_LPAREN)) return NULL;
    nvec defaults = {0};
    const char *names[64];
    size_t lens[64], np = 0;
    while (!is_op(cur(c), O_RPAREN)) {
        if (np && !expect_op(c, O_COMMA)) return NULL;
        if (is_op(cur(c), O_RPAREN)) break;
        token *a = cur(c);
        if (a->kind != T_NAME) return perr(c, a, LLMOPS_ERR_FORMAT, "expected a parameter name, got %s", tok_desc(a, b, sizeof b));
        if (np >= 64) return perr(c, a, LLMOPS_ERR_LIMIT, "too many macro parameters");
        c->p++;
        node *d = NULL;
        if (is_op(cur(c), O_ASSIGN)) {
            c->p++;
            if (!(d = parse_expression(c, true))) return NULL;
        } else if (defaults.n && defaults.v[defaults.n - 1]) {
            return perr(c, a, LLMOPS_ERR_FORMAT, "non-default argument follows default argument");
        }
        names[np] = a->s;
        lens[np++] = a->n;
        if (!nvec_push(c, &defaults, d)) return NULL;
    }
    c->p++;
    if (!expect_end(c, "macro")) return NULL;
    n->kw = carena(c, (np ? np : 1) * sizeof *n->kw);
    n->kwlen = carena(c, (np ? np : 1) * sizeof *n->kwlen);
    if (!n->kw || !n->kwlen) return nomem(c);
    memcpy(n->kw, names, np * sizeof *names);
    memcpy(n->kwlen, lens, np * sizeof *lens);
    n->items2 = nvec_list(defaults);
    return parse_block_until(c, n, "endmacro");
}

static node *parse_with(cctx *c, size_t pos) {
    node *n = nnew(c, S_WITH, pos);
    if (!n) return NULL;
    nvec targets = {0}, vals = {0};
    while (cur(c)->kind != T_BLOCK_END) {
        if (targets.n && !expect_op(c, O_COMMA)) return NULL;
        node *t = parse_assign_target(c, false, NULL);
        if (!t || !expect_op(c, O_ASSIGN)) return NULL;
        node *v = parse_expression(c, true);
        if (!v || !nvec_push(c, &targets, t) || !nvec_push(c, &vals, v)) return NULL;
    }
    c->p++;
    n->a = NULL;
    nvec body = {0};
    static const char *const ends[] = {"endwith", NULL};
    if (!parse_body(c, &body, ends)) return NULL;
    take_end_tag(c);
    if (!expect_end(c, "endwith")) return NULL;
    n->items = nvec_list(body);
    n->items2 = nvec_list(vals);
    /* targets ride in a tuple node */
    node *tt = nnew(c, E_TUPLE, pos);
    if (!tt) return NULL;
    tt->items = nvec_list(targets);
    n->b = tt;
    return n;
}

static node *parse_statement(cctx *c) {
    token *t = cur(c);
    char b[80];
    if (t->kind != T_NAME) return perr(c, t, LLMOPS_ERR_FORMAT, "tag name expected, got %s", tok_desc(t, b, sizeof b));
    size_t pos = c->tok[c->p - 1].pos;
    c->p++;
    if (is_name(t, "if")) return parse_if(c, pos);
    if (is_name(t, "for")) return parse_for(c, pos);
    if (is_name(t, "set")) return parse_set(c, pos);
    if (is_name(t, "macro")) return parse_macro(c, pos);
    if (is_name(t, "with")) return parse_with(c, pos);
    if (is_name(t, "filter")) {
        node *n = nnew(c, S_FILTERBLOCK, pos);
        if (!n || !(n->b = parse_filter(c, NULL, true)) || !expect_end(c, "filter")) return NULL;
        return parse_block_until(c, n, "endfilter");
    }
    if (is_name(t, "generation")) {
        node *n = nnew(c, S_BLOCK, pos);
        if (!n || !expect_end(c, "generation")) return NULL;
        return parse_block_until(c, n, "endgeneration");
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!c->loops) return perr(c, t, LLMOPS_ERR_FORMAT, "'%.*s' outside of a for loop", (int)t->n, t->s);
        node *n = nnew(c, is_name(t, "break") ? S_BREAK : S_CONTINUE, pos);
        if (!n || !expect_end(c, is_name(t, "break") ? "break" : "continue")) return NULL;
        return n;
    }
    static const char *const known[] = {"call", "raw", "include", "import", "from", "extends",
                                        "block", "autoescape", "print", "do", NULL};
    if (in_list(t, known))
        return perr(c, t, LLMOPS_ERR_UNSUPPORTED, "unsupported tag '%.*s'", (int)t->n, t->s);
    return perr(c, t, LLMOPS_ERR_FORMAT, "encountered unknown tag '%.*s'", (int)(t->n > 60 ? 60 : t->n), t->s);
}

/* ---- compile ---------------------------------------------------------------- */

void llmops_chat_template_free(llmops_chat_template *t) {
    if (!t) return;
    llmops_arena_free(t->arena);
    llmops_free(t);
}

llmops_status llmops_chat_template_compile(const char *text, size_t len, llmops_chat_template **out,
                                           llmops_error *err) {
    if (!out || (!text && len)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: no text");
    *out = NULL;
    if (len > UINT32_MAX / 2) return llmops_error_set(err, LLMOPS_ERR_LIMIT, "chat template: larger than 2 GiB");
    llmops_chat_template *t = llmops_calloc(1, sizeof *t);
    if (!t) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
    t->arena = llmops_arena_create(len * 2 + 4096, 0);
    cctx c = {.t = t, .err = err};
    llmops_status st = LLMOPS_OK;
    if (!t->arena || !(t->src = carena(&c, len + 1))) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
        t->len = 0;
        goto fail;
    }
    /* jinja2 normalises \r\n and \r to \n and drops one trailing newline */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r') {
            t->src[o++] = '\n';
            if (i + 1 < len && text[i + 1] == '\n') i++;
        } else {
            t->src[o++] = text[i];
        }
    }
    if (o && t->src[o - 1] == '\n') o--;
    t->src[o] = 0;
    t->len = o;
    size_t bad = utf8_check(t->src, t->len);
    if (bad < t->len) {
        st = cerr(&c, bad, LLMOPS_ERR_FORMAT, "invalid UTF-8");
        goto fail;
    }
    if ((st = lex(&c))) goto fail;
    nvec body = {0};
    if (!parse_body(&c, &body, NULL)) {
        st = c.st;
        goto fail;
    }
    if (cur(&c)->kind != T_EOF) {
        char b[80];
        perr(&c, cur(&c), LLMOPS_ERR_FORMAT, "unexpected %s", tok_desc(cur(&c), b, sizeof b));
        st = c.st;
        goto fail;
    }
    t->body = nvec_list(body);
    llmops_free(c.tok);
    *out = t;
    return LLMOPS_OK;
fail:
    llmops_free(c.tok);
    llmops_chat_template_free(t);
    return st;
}

/* ========================================================================== */
/* 4. runtime                                                                 */
/* ========================================================================== */

typedef struct scope {
    struct scope *parent;
    vdict *vars;
} scope;

typedef struct rctx {
    const llmops_chat_template *t;
    llmops_arena *arena;
    size_t mem, max_mem;
    llmops_error *err;
    llmops_status st;
    scope *root, *sc;
    vdict *ctxvars;
    struct sb *out;
    size_t max_output;
    uint64_t steps, max_steps;
    int depth;
    int64_t now;
} rctx;

enum { FN_RAISE, FN_STRFTIME, FN_NAMESPACE, FN_RANGE, FN_DICT, FN_LIPSUM, FN_CYCLER, FN_JOINER, FN_COUNT_ };
static const char *const g_funcs[FN_COUNT_] = {"raise_exception", "strftime_now", "namespace", "range",
                                               "dict", "lipsum", "cycler", "joiner"};

static int rerr(rctx *c, const node *n, llmops_status code, const char *fmt, ...) LLMOPS_PRINTF(4, 5);
static int rerr(rctx *c, const node *n, llmops_status code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->st = code;
    if (n) {
        int line, col;
        line_col(c->t->src, c->t->len, n->pos, &line, &col);
        llmops_error_set(c->err, code, "chat template %d:%d: %s", line, col, msg);
    } else {
        llmops_error_set(c->err, code, "chat template: %s", msg);
    }
    return -1;
}

static void *ralloc(rctx *c, size_t size) {
    if (size > c->max_mem || c->mem > c->max_mem - size) {
        rerr(c, NULL, LLMOPS_ERR_LIMIT, "render needs more than %zu bytes of memory", c->max_mem);
        return NULL;
    }
    void *p = llmops_arena_alloc(c->arena, size ? size : 1, 8);
    if (!p) {
        rerr(c, NULL, LLMOPS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->mem += size;
    return p;
}

static int step(rctx *c, const node *n) {
    if (++c->steps > c->max_steps)
        return rerr(c, n, LLMOPS_ERR_LIMIT, "template ran more than %llu steps", (unsigned long long)c->max_steps);
    return 0;
}

/* ---- string builder (arena) --------------------------------------------------- */

typedef struct sb {
    rctx *c;
    char *p;
    size_t n, cap;
} sb;

static int sb_put(sb *b, const char *s, size_t n) {
    if (b->n + n > b->cap) {
        if (b->n + n > b->c->max_output)
            return rerr(b->c, NULL, LLMOPS_ERR_LIMIT, "a string exceeds the output cap of %zu bytes", b->c->max_output);
        size_t ncap = b->cap ? b->cap * 2 : 64;
        while (ncap < b->n + n) ncap *= 2;
        char *np = ralloc(b->c, ncap + 1);
        if (!np) return -1;
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = ncap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}
static int sb_puts(sb *b, const char *s) { return sb_put(b, s, strlen(s)); }
static int sb_cp(sb *b, uint32_t cp) {
    char u[4];
    return sb_put(b, u, utf8_enc(cp, u));
}
static value sb_value(sb *b) { return mk_str(b->p ? b->p : "", b->n); }

/* ---- containers ----------------------------------------------------------------- */

static vlist *list_new(rctx *c, size_t cap) {
    vlist *l = ralloc(c, sizeof *l);
    if (!l) return NULL;
    l->n = 0;
    l->cap = cap;
    l->lt = LT_LIST;
    l->consumed = 0;
    l->v = cap ? ralloc(c, cap * sizeof *l->v) : NULL;
    if (cap && !l->v) return NULL;
    return l;
}

static int list_push(rctx *c, vlist *l, value v) {
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        value *nv = ralloc(c, ncap * sizeof *nv);
        if (!nv) return -1;
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = v;
    return 0;
}

static value mk_list(vlist *l, bool tuple) {
    value v = {.kind = V_LIST, .tuple = tuple};
    v.u.l = l;
    return v;
}

static vdict *dict_new(rctx *c) {
    vdict *d = ralloc(c, sizeof *d);
    if (d) memset(d, 0, sizeof *d);
    return d;
}

static bool py_eq(const value *a, const value *b, int depth);

static value *dict_find(const vdict *d, const value *k) {
    for (size_t i = 0; i < d->n; i++)
        if (py_eq(&d->k[i], k, 0)) return &d->v[i];
    return NULL;
}

static value *dict_find_str(const vdict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].kind == V_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, s, n) == 0) return &d->v[i];
    return NULL;
}

static int dict_set(rctx *c, vdict *d, value k, value v) {
    value *slot = k.kind == V_STR ? dict_find_str(d, k.u.s.p, k.u.s.n) : dict_find(d, &k);
    if (slot) {
        *slot = v;
        return 0;
    }
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        value *nk = ralloc(c, ncap * sizeof *nk), *nv = ralloc(c, ncap * sizeof *nv);
        if (!nk || !nv) return -1;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = ncap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
    return 0;
}

static int dict_set_str(rctx *c, vdict *d, const char *s, size_t n, value v) {
    return dict_set(c, d, mk_str(s, n), v);
}

static value mk_dict(vdict *d, int kind) {
    value v = {.kind = (uint8_t)kind};
    v.u.d = d;
    return v;
}

static value mk_undef_fmt(rctx *c, const char *fmt, ...) LLMOPS_PRINTF(2, 3);
static value mk_undef_fmt(rctx *c, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    char *p = llmops_arena_alloc(c->arena, (size_t)n + 1, 1);
    if (!p) return UNDEF; /* the message is only a hint */
    memcpy(p, buf, (size_t)n + 1);
    return mk_undef(p, (size_t)n);
}

static int undef_err(rctx *c, const node *n, const value *u) {
    if (u->u.s.p && u->u.s.n) return rerr(c, n, LLMOPS_ERR_FORMAT, "%.*s", (int)u->u.s.n, u->u.s.p);
    return rerr(c, n, LLMOPS_ERR_FORMAT, "value is undefined");
}

/* ---- types, truth, equality ------------------------------------------------------ */

static const char *type_name(const value *v) {
    switch (v->kind) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST:
        switch (v->u.l->lt) {
        case LT_GEN: return "generator";
        case LT_VIEW: return "dict_items";
        case LT_RANGE: return "range";
        default: return v->tuple ? "tuple" : "list";
        }
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_MACRO: return "Macro";
    case V_FUNC: return "function";
    case V_METHOD: return "builtin_function_or_method";
    default: return "LoopContext";
    }
}

static bool truthy(const value *v) {
    switch (v->kind) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v->u.b;
    case V_INT: return v->u.i != 0;
    case V_FLOAT: return v->u.f != 0.0;
    case V_STR: return v->u.s.n != 0;
    case V_LIST: return v->u.l->lt == LT_GEN || v->u.l->n != 0;
    case V_DICT: return v->u.d->n != 0;
    default: return true;
    }
}

static bool is_num(const value *v) { return v->kind == V_BOOL || v->kind == V_INT || v->kind == V_FLOAT; }
static double num_f(const value *v) {
    return v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t num_i(const value *v) { return v->kind == V_INT ? v->u.i : v->u.b; }

static bool py_eq(const value *a, const value *b, int depth) {
    if (depth > CT_MAX_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        if (a->kind == V_FLOAT || b->kind == V_FLOAT) {
            /* exact int/float comparison as Python does */
            if (a->kind != V_FLOAT) { const value *t = a; a = b; b = t; }
            if (b->kind == V_FLOAT) return a->u.f == b->u.f;
            double f = a->u.f;
            int64_t i = num_i(b);
            if (f != f || f < -9.3e18 || f > 9.3e18) return false;
            if (f != floor(f)) return false;
            return (double)i == f && (int64_t)f == i;
        }
        return num_i(a) == num_i(b);
    }
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case V_LIST:
        if (a->u.l->lt != LT_LIST || b->u.l->lt != LT_LIST) return a->u.l == b->u.l;
        if (a->tuple != b->tuple || a->u.l->n != b->u.l->n) return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!py_eq(&a->u.l->v[i], &b->u.l->v[i], depth + 1)) return false;
        return true;
    case V_DICT:
        if (a->u.d->n != b->u.d->n) return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            value *o = dict_find(b->u.d, &a->u.d->k[i]);
            if (!o || !py_eq(&a->u.d->v[i], o, depth + 1)) return false;
        }
        return true;
    case V_NS: return a->u.d == b->u.d;
    case V_MACRO: return a->u.m == b->u.m;
    case V_FUNC: return a->u.fn == b->u.fn;
    case V_LOOP: return a->u.loop == b->u.loop;
    default: return false;
    }
}

/* Python ordering (<): numbers, strings (code point order), lists/tuples. */
static int py_cmp(rctx *c, const node *n, const value *a, const value *b, const char *op, int *out) {
    if (a->kind == V_UNDEF) return undef_err(c, n, a);
    if (b->kind == V_UNDEF) return undef_err(c, n, b);
    if (is_num(a) && is_num(b)) {
        if (a->kind != V_FLOAT && b->kind != V_FLOAT) {
            int64_t x = num_i(a), y = num_i(b);
            *out = x < y ? -1 : x > y;
        } else {
            double x = num_f(a), y = num_f(b);
            *out = x < y ? -1 : x > y ? 1 : x == y ? 0 : 2; /* 2: unordered (nan) */
        }
        return 0;
    }
    if (a->kind == V_STR && b->kind == V_STR) {
        size_t m = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int r = memcmp(a->u.s.p, b->u.s.p, m);
        *out = r < 0 ? -1 : r > 0 ? 1 : a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
        return 0;
    }
    if (a->kind == V_LIST && b->kind == V_LIST && a->tuple == b->tuple) {
        size_t i = 0;
        for (; i < a->u.l->n && i < b->u.l->n; i++) {
            if (py_eq(&a->u.l->v[i], &b->u.l->v[i], 0)) continue;
            return py_cmp(c, n, &a->u.l->v[i], &b->u.l->v[i], op, out);
        }
        *out = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n;
        return 0;
    }
    return rerr(c, n, LLMOPS_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'", op,
                type_name(a), type_name(b));
}

/* ---- str() and repr() ------------------------------------------------------------- */

/* Python's repr(float): the shortest string that round-trips. */
static void float_repr(double x, char *out, size_t sz) {
    if (x != x) { snprintf(out, sz, "nan"); return; }
    if (isinf(x)) { snprintf(out, sz, x < 0 ? "-inf" : "inf"); return; }
    if (x == 0) { snprintf(out, sz, signbit(x) ? "-0.0" : "0.0"); return; }
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *q = buf;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int e = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = e + 1;
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (decpt <= -4 || decpt > 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(out + o, sz - o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -decpt; i++) out[o++] = '0';
        memcpy(out + o, digits, nd);
        o += nd;
    } else if ((size_t)decpt >= nd) {
        memcpy(out + o, digits, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)decpt; i++) out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    } else {
        memcpy(out + o, digits, (size_t)decpt);
        o += (size_t)decpt;
        out[o++] = '.';
        memcpy(out + o, digits + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    }
    out[o] = 0;
}

static bool py_isprintable(uint32_t cp) {
    if (cp == ' ') return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default: return true;
    }
}

static int repr_str(sb *b, const char *p, size_t n) {
    bool has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (sb_put(b, &q, 1)) return -1;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_dec(p + i, n - i, &l);
        char tmp[16];
        int r;
        if (cp == (uint32_t)q || cp == '\\') { tmp[0] = '\\'; tmp[1] = (char)cp; r = sb_put(b, tmp, 2); }
        else if (cp == '\t') r = sb_puts(b, "\\t");
        else if (cp == '\n') r = sb_puts(b, "\\n");
        else if (cp == '\r') r = sb_puts(b, "\\r");
        else if (cp < ' ' || cp == 0x7f) { snprintf(tmp, sizeof tmp, "\\x%02x", cp); r = sb_puts(b, tmp); }
        else if (cp < 0x7f || py_isprintable(cp)) r = sb_put(b, p + i, l);
        else {
            snprintf(tmp, sizeof tmp, cp <= 0xff ? "\\x%02x" : cp <= 0xffff ? "\\u%04x" : "\\U%08x", cp);
            r = sb_puts(b, tmp);
        }
        if (r) return -1;
        i += l;
    }
    return sb_put(b, &q, 1);
}

static int to_str_sb(rctx *c, const node *n, const value *v, sb *b, bool repr, int depth);

static int to_str_sb(rctx *c, const node *n, const value *v, sb *b, bool repr, int depth) {
    char tmp[64];
    if (depth > CT_MAX_DEPTH) return rerr(c, n, LLMOPS_ERR_LIMIT, "value nested too deeply to print");
    switch (v->kind) {
    case V_UNDEF: return repr ? sb_puts(b, "Undefined") : 0;
    case V_NONE: return sb_puts(b, "None");
    case V_BOOL: return sb_puts(b, v->u.b ? "True" : "False");
    case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_puts(b, tmp);
    case V_FLOAT: float_repr(v->u.f, tmp, sizeof tmp); return sb_puts(b, tmp);
    case V_STR:
        if (!repr) return sb_put(b, v->u.s.p, v->u.s.n);
        if (v->safe && sb_puts(b, "Markup(")) return -1;
        if (repr_str(b, v->u.s.p, v->u.s.n)) return -1;
        return v->safe ? sb_puts(b, ")") : 0;
    case V_LIST: {
        if (v->u.l->lt != LT_LIST)
            return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: printing a %s object", type_name(v));
        if (sb_puts(b, v->tuple ? "(" : "[")) return -1;
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i && sb_puts(b, ", ")) return -1;
            if (to_str_sb(c, n, &v->u.l->v[i], b, true, depth + 1)) return -1;
        }
        if (v->tuple && v->u.l->n == 1 && sb_puts(b, ",")) return -1;
        return sb_puts(b, v->tuple ? ")" : "]");
    }
    case V_DICT: case V_NS: {
        if (v->kind == V_NS && sb_puts(b, "<Namespace ")) return -1;
        if (sb_puts(b, "{")) return -1;
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i && sb_puts(b, ", ")) return -1;
            if (to_str_sb(c, n, &v->u.d->k[i], b, true, depth + 1) || sb_puts(b, ": ") ||
                to_str_sb(c, n, &v->u.d->v[i], b, true, depth + 1))
                return -1;
        }
        if (sb_puts(b, "}")) return -1;
        return v->kind == V_NS ? sb_puts(b, ">") : 0;
    }
    default:
        return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: converting a %s to a string", type_name(v));
    }
}

/* str(v) as a string value; strings come back as they are (Markup kept). */
static int to_str(rctx *c, const node *n, const value *v, value *out) {
    if (v->kind == V_STR) {
        *out = *v;
        return 0;
    }
    sb b = {.c = c};
    if (to_str_sb(c, n, v, &b, false, 0)) return -1;
    *out = sb_value(&b);
    return 0;
}

/* markupsafe.escape */
static int html_escape(rctx *c, const value *in, value *out) {
    sb b = {.c = c};
    for (size_t i = 0; i < in->u.s.n; i++) {
        char ch = in->u.s.p[i];
        const char *r = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&#34;" : ch == '\'' ? "&#39;" : NULL;
        if (r ? sb_puts(&b, r) : sb_put(&b, &ch, 1)) return -1;
    }
    *out = sb_value(&b);
    out->safe = 1;
    return 0;
}

static int concat2(rctx *c, const value *a, const value *b, value *out) {
    sb s = {.c = c};
    if (sb_put(&s, a->u.s.p, a->u.s.n) || sb_put(&s, b->u.s.p, b->u.s.n)) return -1;
    *out = sb_value(&s);
    return 0;
}

/* ---- code point sequences ------------------------------------------------------------ */

/* Byte offsets of each code point of s, plus the end: (count + 1) entries. */
static int cp_index(rctx *c, const value *s, size_t **idx, size_t *count) {
    size_t n = utf8_count(s->u.s.p, s->u.s.n);
    size_t *ix = ralloc(c, (n + 1) * sizeof *ix);
    if (!ix) return -1;
    size_t k = 0;
    for (size_t i = 0; i < s->u.s.n; i++)
        if (((unsigned char)s->u.s.p[i] & 0xC0) != 0x80) ix[k++] = i;
    ix[n] = s->u.s.n;
    *idx = ix;
    *count = n;
    return 0;
}

/* Python slice indices for a sequence of length len. */
static int slice_indices(rctx *c, const node *n, const value *sv, size_t len, int64_t out[3]) {
    int64_t step = 1, start, stop;
    for (int i = 0; i < 3; i++)
        if (sv[i].kind != V_NONE && sv[i].kind != V_INT && sv[i].kind != V_BOOL)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "slice indices must be integers or None");
    if (sv[2].kind != V_NONE) step = num_i(&sv[2]);
    if (step == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "slice step cannot be zero");
    int64_t L = (int64_t)len;
    if (sv[0].kind == V_NONE) start = step < 0 ? L - 1 : 0;
    else {
        start = num_i(&sv[0]);
        if (start < 0) { start += L; if (start < 0) start = step < 0 ? -1 : 0; }
        else if (start >= L) start = step < 0 ? L - 1 : L;
    }
    if (sv[1].kind == V_NONE) stop = step < 0 ? -1 : L;
    else {
        stop = num_i(&sv[1]);
        if (stop < 0) { stop += L; if (stop < 0) stop = step < 0 ? -1 : 0; }
        else if (stop >= L) stop = step < 0 ? L - 1 : L;
    }
    out[0] = start;
    out[1] = stop;
    out[2] = step;
    return 0;
}

static int do_slice(rctx *c, const node *n, const value *obj, const value *sv, value *out) {
    int64_t ix[3];
    if (obj->kind == V_STR) {
        size_t *cps, cnt;
        if (cp_index(c, obj, &cps, &cnt) || slice_indices(c, n, sv, cnt, ix)) return -1;
        sb b = {.c = c};
        for (int64_t i = ix[0]; ix[2] > 0 ? i < ix[1] : i > ix[1]; i += ix[2])
            if (sb_put(&b, obj->u.s.p + cps[i], cps[i + 1] - cps[i])) return -1;
        *out = sb_value(&b);
        return 0;
    }
    if (obj->kind == V_LIST) {
        if (slice_indices(c, n, sv, obj->u.l->n, ix)) return -1;
        vlist *l = list_new(c, 0);
        if (!l) return -1;
        for (int64_t i = ix[0]; ix[2] > 0 ? i < ix[1] : i > ix[1]; i += ix[2])
            if (list_push(c, l, obj->u.l->v[i])) return -1;
        *out = mk_list(l, obj->tuple);
        return 0;
    }
    if (obj->kind == V_UNDEF) return undef_err(c, n, obj);
    *out = mk_undef_fmt(c, "'%s object' has no attribute 'slice'", type_name(obj));
    return 0;
}

/* Iterates v as Python's iter(): list items, dict keys, string characters;
 * undefined is empty. */
static int iterate(rctx *c, const node *n, const value *v, vlist **out) {
    switch (v->kind) {
    case V_UNDEF: return (*out = list_new(c, 0)) ? 0 : -1;
    case V_LIST:
        if (v->u.l->lt == LT_GEN) {
            if (v->u.l->consumed) return (*out = list_new(c, 0)) ? 0 : -1;
            v->u.l->consumed = 1;
        }
        *out = v->u.l;
        return 0;
    case V_DICT: {
        vlist *l = list_new(c, v->u.d->n);
        if (!l) return -1;
        for (size_t i = 0; i < v->u.d->n; i++) l->v[l->n++] = v->u.d->k[i];
        *out = l;
        return 0;
    }
    case V_STR: {
        vlist *l = list_new(c, 0);
        if (!l) return -1;
        for (size_t i = 0; i < v->u.s.n;) {
            size_t len;
            utf8_dec(v->u.s.p + i, v->u.s.n - i, &len);
            value ch = mk_str(v->u.s.p + i, len);
            ch.safe = v->safe;
            if (list_push(c, l, ch)) return -1;
            i += len;
        }
        *out = l;
        return 0;
    }
    default:
        return rerr(c, n, LLMOPS_ERR_FORMAT, "'%s' object is not iterable", type_name(v));
    }
}

static int py_len(rctx *c, const node *n, const value *v, int64_t *out) {
    switch (v->kind) {
    case V_UNDEF: *out = 0; return 0;
    case V_STR: *out = (int64_t)utf8_count(v->u.s.p, v->u.s.n); return 0;
    case V_LIST:
        if (v->u.l->lt == LT_GEN) return rerr(c, n, LLMOPS_ERR_FORMAT, "object of type 'generator' has no len()");
        *out = (int64_t)v->u.l->n;
        return 0;
    case V_DICT: *out = (int64_t)v->u.d->n; return 0;
    case V_LOOP: *out = (int64_t)v->u.loop->items->n; return 0;
    default: return rerr(c, n, LLMOPS_ERR_FORMAT, "object of type '%s' has no len()", type_name(v));
    }
}

/* ---- attributes and items (jinja2 sandbox semantics) ------------------------------ */

enum { MT_STR = 1, MT_DICT = 2, MT_LIST = 4, MT_TUPLE = 8, MT_LOOP = 16 };

enum {
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER,
    M_TITLE, M_CAPITALIZE, M_REPLACE, M_FIND, M_RFIND, M_COUNT, M_JOIN, M_FORMAT, M_SPLITLINES,
    M_ISDIGIT, M_ISALPHA, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_ISALNUM, M_REMOVEPREFIX,
    M_REMOVESUFFIX, M_GET, M_ITEMS, M_KEYS, M_VALUES, M_COPY, M_INDEX, M_CYCLE,
    M_IMPLEMENTED_,
    /* attributes that exist in Python but are not implemented (calling them is an error) */
    M_CASEFOLD = M_IMPLEMENTED_, M_CENTER, M_ENCODE, M_EXPANDTABS, M_FORMAT_MAP, M_ISASCII,
    M_ISDECIMAL, M_ISIDENTIFIER, M_ISNUMERIC, M_ISPRINTABLE, M_ISTITLE, M_LJUST, M_MAKETRANS,
    M_PARTITION, M_RINDEX, M_RJUST, M_RPARTITION, M_SWAPCASE, M_TRANSLATE, M_ZFILL, M_FROMKEYS,
    M_CHANGED,
    /* methods the immutable sandbox refuses (they read as undefined) */
    M_CLEAR, M_POP, M_POPITEM, M_SETDEFAULT, M_UPDATE, M_APPEND, M_EXTEND, M_INSERT, M_REMOVE,
    M_REVERSE, M_SORT,
    M_COUNT_
};

typedef struct {
    const char *name;
    uint8_t ok;       /* types having the method                                */
    uint8_t unsafe;   /* types where the sandbox refuses it                     */
} mdef;

static const mdef g_methods[M_COUNT_] = {
    {"strip", MT_STR, 0}, {"lstrip", MT_STR, 0}, {"rstrip", MT_STR, 0}, {"split", MT_STR, 0},
    {"rsplit", MT_STR, 0}, {"startswith", MT_STR, 0}, {"endswith", MT_STR, 0}, {"upper", MT_STR, 0},
    {"lower", MT_STR, 0}, {"title", MT_STR, 0}, {"capitalize", MT_STR, 0}, {"replace", MT_STR, 0},
    {"find", MT_STR, 0}, {"rfind", MT_STR, 0}, {"count", MT_STR | MT_LIST | MT_TUPLE, 0},
    {"join", MT_STR, 0}, {"format", MT_STR, 0}, {"splitlines", MT_STR, 0}, {"isdigit", MT_STR, 0},
    {"isalpha", MT_STR, 0}, {"isspace", MT_STR, 0}, {"islower", MT_STR, 0}, {"isupper", MT_STR, 0},
    {"isalnum", MT_STR, 0}, {"removeprefix", MT_STR, 0}, {"removesuffix", MT_STR, 0},
    {"get", MT_DICT, 0}, {"items", MT_DICT, 0}, {"keys", MT_DICT, 0}, {"values", MT_DICT, 0},
    {"copy", MT_DICT | MT_LIST, 0}, {"index", MT_STR | MT_LIST | MT_TUPLE, 0}, {"cycle", MT_LOOP, 0},
    {"casefold", MT_STR, 0}, {"center", MT_STR, 0}, {"encode", MT_STR, 0}, {"expandtabs", MT_STR, 0},
    {"format_map", MT_STR, 0}, {"isascii", MT_STR, 0}, {"isdecimal", MT_STR, 0},
    {"isidentifier", MT_STR, 0}, {"isnumeric", MT_STR, 0}, {"isprintable", MT_STR, 0},
    {"istitle", MT_STR, 0}, {"ljust", MT_STR, 0}, {"maketrans", MT_STR, 0}, {"partition", MT_STR, 0},
    {"rindex", MT_STR, 0}, {"rjust", MT_STR, 0}, {"rpartition", MT_STR, 0}, {"swapcase", MT_STR, 0},
    {"translate", MT_STR, 0}, {"zfill", MT_STR, 0}, {"fromkeys", MT_DICT, 0}, {"changed", MT_LOOP, 0},
    {"clear", 0, MT_DICT | MT_LIST}, {"pop", 0, MT_DICT | MT_LIST}, {"popitem", 0, MT_DICT},
    {"setdefault", 0, MT_DICT}, {"update", 0, MT_DICT}, {"append", 0, MT_LIST},
    {"extend", 0, MT_LIST}, {"insert", 0, MT_LIST}, {"remove", 0, MT_LIST}, {"reverse", 0, MT_LIST},
    {"sort", 0, MT_LIST},
};

static int type_mask(const value *v) {
    switch (v->kind) {
    case V_STR: return MT_STR;
    case V_DICT: return MT_DICT;
    case V_LIST: return v->tuple ? MT_TUPLE : MT_LIST;
    case V_LOOP: return MT_LOOP;
    default: return 0;
    }
}

/* 1: *out is the bound method (or the sandbox's undefined); 0: no such method. */
static int find_method(rctx *c, const value *obj, const char *name, size_t len, value *out) {
    int tm = type_mask(obj);
    if (!tm) return 0;
    for (int i = 0; i < M_COUNT_; i++) {
        const mdef *m = &g_methods[i];
        if (strlen(m->name) != len || memcmp(m->name, name, len) != 0) continue;
        if (m->unsafe & tm) {
            *out = mk_undef_fmt(c, "access to attribute '%s' of '%s' object is unsafe", m->name, type_name(obj));
            return 1;
        }
        if (!(m->ok & tm)) return 0;
        vmethod *vm = ralloc(c, sizeof *vm);
        if (!vm) return -1;
        vm->self = *obj;
        vm->id = i;
        value v = {.kind = V_METHOD};
        v.u.meth = vm;
        *out = v;
        return 1;
    }
    return 0;
}

static int loop_attr(rctx *c, const value *obj, const char *name, size_t len, value *out) {
    const loopctx *L = obj->u.loop;
    int64_t i = (int64_t)L->i, n = (int64_t)L->items->n;
#define IS(s) (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
    if (IS("index0")) *out = mk_int(i);
    else if (IS("index")) *out = mk_int(i + 1);
    else if (IS("revindex")) *out = mk_int(n - i);
    else if (IS("revindex0")) *out = mk_int(n - i - 1);
    else if (IS("first")) *out = mk_bool(i == 0);
    else if (IS("last")) *out = mk_bool(i == n - 1);
    else if (IS("length")) *out = mk_int(n);
    else if (IS("depth")) *out = mk_int(1);
    else if (IS("depth0")) *out = mk_int(0);
    else if (IS("previtem")) *out = i > 0 ? L->items->v[i - 1] : mk_undef_fmt(c, "there is no previous item");
    else if (IS("nextitem")) *out = i + 1 < n ? L->items->v[i + 1] : mk_undef_fmt(c, "there is no next item");
    else {
        int r = find_method(c, obj, name, len, out);
        if (r < 0) return -1;
        if (!r) *out = mk_undef_fmt(c, "'LoopContext object' has no attribute '%.*s'", (int)len, name);
    }
#undef IS
    return 0;
}

static int get_attr(rctx *c, const node *n, const value *obj, const char *name, size_t len, value *out) {
    if (obj->kind == V_UNDEF) return undef_err(c, n, obj);
    if (len >= 2 && name[0] == '_' && name[1] == '_') {
        *out = mk_undef_fmt(c, "access to attribute '%.*s' is unsafe", (int)len, name);
        return 0;
    }
    if (obj->kind == V_LOOP) return loop_attr(c, obj, name, len, out);
    if (obj->kind == V_NS) {
        value *v = dict_find_str(obj->u.d, name, len);
        *out = v ? *v : mk_undef_fmt(c, "'Namespace object' has no attribute '%.*s'", (int)len, name);
        return 0;
    }
    int r = find_method(c, obj, name, len, out);
    if (r) return r < 0 ? -1 : 0;
    if (obj->kind == V_DICT) {
        value *v = dict_find_str(obj->u.d, name, len);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    *out = mk_undef_fmt(c, "'%s object' has no attribute '%.*s'", type_name(obj), (int)(len > 100 ? 100 : len), name);
    return 0;
}

static int get_item(rctx *c, const node *n, const value *obj, const value *key, value *out) {
    if (obj->kind == V_UNDEF) return undef_err(c, n, obj);
    if (obj->kind == V_DICT) {
        value *v = key->kind == V_STR ? dict_find_str(obj->u.d, key->u.s.p, key->u.s.n) : dict_find(obj->u.d, key);
        if (v) {
            *out = *v;
            return 0;
        }
    } else if (((obj->kind == V_LIST && (obj->u.l->lt == LT_LIST || obj->u.l->lt == LT_RANGE)) || obj->kind == V_STR) &&
               (key->kind == V_INT || key->kind == V_BOOL)) {
        int64_t i = num_i(key);
        if (obj->kind == V_LIST) {
            int64_t len = (int64_t)obj->u.l->n;
            if (i < 0) i += len;
            if (i >= 0 && i < len) {
                *out = obj->u.l->v[i];
                return 0;
            }
        } else {
            size_t *cps, cnt;
            if (cp_index(c, obj, &cps, &cnt)) return -1;
            if (i < 0) i += (int64_t)cnt;
            if (i >= 0 && i < (int64_t)cnt) {
                *out = mk_str(obj->u.s.p + cps[i], cps[i + 1] - cps[i]);
                out->safe = obj->safe;
                return 0;
            }
        }
        *out = mk_undef_fmt(c, "'%s object' has no attribute %lld", type_name(obj), (long long)num_i(key));
        return 0;
    }
    if (key->kind == V_STR) return get_attr(c, n, obj, key->u.s.p, key->u.s.n, out);
    sb b = {.c = c};
    if (to_str_sb(c, n, key, &b, true, 0)) return -1;
    *out = mk_undef_fmt(c, "'%s object' has no attribute %.*s", type_name(obj), (int)(b.n > 100 ? 100 : b.n), b.p);
    return 0;
}

/* ---- operators ------------------------------------------------------------------------ */

static int binop_err(rctx *c, const node *n, const char *op, const value *a, const value *b) {
    return rerr(c, n, LLMOPS_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", op, type_name(a), type_name(b));
}

static int repeat(rctx *c, const node *n, const value *seq, int64_t times, value *out) {
    if (times < 0) times = 0;
    if (seq->kind == V_STR) {
        if (seq->u.s.n && (uint64_t)times > c->max_output / seq->u.s.n)
            return rerr(c, n, LLMOPS_ERR_LIMIT, "string repetition exceeds the output cap");
        sb b = {.c = c};
        for (int64_t i = 0; i < times; i++)
            if (sb_put(&b, seq->u.s.p, seq->u.s.n)) return -1;
        *out = sb_value(&b);
        out->safe = seq->safe;
        return 0;
    }
    if (seq->u.l->n && (uint64_t)times > (c->max_output / 16) / seq->u.l->n)
        return rerr(c, n, LLMOPS_ERR_LIMIT, "list repetition too large");
    vlist *l = list_new(c, seq->u.l->n * (size_t)times);
    if (!l) return -1;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq->u.l->n; k++) l->v[l->n++] = seq->u.l->v[k];
    *out = mk_list(l, seq->tuple);
    return 0;
}

static void py_float_divmod(double vx, double wx, double *floordiv, double *mod) {
    double m = fmod(vx, wx);
    double div = (vx - m) / wx;
    if (m != 0) {
        if ((wx < 0) != (m < 0)) {
            m += wx;
            div -= 1.0;
        }
    } else {
        m = copysign(0.0, wx);
    }
    double fd;
    if (div != 0) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, vx / wx);
    }
    *floordiv = fd;
    *mod = m;
}

static int arith(rctx *c, const node *n, int op, const value *a, const value *b, value *out) {
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**"};
    if (a->kind == V_UNDEF) return undef_err(c, n, a);
    if (b->kind == V_UNDEF) return undef_err(c, n, b);
    bool ints = (a->kind == V_INT || a->kind == V_BOOL) && (b->kind == V_INT || b->kind == V_BOOL);
    if (is_num(a) && is_num(b)) {
        if (ints) {
            int64_t x = num_i(a), y = num_i(b), r;
            switch (op) {
            case B_ADD: if (__builtin_add_overflow(x, y, &r)) goto overflow; *out = mk_int(r); return 0;
            case B_SUB: if (__builtin_sub_overflow(x, y, &r)) goto overflow; *out = mk_int(r); return 0;
            case B_MUL: if (__builtin_mul_overflow(x, y, &r)) goto overflow; *out = mk_int(r); return 0;
            case B_DIV:
                if (y == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "division by zero");
                *out = mk_float((double)x / (double)y);
                return 0;
            case B_FLOORDIV: case B_MOD:
                if (y == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) goto overflow;
                {
                    int64_t q = x / y, m = x % y;
                    if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
                    *out = mk_int(op == B_FLOORDIV ? q : m);
                }
                return 0;
            case B_POW:
                if (y < 0) { *out = mk_float(pow((double)x, (double)y)); return 0; }
                r = 1;
                for (int64_t base = x, e = y; e > 0;) {
                    if ((e & 1) && __builtin_mul_overflow(r, base, &r)) goto overflow;
                    e >>= 1;
                    if (e && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                *out = mk_int(r);
                return 0;
            default: break;
            }
        } else {
            double x = num_f(a), y = num_f(b), fd, m;
            switch (op) {
            case B_ADD: *out = mk_float(x + y); return 0;
            case B_SUB: *out = mk_float(x - y); return 0;
            case B_MUL: *out = mk_float(x * y); return 0;
            case B_DIV:
                if (y == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "float division by zero");
                *out = mk_float(x / y);
                return 0;
            case B_FLOORDIV: case B_MOD:
                if (y == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "float floor division by zero");
                py_float_divmod(x, y, &fd, &m);
                *out = mk_float(op == B_FLOORDIV ? fd : m);
                return 0;
            case B_POW:
                if (x == 0 && y < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "0.0 cannot be raised to a negative power");
                if (x < 0 && y != floor(y)) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: complex result of **");
                *out = mk_float(pow(x, y));
                return 0;
            default: break;
            }
        }
    }
    if (op == B_ADD) {
        if (a->kind == V_STR && b->kind == V_STR) {
            if (a->safe != b->safe) {
                /* Markup + str escapes the str (markupsafe) */
                value ea = *a, eb = *b;
                if (!a->safe && html_escape(c, a, &ea)) return -1;
                if (!b->safe && html_escape(c, b, &eb)) return -1;
                if (concat2(c, &ea, &eb, out)) return -1;
                out->safe = 1;
                return 0;
            }
            if (concat2(c, a, b, out)) return -1;
            out->safe = a->safe;
            return 0;
        }
        if (a->kind == V_LIST && b->kind == V_LIST && a->tuple == b->tuple) {
            vlist *l = list_new(c, a->u.l->n + b->u.l->n);
            if (!l) return -1;
            for (size_t i = 0; i < a->u.l->n; i++) l->v[l->n++] = a->u.l->v[i];
            for (size_t i = 0; i < b->u.l->n; i++) l->v[l->n++] = b->u.l->v[i];
            *out = mk_list(l, a->tuple);
            return 0;
        }
        if (a->kind == V_STR || a->kind == V_LIST)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "can only concatenate %s (not \"%s\") to %s", type_name(a),
                        type_name(b), type_name(a));
    }
    if (op == B_MUL) {
        if ((a->kind == V_STR || a->kind == V_LIST) && (b->kind == V_INT || b->kind == V_BOOL))
            return repeat(c, n, a, num_i(b), out);
        if ((b->kind == V_STR || b->kind == V_LIST) && (a->kind == V_INT || a->kind == V_BOOL))
            return repeat(c, n, b, num_i(a), out);
    }
    if (op == B_MOD && a->kind == V_STR)
        return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: printf-style '%%' string formatting");
    return binop_err(c, n, names[op], a, b);
overflow:
    return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: integer result outside the 64-bit range");
}

static int contains(rctx *c, const node *n, const value *item, const value *seq, bool *out) {
    switch (seq->kind) {
    case V_STR:
        if (item->kind == V_UNDEF) return undef_err(c, n, item);
        if (item->kind != V_STR)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "'in <string>' requires string as left operand, not %s", type_name(item));
        *out = item->u.s.n == 0 || memmem(seq->u.s.p, seq->u.s.n, item->u.s.p, item->u.s.n) != NULL;
        return 0;
    case V_LIST:
        *out = false;
        for (size_t i = 0; i < seq->u.l->n && !*out; i++) *out = py_eq(item, &seq->u.l->v[i], 0);
        return 0;
    case V_DICT:
        if (item->kind == V_LIST && !item->tuple) return rerr(c, n, LLMOPS_ERR_FORMAT, "unhashable type: 'list'");
        *out = dict_find(seq->u.d, item) != NULL;
        return 0;
    case V_UNDEF: *out = false; return 0;
    case V_LOOP:
        *out = false;
        for (size_t i = 0; i < seq->u.loop->items->n && !*out; i++) *out = py_eq(item, &seq->u.loop->items->v[i], 0);
        return 0;
    default:
        return rerr(c, n, LLMOPS_ERR_FORMAT, "argument of type '%s' is not iterable", type_name(seq));
    }
}

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct args {
    value *pos;
    size_t np;
    const char **kw;
    size_t *kwlen;
    value *kwv;
    size_t nk;
} args;

static int eval(rctx *c, const node *n, value *out);

static int eval_args(rctx *c, const node *n, args *a) {
    memset(a, 0, sizeof *a);
    a->np = n->items.n;
    a->nk = n->items2.n;
    a->kw = n->kw;
    a->kwlen = n->kwlen;
    if (a->np && !(a->pos = ralloc(c, a->np * sizeof *a->pos))) return -1;
    if (a->nk && !(a->kwv = ralloc(c, a->nk * sizeof *a->kwv))) return -1;
    for (size_t i = 0; i < a->np; i++)
        if (eval(c, n->items.v[i], &a->pos[i])) return -1;
    for (size_t i = 0; i < a->nk; i++)
        if (eval(c, n->items2.v[i], &a->kwv[i])) return -1;
    return 0;
}

/* The argument at position idx or named `name`; NULL when absent. */
static const value *arg(const args *a, size_t idx, const char *name) {
    if (idx < a->np) return &a->pos[idx];
    for (size_t i = 0; name && i < a->nk; i++)
        if (a->kwlen[i] == strlen(name) && memcmp(a->kw[i], name, a->kwlen[i]) == 0) return &a->kwv[i];
    return NULL;
}

/* Rejects more than `maxpos` positional arguments or keywords not in names. */
static int args_check(rctx *c, const node *n, const args *a, size_t maxpos, const char *const *names, const char *what) {
    if (a->np > maxpos)
        return rerr(c, n, LLMOPS_ERR_FORMAT, "%s takes at most %zu positional argument(s), %zu given", what, maxpos, a->np);
    for (size_t i = 0; i < a->nk; i++) {
        bool ok = false;
        for (size_t k = 0; names && names[k] && !ok; k++)
            ok = strlen(names[k]) == a->kwlen[i] && memcmp(names[k], a->kw[i], a->kwlen[i]) == 0;
        if (!ok)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "%s got an unexpected keyword argument '%.*s'", what, (int)a->kwlen[i], a->kw[i]);
    }
    return 0;
}

static int call_value(rctx *c, const node *n, const value *callee, const args *a, value *out);
static int apply_filter(rctx *c, const node *n, int id, const value *in, const args *a, value *out);
static int apply_test(rctx *c, const node *n, int id, const char *name, size_t nlen, const value *in, const args *a, bool *out);

static value lookup(rctx *c, const char *name, size_t len) {
    for (scope *s = c->sc; s; s = s->parent) {
        value *v = dict_find_str(s->vars, name, len);
        if (v) return *v;
    }
    value *v = dict_find_str(c->ctxvars, name, len);
    if (v) return *v;
    int fn = lookup_name(g_funcs, FN_COUNT_, name, len);
    if (fn >= 0) {
        value f = {.kind = V_FUNC};
        f.u.fn = fn;
        return f;
    }
    return mk_undef_fmt(c, "'%.*s' is undefined", (int)(len > 100 ? 100 : len), name);
}

static int compare_op(rctx *c, const node *n, int op, const value *a, const value *b, bool *out) {
    static const char *const names[] = {"==", "!=", "<", "<=", ">", ">="};
    int r;
    switch (op) {
    case C_EQ: *out = py_eq(a, b, 0); return 0;
    case C_NE: *out = !py_eq(a, b, 0); return 0;
    case C_IN: return contains(c, n, a, b, out);
    case C_NOTIN: if (contains(c, n, a, b, out)) return -1; *out = !*out; return 0;
    default:
        if (py_cmp(c, n, a, b, names[op], &r)) return -1;
        *out = op == C_LT ? r == -1 : op == C_LE ? (r == -1 || r == 0) : op == C_GT ? r == 1 : (r == 1 || r == 0);
        return 0;
    }
}

static int eval_inner(rctx *c, const node *n, value *out) {
    switch (n->kind) {
    case E_CONST: *out = n->cval; return 0;
    case E_NAME: *out = lookup(c, n->name, n->name_len); return 0;
    case E_LIST: case E_TUPLE: {
        vlist *l = list_new(c, n->items.n);
        if (!l) return -1;
        for (size_t i = 0; i < n->items.n; i++)
            if (eval(c, n->items.v[i], &l->v[l->n++])) return -1;
        *out = mk_list(l, n->kind == E_TUPLE);
        return 0;
    }
    case E_DICT: {
        vdict *d = dict_new(c);
        if (!d) return -1;
        for (size_t i = 0; i < n->items.n; i++) {
            value k, v;
            if (eval(c, n->items.v[i], &k) || eval(c, n->items2.v[i], &v)) return -1;
            if ((k.kind == V_LIST && !k.tuple) || k.kind == V_DICT)
                return rerr(c, n->items.v[i], LLMOPS_ERR_FORMAT, "unhashable type: '%s'", type_name(&k));
            if (dict_set(c, d, k, v)) return -1;
        }
        *out = mk_dict(d, V_DICT);
        return 0;
    }
    case E_GETATTR: {
        value obj;
        if (eval(c, n->a, &obj)) return -1;
        return get_attr(c, n, &obj, n->name, n->name_len, out);
    }
    case E_GETITEM: {
        value obj;
        if (eval(c, n->a, &obj)) return -1;
        if (n->b->kind == E_SLICE) {
            value sv[3] = {NONE, NONE, NONE};
            const node *parts[3] = {n->b->a, n->b->b, n->b->c};
            for (int i = 0; i < 3; i++)
                if (parts[i] && eval(c, parts[i], &sv[i])) return -1;
            return do_slice(c, n, &obj, sv, out);
        }
        value key;
        if (eval(c, n->b, &key)) return -1;
        return get_item(c, n, &obj, &key, out);
    }
    case E_CALL: {
        value callee;
        args a;
        if (eval(c, n->a, &callee) || eval_args(c, n, &a)) return -1;
        return call_value(c, n, &callee, &a, out);
    }
    case E_FILTER: {
        value in;
        args a;
        if (eval(c, n->a, &in) || eval_args(c, n, &a)) return -1;
        return apply_filter(c, n, n->id, &in, &a, out);
    }
    case E_TEST: {
        value in;
        args a;
        bool r;
        if (eval(c, n->a, &in) || eval_args(c, n, &a)) return -1;
        if (apply_test(c, n, n->id, n->name, n->name_len, &in, &a, &r)) return -1;
        *out = mk_bool(n->flag ? !r : r);
        return 0;
    }
    case E_UNARY: {
        value v;
        if (eval(c, n->a, &v)) return -1;
        if (n->op == U_NOT) { *out = mk_bool(!truthy(&v)); return 0; }
        if (v.kind == V_UNDEF) return undef_err(c, n, &v);
        if (v.kind == V_FLOAT) { *out = mk_float(n->op == U_NEG ? -v.u.f : v.u.f); return 0; }
        if (v.kind == V_INT || v.kind == V_BOOL) {
            int64_t i = num_i(&v);
            if (n->op == U_NEG && i == INT64_MIN)
                return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: integer result outside the 64-bit range");
            *out = mk_int(n->op == U_NEG ? -i : i);
            return 0;
        }
        return rerr(c, n, LLMOPS_ERR_FORMAT, "bad operand type for unary %s: '%s'", n->op == U_NEG ? "-" : "+", type_name(&v));
    }
    case E_BINOP: {
        value a, b;
        if (eval(c, n->a, &a)) return -1;
        if (n->op == B_AND || n->op == B_OR) {
            bool t = truthy(&a);
            if ((n->op == B_AND && !t) || (n->op == B_OR && t)) {
                *out = a;
                return 0;
            }
            return eval(c, n->b, out);
        }
        if (eval(c, n->b, &b)) return -1;
        return arith(c, n, n->op, &a, &b, out);
    }
    case E_CONCAT: {
        sb b = {.c = c};
        for (size_t i = 0; i < n->items.n; i++) {
            value v;
            if (eval(c, n->items.v[i], &v) || to_str_sb(c, n, &v, &b, false, 0)) return -1;
        }
        *out = sb_value(&b);
        return 0;
    }
    case E_COMPARE: {
        value left;
        if (eval(c, n->a, &left)) return -1;
        bool r = true;
        for (size_t i = 0; i < n->items.n && r; i++) {
            value right;
            if (eval(c, n->items.v[i], &right) || compare_op(c, n, n->ops[i], &left, &right, &r)) return -1;
            left = right;
        }
        *out = mk_bool(r);
        return 0;
    }
    case E_COND: {
        value t;
        if (eval(c, n->a, &t)) return -1;
        if (truthy(&t)) return eval(c, n->b, out);
        if (n->c) return eval(c, n->c, out);
        *out = mk_undef_fmt(c, "the inline if-expression evaluated to false and no else section was defined");
        return 0;
    }
    default:
        return rerr(c, n, LLMOPS_ERR_INTERNAL, "cannot evaluate node kind %d", n->kind);
    }
}

static int eval(rctx *c, const node *n, value *out) {
    if (step(c, n)) return -1;
    if (++c->depth > CT_MAX_DEPTH) {
        c->depth--;
        return rerr(c, n, LLMOPS_ERR_LIMIT, "evaluation nested deeper than %d", CT_MAX_DEPTH);
    }
    int r = eval_inner(c, n, out);
    c->depth--;
    return r;
}

/* ========================================================================== */
/* 5. strings, tojson, filters, tests, methods, globals                       */
/* ========================================================================== */

static bool cp_cased(uint32_t cp) {
    int cat = utf8proc_category((utf8proc_int32_t)cp);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

/* Case mappings (simple mappings plus the common full ones: ß, İ). */
static int put_upper(sb *b, uint32_t cp) {
    if (cp == 0xDF) return sb_puts(b, "SS");
    return sb_cp(b, (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp));
}
static int put_lower(sb *b, uint32_t cp) {
    if (cp == 0x130) return sb_puts(b, "i\xCC\x87");
    return sb_cp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}
static int put_title(sb *b, uint32_t cp) {
    if (cp == 0xDF) return sb_puts(b, "Ss");
    return sb_cp(b, (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp));
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_JINJA_TITLE };

static bool jinja_title_sep(uint32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
}

static int str_case(rctx *c, const value *s, int mode, value *out) {
    sb b = {.c = c};
    bool prev_cased = false, first = true, prev_sep = false;
    for (size_t i = 0; i < s->u.s.n;) {
        size_t l;
        uint32_t cp = utf8_dec(s->u.s.p + i, s->u.s.n - i, &l);
        int r;
        switch (mode) {
        case CASE_UPPER: r = put_upper(&b, cp); break;
        case CASE_LOWER: r = put_lower(&b, cp); break;
        case CASE_TITLE:
            r = prev_cased ? put_lower(&b, cp) : put_title(&b, cp);
            prev_cased = cp_cased(cp);
            break;
        case CASE_CAPITALIZE: r = first ? put_title(&b, cp) : put_lower(&b, cp); break;
        default: {
            /* jinja2 do_title: re.split(r"([-\s({\[<]+)") and item[0].upper() + item[1:].lower() */
            bool sep = jinja_title_sep(cp);
            bool item_start = first || sep != prev_sep;
            r = item_start ? put_upper(&b, cp) : put_lower(&b, cp);
            prev_sep = sep;
            break;
        }
        }
        if (r) return -1;
        first = false;
        i += l;
    }
    *out = sb_value(&b);
    out->safe = s->safe;
    return 0;
}

static bool cp_in(uint32_t cp, const value *chars) {
    for (size_t i = 0; i < chars->u.s.n;) {
        size_t l;
        if (utf8_dec(chars->u.s.p + i, chars->u.s.n - i, &l) == cp) return true;
        i += l;
    }
    return false;
}

/* str.strip / lstrip / rstrip; chars NULL or None = whitespace. */
static int str_strip(rctx *c, const node *n, const value *s, const value *chars, bool left, bool right, value *out) {
    if (chars && chars->kind != V_NONE && chars->kind != V_STR)
        return rerr(c, n, LLMOPS_ERR_FORMAT, "strip arg must be None or str");
    bool ws = !chars || chars->kind == V_NONE;
    const char *p = s->u.s.p;
    size_t a = 0, z = s->u.s.n;
    while (left && a < z) {
        size_t l;
        uint32_t cp = utf8_dec(p + a, z - a, &l);
        if (ws ? !py_isspace(cp) : !cp_in(cp, chars)) break;
        a += l;
    }
    while (right && z > a) {
        size_t st = z - 1;
        while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        size_t l;
        uint32_t cp = utf8_dec(p + st, z - st, &l);
        if (ws ? !py_isspace(cp) : !cp_in(cp, chars)) break;
        z = st;
    }
    *out = mk_str(p + a, z - a);
    out->safe = s->safe;
    return 0;
}

static int str_split(rctx *c, const node *n, const value *s, const value *sep, int64_t maxsplit, value *out) {
    vlist *l = list_new(c, 0);
    if (!l) return -1;
    const char *p = s->u.s.p;
    size_t len = s->u.s.n, i = 0;
    if (!sep || sep->kind == V_NONE) {
        for (;;) {
            i += ws_prefix(p + i, len - i);
            if (i >= len) break;
            if (maxsplit >= 0 && (int64_t)l->n >= maxsplit) {
                if (list_push(c, l, mk_str(p + i, len - i))) return -1;
                break;
            }
            size_t j = i;
            while (j < len) {
                size_t cl;
                if (py_isspace(utf8_dec(p + j, len - j, &cl))) break;
                j += cl;
            }
            if (list_push(c, l, mk_str(p + i, j - i))) return -1;
            i = j;
        }
    } else {
        if (sep->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "must be str or None, not %s", type_name(sep));
        if (!sep->u.s.n) return rerr(c, n, LLMOPS_ERR_FORMAT, "empty separator");
        for (;;) {
            const char *hit = maxsplit >= 0 && (int64_t)l->n >= maxsplit ? NULL : memmem(p + i, len - i, sep->u.s.p, sep->u.s.n);
            if (!hit) {
                if (list_push(c, l, mk_str(p + i, len - i))) return -1;
                break;
            }
            if (list_push(c, l, mk_str(p + i, (size_t)(hit - (p + i))))) return -1;
            i = (size_t)(hit - p) + sep->u.s.n;
        }
    }
    *out = mk_list(l, false);
    return 0;
}

static int str_replace(rctx *c, const value *s, const value *old, const value *nw, int64_t count, value *out) {
    sb b = {.c = c};
    const char *p = s->u.s.p;
    size_t len = s->u.s.n, i = 0;
    int64_t done = 0;
    if (!old->u.s.n) {
        /* inserts `new` before every character and at the end */
        for (;;) {
            if (count >= 0 && done >= count) break;
            if (sb_put(&b, nw->u.s.p, nw->u.s.n)) return -1;
            done++;
            if (i >= len) break;
            size_t l;
            utf8_dec(p + i, len - i, &l);
            if (sb_put(&b, p + i, l)) return -1;
            i += l;
        }
        if (sb_put(&b, p + i, len - i)) return -1;
        *out = sb_value(&b);
        return 0;
    }
    for (;;) {
        const char *hit = count >= 0 && done >= count ? NULL : memmem(p + i, len - i, old->u.s.p, old->u.s.n);
        if (!hit) break;
        if (sb_put(&b, p + i, (size_t)(hit - (p + i))) || sb_put(&b, nw->u.s.p, nw->u.s.n)) return -1;
        i = (size_t)(hit - p) + old->u.s.n;
        done++;
    }
    if (sb_put(&b, p + i, len - i)) return -1;
    *out = sb_value(&b);
    return 0;
}

static bool is_line_break(uint32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
           cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

static int str_splitlines(rctx *c, const value *s, vlist **out) {
    vlist *l = list_new(c, 0);
    if (!l) return -1;
    const char *p = s->u.s.p;
    size_t len = s->u.s.n, i = 0, start = 0;
    while (i < len) {
        size_t cl;
        uint32_t cp = utf8_dec(p + i, len - i, &cl);
        if (is_line_break(cp)) {
            if (list_push(c, l, mk_str(p + start, i - start))) return -1;
            i += cl;
            if (cp == '\r' && i < len && p[i] == '\n') i++;
            start = i;
        } else {
            i += cl;
        }
    }
    if (start < len && list_push(c, l, mk_str(p + start, len - start))) return -1;
    *out = l;
    return 0;
}

/* ---- tojson: Python's json.dumps ---------------------------------------------------------- */

typedef struct jopts {
    const char *ind;
    size_t indn;
    bool has_indent, ascii, sort;
    value isep, ksep;
} jopts;

static int json_str(sb *b, const char *p, size_t n, bool ascii) {
    if (sb_put(b, "\"", 1)) return -1;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_dec(p + i, n - i, &l);
        char tmp[16];
        int r;
        switch (cp) {
        case '"': r = sb_puts(b, "\\\""); break;
        case '\\': r = sb_puts(b, "\\\\"); break;
        case '\n': r = sb_puts(b, "\\n"); break;
        case '\r': r = sb_puts(b, "\\r"); break;
        case '\t': r = sb_puts(b, "\\t"); break;
        case '\b': r = sb_puts(b, "\\b"); break;
        case '\f': r = sb_puts(b, "\\f"); break;
        default:
            if (cp < 0x20 || (ascii && cp > 0x7E)) {
                if (cp > 0xFFFF) {
                    uint32_t v = cp - 0x10000;
                    snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else {
                    snprintf(tmp, sizeof tmp, "\\u%04x", cp);
                }
                r = sb_puts(b, tmp);
            } else {
                r = sb_put(b, p + i, l);
            }
        }
        if (r) return -1;
        i += l;
    }
    return sb_put(b, "\"", 1);
}

static int json_float(sb *b, double f) {
    char tmp[64];
    if (f != f) return sb_puts(b, "NaN");
    if (isinf(f)) return sb_puts(b, f < 0 ? "-Infinity" : "Infinity");
    float_repr(f, tmp, sizeof tmp);
    return sb_puts(b, tmp);
}

static int json_newline(sb *b, const jopts *o, int level) {
    if (sb_put(b, "\n", 1)) return -1;
    for (int i = 0; i < level; i++)
        if (sb_put(b, o->ind, o->indn)) return -1;
    return 0;
}

static int json_dump(rctx *c, const node *n, const value *v, const jopts *o, int level, sb *b);

static int json_key(rctx *c, const node *n, const value *k, const jopts *o, sb *b) {
    char tmp[64];
    switch (k->kind) {
    case V_STR: return json_str(b, k->u.s.p, k->u.s.n, o->ascii);
    case V_INT: snprintf(tmp, sizeof tmp, "\"%lld\"", (long long)k->u.i); return sb_puts(b, tmp);
    case V_BOOL: return sb_puts(b, k->u.b ? "\"true\"" : "\"false\"");
    case V_NONE: return sb_puts(b, "\"null\"");
    case V_FLOAT: {
        sb t = {.c = c};
        if (json_float(&t, k->u.f)) return -1;
        return json_str(b, t.p, t.n, false);
    }
    default:
        return rerr(c, n, LLMOPS_ERR_FORMAT, "keys must be str, int, float, bool or None, not %s", type_name(k));
    }
}

static int json_dump(rctx *c, const node *n, const value *v, const jopts *o, int level, sb *b) {
    char tmp[64];
    if (level > CT_MAX_DEPTH) return rerr(c, n, LLMOPS_ERR_LIMIT, "value nested too deeply for tojson");
    switch (v->kind) {
    case V_NONE: return sb_puts(b, "null");
    case V_BOOL: return sb_puts(b, v->u.b ? "true" : "false");
    case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_puts(b, tmp);
    case V_FLOAT: return json_float(b, v->u.f);
    case V_STR: return json_str(b, v->u.s.p, v->u.s.n, o->ascii);
    case V_LIST: {
        if (v->u.l->lt != LT_LIST)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "Object of type %s is not JSON serializable", type_name(v));
        if (!v->u.l->n) return sb_puts(b, "[]");
        if (sb_puts(b, "[")) return -1;
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i && sb_put(b, o->isep.u.s.p, o->isep.u.s.n)) return -1;
            if (o->has_indent && json_newline(b, o, level + 1)) return -1;
            if (json_dump(c, n, &v->u.l->v[i], o, level + 1, b)) return -1;
        }
        if (o->has_indent && json_newline(b, o, level)) return -1;
        return sb_puts(b, "]");
    }
    case V_DICT: {
        size_t cnt = v->u.d->n;
        if (!cnt) return sb_puts(b, "{}");
        size_t *order = ralloc(c, cnt * sizeof *order);
        if (!order) return -1;
        for (size_t i = 0; i < cnt; i++) order[i] = i;
        if (o->sort) {
            for (size_t i = 0; i < cnt; i++)
                if (v->u.d->k[i].kind != V_STR)
                    return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: tojson(sort_keys=true) with non-string keys");
            for (size_t i = 1; i < cnt; i++) /* insertion sort: stable, dicts are small */
                for (size_t j = i; j > 0; j--) {
                    const value *x = &v->u.d->k[order[j - 1]], *y = &v->u.d->k[order[j]];
                    int r;
                    if (py_cmp(c, n, y, x, "<", &r)) return -1;
                    if (r >= 0) break;
                    size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        }
        if (sb_puts(b, "{")) return -1;
        for (size_t i = 0; i < cnt; i++) {
            size_t k = order[i];
            if (i && sb_put(b, o->isep.u.s.p, o->isep.u.s.n)) return -1;
            if (o->has_indent && json_newline(b, o, level + 1)) return -1;
            if (json_key(c, n, &v->u.d->k[k], o, b) || sb_put(b, o->ksep.u.s.p, o->ksep.u.s.n) ||
                json_dump(c, n, &v->u.d->v[k], o, level + 1, b))
                return -1;
        }
        if (o->has_indent && json_newline(b, o, level)) return -1;
        return sb_puts(b, "}");
    }
    default: {
        const char *tn = v->kind == V_UNDEF ? "Undefined" : type_name(v);
        return rerr(c, n, LLMOPS_ERR_FORMAT, "Object of type %s is not JSON serializable", tn);
    }
    }
}

static int do_tojson(rctx *c, const node *n, const value *in, const args *a, value *out) {
    static const char *const names[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
    if (args_check(c, n, a, 4, names, "tojson")) return -1;
    const value *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"),
                *sk = arg(a, 3, "sort_keys");
    jopts o = {.ascii = ea && truthy(ea), .sort = sk && truthy(sk)};
    if (ind && ind->kind != V_NONE) {
        o.has_indent = true;
        if (ind->kind == V_STR) {
            o.ind = ind->u.s.p;
            o.indn = ind->u.s.n;
        } else if (ind->kind == V_INT || ind->kind == V_BOOL) {
            int64_t w = num_i(ind);
            if (w > 1024) return rerr(c, n, LLMOPS_ERR_LIMIT, "tojson indent too large");
            char *sp = ralloc(c, w > 0 ? (size_t)w : 1);
            if (!sp) return -1;
            if (w > 0) memset(sp, ' ', (size_t)w);
            o.ind = sp;
            o.indn = w > 0 ? (size_t)w : 0;
        } else {
            return rerr(c, n, LLMOPS_ERR_FORMAT, "tojson indent must be an int or a string");
        }
    }
    o.isep = mk_str(o.has_indent ? "," : ", ", o.has_indent ? 1 : 2);
    o.ksep = mk_str(": ", 2);
    if (sep && sep->kind != V_NONE) {
        if (sep->kind != V_LIST || sep->u.l->n != 2 || sep->u.l->v[0].kind != V_STR || sep->u.l->v[1].kind != V_STR)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "tojson separators must be a pair of strings");
        o.isep = sep->u.l->v[0];
        o.ksep = sep->u.l->v[1];
    }
    sb b = {.c = c};
    if (json_dump(c, n, in, &o, 0, &b)) return -1;
    *out = sb_value(&b);
    return 0;
}

/* ---- sorting (stable merge sort with a fallible comparison) ------------------------------- */

typedef struct sortctx {
    rctx *c;
    const node *n;
    value *keys;
    bool reverse;
} sortctx;

static int sort_less(sortctx *s, size_t a, size_t b, bool *out) {
    int r;
    if (py_cmp(s->c, s->n, &s->keys[a], &s->keys[b], "<", &r)) return -1;
    *out = s->reverse ? r == 1 : r == -1;
    return 0;
}

static int merge_sort(sortctx *s, size_t *idx, size_t *tmp, size_t n) {
    if (n < 2) return 0;
    size_t h = n / 2;
    if (merge_sort(s, idx, tmp, h) || merge_sort(s, idx + h, tmp, n - h)) return -1;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool lt;
        if (step(s->c, s->n) || sort_less(s, idx[j], idx[i], &lt)) return -1;
        tmp[k++] = lt ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return 0;
}

/* Sorts items by keys (parallel arrays) into *out order. */
static int sort_by(rctx *c, const node *n, value *keys, size_t cnt, bool reverse, size_t **order) {
    size_t *idx = ralloc(c, (cnt ? cnt : 1) * sizeof *idx), *tmp = ralloc(c, (cnt ? cnt : 1) * sizeof *tmp);
    if (!idx || !tmp) return -1;
    for (size_t i = 0; i < cnt; i++) idx[i] = i;
    sortctx s = {c, n, keys, reverse};
    if (merge_sort(&s, idx, tmp, cnt)) return -1;
    *order = idx;
    return 0;
}

/* ---- filter helpers --------------------------------------------------------------------- */

/* jinja2 make_attrgetter: dotted path, digit parts as integers. */
static int attr_path(rctx *c, const node *n, const value *item, const value *attr, value *out) {
    if (attr->kind != V_STR) return get_item(c, n, item, attr, out);
    value cur_v = *item;
    const char *p = attr->u.s.p;
    size_t len = attr->u.s.n, i = 0;
    for (;;) {
        const char *dot = memchr(p + i, '.', len - i);
        size_t end = dot ? (size_t)(dot - p) : len;
        value key = mk_str(p + i, end - i);
        bool digits = end > i;
        for (size_t k = i; k < end; k++) digits = digits && is_digit(p[k]);
        if (digits && end - i < 18) {
            int64_t v = 0;
            for (size_t k = i; k < end; k++) v = v * 10 + (p[k] - '0');
            key = mk_int(v);
        }
        value next;
        if (get_item(c, n, &cur_v, &key, &next)) return -1;
        cur_v = next;
        if (!dot) break;
        i = end + 1;
    }
    *out = cur_v;
    return 0;
}

static int lower_key(rctx *c, const value *v, value *out) {
    if (v->kind == V_STR) return str_case(c, v, CASE_LOWER, out);
    *out = *v;
    return 0;
}

/* select / reject / selectattr / rejectattr */
static int do_select(rctx *c, const node *n, const value *in, const args *a, bool by_attr, bool want, value *out) {
    vlist *items, *res = list_new(c, 0);
    if (!res) return -1;
    res->lt = LT_GEN;
    *out = mk_list(res, false);
    if (!truthy(in)) return 0; /* jinja2: `if value:` before iterating */
    if (iterate(c, n, in, &items)) return -1;
    size_t first_test_arg = by_attr ? 1 : 0;
    const value *attr = by_attr ? arg(a, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->kind == V_UNDEF))
        return rerr(c, n, LLMOPS_ERR_FORMAT, "selectattr/rejectattr need an attribute name");
    int tid = -2;
    const value *tname = arg(a, first_test_arg, NULL);
    args targs = {0};
    if (tname) {
        if (tname->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "test name must be a string");
        tid = lookup_name(g_tests, X_COUNT_, tname->u.s.p, tname->u.s.n);
        if (tid < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "no test named '%.*s'", (int)tname->u.s.n, tname->u.s.p);
        targs.pos = a->pos + first_test_arg + 1;
        targs.np = a->np - first_test_arg - 1;
        targs.kw = a->kw;
        targs.kwlen = a->kwlen;
        targs.kwv = a->kwv;
        targs.nk = a->nk;
    }
    for (size_t i = 0; i < items->n; i++) {
        value subject = items->v[i];
        if (by_attr && attr_path(c, n, &items->v[i], attr, &subject)) return -1;
        bool r;
        if (tid == -2) r = truthy(&subject);
        else if (apply_test(c, n, tid, tname->u.s.p, tname->u.s.n, &subject, &targs, &r)) return -1;
        if (r == want && list_push(c, res, items->v[i])) return -1;
    }
    res->lt = LT_GEN;
    *out = mk_list(res, false);
    return 0;
}

static int to_int_value(rctx *c, const node *n, const value *v, const value *dflt, value *out) {
    (void)c;
    (void)n;
    if (v->kind == V_INT || v->kind == V_BOOL) { *out = mk_int(num_i(v)); return 0; }
    if (v->kind == V_FLOAT) {
        if (v->u.f != v->u.f || isinf(v->u.f))
            return rerr(c, n, LLMOPS_ERR_FORMAT, "cannot convert float %s to integer", v->u.f != v->u.f ? "NaN" : "infinity");
        if (fabs(v->u.f) >= 9.2e18) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: integer outside the 64-bit range");
        *out = mk_int((int64_t)v->u.f);
        return 0;
    }
    if (v->kind == V_STR) {
        /* int(str): optional whitespace, sign, digits with single underscores */
        const char *p = v->u.s.p;
        size_t len = v->u.s.n, i = ws_prefix(p, len), z = len - ws_suffix(p, len);
        char buf[64];
        size_t o = 0;
        bool ok = i < z;
        if (ok && (p[i] == '+' || p[i] == '-')) buf[o++] = p[i++];
        ok = ok && i < z && is_digit(p[i]);
        for (size_t k = i; ok && k < z; k++) {
            if (is_digit(p[k])) { if (o < sizeof buf - 1) buf[o++] = p[k]; else ok = false; }
            else if (p[k] == '_' && k + 1 < z && is_digit(p[k + 1]) && k > i) continue;
            else ok = false;
        }
        if (ok) {
            buf[o] = 0;
            char *end;
            errno = 0;
            long long r = strtoll(buf, &end, 10);
            if (errno) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: integer outside the 64-bit range");
            *out = mk_int(r);
            return 0;
        }
        /* int(float(value)) */
        if (z > i && z - i < sizeof buf) {
            memcpy(buf, p + i, z - i);
            buf[z - i] = 0;
            char *end;
            double f = strtod(buf, &end);
            if (*end == 0 && !isinf(f) && f == f && strchr(buf, 'x') == NULL && strchr(buf, 'X') == NULL) {
                *out = mk_int((int64_t)f);
                return 0;
            }
        }
    }
    *out = dflt ? *dflt : mk_int(0);
    return 0;
}

static int to_float_value(const value *v, const value *dflt, value *out) {
    if (is_num(v)) { *out = mk_float(num_f(v)); return 0; }
    if (v->kind == V_STR) {
        const char *p = v->u.s.p;
        size_t len = v->u.s.n, i = ws_prefix(p, len), z = len - ws_suffix(p, len);
        char buf[128];
        size_t o = 0;
        bool ok = z > i && z - i < sizeof buf;
        for (size_t k = i; ok && k < z; k++) {
            if (p[k] == '_') {
                ok = k > i && k + 1 < z && is_digit(p[k - 1]) && is_digit(p[k + 1]);
                continue;
            }
            buf[o++] = p[k];
        }
        if (ok) {
            buf[o] = 0;
            char *end;
            bool hex = strchr(buf, 'x') || strchr(buf, 'X');
            double f = strtod(buf, &end);
            if (*end == 0 && !hex && o > 0) {
                *out = mk_float(f);
                return 0;
            }
        }
    }
    *out = dflt ? *dflt : mk_float(0.0);
    return 0;
}

static int do_indent(rctx *c, const node *n, const value *in, const args *a, value *out) {
    static const char *const names[] = {"width", "first", "blank", NULL};
    if (args_check(c, n, a, 3, names, "indent")) return -1;
    if (in->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "can only indent a string, not %s", type_name(in));
    const value *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    value ind;
    if (w && w->kind == V_STR) {
        ind = *w;
    } else {
        int64_t width = w ? (is_num(w) && w->kind != V_FLOAT ? num_i(w) : -1) : 4;
        if (width < 0 || width > 1024) {
            if (w && w->kind == V_FLOAT) return rerr(c, n, LLMOPS_ERR_FORMAT, "can't multiply sequence by non-int of type 'float'");
            width = width < 0 ? 0 : width;
            if (width > 1024) return rerr(c, n, LLMOPS_ERR_LIMIT, "indent width too large");
        }
        char *sp = ralloc(c, (size_t)width + 1);
        if (!sp) return -1;
        memset(sp, ' ', (size_t)width);
        ind = mk_str(sp, (size_t)width);
    }
    /* s += "\n"; lines = s.splitlines() */
    value s;
    value nl = mk_str("\n", 1);
    if (concat2(c, in, &nl, &s)) return -1;
    vlist *lines;
    if (str_splitlines(c, &s, &lines)) return -1;
    sb b = {.c = c};
    if (first && truthy(first) && sb_put(&b, ind.u.s.p, ind.u.s.n)) return -1;
    for (size_t i = 0; i < lines->n; i++) {
        const value *ln = &lines->v[i];
        if (i) {
            if (sb_put(&b, "\n", 1)) return -1;
            if ((ln->u.s.n || (blank && truthy(blank))) && sb_put(&b, ind.u.s.p, ind.u.s.n)) return -1;
        }
        if (sb_put(&b, ln->u.s.p, ln->u.s.n)) return -1;
    }
    *out = sb_value(&b);
    out->safe = in->safe;
    return 0;
}

static int seq_first_last(rctx *c, const node *n, const value *in, bool last, value *out) {
    vlist *items;
    if (last && in->kind == V_LIST && in->u.l->lt == LT_GEN)
        return rerr(c, n, LLMOPS_ERR_FORMAT, "'generator' object is not reversible");
    if (iterate(c, n, in, &items)) return -1;
    if (!items->n) {
        *out = mk_undef_fmt(c, "No %s item, sequence was empty.", last ? "last" : "first");
        return 0;
    }
    *out = items->v[last ? items->n - 1 : 0];
    return 0;
}

static int apply_filter_named(rctx *c, const node *n, const value *name, const value *in, const args *a, value *out) {
    int id = lookup_name(g_filters, F_COUNT_, name->u.s.p, name->u.s.n);
    if (id < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "no filter named '%.*s'", (int)name->u.s.n, name->u.s.p);
    return apply_filter(c, n, id, in, a, out);
}

static int apply_filter(rctx *c, const node *n, int id, const value *in, const args *a, value *out) {
    static const char *const none[] = {NULL};
    if (id < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "no filter named '%.*s'", (int)n->name_len, n->name);
    const char *fname = g_filters[id];
    switch (id) {
    case F_D: case F_DEFAULT: {
        static const char *const names[] = {"default_value", "boolean", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *dv = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        if (in->kind == V_UNDEF || (boolean && truthy(boolean) && !truthy(in))) *out = dv ? *dv : mk_str("", 0);
        else *out = *in;
        return 0;
    }
    case F_LENGTH: case F_COUNT: {
        int64_t len = 0;
        if (args_check(c, n, a, 0, none, fname) || py_len(c, n, in, &len)) return -1;
        *out = mk_int(len);
        return 0;
    }
    case F_FIRST: case F_LAST:
        if (args_check(c, n, a, 0, none, fname)) return -1;
        return seq_first_last(c, n, in, id == F_LAST, out);
    case F_TRIM: {
        static const char *const names[] = {"chars", NULL};
        value s;
        if (args_check(c, n, a, 1, names, fname) || to_str(c, n, in, &s)) return -1;
        return str_strip(c, n, &s, arg(a, 0, "chars"), true, true, out);
    }
    case F_UPPER: case F_LOWER: case F_TITLE: case F_CAPITALIZE: {
        value s;
        if (args_check(c, n, a, 0, none, fname) || to_str(c, n, in, &s)) return -1;
        return str_case(c, &s, id == F_UPPER ? CASE_UPPER : id == F_LOWER ? CASE_LOWER : id == F_TITLE ? CASE_JINJA_TITLE : CASE_CAPITALIZE, out);
    }
    case F_STRING:
        if (args_check(c, n, a, 0, none, fname)) return -1;
        return to_str(c, n, in, out);
    case F_SAFE:
        if (args_check(c, n, a, 0, none, fname) || to_str(c, n, in, out)) return -1;
        out->safe = 1;
        return 0;
    case F_E: case F_ESCAPE: case F_FORCEESCAPE: {
        if (args_check(c, n, a, 0, none, fname)) return -1;
        if (in->kind == V_STR && in->safe && id != F_FORCEESCAPE) { *out = *in; return 0; }
        value s;
        if (to_str(c, n, in, &s)) return -1;
        return html_escape(c, &s, out);
    }
    case F_REPLACE: {
        static const char *const names[] = {"old", "new", "count", NULL};
        if (args_check(c, n, a, 3, names, fname)) return -1;
        const value *o = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        if (!o || !nw) return rerr(c, n, LLMOPS_ERR_FORMAT, "replace needs old and new");
        value s, os, ns;
        if (to_str(c, n, in, &s) || to_str(c, n, o, &os) || to_str(c, n, nw, &ns)) return -1;
        int64_t count = -1;
        if (cnt && cnt->kind != V_NONE) {
            if (cnt->kind != V_INT && cnt->kind != V_BOOL) return rerr(c, n, LLMOPS_ERR_FORMAT, "replace count must be an integer");
            count = num_i(cnt);
        }
        return str_replace(c, &s, &os, &ns, count, out);
    }
    case F_JOIN: {
        static const char *const names[] = {"d", "attribute", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        vlist *items;
        value sep = mk_str("", 0);
        if (iterate(c, n, in, &items) || (d && to_str(c, n, d, &sep))) return -1;
        sb b = {.c = c};
        for (size_t i = 0; i < items->n; i++) {
            value it = items->v[i];
            if (attr && attr->kind != V_NONE && attr_path(c, n, &items->v[i], attr, &it)) return -1;
            if (i && sb_put(&b, sep.u.s.p, sep.u.s.n)) return -1;
            if (to_str_sb(c, n, &it, &b, false, 0)) return -1;
        }
        *out = sb_value(&b);
        return 0;
    }
    case F_LIST: {
        vlist *items, *l;
        if (args_check(c, n, a, 0, none, fname) || iterate(c, n, in, &items)) return -1;
        if (!(l = list_new(c, items->n))) return -1;
        for (size_t i = 0; i < items->n; i++) l->v[l->n++] = items->v[i];
        *out = mk_list(l, false);
        return 0;
    }
    case F_ITEMS: {
        if (args_check(c, n, a, 0, none, fname)) return -1;
        vlist *l = list_new(c, in->kind == V_DICT ? in->u.d->n : 0);
        if (!l) return -1;
        if (in->kind == V_DICT) {
            for (size_t i = 0; i < in->u.d->n; i++) {
                vlist *pair = list_new(c, 2);
                if (!pair) return -1;
                pair->v[0] = in->u.d->k[i];
                pair->v[1] = in->u.d->v[i];
                pair->n = 2;
                l->v[l->n++] = mk_list(pair, true);
            }
        } else if (in->kind != V_UNDEF) {
            return rerr(c, n, LLMOPS_ERR_FORMAT, "Can only get item pairs from a mapping.");
        }
        l->lt = LT_GEN;
        *out = mk_list(l, false);
        return 0;
    }
    case F_TOJSON: return do_tojson(c, n, in, a, out);
    case F_INT: {
        static const char *const names[] = {"default", "base", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *base = arg(a, 1, "base");
        if (base && !(base->kind == V_INT && base->u.i == 10))
            return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: int filter with a base other than 10");
        return to_int_value(c, n, in, arg(a, 0, "default"), out);
    }
    case F_FLOAT: {
        static const char *const names[] = {"default", NULL};
        if (args_check(c, n, a, 1, names, fname)) return -1;
        return to_float_value(in, arg(a, 0, "default"), out);
    }
    case F_ABS:
        if (args_check(c, n, a, 0, none, fname)) return -1;
        if (in->kind == V_FLOAT) { *out = mk_float(fabs(in->u.f)); return 0; }
        if (in->kind == V_INT || in->kind == V_BOOL) {
            if (num_i(in) == INT64_MIN) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: integer outside the 64-bit range");
            *out = mk_int(num_i(in) < 0 ? -num_i(in) : num_i(in));
            return 0;
        }
        return rerr(c, n, LLMOPS_ERR_FORMAT, "bad operand type for abs(): '%s'", type_name(in));
    case F_ROUND: {
        static const char *const names[] = {"precision", "method", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *pr = arg(a, 0, "precision"), *m = arg(a, 1, "method");
        int64_t prec = pr ? (pr->kind == V_INT || pr->kind == V_BOOL ? num_i(pr) : -1000) : 0;
        if (prec < -300 || prec > 300) return rerr(c, n, LLMOPS_ERR_FORMAT, "round precision must be a small integer");
        if (!is_num(in)) return rerr(c, n, LLMOPS_ERR_FORMAT, "type %s doesn't define __round__ method", type_name(in));
        const char *method = m && m->kind == V_STR ? m->u.s.p : "common";
        size_t mlen = m && m->kind == V_STR ? m->u.s.n : 6;
        double x = num_f(in);
        if (mlen == 6 && !memcmp(method, "common", 6)) {
            if (in->kind != V_FLOAT) {
                if (prec >= 0) { *out = mk_int(num_i(in)); return 0; }
                return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: round of an int to negative precision");
            }
            if (isinf(x) || x != x) { *out = *in; return 0; }
            if (prec == 0) { *out = mk_float(nearbyint(x)); return 0; }
            if (prec > 0) {
                char buf[400];
                snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
                *out = mk_float(strtod(buf, NULL));
                return 0;
            }
            return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: round to negative precision");
        }
        if ((mlen == 4 && !memcmp(method, "ceil", 4)) || (mlen == 5 && !memcmp(method, "floor", 5))) {
            double p10 = pow(10.0, (double)prec);
            double r = (method[0] == 'c' ? ceil(x * p10) : floor(x * p10)) / p10;
            *out = mk_float(r);
            return 0;
        }
        return rerr(c, n, LLMOPS_ERR_FORMAT, "method must be common, ceil or floor");
    }
    case F_SELECT: case F_REJECT: return do_select(c, n, in, a, false, id == F_SELECT, out);
    case F_SELECTATTR: case F_REJECTATTR: return do_select(c, n, in, a, true, id == F_SELECTATTR, out);
    case F_MAP: {
        vlist *items, *res;
        if (!truthy(in)) {
            if (!(res = list_new(c, 0))) return -1;
            res->lt = LT_GEN;
            *out = mk_list(res, false);
            return 0;
        }
        if (iterate(c, n, in, &items) || !(res = list_new(c, items->n))) return -1;
        const value *attr = NULL, *dflt = NULL;
        for (size_t i = 0; i < a->nk; i++) {
            if (a->kwlen[i] == 9 && !memcmp(a->kw[i], "attribute", 9)) attr = &a->kwv[i];
            else if (a->kwlen[i] == 7 && !memcmp(a->kw[i], "default", 7)) dflt = &a->kwv[i];
        }
        if (attr) {
            if (a->np) return rerr(c, n, LLMOPS_ERR_FORMAT, "map with attribute= takes no positional arguments");
            for (size_t i = 0; i < items->n; i++) {
                value v;
                if (attr_path(c, n, &items->v[i], attr, &v)) return -1;
                if (v.kind == V_UNDEF && dflt) v = *dflt;
                res->v[res->n++] = v;
            }
        } else {
            if (!a->np || a->pos[0].kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "map needs a filter name or attribute=");
            args rest = {a->pos + 1, a->np - 1, a->kw, a->kwlen, a->kwv, a->nk};
            for (size_t i = 0; i < items->n; i++)
                if (apply_filter_named(c, n, &a->pos[0], &items->v[i], &rest, &res->v[res->n++])) return -1;
        }
        res->lt = LT_GEN;
        *out = mk_list(res, false);
        return 0;
    }
    case F_UNIQUE: {
        static const char *const names[] = {"case_sensitive", "attribute", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
        vlist *items, *res, *seen;
        if (iterate(c, n, in, &items) || !(res = list_new(c, 0)) || !(seen = list_new(c, 0))) return -1;
        for (size_t i = 0; i < items->n; i++) {
            value k = items->v[i];
            if (attr && attr->kind != V_NONE && attr_path(c, n, &items->v[i], attr, &k)) return -1;
            if (!(cs && truthy(cs)) && lower_key(c, &k, &k)) return -1;
            if ((k.kind == V_LIST && !k.tuple) || k.kind == V_DICT)
                return rerr(c, n, LLMOPS_ERR_FORMAT, "unhashable type: '%s'", type_name(&k));
            bool dup = false;
            for (size_t j = 0; j < seen->n && !dup; j++) {
                if (step(c, n)) return -1;
                dup = py_eq(&seen->v[j], &k, 0);
            }
            if (!dup && (list_push(c, seen, k) || list_push(c, res, items->v[i]))) return -1;
        }
        res->lt = LT_GEN;
        *out = mk_list(res, false);
        return 0;
    }
    case F_SORT: case F_MIN: case F_MAX: {
        static const char *const snames[] = {"reverse", "case_sensitive", "attribute", NULL};
        static const char *const mnames[] = {"case_sensitive", "attribute", NULL};
        bool is_sort = id == F_SORT;
        if (args_check(c, n, a, is_sort ? 3 : 2, is_sort ? snames : mnames, fname)) return -1;
        const value *rev = is_sort ? arg(a, 0, "reverse") : NULL;
        const value *cs = arg(a, is_sort ? 1 : 0, "case_sensitive"), *attr = arg(a, is_sort ? 2 : 1, "attribute");
        vlist *items;
        if (iterate(c, n, in, &items)) return -1;
        value *keys = ralloc(c, (items->n ? items->n : 1) * sizeof *keys);
        if (!keys) return -1;
        for (size_t i = 0; i < items->n; i++) {
            keys[i] = items->v[i];
            if (attr && attr->kind != V_NONE && attr_path(c, n, &items->v[i], attr, &keys[i])) return -1;
            if (!(cs && truthy(cs)) && lower_key(c, &keys[i], &keys[i])) return -1;
        }
        size_t *order;
        if (sort_by(c, n, keys, items->n, rev && truthy(rev), &order)) return -1;
        if (!is_sort) {
            if (!items->n) {
                *out = mk_undef_fmt(c, "No aggregated item, sequence was empty.");
                return 0;
            }
            /* min: first of the stable ascending order; max: Python keeps the first maximal item */
            if (id == F_MIN) { *out = items->v[order[0]]; return 0; }
            size_t best = order[items->n - 1];
            for (size_t i = items->n - 1; i > 0; i--) {
                if (!py_eq(&keys[order[i - 1]], &keys[best], 0)) break;
                best = order[i - 1];
            }
            *out = items->v[best];
            return 0;
        }
        vlist *res = list_new(c, items->n);
        if (!res) return -1;
        for (size_t i = 0; i < items->n; i++) res->v[res->n++] = items->v[order[i]];
        *out = mk_list(res, false);
        return 0;
    }
    case F_DICTSORT: {
        static const char *const names[] = {"case_sensitive", "by", "reverse", NULL};
        if (args_check(c, n, a, 3, names, fname)) return -1;
        const value *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
        if (in->kind != V_DICT) return rerr(c, n, LLMOPS_ERR_FORMAT, "dictsort needs a mapping");
        bool by_value = by && by->kind == V_STR && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5);
        if (by && !by_value && !(by->kind == V_STR && by->u.s.n == 3 && !memcmp(by->u.s.p, "key", 3)))
            return rerr(c, n, LLMOPS_ERR_FORMAT, "You can only sort by either \"key\" or \"value\"");
        size_t cnt = in->u.d->n;
        value *keys = ralloc(c, (cnt ? cnt : 1) * sizeof *keys);
        if (!keys) return -1;
        for (size_t i = 0; i < cnt; i++) {
            keys[i] = by_value ? in->u.d->v[i] : in->u.d->k[i];
            if (!(cs && truthy(cs)) && lower_key(c, &keys[i], &keys[i])) return -1;
        }
        size_t *order;
        vlist *res;
        if (sort_by(c, n, keys, cnt, rev && truthy(rev), &order) || !(res = list_new(c, cnt))) return -1;
        for (size_t i = 0; i < cnt; i++) {
            vlist *pair = list_new(c, 2);
            if (!pair) return -1;
            pair->v[0] = in->u.d->k[order[i]];
            pair->v[1] = in->u.d->v[order[i]];
            pair->n = 2;
            res->v[res->n++] = mk_list(pair, true);
        }
        *out = mk_list(res, false);
        return 0;
    }
    case F_SUM: {
        static const char *const names[] = {"attribute", "start", NULL};
        if (args_check(c, n, a, 2, names, fname)) return -1;
        const value *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        vlist *items;
        if (iterate(c, n, in, &items)) return -1;
        value acc = start ? *start : mk_int(0);
        for (size_t i = 0; i < items->n; i++) {
            value it = items->v[i];
            if (attr && attr->kind != V_NONE && attr_path(c, n, &items->v[i], attr, &it)) return -1;
            if (it.kind == V_STR && acc.kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "unsupported operand type(s) for +: '%s' and 'str'", type_name(&acc));
            if (arith(c, n, B_ADD, &acc, &it, &acc)) return -1;
        }
        *out = acc;
        return 0;
    }
    case F_REVERSE: {
        if (args_check(c, n, a, 0, none, fname)) return -1;
        vlist *items, *res;
        if (iterate(c, n, in, &items) || !(res = list_new(c, items->n))) return -1;
        for (size_t i = items->n; i > 0; i--) res->v[res->n++] = items->v[i - 1];
        if (in->kind == V_STR) {
            sb b = {.c = c};
            for (size_t i = 0; i < res->n; i++)
                if (sb_put(&b, res->v[i].u.s.p, res->v[i].u.s.n)) return -1;
            *out = sb_value(&b);
            out->safe = in->safe;
            return 0;
        }
        res->lt = LT_GEN;
        *out = mk_list(res, false);
        return 0;
    }
    case F_ATTR: {
        static const char *const names[] = {"name", NULL};
        if (args_check(c, n, a, 1, names, fname)) return -1;
        const value *nm = arg(a, 0, "name");
        if (!nm || nm->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "attr needs an attribute name");
        if (in->kind == V_DICT) { /* getattr only: keys are not attributes */
            int r = find_method(c, in, nm->u.s.p, nm->u.s.n, out);
            if (r < 0) return -1;
            if (!r) *out = mk_undef_fmt(c, "'dict object' has no attribute '%.*s'", (int)nm->u.s.n, nm->u.s.p);
            return 0;
        }
        return get_attr(c, n, in, nm->u.s.p, nm->u.s.n, out);
    }
    case F_INDENT: return do_indent(c, n, in, a, out);
    default:
        return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported filter '%s'", fname);
    }
}

static int apply_test(rctx *c, const node *n, int id, const char *name, size_t nlen, const value *in, const args *a, bool *out) {
    if (id < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "no test named '%.*s'", (int)(nlen > 60 ? 60 : nlen), name);
    const value *x = arg(a, 0, NULL);
    int k = in->kind;
    switch (id) {
    case X_DEFINED: *out = k != V_UNDEF; return 0;
    case X_UNDEFINED: *out = k == V_UNDEF; return 0;
    case X_NONE: *out = k == V_NONE; return 0;
    case X_STRING: *out = k == V_STR; return 0;
    case X_MAPPING: *out = k == V_DICT; return 0;
    case X_ITERABLE: *out = k == V_STR || k == V_LIST || k == V_DICT || k == V_UNDEF || k == V_LOOP; return 0;
    case X_SEQUENCE:
        *out = k == V_STR || (k == V_LIST && (in->u.l->lt == LT_LIST || in->u.l->lt == LT_RANGE)) || k == V_DICT || k == V_UNDEF;
        return 0;
    case X_NUMBER: *out = k == V_INT || k == V_FLOAT || k == V_BOOL; return 0;
    case X_INTEGER: *out = k == V_INT; return 0;
    case X_FLOAT: *out = k == V_FLOAT; return 0;
    case X_BOOLEAN: *out = k == V_BOOL; return 0;
    case X_TRUE: *out = k == V_BOOL && in->u.b; return 0;
    case X_FALSE: *out = k == V_BOOL && !in->u.b; return 0;
    case X_CALLABLE: *out = k == V_MACRO || k == V_FUNC || k == V_METHOD; return 0;
    case X_ESCAPED: *out = k == V_STR && in->safe; return 0;
    case X_LOWER: case X_UPPER: {
        if (k != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "'%s' object has no attribute '%s'", type_name(in), id == X_LOWER ? "islower" : "isupper");
        bool cased = false, ok = true;
        for (size_t i = 0; i < in->u.s.n && ok;) {
            size_t l;
            uint32_t cp = utf8_dec(in->u.s.p + i, in->u.s.n - i, &l);
            int cat = utf8proc_category((utf8proc_int32_t)cp);
            if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) { if (id == X_LOWER) ok = false; else cased = true; }
            if (cat == UTF8PROC_CATEGORY_LL) { if (id == X_UPPER) ok = false; else cased = true; }
            i += l;
        }
        *out = ok && cased;
        return 0;
    }
    case X_ODD: case X_EVEN: case X_DIVISIBLEBY: {
        if (k != V_INT && k != V_BOOL) {
            if (k == V_UNDEF) return undef_err(c, n, in);
            return rerr(c, n, LLMOPS_ERR_FORMAT, "test '%s' needs an integer, got %s", g_tests[id], type_name(in));
        }
        int64_t v = num_i(in), d = id == X_DIVISIBLEBY ? (x && (x->kind == V_INT || x->kind == V_BOOL) ? num_i(x) : 0) : 2;
        if (d == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "integer division or modulo by zero");
        int64_t m = d == -1 ? 0 : v % d;
        *out = id == X_ODD ? m != 0 : m == 0;
        return 0;
    }
    case X_SAMEAS:
        if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "sameas needs an argument");
        *out = (k == V_NONE || k == V_BOOL || k == V_UNDEF) ? (x->kind == k && py_eq(in, x, 0) && k != V_UNDEF)
                                                           : (x->kind == k && py_eq(in, x, 0) && !memcmp(&in->u, &x->u, sizeof in->u));
        return 0;
    case X_IN:
        if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "test 'in' needs an argument");
        return contains(c, n, in, x, out);
    case X_FILTER: case X_TEST:
        if (k != V_STR) { *out = false; return 0; }
        *out = lookup_name(id == X_FILTER ? g_filters : g_tests, id == X_FILTER ? F_COUNT_ : X_COUNT_, in->u.s.p, in->u.s.n) >= 0;
        return 0;
    default: {
        if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "test '%s' needs an argument", g_tests[id]);
        int op;
        switch (id) {
        case X_EQ: case X_EQUALTO: case X_OP_EQ: op = C_EQ; break;
        case X_NE: case X_OP_NE: op = C_NE; break;
        case X_LT: case X_LESSTHAN: case X_OP_LT: op = C_LT; break;
        case X_LE: case X_OP_LE: op = C_LE; break;
        case X_GT: case X_GREATERTHAN: case X_OP_GT: op = C_GT; break;
        default: op = C_GE; break;
        }
        return compare_op(c, n, op, in, x, out);
    }
    }
}

/* ---- methods -------------------------------------------------------------------------------- */

static int need_str_arg(rctx *c, const node *n, const value *v, const char *what) {
    if (!v) return rerr(c, n, LLMOPS_ERR_FORMAT, "%s() missing a required argument", what);
    if (v->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "%s() argument must be str, not %s", what, type_name(v));
    return 0;
}

static bool affix_match(const value *s, const value *fix, bool end) {
    if (fix->u.s.n > s->u.s.n) return false;
    return memcmp(s->u.s.p + (end ? s->u.s.n - fix->u.s.n : 0), fix->u.s.p, fix->u.s.n) == 0;
}

/* Byte offset -> code point index. */
static int64_t cp_at(const value *s, size_t byte) { return (int64_t)utf8_count(s->u.s.p, byte); }

static int str_format(rctx *c, const node *n, const value *fmt, const args *a, value *out) {
    sb b = {.c = c};
    const char *p = fmt->u.s.p;
    size_t len = fmt->u.s.n, auto_idx = 0;
    int numbering = 0; /* 1 automatic, 2 manual: Python refuses to mix them */
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '{' && i + 1 < len && p[i + 1] == '{') { if (sb_put(&b, "{", 1)) return -1; i++; continue; }
        if (p[i] == '}' && i + 1 < len && p[i + 1] == '}') { if (sb_put(&b, "}", 1)) return -1; i++; continue; }
        if (p[i] == '}') return rerr(c, n, LLMOPS_ERR_FORMAT, "Single '}' encountered in format string");
        if (p[i] != '{') { if (sb_put(&b, p + i, 1)) return -1; continue; }
        const char *close = memchr(p + i, '}', len - i);
        if (!close) return rerr(c, n, LLMOPS_ERR_FORMAT, "Single '{' encountered in format string");
        const char *f = p + i + 1;
        size_t flen = (size_t)(close - f);
        for (size_t k = 0; k < flen; k++)
            if (f[k] == ':' || f[k] == '!' || f[k] == '.' || f[k] == '[' || f[k] == '{')
                return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: str.format field '%.*s'", (int)flen, f);
        const value *v = NULL;
        if (!flen || is_digit(f[0])) {
            int mode = flen ? 2 : 1;
            if (numbering && numbering != mode)
                return rerr(c, n, LLMOPS_ERR_FORMAT, "cannot switch between automatic and manual field numbering");
            numbering = mode;
        }
        if (!flen) v = arg(a, auto_idx++, NULL);
        else if (is_digit(f[0])) {
            size_t idx = 0;
            for (size_t k = 0; k < flen && k < 6; k++) idx = idx * 10 + (size_t)(f[k] - '0');
            v = arg(a, idx, NULL);
        } else {
            for (size_t k = 0; k < a->nk && !v; k++)
                if (a->kwlen[k] == flen && !memcmp(a->kw[k], f, flen)) v = &a->kwv[k];
        }
        if (!v) return rerr(c, n, LLMOPS_ERR_FORMAT, "str.format: no argument for field '{%.*s}'", (int)flen, f);
        if (to_str_sb(c, n, v, &b, false, 0)) return -1;
        i = (size_t)(close - p);
    }
    *out = sb_value(&b);
    return 0;
}

static int call_method(rctx *c, const node *n, const vmethod *m, const args *a, value *out) {
    const value *self = &m->self;
    const value *x = arg(a, 0, NULL), *y = arg(a, 1, NULL);
    const char *mn = g_methods[m->id].name;
    switch (m->id) {
    case M_STRIP: case M_LSTRIP: case M_RSTRIP:
        return str_strip(c, n, self, x, m->id != M_RSTRIP, m->id != M_LSTRIP, out);
    case M_SPLIT: case M_RSPLIT: {
        const value *sep = arg(a, 0, "sep"), *ms = arg(a, 1, "maxsplit");
        int64_t maxsplit = ms ? (ms->kind == V_INT || ms->kind == V_BOOL ? num_i(ms) : -2) : -1;
        if (maxsplit == -2) return rerr(c, n, LLMOPS_ERR_FORMAT, "maxsplit must be an integer");
        if (m->id == M_RSPLIT && maxsplit >= 0)
            return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: str.rsplit with maxsplit");
        return str_split(c, n, self, sep, maxsplit, out);
    }
    case M_STARTSWITH: case M_ENDSWITH: {
        if (a->np != 1) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: %s() with start/end", mn);
        bool end = m->id == M_ENDSWITH, r = false;
        if (x->kind == V_STR) r = affix_match(self, x, end);
        else if (x->kind == V_LIST && x->tuple) {
            for (size_t i = 0; i < x->u.l->n && !r; i++) {
                if (x->u.l->v[i].kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "tuple for %s must only contain str", mn);
                r = affix_match(self, &x->u.l->v[i], end);
            }
        } else {
            return rerr(c, n, LLMOPS_ERR_FORMAT, "%s first arg must be str or a tuple of str, not %s", mn, type_name(x));
        }
        *out = mk_bool(r);
        return 0;
    }
    case M_UPPER: return str_case(c, self, CASE_UPPER, out);
    case M_LOWER: return str_case(c, self, CASE_LOWER, out);
    case M_TITLE: return str_case(c, self, CASE_TITLE, out);
    case M_CAPITALIZE: return str_case(c, self, CASE_CAPITALIZE, out);
    case M_REPLACE: {
        if (need_str_arg(c, n, x, mn) || need_str_arg(c, n, y, mn)) return -1;
        const value *cnt = arg(a, 2, "count");
        int64_t count = cnt ? (cnt->kind == V_INT || cnt->kind == V_BOOL ? num_i(cnt) : -1) : -1;
        if (str_replace(c, self, x, y, count, out)) return -1;
        out->safe = self->safe;
        return 0;
    }
    case M_FIND: case M_RFIND: case M_INDEX: case M_COUNT: {
        if (self->kind == V_LIST) {
            if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "%s() takes exactly one argument", mn);
            int64_t cnt = 0, first = -1;
            for (size_t i = 0; i < self->u.l->n; i++)
                if (py_eq(&self->u.l->v[i], x, 0)) { cnt++; if (first < 0) first = (int64_t)i; }
            if (m->id == M_INDEX && first < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "value is not in list");
            *out = mk_int(m->id == M_COUNT ? cnt : first);
            return 0;
        }
        if (need_str_arg(c, n, x, mn)) return -1;
        if (a->np > 1) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: %s() with start/end", mn);
        const char *p = self->u.s.p;
        size_t len = self->u.s.n;
        if (m->id == M_COUNT) {
            int64_t cnt = 0;
            if (!x->u.s.n) cnt = cp_at(self, len) + 1;
            else
                for (size_t i = 0;;) {
                    const char *h = memmem(p + i, len - i, x->u.s.p, x->u.s.n);
                    if (!h) break;
                    cnt++;
                    i = (size_t)(h - p) + x->u.s.n;
                }
            *out = mk_int(cnt);
            return 0;
        }
        int64_t pos = -1;
        if (m->id == M_RFIND) {
            for (size_t i = len + 1; i-- > 0;)
                if (i + x->u.s.n <= len && !memcmp(p + i, x->u.s.p, x->u.s.n)) { pos = cp_at(self, i); break; }
        } else {
            const char *h = x->u.s.n ? memmem(p, len, x->u.s.p, x->u.s.n) : p;
            if (h) pos = cp_at(self, (size_t)(h - p));
        }
        if (m->id == M_INDEX && pos < 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "substring not found");
        *out = mk_int(pos);
        return 0;
    }
    case M_JOIN: {
        vlist *items;
        if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "join() takes exactly one argument");
        if (iterate(c, n, x, &items)) return -1;
        sb b = {.c = c};
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].kind != V_STR)
                return rerr(c, n, LLMOPS_ERR_FORMAT, "sequence item %zu: expected str instance, %s found", i, type_name(&items->v[i]));
            if ((i && sb_put(&b, self->u.s.p, self->u.s.n)) || sb_put(&b, items->v[i].u.s.p, items->v[i].u.s.n)) return -1;
        }
        *out = sb_value(&b);
        return 0;
    }
    case M_FORMAT: return str_format(c, n, self, a, out);
    case M_SPLITLINES: {
        vlist *l;
        if (a->np && truthy(x)) return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: splitlines(keepends=True)");
        if (str_splitlines(c, self, &l)) return -1;
        *out = mk_list(l, false);
        return 0;
    }
    case M_ISDIGIT: case M_ISALPHA: case M_ISSPACE: case M_ISALNUM: case M_ISLOWER: case M_ISUPPER: {
        if (m->id == M_ISLOWER || m->id == M_ISUPPER) {
            bool r;
            args none = {0};
            if (apply_test(c, n, m->id == M_ISLOWER ? X_LOWER : X_UPPER, "", 0, self, &none, &r)) return -1;
            *out = mk_bool(r);
            return 0;
        }
        bool ok = self->u.s.n > 0;
        for (size_t i = 0; i < self->u.s.n && ok;) {
            size_t l;
            uint32_t cp = utf8_dec(self->u.s.p + i, self->u.s.n - i, &l);
            int cat = utf8proc_category((utf8proc_int32_t)cp);
            bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
            bool digit = cat == UTF8PROC_CATEGORY_ND;
            if (m->id == M_ISDIGIT) ok = digit;
            else if (m->id == M_ISALPHA) ok = alpha;
            else if (m->id == M_ISSPACE) ok = py_isspace(cp);
            else ok = alpha || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
            i += l;
        }
        *out = mk_bool(ok);
        return 0;
    }
    case M_REMOVEPREFIX: case M_REMOVESUFFIX: {
        if (need_str_arg(c, n, x, mn)) return -1;
        bool end = m->id == M_REMOVESUFFIX;
        *out = *self;
        if (affix_match(self, x, end)) {
            out->u.s.n -= x->u.s.n;
            if (!end) out->u.s.p += x->u.s.n;
        }
        return 0;
    }
    case M_GET: {
        if (!x) return rerr(c, n, LLMOPS_ERR_FORMAT, "get expected at least 1 argument, got 0");
        value *v = x->kind == V_STR ? dict_find_str(self->u.d, x->u.s.p, x->u.s.n) : dict_find(self->u.d, x);
        *out = v ? *v : y ? *y : NONE;
        return 0;
    }
    case M_ITEMS: {
        args none = {0};
        if (apply_filter(c, n, F_ITEMS, self, &none, out)) return -1;
        out->u.l->lt = LT_VIEW;
        return 0;
    }
    case M_KEYS: case M_VALUES: {
        vlist *l = list_new(c, self->u.d->n);
        if (!l) return -1;
        for (size_t i = 0; i < self->u.d->n; i++) l->v[l->n++] = m->id == M_KEYS ? self->u.d->k[i] : self->u.d->v[i];
        l->lt = LT_VIEW;
        *out = mk_list(l, false);
        return 0;
    }
    case M_COPY: *out = *self; return 0;
    case M_CYCLE: {
        if (!a->np) return rerr(c, n, LLMOPS_ERR_FORMAT, "no items for cycling given");
        *out = a->pos[self->u.loop->i % a->np];
        return 0;
    }
    default:
        return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported method '%s' of %s", mn, type_name(self));
    }
}

/* ---- globals and macros ---------------------------------------------------------------------- */

static int exec_list(rctx *c, const nlist *body);

static int call_macro(rctx *c, const node *n, const node *m, const args *a, value *out) {
    size_t np = m->items2.n;
    if (a->np > np)
        return rerr(c, n, LLMOPS_ERR_FORMAT, "macro '%.*s' takes not more than %zu argument(s)", (int)m->name_len, m->name, np);
    scope s = {.parent = c->root, .vars = dict_new(c)};
    if (!s.vars) return -1;
    for (size_t k = 0; k < a->nk; k++) {
        size_t i = 0;
        while (i < np && !(m->kwlen[i] == a->kwlen[k] && !memcmp(m->kw[i], a->kw[k], a->kwlen[k]))) i++;
        if (i == np)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "macro '%.*s' takes no keyword argument '%.*s'", (int)m->name_len, m->name,
                        (int)a->kwlen[k], a->kw[k]);
        if (i < a->np)
            return rerr(c, n, LLMOPS_ERR_FORMAT, "macro '%.*s' got multiple values for argument '%.*s'", (int)m->name_len,
                        m->name, (int)a->kwlen[k], a->kw[k]);
    }
    scope *saved_sc = c->sc;
    sb *saved_out = c->out;
    c->sc = &s;
    int r = 0;
    for (size_t i = 0; i < np && !r; i++) {
        value v;
        const value *given = i < a->np ? &a->pos[i] : NULL;
        for (size_t k = 0; !given && k < a->nk; k++)
            if (m->kwlen[i] == a->kwlen[k] && !memcmp(m->kw[i], a->kw[k], a->kwlen[k])) given = &a->kwv[k];
        if (given) v = *given;
        else if (m->items2.v[i]) r = eval(c, m->items2.v[i], &v);
        else v = mk_undef_fmt(c, "parameter '%.*s' was not provided", (int)m->kwlen[i], m->kw[i]);
        if (!r) r = dict_set_str(c, s.vars, m->kw[i], m->kwlen[i], v);
    }
    sb body = {.c = c};
    if (!r) {
        c->out = &body;
        r = exec_list(c, &m->items);
    }
    c->sc = saved_sc;
    c->out = saved_out;
    if (r < 0) return -1;
    *out = sb_value(&body);
    return 0;
}

static int call_func(rctx *c, const node *n, int fn, const args *a, value *out) {
    const value *x = arg(a, 0, NULL);
    switch (fn) {
    case FN_RAISE: {
        value msg = mk_str("", 0);
        if (x && to_str(c, n, x, &msg)) return -1;
        return rerr(c, n, LLMOPS_ERR_INVALID_ARG, "raise_exception: %.*s", (int)(msg.u.s.n > 600 ? 600 : msg.u.s.n), msg.u.s.p);
    }
    case FN_STRFTIME: {
        if (!x || x->kind != V_STR) return rerr(c, n, LLMOPS_ERR_FORMAT, "strftime_now() needs a format string");
        if (x->u.s.n > 256) return rerr(c, n, LLMOPS_ERR_LIMIT, "strftime_now() format too long");
        char fmt[260], buf[2048];
        memcpy(fmt, x->u.s.p, x->u.s.n);
        fmt[x->u.s.n] = 0;
        if (memchr(x->u.s.p, 0, x->u.s.n)) return rerr(c, n, LLMOPS_ERR_FORMAT, "embedded null character");
        time_t t = c->now ? (time_t)c->now : time(NULL);
        struct tm tmv;
        if (!localtime_r(&t, &tmv)) return rerr(c, n, LLMOPS_ERR_FORMAT, "strftime_now(): time out of range");
        size_t len = strftime(buf, sizeof buf, fmt, &tmv);
        char *p = ralloc(c, len + 1);
        if (!p) return -1;
        memcpy(p, buf, len);
        *out = mk_str(p, len);
        return 0;
    }
    case FN_NAMESPACE: case FN_DICT: {
        vdict *d = dict_new(c);
        if (!d) return -1;
        if (a->np > 1 || (a->np == 1 && x->kind != V_DICT))
            return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported: %s() with positional arguments other than one mapping", g_funcs[fn]);
        if (a->np == 1)
            for (size_t i = 0; i < x->u.d->n; i++)
                if (dict_set(c, d, x->u.d->k[i], x->u.d->v[i])) return -1;
        for (size_t i = 0; i < a->nk; i++)
            if (dict_set_str(c, d, a->kw[i], a->kwlen[i], a->kwv[i])) return -1;
        *out = mk_dict(d, fn == FN_NAMESPACE ? V_NS : V_DICT);
        return 0;
    }
    case FN_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->nk) return rerr(c, n, LLMOPS_ERR_FORMAT, "range() takes no keyword arguments");
        if (a->np < 1 || a->np > 3) return rerr(c, n, LLMOPS_ERR_FORMAT, "range expected 1 to 3 arguments, got %zu", a->np);
        for (size_t i = 0; i < a->np; i++) {
            if (a->pos[i].kind != V_INT && a->pos[i].kind != V_BOOL)
                return rerr(c, n, LLMOPS_ERR_FORMAT, "'%s' object cannot be interpreted as an integer", type_name(&a->pos[i]));
            v[a->np == 1 ? 1 : i] = num_i(&a->pos[i]);
        }
        if (v[2] == 0) return rerr(c, n, LLMOPS_ERR_FORMAT, "range() arg 3 must not be zero");
        __int128 cnt = 0;
        if (v[2] > 0 && v[1] > v[0]) cnt = ((__int128)v[1] - v[0] + v[2] - 1) / v[2];
        if (v[2] < 0 && v[1] < v[0]) cnt = ((__int128)v[0] - v[1] - v[2] - 1) / -(__int128)v[2];
        if (cnt > CT_MAX_RANGE)
            return rerr(c, n, LLMOPS_ERR_LIMIT, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", CT_MAX_RANGE);
        vlist *l = list_new(c, (size_t)cnt);
        if (!l) return -1;
        for (int64_t i = 0; i < (int64_t)cnt; i++) l->v[l->n++] = mk_int(v[0] + i * v[2]);
        l->lt = LT_RANGE;
        *out = mk_list(l, false);
        return 0;
    }
    default:
        return rerr(c, n, LLMOPS_ERR_UNSUPPORTED, "unsupported global function '%s'", g_funcs[fn]);
    }
}

static int call_value(rctx *c, const node *n, const value *callee, const args *a, value *out) {
    switch (callee->kind) {
    case V_MACRO: return call_macro(c, n, callee->u.m, a, out);
    case V_FUNC: return call_func(c, n, callee->u.fn, a, out);
    case V_METHOD: return call_method(c, n, callee->u.meth, a, out);
    case V_UNDEF: return undef_err(c, n, callee);
    default: return rerr(c, n, LLMOPS_ERR_FORMAT, "'%s' object is not callable", type_name(callee));
    }
}

/* ========================================================================== */
/* 6. statements and the public API                                           */
/* ========================================================================== */

enum { EX_OK = 0, EX_BREAK = 1, EX_CONTINUE = 2 };

static int assign(rctx *c, const node *t, const value *v) {
    if (t->kind == E_NAME) return dict_set_str(c, c->sc->vars, t->name, t->name_len, *v);
    if (t->kind == E_NSREF) {
        value ns = lookup(c, t->a->name, t->a->name_len);
        if (ns.kind != V_NS) return rerr(c, t, LLMOPS_ERR_FORMAT, "cannot assign attribute on non-namespace object");
        return dict_set_str(c, ns.u.d, t->name, t->name_len, *v);
    }
    vlist *items;
    if (iterate(c, t, v, &items)) return -1;
    if (items->n != t->items.n)
        return rerr(c, t, LLMOPS_ERR_FORMAT, items->n > t->items.n ? "too many values to unpack (expected %zu)"
                                                                    : "not enough values to unpack (expected %zu)", t->items.n);
    for (size_t i = 0; i < items->n; i++)
        if (assign(c, t->items.v[i], &items->v[i])) return -1;
    return 0;
}

/* Renders body into a string in a new scope. */
static int capture(rctx *c, const nlist *body, value *out) {
    scope s = {.parent = c->sc, .vars = dict_new(c)};
    if (!s.vars) return -1;
    sb b = {.c = c};
    scope *saved_sc = c->sc;
    sb *saved_out = c->out;
    c->sc = &s;
    c->out = &b;
    int r = exec_list(c, body);
    c->sc = saved_sc;
    c->out = saved_out;
    if (r < 0) return -1;
    *out = sb_value(&b);
    return 0;
}

/* Applies a filter chain whose innermost input is `in` (filter blocks). */
static int filter_chain(rctx *c, const node *f, const value *in, value *out) {
    value inner = *in;
    if (f->a && filter_chain(c, f->a, in, &inner)) return -1;
    args a;
    if (eval_args(c, f, &a)) return -1;
    return apply_filter(c, f, f->id, &inner, &a, out);
}

static int exec_for(rctx *c, const node *n) {
    value it;
    vlist *items;
    if (eval(c, n->b, &it) || iterate(c, n->b, &it, &items)) return -1;
    scope *outer = c->sc;
    if (n->c) {
        vlist *kept = list_new(c, 0);
        if (!kept) return -1;
        for (size_t i = 0; i < items->n; i++) {
            scope s = {.parent = outer, .vars = dict_new(c)};
            value t;
            if (!s.vars) return -1;
            c->sc = &s;
            int r = assign(c, n->a, &items->v[i]) || eval(c, n->c, &t);
            c->sc = outer;
            if (r) return -1;
            if (truthy(&t) && list_push(c, kept, items->v[i])) return -1;
        }
        items = kept;
    }
    loopctx *L = ralloc(c, sizeof *L);
    if (!L) return -1;
    L->items = items;
    value lv = {.kind = V_LOOP};
    lv.u.loop = L;
    /* each iteration starts from a fresh scope (jinja2 does not carry sets
     * over); no value refers to a loop scope, so one dict is reused */
    scope s = {.parent = outer, .vars = dict_new(c)};
    if (!s.vars) return -1;
    for (size_t i = 0; i < items->n; i++) {
        if (step(c, n)) return -1;
        s.vars->n = 0;
        c->sc = &s;
        L->i = i;
        int r = dict_set_str(c, s.vars, "loop", 4, lv);
        if (!r) r = assign(c, n->a, &items->v[i]);
        if (!r) r = exec_list(c, &n->items);
        c->sc = outer;
        if (r < 0) return -1;
        if (r == EX_BREAK) break;
    }
    if (!items->n && n->items2.n) {
        s.vars->n = 0;
        c->sc = &s;
        int r = exec_list(c, &n->items2);
        c->sc = outer;
        return r < 0 ? -1 : EX_OK;
    }
    return EX_OK;
}

static int exec_node(rctx *c, const node *n) {
    switch (n->kind) {
    case S_TEXT: return sb_put(c->out, n->name, n->name_len);
    case S_OUTPUT: {
        value v;
        if (eval(c, n->a, &v)) return -1;
        return to_str_sb(c, n, &v, c->out, false, 0);
    }
    case S_IF: {
        value t;
        if (eval(c, n->a, &t)) return -1;
        return exec_list(c, truthy(&t) ? &n->items : &n->items2);
    }
    case S_FOR: return exec_for(c, n);
    case S_SET: {
        value v;
        if (eval(c, n->b, &v)) return -1;
        return assign(c, n->a, &v);
    }
    case S_SETBLOCK: {
        value v;
        if (capture(c, &n->items, &v)) return -1;
        if (n->b && filter_chain(c, n->b, &v, &v)) return -1;
        return assign(c, n->a, &v);
    }
    case S_FILTERBLOCK: {
        value v;
        if (capture(c, &n->items, &v) || filter_chain(c, n->b, &v, &v)) return -1;
        return to_str_sb(c, n, &v, c->out, false, 0);
    }
    case S_MACRO: {
        value m = {.kind = V_MACRO};
        m.u.m = n;
        return dict_set_str(c, c->sc->vars, n->name, n->name_len, m);
    }
    case S_WITH: {
        scope s = {.parent = c->sc, .vars = dict_new(c)};
        if (!s.vars) return -1;
        value *vals = ralloc(c, (n->items2.n ? n->items2.n : 1) * sizeof *vals);
        if (!vals) return -1;
        for (size_t i = 0; i < n->items2.n; i++)
            if (eval(c, n->items2.v[i], &vals[i])) return -1;
        scope *outer = c->sc;
        c->sc = &s;
        int r = 0;
        for (size_t i = 0; i < n->items2.n && !r; i++) r = assign(c, n->b->items.v[i], &vals[i]);
        if (!r) r = exec_list(c, &n->items);
        c->sc = outer;
        return r;
    }
    case S_BREAK: return EX_BREAK;
    case S_CONTINUE: return EX_CONTINUE;
    case S_BLOCK: return exec_list(c, &n->items);
    default: return rerr(c, n, LLMOPS_ERR_INTERNAL, "cannot execute node kind %d", n->kind);
    }
}

static int exec_list(rctx *c, const nlist *body) {
    for (size_t i = 0; i < body->n; i++) {
        const node *n = body->v[i];
        if (step(c, n)) return -1;
        if (++c->depth > CT_MAX_DEPTH) {
            c->depth--;
            return rerr(c, n, LLMOPS_ERR_LIMIT, "template recursion deeper than %d", CT_MAX_DEPTH);
        }
        int r = exec_node(c, n);
        c->depth--;
        if (r) return r;
    }
    return EX_OK;
}

/* ---- JSON context -------------------------------------------------------------------------- */

static int from_json(rctx *c, json_t *j, value *out, int depth) {
    if (depth > 2 * CT_MAX_DEPTH) return rerr(c, NULL, LLMOPS_ERR_LIMIT, "JSON input nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        vdict *d = dict_new(c);
        if (!d) return -1;
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            value x;
            if (from_json(c, v, &x, depth + 1) || dict_set(c, d, mk_str(k, strlen(k)), x)) return -1;
        }
        *out = mk_dict(d, V_DICT);
        return 0;
    }
    case JSON_ARRAY: {
        vlist *l = list_new(c, json_array_size(j));
        if (!l) return -1;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (from_json(c, json_array_get(j, i), &l->v[l->n++], depth + 1)) return -1;
        *out = mk_list(l, false);
        return 0;
    }
    case JSON_STRING: *out = mk_str(json_string_value(j), json_string_length(j)); return 0;
    case JSON_INTEGER: *out = mk_int((int64_t)json_integer_value(j)); return 0;
    case JSON_REAL: *out = mk_float(json_real_value(j)); return 0;
    case JSON_TRUE: *out = mk_bool(1); return 0;
    case JSON_FALSE: *out = mk_bool(0); return 0;
    default: *out = NONE; return 0;
    }
}

/* A JSON syntax error in caller input is an INVALID_ARG (message kept). */
static llmops_status json_arg_error(llmops_error *err) {
    char msg[LLMOPS_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
    return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "%s", msg);
}

static llmops_status render_messages(const llmops_chat_template *t, json_t *msgs, const llmops_chat_render_opts *opts,
                                     llmops_buf *out, llmops_error *err) {
    llmops_chat_render_opts o = opts ? *opts : (llmops_chat_render_opts){0};
    const char *tokens[2] = {o.bos_token ? o.bos_token : "", o.eos_token ? o.eos_token : ""};
    for (int i = 0; i < 2; i++)
        if (utf8_check(tokens[i], strlen(tokens[i])) != strlen(tokens[i]))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: %s_token is not valid UTF-8", i ? "eos" : "bos");
    json_t *extra = NULL;
    llmops_status st;
    if (o.extra_json) {
        if ((st = llmops_json_parse(o.extra_json, strlen(o.extra_json), "chat template variables", &extra, err)))
            return st == LLMOPS_ERR_NOMEM ? st : json_arg_error(err);
        if (!json_is_object(extra)) {
            json_decref(extra);
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: extra variables must be a JSON object");
        }
    }
    rctx c = {
        .t = t,
        .err = err,
        .max_mem = o.max_memory ? o.max_memory : CT_DEFAULT_MEMORY,
        .max_output = o.max_output ? o.max_output : CT_DEFAULT_OUTPUT,
        .max_steps = o.max_steps ? o.max_steps : CT_DEFAULT_STEPS,
        .now = o.now,
    };
    if (out->max < c.max_output) c.max_output = out->max - out->len < c.max_output ? out->max - out->len : c.max_output;
    c.arena = llmops_arena_create(64 << 10, 0);
    if (!c.arena) {
        json_decref(extra);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
    }
    scope root = {0};
    sb outb = {.c = &c};
    value mv;
    int r = -1;
    if (!(c.ctxvars = dict_new(&c)) || !(root.vars = dict_new(&c))) goto done;
    if (from_json(&c, msgs, &mv, 0) || dict_set_str(&c, c.ctxvars, "messages", 8, mv) ||
        dict_set_str(&c, c.ctxvars, "add_generation_prompt", 21, mk_bool(o.add_generation_prompt)) ||
        dict_set_str(&c, c.ctxvars, "bos_token", 9, mk_str(tokens[0], strlen(tokens[0]))) ||
        dict_set_str(&c, c.ctxvars, "eos_token", 9, mk_str(tokens[1], strlen(tokens[1]))))
        goto done;
    if (extra) {
        const char *k;
        json_t *v;
        json_object_foreach(extra, k, v) {
            value x;
            if (from_json(&c, v, &x, 0) || dict_set_str(&c, c.ctxvars, k, strlen(k), x)) goto done;
        }
    }
    c.root = c.sc = &root;
    c.out = &outb;
    r = exec_list(&c, &t->body);
done:
    if (r >= 0) {
        c.st = llmops_buf_append(out, outb.p ? outb.p : "", outb.n, err);
        if (c.st) llmops_error_prefix(err, "chat template: ");
    }
    llmops_status result = r < 0 ? c.st : c.st;
    if (r < 0 && result == LLMOPS_OK) result = LLMOPS_ERR_INTERNAL;
    llmops_arena_free(c.arena);
    json_decref(extra);
    return result;
}

llmops_status llmops_chat_template_render_json(const llmops_chat_template *tmpl, const char *messages_json, size_t len,
                                               const llmops_chat_render_opts *opts, llmops_buf *out, llmops_error *err) {
    if (!tmpl || !out || (!messages_json && len))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: missing template, messages or output");
    llmops_json_init();
    json_t *msgs = NULL;
    llmops_status st = llmops_json_parse(messages_json ? messages_json : "", len, "messages", &msgs, err);
    if (st) return st == LLMOPS_ERR_NOMEM ? st : json_arg_error(err);
    if (!json_is_array(msgs)) {
        json_decref(msgs);
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: messages must be a JSON array");
    }
    st = render_messages(tmpl, msgs, opts, out, err);
    json_decref(msgs);
    return st;
}

llmops_status llmops_chat_template_render(const llmops_chat_template *tmpl, const llmops_chat_message *msgs, size_t n,
                                          const llmops_chat_render_opts *opts, llmops_buf *out, llmops_error *err) {
    if (!tmpl || !out || (!msgs && n))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: missing template, messages or output");
    llmops_json_init();
    json_t *arr = json_array();
    if (!arr) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const char *fields[2] = {msgs[i].role, msgs[i].content};
        const char *names[2] = {"role", "content"};
        json_t *m = json_object();
        if (!m || json_array_append_new(arr, m)) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
            break;
        }
        for (int f = 0; f < 2 && !st; f++) {
            json_t *v;
            if (!fields[f]) {
                v = json_null();
            } else {
                size_t flen = strlen(fields[f]);
                if (utf8_check(fields[f], flen) != flen) {
                    st = llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chat template: message %zu %s is not valid UTF-8", i, names[f]);
                    break;
                }
                v = json_stringn(fields[f], flen);
            }
            if (!v || json_object_set_new(m, names[f], v))
                st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "chat template: out of memory");
        }
    }
    if (!st) st = render_messages(tmpl, arr, opts, out, err);
    json_decref(arr);
    return st;
}
