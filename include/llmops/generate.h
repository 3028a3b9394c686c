/*
 * llmops/generate.h — text generation on one sequence of a context: prompt
 * prefill, sampling, streaming of complete UTF-8 text, stop strings and
 * end-of-generation tokens, timings.
 *
 *     llmops_gen_params gp;
 *     llmops_gen_params_init(&gp);
 *     gp.n_predict = 64;
 *     gp.sampling.temperature = 0;             // greedy
 *     llmops_gen_stats stats;
 *     llmops_generate(model, ctx, "Once upon a time", &gp, print_piece, NULL, &stats, &err);
 */
#ifndef LLMOPS_GENERATE_H
#define LLMOPS_GENERATE_H

#include "llmops/model.h"
#include "llmops/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llmops_stop_reason {
    LLMOPS_STOP_LENGTH = 0,   /* n_predict tokens were generated          */
    LLMOPS_STOP_EOG,          /* the model emitted an end-of-generation token */
    LLMOPS_STOP_STRING,       /* a stop string appeared                    */
    LLMOPS_STOP_CALLBACK,     /* the callback asked to stop                */
    LLMOPS_STOP_CONTEXT       /* the context is full                       */
} llmops_stop_reason;

typedef struct llmops_gen_params {
    int32_t n_predict;              /* most tokens to generate; default 128                  */
    llmops_sampler_params sampling;
    const char *const *stop;        /* stop strings (not included in the output)              */
    size_t n_stop;
    int add_special;                /* BOS as the model's tokenizer says; default 1           */
    int parse_special;              /* special tokens written in the prompt; default 1        */
    int32_t seq;                    /* the sequence to use (its cache is cleared first)       */
} llmops_gen_params;

typedef struct llmops_gen_stats {
    int32_t n_prompt, n_gen;
    double t_prompt_s, t_gen_s;
    llmops_stop_reason stop;
} llmops_gen_stats;

/* Receives text as it becomes final; return non-zero to stop. `token` is the
 * id that completed it and `r` its sampling result (logprobs). */
typedef int (*llmops_gen_cb)(void *user, const char *text, size_t len, int32_t token, const llmops_sample_result *r);

void llmops_gen_params_init(llmops_gen_params *p);

/* Tokenizes the prompt with the model's tokenizer and generates from it. */
llmops_status llmops_generate(const llmops_model *m, llmops_context *ctx, const char *prompt, const llmops_gen_params *p,
                              llmops_gen_cb cb, void *user, llmops_gen_stats *stats, llmops_error *err);
/* The same from token ids. */
llmops_status llmops_generate_tokens(const llmops_model *m, llmops_context *ctx, const int32_t *prompt, size_t n_prompt,
                                     const llmops_gen_params *p, llmops_gen_cb cb, void *user, llmops_gen_stats *stats,
                                     llmops_error *err);

/* ---- embeddings and perplexity ------------------------------------------------------- */

typedef enum llmops_pooling { LLMOPS_POOLING_MEAN = 0, LLMOPS_POOLING_CLS = 1 } llmops_pooling;

/*
 * The sentence embedding of `text` with an encoder (BERT) model, as
 * sentence-transformers computes it: [CLS] text [SEP], the last hidden
 * states pooled (mean over all tokens, or the [CLS] token) and, when
 * `normalize` is set, scaled to unit L2 norm. `out` holds hidden_size floats.
 */
llmops_status llmops_embed(const llmops_model *m, llmops_context *ctx, const char *text, llmops_pooling pooling,
                           int normalize, float *out, llmops_error *err);

typedef struct llmops_ppl_result {
    double ppl;          /* exp(mean negative log-likelihood)  */
    double nll;          /* mean negative log-likelihood        */
    size_t n_scored;     /* tokens scored                        */
    size_t n_chunks;
} llmops_ppl_result;

/*
 * Perplexity over `text`, as llama.cpp's perplexity tool measures it: the
 * tokens are cut into chunks of n_ctx, each starts with BOS (when the model
 * adds one), and the second half of each chunk is scored, so every scored
 * token sees at least n_ctx/2 tokens of context.
 */
llmops_status llmops_perplexity(const llmops_model *m, llmops_context *ctx, const char *text, size_t len, uint32_t n_ctx,
                                llmops_ppl_result *r, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
