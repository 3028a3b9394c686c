/*
 * LoRA adapters against the independent PyTorch reference
 * (tests/oracle/torch_train_ref.py, PEFT's math written from its
 * formulation): random tiny models and random factors exported as PEFT are
 * applied by the engine and by PyTorch; the same factors as a GGUF LoRA file
 * on the model's GGUF conversion; two adapters with scales; adapters written
 * by the oracle (rsLoRA); merged models (GGUF, Hugging Face folder, F16);
 * bad adapters. The PEFT file layout is read back with the independent
 * Python reader tests/oracle/modelfile.py.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/test.h"
#include "llmops/adapter.h"
#include "llmops/alloc.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/model.h"
#include "llmops/safetensors.h"
#include "llmops/train.h"

#define PY "/usr/bin/python3"

static int have_oracle(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, PY " -c 'import torch, numpy' >/dev/null 2>&1 && test -f %s/tests/oracle/torch_train_ref.py",
             test_repo_root());
    return system(cmd) == 0;
}

/* max |a-b| relative to max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

static const int32_t k_toks[] = {1, 17, 42, 99, 7, 250, 3, 31, 64, 128, 200, 5, 77, 150, 9, 300};
#define N_TOKS (sizeof k_toks / sizeof k_toks[0])
#define IDS "1,17,42,99,7,250,3,31,64,128,200,5,77,150,9,300"

/* A random model folder (one per test). */
static const char *make_model(const char *arch, int seed) {
    static char dir[1024]; /* test_tmpfile's buffers rotate */
    snprintf(dir, sizeof dir, "%s", test_tmpfile(arch));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " %s --arch %s --out %s --size tiny --seed %d >/dev/null", test_oracle("make_random_model.py"),
             arch, dir, seed);
    return system(cmd) == 0 ? dir : NULL;
}

/* Engine logits of k_toks (half as one batch, then token by token) with adapters applied. */
static float *engine_logits(const char *model, const char *const *adapters, const float *scales, size_t n_ad,
                            size_t *vocab, llmops_error *err) {
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    if (llmops_model_load(model, &mp, &m, err)) return NULL;
    llmops_context_params cp;
    llmops_context_params_init(&cp);
    cp.n_threads = 2;
    cp.kv_type = LLMOPS_KV_F32;
    llmops_context *ctx = NULL;
    llmops_adapter *ad[4] = {0};
    float *out = NULL;
    if (llmops_context_create(m, &cp, &ctx, err)) goto done;
    for (size_t i = 0; i < n_ad; i++)
        if (llmops_adapter_load(m, adapters[i], &ad[i], err)) goto done;
    if (n_ad && llmops_context_set_adapters(ctx, ad, scales, n_ad, err)) goto done;
    *vocab = (size_t)llmops_model_n_vocab(m);
    llmops_batch_item b[N_TOKS];
    for (size_t i = 0; i < N_TOKS; i++) b[i] = (llmops_batch_item){k_toks[i], (int32_t)i, 0, 1};
    out = malloc(N_TOKS * *vocab * sizeof(float));
    if (llmops_decode(ctx, b, N_TOKS / 2, err)) goto fail;
    for (size_t i = 0; i < N_TOKS / 2; i++) memcpy(out + i * *vocab, llmops_get_logits(ctx, i), *vocab * sizeof(float));
    for (size_t i = N_TOKS / 2; i < N_TOKS; i++) {
        if (llmops_decode(ctx, &b[i], 1, err)) goto fail;
        memcpy(out + i * *vocab, llmops_get_logits(ctx, 0), *vocab * sizeof(float));
    }
    goto done;
fail:
    free(out);
    out = NULL;
done:
    llmops_context_free(ctx);
    for (size_t i = 0; i < n_ad; i++) llmops_adapter_free(ad[i]);
    llmops_model_free(m);
    return out;
}

/* PyTorch logits; adapters as "DIR" or "DIR:SCALE". */
static float *torch_logits(const char *model, const char *adapter_args, size_t *n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, PY " %s logits --model %s %s --ids " IDS, test_oracle("torch_train_ref.py"), model, adapter_args);
    char *out = test_run_capture(cmd);
    if (!out) return NULL;
    float *v = test_parse_floats(out, n);
    free(out);
    return v;
}

/* ---- random factors shaped for a model ------------------------------------------------- */

typedef struct {
    llmops_train_tensor t[64];
    size_t n;
} factors;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* uniform in (-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 4503599627370496.0 - 1.0);
}

static void add_factor(factors *f, const char *w, int64_t out, int64_t in, int r, int layer) {
    llmops_train_tensor *a = &f->t[f->n++], *b = &f->t[f->n++];
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    snprintf(a->name, sizeof a->name, "%s.lora_a", w);
    snprintf(b->name, sizeof b->name, "%s.lora_b", w);
    a->rows = r;
    a->cols = in;
    b->rows = out;
    b->cols = r;
    a->layer = b->layer = layer;
    a->w = malloc((size_t)(r * in) * sizeof(float));
    b->w = malloc((size_t)(out * r) * sizeof(float));
    for (int64_t i = 0; i < r * in; i++) a->w[i] = 0.1f * urand();
    for (int64_t i = 0; i < out * r; i++) b->w[i] = 0.1f * urand();
}

