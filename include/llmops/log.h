/*
 * llmops/log.h — leveled logging to stderr.
 *
 *     llmops_log_set_level(LLMOPS_LOG_DEBUG);   // or LLMOPS_LOG=debug in the environment
 *     LLMOPS_INFO("loaded %s (%zu tensors)", path, n);
 */
#ifndef LLMOPS_LOG_H
#define LLMOPS_LOG_H

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_log_level {
    LLMOPS_LOG_ERROR = 0,
    LLMOPS_LOG_WARN,
    LLMOPS_LOG_INFO,
    LLMOPS_LOG_DEBUG,
    LLMOPS_LOG_TRACE
} llmops_log_level;

/* The threshold; messages above it are dropped. Default: WARN, or $LLMOPS_LOG
 * (error|warn|info|debug|trace) read on first use. */
void llmops_log_set_level(llmops_log_level level);
llmops_log_level llmops_log_get_level(void);
/* Parses "error".."trace"; returns 0 when the name is unknown. */
int llmops_log_parse_level(const char *name, llmops_log_level *out);

/* Optional sink replacing stderr (NULL restores stderr). */
typedef void (*llmops_log_sink)(llmops_log_level level, const char *msg, void *user);
void llmops_log_set_sink(llmops_log_sink sink, void *user);

void llmops_log(llmops_log_level level, const char *file, int line, const char *fmt, ...)
    LLMOPS_PRINTF(4, 5);

#define LLMOPS_ERROR(...) llmops_log(LLMOPS_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define LLMOPS_WARN(...) llmops_log(LLMOPS_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define LLMOPS_INFO(...) llmops_log(LLMOPS_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define LLMOPS_DEBUG(...) llmops_log(LLMOPS_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
