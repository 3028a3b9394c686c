#include "llmops/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(((llmops_sha256_ctx *)0)->opaque.bytes),
               "llmops_sha256_ctx too small for libsodium's state");

/*
 * sodium_init() only selects implementations and seeds the RNG; SHA-256 is
 * portable code that works either way, so a failure (which libsodium
 * reports only when it cannot reach a random source) is not fatal here.
 */
static pthread_once_t g_sodium_once = PTHREAD_ONCE_INIT;
static int g_sodium_rc; /* kept for a debugger; see above */
static void sodium_init_once(void) { g_sodium_rc = sodium_init(); }
static void ensure_sodium(void) { pthread_once(&g_sodium_once, sodium_init_once); }

/* The state moves through memcpy so that the opaque bytes are never read
 * through a differently typed lvalue. */
static void load_state(const llmops_sha256_ctx *c, crypto_hash_sha256_state *st) {
    memcpy(st, c->opaque.bytes, sizeof *st);
}
static void store_state(llmops_sha256_ctx *c, const crypto_hash_sha256_state *st) {
    memcpy(c->opaque.bytes, st, sizeof *st);
}

void llmops_sha256(const void *data, size_t len, uint8_t out[LLMOPS_SHA256_BYTES]) {
    static const unsigned char empty[1];
    ensure_sodium();
    crypto_hash_sha256(out, len ? data : empty, (unsigned long long)len);
}

void llmops_sha256_init(llmops_sha256_ctx *c) {
    crypto_hash_sha256_state st;
    ensure_sodium();
    crypto_hash_sha256_init(&st);
    memset(c, 0, sizeof *c);
    store_state(c, &st);
}

void llmops_sha256_update(llmops_sha256_ctx *c, const void *data, size_t len) {
    if (len == 0) return;
    crypto_hash_sha256_state st;
    load_state(c, &st);
    crypto_hash_sha256_update(&st, data, (unsigned long long)len);
    store_state(c, &st);
}

void llmops_sha256_final(llmops_sha256_ctx *c, uint8_t out[LLMOPS_SHA256_BYTES]) {
    crypto_hash_sha256_state st;
    load_state(c, &st);
    crypto_hash_sha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
    memset(c, 0, sizeof *c);
}

void llmops_sha256_to_hex(const uint8_t digest[LLMOPS_SHA256_BYTES], char hex[LLMOPS_SHA256_HEX_SIZE]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < LLMOPS_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * LLMOPS_SHA256_BYTES] = '\0';
}

void llmops_sha256_hex(const void *data, size_t len, char hex[LLMOPS_SHA256_HEX_SIZE]) {
    uint8_t d[LLMOPS_SHA256_BYTES];
    llmops_sha256(data, len, d);
    llmops_sha256_to_hex(d, hex);
}

llmops_status llmops_sha256_file(const char *path, uint8_t out[LLMOPS_SHA256_BYTES], llmops_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    llmops_sha256_ctx c;
    llmops_sha256_init(&c);
    unsigned char chunk[64 * 1024];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return llmops_error_set(err, LLMOPS_ERR_IO, "%s: read error: %s", path, strerror(e));
        }
        if (n == 0) break;
        llmops_sha256_update(&c, chunk, (size_t)n);
    }
    close(fd);
    llmops_sha256_final(&c, out);
    return LLMOPS_OK;
}
