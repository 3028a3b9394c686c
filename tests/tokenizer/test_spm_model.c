/*
 * SentencePiece tokenizer.model reader: a ModelProto written byte by byte from
 * the field numbers of sentencepiece_model.proto, hostile wire-format inputs,
 * allocation failure, and the real Llama 2 tokenizer.model checked against two
 * independent exports of the same vocabulary (llama2.c's tokenizer.bin and
 * llama.cpp's GGUF vocab).
 */
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"
#include "llmops/gguf.h"
#include "llmops/llama2c.h"
#include "llmops/spm_model.h"

/* ---- a tiny ModelProto, by hand ---------------------------------------------------
 * Each top-level field is its own array, so the tests know where the field
 * boundaries are without parsing anything. Tag byte = field_number << 3 | wire_type.
 */

/* pieces { piece: "<unk>" type: UNKNOWN } */
static const uint8_t k_p0[] = {0x0a, 9, 0x0a, 5, '<', 'u', 'n', 'k', '>', 0x18, 2};
/* pieces { piece: "<s>" type: CONTROL } */
static const uint8_t k_p1[] = {0x0a, 7, 0x0a, 3, '<', 's', '>', 0x18, 3};
/* pieces { piece: "▁a" score: -1.5 }   U+2581 = e2 96 81; -1.5f = 0xbfc00000 little-endian */
static const uint8_t k_p2[] = {0x0a, 11, 0x0a, 4, 0xe2, 0x96, 0x81, 'a', 0x15, 0x00, 0x00, 0xc0, 0xbf};
/* pieces { piece: "<0x41>" type: BYTE score: 2.0 }  2.0f = 0x40000000; score after type */
static const uint8_t k_p3[] = {0x0a, 15, 0x0a, 6, '<', '0', 'x', '4', '1', '>', 0x18, 6, 0x15, 0x00, 0x00, 0x00, 0x40};
/* pieces { piece: "a\0b" }  a NUL inside a piece: the length carries it */
static const uint8_t k_p4[] = {0x0a, 5, 0x0a, 3, 'a', 0x00, 'b'};
/* trainer_spec { model_prefix: "m" (field 2, not read)  model_type: BPE  vocab_size: 5
 *                byte_fallback: true (35: tag 280 = 98 02)  split_digits: true (25: c8 01)
 *                pad_id: -1 (43: tag 344 = d8 02; ten-byte sign-extended varint)  bos_id: 300 (41: c8 02) } */
static const uint8_t k_trainer[] = {0x12, 29,   0x12, 1,    'm',  0x18, 2,    0x20, 5,    0x98, 0x02, 0x01,
                                    0xc8, 0x01, 0x01, 0xd8, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0x01, 0xc8, 0x02, 0xac, 0x02};
/* normalizer_spec { name: "nmt"  precompiled_charsmap: 01 02 00 03  add_dummy_prefix: false } */
static const uint8_t k_norm[] = {0x1a, 13, 0x0a, 3, 'n', 'm', 't', 0x12, 4, 0x01, 0x02, 0x00, 0x03, 0x18, 0x00};
/* field 99, fixed64 (tag 793 = 99 06): unknown, skipped */
static const uint8_t k_unk64[] = {0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8};
/* field 100, a group (start tag 803 = a3 06, end 804 = a4 06) holding a varint and a nested group 7 */
static const uint8_t k_group[] = {0xa3, 0x06, 0x08, 0x07, 0x3b, 0x15, 1, 2, 3, 4, 0x3c, 0xa4, 0x06};
/* denormalizer_spec {} (field 5) and self_test_data { samples {} } (field 4): skipped */
static const uint8_t k_denorm[] = {0x2a, 0x00};
static const uint8_t k_selftest[] = {0x22, 0x02, 0x0a, 0x00};

typedef struct {
    const uint8_t *b;
    size_t n;
    int is_piece;
} segment;

static const segment k_tiny[] = {
    {k_p0, sizeof k_p0, 1},           {k_unk64, sizeof k_unk64, 0}, {k_p1, sizeof k_p1, 1},
    {k_trainer, sizeof k_trainer, 0}, {k_p2, sizeof k_p2, 1},       {k_group, sizeof k_group, 0},
    {k_p3, sizeof k_p3, 1},           {k_norm, sizeof k_norm, 0},   {k_p4, sizeof k_p4, 1},
    {k_denorm, sizeof k_denorm, 0},   {k_selftest, sizeof k_selftest, 0},
};
#define N_SEG (sizeof k_tiny / sizeof k_tiny[0])

