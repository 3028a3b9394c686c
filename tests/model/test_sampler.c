/*
 * Samplers against their definitions: greedy is argmax, top-k / top-p /
 * min-p only ever return tokens inside the set the definition keeps,
 * temperature sharpens or flattens the empirical distribution, penalties and
 * logit bias move the logits as documented, log-probabilities equal a
 * log-softmax computed here in double precision, and a seed repeats.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/sampler.h"

#define V 50

static void make_logits(float *l, unsigned seed) {
    uint64_t s = seed * 2654435761u + 1;
    for (int i = 0; i < V; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(s >> 11) * 0x1p-53 * 8.0 - 4.0);
    }
}

static llmops_sampler *make(llmops_sampler_params *p) {
    llmops_sampler *s = NULL;
    llmops_error err = {0};
    if (llmops_sampler_create(p, V, &s, &err)) fprintf(stderr, "%s\n", err.msg);
    return s;
}

/* probabilities of a logit row in double precision */
static void probs(const float *l, double *p) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) z += p[i] = exp(l[i] - mx);
    for (int i = 0; i < V; i++) p[i] /= z;
}

TEST(sampler_greedy_is_argmax_and_logprobs_exact) {
    float l[V];
    make_logits(l, 1);
    llmops_sampler_params sp;
    llmops_sampler_params_init(&sp);
    sp.temperature = 0;
    sp.n_top_logprobs = 5;
    llmops_sampler *s = make(&sp);
    CHECK(s);
    llmops_sample_result r;
    llmops_sampler_sample(s, l, &r);
    int best = 0;
    for (int i = 1; i < V; i++) best = l[i] > l[best] ? i : best;
    CHECK_EQ_INT(r.token, best);
    double p[V];
    probs(l, p);
    CHECK_MSG(fabs(r.logprob - log(p[best])) < 1e-5, "logprob %g vs %g", r.logprob, log(p[best]));
    CHECK_EQ_INT(r.n_top, 5);
    for (int k = 0; k < 5; k++) {
        CHECK(fabs(r.top_logprobs[k] - log(p[r.top_tokens[k]])) < 1e-5);
        if (k) CHECK(r.top_logprobs[k] <= r.top_logprobs[k - 1]);
    }
    llmops_sampler_free(s);
}

/* Draws many samples and checks each lies in `allowed`. */
static void only_from(llmops_sampler_params *sp, const float *l, const int *allowed, int n_draws) {
    llmops_sampler *s = make(sp);
    CHECK(s);
    for (int d = 0; d < n_draws; d++) {
        llmops_sample_result r;
        llmops_sampler_sample(s, l, &r);
        CHECK_MSG(r.token >= 0 && r.token < V && allowed[r.token], "token %d is outside the kept set", r.token);
    }
    llmops_sampler_free(s);
}

TEST(sampler_truncations_keep_what_they_define) {
    float l[V];
    make_logits(l, 2);
    double p[V];
    probs(l, p);
    int order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) /* sort by probability */
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    llmops_sampler_params sp;
    llmops_sampler_params_init(&sp);
    sp.temperature = 1.0f;
    sp.top_p = 1.0f;
    sp.min_p = 0;
    int allowed[V];
    /* top-k = 5 */
    sp.top_k = 5;
    memset(allowed, 0, sizeof allowed);
    for (int i = 0; i < 5; i++) allowed[order[i]] = 1;
    only_from(&sp, l, allowed, 2000);
    /* top-p = 0.6: the smallest prefix reaching 0.6 */
    sp.top_k = 0;
    sp.top_p = 0.6f;
    memset(allowed, 0, sizeof allowed);
    double cum = 0;
    for (int i = 0; i < V && cum < 0.6; i++) cum += p[order[i]], allowed[order[i]] = 1;
    only_from(&sp, l, allowed, 2000);
    /* min-p = 0.3: tokens with p >= 0.3 · p_max */
    sp.top_p = 1.0f;
    sp.min_p = 0.3f;
    memset(allowed, 0, sizeof allowed);
    for (int i = 0; i < V; i++) allowed[i] = p[i] >= 0.3 * p[order[0]] - 1e-9;
    only_from(&sp, l, allowed, 2000);
}

