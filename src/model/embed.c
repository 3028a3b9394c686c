/* Sentence embeddings (encoder models) and perplexity (decoder models). */
#include <math.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/generate.h"

llmops_status llmops_embed(const llmops_model *m, llmops_context *ctx, const char *text, llmops_pooling pooling,
                           int normalize, float *out, llmops_error *err) {
    const llmops_arch *a = llmops_model_arch(m);
    if (a->family != LLMOPS_ARCH_BERT)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s is not an embedding (encoder) model",
                                llmops_arch_family_name(a->family));
    const llmops_tokenizer *tok = llmops_model_tokenizer(m);
    if (!tok) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "embedding needs the model's tokenizer");
    llmops_tokens ids = {0};
    llmops_status st = llmops_tokenize(tok, text, strlen(text), LLMOPS_TOKENIZE_ADD_SPECIAL, &ids, err);
    if (st) return st;
    size_t max = (size_t)a->max_positions;
    if (ids.n > max) { /* truncate as sentence-transformers does, keeping [SEP] last */
        ids.ids[max - 1] = ids.ids[ids.n - 1];
        ids.n = max;
    }
    llmops_batch_item *b = llmops_malloc(ids.n * sizeof *b);
    if (!b) {
        llmops_tokens_free(&ids);
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ids.n; i++) b[i] = (llmops_batch_item){ids.ids[i], (int32_t)i, 0, 1};
    st = llmops_decode(ctx, b, ids.n, err);
    size_t d = (size_t)a->hidden_size;
    if (!st) {
        if (pooling == LLMOPS_POOLING_CLS) memcpy(out, llmops_get_logits(ctx, 0), d * sizeof(float));
        else {
            memset(out, 0, d * sizeof(float));
            for (size_t t = 0; t < ids.n; t++) {
                const float *h = llmops_get_logits(ctx, t);
                for (size_t i = 0; i < d; i++) out[i] += h[i];
            }
            for (size_t i = 0; i < d; i++) out[i] /= (float)ids.n;
        }
        if (normalize) {
            double ss = 0;
            for (size_t i = 0; i < d; i++) ss += (double)out[i] * out[i];
            float s = (float)(1.0 / fmax(sqrt(ss), 1e-12)); /* torch's F.normalize eps */
            for (size_t i = 0; i < d; i++) out[i] *= s;
        }
    }
    llmops_free(b);
    llmops_tokens_free(&ids);
    return st;
}

llmops_status llmops_perplexity(const llmops_model *m, llmops_context *ctx, const char *text, size_t len, uint32_t n_ctx,
                                llmops_ppl_result *r, llmops_error *err) {
    memset(r, 0, sizeof *r);
    const llmops_tokenizer *tok = llmops_model_tokenizer(m);
    if (!tok) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "perplexity needs the model's tokenizer");
    if (llmops_model_arch(m)->family == LLMOPS_ARCH_BERT)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "perplexity needs a decoder model");
    if (n_ctx < 4 || n_ctx > llmops_context_n_ctx(ctx))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "chunk size %u must be 4..%u (the context size)", n_ctx,
                                llmops_context_n_ctx(ctx));
    llmops_tokens ids = {0};
    llmops_status st = llmops_tokenize(tok, text, len, 0, &ids, err);
    if (st) return st;
    size_t n_chunks = ids.n / n_ctx;
    if (n_chunks == 0) {
        llmops_tokens_free(&ids);
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "the text has %zu tokens, fewer than one chunk of %u", ids.n,
                                n_ctx);
    }
    llmops_batch_item *b = llmops_malloc(n_ctx * sizeof *b);
    size_t V = (size_t)llmops_model_n_vocab(m);
    double nll = 0;
    size_t scored = 0;
    if (!b) st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    int add_bos = llmops_tokenizer_add_bos(tok) && llmops_tokenizer_bos(tok) >= 0;
    uint32_t first = n_ctx / 2;
    for (size_t c = 0; !st && c < n_chunks; c++) {
        const int32_t *chunk = ids.ids + c * n_ctx;
        for (uint32_t i = 0; i < n_ctx; i++)
            b[i] = (llmops_batch_item){i == 0 && add_bos ? llmops_tokenizer_bos(tok) : chunk[i], (int32_t)i, 0,
                                       i >= first - 1 && i + 1 < n_ctx};
        llmops_kv_clear(ctx);
        if ((st = llmops_decode(ctx, b, n_ctx, err))) break;
        for (uint32_t i = first - 1; i + 1 < n_ctx; i++) {
            const float *l = llmops_get_logits(ctx, i);
            float mx = -INFINITY;
            for (size_t v = 0; v < V; v++)
                if (l[v] > mx) mx = l[v];
            double z = 0;
            for (size_t v = 0; v < V; v++) z += exp((double)(l[v] - mx));
            nll += log(z) + mx - l[chunk[i + 1]];
            scored++;
        }
    }
    if (!st) {
        r->nll = nll / (double)scored;
        r->ppl = exp(r->nll);
        r->n_scored = scored;
        r->n_chunks = n_chunks;
    }
    llmops_kv_clear(ctx);
    llmops_free(b);
    llmops_tokens_free(&ids);
    return st;
}