/* Concatenates the segments; bounds[i] = end offset of segment i. */
static size_t tiny_model(uint8_t *out, size_t cap, size_t *bounds) {
    size_t n = 0;
    for (size_t i = 0; i < N_SEG; i++) {
        if (n + k_tiny[i].n > cap) abort();
        memcpy(out + n, k_tiny[i].b, k_tiny[i].n);
        n += k_tiny[i].n;
        if (bounds) bounds[i] = n;
    }
    return n;
}

/* Length prefixes in the arrays above are hand-counted; check them against the array sizes. */
TEST(spm_model_handbuilt_lengths_consistent) {
    for (size_t i = 0; i < N_SEG; i++) {
        const uint8_t *b = k_tiny[i].b;
        if ((b[0] & 7) != 2) continue; /* not length-delimited */
        CHECK_MSG((size_t)b[1] + 2 == k_tiny[i].n, "segment %zu: length byte %u, array %zu", i, b[1], k_tiny[i].n);
    }
}

TEST(spm_model_handbuilt) {
    long live = llmops_alloc_live();
    uint8_t buf[512];
    size_t n = tiny_model(buf, sizeof buf, NULL);
    llmops_spm_model m;
    llmops_error err = {0};
    CHECK_OK(llmops_spm_model_parse(buf, n, "tiny.model", &m, &err), err);
    CHECK_EQ_INT(m.n, 5);
    CHECK_EQ_STR(m.pieces[0].text, "<unk>");
    CHECK_EQ_INT(m.pieces[0].len, 5);
    CHECK_EQ_INT(m.pieces[0].type, LLMOPS_SPM_PIECE_UNKNOWN);
    CHECK(m.pieces[0].score == 0.0f);
    CHECK_EQ_STR(m.pieces[1].text, "<s>");
    CHECK_EQ_INT(m.pieces[1].type, LLMOPS_SPM_PIECE_CONTROL);
    CHECK_EQ_STR(m.pieces[2].text, "\xe2\x96\x81" "a");
    CHECK_EQ_INT(m.pieces[2].len, 4);
    CHECK(m.pieces[2].score == -1.5f);
    CHECK_EQ_INT(m.pieces[2].type, LLMOPS_SPM_PIECE_NORMAL); /* the proto default */
    CHECK_EQ_STR(m.pieces[3].text, "<0x41>");
    CHECK_EQ_INT(m.pieces[3].type, LLMOPS_SPM_PIECE_BYTE);
    CHECK(m.pieces[3].score == 2.0f);
    CHECK_EQ_INT(m.pieces[4].len, 3);
    CHECK(memcmp(m.pieces[4].text, "a\0b", 4) == 0); /* the terminator follows the NUL inside */

    CHECK(m.has_trainer_spec);
    CHECK_EQ_INT(m.trainer.model_type, LLMOPS_SPM_MODEL_BPE);
    CHECK_EQ_INT(m.trainer.vocab_size, 5);
    CHECK_EQ_INT(m.trainer.byte_fallback, 1);
    CHECK_EQ_INT(m.trainer.split_digits, 1);
    CHECK_EQ_INT(m.trainer.treat_whitespace_as_suffix, 0);
    CHECK_EQ_INT(m.trainer.unk_id, 0); /* absent: defaults */
    CHECK_EQ_INT(m.trainer.bos_id, 300);
    CHECK_EQ_INT(m.trainer.eos_id, 2);
    CHECK_EQ_INT(m.trainer.pad_id, -1);

    CHECK(m.has_normalizer_spec);
    CHECK_EQ_STR(m.normalizer.name, "nmt");
    CHECK_EQ_INT(m.normalizer.name_len, 3);
    CHECK_EQ_INT(m.normalizer.precompiled_charsmap_len, 4);
    CHECK(memcmp(m.normalizer.precompiled_charsmap, "\x01\x02\x00\x03", 4) == 0);
    CHECK_EQ_INT(m.normalizer.add_dummy_prefix, 0);
    CHECK_EQ_INT(m.normalizer.remove_extra_whitespaces, 1);
    CHECK_EQ_INT(m.normalizer.escape_whitespaces, 1);

    /* the result is a copy: the input may go away */
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ_STR(m.pieces[0].text, "<unk>");
    CHECK_EQ_STR(m.normalizer.name, "nmt");
    llmops_spm_model_free(&m);
    CHECK(m.pieces == NULL && m.n == 0);
    llmops_spm_model_free(&m); /* twice: no-op */
    llmops_spm_model_free(NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(spm_model_defaults_and_merging) {
    llmops_error err = {0};
    llmops_spm_model m;
    /* one piece and nothing else: every spec field takes the proto default */
    static const uint8_t one[] = {0x0a, 3, 0x0a, 1, 'x'};
    CHECK_OK(llmops_spm_model_parse(one, sizeof one, "one", &m, &err), err);
    CHECK_EQ_INT(m.n, 1);
    CHECK_EQ_INT(m.pieces[0].type, LLMOPS_SPM_PIECE_NORMAL);
    CHECK(!m.has_trainer_spec && !m.has_normalizer_spec);
    CHECK_EQ_INT(m.trainer.model_type, LLMOPS_SPM_MODEL_UNIGRAM);
    CHECK_EQ_INT(m.trainer.vocab_size, 8000);
    CHECK_EQ_INT(m.trainer.byte_fallback, 0);
    CHECK_EQ_INT(m.trainer.unk_id, 0);
    CHECK_EQ_INT(m.trainer.bos_id, 1);
    CHECK_EQ_INT(m.trainer.eos_id, 2);
    CHECK_EQ_INT(m.trainer.pad_id, -1);
    CHECK_EQ_INT(m.trainer.split_digits, 0);
    CHECK_EQ_STR(m.normalizer.name, "");
    CHECK(m.normalizer.precompiled_charsmap == NULL);
    CHECK_EQ_INT(m.normalizer.precompiled_charsmap_len, 0);
    CHECK_EQ_INT(m.normalizer.add_dummy_prefix, 1);
    CHECK_EQ_INT(m.normalizer.remove_extra_whitespaces, 1);
    CHECK_EQ_INT(m.normalizer.escape_whitespaces, 1);
    llmops_spm_model_free(&m);

    /* protobuf semantics: a repeated scalar field keeps its last value, a repeated
     * embedded message merges, an int32 keeps the low 32 bits */
    static const uint8_t merged[] = {
        0x0a, 6, 0x0a, 1, 'x', 0x0a, 1, 'y',                 /* piece "x" then "y": "y" wins      */
        0x12, 4, 0x18, 3, 0x20, 7,                           /* trainer: WORD, vocab 7             */
        0x12, 2, 0x18, 4,                                    /* trainer again: CHAR, vocab kept    */
        0x12, 7, 0xd0, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f,   /* eos_id 0xffffffff (5 bytes) -> -1  */
        0x1a, 3, 0x0a, 1, 'a', 0x1a, 6, 0x0a, 2, 'b', 'c', 0x20, 0x00,
    };
    CHECK_OK(llmops_spm_model_parse(merged, sizeof merged, "merged", &m, &err), err);
    CHECK_EQ_INT(m.n, 1);
    CHECK_EQ_STR(m.pieces[0].text, "y");
    CHECK_EQ_INT(m.trainer.model_type, LLMOPS_SPM_MODEL_CHAR);
    CHECK_EQ_INT(m.trainer.vocab_size, 7);
    CHECK_EQ_INT(m.trainer.eos_id, -1);
    CHECK_EQ_STR(m.normalizer.name, "bc");
    CHECK_EQ_INT(m.normalizer.remove_extra_whitespaces, 0);
    llmops_spm_model_free(&m);
}

/* Cut the tiny model after every byte: a cut on a top-level field boundary is a
 * shorter valid model (if it still holds a piece); any other cut is a clean error. */
TEST(spm_model_truncation_every_byte) {
    long live = llmops_alloc_live();
    uint8_t buf[512];
    size_t bounds[N_SEG];
    size_t n = tiny_model(buf, sizeof buf, bounds);
    for (size_t cut = 0; cut < n; cut++) {
        /* a heap copy of exactly `cut` bytes, so ASan sees any read past it */
        uint8_t *copy = malloc(cut ? cut : 1);
        CHECK(copy != NULL);
        memcpy(copy, buf, cut);
        size_t pieces_before = 0;
        int on_boundary = cut == 0;
        for (size_t i = 0; i < N_SEG && bounds[i] <= cut; i++) {
            pieces_before += (size_t)k_tiny[i].is_piece;
            on_boundary |= bounds[i] == cut;
        }
        llmops_spm_model m;
        llmops_error err = {0};
        llmops_status st = llmops_spm_model_parse(copy, cut, "cut.model", &m, &err);
        free(copy);
        if (on_boundary && pieces_before > 0) {
            CHECK_MSG(st == LLMOPS_OK, "cut %zu: %s", cut, err.msg);
            CHECK_EQ_INT(m.n, pieces_before);
        } else {
            CHECK_MSG(st == LLMOPS_ERR_FORMAT, "cut %zu: status %s", cut, llmops_status_str(st));
            CHECK_MSG(strstr(err.msg, "cut.model: ") == err.msg, "cut %zu: %s", cut, err.msg);
            CHECK_MSG(on_boundary || strstr(err.msg, "offset "), "cut %zu: %s", cut, err.msg);
            CHECK(m.pieces == NULL && m.n == 0);
        }
        llmops_spm_model_free(&m);
        CHECK_EQ_INT(llmops_alloc_live(), live);
    }
}

/* ---- hostile inputs ----------------------------------------------------------------- */

static llmops_status parse_bytes(const uint8_t *b, size_t n, llmops_error *err) {
    llmops_spm_model m;
    long live = llmops_alloc_live();
    llmops_status st = llmops_spm_model_parse(b, n, "bad.model", &m, err);
    llmops_spm_model_free(&m);
    if (llmops_alloc_live() != live) return LLMOPS_ERR_INTERNAL;
    return st;
}

#define P(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

TEST(spm_model_hostile_lengths) {
    llmops_error err = {0};
    /* a valid piece (5 bytes), then a pieces field claiming 65535 bytes at offset 5; its length at 6 */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'x', 0x0a, 0xff, 0xff, 0x03, 0x0a, 0x0b, 0x0c), &err), LLMOPS_ERR_FORMAT, err,
              "bad.model: offset 6: field 1 (pieces): length 65535 runs past the end (3 bytes left)");
    /* a length of 2^63: no wrap-around */
    CHECK_ERR(parse_bytes(P(0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), &err),
              LLMOPS_ERR_FORMAT, err, "length 9223372036854775808 runs past the end");
    /* inside a piece, the string runs past the piece (though not past the file) */
    CHECK_ERR(parse_bytes(P(0x0a, 4, 0x0a, 5, 'a', 'b', 'c', 'd', 'e', 'f'), &err), LLMOPS_ERR_FORMAT, err,
              "offset 3: field 1 (pieces[0].piece): length 5 runs past the end of pieces[0] (2 bytes left)");
    /* a fixed32 score cut by its piece's end */
    CHECK_ERR(parse_bytes(P(0x0a, 5, 0x0a, 1, 'a', 0x15, 0x00, 0x00, 0x00, 0x00), &err), LLMOPS_ERR_FORMAT, err,
              "field 2 (pieces[0].score): fixed32 value needs 4 bytes, 1 left before the end of pieces[0]");
    /* an unknown fixed64 cut by the end of the file */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x49, 1, 2, 3), &err), LLMOPS_ERR_FORMAT, err,
              "field 9 (unknown): fixed64 value needs 8 bytes, 3 left before the end");
    /* a second piece with the right length in the wrong place */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x0a, 2, 0x0a), &err), LLMOPS_ERR_FORMAT, err,
              "length 2 runs past the end (1 bytes left)");
}

