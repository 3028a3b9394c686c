/*
 * llmops/config.h — YAML configuration files bound to C structs by a schema.
 *
 *     typedef struct { int64_t rank; double alpha; } lora_cfg;
 *     typedef struct { const char *model; int method; lora_cfg lora;
 *                      LLMOPS_CONFIG_LIST(const char *) tags; } job_cfg;
 *
 *     static const char *const k_methods[] = {"lora", "qlora", "full", NULL};
 *     static const llmops_config_field k_lora_fields[] = {
 *         {.key = "rank", .type = LLMOPS_CONFIG_TYPE_INT, .offset = offsetof(lora_cfg, rank),
 *          .def = "8", .min = 1, .max = 1024, .doc = "LoRA rank r"},
 *         {.key = "alpha", .type = LLMOPS_CONFIG_TYPE_FLOAT, .offset = offsetof(lora_cfg, alpha),
 *          .def = "16", .doc = "LoRA scaling numerator"},
 *     };
 *     static const llmops_config_schema k_lora = LLMOPS_CONFIG_SCHEMA(lora_cfg, k_lora_fields);
 *     static const llmops_config_field k_job_fields[] = {
 *         {.key = "model", .type = LLMOPS_CONFIG_TYPE_STRING, .offset = offsetof(job_cfg, model),
 *          .flags = LLMOPS_CONFIG_REQUIRED, .doc = "base model (GGUF path)"},
 *         {.key = "method", .type = LLMOPS_CONFIG_TYPE_ENUM, .offset = offsetof(job_cfg, method),
 *          .def = "lora", .enum_values = k_methods, .doc = "fine-tuning method"},
 *         {.key = "lora", .type = LLMOPS_CONFIG_TYPE_OBJECT, .offset = offsetof(job_cfg, lora),
 *          .sub = &k_lora, .doc = "LoRA settings"},
 *         {.key = "tags", .type = LLMOPS_CONFIG_TYPE_STRING_LIST, .offset = offsetof(job_cfg, tags)},
 *     };
 *     static const llmops_config_schema k_job = LLMOPS_CONFIG_SCHEMA(job_cfg, k_job_fields);
 *
 *     job_cfg job;
 *     llmops_config *cfg = NULL;
 *     llmops_error err = {0};
 *     if (llmops_config_load_file("job.yaml", &k_job, &job, &cfg, &err) != LLMOPS_OK) {
 *         fprintf(stderr, "error: %s\n", err.msg);   // "job.yaml:4:9: lora.rank: 0 is out of range [1, 1024]"
 *         return 1;
 *     }
 *     ... job.lora.rank, job.tags.items[i] (strings live in cfg) ...
 *     llmops_config_free(cfg);
 *
 * YAML subset and conventions
 *   - One document per file. The top level of a bound document is a mapping; an empty file (or
 *     only comments, or a lone `~`) binds as an empty mapping, so all defaults apply.
 *   - A plain (unquoted) scalar may be a number, a boolean or null; a quoted scalar, a block
 *     scalar (| or >) or one tagged !!str is always a string. Int, float and bool fields refuse
 *     quoted strings ("8" is not 8). Other tags (!!int, !custom, ...) are rejected.
 *   - Booleans follow YAML 1.2: true/True/TRUE and false/False/FALSE. The YAML 1.1 words
 *     yes/no/on/off/y/n are refused with a hint, so `country: NO` never turns into false.
 *   - Integers: decimal, 0x hex, 0o octal, with an optional sign; `_` may separate digits
 *     (1_000_000). Floats: decimal with optional fraction and exponent; .inf and .nan are refused.
 *   - null (plain ``, `~`, `null`, `Null`, `NULL`) as a value means "not given": the default
 *     applies, and a required key that is null is reported as missing.
 *   - Anchors and aliases are supported: an alias shares the anchored node (no copy). The size of
 *     the document with every alias expanded is bounded by max_nodes, so a "billion laughs" input
 *     fails with LLMOPS_ERR_LIMIT instead of exploding; an alias to a node that contains it is an
 *     error. Merge keys (`<<`) are not supported and are reported as such.
 *   - Duplicate keys and non-scalar keys are errors.
 *
 * Error messages read "FILE:LINE:COL: KEY.PATH: message" (1-based line and column, in characters),
 * for example "job.yaml:12:7: datasets[2].path: expected a string, got a mapping". A missing
 * required key points at the mapping that should contain it. YAML syntax errors read
 * "FILE:LINE:COL: <libyaml's problem>". Status codes: LLMOPS_ERR_FORMAT for YAML syntax,
 * LLMOPS_ERR_CONFIG for schema violations (and duplicate or non-scalar keys), LLMOPS_ERR_LIMIT for
 * caps, LLMOPS_ERR_UNSUPPORTED for tags and merge keys, LLMOPS_ERR_NOMEM, LLMOPS_ERR_IO, and
 * LLMOPS_ERR_INTERNAL for a bad schema (a bug in the caller).
 *
 * Thread safety: no global state; one llmops_config may be read from several threads at once.
 * Floats are read with strtod, so the C locale's '.' is assumed (the default unless the program
 * calls setlocale(LC_NUMERIC, ...)).
 */
