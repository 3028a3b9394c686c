/*
 * The training core against the independent PyTorch reference
 * (tests/oracle/torch_train_ref.py, written from the published architectures,
 * PEFT's LoRA formulation and torch.optim.AdamW): for random models of real
 * shapes — Llama with GQA, Qwen2 with q/k/v biases and tied embeddings,
 * GPT-2 (fused c_attn, LayerNorm, gelu_new, tied), Mistral with a sliding
 * window — the summed cross-entropy and the gradient of every trainable
 * tensor of one micro-batch (LoRA on every linear, and full fine-tuning),
 * and ten AdamW steps (weight decay, clipping, cosine schedule with warmup)
 * on the engine's own gradients (optimizer alone) and end to end.
 *
 * Tensors travel as safetensors files named with the trainer's llama.cpp
 * names; the oracle uses the trainer's values exactly (LoRA A/B included).
 * Tolerances: loss rel 1e-5; gradient of a tensor: max |C - torch| <=
 * 1e-4 · max |torch grad of that tensor| + 1e-6 · max |torch grad| overall.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/convert.h"
#include "llmops/model.h"
#include "llmops/safetensors.h"
#include "llmops/train.h"

#define PY "/usr/bin/python3"

static int have_torch(void) {
    /* find_spec: no import (importing torch costs a second of CPU per test) */
    return system(PY " -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec(\"torch\") and "
                     "u.find_spec(\"numpy\")))' >/dev/null 2>&1") == 0;
}
/* "KEY N VALUE" or "KEY VALUE" line of the oracle's stdout; NAN if absent. */
static double out_value(const char *out, const char *key, int idx) {
    char pat[64];
    if (idx >= 0)
        snprintf(pat, sizeof pat, "%s %d ", key, idx);
    else
        snprintf(pat, sizeof pat, "%s ", key);
    size_t n = strlen(pat);
    for (const char *p = out; p && *p;) {
        if (strncmp(p, pat, n) == 0) return strtod(p + n, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NAN;
}

/* A random Hugging Face folder from make_random_model.py (extra: more options). */
static const char *make_model(const char *arch, const char *size, const char *extra) {
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s-%s", test_tmpdir(), arch, size);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " %s --arch %s --size %s --seed 3 --out %s %s >/dev/null", test_oracle("make_random_model.py"),
             arch, size, dir, extra ? extra : "");
    return system(cmd) == 0 ? dir : NULL;
}

static int is_lora(const char *name) {
    size_t n = strlen(name);
    return n > 7 && (strcmp(name + n - 7, ".lora_a") == 0 || strcmp(name + n - 7, ".lora_b") == 0);
}

/* Writes every trainable tensor (which: 0 = weights, 1 = gradients) as F32; 1-D tensors with rows == 1. */
static llmops_status dump_tensors(llmops_trainer *t, int which, const char *path, llmops_error *err) {
    llmops_st_writer *w = llmops_st_writer_create();
    llmops_status st = LLMOPS_OK;
    for (size_t i = 0; st == LLMOPS_OK && i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
        uint64_t shape[2] = {(uint64_t)tt->rows, (uint64_t)tt->cols};
        int two_d = tt->rows > 1 || is_lora(tt->name);
        st = llmops_st_writer_add(w, tt->name, LLMOPS_DTYPE_F32, two_d ? 2 : 1, two_d ? shape : shape + 1,
                                  which ? (const void *)tt->g : (const void *)tt->w, err);
    }
    if (st == LLMOPS_OK) st = llmops_st_writer_write(w, path, err);
    llmops_st_writer_free(w);
    return st;
}

/* Deterministic uniform in [-1, 1). */
static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct batch {
    int n_seq, seq_len;
    int32_t *tokens, *targets;
    int64_t n_counted;
} batch;

/* n_seq rows of random tokens; targets = next token, the last position and a prompt prefix of row 1 ignored. */
static void make_batch(batch *b, int n_seq, int seq_len, int64_t vocab, uint64_t seed) {
    b->n_seq = n_seq;
    b->seq_len = seq_len;
    b->tokens = malloc(sizeof(int32_t) * (size_t)(n_seq * seq_len));
    b->targets = malloc(sizeof(int32_t) * (size_t)(n_seq * seq_len));
    b->n_counted = 0;
    uint64_t s = seed;
    for (int i = 0; i < n_seq * seq_len; i++) b->tokens[i] = (int32_t)((urand(&s) + 1.0f) * 0.5f * (float)(vocab - 1));
    for (int r = 0; r < n_seq; r++)
        for (int p = 0; p < seq_len; p++) {
            int i = r * seq_len + p;
            int32_t tgt = p + 1 < seq_len ? b->tokens[i + 1] : -1;
            if (r == 1 && p < 4) tgt = -1;               /* prompt */
            if (r == n_seq - 1 && p == 3) tgt = (int32_t)(vocab - 1); /* an arbitrary label */
            b->targets[i] = tgt;
            b->n_counted += tgt >= 0;
        }
}

static void free_batch(batch *b) {
    free(b->tokens);
    free(b->targets);
}

static int write_batch(const batch *b, double loss_scale, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int k = 0; k < 2; k++) {
        const int32_t *a = k ? b->targets : b->tokens;
        fprintf(f, k ? ",\"targets\":[" : "{\"tokens\":[");
        for (int r = 0; r < b->n_seq; r++) {
            fprintf(f, "%s[", r ? "," : "");
            for (int p = 0; p < b->seq_len; p++) fprintf(f, "%s%d", p ? "," : "", a[r * b->seq_len + p]);
            fprintf(f, "]");
        }
        fprintf(f, "]");
    }
    fprintf(f, ",\"loss_scale\":%.17g}\n", loss_scale);
    return fclose(f);
}

