#include "llmops/status.h"

#include <stdio.h>
#include <string.h>

const char *llmops_status_str(llmops_status code) {
    switch (code) {
    case LLMOPS_OK: return "ok";
    case LLMOPS_ERR_INVALID_ARG: return "invalid argument";
    case LLMOPS_ERR_NOMEM: return "out of memory";
    case LLMOPS_ERR_IO: return "i/o error";
    case LLMOPS_ERR_FORMAT: return "format error";
    case LLMOPS_ERR_UNSUPPORTED: return "unsupported";
    case LLMOPS_ERR_NOT_FOUND: return "not found";
    case LLMOPS_ERR_LIMIT: return "limit exceeded";
    case LLMOPS_ERR_CONFIG: return "configuration error";
    case LLMOPS_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

llmops_status llmops_error_vset(llmops_error *err, llmops_status code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

llmops_status llmops_error_set(llmops_error *err, llmops_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    llmops_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

llmops_status llmops_error_prefix(llmops_error *err, const char *fmt, ...) {
    if (!err) return LLMOPS_OK;
    char head[LLMOPS_ERROR_MSG_MAX];
    char old[LLMOPS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* head then old, truncated to the buffer */
    size_t hl = strlen(head), ol = strlen(old), cap = sizeof err->msg - 1;
    if (hl > cap) hl = cap;
    if (ol > cap - hl) ol = cap - hl;
    memcpy(err->msg, head, hl);
    memcpy(err->msg + hl, old, ol);
    err->msg[hl + ol] = '\0';
    return err->code;
}

void llmops_error_clear(llmops_error *err) {
    if (!err) return;
    err->code = LLMOPS_OK;
    err->msg[0] = '\0';
}