TEST(spm_model_hostile_varints) {
    llmops_error err = {0};
    /* eleven bytes with the continuation bit, as the value of unknown varint field 9 */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x48, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                            0x80, 0x01),
                          &err),
              LLMOPS_ERR_FORMAT, err, "offset 6: field 9 (unknown): value varint is longer than 10 bytes");
    /* ... as a tag */
    CHECK_ERR(parse_bytes(P(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), &err),
              LLMOPS_ERR_FORMAT, err, "offset 0: in ModelProto: tag varint is longer than 10 bytes");
    /* ... as a length, inside the trainer spec */
    CHECK_ERR(parse_bytes(P(0x12, 12, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01),
                          &err),
              LLMOPS_ERR_FORMAT, err, "field 2 (trainer_spec.unknown): length varint is longer than 10 bytes");
    /* ten bytes whose last carries bits past 64 */
    CHECK_ERR(parse_bytes(P(0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), &err),
              LLMOPS_ERR_FORMAT, err, "varint overflows 64 bits");
    /* a varint cut by the end of its message */
    CHECK_ERR(parse_bytes(P(0x12, 2, 0x20, 0x80), &err), LLMOPS_ERR_FORMAT, err,
              "field 4 (trainer_spec.vocab_size): value varint is cut off by the end of trainer_spec");
    /* field number 0, and one past 2^29-1 */
    CHECK_ERR(parse_bytes(P(0x02, 0x00), &err), LLMOPS_ERR_FORMAT, err, "invalid field number 0");
    CHECK_ERR(parse_bytes(P(0x80, 0x80, 0x80, 0x80, 0x10, 0x00), &err), LLMOPS_ERR_FORMAT, err,
              "invalid field number 536870912");
}

