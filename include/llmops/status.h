/*
 * llmops/status.h — status codes and error messages.
 *
 * Every public function of libllmops returns an llmops_status (LLMOPS_OK = 0)
 * and writes its results through out-parameters. When a function fails it
 * fills the caller's llmops_error (if one is passed; NULL is allowed) with a
 * message that says what went wrong and where: file, byte offset, line and
 * column, key path — whatever locates the fault.
 *
 *     llmops_error err = {0};
 *     llmops_gguf *g = NULL;
 *     if (llmops_gguf_open("model.gguf", &g, &err) != LLMOPS_OK) {
 *         fprintf(stderr, "error: %s\n", err.msg);
 *         return 1;
 *     }
 */
#ifndef LLMOPS_STATUS_H
#define LLMOPS_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_status {
    LLMOPS_OK = 0,
    LLMOPS_ERR_INVALID_ARG,  /* caller passed something unusable            */
    LLMOPS_ERR_NOMEM,        /* an allocation failed                         */
    LLMOPS_ERR_IO,           /* open/read/write/mmap failed                  */
    LLMOPS_ERR_FORMAT,       /* malformed bytes in a file or message         */
    LLMOPS_ERR_UNSUPPORTED,  /* well-formed but not handled (type, version)  */
    LLMOPS_ERR_NOT_FOUND,    /* a named key, tensor or file does not exist   */
    LLMOPS_ERR_LIMIT,        /* a hard cap was reached                       */
    LLMOPS_ERR_CONFIG,       /* configuration invalid (schema violation)     */
    LLMOPS_ERR_INTERNAL      /* an invariant failed; a bug                   */
} llmops_status;

#define LLMOPS_ERROR_MSG_MAX 1024

typedef struct llmops_error {
    llmops_status code;
    char msg[LLMOPS_ERROR_MSG_MAX];
} llmops_error;

#if defined(__GNUC__)
#define LLMOPS_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define LLMOPS_PRINTF(fmt_idx, arg_idx)
#endif

/* A short constant name for a status ("format error", ...). */
const char *llmops_status_str(llmops_status code);

/*
 * Records `code` and a formatted message in `err` (which may be NULL) and
 * returns `code`, so that a failing path reads
 *     return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: bad magic", path);
 */
llmops_status llmops_error_set(llmops_error *err, llmops_status code, const char *fmt, ...)
    LLMOPS_PRINTF(3, 4);
llmops_status llmops_error_vset(llmops_error *err, llmops_status code, const char *fmt, va_list ap);

/*
 * Prepends context ("model.gguf: ") to the message already in `err` and
 * returns err->code (LLMOPS_OK when err is NULL). Used as an error climbs
 * out of a lower layer that did not know the file name.
 */
llmops_status llmops_error_prefix(llmops_error *err, const char *fmt, ...) LLMOPS_PRINTF(2, 3);

/* Resets `err` to LLMOPS_OK with an empty message. */
void llmops_error_clear(llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