/*
 * Compares the trainer's tensors (which: 0 = weights, 1 = gradients) with the same names in `path`:
 * max |C - ref| <= rel · max |ref of that tensor| + floor_rel · max |ref| over all tensors + abs_floor.
 * Prints one summary line (tag) and the worst offenders; returns the number of tensors out of tolerance.
 */
static int compare_file(llmops_trainer *t, int which, const char *path, double rel, double floor_rel, double abs_floor,
                        const char *tag, llmops_error *err) {
    llmops_safetensors *st;
    if (llmops_safetensors_open(path, &st, err)) {
        fprintf(stderr, "  %s: %s\n", tag, err->msg);
        return 1000;
    }
    size_t nt = llmops_trainer_n_tensors(t);
    double gmax = 0;
    int bad = 0;
    for (size_t i = 0; i < nt; i++) {
        llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
        const llmops_st_tensor *r = llmops_safetensors_find(st, tt->name);
        if (!r || r->type != LLMOPS_DTYPE_F32 || r->end - r->begin != (uint64_t)(tt->rows * tt->cols) * 4) {
            fprintf(stderr, "  %s: %s missing or of another size in the reference\n", tag, tt->name);
            bad++;
            continue;
        }
        const float *ref = llmops_safetensors_data(st, r);
        for (int64_t j = 0; j < tt->rows * tt->cols; j++) gmax = fmax(gmax, fabs(ref[j]));
    }
    double worst_ratio = 0, worst_diff = 0, worst_max = 0;
    const char *worst = "-";
    for (size_t i = 0; i < nt && !bad; i++) {
        llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
        const float *ref = llmops_safetensors_data(st, llmops_safetensors_find(st, tt->name));
        const float *c = which ? tt->g : tt->w;
        double md = 0, mx = 0;
        int64_t at = 0;
        for (int64_t j = 0; j < tt->rows * tt->cols; j++) {
            double d = fabs((double)c[j] - (double)ref[j]);
            if (!(d <= md)) {
                md = d;
                at = j;
            }
            mx = fmax(mx, fabs(ref[j]));
        }
        double tol = rel * mx + floor_rel * gmax + abs_floor;
        double ratio = md / tol;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst_diff = md;
            worst_max = mx;
            worst = tt->name;
        }
        if (!(md <= tol)) {
            if (bad < 8)
                fprintf(stderr, "  %s: %s: max |diff| %.3g at [%lld] (C %.9g, torch %.9g), max |torch| %.3g, tol %.3g\n",
                        tag, tt->name, md, (long long)at, (double)c[at], (double)ref[at], mx, tol);
            bad++;
        }
    }
    fprintf(stderr, "  %s: %zu tensors, %d out of tolerance; worst %s: max |diff| %.3g (max |ref| %.3g, %.2f of tol)\n",
            tag, nt, bad, worst, worst_diff, worst_max, worst_ratio);
    llmops_safetensors_free(st);
    return bad;
}

typedef struct ref_case {
    const char *arch, *size, *extra; /* make_random_model options                                   */
    llmops_train_method method;
    unsigned targets;                 /* LoRA                                                         */
    const char *expect;               /* --expect-targets / NULL = --expect-full                      */
    int recompute;
    const char *gguf;                 /* NULL: the engine loads the HF folder; "f32": its GGUF conversion;
                                         a quantize recipe: the quantized GGUF (QLORA: the HF folder, and
                                         the oracle's frozen values come from llmops_quantize_model)       */
    int accumulate;                   /* the batch as two micro-batches into the same accumulators    */
    float dropout;                    /* LoRA dropout: the oracle applies the trainer's masks         */
} ref_case;

#define ALL_LLAMA                                                                                          \
    (LLMOPS_LORA_Q | LLMOPS_LORA_K | LLMOPS_LORA_V | LLMOPS_LORA_O | LLMOPS_LORA_GATE | LLMOPS_LORA_UP | \
     LLMOPS_LORA_DOWN)
#define ALL_GPT2 (LLMOPS_LORA_QKV | LLMOPS_LORA_O | LLMOPS_LORA_UP | LLMOPS_LORA_DOWN)
#define RANK 4
#define ALPHA 8.0f

static int is_permuted_arch(const char *arch) {
    return strcmp(arch, "llama") == 0 || strcmp(arch, "llama3") == 0 || strcmp(arch, "mistral") == 0;
}