TEST(spm_model_hostile_wire_types) {
    llmops_error err = {0};
    CHECK_ERR(parse_bytes(P(0x08, 0x01), &err), LLMOPS_ERR_FORMAT, err,
              "offset 0: field 1 (pieces): wire type 0 (varint), expected 2 (length-delimited)");
    CHECK_ERR(parse_bytes(P(0x0a, 4, 0x0a, 1, 'a', 0x10, 0x05), &err), LLMOPS_ERR_FORMAT, err,
              "offset 5: field 2 (pieces[0].score): wire type 0 (varint), expected 5 (fixed32)");
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x12, 2, 0x1d, 0x01), &err), LLMOPS_ERR_FORMAT, err,
              "field 3 (trainer_spec.model_type): wire type 5 (fixed32), expected 0 (varint)");
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x1a, 2, 0x0d, 0x00), &err), LLMOPS_ERR_FORMAT, err,
              "field 1 (normalizer_spec.name): wire type 5 (fixed32), expected 2 (length-delimited)");
    /* a known field may not be a group either */
    CHECK_ERR(parse_bytes(P(0x0b, 0x0c), &err), LLMOPS_ERR_FORMAT, err, "field 1 (pieces): wire type 3 (start-group)");
    /* wire types 6 and 7 do not exist */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x4e, 0), &err), LLMOPS_ERR_FORMAT, err,
              "field 9 (unknown): invalid wire type 6");
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x4f), &err), LLMOPS_ERR_FORMAT, err, "invalid wire type 7");
}

