/*
 * Network sources of the data pipeline: SigV4 against AWS's published
 * examples (the Signature Version 4 test suite and the S3 GetObject example),
 * downloads from a real local HTTP server (python3 -m http.server) and a real
 * S3 implementation (npm s3rver, skipped when absent).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fetch.h"
#include "llmops/hash.h"
#include "llmops/tokenizer.h"
#include "llmops/train_data.h"

/* ---- SigV4 ------------------------------------------------------------------------------ */

static const char EMPTY_SHA[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* The AWS SigV4 test suite: credentials AKIDEXAMPLE, region us-east-1, service "service". */
static llmops_status suite_sign(const char *method, const char *query, llmops_buf *creq, llmops_buf *sts,
                                llmops_buf *auth, char sig[65], llmops_error *err) {
    llmops_sigv4_header h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
    llmops_sigv4_request r = {.method = method,
                              .path = "/",
                              .query = query,
                              .headers = h,
                              .n_headers = 2,
                              .payload_hash = EMPTY_SHA,
                              .region = "us-east-1",
                              .service = "service",
                              .amz_date = "20150830T123600Z",
                              .access_key = "AKIDEXAMPLE",
                              .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
    return llmops_sigv4_sign(&r, creq, sts, auth, sig, err);
}

TEST(fetch_sigv4_aws_test_suite) {
    llmops_error err = {0};
    llmops_buf creq, sts, auth;
    llmops_buf_init(&creq, 1 << 16);
    llmops_buf_init(&sts, 1 << 16);
    llmops_buf_init(&auth, 1 << 16);
    char sig[65];
    /* get-vanilla */
    CHECK_OK(suite_sign("GET", "", &creq, &sts, &auth, sig, &err), err);
    CHECK_EQ_STR(creq.data, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_EQ_STR(sts.data, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                           "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    CHECK_EQ_STR(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_EQ_STR(auth.data, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                            "SignedHeaders=host;x-amz-date, "
                            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    /* get-vanilla-query-order-key-case: parameters sorted by name */
    creq.len = 0;
    CHECK_OK(suite_sign("GET", "Param2=value2&Param1=value1", &creq, NULL, NULL, sig, &err), err);
    CHECK(strstr(creq.data, "\nParam1=value1&Param2=value2\n") != NULL);
    CHECK_EQ_STR(sig, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    /* post-vanilla */
    CHECK_OK(suite_sign("POST", NULL, NULL, NULL, NULL, sig, &err), err);
    CHECK_EQ_STR(sig, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
    llmops_buf_free(&creq);
    llmops_buf_free(&sts);
    llmops_buf_free(&auth);
}

TEST(fetch_sigv4_s3_get_object_example) {
    /* AWS S3 API reference, "Signature Calculations for the Authorization Header:
     * Transferring Payload in a Single Chunk", example GET Object */
    llmops_error err = {0};
    llmops_sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                               {"Range", "bytes=0-9"},
                               {"x-amz-content-sha256", EMPTY_SHA},
                               {"x-amz-date", "20130524T000000Z"}};
    llmops_sigv4_request r = {.method = "GET",
                              .path = "/test.txt",
                              .query = "",
                              .headers = h,
                              .n_headers = 4,
                              .payload_hash = EMPTY_SHA,
                              .region = "us-east-1",
                              .service = "s3",
                              .amz_date = "20130524T000000Z",
                              .access_key = "AKIAIOSFODNN7EXAMPLE",
                              .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
    llmops_buf creq, sts, auth;
    llmops_buf_init(&creq, 1 << 16);
    llmops_buf_init(&sts, 1 << 16);
    llmops_buf_init(&auth, 1 << 16);
    char sig[65];
    CHECK_OK(llmops_sigv4_sign(&r, &creq, &sts, &auth, sig, &err), err);
    CHECK_EQ_STR(creq.data, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_EQ_STR(sts.data, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                           "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    CHECK_EQ_STR(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK_EQ_STR(auth.data, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    llmops_buf_free(&creq);
    llmops_buf_free(&sts);
    llmops_buf_free(&auth);
}

TEST(fetch_uri_encode) {
    llmops_error err = {0};
    llmops_buf b;
    llmops_buf_init(&b, 1024);
    CHECK_OK(llmops_uri_encode("dir/a b+c~d_e.f\xc3\xa9", 17, 1, &b, &err), err);
    CHECK_EQ_STR(b.data, "dir/a%20b%2Bc~d_e.f%C3%A9");
    b.len = 0;
    CHECK_OK(llmops_uri_encode("a/b", 3, 0, &b, &err), err);
    CHECK_EQ_STR(b.data, "a%2Fb");
    llmops_buf_free(&b);
}

/* ---- local servers ------------------------------------------------------------------------- */

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

static int port_open(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return 0;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* Starts argv as a child (output to /dev/null); waits up to 10 s for the port. */
static pid_t start_server(char *const argv[], int port) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        FILE *n = freopen("/dev/null", "w", stdout);
        n = freopen("/dev/null", "w", stderr);
        (void)n;
        execvp(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (port_open(port)) return pid;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return -1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return -1;
}

static void stop_server(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static llmops_tokenizer *stories_tok(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", test_repo_root());
    llmops_tokenizer *t = NULL;
    llmops_error err = {0};
    return llmops_tokenizer_load(path, &t, &err) == LLMOPS_OK ? t : NULL;
}

static const char DATA[] = "{\"text\": \"Once upon a time there was a cat.\"}\n"
                           "{\"text\": \"The cat liked to play.\"}\n"
                           "{\"text\": \"The end.\"}\n";

static void http_checks(int port) {
    char url[256], missing[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/train.jsonl", port);
    snprintf(missing, sizeof missing, "http://127.0.0.1:%d/nope.jsonl", port);
    llmops_error err = {0};
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(llmops_fetch(url, NULL, &data, &len, &err), err);
    CHECK_EQ_INT(len, strlen(DATA));
    CHECK(!memcmp(data, DATA, len));
    llmops_free(data);
    /* 404: the URL and the status */
    CHECK_ERR(llmops_fetch(missing, NULL, &data, &len, &err), LLMOPS_ERR_NOT_FOUND, err, "HTTP 404");
    CHECK(strstr(err.msg, missing) != NULL);
    /* the size cap */
    llmops_fetch_params fp;
    llmops_fetch_params_init(&fp);
    fp.max_bytes = 10;
    CHECK_ERR(llmops_fetch(url, &fp, &data, &len, &err), LLMOPS_ERR_LIMIT, err, url);
    /* the cache: a second fetch reads the file even after the server is gone */
    llmops_fetch_params_init(&fp);
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/cache", test_tmpdir());
    fp.cache_dir = cache;
    CHECK_OK(llmops_fetch(url, &fp, &data, &len, &err), err);
    llmops_free(data);
    /* a dataset straight from the URL */
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 32;
    llmops_dataset *ds = NULL;
    const char *src[] = {url};
    CHECK_OK(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), err);
    CHECK_EQ_INT(llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_examples, 3);
    llmops_dataset_free(ds);
    const char *src2[] = {missing};
    CHECK_ERR(llmops_dataset_load(src2, 1, t, NULL, &p, &ds, &err), LLMOPS_ERR_NOT_FOUND, err, "nope.jsonl: HTTP 404");
    llmops_tokenizer_free(t);
}

TEST(fetch_http_local_server) {
    if (access("/usr/bin/python3", X_OK) != 0) SKIP("no python3");
    char dir[4096], f[4200];
    snprintf(dir, sizeof dir, "%s/www", test_tmpdir());
    snprintf(f, sizeof f, "%s/train.jsonl", dir);
    CHECK(mkdir(dir, 0755) == 0 && write_file(f, DATA));
    int port = free_port();
    CHECK(port > 0);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {"/usr/bin/python3", "-m", "http.server", ps, "--bind", "127.0.0.1", "--directory", dir, NULL};
    pid_t pid = start_server(argv, port);
    CHECK_MSG(pid > 0, "python3 -m http.server did not start");
    http_checks(port);
    stop_server(pid);
    /* nothing listens now: a transport error naming the URL */
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/train.jsonl", port);
    llmops_error err = {0};
    char *data;
    size_t len;
    CHECK_ERR(llmops_fetch(url, NULL, &data, &len, &err), LLMOPS_ERR_IO, err, url);
}

/* Uploads through s3rver's API (anonymous PUT, which s3rver accepts) with libcurl's CLI. */
static int s3_put(int port, const char *bucket, const char *key_enc, const char *file) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "curl -sf -o /dev/null -X PUT --data-binary @'%s' 'http://127.0.0.1:%d/%s/%s'", file,
             port, bucket, key_enc);
    return system(cmd) == 0;
}

static void s3_checks(int port) {
    char file[4096], endpoint[128];
    snprintf(file, sizeof file, "%s/obj.jsonl", test_tmpdir());
    CHECK(write_file(file, DATA));
    CHECK(s3_put(port, "datasets", "dir/train%20set.jsonl", file));
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    llmops_fetch_params fp;
    llmops_fetch_params_init(&fp);
    fp.s3_endpoint = endpoint;
    fp.access_key = "S3RVER";
    fp.secret_key = "S3RVER";
    llmops_error err = {0};
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(llmops_fetch("s3://datasets/dir/train set.jsonl", &fp, &data, &len, &err), err);
    CHECK_EQ_INT(len, strlen(DATA));
    CHECK(!memcmp(data, DATA, len));
    llmops_free(data);
    CHECK_ERR(llmops_fetch("s3://datasets/missing.jsonl", &fp, &data, &len, &err), LLMOPS_ERR_NOT_FOUND, err,
              "s3://datasets/missing.jsonl: HTTP 404 (NoSuchKey)");
    CHECK_ERR(llmops_fetch("s3://nobucket/x.jsonl", &fp, &data, &len, &err), LLMOPS_ERR_NOT_FOUND, err,
              "NoSuchBucket");
    /* (s3rver accepts any signature: signing is checked against AWS's published examples above) */
    /* missing credentials */
    fp.access_key = fp.secret_key = NULL;
    if (!getenv("AWS_ACCESS_KEY_ID"))
        CHECK_ERR(llmops_fetch("s3://datasets/x", &fp, &data, &len, &err), LLMOPS_ERR_CONFIG, err, "no S3 credentials");
    /* the dataset from S3, credentials and endpoint from the environment */
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_ENDPOINT_URL", endpoint, 1);
    llmops_tokenizer *t = stories_tok();
    CHECK(t);
    llmops_data_params p;
    llmops_data_params_init(&p);
    p.seq_len = 32;
    llmops_dataset *ds = NULL;
    const char *src[] = {"s3://datasets/dir/train set.jsonl"};
    CHECK_OK(llmops_dataset_load(src, 1, t, NULL, &p, &ds, &err), err);
    CHECK_EQ_INT(llmops_dataset_stats(ds, LLMOPS_SPLIT_TRAIN).n_examples, 3);
    llmops_dataset_free(ds);
    llmops_tokenizer_free(t);
}

TEST(fetch_s3_local_s3rver) {
    if (system("command -v s3rver >/dev/null 2>&1") != 0) SKIP("s3rver not installed (npm install -g s3rver)");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/s3", test_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    int port = free_port();
    CHECK(port > 0);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {"s3rver", "-d", dir, "-a", "127.0.0.1", "-p", ps, "--configure-bucket", "datasets", "--silent",
                    NULL};
    pid_t pid = start_server(argv, port);
    CHECK_MSG(pid > 0, "s3rver did not start");
    s3_checks(port);
    stop_server(pid);
}