static llmops_dtype quant_type(const char *recipe) {
    if (strcmp(recipe, "q4_0") == 0) return LLMOPS_DTYPE_Q4_0;
    if (strcmp(recipe, "q4_k") == 0) return LLMOPS_DTYPE_Q4_K;
    return LLMOPS_DTYPE_Q8_0;
}

/* The file the engine loads (dir or a GGUF made from it) and the oracle's extra options for it. */
static llmops_status model_files(const ref_case *c, const char *dir, char *load, size_t nload, char *oargs,
                                 size_t noargs, llmops_error *err) {
    snprintf(load, nload, "%s", dir);
    oargs[0] = '\0';
    if (!c->gguf) return LLMOPS_OK;
    char gg[1024];
    snprintf(gg, sizeof gg, "%s.%s.gguf", dir, c->gguf);
    llmops_status st = strcmp(c->gguf, "f32") == 0 ? llmops_convert(dir, gg, NULL, err)
                                                    : llmops_quantize_model(dir, gg, c->gguf, 2, err);
    if (st) return st;
    if (c->method == LLMOPS_TRAIN_QLORA) {
        /* the engine re-quantizes the HF rows itself; the oracle takes the frozen values from
         * llmops_quantize_model's file of the same type (see grads_case for which tensors) */
        snprintf(oargs, noargs, "--base-gguf %s", gg);
        return LLMOPS_OK;
    }
    snprintf(load, nload, "%s", gg);
    /* llama.cpp's converter permutes llama q/k rows for adjacent-pair RoPE */
    const char *lay = is_permuted_arch(c->arch) ? "--rope-layout interleaved" : "";
    if (strcmp(c->gguf, "f32") == 0)
        snprintf(oargs, noargs, "%s", lay); /* the oracle permutes the HF rows itself */
    else
        snprintf(oargs, noargs, "%s --base-gguf %s", lay, gg);
    return LLMOPS_OK;
}

static llmops_status make_trainer(const ref_case *c, const char *path, llmops_model **m, llmops_trainer **t,
                                  llmops_error *err) {
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_status st = llmops_model_load(path, &mp, m, err);
    if (st) return st;
    llmops_trainer_params tp;
    llmops_trainer_params_init(&tp);
    tp.method = c->method;
    tp.lora_rank = RANK;
    tp.lora_alpha = ALPHA;
    tp.lora_targets = c->targets;
    tp.n_threads = 2;
    tp.recompute = c->recompute;
    tp.head_chunk = 37; /* several logits chunks, the last one partial */
    tp.lora_dropout = c->dropout;
    tp.seed = 7;
    if (c->method == LLMOPS_TRAIN_QLORA) tp.base_type = quant_type(c->gguf);
    st = c->method == LLMOPS_TRAIN_SCRATCH ? llmops_trainer_create_scratch(llmops_model_arch(*m), &tp, t, err)
                                            : llmops_trainer_create(*m, &tp, t, err);
    if (st) {
        llmops_model_free(*m);
        *m = NULL;
    }
    return st;
}

/* LoRA: B starts at zero (an adapter starts as the identity); give it small random values so that A gets a
 * gradient too. Returns the number of nonzero B values found before (must be 0). */
static int64_t randomize_lora_b(llmops_trainer *t) {
    uint64_t s = 12345;
    int64_t nonzero = 0;
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
        size_t n = strlen(tt->name);
        if (n < 7 || strcmp(tt->name + n - 7, ".lora_b") != 0) continue;
        for (int64_t j = 0; j < tt->rows * tt->cols; j++) {
            nonzero += tt->w[j] != 0.0f;
            tt->w[j] = 0.02f * urand(&s);
        }
    }
    return nonzero;
}

static void oracle_train_args(const ref_case *c, char *buf, size_t n) {
    if (c->method == LLMOPS_TRAIN_FULL || c->method == LLMOPS_TRAIN_SCRATCH)
        snprintf(buf, n, "--expect-full");
    else
        snprintf(buf, n, "--alpha %g --rank %d --expect-targets %s", (double)ALPHA, RANK, c->expect);
}

static const char *method_name(llmops_train_method m) {
    return m == LLMOPS_TRAIN_FULL ? "full" : m == LLMOPS_TRAIN_QLORA ? "qlora" : m == LLMOPS_TRAIN_SCRATCH ? "scratch" : "lora";
}