TEST(spm_model_hostile_groups) {
    llmops_error err = {0};
    enum { DEEP = 5000 };
    uint8_t *b = malloc(5 + 2 * DEEP);
    CHECK(b != NULL);
    static const uint8_t piece[] = {0x0a, 3, 0x0a, 1, 'a'};
    memcpy(b, piece, 5);
    /* DEEP start-groups of field 7 (0x3b) then as many end-groups (0x3c) */
    memset(b + 5, 0x3b, DEEP);
    memset(b + 5 + DEEP, 0x3c, DEEP);
    llmops_status st = parse_bytes(b, 5 + 2 * DEEP, &err);
    CHECK_ERR(st, LLMOPS_ERR_LIMIT, err, "groups nested deeper than 64");
    /* exactly as deep as the cap: fine */
    memset(b + 5, 0x3b, LLMOPS_SPM_MAX_GROUP_DEPTH);
    memset(b + 5 + LLMOPS_SPM_MAX_GROUP_DEPTH, 0x3c, LLMOPS_SPM_MAX_GROUP_DEPTH);
    st = parse_bytes(b, 5 + 2 * LLMOPS_SPM_MAX_GROUP_DEPTH, &err);
    CHECK_OK(st, err);
    /* the deep run, unclosed: the end comes first */
    memset(b + 5, 0x3b, 40);
    CHECK_ERR(parse_bytes(b, 45, &err), LLMOPS_ERR_FORMAT, err, "offset 5: field 7 (unknown): group is not closed");
    free(b);
    /* an end-group that closes another field's group */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x3b, 0x44), &err), LLMOPS_ERR_FORMAT, err,
              "offset 6: field 8 (unknown): end-group closes the group of field 7");
    /* an end-group with no start */
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x3c), &err), LLMOPS_ERR_FORMAT, err,
              "field 7 (unknown): end-group without a matching start-group");
    /* a group must close inside its enclosing message, not after it */
    CHECK_ERR(parse_bytes(P(0x0a, 4, 0x0a, 1, 'a', 0x3b, 0x3c), &err), LLMOPS_ERR_FORMAT, err,
              "field 7 (pieces[0].unknown): group is not closed before the end of pieces[0]");
    /* groups inside a piece, skipped */
    CHECK_OK(parse_bytes(P(0x0a, 9, 0x3b, 0x43, 0x08, 0x01, 0x44, 0x3c, 0x0a, 1, 'a'), &err), err);
}

