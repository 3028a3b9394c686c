#include "llmops/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"

struct llmops_sampler {
    llmops_sampler_params p;
    llmops_logit_bias *bias;  /* a copy */
    size_t n_vocab;
    uint64_t rng[2];
    int32_t *hist;            /* ring of the last repeat_last_n tokens */
    size_t hist_n, hist_at;
    float *work;              /* adjusted logits */
    int32_t *idx;             /* candidate ids */
    float *prob;
    uint32_t *count;          /* per token occurrences in the window */
};

void llmops_sampler_params_init(llmops_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0x5eed;
}

/* splitmix64 seeds xoroshiro128+ */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t next_u64(uint64_t s[2]) {
    uint64_t s0 = s[0], s1 = s[1], r = s0 + s1;
    s1 ^= s0;
    s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    s[1] = (s1 << 37) | (s1 >> 27);
    return r;
}

static double uniform01(uint64_t s[2]) { return (double)(next_u64(s) >> 11) * 0x1p-53; }

void llmops_sampler_reset(llmops_sampler *s) {
    uint64_t x = s->p.seed;
    s->rng[0] = splitmix(&x);
    s->rng[1] = splitmix(&x);
    s->hist_n = s->hist_at = 0;
    if (s->count) memset(s->count, 0, s->n_vocab * sizeof *s->count);
}

llmops_status llmops_sampler_create(const llmops_sampler_params *p, size_t n_vocab, llmops_sampler **out,
                                    llmops_error *err) {
    *out = NULL;
    if (!n_vocab) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "sampler: empty vocabulary");
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > LLMOPS_SAMPLER_MAX_TOP)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "sampler: top logprobs must be 0..%d", LLMOPS_SAMPLER_MAX_TOP);
    if (p->temperature < 0 || !isfinite(p->temperature) || p->top_p <= 0 || p->top_p > 1 || p->min_p < 0 ||
        p->min_p > 1 || p->repeat_penalty <= 0 || p->top_k < 0 || p->repeat_last_n < 0)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "sampler: temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, top_k >= 0, "
                                "repeat_penalty > 0 are required");
    for (size_t i = 0; i < p->n_bias; i++)
        if (p->bias[i].token < 0 || (size_t)p->bias[i].token >= n_vocab)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "sampler: logit bias for token %d outside the vocabulary",
                                    p->bias[i].token);
    llmops_sampler *s = llmops_calloc(1, sizeof *s);
    if (!s) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->work = llmops_malloc(n_vocab * sizeof *s->work);
    s->idx = llmops_malloc(n_vocab * sizeof *s->idx);
    s->prob = llmops_malloc(n_vocab * sizeof *s->prob);
    s->count = llmops_calloc(n_vocab, sizeof *s->count);
    s->hist = llmops_malloc(((size_t)p->repeat_last_n + 1) * sizeof *s->hist);
    s->bias = p->n_bias ? llmops_malloc(p->n_bias * sizeof *s->bias) : NULL;
    if (!s->work || !s->idx || !s->prob || !s->count || !s->hist || (p->n_bias && !s->bias)) {
        llmops_sampler_free(s);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    if (p->n_bias) memcpy(s->bias, p->bias, p->n_bias * sizeof *s->bias);
    s->p.bias = s->bias;
    llmops_sampler_reset(s);
    *out = s;
    return LLMOPS_OK;
}

void llmops_sampler_free(llmops_sampler *s) {
    if (!s) return;
    llmops_free(s->work);
    llmops_free(s->idx);
    llmops_free(s->prob);
    llmops_free(s->count);
    llmops_free(s->hist);
    llmops_free(s->bias);
    llmops_free(s);
}

void llmops_sampler_accept(llmops_sampler *s, int32_t token) {
    if (token < 0 || (size_t)token >= s->n_vocab || s->p.repeat_last_n == 0) return;
    size_t cap = (size_t)s->p.repeat_last_n;
    if (s->hist_n == cap) { /* the oldest leaves the window */
        int32_t old = s->hist[s->hist_at];
        if (s->count[old]) s->count[old]--;
    } else {
        s->hist_n++;
    }
    s->hist[s->hist_at] = token;
    s->hist_at = (s->hist_at + 1) % cap;
    s->count[token]++;
}