/* Factors on every linear layer of the architecture. */
static void random_factors(const llmops_arch *a, int r, factors *f) {
    int64_t d = a->hidden_size, qd = a->n_heads * a->head_dim, kvd = a->n_kv_heads * a->head_dim, ff = a->ffn_size;
    f->n = 0;
    for (int l = 0; l < (int)a->n_layers; l++) {
        char w[96];
#define F(name, out, in)                                                                           \
    snprintf(w, sizeof w, "blk.%d." name ".weight", l);                                            \
    add_factor(f, w, out, in, r, l)
        if (a->family == LLMOPS_ARCH_GPT2) {
            F("attn_qkv", qd + 2 * kvd, d);
        } else {
            F("attn_q", qd, d);
            F("attn_k", kvd, d);
            F("attn_v", kvd, d);
            F("ffn_gate", ff, d);
        }
        F("attn_output", d, qd);
        F("ffn_up", ff, d);
        F("ffn_down", d, ff);
#undef F
    }
}

static void factors_free(factors *f) {
    for (size_t i = 0; i < f->n; i++) free(f->t[i].w);
    f->n = 0;
}

static llmops_status load_arch(const char *path, llmops_arch *a, llmops_error *err) {
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    llmops_status st = llmops_model_load(path, &mp, &m, err);
    if (st) return st;
    *a = *llmops_model_arch(m);
    llmops_model_free(m);
    return LLMOPS_OK;
}

/* ---- the main check: PEFT and GGUF LoRA, HF folder and GGUF model, against PyTorch ------------ */