TEST(spm_model_hostile_values) {
    llmops_error err = {0};
    CHECK_ERR(parse_bytes(NULL, 0, &err), LLMOPS_ERR_FORMAT, err, "bad.model: holds no pieces");
    CHECK_ERR(parse_bytes(P(0x12, 0x00), &err), LLMOPS_ERR_FORMAT, err, "holds no pieces");
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x0a, 2, 0x18, 0x01), &err), LLMOPS_ERR_FORMAT, err,
              "offset 7: in pieces[1]: the piece is empty or missing");
    CHECK_ERR(parse_bytes(P(0x0a, 2, 0x0a, 0), &err), LLMOPS_ERR_FORMAT, err, "in pieces[0]: the piece is empty");
    CHECK_ERR(parse_bytes(P(0x0a, 5, 0x0a, 1, 'a', 0x18, 7), &err), LLMOPS_ERR_UNSUPPORTED, err,
              "offset 6: field 3 (pieces[0].type): unknown piece type 7");
    CHECK_ERR(parse_bytes(P(0x0a, 5, 0x0a, 1, 'a', 0x18, 0), &err), LLMOPS_ERR_UNSUPPORTED, err,
              "unknown piece type 0");
    CHECK_ERR(parse_bytes(P(0x0a, 3, 0x0a, 1, 'a', 0x12, 2, 0x18, 9), &err), LLMOPS_ERR_UNSUPPORTED, err,
              "field 3 (trainer_spec.model_type): unknown model type 9");
    /* NULL arguments */
    llmops_spm_model m;
    CHECK_ERR(llmops_spm_model_parse(NULL, 4, "x", &m, &err), LLMOPS_ERR_INVALID_ARG, err, "NULL data");
    CHECK_ERR(llmops_spm_model_parse("", 0, "x", NULL, &err), LLMOPS_ERR_INVALID_ARG, err, "out is NULL");
    CHECK_ERR(llmops_spm_model_load(test_tmpfile("missing.model"), &m, &err), LLMOPS_ERR_IO, err, "missing.model");
    CHECK(m.pieces == NULL);
    /* a file that is not a protobuf */
    const char *path = test_tmpfile("text.model");
    CHECK_OK(llmops_file_write_atomic(path, "hello world\n", 12, &err), err);
    llmops_status st = llmops_spm_model_load(path, &m, &err);
    CHECK_MSG(st == LLMOPS_ERR_FORMAT && strstr(err.msg, "text.model: offset "), "%s", err.msg);
}

