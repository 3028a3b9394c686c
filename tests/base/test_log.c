/* Logging: level names, threshold, sink. */
#include "../unit/test.h"
#include "llmops/log.h"

TEST(log_parse_level) {
    llmops_log_level lv = LLMOPS_LOG_ERROR;
    static const struct { const char *name; llmops_log_level level; } k[] = {
        {"error", LLMOPS_LOG_ERROR}, {"warn", LLMOPS_LOG_WARN}, {"warning", LLMOPS_LOG_WARN},
        {"info", LLMOPS_LOG_INFO},   {"debug", LLMOPS_LOG_DEBUG}, {"trace", LLMOPS_LOG_TRACE},
        {"DEBUG", LLMOPS_LOG_DEBUG}, {"Info", LLMOPS_LOG_INFO},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK_MSG(llmops_log_parse_level(k[i].name, &lv), "%s not parsed", k[i].name);
        CHECK_EQ_INT(lv, k[i].level);
    }
    lv = LLMOPS_LOG_INFO;
    CHECK(!llmops_log_parse_level("verbose", &lv));
    CHECK(!llmops_log_parse_level("", &lv));
    CHECK(!llmops_log_parse_level("info ", &lv));
    CHECK_EQ_INT(lv, LLMOPS_LOG_INFO); /* untouched on failure */
}

typedef struct captured {
    int n;
    llmops_log_level levels[16];
    char msgs[16][64];
} captured;

static void capture_sink(llmops_log_level level, const char *msg, void *user) {
    captured *c = user;
    if (c->n < 16) {
        c->levels[c->n] = level;
        snprintf(c->msgs[c->n], sizeof c->msgs[0], "%s", msg);
    }
    c->n++;
}

TEST(log_sink_gets_messages_at_or_below_level) {
    captured c = {0};
    llmops_log_set_sink(capture_sink, &c);
    llmops_log_set_level(LLMOPS_LOG_INFO);
    CHECK_EQ_INT(llmops_log_get_level(), LLMOPS_LOG_INFO);
    LLMOPS_ERROR("e %d", 1);
    LLMOPS_WARN("w %d", 2);
    LLMOPS_INFO("i %s", "three");
    LLMOPS_DEBUG("d %d", 4);                                     /* above INFO: dropped */
    llmops_log(LLMOPS_LOG_TRACE, __FILE__, __LINE__, "t");       /* dropped */
    llmops_log_set_level(LLMOPS_LOG_ERROR);
    LLMOPS_WARN("w again");                                      /* dropped */
    LLMOPS_ERROR("e again");
    llmops_log_set_level(LLMOPS_LOG_TRACE);
    llmops_log(LLMOPS_LOG_TRACE, __FILE__, __LINE__, "t %d", 5);
    llmops_log_set_sink(NULL, NULL);
    llmops_log_set_level(LLMOPS_LOG_ERROR);
    LLMOPS_DEBUG("not captured");                                /* sink gone and dropped */
    CHECK_EQ_INT(c.n, 5);
    CHECK_EQ_INT(c.levels[0], LLMOPS_LOG_ERROR);
    CHECK_EQ_STR(c.msgs[0], "e 1");
    CHECK_EQ_INT(c.levels[1], LLMOPS_LOG_WARN);
    CHECK_EQ_STR(c.msgs[1], "w 2");
    CHECK_EQ_INT(c.levels[2], LLMOPS_LOG_INFO);
    CHECK_EQ_STR(c.msgs[2], "i three");
    CHECK_EQ_STR(c.msgs[3], "e again");
    CHECK_EQ_INT(c.levels[4], LLMOPS_LOG_TRACE);
    CHECK_EQ_STR(c.msgs[4], "t 5");
}
