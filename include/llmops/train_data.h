/*
 * llmops/train_data.h — the data pipeline of fine-tuning: files, folders,
 * http(s):// and s3:// sources in plain text, JSON/JSONL or CSV, read as raw
 * text, Alpaca instructions, prompt/completion pairs or chat conversations,
 * tokenized, masked, truncated/padded or packed into rows of seq_len tokens,
 * split into train/validation, shuffled per epoch and sharded across ranks.
 *
 *     llmops_data_params dp;
 *     llmops_data_params_init(&dp);
 *     dp.seq_len = 256;
 *     dp.val_ratio = 0.1;                       // or dp.val_sources / n_val_sources
 *     const char *src[] = {"data/train.jsonl", "s3://bucket/more.jsonl"};
 *     llmops_dataset *ds;
 *     if (llmops_dataset_load(src, 2, tok, NULL, &dp, &ds, &err)) die(err.msg);
 *                                               // "data/train.jsonl:17: missing field \"output\""
 *     int32_t tokens[4 * 256], targets[4 * 256];  // rows for this rank: llmops_data_shard_rows(8, rank, world)
 *     llmops_data_batch b;
 *     for (step...) {
 *         llmops_dataset_next_batch(ds, LLMOPS_SPLIT_TRAIN, 8, rank, world, tokens, targets, &b, &err);
 *         llmops_trainer_forward_backward(t, tokens, targets, 4, 256, 1.0f / b.n_trained_global, ...);
 *     }
 *     llmops_data_pos pos = llmops_dataset_get_pos(ds, LLMOPS_SPLIT_TRAIN);   // into the checkpoint
 *     llmops_dataset_free(ds);
 *
 * Rows. A row holds up to seq_len+1 tokens t[0..L): the batch gets
 * tokens[i] = t[i] and targets[i] = t[i+1] when that token is trained, else -1
 * (prompt, BOS, padding); positions past L-1 hold the pad id (the tokenizer's
 * pad token, else EOS, else 0) with target -1. Every row starts at position 0.
 *
 * What becomes a row (schema × pack):
 *   plain text files      the documents (a whole file, or the pieces between
 *                         doc_separator) each with BOS (when the tokenizer adds
 *                         BOS) and EOS, concatenated into one stream and cut
 *                         into windows of seq_len+1 tokens with a stride of
 *                         seq_len, so every token is predicted exactly once;
 *                         every target is trained. The same for the TEXT schema
 *                         of JSON/CSV records when pack = 1.
 *   TEXT records          [BOS] text EOS, all trained, one row each.
 *   ALPACA                [BOS] prompt output EOS: the Stanford Alpaca prompt
 *                         (with or without "### Input:"), output and EOS trained.
 *   COMPLETION            [BOS] prompt completion EOS (prompt and completion
 *                         joined as they are); completion and EOS trained.
 *   CHAT                  the conversation rendered by the chat template (with
 *                         the tokenizer's BOS/EOS texts as bos_token/eos_token,
 *                         no generation prompt), tokenized with special tokens
 *                         parsed; the tokens of each assistant message's content
 *                         are trained, plus the end-of-turn or EOS token the
 *                         template writes right after it (whitespace between
 *                         included). BOS is added only when the template did not.
 *   mask_prompt = 0 trains every token of every example. An example longer than
 *   seq_len+1 tokens is truncated (counted as truncated); shorter ones are
 *   padded, or with pack = 1 several whole examples share a row (next-fit, in
 *   order).
 *
 * Trained tokens are found by aligning each token's bytes with the rendered
 * text: a token is trained when its bytes overlap a trained span (so a
 * SentencePiece "▁word" whose space belongs to the template still counts).
 *
 * Formats: AUTO picks by extension (.txt .md .rst .text → TEXT; .jsonl → JSONL;
 * .json → a JSON array of records or JSON Lines; .csv → CSV; .tsv → CSV with
 * tabs; another name: JSON Lines when the content starts with '{', a JSON array
 * with '['); the schema AUTO by the first record: messages → CHAT; instruction and
 * output → ALPACA; prompt and completion → COMPLETION; else TEXT. CSV follows
 * RFC 4180 (header row, quoted fields with "" and newlines, CRLF or LF).
 *
 * Bad records (invalid JSON, a missing field, a field of the wrong type, bad
 * CSV quoting, a conversation the template refuses) are reported as
 * "FILE:LINE: what (field NAME)" and, by bad_rows, skipped (counted; the first
 * few logged as warnings) or fatal (the load fails with LLMOPS_ERR_FORMAT).
 *
 * Splits and order. With val_sources the validation split is those sources;
 * else a fraction val_ratio of the rows, chosen by seed, goes to validation
 * (rows of the two splits never overlap). next_batch walks each split in a
 * permutation drawn from (seed, epoch) — a new one every epoch, the same for
 * the same seed — and records its position (epoch, index); setting a saved
 * position replays exactly the same batches. A global batch of B rows that
 * crosses the end of an epoch continues with the next epoch's permutation, so
 * every row is seen exactly once per epoch. With world > 1 rank r receives
 * rows [r·B/W ...) of each global batch (the first B mod W ranks one extra),
 * so the union over ranks is the single-process batch; all ranks advance the
 * position by B.
 */