TEST(spm_model_alloc_failure) {
    uint8_t buf[512];
    size_t n = tiny_model(buf, sizeof buf, NULL);
    long live = llmops_alloc_live();
    int ok = 0;
    for (long k = 0; k < 20 && !ok; k++) {
        llmops_spm_model m;
        llmops_error err = {0};
        llmops_alloc_fail_nth(k);
        llmops_status st = llmops_spm_model_parse(buf, n, "tiny.model", &m, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        CHECK_EQ_INT(st == LLMOPS_OK, !fired);
        if (st) {
            CHECK_ERR(st, LLMOPS_ERR_NOMEM, err, "tiny.model: out of memory");
            CHECK(m.pieces == NULL);
        } else {
            CHECK_EQ_INT(m.n, 5);
            CHECK_EQ_STR(m.pieces[3].text, "<0x41>");
            ok = 1;
        }
        llmops_spm_model_free(&m);
        CHECK_EQ_INT(llmops_alloc_live(), live);
    }
    CHECK(ok);
}

/* ---- the real Llama 2 tokenizer ------------------------------------------------------ */

static const char *llama2_model(void) { return test_asset("llm/llama2-tokenizer/tokenizer.model"); }

TEST(spm_model_llama2) {
    const char *path = llama2_model();
    if (!path) SKIP("llm/llama2-tokenizer/tokenizer.model not found");
    long live = llmops_alloc_live();
    llmops_spm_model m;
    llmops_error err = {0};
    CHECK_OK(llmops_spm_model_load(path, &m, &err), err);
    CHECK_EQ_INT(m.n, 32000);
    CHECK_EQ_STR(m.pieces[0].text, "<unk>");
    CHECK_EQ_INT(m.pieces[0].type, LLMOPS_SPM_PIECE_UNKNOWN);
    CHECK_EQ_STR(m.pieces[1].text, "<s>");
    CHECK_EQ_INT(m.pieces[1].type, LLMOPS_SPM_PIECE_CONTROL);
    CHECK_EQ_STR(m.pieces[2].text, "</s>");
    CHECK_EQ_INT(m.pieces[2].type, LLMOPS_SPM_PIECE_CONTROL);
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        CHECK_EQ_STR(m.pieces[3 + b].text, want);
        CHECK_EQ_INT(m.pieces[3 + b].type, LLMOPS_SPM_PIECE_BYTE);
    }
    size_t normal = 0;
    for (size_t i = 259; i < m.n; i++) {
        CHECK_MSG(m.pieces[i].len > 0 && strlen(m.pieces[i].text) == m.pieces[i].len, "piece %zu", i);
        normal += m.pieces[i].type == LLMOPS_SPM_PIECE_NORMAL;
    }
    CHECK_EQ_INT(normal, 32000 - 259);
    CHECK_EQ_STR(m.pieces[29871].text, "\xe2\x96\x81"); /* "▁", the lone space piece */

    CHECK(m.has_trainer_spec && m.has_normalizer_spec);
    CHECK_EQ_INT(m.trainer.model_type, LLMOPS_SPM_MODEL_BPE);
    CHECK_EQ_INT(m.trainer.vocab_size, 32000);
    CHECK_EQ_INT(m.trainer.byte_fallback, 1);
    CHECK_EQ_INT(m.trainer.split_digits, 1);
    CHECK_EQ_INT(m.trainer.treat_whitespace_as_suffix, 0);
    CHECK_EQ_INT(m.trainer.unk_id, 0);
    CHECK_EQ_INT(m.trainer.bos_id, 1);
    CHECK_EQ_INT(m.trainer.eos_id, 2);
    CHECK_EQ_INT(m.trainer.pad_id, -1);
    /* Llama 2: identity normalization, a dummy prefix, whitespace kept as written */
    CHECK_EQ_STR(m.normalizer.name, "identity");
    CHECK_EQ_INT(m.normalizer.precompiled_charsmap_len, 0);
    CHECK_EQ_INT(m.normalizer.add_dummy_prefix, 1);
    CHECK_EQ_INT(m.normalizer.remove_extra_whitespaces, 0);
    CHECK_EQ_INT(m.normalizer.escape_whitespaces, 1);
    llmops_spm_model_free(&m);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* Replaces every U+2581 with ' ', as llama2.c's export did. */
static size_t unescape_spaces(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

TEST(spm_model_llama2_matches_llama2c_tokenizer_bin) {
    const char *mp = llama2_model();
    const char *bp = test_asset("llm/llama2-tokenizer/tokenizer.bin");
    if (!mp || !bp) SKIP("llama2-tokenizer assets not found");
    llmops_spm_model m;
    llmops_llama2c_vocab v;
    llmops_error err = {0};
    CHECK_OK(llmops_spm_model_load(mp, &m, &err), err);
    CHECK_OK(llmops_llama2c_vocab_load(bp, 0, &v, &err), err);
    CHECK_EQ_INT(v.n, m.n);
    char tmp[1024];
    for (size_t i = 0; i < m.n; i++) {
        const char *want;
        size_t want_len;
        if (i == 1) want = "\n<s>\n", want_len = 5;
        else if (i == 2) want = "\n</s>\n", want_len = 6;
        else {
            CHECK(m.pieces[i].len < sizeof tmp);
            want_len = unescape_spaces(m.pieces[i].text, m.pieces[i].len, tmp);
            want = tmp;
        }
        CHECK_MSG(v.lens[i] == want_len && memcmp(v.pieces[i], want, want_len) == 0,
                  "id %zu: tokenizer.bin \"%s\", tokenizer.model \"%s\"", i, v.pieces[i], m.pieces[i].text);
        CHECK_MSG(v.scores[i] == m.pieces[i].score, "id %zu: score %.9g vs %.9g", i, (double)v.scores[i],
                  (double)m.pieces[i].score);
    }
    llmops_llama2c_vocab_free(&v);
    llmops_spm_model_free(&m);
}

TEST(spm_model_llama2_matches_gguf_vocab) {
    const char *mp = llama2_model();
    const char *gp = test_asset("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    if (!mp || !gp) SKIP("llama tokenizer.model or ggml-vocab-llama-spm.gguf not found");
    llmops_spm_model m;
    llmops_gguf *g = NULL;
    llmops_error err = {0};
    CHECK_OK(llmops_spm_model_load(mp, &m, &err), err);
    CHECK_OK(llmops_gguf_open(gp, &g, &err), err);
    llmops_gguf_array tokens, scores, types;
    CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, &err), err);
    CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.scores", &scores, &err), err);
    CHECK_OK(llmops_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, &err), err);
    CHECK_EQ_INT(tokens.type, LLMOPS_GGUF_STRING);
    CHECK_EQ_INT(scores.type, LLMOPS_GGUF_FLOAT32);
    CHECK_EQ_INT(tokens.n, m.n);
    CHECK_EQ_INT(scores.n, m.n);
    CHECK_EQ_INT(types.n, m.n);
    for (size_t i = 0; i < m.n; i++) {
        const llmops_gguf_str *s = &tokens.strs[i];
        CHECK_MSG(s->len == m.pieces[i].len && memcmp(s->data, m.pieces[i].text, m.pieces[i].len) == 0,
                  "id %zu: gguf \"%.*s\", tokenizer.model \"%s\"", i, (int)s->len, s->data, m.pieces[i].text);
        CHECK_MSG((float)llmops_gguf_arr_f64(&scores, i) == m.pieces[i].score, "id %zu: score", i);
        CHECK_MSG(llmops_gguf_arr_i64(&types, i) == m.pieces[i].type, "id %zu: type %lld vs %d", i,
                  (long long)llmops_gguf_arr_i64(&types, i), m.pieces[i].type);
    }
    llmops_gguf_free(g);
    llmops_spm_model_free(&m);
}

