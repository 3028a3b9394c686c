/*
 * src/base/json.h — internal wrapper over jansson.
 *
 * Parsing goes through our allocator (so allocation-failure tests cover it),
 * rejects duplicate keys, and reports errors as "ORIGIN:LINE:COL: text".
 * Typed getters name the key path in their errors.
 */
#ifndef LLMOPS_BASE_JSON_H
#define LLMOPS_BASE_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "llmops/alloc.h"
#include "llmops/status.h"

/* Routes jansson's allocations through llmops_malloc/llmops_free (idempotent). */
void llmops_json_init(void);

/* Parses len bytes; *out owns a reference (json_decref). `origin` names the
 * source in messages. */
llmops_status llmops_json_parse(const char *data, size_t len, const char *origin, json_t **out,
                                llmops_error *err);
/* Reads and parses a file no larger than `max` bytes. */
llmops_status llmops_json_load_file(const char *path, size_t max, json_t **out, llmops_error *err);

/* Serialises `j` (indented when indent > 0, keys in insertion order) into b. */
llmops_status llmops_json_dump(const json_t *j, int indent, llmops_buf *b, llmops_error *err);
/* Writes `j` to `path` atomically, with a trailing newline. */
llmops_status llmops_json_write_file(const json_t *j, const char *path, int indent, llmops_error *err);

/*
 * Typed optional getters: when `key` is absent (or JSON null) *out is left as
 * is and LLMOPS_OK returned; a present value of the wrong type is a FORMAT
 * error "ORIGIN: KEY: expected an integer, got string".
 */
llmops_status llmops_json_opt_int(const json_t *obj, const char *key, int64_t *out,
                                  const char *origin, llmops_error *err);
llmops_status llmops_json_opt_num(const json_t *obj, const char *key, double *out,
                                  const char *origin, llmops_error *err);
llmops_status llmops_json_opt_bool(const json_t *obj, const char *key, int *out,
                                   const char *origin, llmops_error *err);
/* *out points into the json value (valid while it lives). */
llmops_status llmops_json_opt_str(const json_t *obj, const char *key, const char **out,
                                  const char *origin, llmops_error *err);

/* A new reference: json_real(x), or JSON null where x is NaN or infinite (a value never measured, such as a
 * validation loss without a validation split); jansson refuses non-finite reals. */
json_t *llmops_json_num_or_null(double x);

/* "object", "array", "string", ... for messages. */
const char *llmops_json_type_name(const json_t *j);

#endif
