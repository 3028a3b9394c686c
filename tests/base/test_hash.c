/* Hashing: FIPS 180-2 SHA-256 vectors, streaming, files, sha256sum; FNV-1a vectors. */
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/fileio.h"
#include "llmops/hash.h"

/* FIPS 180-2, appendix B, and the empty message. */
static const char *const k_abc448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

static void hex_of(const void *data, size_t len, char hex[LLMOPS_SHA256_HEX_SIZE]) {
    llmops_sha256_hex(data, len, hex);
}

TEST(hash_sha256_fips_vectors) {
    char hex[LLMOPS_SHA256_HEX_SIZE];
    hex_of(NULL, 0, hex);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of(k_abc448, strlen(k_abc448), hex);
    CHECK_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    /* one million 'a': one-shot, and streamed 1000 bytes at a time */
    enum { MILLION = 1000000 };
    char *a = malloc(MILLION);
    CHECK(a != NULL);
    memset(a, 'a', MILLION);
    hex_of(a, MILLION, hex);
    const char *expect = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    int one_shot_ok = strcmp(hex, expect) == 0;
    llmops_sha256_ctx c;
    llmops_sha256_init(&c);
    for (int i = 0; i < 1000; i++) llmops_sha256_update(&c, a, 1000);
    uint8_t d[LLMOPS_SHA256_BYTES];
    llmops_sha256_final(&c, d);
    free(a);
    CHECK(one_shot_ok);
    llmops_sha256_to_hex(d, hex);
    CHECK_EQ_STR(hex, expect);
}

/* A deterministic pseudo-random buffer (xorshift64*). */
static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = (uint8_t)((s * 0x2545F4914F6CDD1DULL) >> 56);
    }
}

TEST(hash_sha256_streaming_odd_pieces) {
    enum { N = 10007 };
    uint8_t *buf = malloc(N);
    CHECK(buf != NULL);
    fill_random(buf, N, 42);
    uint8_t want[LLMOPS_SHA256_BYTES], got[LLMOPS_SHA256_BYTES];
    llmops_sha256(buf, N, want);
    static const size_t pieces[] = {1, 3, 7, 55, 56, 63, 64, 65, 127, 1000, 4099};
    int ok = 1;
    for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
        llmops_sha256_ctx c;
        llmops_sha256_init(&c);
        /* vary the piece length as we go so block boundaries fall everywhere */
        size_t off = 0, step = pieces[pi];
        while (off < N) {
            size_t n = N - off < step ? N - off : step;
            llmops_sha256_update(&c, buf + off, n);
            llmops_sha256_update(&c, buf + off, 0); /* empty updates change nothing */
            off += n;
            step = step * 3 % 997 + 1;
        }
        llmops_sha256_final(&c, got);
        if (memcmp(want, got, sizeof want) != 0) ok = 0;
    }
    /* a copied context continues independently */
    llmops_sha256_ctx c1, c2;
    llmops_sha256_init(&c1);
    llmops_sha256_update(&c1, buf, 100);
    c2 = c1;
    llmops_sha256_update(&c1, buf + 100, N - 100);
    llmops_sha256_final(&c1, got);
    int fork_ok = memcmp(want, got, sizeof want) == 0;
    llmops_sha256_update(&c2, buf + 100, N - 100);
    llmops_sha256_final(&c2, got);
    fork_ok = fork_ok && memcmp(want, got, sizeof want) == 0;
    free(buf);
    CHECK(ok);
    CHECK(fork_ok);
}

TEST(hash_sha256_file_matches_buffer_and_sha256sum) {
    enum { N = 1 << 20 };
    uint8_t *buf = malloc(N);
    CHECK(buf != NULL);
    fill_random(buf, N, 0x5eed);
    llmops_error err = {0};
    const char *path = test_tmpfile("random.bin");
    llmops_status st = llmops_file_write_atomic(path, buf, N, &err);
    uint8_t want[LLMOPS_SHA256_BYTES], got[LLMOPS_SHA256_BYTES];
    llmops_sha256(buf, N, want);
    free(buf);
    CHECK_OK(st, err);
    CHECK_OK(llmops_sha256_file(path, got, &err), err);
    CHECK(memcmp(want, got, sizeof want) == 0);
    char hex[LLMOPS_SHA256_HEX_SIZE];
    llmops_sha256_to_hex(got, hex);

    /* an independent implementation: coreutils sha256sum */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char line[256] = {0};
    char *r = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (!r || rc != 0) SKIP("sha256sum not available");
    line[64] = '\0';
    CHECK_EQ_STR(hex, line);

    /* an empty file hashes like the empty message */
    const char *empty = test_tmpfile("empty.bin");
    CHECK_OK(llmops_file_write_atomic(empty, "", 0, &err), err);
    CHECK_OK(llmops_sha256_file(empty, got, &err), err);
    llmops_sha256_to_hex(got, hex);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(hash_sha256_file_missing_names_path) {
    llmops_error err = {0};
    uint8_t d[LLMOPS_SHA256_BYTES];
    const char *path = test_tmpfile("no-such-file.bin");
    CHECK_ERR(llmops_sha256_file(path, d, &err), LLMOPS_ERR_IO, err, path);
}

TEST(hash_fnv1a64_vectors) {
    /* the reference vectors of the FNV authors (isthe.com/chongo/tech/comp/fnv) */
    CHECK(llmops_hash_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    CHECK(llmops_hash_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(llmops_hash_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
    CHECK(llmops_hash_fnv1a64_str("foobar") == 0x85944171f73967e8ULL);
    uint64_t h = llmops_hash_fnv1a64_continue(LLMOPS_FNV1A64_OFFSET, "foo", 3);
    CHECK(llmops_hash_fnv1a64_continue(h, "bar", 3) == 0x85944171f73967e8ULL);
}