static void peft_and_gguf_match_pytorch(const char *arch_name) {
    if (!have_oracle()) SKIP("python3-torch or tests/oracle/torch_train_ref.py missing");
    const char *dir = make_model(arch_name, 7);
    CHECK(dir != NULL);
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(load_arch(dir, &a, &err), err);
    factors f;
    random_factors(&a, 4, &f);
    llmops_adapter_export_params ep;
    llmops_adapter_export_params_init(&ep);
    ep.arch = &a;
    ep.rope_neox = 1; /* the factors are in the HF folder's row order */
    ep.rank = 4;
    ep.alpha = 8;
    ep.base_model = dir;
    char peft[1200], glora[1200], gguf[1200];
    snprintf(peft, sizeof peft, "%s.peft", dir);
    snprintf(glora, sizeof glora, "%s.lora.gguf", dir);
    snprintf(gguf, sizeof gguf, "%s.gguf", dir);
    CHECK_OK(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_PEFT, peft, &err), err);
    CHECK_OK(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_GGUF, glora, &err), err);
    CHECK_OK(llmops_convert(dir, gguf, NULL, &err), err);
    char glora16[1200];
    snprintf(glora16, sizeof glora16, "%s.lora16.gguf", dir);
    ep.out_type = LLMOPS_DTYPE_F16;
    CHECK_OK(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_GGUF, glora16, &err), err);
    ep.out_type = LLMOPS_DTYPE_F32;

    /* the PEFT layout, read back by the independent reader */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             PY " -c \"import sys, json; sys.path.insert(0, '%s/tests/oracle'); from modelfile import SafetensorsFile;"
                " s = SafetensorsFile('%s/adapter_model.safetensors'); c = json.load(open('%s/adapter_config.json'));"
                " [print(t.name, t.dtype, *t.shape) for t in s.tensors]; print('problems', len(s.problems));"
                " print('config', c['peft_type'], c['task_type'], c['r'], c['lora_alpha'], c['bias'], c['fan_in_fan_out'],"
                " c['inference_mode'], ','.join(sorted(c['target_modules'])))\"",
             test_repo_root(), peft, peft);
    char *listing = test_run_capture(cmd);
    CHECK_MSG(listing != NULL, "%s failed", cmd);
    int gpt2 = a.family == LLMOPS_ARCH_GPT2;
    char want[512];
    snprintf(want, sizeof want, "config LORA CAUSAL_LM 4 8.0 none %s True %s", gpt2 ? "True" : "False",
             gpt2 ? "c_attn,c_fc,c_proj" : "down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj");
    CHECK_MSG(strstr(listing, want) != NULL, "config line missing '%s' in:\n%s", want, listing);
    int64_t qd = a.n_heads * a.head_dim, kvd = a.n_kv_heads * a.head_dim;
    if (gpt2) snprintf(want, sizeof want, "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight F32 %lld 4",
                       (long long)(qd + 2 * kvd));
    else snprintf(want, sizeof want, "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight F32 %lld 4",
                  (long long)kvd);
    CHECK_MSG(strstr(listing, want) != NULL, "'%s' missing in:\n%s", want, listing);
    snprintf(want, sizeof want, gpt2 ? "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight F32 4 %lld"
                                     : "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight F32 4 %lld",
             (long long)a.ffn_size);
    CHECK_MSG(strstr(listing, want) != NULL, "'%s' missing in:\n%s", want, listing);
    CHECK_MSG(strstr(listing, "problems 0") != NULL, "the reader reports problems:\n%s", listing);
    free(listing);

    /* the GGUF LoRA file, read by the independent reader: keys, ne = [in, r] / [r, out], and k's B rows
     * in llama.cpp's permuted order (llama) or as PEFT has them (qwen2) */
    {
        const char *script = test_tmpfile("check_gguf_lora.py");
        FILE *fp = fopen(script, "w");
        CHECK(fp != NULL);
        fprintf(fp,
                "import sys\nimport numpy as np\nsys.path.insert(0, '%s/tests/oracle')\n"
                "from modelfile import GGUFFile, SafetensorsFile\n"
                "g = GGUFFile('%s')\ns = SafetensorsFile('%s/adapter_model.safetensors')\n"
                "print('kv', g.get('general.type'), g.get('adapter.type'), g.get('adapter.lora.alpha'),"
                " g.get('general.architecture'), 'problems', len(g.problems))\n"
                "for t in g.tensors: print('ne', t.name, g.tensors[0].type_name, *t.ne)\n"
                "if %d:\n"
                "    B = s.tensor_array('base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight')\n"
                "    G = g.tensor_array('blk.1.attn_k.weight.lora_b').reshape(B.shape)\n"
                "    nh = %d\n"
                "    if %d: B = B.reshape(nh, 2, B.shape[0] // nh // 2, B.shape[1]).swapaxes(1, 2).reshape(B.shape)\n"
                "    print('k rows', 'same' if np.array_equal(G, B) else 'differ')\n",
                test_repo_root(), glora, peft, !gpt2, (int)a.n_kv_heads, a.family == LLMOPS_ARCH_LLAMA);
        fclose(fp);
        snprintf(cmd, sizeof cmd, PY " %s", script);
        char *gl = test_run_capture(cmd);
        CHECK_MSG(gl != NULL, "%s failed", cmd);
        snprintf(want, sizeof want, "kv adapter lora 8.0 %s problems 0", arch_name);
        CHECK_MSG(strstr(gl, want) != NULL, "'%s' missing in:\n%s", want, gl);
        snprintf(want, sizeof want, "ne blk.0.ffn_down.weight.lora_a F32 %lld 4", (long long)a.ffn_size);
        CHECK_MSG(strstr(gl, want) != NULL, "'%s' missing in:\n%s", want, gl);
        snprintf(want, sizeof want, "ne blk.1.attn_output.weight.lora_b F32 4 %lld", (long long)a.hidden_size);
        CHECK_MSG(strstr(gl, want) != NULL, "'%s' missing in:\n%s", want, gl);
        CHECK_MSG(gpt2 || strstr(gl, "k rows same") != NULL, "k's lora_b rows:\n%s", gl);
        free(gl);
    }

    size_t n_ref, n_base, V;
    char arg[1400];
    snprintf(arg, sizeof arg, "--adapter %s", peft);
    float *ref = torch_logits(dir, arg, &n_ref);
    CHECK_MSG(ref != NULL, "torch_train_ref.py logits failed");
    float *base = torch_logits(dir, "", &n_base);
    CHECK(base != NULL && n_base == n_ref);
    CHECK_MSG(rel_err(base, ref, n_ref) > 1e-2, "the adapter barely changes the logits (%.3g)", rel_err(base, ref, n_ref));
    /* every model/adapter pairing: permutations in both directions */
    struct {
        const char *model, *adapter, *what;
        double tol;
    } cases[] = {{dir, peft, "HF folder + PEFT", 1e-4},
                 {gguf, glora, "GGUF + GGUF LoRA", 1e-4},
                 {gguf, peft, "GGUF + PEFT", 1e-4},
                 {dir, glora, "HF folder + GGUF LoRA", 1e-4},
                 {gguf, glora16, "GGUF + F16 GGUF LoRA", 1e-3}};
    for (size_t k = 0; k < 5; k++) {
        const char *ads[1] = {cases[k].adapter};
        float *got = engine_logits(cases[k].model, ads, NULL, 1, &V, &err);
        CHECK_MSG(got != NULL, "%s: %s", cases[k].what, err.msg);
        CHECK_EQ_INT(n_ref, N_TOKS * V);
        double e = rel_err(got, ref, n_ref);
        CHECK_MSG(e < cases[k].tol, "%s %s: relative max error %.3g", arch_name, cases[k].what, e);
        if (getenv("ADAPTER_TEST_VERBOSE")) fprintf(stderr, "    %s %s: %.3g\n", arch_name, cases[k].what, e);
        free(got);
    }
    /* round trip: the factors as the GGUF model holds them (permuted for llama), exported as PEFT again */
    {
        llmops_model_params mp;
        llmops_model_params_init(&mp);
        mp.load_tokenizer = 0;
        llmops_model *m;
        CHECK_OK(llmops_model_load(gguf, &mp, &m, &err), err);
        llmops_adapter *ad;
        CHECK_OK(llmops_adapter_load(m, glora, &ad, &err), err);
        CHECK_EQ_INT(llmops_adapter_rank(ad), 4);
        CHECK(llmops_adapter_alpha(ad) == 8.0f && llmops_adapter_scaling(ad) == 2.0f);
        size_t nts;
        const llmops_train_tensor *ts = llmops_adapter_tensors(ad, &nts);
        CHECK_EQ_INT(nts, f.n);
        llmops_adapter_export_params e2 = ep;
        e2.rope_neox = a.family == LLMOPS_ARCH_QWEN2 || gpt2; /* the GGUF model's own order */
        char back[1300];
        snprintf(back, sizeof back, "%s.back", peft);
        CHECK_OK(llmops_adapter_export(&e2, ts, nts, LLMOPS_ADAPTER_PEFT, back, &err), err);
        char p1[1400], p2[1400];
        snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", peft);
        snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", back);
        llmops_safetensors *s1, *s2;
        CHECK_OK(llmops_safetensors_open(p1, &s1, &err), err);
        CHECK_OK(llmops_safetensors_open(p2, &s2, &err), err);
        CHECK_EQ_INT(llmops_safetensors_n_tensors(s1), llmops_safetensors_n_tensors(s2));
        for (size_t i = 0; i < llmops_safetensors_n_tensors(s1); i++) {
            const llmops_st_tensor *t1 = llmops_safetensors_tensor_at(s1, i);
            const llmops_st_tensor *t2 = llmops_safetensors_find(s2, t1->name);
            CHECK_MSG(t2 && t2->end - t2->begin == t1->end - t1->begin &&
                          !memcmp(llmops_safetensors_data(s1, t1), llmops_safetensors_data(s2, t2), t1->end - t1->begin),
                      "%s differs after GGUF → PEFT", t1->name);
        }
        llmops_safetensors_free(s1);
        llmops_safetensors_free(s2);
        llmops_adapter_free(ad);
        llmops_model_free(m);
    }
    free(base);
    free(ref);
    factors_free(&f);
}