#ifndef LLMOPS_TRAIN_DATA_H
#define LLMOPS_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/fetch.h"
#include "llmops/status.h"
#include "llmops/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* File syntax. */
typedef enum llmops_data_format {
    LLMOPS_DATA_FORMAT_AUTO = 0,
    LLMOPS_DATA_FORMAT_TEXT,   /* plain text documents                         */
    LLMOPS_DATA_FORMAT_JSONL,  /* one JSON object per line                     */
    LLMOPS_DATA_FORMAT_JSON,   /* a JSON array of objects (or JSON Lines)      */
    LLMOPS_DATA_FORMAT_CSV     /* RFC 4180 with a header row (csv_delimiter)   */
} llmops_data_format;

/* What a record means. */
typedef enum llmops_data_schema {
    LLMOPS_DATA_SCHEMA_AUTO = 0,
    LLMOPS_DATA_SCHEMA_TEXT,       /* text_field                                       */
    LLMOPS_DATA_SCHEMA_ALPACA,     /* instruction_field, input_field (optional), output_field */
    LLMOPS_DATA_SCHEMA_COMPLETION, /* prompt_field, completion_field                   */
    LLMOPS_DATA_SCHEMA_CHAT        /* messages_field: [{"role":..., "content":...}]    */
} llmops_data_schema;

typedef enum llmops_data_bad_rows {
    LLMOPS_DATA_BAD_SKIP = 0, /* count, log the first max_logged, go on */
    LLMOPS_DATA_BAD_FAIL      /* the first bad record fails the load     */
} llmops_data_bad_rows;

typedef struct llmops_data_params {
    llmops_data_format format;   /* AUTO                                                  */
    llmops_data_schema schema;   /* AUTO                                                  */
    /* JSON keys, or CSV header names (the column mapping) */
    const char *text_field;        /* "text"        */
    const char *instruction_field; /* "instruction" */
    const char *input_field;       /* "input"       */
    const char *output_field;      /* "output"      */
    const char *prompt_field;      /* "prompt"      */
    const char *completion_field;  /* "completion"  */
    const char *messages_field;    /* "messages"    */
    char csv_delimiter;            /* 0 = ',' (a .tsv file: tab)                          */
    const char *doc_separator;     /* plain text: splits files into documents; NULL = none */
    int seq_len;                   /* tokens per row (256)                                */
    int mask_prompt;               /* 1: only responses are trained                       */
    int pack;                      /* 0: one example per row                              */
    /* Chat template: a builtin name ("chatml", "llama2", ...) or template text.
     * Overrides the chat_template argument of llmops_dataset_load, which overrides
     * the tokenizer's own template. */
    const char *chat_template;
    double val_ratio;                  /* 0                                               */
    const char *const *val_sources;    /* a separate validation set (val_ratio ignored)   */
    size_t n_val_sources;
    uint64_t seed;                     /* split and shuffling (42)                        */
    llmops_data_bad_rows bad_rows;     /* SKIP                                            */
    int max_logged;                    /* bad records logged before going quiet (5)       */
    size_t max_file_bytes;             /* per file or download (1 GiB)                    */
    llmops_fetch_params fetch;         /* URLs and S3                                     */
} llmops_data_params;

void llmops_data_params_init(llmops_data_params *p);

/* "text", "jsonl", "json", "csv", "auto" / "text", "alpaca", "completion", "chat", "auto". */
llmops_status llmops_data_format_parse(const char *s, llmops_data_format *out, llmops_error *err);
llmops_status llmops_data_schema_parse(const char *s, llmops_data_schema *out, llmops_error *err);
const char *llmops_data_schema_name(llmops_data_schema s);