#ifndef LLMOPS_CONFIG_H
#define LLMOPS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------------ */

#define LLMOPS_CONFIG_DEFAULT_MAX_BYTES (8u << 20)   /* input size                        */
#define LLMOPS_CONFIG_DEFAULT_MAX_DEPTH 64u          /* nested collections                */
#define LLMOPS_CONFIG_DEFAULT_MAX_NODES 250000u      /* nodes, with aliases expanded      */
#define LLMOPS_CONFIG_MAX_DEPTH_LIMIT 256u           /* max_depth is clamped to this      */
#define LLMOPS_CONFIG_MAX_ANCHORS 4096u              /* distinct anchor definitions       */

typedef struct llmops_config_options {
    size_t max_bytes;     /* 0 = LLMOPS_CONFIG_DEFAULT_MAX_BYTES                          */
    unsigned max_depth;   /* 0 = LLMOPS_CONFIG_DEFAULT_MAX_DEPTH                          */
    size_t max_nodes;     /* 0 = LLMOPS_CONFIG_DEFAULT_MAX_NODES                          */
    unsigned max_errors;  /* schema errors listed in one message, one per line; 0 = 1     */
} llmops_config_options;

/* ---- the parsed document ------------------------------------------------------ */

/* A parsed document: its node tree, its origin name and every string bound from it, all in one
 * arena released by llmops_config_free. */
typedef struct llmops_config llmops_config;
/* A node of the tree; owned by its llmops_config. */
typedef struct llmops_config_node llmops_config_node;

typedef enum llmops_config_node_kind {
    LLMOPS_CONFIG_NODE_SCALAR = 0,
    LLMOPS_CONFIG_NODE_SEQ,
    LLMOPS_CONFIG_NODE_MAP
} llmops_config_node_kind;

/*
 * Parses YAML bytes into a node tree. `origin` names the input in messages (a file name, "<env>";
 * NULL reads "<buffer>"). `opts` may be NULL. On success *out owns everything; on failure *out is
 * NULL and err says where the input went wrong.
 */
llmops_status llmops_config_parse_buffer(const void *data, size_t len, const char *origin,
                                         const llmops_config_options *opts, llmops_config **out,
                                         llmops_error *err);
/* Reads `path` (at most max_bytes) and parses it with the path as origin. */
llmops_status llmops_config_parse_file(const char *path, const llmops_config_options *opts,
                                       llmops_config **out, llmops_error *err);
/* Frees the tree and every string that was bound from it. NULL is a no-op. */
void llmops_config_free(llmops_config *cfg);

/* ---- schema ------------------------------------------------------------------- */

typedef enum llmops_config_type {
    LLMOPS_CONFIG_TYPE_STRING = 0, /* const char *            (min/max: length bounds)         */
    LLMOPS_CONFIG_TYPE_INT,        /* int64_t                  (min/max: value bounds)          */
    LLMOPS_CONFIG_TYPE_FLOAT,      /* double                   (fmin/fmax: value bounds)        */
    LLMOPS_CONFIG_TYPE_BOOL,       /* bool                                                      */
    LLMOPS_CONFIG_TYPE_ENUM,       /* int: index into enum_values                               */
    LLMOPS_CONFIG_TYPE_OBJECT,     /* the struct described by `sub`, embedded                   */
    LLMOPS_CONFIG_TYPE_STRING_LIST,/* LLMOPS_CONFIG_LIST(const char *)  (min/max: item count)   */
    LLMOPS_CONFIG_TYPE_OBJECT_LIST,/* LLMOPS_CONFIG_LIST(T), T described by `sub` (min/max: count) */
    LLMOPS_CONFIG_TYPE_SCALAR_MAP  /* LLMOPS_CONFIG_LIST(llmops_config_pair) (min/max: count)  */
} llmops_config_type;

/* The member type of list fields: `LLMOPS_CONFIG_LIST(dataset_cfg) datasets;` gives
 * `datasets.items[i]` for i < `datasets.count`. Items live in the llmops_config. */
#define LLMOPS_CONFIG_LIST(T) \
    struct {              \
        T *items;         \
        size_t count;     \
    }

/* One entry of a SCALAR_MAP field: the key and the scalar's text, in document order. */
typedef struct llmops_config_pair {
    const char *key;
    const char *value;
} llmops_config_pair;

#define LLMOPS_CONFIG_REQUIRED 1u

typedef struct llmops_config_schema llmops_config_schema;

/*
 * One key of a mapping. Ranges: `min`/`max` bound ints, string lengths and list counts, and
 * `fmin`/`fmax` bound floats, both ends inclusive; when both are 0 there is no bound (use
 * INT64_MIN / INT64_MAX or -DBL_MAX / DBL_MAX for a one-sided bound). `def` is the default as it
 * would be written in YAML ("8", "0.1", "true", "lora", "out/"); it is allowed for string, int,
 * float, bool and enum fields only. A field without a default that is not given is zero (NULL,
 * 0, false, the first enum value, an empty list); an absent object binds as an empty mapping.
 */