/* One micro-batch of n_seq rows of seq_len tokens: loss, logits, eval and every gradient against the oracle. */
static void grads_case_ex(const ref_case *c, int n_seq, int seq_len) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    const char *dir = make_model(c->arch, c->size, c->extra);
    CHECK_MSG(dir != NULL, "make_random_model.py %s failed", c->arch);
    llmops_error err = {0};
    char load[1024], margs[1280];
    CHECK_OK(model_files(c, dir, load, sizeof load, margs, sizeof margs, &err), err);
    llmops_model *m;
    llmops_trainer *t;
    CHECK_OK(make_trainer(c, load, &m, &t, &err), err);
    if (strcmp(c->arch, "gpt2") != 0)
        CHECK_EQ_INT(llmops_trainer_rope_neox(t), c->gguf && c->method != LLMOPS_TRAIN_QLORA && is_permuted_arch(c->arch) ? 0 : 1);
    if (c->method == LLMOPS_TRAIN_SCRATCH) {
        /* weights N(0, 0.02), norms 1, biases 0, attn_output / ffn_down N(0, 0.02 / sqrt(2 layers)) */
        double n_layers = (double)llmops_trainer_arch(t)->n_layers;
        for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
            llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
            int64_t n = tt->rows * tt->cols;
            const char *nm = tt->name;
            size_t ln = strlen(nm);
            double s1 = 0, s2 = 0;
            for (int64_t j = 0; j < n; j++) {
                s1 += tt->w[j];
                s2 += (double)tt->w[j] * tt->w[j];
            }
            double mean = s1 / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
            if (ln > 11 && strcmp(nm + ln - 11, "norm.weight") == 0) {
                CHECK_MSG(mean == 1.0 && sd == 0.0, "scratch %s: mean %g sd %g, want all 1", nm, mean, sd);
            } else if (ln > 5 && strcmp(nm + ln - 5, ".bias") == 0) {
                CHECK_MSG(s2 == 0.0, "scratch %s: want all 0", nm);
            } else {
                double want = strstr(nm, "attn_output") || strstr(nm, "ffn_down") ? 0.02 / sqrt(2.0 * n_layers) : 0.02;
                CHECK_MSG(fabs(sd - want) <= 0.05 * want && fabs(mean) <= 5.0 * want / sqrt((double)n),
                          "scratch %s: mean %.3g sd %.4g, want N(0, %.4g)", nm, mean, sd, want);
            }
        }
    } else if (c->method != LLMOPS_TRAIN_FULL) {
        int64_t nz = randomize_lora_b(t);
        CHECK_MSG(nz == 0, "%lld nonzero LoRA B values after create (B must start at zero)", (long long)nz);
    }
    for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
        llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
        int want = tt->rows > 1 || is_lora(tt->name);
        CHECK_MSG(tt->decay == want, "%s [%lld x %lld]: decay %d", tt->name, (long long)tt->rows, (long long)tt->cols,
                  tt->decay);
    }
    char init[1024], gpath[1024], bpath[1024], opath[1024], lpath[1024], args[256], cmd[8192];
    snprintf(init, sizeof init, "%s", test_tmpfile("init.safetensors"));
    snprintf(gpath, sizeof gpath, "%s", test_tmpfile("grads_c.safetensors"));
    snprintf(opath, sizeof opath, "%s", test_tmpfile("grads_torch.safetensors"));
    snprintf(lpath, sizeof lpath, "%s", test_tmpfile("logits_torch.safetensors"));
    snprintf(bpath, sizeof bpath, "%s", test_tmpfile("batch.json"));
    CHECK_OK(dump_tensors(t, 0, init, &err), err);
    batch b;
    int64_t vocab = llmops_model_n_vocab(m);
    make_batch(&b, n_seq, seq_len, vocab, 99);
    double scale = 1.0 / (double)b.n_counted;
    CHECK(write_batch(&b, scale, bpath) == 0);
    llmops_trainer_zero_grad(t);
    double loss = 0;
    int64_t cnt = 0;
    if (c->accumulate) { /* rows 0-1, then row 2, into the same accumulators */
        double l2;
        int64_t c2;
        int n1 = b.n_seq - 1;
        CHECK_OK(llmops_trainer_forward_backward(t, b.tokens, b.targets, n1, b.seq_len, (float)scale, &loss, &cnt, &err),
                 err);
        CHECK_OK(llmops_trainer_forward_backward(t, b.tokens + n1 * b.seq_len, b.targets + n1 * b.seq_len, 1, b.seq_len,
                                                 (float)scale, &l2, &c2, &err),
                 err);
        loss += l2;
        cnt += c2;
    } else {
        CHECK_OK(llmops_trainer_forward_backward(t, b.tokens, b.targets, b.n_seq, b.seq_len, (float)scale, &loss, &cnt,
                                                 &err),
                 err);
    }
    CHECK_OK(dump_tensors(t, 1, gpath, &err), err);
    char mpath[1024], margs2[1100] = "";
    if (c->dropout > 0) { /* the realisation of the dropout this step used, for the oracle */
        snprintf(mpath, sizeof mpath, "%s", test_tmpfile("dropout_masks.safetensors"));
        size_t ntok = (size_t)(b.n_seq * b.seq_len);
        llmops_st_writer *w = llmops_st_writer_create();
        size_t nmask = 0;
        float *masks[64]; /* the writer keeps pointers until it writes */
        double kept = 0, total = 0;
        for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
            const char *nm = llmops_trainer_tensor(t, i)->name;
            size_t ln = strlen(nm);
            if (ln < 14 || strcmp(nm + ln - 14, ".weight.lora_a") != 0) continue;
            char wname[96], mname[128];
            snprintf(wname, sizeof wname, "%.*s", (int)(ln - 7), nm);
            snprintf(mname, sizeof mname, "%s.dropout_mask", wname);
            size_t in = (size_t)llmops_trainer_tensor(t, i)->cols;
            CHECK(nmask < sizeof masks / sizeof masks[0]);
            float *mk = masks[nmask] = malloc(ntok * in * sizeof(float));
            CHECK_OK(llmops_trainer_dropout_mask(t, wname, ntok, mk, &err), err);
            for (size_t j = 0; j < ntok * in; j++) kept += mk[j] != 0, total += 1;
            uint64_t shape[2] = {ntok, in};
            CHECK_OK(llmops_st_writer_add(w, mname, LLMOPS_DTYPE_F32, 2, shape, mk, &err), err);
            nmask++;
        }
        CHECK_OK(llmops_st_writer_write(w, mpath, &err), err);
        for (size_t i = 0; i < nmask; i++) free(masks[i]);
        llmops_st_writer_free(w);
        CHECK(nmask > 0);
        /* the masks keep about 1 − p of the inputs */
        CHECK_MSG(fabs(kept / total - (1.0 - c->dropout)) < 0.02, "kept fraction %.4f", kept / total);
        snprintf(margs2, sizeof margs2, "--dropout-masks %s", mpath);
    }
    /* eval and logits: the same forward pass without gradients */
    double eloss = 0;
    int64_t ecnt = 0;
    CHECK_OK(llmops_trainer_eval(t, b.tokens, b.targets, b.n_seq, b.seq_len, &eloss, &ecnt, &err), err);
    size_t nlog = (size_t)(b.n_seq * b.seq_len) * (size_t)vocab;
    float *logits = malloc(nlog * sizeof(float));
    CHECK_OK(llmops_trainer_logits(t, b.tokens, b.n_seq, b.seq_len, logits, &err), err);

    /* QLoRA re-quantizes what llmops_quantize_model converts (train.h): the oracle's frozen values come
     * from that file. (--base-gguf-linear-only would be the bitsandbytes way: nn.Linear layers only.) */
    static const char *variants[] = {""};
    int n_var = 1;
    double ref_loss = NAN, ref_cnt = NAN, md = INFINITY, mx = 0;
    char tag[160];
    snprintf(tag, sizeof tag, "%s %s%s%s %s%s%s%s grads", c->arch, c->size, c->gguf ? " " : "", c->gguf ? c->gguf : "",
             method_name(c->method), c->recompute ? " recompute" : "", c->accumulate ? " 2 micro-batches" : "",
             c->dropout > 0 ? " dropout" : "");
    oracle_train_args(c, args, sizeof args);
    for (int v = 0; v < n_var; v++) {
        snprintf(cmd, sizeof cmd, PY " %s grads --model %s %s %s --init %s --batch %s %s %s --logits-out %s --out %s",
                 test_oracle("torch_train_ref.py"), dir, margs, variants[v], init, bpath, args, margs2, lpath, opath);
        char *out = test_run_capture(cmd);
        CHECK_MSG(out != NULL, "oracle failed: %s", cmd);
        ref_loss = out_value(out, "loss_sum", -1);
        ref_cnt = out_value(out, "n_counted", -1);
        free(out);
        llmops_safetensors *st;
        CHECK_OK(llmops_safetensors_open(lpath, &st, &err), err);
        const llmops_st_tensor *lt = llmops_safetensors_find(st, "logits");
        CHECK(lt && lt->end - lt->begin == nlog * sizeof(float));
        const float *ref = llmops_safetensors_data(st, lt);
        md = 0;
        mx = 0;
        for (size_t i = 0; i < nlog; i++) {
            md = fmax(md, fabs((double)logits[i] - ref[i]));
            mx = fmax(mx, fabs(ref[i]));
        }
        llmops_safetensors_free(st);
        if (n_var > 1)
            fprintf(stderr, "  %s: frozen values %s: logits max |diff| %.3g\n", tag,
                    v ? "blocks' matrices quantized" : "every matrix quantized", md);
        if (md <= 1e-5 * mx + 1e-6) break;
    }
    fprintf(stderr, "  %s: loss_sum C %.9g torch %.9g (rel %.2g), counted %lld / %g\n", tag, loss, ref_loss,
            fabs(loss - ref_loss) / fabs(ref_loss), (long long)cnt, ref_cnt);
    fprintf(stderr, "  %s: logits max |diff| %.3g (max |torch| %.3g)\n", tag, md, mx);
    /* with dropout the oracle's logits are those of the training pass, ours of an evaluation */
    if (c->dropout == 0)
        CHECK_MSG(md <= 1e-5 * mx + 1e-6, "llmops_trainer_logits: max |diff| %.3g vs PyTorch (max %.3g)", md, mx);
    CHECK_EQ_INT(cnt, b.n_counted);
    CHECK_EQ_INT(cnt, (int64_t)ref_cnt);
    CHECK_MSG(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss), "loss_sum: C %.9g, PyTorch %.9g", loss, ref_loss);
    CHECK_EQ_INT(ecnt, cnt);
    if (c->dropout == 0)
        CHECK_MSG(fabs(eloss - loss) <= 1e-6 * fabs(loss), "eval loss %.9g, forward_backward %.9g", eloss, loss);
    else /* dropout on nonzero B factors changes the training loss, not the evaluation's */
        CHECK_MSG(fabs(eloss - loss) > 1e-6 * fabs(loss), "dropout left the loss unchanged (%.9g)", loss);
    free(logits);
    int bad = compare_file(t, 1, opath, 1e-4, 1e-6, 1e-12, tag, &err);
    CHECK_MSG(bad == 0, "%d gradients differ from PyTorch's (see above)", bad);
    free_batch(&b);
    llmops_trainer_free(t);
    llmops_model_free(m);
}

