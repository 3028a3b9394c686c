#include "llmops/generate.h"

#include <string.h>
#include <time.h>

#include "llmops/alloc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void llmops_gen_params_init(llmops_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->n_predict = 128;
    llmops_sampler_params_init(&p->sampling);
    p->add_special = 1;
    p->parse_special = 1;
}

/*
 * Text waits in `pending` until it cannot be the start of a stop string;
 * a complete stop string ends generation and is not emitted.
 */
typedef struct {
    llmops_buf pending;
    const llmops_gen_params *p;
    llmops_gen_cb cb;
    void *user;
    int stopped;
} emitter;

/* Length of the longest suffix of s that is a proper prefix of some stop string. */
static size_t held_back(const emitter *e, const char *s, size_t n) {
    size_t keep = 0;
    for (size_t k = 0; k < e->p->n_stop; k++) {
        size_t sl = strlen(e->p->stop[k]);
        for (size_t l = sl > n ? n : sl - 1; l > keep; l--)
            if (!memcmp(s + n - l, e->p->stop[k], l)) {
                keep = l;
                break;
            }
    }
    return keep;
}

static llmops_status emit(emitter *e, const char *text, size_t len, int32_t tok, const llmops_sample_result *r, int flush,
                          llmops_error *err) {
    llmops_status st = llmops_buf_append(&e->pending, text, len, err);
    if (st) return st;
    const char *s = e->pending.data ? e->pending.data : "";
    size_t n = e->pending.len, out = n;
    for (size_t k = 0; k < e->p->n_stop; k++) {
        size_t sl = strlen(e->p->stop[k]);
        if (!sl) continue;
        const char *hit = memmem(s, n, e->p->stop[k], sl);
        if (hit && (size_t)(hit - s) < out) {
            out = (size_t)(hit - s);
            e->stopped = 1;
        }
    }
    if (!e->stopped && !flush) out = n - held_back(e, s, n);
    if (out && e->cb && e->cb(e->user, s, out, tok, r)) e->stopped = 2;
    memmove(e->pending.data, s + out, n - out);
    e->pending.len = n - out;
    if (e->pending.data) e->pending.data[e->pending.len] = '\0';
    return LLMOPS_OK;
}

llmops_status llmops_generate_tokens(const llmops_model *m, llmops_context *ctx, const int32_t *prompt, size_t n_prompt,
                                     const llmops_gen_params *p, llmops_gen_cb cb, void *user, llmops_gen_stats *stats,
                                     llmops_error *err) {
    llmops_gen_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    const llmops_tokenizer *tok = llmops_model_tokenizer(m);
    if (!tok) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "generation needs the model's tokenizer");
    if (n_prompt == 0) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "the prompt is empty (no tokens)");
    if (n_prompt >= llmops_context_n_ctx(ctx))
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "the prompt has %zu tokens but the context holds only %u", n_prompt,
                                llmops_context_n_ctx(ctx));
    llmops_sampler *smp = NULL;
    llmops_status st = llmops_sampler_create(&p->sampling, (size_t)llmops_model_n_vocab(m), &smp, err);
    if (st) return st;
    llmops_batch_item *batch = llmops_malloc(n_prompt * sizeof *batch);
    emitter e = {{0}, p, cb, user, 0};
    llmops_buf_init(&e.pending, 1u << 24);
    llmops_buf piece;
    llmops_buf_init(&piece, 1u << 20);
    llmops_detok_stream ds;
    llmops_detok_stream_init(&ds, tok, LLMOPS_DETOKENIZE_SKIP_SPECIAL);
    if (!batch) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto done;
    }
    llmops_kv_seq_rm(ctx, p->seq, 0, -1);
    for (size_t i = 0; i < n_prompt; i++) {
        batch[i] = (llmops_batch_item){prompt[i], (int32_t)i, p->seq, i + 1 == n_prompt};
        llmops_sampler_accept(smp, prompt[i]);
    }
    double t0 = now_s();
    if ((st = llmops_decode(ctx, batch, n_prompt, err))) goto done;
    stats->n_prompt = (int32_t)n_prompt;
    stats->t_prompt_s = now_s() - t0;
    t0 = now_s();
    const float *logits = llmops_get_logits(ctx, n_prompt - 1);
    int32_t pos = (int32_t)n_prompt;
    stats->stop = LLMOPS_STOP_LENGTH;
    for (int32_t i = 0; i < p->n_predict; i++) {
        llmops_sample_result r;
        llmops_sampler_sample(smp, logits, &r);
        llmops_sampler_accept(smp, r.token);
        stats->n_gen++;
        if (llmops_tokenizer_is_eog(tok, r.token)) {
            stats->stop = LLMOPS_STOP_EOG;
            break;
        }
        piece.len = 0;
        if ((st = llmops_detok_stream_push(&ds, r.token, &piece, err))) goto done;
        if ((st = emit(&e, piece.data ? piece.data : "", piece.len, r.token, &r, 0, err))) goto done;
        if (e.stopped) {
            stats->stop = e.stopped == 1 ? LLMOPS_STOP_STRING : LLMOPS_STOP_CALLBACK;
            break;
        }
        if (i + 1 == p->n_predict) break;
        if ((uint32_t)pos >= llmops_context_n_ctx(ctx) || pos >= llmops_model_arch(m)->max_positions) {
            stats->stop = LLMOPS_STOP_CONTEXT;
            break;
        }
        llmops_batch_item b = {r.token, pos++, p->seq, 1};
        if ((st = llmops_decode(ctx, &b, 1, err))) goto done;
        logits = llmops_get_logits(ctx, 0);
    }
    if (!e.stopped) {
        piece.len = 0;
        if (!(st = llmops_detok_stream_finish(&ds, &piece, err)))
            st = emit(&e, piece.data ? piece.data : "", piece.len, -1, NULL, 1, err);
    }
    stats->t_gen_s = now_s() - t0;
done:
    llmops_buf_free(&piece);
    llmops_buf_free(&e.pending);
    llmops_free(batch);
    llmops_sampler_free(smp);
    return st;
}

llmops_status llmops_generate(const llmops_model *m, llmops_context *ctx, const char *prompt, const llmops_gen_params *p,
                              llmops_gen_cb cb, void *user, llmops_gen_stats *stats, llmops_error *err) {
    const llmops_tokenizer *tok = llmops_model_tokenizer(m);
    if (!tok) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "generation needs the model's tokenizer");
    llmops_tokens ids = {0};
    unsigned flags = (p->add_special ? LLMOPS_TOKENIZE_ADD_SPECIAL : 0) | (p->parse_special ? LLMOPS_TOKENIZE_PARSE_SPECIAL : 0);
    llmops_status st = llmops_tokenize(tok, prompt, strlen(prompt), flags, &ids, err);
    /* a model that adds EOS to its input must not see it before generating */
    if (!st && ids.n > 1 && llmops_tokenizer_add_eos(tok) && ids.ids[ids.n - 1] == llmops_tokenizer_eos(tok)) ids.n--;
    if (!st) st = llmops_generate_tokens(m, ctx, ids.ids, ids.n, p, cb, user, stats, err);
    llmops_tokens_free(&ids);
    return st;
}
