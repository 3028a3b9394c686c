/*
 * llmops/sampler.h — choosing the next token from a row of logits: greedy,
 * temperature, top-k, top-p, min-p, repetition / presence / frequency
 * penalties, logit bias, a seed for reproducibility, and log-probabilities
 * of the chosen and the top-n tokens.
 *
 *     llmops_sampler_params sp;
 *     llmops_sampler_params_init(&sp);   // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
 *     sp.seed = 42;
 *     llmops_sampler *s;
 *     llmops_sampler_create(&sp, n_vocab, &s, &err);
 *     llmops_sample_result r;
 *     llmops_sampler_sample(s, logits, &r);       // r.token, r.logprob
 *     llmops_sampler_accept(s, r.token);          // feeds the penalties
 *     llmops_sampler_free(s);
 *
 * Order (as llama.cpp's default chain): logit bias, penalties over the last
 * repeat_last_n tokens, then top-k, top-p, min-p, temperature and a draw;
 * temperature <= 0 takes the most likely token after bias and penalties.
 * Log-probabilities are those of the model's distribution after bias and
 * penalties, before truncation and temperature (what OpenAI's API reports).
 */
#ifndef LLMOPS_SAMPLER_H
#define LLMOPS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMOPS_SAMPLER_MAX_TOP 20

typedef struct llmops_logit_bias {
    int32_t token;
    float bias;          /* added to the logit; -INFINITY bans the token */
} llmops_logit_bias;

typedef struct llmops_sampler_params {
    float temperature;       /* 0: greedy                           default 0.8  */
    int32_t top_k;           /* 0: off                              default 40   */
    float top_p;             /* 1: off                              default 0.95 */
    float min_p;             /* 0: off                              default 0.05 */
    float repeat_penalty;    /* 1: off (llama.cpp's divide/multiply) default 1    */
    int32_t repeat_last_n;   /* tokens the penalties look back over  default 64   */
    float presence_penalty;  /* OpenAI's, subtracted once per seen token         */
    float frequency_penalty; /* OpenAI's, subtracted per occurrence              */
    uint64_t seed;           /* same seed, same logits → same tokens             */
    const llmops_logit_bias *bias;
    size_t n_bias;
    int n_top_logprobs;      /* 0..LLMOPS_SAMPLER_MAX_TOP                        */
} llmops_sampler_params;

typedef struct llmops_sample_result {
    int32_t token;
    float logprob;                              /* of the chosen token */
    int n_top;
    int32_t top_tokens[LLMOPS_SAMPLER_MAX_TOP];
    float top_logprobs[LLMOPS_SAMPLER_MAX_TOP];
} llmops_sample_result;

typedef struct llmops_sampler llmops_sampler;

void llmops_sampler_params_init(llmops_sampler_params *p);
llmops_status llmops_sampler_create(const llmops_sampler_params *p, size_t n_vocab, llmops_sampler **out,
                                    llmops_error *err);
void llmops_sampler_free(llmops_sampler *s);
/* Picks a token from `logits` (n_vocab floats; not modified). */
void llmops_sampler_sample(llmops_sampler *s, const float *logits, llmops_sample_result *r);
/* Records a token of the sequence (prompt or generated) for the penalties. */
void llmops_sampler_accept(llmops_sampler *s, int32_t token);
/* Forgets the history (a new sequence). */
void llmops_sampler_reset(llmops_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