static void grads_case(const ref_case *c) {
    grads_case_ex(c, 3, 13);
}

static const char *k_all_llama = "q,k,v,o,gate,up,down";
static const char *k_all_gpt2 = "qkv,o,up,down";

TEST(train_ref_llama_gqa_lora_grads) {
    ref_case c = {"llama", "small", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_llama_full_grads) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 0, NULL, 0, 0};
    grads_case(&c);
}
/* LoRA dropout: the oracle applies the masks the trainer drew (it cannot draw the same numbers) */
TEST(train_ref_llama_lora_dropout_grads) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, NULL, 0, 0.3f};
    grads_case(&c);
}
TEST(train_ref_gpt2_lora_dropout_recompute_grads) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_GPT2, k_all_gpt2, 1, NULL, 0, 0.2f};
    grads_case(&c);
}
TEST(train_ref_llama_f16_lora_recompute_grads) {
    ref_case c = {"llama", "tiny", "--dtype f16", LLMOPS_TRAIN_LORA, LLMOPS_LORA_Q | LLMOPS_LORA_V, "q,v", 1, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_qwen2_lora_grads) {
    ref_case c = {"qwen2", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_qwen2_full_grads) {
    ref_case c = {"qwen2", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 1, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_gpt2_lora_grads) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_GPT2, k_all_gpt2, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_gpt2_full_grads) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_mistral_window_lora_grads) {
    ref_case c = {"mistral", "tiny", "--sliding-window 5", LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_llama3_full_grads) {
    ref_case c = {"llama3", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 0, NULL, 0, 0};
    grads_case(&c);
}

TEST(train_ref_llama_gguf_lora_grads) {
    /* GGUF rows permuted for adjacent-pair RoPE: the LoRA factors of q/k live in that row order */
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, "f32", 0, 0};
    grads_case(&c);
}
TEST(train_ref_llama_gguf_full_grads_two_micro_batches) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 0, "f32", 1, 0};
    grads_case(&c);
}
TEST(train_ref_llama_q8_0_base_lora_grads) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, "q8_0", 0, 0};
    grads_case(&c);
}
TEST(train_ref_qwen2_q4_0_base_lora_grads) {
    ref_case c = {"qwen2", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, "q4_0", 0, 0};
    grads_case(&c);
}
TEST(train_ref_llama_qlora_q8_0_grads) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_QLORA, LLMOPS_LORA_Q | LLMOPS_LORA_V, "q,v", 0, "q8_0", 0, 0};
    grads_case(&c);
}
TEST(train_ref_qwen2_qlora_q4_0_grads) {
    ref_case c = {"qwen2", "tiny", NULL, LLMOPS_TRAIN_QLORA, ALL_LLAMA, k_all_llama, 1, "q4_0", 0, 0};
    grads_case(&c);
}
TEST(train_ref_gpt2_lora_grads_two_micro_batches) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_LORA, LLMOPS_LORA_QKV, "qkv", 0, NULL, 1, 0};
    grads_case(&c);
}

