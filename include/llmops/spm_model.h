/*
 * llmops/spm_model.h — SentencePiece tokenizer.model files.
 *
 * A tokenizer.model is a serialized protobuf `sentencepiece.ModelProto`
 * (src/sentencepiece_model.proto in google/sentencepiece). It is read here by a
 * small bounded wire-format reader, with no protobuf library: every length is
 * checked against the bytes that remain, varints are at most 10 bytes, unknown
 * fields (groups included, nesting capped) are skipped, and a known field with
 * the wrong wire type is an error. The result is copied out of the input, so
 * the input may be released as soon as parsing returns.
 *
 *     llmops_spm_model m;
 *     llmops_error err = {0};
 *     if (llmops_spm_model_load("tokenizer.model", &m, &err) != LLMOPS_OK) {
 *         fprintf(stderr, "error: %s\n", err.msg);   // "tokenizer.model: offset 1234: field 1
 *         return 1;                                  //  (pieces): length 99999 runs past the end ..."
 *     }
 *     for (size_t id = 0; id < m.n; id++)
 *         printf("%zu %s %g %d\n", id, m.pieces[id].text, m.pieces[id].score, m.pieces[id].type);
 *     if (m.trainer.model_type == LLMOPS_SPM_MODEL_BPE && m.trainer.byte_fallback) ...
 *     llmops_spm_model_free(&m);
 *
 * Bytes already in memory are parsed the same way:
 *     llmops_spm_model_parse(data, size, "tokenizer.model", &m, &err);
 *
 * Read: ModelProto.pieces (piece, score, type), the trainer_spec fields a
 * tokenizer needs and the normalizer_spec. Skipped (but checked for framing):
 * self_test_data, denormalizer_spec and every other field. Absent fields take
 * the proto's defaults.
 */
#ifndef LLMOPS_SPM_MODEL_H
#define LLMOPS_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ModelProto.SentencePiece.Type — the proto's own values (also GGUF's token_type). */
typedef enum llmops_spm_piece_type {
    LLMOPS_SPM_PIECE_NORMAL = 1,
    LLMOPS_SPM_PIECE_UNKNOWN = 2,
    LLMOPS_SPM_PIECE_CONTROL = 3,
    LLMOPS_SPM_PIECE_USER_DEFINED = 4,
    LLMOPS_SPM_PIECE_UNUSED = 5,
    LLMOPS_SPM_PIECE_BYTE = 6
} llmops_spm_piece_type;

/* TrainerSpec.ModelType. */
typedef enum llmops_spm_model_type {
    LLMOPS_SPM_MODEL_UNIGRAM = 1,
    LLMOPS_SPM_MODEL_BPE = 2,
    LLMOPS_SPM_MODEL_WORD = 3,
    LLMOPS_SPM_MODEL_CHAR = 4
} llmops_spm_model_type;

/* Hard caps on what one file may describe (LLMOPS_ERR_LIMIT past them). */
#define LLMOPS_SPM_MAX_PIECES (1u << 24)
#define LLMOPS_SPM_MAX_GROUP_DEPTH 64 /* nested unknown groups being skipped */

typedef struct llmops_spm_piece {
    const char *text;  /* the piece's bytes ('▁' U+2581 marks a space), NUL-terminated;
                          may hold NUL bytes itself, so use len                          */
    uint32_t len;      /* bytes, excluding the terminator; never 0                        */
    float score;       /* default 0                                                       */
    int type;          /* llmops_spm_piece_type; default NORMAL                           */
} llmops_spm_piece;

/* TrainerSpec: the fields that change how text is tokenized (proto defaults shown). */
typedef struct llmops_spm_trainer_spec {
    int model_type;                 /* llmops_spm_model_type; UNIGRAM (field 3)        */
    int32_t vocab_size;             /* 8000 (field 4); the trainer's target, may differ
                                       from the number of pieces                       */
    int byte_fallback;              /* 0 (field 35)                                    */
    int32_t unk_id;                 /* 0 (field 40)                                    */
    int32_t bos_id;                 /* 1 (field 41); -1 means none                     */
    int32_t eos_id;                 /* 2 (field 42); -1 means none                     */
    int32_t pad_id;                 /* -1 (field 43)                                   */
    int split_digits;               /* 0 (field 25)                                    */
    int treat_whitespace_as_suffix; /* 0 (field 24)                                    */
} llmops_spm_trainer_spec;

/* NormalizerSpec (proto defaults shown). */
typedef struct llmops_spm_normalizer_spec {
    const char *name;               /* "" when absent (field 1); NUL-terminated copy    */
    size_t name_len;
    const uint8_t *precompiled_charsmap; /* NULL when empty (field 2); a copy           */
    size_t precompiled_charsmap_len;
    int add_dummy_prefix;           /* 1 (field 3)                                     */
    int remove_extra_whitespaces;   /* 1 (field 4)                                     */
    int escape_whitespaces;         /* 1 (field 5)                                     */
} llmops_spm_normalizer_spec;

typedef struct llmops_spm_model {
    size_t n;                       /* number of pieces, > 0; a piece's id is its index */
    llmops_spm_piece *pieces;       /* (n)                                              */
    llmops_spm_trainer_spec trainer;
    llmops_spm_normalizer_spec normalizer;
    int has_trainer_spec;           /* 1 when field 2 was present                       */
    int has_normalizer_spec;        /* 1 when field 3 was present                       */
    void *bytes_;                   /* internal: one block holding every string         */
} llmops_spm_model;

/*
 * Parses the ModelProto in data[0 .. size). `origin` names the input in error
 * messages ("tokenizer.model: offset 1234: field 2 (pieces[17].score): ...").
 * On success *out owns its memory (llmops_spm_model_free); on failure *out is
 * zeroed and holds nothing. FORMAT for malformed bytes, a model without
 * pieces or an empty piece; UNSUPPORTED for a piece type or model type this
 * code does not know; LIMIT past the caps above; NOMEM. As protobuf does, an
 * int32 field keeps the low 32 bits of its varint and a bool is any non-zero
 * value; when a field or an embedded message repeats, the last value wins.
 */
llmops_status llmops_spm_model_parse(const void *data, size_t size, const char *origin, llmops_spm_model *out,
                                     llmops_error *err);

/* Maps `path` read-only, parses it (origin = path) and unmaps it. */
llmops_status llmops_spm_model_load(const char *path, llmops_spm_model *out, llmops_error *err);

/* Frees what parse/load made and zeroes *m. NULL and a zeroed model are no-ops. */
void llmops_spm_model_free(llmops_spm_model *m);

#ifdef __cplusplus
}
#endif
#endif