TEST(adapter_llama_peft_and_gguf_match_pytorch) { peft_and_gguf_match_pytorch("llama"); }
TEST(adapter_qwen2_peft_and_gguf_match_pytorch) { peft_and_gguf_match_pytorch("qwen2"); }
TEST(adapter_gpt2_peft_and_gguf_match_pytorch) { peft_and_gguf_match_pytorch("gpt2"); }

/* Two adapters written by the oracle (one rsLoRA), with scales, on the GGUF conversion. */
TEST(adapter_two_oracle_adapters_with_scales) {
    if (!have_oracle()) SKIP("python3-torch or tests/oracle/torch_train_ref.py missing");
    const char *dir = make_model("llama", 11);
    CHECK(dir != NULL);
    char a1[1200], a2[1200], gguf[1200], cmd[8192];
    snprintf(a1, sizeof a1, "%s.a1", dir);
    snprintf(a2, sizeof a2, "%s.a2", dir);
    snprintf(gguf, sizeof gguf, "%s.gguf", dir);
    snprintf(cmd, sizeof cmd,
             PY " %s make-adapter --model %s --out %s --rank 4 --alpha 8 --targets q,k,v,o --seed 1 >/dev/null && " PY
                " %s make-adapter --model %s --out %s --rank 2 --alpha 4 --targets gate,up,down,q --seed 2 --rslora >/dev/null",
             test_oracle("torch_train_ref.py"), dir, a1, test_oracle("torch_train_ref.py"), dir, a2);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    llmops_error err = {0};
    CHECK_OK(llmops_convert(dir, gguf, NULL, &err), err);
    char arg[4096];
    snprintf(arg, sizeof arg, "--adapter %s:0.7 --adapter %s:-1.5", a1, a2);
    size_t n_ref, V;
    float *ref = torch_logits(dir, arg, &n_ref);
    CHECK(ref != NULL);
    const char *ads[2] = {a1, a2};
    const float scales[2] = {0.7f, -1.5f};
    const char *models[2] = {dir, gguf};
    for (int k = 0; k < 2; k++) {
        float *got = engine_logits(models[k], ads, scales, 2, &V, &err);
        CHECK_MSG(got != NULL, "%s", err.msg);
        CHECK_EQ_INT(n_ref, N_TOKS * V);
        double e = rel_err(got, ref, n_ref);
        CHECK_MSG(e < 1e-4, "%s: relative max error %.3g", k ? "GGUF" : "HF folder", e);
        free(got);
    }
    /* scale 0 for both is the base model */
    const float zero[2] = {0, 0};
    float *base = engine_logits(gguf, NULL, NULL, 0, &V, &err);
    float *got = engine_logits(gguf, ads, zero, 2, &V, &err);
    CHECK(base && got);
    CHECK_MSG(rel_err(got, base, n_ref) < 1e-4, "scale 0: %.3g", rel_err(got, base, n_ref));
    free(base);
    free(got);
    free(ref);
}