TEST(train_ref_gpt2_scratch_grads) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_SCRATCH, 0, NULL, 0, NULL, 0, 0};
    grads_case(&c);
}
TEST(train_ref_qwen2_scratch_grads) {
    ref_case c = {"qwen2", "tiny", NULL, LLMOPS_TRAIN_SCRATCH, 0, NULL, 0, NULL, 0, 0};
    grads_case(&c);
}

/* longer rows (several attention tiles, a window well inside the row), one sequence */
TEST(train_ref_mistral_long_rows_full_grads) {
    ref_case c = {"mistral", "tiny", "--sliding-window 37", LLMOPS_TRAIN_FULL, 0, NULL, 1, NULL, 0, 0};
    grads_case_ex(&c, 1, 150);
}
TEST(train_ref_gpt2_long_rows_lora_grads) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_GPT2, k_all_gpt2, 0, NULL, 0, 0};
    grads_case_ex(&c, 2, 97);
}

/* ---- AdamW ------------------------------------------------------------------------ */

#define N_STEPS 10

/*
 * Ten steps of zero_grad / forward_backward / clip / AdamW with a cosine schedule with warmup and weight
 * decay. The engine's raw gradients of each step go to the oracle's `adamw` (the optimizer alone, same
 * gradients: tight tolerance); the oracle's `train` repeats the ten steps with its own gradients (end to end).
 */