/* Every prefix of the real file's first 4 KiB and a sweep of cuts through the rest. */
TEST(spm_model_llama2_truncated) {
    const char *path = llama2_model();
    if (!path) SKIP("llm/llama2-tokenizer/tokenizer.model not found");
    llmops_mmap mm;
    llmops_error err = {0};
    CHECK_OK(llmops_mmap_open(path, &mm, &err), err);
    long live = llmops_alloc_live();
    for (size_t cut = 0; cut < mm.size; cut += cut < 4096 ? 1 : 997) {
        llmops_spm_model m;
        llmops_status st = llmops_spm_model_parse(mm.data, cut, "cut", &m, &err);
        CHECK_MSG(st == LLMOPS_OK || st == LLMOPS_ERR_FORMAT, "cut %zu: %s", cut, err.msg);
        if (st == LLMOPS_OK) CHECK(m.n > 0 && m.n < 32000);
        llmops_spm_model_free(&m);
    }
    CHECK_EQ_INT(llmops_alloc_live(), live);
    llmops_mmap_close(&mm);
}

TEST(spm_model_llama2_alloc_failure) {
    const char *path = llama2_model();
    if (!path) SKIP("llm/llama2-tokenizer/tokenizer.model not found");
    long live = llmops_alloc_live();
    int ok = 0;
    for (long k = 0; k < 20 && !ok; k++) {
        llmops_spm_model m;
        llmops_error err = {0};
        llmops_alloc_fail_nth(k);
        llmops_status st = llmops_spm_model_load(path, &m, &err);
        llmops_alloc_fail_nth(-1);
        CHECK_MSG(st == LLMOPS_OK || st == LLMOPS_ERR_NOMEM, "n=%ld: %s", k, err.msg);
        if (st == LLMOPS_OK) {
            CHECK_EQ_INT(m.n, 32000);
            ok = 1;
        }
        llmops_spm_model_free(&m);
        CHECK_EQ_INT(llmops_alloc_live(), live);
    }
    CHECK(ok);
}