/* Merged models (GGUF F32, Hugging Face folder, F16) give the logits of base + runtime adapters. */
static void merge_check(const char *arch_name) {
    if (!have_oracle()) SKIP("python3-torch or tests/oracle/torch_train_ref.py missing");
    const char *dir = make_model(arch_name, 5);
    CHECK(dir != NULL);
    char a1[1200], a2[1200], cmd[8192];
    snprintf(a1, sizeof a1, "%s.a1", dir);
    snprintf(a2, sizeof a2, "%s.a2.gguf", dir);
    const char *targets = strcmp(arch_name, "gpt2") ? "q,k,v,o,gate,up,down" : "qkv,o,up,down";
    snprintf(cmd, sizeof cmd, PY " %s make-adapter --model %s --out %s --rank 4 --alpha 8 --targets %s --seed 3 >/dev/null",
             test_oracle("torch_train_ref.py"), dir, a1, targets);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    llmops_error err = {0};
    /* a second adapter as GGUF LoRA (converted from the first loaded on the base) */
    {
        llmops_model_params mp;
        llmops_model_params_init(&mp);
        mp.load_tokenizer = 0;
        llmops_model *m;
        CHECK_OK(llmops_model_load(dir, &mp, &m, &err), err);
        llmops_adapter *ad;
        CHECK_OK(llmops_adapter_load(m, a1, &ad, &err), err);
        size_t nts;
        const llmops_train_tensor *ts = llmops_adapter_tensors(ad, &nts);
        llmops_adapter_export_params ep;
        llmops_adapter_export_params_init(&ep);
        ep.arch = llmops_model_arch(m);
        ep.rank = 4;
        ep.alpha = 4; /* a different scaling */
        CHECK_OK(llmops_adapter_export(&ep, ts, nts, LLMOPS_ADAPTER_GGUF, a2, &err), err);
        llmops_adapter_free(ad);
        llmops_model_free(m);
    }
    const char *ads[2] = {a1, a2};
    const float scales[2] = {0.5f, 0.75f};
    size_t V, V2;
    float *runtime = engine_logits(dir, ads, scales, 2, &V, &err);
    CHECK_MSG(runtime != NULL, "%s", err.msg);
    char arg[4096];
    size_t n_ref;
    /* the oracle: a1 at 0.5 plus a2 (= a1 with alpha 4: half the scaling) at 0.75 → a1 at 0.875 */
    snprintf(arg, sizeof arg, "--adapter %s:0.875", a1);
    float *ref = torch_logits(dir, arg, &n_ref);
    CHECK(ref != NULL && n_ref == N_TOKS * V);
    CHECK_MSG(rel_err(runtime, ref, n_ref) < 1e-4, "runtime vs PyTorch: %.3g", rel_err(runtime, ref, n_ref));
    struct {
        const char *suffix;
        int type;
        double tol;
    } outs[] = {{".merged.gguf", LLMOPS_DTYPE_F32, 1e-5}, {".merged_hf", LLMOPS_DTYPE_F32, 1e-5},
                {".merged16.gguf", LLMOPS_DTYPE_F16, 2e-3}};
    for (size_t k = 0; k < 3; k++) {
        char out[1300];
        snprintf(out, sizeof out, "%s%s", dir, outs[k].suffix);
        llmops_merge_params mp;
        llmops_merge_params_init(&mp);
        mp.out_type = outs[k].type;
        CHECK_OK(llmops_adapter_merge(dir, ads, scales, 2, out, &mp, &err), err);
        float *got = engine_logits(out, NULL, NULL, 0, &V2, &err);
        CHECK_MSG(got != NULL, "%s: %s", out, err.msg);
        CHECK_EQ_INT(V2, V);
        double e = rel_err(got, runtime, n_ref);
        CHECK_MSG(e < outs[k].tol, "%s merged%s: relative max error %.3g > %.3g", arch_name, outs[k].suffix, e,
                  outs[k].tol);
        if (getenv("ADAPTER_TEST_VERBOSE")) fprintf(stderr, "    %s merged%s: %.3g\n", arch_name, outs[k].suffix, e);
        free(got);
    }
    /* the merged GGUF keeps the base's metadata and tokenizer; a GGUF base merges too */
    {
        char out[1300], out2[1300];
        snprintf(out, sizeof out, "%s.merged.gguf", dir);
        snprintf(out2, sizeof out2, "%s.merged_again.gguf", dir);
        llmops_model *m;
        CHECK_OK(llmops_model_load(out, NULL, &m, &err), err);
        CHECK(llmops_model_tokenizer(m) != NULL);
        llmops_model_free(m);
        const float neg[1] = {-0.875f}; /* undo a1 */
        CHECK_OK(llmops_adapter_merge(out, ads, neg, 1, out2, NULL, &err), err);
        float *base = torch_logits(dir, "", &n_ref);
        float *got = engine_logits(out2, NULL, NULL, 0, &V2, &err);
        CHECK(base && got);
        CHECK_MSG(rel_err(got, base, n_ref) < 1e-4, "merge then unmerge: %.3g", rel_err(got, base, n_ref));
        free(base);
        free(got);
    }
    free(ref);
    free(runtime);
}

