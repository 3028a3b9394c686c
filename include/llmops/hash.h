/*
 * llmops/hash.h — SHA-256 (through libsodium) and a fast non-cryptographic hash.
 *
 *     char hex[LLMOPS_SHA256_HEX_SIZE];
 *     uint8_t digest[LLMOPS_SHA256_BYTES];
 *     if (llmops_sha256_file("model.gguf", digest, &err)) return err.code;
 *     llmops_sha256_to_hex(digest, hex);             // "e3b0c442..."
 *
 *     llmops_sha256_ctx c;                            // streaming
 *     llmops_sha256_init(&c);
 *     llmops_sha256_update(&c, part1, n1);
 *     llmops_sha256_update(&c, part2, n2);
 *     llmops_sha256_final(&c, digest);
 *
 * SHA-256 is for content addressing and integrity (model files, artifacts).
 * For hash tables use llmops_hash_fnv1a64: fast, but neither collision- nor
 * flood-resistant, so never key it with attacker-chosen data where a
 * flooded bucket would matter.
 *
 * All functions are thread-safe; sodium_init() is called once, internally.
 */
#ifndef LLMOPS_HASH_H
#define LLMOPS_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_SHA256_BYTES 32
/* 64 hex digits and a NUL. */
#define LLMOPS_SHA256_HEX_SIZE 65

/* A streaming SHA-256 state. Plain data: copy it to fork a hash midway. */
typedef struct llmops_sha256_ctx {
    union {
        uint64_t align;
        unsigned char bytes[128]; /* holds a crypto_hash_sha256_state */
    } opaque;
} llmops_sha256_ctx;

/* One-shot: out = SHA-256(data[0 .. len)). data may be NULL when len is 0. */
void llmops_sha256(const void *data, size_t len, uint8_t out[LLMOPS_SHA256_BYTES]);

void llmops_sha256_init(llmops_sha256_ctx *c);
void llmops_sha256_update(llmops_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest; the context must be re-initialised before reuse. */
void llmops_sha256_final(llmops_sha256_ctx *c, uint8_t out[LLMOPS_SHA256_BYTES]);

/* Lower-case hex of a digest, NUL-terminated. */
void llmops_sha256_to_hex(const uint8_t digest[LLMOPS_SHA256_BYTES], char hex[LLMOPS_SHA256_HEX_SIZE]);
/* One-shot straight to hex. */
void llmops_sha256_hex(const void *data, size_t len, char hex[LLMOPS_SHA256_HEX_SIZE]);

/*
 * Hashes the file at `path` by streaming it in fixed-size pieces (constant
 * memory, whatever the file size). IO error names the path.
 */
llmops_status llmops_sha256_file(const char *path, uint8_t out[LLMOPS_SHA256_BYTES], llmops_error *err);

/* ---- non-cryptographic ------------------------------------------------------ */

#define LLMOPS_FNV1A64_OFFSET 0xcbf29ce484222325ULL
#define LLMOPS_FNV1A64_PRIME 0x100000001b3ULL

/* FNV-1a, 64-bit, continuing from `h` (start with LLMOPS_FNV1A64_OFFSET), so
 * that several fields hash as if concatenated. */
static inline uint64_t llmops_hash_fnv1a64_continue(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= LLMOPS_FNV1A64_PRIME;
    }
    return h;
}

/* FNV-1a, 64-bit, of data[0 .. len). For hash tables only (see above). */
static inline uint64_t llmops_hash_fnv1a64(const void *data, size_t len) {
    return llmops_hash_fnv1a64_continue(LLMOPS_FNV1A64_OFFSET, data, len);
}

/* FNV-1a, 64-bit, of a NUL-terminated string (the NUL excluded). */
static inline uint64_t llmops_hash_fnv1a64_str(const char *s) {
    uint64_t h = LLMOPS_FNV1A64_OFFSET;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= LLMOPS_FNV1A64_PRIME;
    }
    return h;
}

#ifdef __cplusplus
}
#endif
#endif