static void adamw_case(const ref_case *c, double lr) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    const char *dir = make_model(c->arch, c->size, c->extra);
    CHECK_MSG(dir != NULL, "make_random_model.py %s failed", c->arch);
    llmops_error err = {0};
    char load[1024], margs[1280];
    CHECK_OK(model_files(c, dir, load, sizeof load, margs, sizeof margs, &err), err);
    llmops_model *m;
    llmops_trainer *t;
    CHECK_OK(make_trainer(c, load, &m, &t, &err), err);
    if (c->method != LLMOPS_TRAIN_FULL) randomize_lora_b(t);
    char init[1024], bpath[1024], fpath[1024], apath[1024], epath[1024];
    snprintf(init, sizeof init, "%s", test_tmpfile("init.safetensors"));
    snprintf(bpath, sizeof bpath, "%s", test_tmpfile("batch.json"));
    snprintf(fpath, sizeof fpath, "%s", test_tmpfile("final_c.safetensors"));
    snprintf(apath, sizeof apath, "%s", test_tmpfile("final_adamw.safetensors"));
    snprintf(epath, sizeof epath, "%s", test_tmpfile("final_train.safetensors"));
    CHECK_OK(dump_tensors(t, 0, init, &err), err);
    batch b;
    make_batch(&b, 2, 11, llmops_model_n_vocab(m), 5);
    double scale = 1.0 / (double)b.n_counted;
    CHECK(write_batch(&b, scale, bpath) == 0);

    llmops_adamw_params ap;
    llmops_adamw_params_init(&ap);
    CHECK(ap.beta1 == 0.9f && ap.beta2 == 0.999f && ap.eps == 1e-8f && ap.weight_decay == 0.0f);
    ap.beta2 = 0.99f;
    ap.weight_decay = 0.1f;
    llmops_adamw *opt;
    CHECK_OK(llmops_adamw_create(t, &ap, &opt, &err), err);
    llmops_lr_schedule sch = {LLMOPS_LR_COSINE, lr, lr * 0.1, 3, N_STEPS};
    double clip = 0, norms[N_STEPS], lrs[N_STEPS], losses[N_STEPS];
    size_t cmd_cap = 65536;
    char *cmd = malloc(cmd_cap);
    char *gargs = malloc(cmd_cap);
    gargs[0] = '\0';
    for (int s = 0; s < N_STEPS; s++) {
        llmops_trainer_zero_grad(t);
        int64_t cnt;
        CHECK_OK(llmops_trainer_forward_backward(t, b.tokens, b.targets, b.n_seq, b.seq_len, (float)scale, &losses[s],
                                                 &cnt, &err),
                 err);
        char name[64], gp[1024];
        snprintf(name, sizeof name, "grads%d.safetensors", s);
        snprintf(gp, sizeof gp, "%s", test_tmpfile(name));
        CHECK_OK(dump_tensors(t, 1, gp, &err), err);
        snprintf(gargs + strlen(gargs), cmd_cap - strlen(gargs), " --grads %s", gp);
        if (s == 0) clip = 0.8 * llmops_grad_norm(t); /* clipping bites on some steps, not all */
        norms[s] = llmops_clip_grad_norm(t, clip);
        lrs[s] = llmops_lr_at(&sch, s);
        llmops_adamw_step(opt, (float)lrs[s]);
    }
    CHECK_EQ_INT(llmops_adamw_steps(opt), N_STEPS);
    CHECK_OK(dump_tensors(t, 0, fpath, &err), err);
    char sched[512];
    snprintf(sched, sizeof sched,
             "--lr %.17g --min-lr %.17g --schedule cosine --warmup 3 --total-steps %d --beta1 0.9 --beta2 %.17g "
             "--eps 1e-8 --weight-decay %.17g --clip %.17g",
             lr, lr * 0.1, N_STEPS, (double)ap.beta2, (double)ap.weight_decay, clip);
    char tag[128];
    snprintf(tag, sizeof tag, "%s %s %s adamw", c->arch, c->size, method_name(c->method));

    /* the optimizer alone, on the engine's gradients */
    snprintf(cmd, cmd_cap, PY " %s adamw --moments --init %s %s %s --out %s", test_oracle("torch_train_ref.py"), init, gargs,
             sched, apath);
    char *out = test_run_capture(cmd);
    CHECK_MSG(out != NULL, "oracle failed: %s", cmd);
    for (int s = 0; s < N_STEPS; s++) {
        double rl = out_value(out, "lr", s), rn = out_value(out, "norm", s);
        CHECK_MSG(fabs(lrs[s] - rl) <= 1e-12 * rl, "step %d: llmops_lr_at %.17g, PyTorch schedule %.17g", s, lrs[s], rl);
        CHECK_MSG(fabs(norms[s] - rn) <= 1e-5 * rn, "step %d: gradient norm %.9g, PyTorch %.9g", s, norms[s], rn);
    }
    free(out);
    double sum_lr = 0;
    for (int s = 0; s < N_STEPS; s++) sum_lr += lrs[s];
    /* each AdamW update moves an element by about lr; float32 arithmetic vs float64 */
    int bad = compare_file(t, 0, apath, 1e-6, 0, 1e-4 * sum_lr, tag, &err);
    CHECK_MSG(bad == 0, "%d tensors off PyTorch's AdamW trajectory on the same gradients (see above)", bad);
    {   /* the moments (exp_avg, exp_avg_sq) */
        llmops_safetensors *st;
        CHECK_OK(llmops_safetensors_open(apath, &st, &err), err);
        double worst = 0;
        const char *wname = "-";
        for (size_t i = 0; i < llmops_trainer_n_tensors(t); i++) {
            llmops_train_tensor *tt = llmops_trainer_tensor(t, i);
            for (int k = 0; k < 2; k++) {
                char nm[128];
                snprintf(nm, sizeof nm, "%s.adam_%c", tt->name, k ? 'v' : 'm');
                const llmops_st_tensor *r = llmops_safetensors_find(st, nm);
                CHECK_MSG(r && r->end - r->begin == (uint64_t)(tt->rows * tt->cols) * 4, "no %s from the oracle", nm);
                const float *ref = llmops_safetensors_data(st, r);
                const float *mine = k ? llmops_adamw_v(opt, i) : llmops_adamw_m(opt, i);
                double md = 0, mx = 0;
                for (int64_t j = 0; j < tt->rows * tt->cols; j++) {
                    md = fmax(md, fabs((double)mine[j] - ref[j]));
                    mx = fmax(mx, fabs(ref[j]));
                }
                double ratio = md / (1e-5 * mx + 1e-30);
                if (!(ratio <= worst)) {
                    worst = ratio;
                    wname = tt->name;
                }
                CHECK_MSG(md <= 1e-5 * mx + 1e-30, "%s: max |diff| %.3g, max |torch| %.3g", nm, md, mx);
            }
        }
        fprintf(stderr, "  %s: moments m, v within %.2f of tol (1e-5 rel; worst %s)\n", tag, worst, wname);
        llmops_safetensors_free(st);
    }

    /* end to end: PyTorch's own gradients each step */
    char targs[256];
    oracle_train_args(c, targs, sizeof targs);
    snprintf(cmd, cmd_cap, PY " %s train --model %s %s --init %s --batch %s %s --steps %d %s --out %s",
             test_oracle("torch_train_ref.py"), dir, margs, init, bpath, targs, N_STEPS, sched, epath);
    out = test_run_capture(cmd);
    CHECK_MSG(out != NULL, "oracle failed: %s", cmd);
    for (int s = 0; s < N_STEPS; s++) {
        double rl = out_value(out, "loss", s);
        CHECK_MSG(fabs(losses[s] - rl) <= 1e-4 * rl, "step %d: loss %.9g, PyTorch %.9g", s, losses[s], rl);
    }
    fprintf(stderr, "  %s: losses C %.6g -> %.6g, torch %.6g -> %.6g\n", tag, losses[0], losses[N_STEPS - 1],
            out_value(out, "loss", 0), out_value(out, "loss", N_STEPS - 1));
    free(out);
    snprintf(tag + strlen(tag), sizeof tag - strlen(tag), " end-to-end");
    bad = compare_file(t, 0, epath, 1e-5, 0, 2e-2 * sum_lr, tag, &err);
    CHECK_MSG(bad == 0, "%d tensors off PyTorch's end-to-end trajectory (see above)", bad);
    free(cmd);
    free(gargs);
    free_batch(&b);
    llmops_adamw_free(opt);
    llmops_trainer_free(t);
    llmops_model_free(m);
}