TEST(adapter_merge_llama) { merge_check("llama"); }
TEST(adapter_merge_gpt2) { merge_check("gpt2"); }

/* ---- bad adapters: clear errors that name the tensor -------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A PEFT folder with the given tensors (name, rows, cols) and config r. */
static llmops_status write_peft(const char *dir, int r, const char *const *names, const uint64_t (*shapes)[2], size_t n,
                                llmops_error *err) {
    char cfg[2048], path[1400];
    llmops_status st = llmops_mkdirs(dir, err);
    if (st) return st;
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], "
             "\"task_type\": \"CAUSAL_LM\"}\n",
             r);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_text(path, cfg);
    llmops_st_writer *w = llmops_st_writer_create();
    static float zeros[1 << 16];
    for (size_t i = 0; i < n && !st; i++) st = llmops_st_writer_add(w, names[i], LLMOPS_DTYPE_F32, 2, shapes[i], zeros, err);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!st) st = llmops_st_writer_write(w, path, err);
    llmops_st_writer_free(w);
    return st;
}

TEST(adapter_bad_adapters_name_the_tensor) {
    if (!have_oracle()) SKIP("python3-torch missing (random models come from tests/oracle)");
    const char *dir = make_model("llama", 2);
    CHECK(dir != NULL);
    llmops_error err = {0};
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, &mp, &m, &err), err);
    const llmops_arch *a = llmops_model_arch(m);
    uint64_t d = (uint64_t)a->hidden_size, qd = (uint64_t)(a->n_heads * a->head_dim);
    llmops_adapter *ad = NULL;
#define QA "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
#define QB "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    {
        const char *names[2] = {QA, QB};
        const uint64_t shapes[2][2] = {{4, d + 1}, {qd, 4}};
        const char *p = test_tmpfile("bad_shape");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, QA);
        CHECK(ad == NULL);
    }
    {
        const char *names[2] = {QA, QB};
        const uint64_t shapes[2][2] = {{4, d}, {qd + 2, 4}};
        const char *p = test_tmpfile("bad_out");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, QB);
    }
    {
        const char *names[2] = {QA, QB};
        const uint64_t shapes[2][2] = {{4, d}, {qd, 2}};
        const char *p = test_tmpfile("bad_rank");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, "rank mismatch");
        CHECK(strstr(err.msg, QA) != NULL);
    }
    {
        const char *names[2] = {QA, QB};
        const uint64_t shapes[2][2] = {{2, d}, {qd, 2}};
        const char *p = test_tmpfile("bad_config_rank");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, "r = 4");
        CHECK(strstr(err.msg, QA) != NULL);
    }
    {
        const char *names[2] = {"base_model.model.model.layers.0.self_attn.rotary.lora_A.weight",
                                "base_model.model.model.layers.0.self_attn.rotary.lora_B.weight"};
        const uint64_t shapes[2][2] = {{4, d}, {d, 4}};
        const char *p = test_tmpfile("bad_module");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_UNSUPPORTED, err, names[0]);
    }
    {
        const char *names[2] = {"base_model.model.model.embed_tokens.lora_embedding_A",
                                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"};
        const uint64_t shapes[2][2] = {{4, 320}, {4, d}};
        const char *p = test_tmpfile("bad_embedding");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_UNSUPPORTED, err, names[0]);
    }
    {
        const char *names[1] = {QA};
        const uint64_t shapes[1][2] = {{4, d}};
        const char *p = test_tmpfile("missing_b");
        CHECK_OK(write_peft(p, 4, names, shapes, 1, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, QA);
        CHECK(strstr(err.msg, "no matching") != NULL);
    }
    {
        const char *names[2] = {"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight",
                                "base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight"};
        const uint64_t shapes[2][2] = {{4, d}, {qd, 4}};
        const char *p = test_tmpfile("bad_layer");
        CHECK_OK(write_peft(p, 4, names, shapes, 2, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, names[0]);
    }
    /* a GPT-2 GGUF LoRA on a llama model; a module the model lacks (attn_qkv); a model file as adapter */
    {
        llmops_arch g = *a;
        g.family = LLMOPS_ARCH_GPT2;
        factors f;
        f.n = 0;
        add_factor(&f, "blk.0.attn_output.weight", d, qd, 4, 0);
        llmops_adapter_export_params ep;
        llmops_adapter_export_params_init(&ep);
        ep.arch = &g;
        ep.rank = 4;
        const char *p = test_tmpfile("gpt2_lora.gguf");
        CHECK_OK(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_GGUF, p, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_FORMAT, err, "general.architecture");
        factors_free(&f);
        add_factor(&f, "blk.0.attn_qkv.weight", 3 * d, d, 4, 0);
        ep.arch = a;
        p = test_tmpfile("qkv_lora.gguf");
        CHECK_OK(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_GGUF, p, &err), err);
        CHECK_ERR(llmops_adapter_load(m, p, &ad, &err), LLMOPS_ERR_UNSUPPORTED, err, "blk.0.attn_qkv.weight.lora_a");
        factors_free(&f);
        const char *g2 = test_tmpfile("model.gguf");
        CHECK_OK(llmops_convert(dir, g2, NULL, &err), err);
        CHECK_ERR(llmops_adapter_load(m, g2, &ad, &err), LLMOPS_ERR_FORMAT, err, "general.type");
        CHECK_ERR(llmops_adapter_load(m, test_tmpfile("none"), &ad, &err), LLMOPS_ERR_NOT_FOUND, err, "none");
    }
    /* export errors: a lora_a without lora_b, a rank that differs */
    {
        factors f;
        f.n = 0;
        add_factor(&f, "blk.0.attn_q.weight", qd, d, 4, 0);
        llmops_adapter_export_params ep;
        llmops_adapter_export_params_init(&ep);
        ep.arch = a;
        ep.rank = 8;
        CHECK_ERR(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_PEFT, test_tmpfile("x"), &err),
                  LLMOPS_ERR_INVALID_ARG, err, "blk.0.attn_q.weight.lora_a");
        CHECK(strstr(err.msg, "rank mismatch") != NULL);
        ep.rank = 4;
        CHECK_ERR(llmops_adapter_export(&ep, f.t, 1, LLMOPS_ADAPTER_PEFT, test_tmpfile("y"), &err), LLMOPS_ERR_INVALID_ARG,
                  err, "no matching lora_b");
        ep.targets = LLMOPS_LORA_V;
        CHECK_ERR(llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_PEFT, test_tmpfile("z"), &err),
                  LLMOPS_ERR_INVALID_ARG, err, "not among the targets");
        factors_free(&f);
    }
    /* an adapter of another model is refused by a context */
    {
        llmops_model *m2;
        CHECK_OK(llmops_model_load(dir, &mp, &m2, &err), err);
        char peft[1200];
        snprintf(peft, sizeof peft, "%s.ok", dir);
        const char *names[2] = {QA, QB};
        const uint64_t shapes[2][2] = {{4, d}, {qd, 4}};
        CHECK_OK(write_peft(peft, 4, names, shapes, 2, &err), err);
        CHECK_OK(llmops_adapter_load(m2, peft, &ad, &err), err);
        llmops_context *ctx;
        CHECK_OK(llmops_context_create(m, NULL, &ctx, &err), err);
        CHECK_ERR(llmops_context_set_adapters(ctx, &ad, NULL, 1, &err), LLMOPS_ERR_INVALID_ARG, err, "another model");
        llmops_context_free(ctx);
        llmops_adapter_free(ad);
        llmops_model_free(m2);
    }
    llmops_model_free(m);
}