typedef enum llmops_data_split { LLMOPS_SPLIT_TRAIN = 0, LLMOPS_SPLIT_VAL = 1 } llmops_data_split;

typedef struct llmops_data_stats {
    int64_t n_examples;  /* records / documents that made rows                          */
    int64_t n_rows;      /* rows of seq_len                                              */
    int64_t n_tokens;    /* input tokens in rows (padding excluded)                      */
    int64_t n_trained;   /* targets that count in the loss                               */
    int64_t n_truncated; /* examples cut to seq_len+1 tokens                             */
    int64_t n_skipped;   /* bad records skipped (sources of this split; a ratio split
                            counts them under TRAIN)                                    */
} llmops_data_stats;

typedef struct llmops_data_pos {
    int64_t epoch; /* completed passes over the split        */
    int64_t index; /* rows consumed in the current epoch      */
} llmops_data_pos;

typedef struct llmops_data_batch {
    int n_rows;               /* rows this rank filled (the rest of its buffer is padding) */
    int64_t n_trained;        /* trained targets in this rank's rows                       */
    int64_t n_trained_global; /* trained targets in the whole global batch (every rank)    */
    int64_t epoch;            /* epoch of the batch's first row                            */
    int epoch_end;            /* 1 when this batch completed an epoch                      */
} llmops_data_batch;

typedef struct llmops_dataset llmops_dataset;

/*
 * Reads, tokenizes and splits `sources[0..n)` (files, folders — every file of a
 * known extension below it, in sorted path order —, http(s):// URLs, s3://
 * objects). `chat_template` (template text, may be NULL) is the model's; see
 * llmops_data_params.chat_template for the order of precedence. The tokenizer
 * is used only during the call. On success *out owns everything
 * (llmops_dataset_free). Errors: FORMAT (bad record with bad_rows FAIL, or no
 * rows at all), CONFIG (unknown extension, missing CSV column, no chat
 * template), IO/NOT_FOUND/LIMIT (files and downloads), NOMEM.
 */
llmops_status llmops_dataset_load(const char *const *sources, size_t n, const llmops_tokenizer *tok,
                                  const char *chat_template, const llmops_data_params *p, llmops_dataset **out,
                                  llmops_error *err);
void llmops_dataset_free(llmops_dataset *ds);

int llmops_dataset_seq_len(const llmops_dataset *ds);
int32_t llmops_dataset_pad_id(const llmops_dataset *ds);
llmops_data_schema llmops_dataset_schema(const llmops_dataset *ds);
/* Counts of one split. */
llmops_data_stats llmops_dataset_stats(const llmops_dataset *ds, llmops_data_split split);
int64_t llmops_dataset_n_rows(const llmops_dataset *ds, llmops_data_split split);

/* Rows rank `rank` of `world` receives from a global batch of `global_batch` rows. */
int llmops_data_shard_rows(int global_batch, int rank, int world);

/*
 * The next global batch of `global_batch` rows of `split` in the epoch's
 * shuffled order; this rank's share goes to tokens/targets, each
 * [ceil(global_batch/world) × seq_len] (rows past info->n_rows are padding).
 * Advances the split's position by global_batch.
 */
llmops_status llmops_dataset_next_batch(llmops_dataset *ds, llmops_data_split split, int global_batch, int rank,
                                        int world, int32_t *tokens, int32_t *targets, llmops_data_batch *info,
                                        llmops_error *err);

/* Row `i` of `split` in stored (unshuffled) order into tokens/targets [seq_len]; returns
 * its trained-target count in *n_trained (may be NULL). For evaluation passes and tests. */
llmops_status llmops_dataset_row(const llmops_dataset *ds, llmops_data_split split, int64_t i, int32_t *tokens,
                                 int32_t *targets, int64_t *n_trained, llmops_error *err);

/* The row index (stored order) at position `pos` of `split`'s shuffled order. */
int64_t llmops_dataset_order(llmops_dataset *ds, llmops_data_split split, llmops_data_pos pos);

llmops_data_pos llmops_dataset_get_pos(const llmops_dataset *ds, llmops_data_split split);
/* Restores a position saved with get_pos (index must be < the split's rows). */
llmops_status llmops_dataset_set_pos(llmops_dataset *ds, llmops_data_split split, llmops_data_pos pos,
                                     llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
