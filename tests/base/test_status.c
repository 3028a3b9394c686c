/* Status codes and error messages. */
#include "../unit/test.h"
#include "llmops/status.h"

TEST(status_error_set_and_clear) {
    llmops_error err = {0};
    CHECK_EQ_INT(llmops_error_set(&err, LLMOPS_ERR_FORMAT, "%s: bad magic at offset %d", "m.gguf", 4),
                 LLMOPS_ERR_FORMAT);
    CHECK_EQ_INT(err.code, LLMOPS_ERR_FORMAT);
    CHECK_EQ_STR(err.msg, "m.gguf: bad magic at offset 4");
    llmops_error_clear(&err);
    CHECK_EQ_INT(err.code, LLMOPS_OK);
    CHECK_EQ_STR(err.msg, "");
    CHECK_EQ_STR(llmops_status_str(LLMOPS_OK), "ok");
    CHECK_EQ_STR(llmops_status_str(LLMOPS_ERR_LIMIT), "limit exceeded");
    CHECK_EQ_STR(llmops_status_str((llmops_status)999), "unknown status");
    /* every defined code has its own name */
    for (int a = LLMOPS_OK; a <= LLMOPS_ERR_INTERNAL; a++)
        for (int b = a + 1; b <= LLMOPS_ERR_INTERNAL; b++)
            CHECK(strcmp(llmops_status_str((llmops_status)a), llmops_status_str((llmops_status)b)) != 0);
}

TEST(status_error_prefix) {
    llmops_error err = {0};
    llmops_error_set(&err, LLMOPS_ERR_NOT_FOUND, "tensor \"%s\" not found", "wq");
    CHECK_EQ_INT(llmops_error_prefix(&err, "%s: layer %d: ", "model.gguf", 3), LLMOPS_ERR_NOT_FOUND);
    CHECK_EQ_STR(err.msg, "model.gguf: layer 3: tensor \"wq\" not found");
    CHECK_EQ_INT(err.code, LLMOPS_ERR_NOT_FOUND);
    /* prefixing twice nests the context outward */
    llmops_error_prefix(&err, "load: ");
    CHECK_EQ_STR(err.msg, "load: model.gguf: layer 3: tensor \"wq\" not found");
}

TEST(status_long_messages_truncate) {
    llmops_error err = {0};
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    llmops_error_set(&err, LLMOPS_ERR_IO, "%s", big);
    CHECK_EQ_INT(strlen(err.msg), LLMOPS_ERROR_MSG_MAX - 1);

    /* a long prefix on a long message keeps the head and stays terminated */
    llmops_error_set(&err, LLMOPS_ERR_IO, "tail");
    llmops_error_prefix(&err, "%s", big);
    CHECK_EQ_INT(strlen(err.msg), LLMOPS_ERROR_MSG_MAX - 1);
    CHECK_EQ_INT(err.msg[0], 'x');
    CHECK(strstr(err.msg, "tail") == NULL);

    /* a prefix that just fits keeps as much of the old message as room allows */
    char head[LLMOPS_ERROR_MSG_MAX - 3];
    memset(head, 'h', sizeof head - 1);
    head[sizeof head - 1] = '\0';
    llmops_error_set(&err, LLMOPS_ERR_IO, "tail");
    llmops_error_prefix(&err, "%s", head);
    CHECK_EQ_INT(strlen(err.msg), LLMOPS_ERROR_MSG_MAX - 1);
    CHECK(memcmp(err.msg + sizeof head - 1, "tai", 4) == 0); /* 1020 + 3 = 1023 */
}

TEST(status_null_error_accepted) {
    CHECK_EQ_INT(llmops_error_set(NULL, LLMOPS_ERR_NOMEM, "no %s", "memory"), LLMOPS_ERR_NOMEM);
    CHECK_EQ_INT(llmops_error_prefix(NULL, "ctx: "), LLMOPS_OK);
    llmops_error_clear(NULL);
}