TEST(train_ref_llama_lora_adamw_10_steps) {
    ref_case c = {"llama", "tiny", NULL, LLMOPS_TRAIN_LORA, ALL_LLAMA, k_all_llama, 0, NULL, 0, 0};
    adamw_case(&c, 1e-2);
}
TEST(train_ref_gpt2_full_adamw_10_steps) {
    ref_case c = {"gpt2", "tiny", NULL, LLMOPS_TRAIN_FULL, 0, NULL, 0, NULL, 0, 0};
    adamw_case(&c, 1e-3);
}

/* llmops_lr_at against the oracle's schedule, every kind, with and without warmup. */
TEST(train_ref_lr_schedules) {
    if (!have_torch()) SKIP("python3-torch is not installed");
    static const char *kinds[] = {"constant", "linear", "cosine"};
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             PY " %s lr --schedule constant,linear,cosine --lr 3e-4 --min-lr 3e-5 --warmup 0,4 --total-steps 20 --steps 25",
             test_oracle("torch_train_ref.py"));
    char *out = test_run_capture(cmd);
    CHECK_MSG(out != NULL, "oracle failed: %s", cmd);
    for (int k = 0; k < 3; k++)
        for (int warm = 0; warm <= 4; warm += 4) {
            llmops_lr_kind kind;
            llmops_error err = {0};
            CHECK_OK(llmops_lr_kind_parse(kinds[k], &kind, &err), err);
            llmops_lr_schedule s = {kind, 3e-4, 3e-5, warm, 20};
            char key[64];
            snprintf(key, sizeof key, "lr-%s-%d", kinds[k], warm);
            for (int i = 0; i < 25; i++) {
                double want = out_value(out, key, i), got = llmops_lr_at(&s, i);
                CHECK_MSG(fabs(got - want) <= 1e-12 * fabs(want) + 1e-18, "%s warmup %d step %d: %.17g, PyTorch %.17g",
                          kinds[k], warm, i, got, want);
            }
        }
    free(out);
}
