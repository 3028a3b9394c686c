#include "llmops/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const k_names[] = {"error", "warn", "info", "debug", "trace"};

static int g_level = -1; /* -1: not yet read from the environment */
static llmops_log_sink g_sink;
static void *g_sink_user;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

int llmops_log_parse_level(const char *name, llmops_log_level *out) {
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(name, k_names[i]) == 0) {
            *out = (llmops_log_level)i;
            return 1;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = LLMOPS_LOG_WARN;
        return 1;
    }
    return 0;
}

llmops_log_level llmops_log_get_level(void) {
    int lv = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
    if (lv < 0) {
        llmops_log_level parsed = LLMOPS_LOG_WARN;
        const char *env = getenv("LLMOPS_LOG");
        if (env && !llmops_log_parse_level(env, &parsed)) parsed = LLMOPS_LOG_WARN;
        lv = (int)parsed;
        __atomic_store_n(&g_level, lv, __ATOMIC_RELAXED);
    }
    return (llmops_log_level)lv;
}

void llmops_log_set_level(llmops_log_level level) {
    __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED);
}

void llmops_log_set_sink(llmops_log_sink sink, void *user) {
    pthread_mutex_lock(&g_lock);
    g_sink = sink;
    g_sink_user = user;
    pthread_mutex_unlock(&g_lock);
}

void llmops_log(llmops_log_level level, const char *file, int line, const char *fmt, ...) {
    if ((int)level > (int)llmops_log_get_level()) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_lock);
    if (g_sink) {
        g_sink(level, msg, g_sink_user);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        const char *base = strrchr(file, '/');
        fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s:%d: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, k_names[level], base ? base + 1 : file, line, msg);
    }
    pthread_mutex_unlock(&g_lock);
}