/* The training core's own forward pass with LoRA (a GGUF llama: q/k rows permuted) equals the
 * engine with the exported adapter, as PEFT on the Hugging Face folder and as GGUF LoRA on the GGUF. */
TEST(adapter_trainer_export_matches_trainer_logits) {
    if (!have_oracle()) SKIP("python3-torch missing (random models come from tests/oracle)");
    const char *dir = make_model("llama", 9);
    CHECK(dir != NULL);
    char gguf[1200], peft[1200], glora[1200];
    snprintf(gguf, sizeof gguf, "%s.gguf", dir);
    snprintf(peft, sizeof peft, "%s.peft", dir);
    snprintf(glora, sizeof glora, "%s.lora.gguf", dir);
    llmops_error err = {0};
    CHECK_OK(llmops_convert(dir, gguf, NULL, &err), err);
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    CHECK_OK(llmops_model_load(gguf, &mp, &m, &err), err);
    llmops_trainer_params tp;
    llmops_trainer_params_init(&tp);
    tp.lora_rank = 4;
    tp.lora_alpha = 8;
    tp.n_threads = 2;
    CHECK_OK(llmops_lora_targets_parse("all", &tp.lora_targets, &err), err);
    llmops_trainer *t;
    CHECK_OK(llmops_trainer_create(m, &tp, &t, &err), err);
    CHECK_EQ_INT(llmops_trainer_rope_neox(t), 0);
    size_t n = llmops_trainer_n_tensors(t), n_b = 0;
    for (size_t i = 0; i < n; i++) { /* B starts at zero: make it matter */
        llmops_train_tensor *x = llmops_trainer_tensor(t, i);
        size_t len = strlen(x->name);
        if (len > 7 && !strcmp(x->name + len - 7, ".lora_b")) {
            for (int64_t k = 0; k < x->rows * x->cols; k++) x->w[k] = 0.1f * urand();
            n_b++;
        }
    }
    CHECK_EQ_INT(n_b, 2 * 7);
    size_t V = (size_t)llmops_model_n_vocab(m);
    float *want = malloc(N_TOKS * V * sizeof(float));
    CHECK_OK(llmops_trainer_logits(t, k_toks, 1, (int)N_TOKS, want, &err), err);
    llmops_adapter_export_params ep;
    llmops_adapter_export_params_init(&ep);
    ep.arch = llmops_trainer_arch(t);
    ep.rope_neox = llmops_trainer_rope_neox(t);
    ep.rank = 4;
    ep.alpha = 8;
    ep.targets = tp.lora_targets;
    const llmops_train_tensor *ts = llmops_trainer_tensor(t, 0);
    CHECK_OK(llmops_adapter_export(&ep, ts, n, LLMOPS_ADAPTER_PEFT, peft, &err), err);
    CHECK_OK(llmops_adapter_export(&ep, ts, n, LLMOPS_ADAPTER_GGUF, glora, &err), err);
    llmops_trainer_free(t);
    llmops_model_free(m);
    {
        char cfg_path[1300], *cfg = NULL;
        snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", peft);
        CHECK_OK(llmops_file_read_all(cfg_path, 1 << 20, &cfg, NULL, &err), err);
        static const char *const mods[] = {"\"q_proj\"", "\"k_proj\"", "\"v_proj\"", "\"o_proj\"",
                                           "\"gate_proj\"", "\"up_proj\"", "\"down_proj\""};
        for (size_t i = 0; i < 7; i++) CHECK_MSG(strstr(cfg, mods[i]) != NULL, "target_modules lacks %s:\n%s", mods[i], cfg);
        llmops_free(cfg);
    }
    const char *pairs[2][2] = {{dir, peft}, {gguf, glora}};
    for (int k = 0; k < 2; k++) {
        size_t V2;
        const char *ads[1] = {pairs[k][1]};
        float *got = engine_logits(pairs[k][0], ads, NULL, 1, &V2, &err);
        CHECK_MSG(got != NULL, "%s", err.msg);
        CHECK_EQ_INT(V2, V);
        double e = rel_err(got, want, N_TOKS * V);
        CHECK_MSG(e < 1e-4, "%s: relative max error %.3g against the trainer", k ? "GGUF LoRA" : "PEFT", e);
        free(got);
    }
    free(want);
}