TEST(sampler_temperature_and_seed) {
    float l[V];
    make_logits(l, 3);
    llmops_sampler_params sp;
    llmops_sampler_params_init(&sp);
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0;
    int best = 0;
    for (int i = 1; i < V; i++) best = l[i] > l[best] ? i : best;
    double freq[3] = {0};
    float temps[3] = {0.3f, 1.0f, 3.0f};
    for (int t = 0; t < 3; t++) {
        sp.temperature = temps[t];
        sp.seed = 99;
        llmops_sampler *s = make(&sp);
        for (int d = 0; d < 4000; d++) {
            llmops_sample_result r;
            llmops_sampler_sample(s, l, &r);
            freq[t] += r.token == best;
        }
        llmops_sampler_free(s);
    }
    /* at T = 1 the empirical frequency of the top token matches its probability */
    double p[V];
    probs(l, p);
    CHECK_MSG(fabs(freq[1] / 4000 - p[best]) < 0.03, "T=1: %.3f vs %.3f", freq[1] / 4000, p[best]);
    CHECK(freq[0] > freq[1] && freq[1] > freq[2]);
    /* the same seed repeats, another seed differs */
    int a[64], b[64], c[64];
    for (int rep = 0; rep < 3; rep++) {
        sp.temperature = 1.0f;
        sp.seed = rep == 2 ? 8 : 7;
        llmops_sampler *s = make(&sp);
        int *dst = rep == 0 ? a : rep == 1 ? b : c;
        for (int d = 0; d < 64; d++) {
            llmops_sample_result r;
            llmops_sampler_sample(s, l, &r);
            dst[d] = r.token;
        }
        llmops_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

TEST(sampler_penalties_and_bias) {
    float l[V];
    for (int i = 0; i < V; i++) l[i] = 0;
    l[7] = 2.0f;
    l[9] = 1.9f;
    llmops_sampler_params sp;
    llmops_sampler_params_init(&sp);
    sp.temperature = 0;
    /* repetition penalty 1.1 divides a positive logit: 2.0 / 1.1 < 1.9 */
    sp.repeat_penalty = 1.1f;
    llmops_sampler *s = make(&sp);
    llmops_sample_result r;
    llmops_sampler_sample(s, l, &r);
    CHECK_EQ_INT(r.token, 7);
    llmops_sampler_accept(s, 7);
    llmops_sampler_sample(s, l, &r);
    CHECK_EQ_INT(r.token, 9);
    llmops_sampler_free(s);
    /* frequency penalty counts occurrences, presence penalty once */
    sp.repeat_penalty = 1.0f;
    sp.frequency_penalty = 0.06f;
    s = make(&sp);
    llmops_sampler_accept(s, 7);
    llmops_sampler_sample(s, l, &r);
    CHECK_EQ_INT(r.token, 7); /* 2.0 - 0.06 > 1.9 */
    llmops_sampler_accept(s, 7);
    llmops_sampler_sample(s, l, &r);
    CHECK_EQ_INT(r.token, 9); /* 2.0 - 0.12 < 1.9 */
    double p[V];
    float adj[V];
    memcpy(adj, l, sizeof adj);
    adj[7] -= 0.12f;
    probs(adj, p);
    CHECK(fabs(r.logprob - log(p[9])) < 1e-5); /* logprobs are of the penalised distribution */
    llmops_sampler_free(s);
    /* logit bias, including a ban */
    llmops_logit_bias bias[2] = {{7, -INFINITY}, {3, 5.0f}};
    llmops_sampler_params_init(&sp);
    sp.temperature = 0;
    sp.bias = bias;
    sp.n_bias = 2;
    s = make(&sp);
    llmops_sampler_sample(s, l, &r);
    CHECK_EQ_INT(r.token, 3);
    llmops_sampler_free(s);
    bias[1].bias = 0;
    sp.temperature = 1.0f;
    sp.top_k = 0;
    s = make(&sp);
    for (int d = 0; d < 500; d++) {
        llmops_sampler_sample(s, l, &r);
        CHECK(r.token != 7);
    }
    llmops_sampler_free(s);
}

TEST(sampler_rejects_bad_parameters) {
    llmops_sampler_params sp;
    llmops_error err = {0};
    llmops_sampler *s;
    llmops_sampler_params_init(&sp);
    sp.top_p = 0;
    CHECK_ERR(llmops_sampler_create(&sp, V, &s, &err), LLMOPS_ERR_INVALID_ARG, err, "top_p");
    llmops_sampler_params_init(&sp);
    sp.temperature = -1;
    CHECK_ERR(llmops_sampler_create(&sp, V, &s, &err), LLMOPS_ERR_INVALID_ARG, err, "temperature");
    llmops_logit_bias b = {V, 1};
    llmops_sampler_params_init(&sp);
    sp.bias = &b;
    sp.n_bias = 1;
    CHECK_ERR(llmops_sampler_create(&sp, V, &s, &err), LLMOPS_ERR_INVALID_ARG, err, "outside the vocabulary");
}