typedef struct llmops_config_field {
    const char *key;
    llmops_config_type type;
    size_t offset;                      /* offsetof(struct, member)                  */
    unsigned flags;                     /* LLMOPS_CONFIG_REQUIRED                    */
    const char *def;                    /* default in YAML text, or NULL             */
    int64_t min, max;                   /* int value / string length / list count    */
    double fmin, fmax;                  /* float value                               */
    const char *const *enum_values;     /* ENUM: NULL-terminated list of names       */
    const llmops_config_schema *sub;    /* OBJECT, OBJECT_LIST: the element schema   */
    const char *doc;                    /* one line for the generated documentation  */
} llmops_config_field;

struct llmops_config_schema {
    size_t size;                        /* sizeof the struct (element size in lists) */
    const llmops_config_field *fields;
    size_t nfields;
};

#define LLMOPS_CONFIG_SCHEMA(type, fields_array) \
    {sizeof(type), (fields_array), sizeof(fields_array) / sizeof((fields_array)[0])}

/*
 * Checks a schema for mistakes of its author: unknown types, members past the struct's end,
 * enum fields without names, object fields without a sub-schema, defaults that do not parse or
 * break their own range, duplicate keys. LLMOPS_ERR_INTERNAL names the field. Loading runs it.
 */
llmops_status llmops_config_schema_check(const llmops_config_schema *schema, llmops_error *err);

/*
 * Binds the mapping at `path` ("" or NULL: the document; "server", "jobs[0]": a part of it) into
 * `out`, a struct described by `schema`, which is zeroed first. Unknown keys, wrong types, values
 * out of range, bad enum names and missing required keys fail with LLMOPS_ERR_CONFIG, `out`
 * zeroed. Strings and lists in `out` point into `cfg`: they live until llmops_config_free(cfg).
 * A missing `path` binds as an empty mapping.
 */
llmops_status llmops_config_bind(llmops_config *cfg, const char *path,
                                 const llmops_config_schema *schema, void *out, llmops_error *err);

/* parse + bind of the whole document, with default options. On success the caller frees *cfg;
 * on failure *cfg is NULL and `out` is zeroed. */
llmops_status llmops_config_load_buffer(const void *data, size_t len, const char *origin,
                                        const llmops_config_schema *schema, void *out,
                                        llmops_config **cfg, llmops_error *err);
llmops_status llmops_config_load_file(const char *path, const llmops_config_schema *schema,
                                      void *out, llmops_config **cfg, llmops_error *err);

/*
 * Appends the schema as a Markdown table to `out` (see llmops_buf in alloc.h): one row per key
 * path ("training.lora.rank", "datasets[].path") with its type, default ("*required*" for
 * required keys), allowed values or range, and doc string. `prefix` (may be NULL) is prepended
 * to every key path.
 */
llmops_status llmops_config_write_docs(const llmops_config_schema *schema, const char *prefix,
                                       llmops_buf *out, llmops_error *err);

/* ---- free-form reading -------------------------------------------------------- */

/* The document's top node; NULL for an empty document. */
const llmops_config_node *llmops_config_root(const llmops_config *cfg);
/* The origin name given at parse time. */
const char *llmops_config_origin(const llmops_config *cfg);
/* The node at `path` below the root ("a.b[2].c"; "" is the root), or NULL. Keys that contain
 * '.' or '[' cannot be named by a path: walk with llmops_config_node_key/item instead. */
const llmops_config_node *llmops_config_get(const llmops_config *cfg, const char *path);
/* The same, below `node`. */
const llmops_config_node *llmops_config_node_get(const llmops_config_node *node, const char *path);

/* `node` must not be NULL for these three. */
llmops_config_node_kind llmops_config_node_kind_of(const llmops_config_node *node);
/* 1-based position of the node's first character. */
unsigned llmops_config_node_line(const llmops_config_node *node);
unsigned llmops_config_node_col(const llmops_config_node *node);
/* A scalar's text (NUL-terminated; owned by the config), NULL for a collection. */
const char *llmops_config_node_text(const llmops_config_node *node);
/* True for a plain (unquoted, untagged) scalar: the only kind that can be a number, bool, null. */
bool llmops_config_node_is_plain(const llmops_config_node *node);
/* True for a plain null scalar ("", "~", "null", "Null", "NULL"). */
bool llmops_config_node_is_null(const llmops_config_node *node);
/* Items of a sequence, key/value pairs of a mapping; 0 for a scalar. */
size_t llmops_config_node_count(const llmops_config_node *node);
/* Item i of a sequence or the value of pair i of a mapping; NULL when out of range. */
const llmops_config_node *llmops_config_node_item(const llmops_config_node *node, size_t i);
/* The key (a scalar node) of pair i of a mapping; NULL otherwise. */
const llmops_config_node *llmops_config_node_key(const llmops_config_node *node, size_t i);

#ifdef __cplusplus
}
#endif
#endif