/* Every allocation of loading a GGUF LoRA, attaching and exporting an adapter may fail:
 * each failure is reported (or absorbed), nothing leaks, and the next try succeeds. */
TEST(adapter_allocation_failures) {
    if (!have_oracle()) SKIP("python3-torch missing (random models come from tests/oracle)");
    const char *dir = make_model("llama", 12);
    CHECK(dir != NULL);
    llmops_error err = {0};
    llmops_model_params mp;
    llmops_model_params_init(&mp);
    mp.load_tokenizer = 0;
    llmops_model *m;
    CHECK_OK(llmops_model_load(dir, &mp, &m, &err), err);
    llmops_context *ctx;
    CHECK_OK(llmops_context_create(m, NULL, &ctx, &err), err);
    factors f;
    random_factors(llmops_model_arch(m), 2, &f);
    llmops_adapter_export_params ep;
    llmops_adapter_export_params_init(&ep);
    ep.arch = llmops_model_arch(m);
    ep.rank = 2;
    char peft[1200], glora[1200];
    snprintf(peft, sizeof peft, "%s.peft", dir);
    snprintf(glora, sizeof glora, "%s.lora.gguf", dir);
    /* case 2 (a PEFT folder) is left out: libjansson 2.14's json_loadb dereferences NULL when an
     * allocation inside its lexer fails (a SEGV in the library, seen with ASan) */
    for (int what = 0; what < 4; what++) {
        if (what == 2) continue;
        long n;
        for (n = 0; n < 100000; n++) {
            long live = llmops_alloc_live();
            llmops_alloc_fail_nth(n);
            llmops_status st;
            llmops_adapter *ad = NULL;
            if (what == 0) st = llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_PEFT, peft, &err);
            else if (what == 1) st = llmops_adapter_export(&ep, f.t, f.n, LLMOPS_ADAPTER_GGUF, glora, &err);
            else {
                st = llmops_adapter_load(m, glora, &ad, &err);
                if (!st) st = llmops_context_set_adapters(ctx, &ad, NULL, 1, &err);
            }
            int fired = llmops_alloc_failure_fired();
            llmops_alloc_fail_nth(-1);
            if (ad) {
                llmops_context_set_adapters(ctx, NULL, NULL, 0, &err);
                llmops_adapter_free(ad);
            }
            CHECK_MSG(llmops_alloc_live() == live, "case %d, failure %ld: %ld allocations leaked", what, n,
                      llmops_alloc_live() - live);
            if (!fired) {
                CHECK_OK(st, err);
                break;
            }
            /* a failure may also be absorbed (the best-effort fsync of the folder), never crash or leak */
            CHECK_MSG(st == LLMOPS_OK || err.msg[0], "case %d: allocation %ld: an error without a message", what, n);
        }
        CHECK(n > 3);
    }
    factors_free(&f);
    llmops_context_free(ctx);
    llmops_model_free(m);
}