/* candidates sorted by logit, descending; ties by id */
static int by_logit_desc(const void *a, const void *b, void *ctx) {
    const float *lg = ctx;
    float x = lg[*(const int32_t *)a], y = lg[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Moves the k largest of idx[0..n) to the front, in descending order. */
static void top_sorted(int32_t *idx, size_t n, size_t k, const float *logits) {
    if (k > n) k = n;
    /* partial selection by repeated max for small k, full sort otherwise */
    if (k <= 64) {
        for (size_t i = 0; i < k; i++) {
            size_t best = i;
            for (size_t j = i + 1; j < n; j++) {
                float a = logits[idx[j]], b = logits[idx[best]];
                if (a > b || (a == b && idx[j] < idx[best])) best = j;
            }
            int32_t t = idx[i];
            idx[i] = idx[best];
            idx[best] = t;
        }
        return;
    }
    qsort_r(idx, n, sizeof *idx, by_logit_desc, (void *)logits);
}

void llmops_sampler_sample(llmops_sampler *s, const float *logits, llmops_sample_result *r) {
    const llmops_sampler_params *p = &s->p;
    size_t n = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, n * sizeof *w);
    for (size_t i = 0; i < p->n_bias; i++) w[p->bias[i].token] += p->bias[i].bias;
    if (s->hist_n && (p->repeat_penalty != 1.0f || p->presence_penalty != 0 || p->frequency_penalty != 0)) {
        for (size_t i = 0; i < s->hist_n; i++) {
            int32_t t = s->hist[i];
            /* each distinct token once: the high bit marks it as done for this call */
            if ((s->count[t] & 0x80000000u) || s->count[t] == 0 || w[t] == -INFINITY) continue;
            float l = w[t];
            if (p->repeat_penalty != 1.0f) l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
            l -= (float)s->count[t] * p->frequency_penalty + p->presence_penalty;
            w[t] = l;
            s->count[t] |= 0x80000000u;
        }
        for (size_t i = 0; i < s->hist_n; i++) s->count[s->hist[i]] &= 0x7fffffffu;
    }
    /* the model's distribution (after bias and penalties) for log-probabilities */
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (w[i] > mx) mx = w[i];
    double z = 0;
    for (size_t i = 0; i < n; i++) z += w[i] == -INFINITY ? 0.0 : exp((double)(w[i] - mx));
    double logz = log(z) + mx;
    size_t nc = n;
    for (size_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    int32_t chosen;
    if (p->temperature <= 0) {
        top_sorted(s->idx, n, 1, w);
        chosen = s->idx[0];
    } else {
        size_t k = p->top_k > 0 && (size_t)p->top_k < n ? (size_t)p->top_k : n;
        top_sorted(s->idx, n, k, w);
        nc = k;
        /* softmax over the candidates */
        double sum = 0;
        for (size_t i = 0; i < nc; i++) sum += s->prob[i] = (float)exp((double)(w[s->idx[i]] - w[s->idx[0]]));
        for (size_t i = 0; i < nc; i++) s->prob[i] = (float)(s->prob[i] / sum);
        if (p->top_p < 1.0f) {
            double cum = 0;
            size_t keep = nc;
            for (size_t i = 0; i < nc; i++) {
                cum += s->prob[i];
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            nc = keep;
        }
        if (p->min_p > 0) {
            float floor = s->prob[0] * p->min_p;
            size_t keep = 1;
            while (keep < nc && s->prob[keep] >= floor) keep++;
            nc = keep;
        }
        /* temperature on what is left, then a draw */
        double tsum = 0;
        for (size_t i = 0; i < nc; i++)
            tsum += s->prob[i] = (float)exp((double)(w[s->idx[i]] - w[s->idx[0]]) / p->temperature);
        double u = uniform01(s->rng) * tsum, acc = 0;
        chosen = s->idx[nc - 1];
        for (size_t i = 0; i < nc; i++) {
            acc += s->prob[i];
            if (u < acc) {
                chosen = s->idx[i];
                break;
            }
        }
    }
    r->token = chosen;
    r->logprob = (float)((double)w[chosen] - logz);
    r->n_top = 0;
    if (p->n_top_logprobs > 0) {
        for (size_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
        top_sorted(s->idx, n, (size_t)p->n_top_logprobs, w);
        r->n_top = p->n_top_logprobs < (int)n ? p->n_top_logprobs : (int)n;
        for (int i = 0; i < r->n_top; i++) {
            r->top_tokens[i] = s->idx[i];
            r->top_logprobs[i] = (float)((double)w[s->idx[i]] - logz);
        }
    }
}
