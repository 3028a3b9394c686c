/*
 * libFuzzer target: arbitrary bytes as an HNSW index file. Each input is
 * loaded twice: as is (the SHA-256 trailer rejects almost everything), and
 * with the trailer recomputed over the mutated body, so the structural
 * checks behind the checksum are what the fuzzer explores. A loaded index
 * must then survive searches (plain, filtered, exact), an insert, a removal
 * and a save; any input must give OK or an error with a message, never a
 * crash, a hang or a leak.
 */
// clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
//     fuzz/fuzz_hnsw_load.c src/base/*.c src/vectordb/{hnsw,distance,distance_avx2,distance_avx512}.c
//     -o /tmp/fuzz_hnsw -ljansson -lyaml -lsodium -lutf8proc -lpthread -lm
// /tmp/fuzz_hnsw -max_total_time=60 fuzz/corpus/fuzz_hnsw_load
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmops/alloc.h"
#include "llmops/hash.h"
#include "vectordb/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int odd_labels(void *ctx, uint64_t label) {
    (void)ctx;
    return (int)(label & 1);
}

static void exercise(llmops_hnsw *h) {
    llmops_error err = {0};
    uint32_t dim = llmops_hnsw_dim(h);
    if (dim > 4096) return;
    float *q = calloc(dim, sizeof(float));
    for (uint32_t i = 0; i < dim; i++) q[i] = (float)((i * 7u) % 5u) - 2.0f;
    uint64_t labels[8];
    float dists[8];
    size_t n = 0;
    if (llmops_hnsw_search(h, q, 8, NULL, NULL, labels, dists, &n, &err) && !err.msg[0]) abort();
    if (llmops_hnsw_search(h, q, 8, odd_labels, NULL, labels, dists, &n, &err) && !err.msg[0]) abort();
    if (llmops_hnsw_search_exact(h, q, 8, NULL, NULL, labels, dists, &n, &err) && !err.msg[0]) abort();
    if (n > 8) abort();
    if (llmops_hnsw_count(h) < 100000) {
        if (llmops_hnsw_add(h, 0xfeedULL, q, &err) && !err.msg[0]) abort();
        if (llmops_hnsw_remove(h, 0xfeedULL, &err) && !err.msg[0]) abort();
        if (llmops_hnsw_search(h, q, 3, NULL, NULL, labels, dists, &n, &err) && !err.msg[0]) abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_hnsw_%ld.bin", (long)getpid());
    if (llmops_hnsw_save(h, path, 1, &err) == LLMOPS_OK) remove(path);
    free(q);
}

static void one(const uint8_t *data, size_t size) {
    llmops_error err = {0};
    llmops_hnsw *h = NULL;
    uint64_t gen = 0;
    llmops_status st = llmops_hnsw_load_buffer(data, size, "fuzz", &h, &gen, &err);
    if (st != LLMOPS_OK) {
        if (!err.msg[0] || h) abort(); /* every error explains itself and returns nothing */
        return;
    }
    exercise(h);
    llmops_hnsw_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (4u << 20)) return 0;
    long live = llmops_alloc_live();
    one(size ? data : NULL, size);
    if (size >= 160) {
        uint8_t *b = malloc(size);
        memcpy(b, data, size);
        llmops_sha256(b, size - 32, b + size - 32);
        one(b, size);
        free(b);
    }
    if (llmops_alloc_live() != live) abort(); /* nothing leaked */
    return 0;
}
