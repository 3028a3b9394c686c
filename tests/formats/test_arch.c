/*
 * Hugging Face config.json → architecture descriptor.
 *
 * The configs below copy the field sets of the published config.json files of
 * real checkpoints on the Hugging Face hub (values as published; the machines
 * reach no hub, so they are written out here). The expected descriptors are
 * worked out by hand from those values and from what transformers does with
 * them (its *Config defaults, e.g. rope_theta 10000, tie_word_embeddings
 * False for Llama/Mistral/Qwen2 and True for GPT-2/BERT, GPT-2's n_inner =
 * 4·n_embd when null).
 */
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/arch.h"

/* meta-llama/Llama-2-7b-hf */
static const char k_llama2_7b[] =
    "{\n"
    "  \"_name_or_path\": \"meta-llama/Llama-2-7b-hf\",\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 11008,\n"
    "  \"max_position_embeddings\": 4096,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 32,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"float16\",\n"
    "  \"transformers_version\": \"4.31.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n"
    "}\n";

/* meta-llama/Llama-3.1-8B-Instruct (the base model has eos 128001 alone) */
static const char k_llama31_8b[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": [128001, 128008, 128009],\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 14336,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 8.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.43.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

/* mistralai/Mistral-7B-v0.1 */
static const char k_mistral_7b[] =
    "{\n"
    "  \"architectures\": [\"MistralForCausalLM\"],\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 14336,\n"
    "  \"max_position_embeddings\": 32768,\n"
    "  \"model_type\": \"mistral\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"sliding_window\": 4096,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.34.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n"
    "}\n";

/* Qwen/Qwen2-0.5B */
static const char k_qwen2_05b[] =
    "{\n"
    "  \"architectures\": [\"Qwen2ForCausalLM\"],\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151643,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 896,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 4864,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"max_window_layers\": 24,\n"
    "  \"model_type\": \"qwen2\",\n"
    "  \"num_attention_heads\": 14,\n"
    "  \"num_hidden_layers\": 24,\n"
    "  \"num_key_value_heads\": 2,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"sliding_window\": 131072,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.40.1\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 151936\n"
    "}\n";

/* TinyLlama/TinyLlama-1.1B-Chat-v1.0 */
static const char k_tinyllama[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 5632,\n"
    "  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 22,\n"
    "  \"num_key_value_heads\": 4,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.35.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n"
    "}\n";

/* HuggingFaceTB/SmolLM-135M */
static const char k_smollm_135m[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 0,\n"
    "  \"eos_token_id\": 0,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 576,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 1536,\n"
    "  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 9,\n"
    "  \"num_hidden_layers\": 30,\n"
    "  \"num_key_value_heads\": 3,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": \"4.40.1\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 49152\n"
    "}\n";

/* openai-community/gpt2, with the "n_inner": null that configs saved by
 * transformers carry (GPT2Config's default; the hub file leaves it out) */
static const char k_gpt2[] =
    "{\n"
    "  \"activation_function\": \"gelu_new\",\n"
    "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
    "  \"attn_pdrop\": 0.1,\n"
    "  \"bos_token_id\": 50256,\n"
    "  \"embd_pdrop\": 0.1,\n"
    "  \"eos_token_id\": 50256,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"layer_norm_epsilon\": 1e-05,\n"
    "  \"model_type\": \"gpt2\",\n"
    "  \"n_ctx\": 1024,\n"
    "  \"n_embd\": 768,\n"
    "  \"n_head\": 12,\n"
    "  \"n_inner\": null,\n"
    "  \"n_layer\": 12,\n"
    "  \"n_positions\": 1024,\n"
    "  \"resid_pdrop\": 0.1,\n"
    "  \"summary_activation\": null,\n"
    "  \"summary_first_dropout\": 0.1,\n"
    "  \"summary_proj_to_labels\": true,\n"
    "  \"summary_type\": \"cls_index\",\n"
    "  \"summary_use_proj\": true,\n"
    "  \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}},\n"
    "  \"vocab_size\": 50257\n"
    "}\n";

/* google-bert/bert-base-uncased */
static const char k_bert_base[] =
    "{\n"
    "  \"architectures\": [\"BertForMaskedLM\"],\n"
    "  \"attention_probs_dropout_prob\": 0.1,\n"
    "  \"gradient_checkpointing\": false,\n"
    "  \"hidden_act\": \"gelu\",\n"
    "  \"hidden_dropout_prob\": 0.1,\n"
    "  \"hidden_size\": 768,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 3072,\n"
    "  \"layer_norm_eps\": 1e-12,\n"
    "  \"max_position_embeddings\": 512,\n"
    "  \"model_type\": \"bert\",\n"
    "  \"num_attention_heads\": 12,\n"
    "  \"num_hidden_layers\": 12,\n"
    "  \"pad_token_id\": 0,\n"
    "  \"position_embedding_type\": \"absolute\",\n"
    "  \"transformers_version\": \"4.6.0.dev0\",\n"
    "  \"type_vocab_size\": 2,\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 30522\n"
    "}\n";

/* sentence-transformers/all-MiniLM-L6-v2 */
static const char k_minilm[] =
    "{\n"
    "  \"_name_or_path\": \"nreimers/MiniLM-L6-H384-uncased\",\n"
    "  \"architectures\": [\"BertModel\"],\n"
    "  \"attention_probs_dropout_prob\": 0.1,\n"
    "  \"gradient_checkpointing\": false,\n"
    "  \"hidden_act\": \"gelu\",\n"
    "  \"hidden_dropout_prob\": 0.1,\n"
    "  \"hidden_size\": 384,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 1536,\n"
    "  \"layer_norm_eps\": 1e-12,\n"
    "  \"max_position_embeddings\": 512,\n"
    "  \"model_type\": \"bert\",\n"
    "  \"num_attention_heads\": 12,\n"
    "  \"num_hidden_layers\": 6,\n"
    "  \"pad_token_id\": 0,\n"
    "  \"position_embedding_type\": \"absolute\",\n"
    "  \"transformers_version\": \"4.8.2\",\n"
    "  \"type_vocab_size\": 2,\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 30522\n"
    "}\n";

/* ---- helpers ------------------------------------------------------------------------ */

static llmops_status parse(const char *json, llmops_arch *a, llmops_error *err) {
    return llmops_arch_from_hf_config(json, strlen(json), "config.json", a, err);
}

/* `base` with the first occurrence of `from` replaced by `to`, in one of four
 * rotating static buffers (so edits can be chained). */
static const char *edit(const char *base, const char *from, const char *to) {
    static char bufs[4][8192];
    static int next;
    char *buf = bufs[next++ % 4];
    const char *at = strstr(base, from);
    if (!at) {
        fprintf(stderr, "    edit: \"%s\" not in the config\n", from);
        abort();
    }
    snprintf(buf, sizeof bufs[0], "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
    return buf;
}

/* Every field of the descriptor, in one table per model. */
typedef struct {
    llmops_arch_family family;
    const char *model_type, *architecture;
    int64_t vocab, hidden, layers, heads, kv_heads, head_dim, ffn, max_pos;
    double eps;
    llmops_norm_kind norm;
    llmops_act_kind act;
    int gated;
    llmops_pos_kind pos;
    double theta;
    int64_t rope_dim;
    llmops_rope_scaling scaling;
    double factor, low_ff, high_ff;
    int64_t orig_max_pos;
    int qkv_bias, attn_out_bias, mlp_bias, norm_bias, tie, fused_qkv;
    int64_t sliding_window, type_vocab;
    int causal;
    int64_t bos, eos, pad;
} expect;

#define CHECK_DBL(a, b)                                                                      \
    CHECK_MSG((a) == (b), "%s == %s: %.17g != %.17g", #a, #b, (double)(a), (double)(b))

static void check_arch(const llmops_arch *a, const expect *e) {
    CHECK_EQ_INT(a->family, e->family);
    CHECK_EQ_STR(a->hf_model_type, e->model_type);
    CHECK_EQ_STR(a->hf_architecture, e->architecture);
    CHECK_EQ_INT(a->vocab_size, e->vocab);
    CHECK_EQ_INT(a->hidden_size, e->hidden);
    CHECK_EQ_INT(a->n_layers, e->layers);
    CHECK_EQ_INT(a->n_heads, e->heads);
    CHECK_EQ_INT(a->n_kv_heads, e->kv_heads);
    CHECK_EQ_INT(a->head_dim, e->head_dim);
    CHECK_EQ_INT(a->ffn_size, e->ffn);
    CHECK_EQ_INT(a->max_positions, e->max_pos);
    CHECK_DBL(a->norm_eps, e->eps);
    CHECK_EQ_INT(a->norm, e->norm);
    CHECK_EQ_INT(a->act, e->act);
    CHECK_EQ_INT(a->gated_ffn, e->gated);
    CHECK_EQ_INT(a->pos, e->pos);
    CHECK_DBL(a->rope_theta, e->theta);
    CHECK_EQ_INT(a->rope_dim, e->rope_dim);
    CHECK_EQ_INT(a->rope_scaling, e->scaling);
    CHECK_DBL(a->rope_factor, e->factor);
    CHECK_DBL(a->rope_low_freq_factor, e->low_ff);
    CHECK_DBL(a->rope_high_freq_factor, e->high_ff);
    CHECK_EQ_INT(a->rope_original_max_positions, e->orig_max_pos);
    CHECK_EQ_INT(a->qkv_bias, e->qkv_bias);
    CHECK_EQ_INT(a->attn_out_bias, e->attn_out_bias);
    CHECK_EQ_INT(a->mlp_bias, e->mlp_bias);
    CHECK_EQ_INT(a->norm_bias, e->norm_bias);
    CHECK_EQ_INT(a->tie_embeddings, e->tie);
    CHECK_EQ_INT(a->fused_qkv, e->fused_qkv);
    CHECK_EQ_INT(a->sliding_window, e->sliding_window);
    CHECK_EQ_INT(a->type_vocab_size, e->type_vocab);
    CHECK_EQ_INT(a->causal, e->causal);
    CHECK_EQ_INT(a->bos_token_id, e->bos);
    CHECK_EQ_INT(a->eos_token_id, e->eos);
    CHECK_EQ_INT(a->pad_token_id, e->pad);
}

/* Runs check_arch and returns from the calling test if it failed. */
#define CHECK_ARCH(a, e)                                                                     \
    do {                                                                                     \
        int before_ = test_failed();                                                         \
        check_arch((a), (e));                                                                \
        if (!before_ && test_failed()) return;                                               \
    } while (0)

/* A Llama-family decoder: RMSNorm, SwiGLU, RoPE over the whole head, no biases. */
static expect llama_expect(void) {
    expect e = {0};
    e.family = LLMOPS_ARCH_LLAMA;
    e.model_type = "llama";
    e.architecture = "LlamaForCausalLM";
    e.norm = LLMOPS_NORM_RMS;
    e.act = LLMOPS_ACT_SILU;
    e.gated = 1;
    e.pos = LLMOPS_POS_ROPE;
    e.theta = 10000.0;
    e.scaling = LLMOPS_ROPE_SCALING_NONE;
    e.factor = 1.0;
    e.causal = 1;
    e.pad = -1;
    return e;
}

/* ---- the real configs ------------------------------------------------------------------ */

TEST(arch_llama2_7b) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_llama2_7b, &a, &err), err);
    expect e = llama_expect();
    e.vocab = 32000, e.hidden = 4096, e.layers = 32, e.heads = 32, e.kv_heads = 32, e.head_dim = 128;
    e.ffn = 11008, e.max_pos = 4096, e.eps = 1e-5, e.rope_dim = 128, e.bos = 1, e.eos = 2;
    CHECK_ARCH(&a, &e);
    CHECK_EQ_STR(llmops_arch_family_name(a.family), "llama");
    CHECK_EQ_STR(llmops_arch_gguf_name(a.family), "llama");
    CHECK_OK(llmops_arch_validate(&a, &err), err);
}

TEST(arch_llama31_8b_llama3_rope_and_eos_list) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_llama31_8b, &a, &err), err);
    expect e = llama_expect();
    e.vocab = 128256, e.hidden = 4096, e.layers = 32, e.heads = 32, e.kv_heads = 8, e.head_dim = 128;
    e.ffn = 14336, e.max_pos = 131072, e.eps = 1e-5, e.rope_dim = 128, e.theta = 500000.0;
    e.scaling = LLMOPS_ROPE_SCALING_LLAMA3, e.factor = 8.0, e.low_ff = 1.0, e.high_ff = 4.0;
    e.orig_max_pos = 8192;
    e.bos = 128000, e.eos = 128001; /* the first of the list */
    CHECK_ARCH(&a, &e);

    /* the llama3 factors are read, not assumed */
    const char *v = edit(k_llama31_8b, "\"factor\": 8.0", "\"factor\": 32.0");
    v = edit(v, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 2.5");
    v = edit(v, "\"low_freq_factor\": 1.0", "\"low_freq_factor\": 0.5");
    v = edit(v, "\"original_max_position_embeddings\": 8192", "\"original_max_position_embeddings\": 4096");
    CHECK_OK(parse(v, &a, &err), err);
    CHECK_DBL(a.rope_factor, 32.0);
    CHECK_DBL(a.rope_low_freq_factor, 0.5);
    CHECK_DBL(a.rope_high_freq_factor, 2.5);
    CHECK_EQ_INT(a.rope_original_max_positions, 4096);

    /* a plain eos id, and the older "type" spelling of rope_type */
    CHECK_OK(parse(edit(k_llama31_8b, "[128001, 128008, 128009]", "128009"), &a, &err), err);
    CHECK_EQ_INT(a.eos_token_id, 128009);
    CHECK_OK(parse(edit(k_llama31_8b, "\"rope_type\": \"llama3\"", "\"type\": \"llama3\""), &a, &err), err);
    CHECK_EQ_INT(a.rope_scaling, LLMOPS_ROPE_SCALING_LLAMA3);
}

TEST(arch_mistral_7b_sliding_window) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_mistral_7b, &a, &err), err);
    expect e = llama_expect();
    e.family = LLMOPS_ARCH_MISTRAL, e.model_type = "mistral", e.architecture = "MistralForCausalLM";
    e.vocab = 32000, e.hidden = 4096, e.layers = 32, e.heads = 32, e.kv_heads = 8, e.head_dim = 128;
    e.ffn = 14336, e.max_pos = 32768, e.eps = 1e-5, e.rope_dim = 128, e.sliding_window = 4096;
    e.bos = 1, e.eos = 2;
    CHECK_ARCH(&a, &e);
    CHECK_EQ_STR(llmops_arch_family_name(a.family), "mistral");
    CHECK_EQ_STR(llmops_arch_gguf_name(a.family), "llama"); /* llama.cpp runs dense Mistral as llama */
    /* Mistral-7B-v0.2 and later publish "sliding_window": null */
    CHECK_OK(parse(edit(k_mistral_7b, "\"sliding_window\": 4096", "\"sliding_window\": null"), &a, &err), err);
    CHECK_EQ_INT(a.sliding_window, 0);
}

TEST(arch_qwen2_05b) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_qwen2_05b, &a, &err), err);
    expect e = llama_expect();
    e.family = LLMOPS_ARCH_QWEN2, e.model_type = "qwen2", e.architecture = "Qwen2ForCausalLM";
    e.vocab = 151936, e.hidden = 896, e.layers = 24, e.heads = 14, e.kv_heads = 2, e.head_dim = 64;
    e.ffn = 4864, e.max_pos = 131072, e.eps = 1e-6, e.rope_dim = 64, e.theta = 1000000.0;
    e.qkv_bias = 1;         /* Qwen2Attention: q/k/v Linear(bias=True), o_proj bias=False */
    e.tie = 1;              /* tie_word_embeddings true                                   */
    e.sliding_window = 0;   /* use_sliding_window false: the 131072 does not apply        */
    e.bos = 151643, e.eos = 151643;
    CHECK_ARCH(&a, &e);
    CHECK_EQ_STR(llmops_arch_gguf_name(a.family), "qwen2");
    /* switched on, the window is the configured one */
    CHECK_OK(parse(edit(k_qwen2_05b, "\"use_sliding_window\": false", "\"use_sliding_window\": true"), &a, &err),
             err);
    CHECK_EQ_INT(a.sliding_window, 131072);
}

TEST(arch_tinyllama_smollm) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_tinyllama, &a, &err), err);
    expect e = llama_expect();
    e.vocab = 32000, e.hidden = 2048, e.layers = 22, e.heads = 32, e.kv_heads = 4, e.head_dim = 64;
    e.ffn = 5632, e.max_pos = 2048, e.eps = 1e-5, e.rope_dim = 64, e.bos = 1, e.eos = 2;
    CHECK_ARCH(&a, &e);

    CHECK_OK(parse(k_smollm_135m, &a, &err), err);
    e = llama_expect();
    e.vocab = 49152, e.hidden = 576, e.layers = 30, e.heads = 9, e.kv_heads = 3, e.head_dim = 64;
    e.ffn = 1536, e.max_pos = 2048, e.eps = 1e-5, e.rope_dim = 64, e.tie = 1, e.bos = 0, e.eos = 0;
    CHECK_ARCH(&a, &e);
}

TEST(arch_gpt2) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_gpt2, &a, &err), err);
    expect e = {0};
    e.family = LLMOPS_ARCH_GPT2, e.model_type = "gpt2", e.architecture = "GPT2LMHeadModel";
    e.vocab = 50257, e.hidden = 768, e.layers = 12, e.heads = 12, e.kv_heads = 12, e.head_dim = 64;
    e.ffn = 3072; /* n_inner null → 4 × n_embd */
    e.max_pos = 1024, e.eps = 1e-5, e.norm = LLMOPS_NORM_LAYER, e.act = LLMOPS_ACT_GELU_TANH;
    e.pos = LLMOPS_POS_LEARNED, e.theta = 10000.0, e.rope_dim = 0, e.factor = 1.0;
    e.qkv_bias = e.attn_out_bias = e.mlp_bias = e.norm_bias = 1;
    e.tie = 1, e.fused_qkv = 1, e.causal = 1, e.bos = 50256, e.eos = 50256, e.pad = -1;
    CHECK_ARCH(&a, &e);
    /* the file on the hub has no n_inner at all; an explicit one wins */
    CHECK_OK(parse(edit(k_gpt2, "  \"n_inner\": null,\n", ""), &a, &err), err);
    CHECK_EQ_INT(a.ffn_size, 3072);
    CHECK_OK(parse(edit(k_gpt2, "\"n_inner\": null", "\"n_inner\": 1000"), &a, &err), err);
    CHECK_EQ_INT(a.ffn_size, 1000);
    CHECK_OK(parse(edit(k_gpt2, "\"gelu_new\"", "\"relu\""), &a, &err), err);
    CHECK_EQ_INT(a.act, LLMOPS_ACT_RELU);
    CHECK_OK(parse(edit(k_gpt2, "\"gelu_new\"", "\"gelu\""), &a, &err), err);
    CHECK_EQ_INT(a.act, LLMOPS_ACT_GELU);
}

TEST(arch_bert_base_and_minilm) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(parse(k_bert_base, &a, &err), err);
    expect e = {0};
    e.family = LLMOPS_ARCH_BERT, e.model_type = "bert", e.architecture = "BertForMaskedLM";
    e.vocab = 30522, e.hidden = 768, e.layers = 12, e.heads = 12, e.kv_heads = 12, e.head_dim = 64;
    e.ffn = 3072, e.max_pos = 512, e.eps = 1e-12, e.norm = LLMOPS_NORM_LAYER, e.act = LLMOPS_ACT_GELU;
    e.pos = LLMOPS_POS_LEARNED, e.theta = 10000.0, e.rope_dim = 0, e.factor = 1.0;
    e.qkv_bias = e.attn_out_bias = e.mlp_bias = e.norm_bias = 1;
    e.tie = 1; /* PretrainedConfig's default; the MLM decoder shares the word embeddings */
    e.type_vocab = 2, e.causal = 0, e.bos = -1, e.eos = -1, e.pad = 0;
    CHECK_ARCH(&a, &e);
    CHECK_EQ_STR(llmops_arch_family_name(a.family), "bert");

    CHECK_OK(parse(k_minilm, &a, &err), err);
    e.architecture = "BertModel";
    e.hidden = 384, e.layers = 6, e.head_dim = 32, e.ffn = 1536;
    CHECK_ARCH(&a, &e);

    /* relative position embeddings are another architecture */
    CHECK_ERR(parse(edit(k_minilm, "\"absolute\"", "\"relative_key\""), &a, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "relative_key");
}

TEST(arch_tiny_random_gpt2_file) {
    const char *path = test_asset("hf/tiny-random-gpt2/config.json");
    if (!path) SKIP("hf/tiny-random-gpt2/config.json is not among the assets");
    llmops_error err = {0};
    llmops_arch a;
    CHECK_OK(llmops_arch_from_hf_config_file(path, &a, &err), err);
    /* values as in the file: n_embd 32, n_head 4, n_layer 5, n_positions 512,
     * vocab 1000, n_inner null, gelu_new, ids 98. Its "hidden_act": "gelu",
     * "intermediate_size": 37 and "type_vocab_size": 16 are not GPT-2 fields
     * and must be ignored. */
    expect e = {0};
    e.family = LLMOPS_ARCH_GPT2, e.model_type = "gpt2", e.architecture = "GPT2LMHeadModel";
    e.vocab = 1000, e.hidden = 32, e.layers = 5, e.heads = 4, e.kv_heads = 4, e.head_dim = 8;
    e.ffn = 128, e.max_pos = 512, e.eps = 1e-5, e.norm = LLMOPS_NORM_LAYER, e.act = LLMOPS_ACT_GELU_TANH;
    e.pos = LLMOPS_POS_LEARNED, e.theta = 10000.0, e.rope_dim = 0, e.factor = 1.0;
    e.qkv_bias = e.attn_out_bias = e.mlp_bias = e.norm_bias = 1;
    e.tie = 1, e.fused_qkv = 1, e.causal = 1, e.bos = 98, e.eos = 98, e.pad = 98;
    CHECK_ARCH(&a, &e);

    CHECK_ERR(llmops_arch_from_hf_config_file(test_tmpfile("missing.json"), &a, &err), LLMOPS_ERR_IO, err,
              "missing.json");
}

/* ---- optional fields --------------------------------------------------------------------- */

TEST(arch_optional_fields) {
    llmops_error err = {0};
    llmops_arch a;
    /* an explicit head_dim (Gemma/Mistral-Nemo style) decouples it from hidden/heads */
    CHECK_OK(parse(edit(k_mistral_7b, "\"hidden_size\": 4096", "\"head_dim\": 160, \"hidden_size\": 4096"), &a, &err),
             err);
    CHECK_EQ_INT(a.head_dim, 160);
    CHECK_EQ_INT(a.rope_dim, 160);
    /* partial rotary */
    CHECK_OK(parse(edit(k_tinyllama, "\"pretraining_tp\": 1", "\"partial_rotary_factor\": 0.5"), &a, &err), err);
    CHECK_EQ_INT(a.rope_dim, 32);
    /* biases on */
    CHECK_OK(parse(edit(k_tinyllama, "\"attention_bias\": false", "\"attention_bias\": true, \"mlp_bias\": true"), &a,
                   &err),
             err);
    CHECK(a.qkv_bias && a.attn_out_bias && a.mlp_bias);
    /* integer-valued numbers written as floats, and integer theta */
    CHECK_OK(parse(edit(k_tinyllama, "\"hidden_size\": 2048", "\"hidden_size\": 2048.0"), &a, &err), err);
    CHECK_EQ_INT(a.hidden_size, 2048);
    CHECK_OK(parse(edit(k_tinyllama, "\"rope_theta\": 10000.0", "\"rope_theta\": 250000"), &a, &err), err);
    CHECK_DBL(a.rope_theta, 250000.0);
    /* no max_position_embeddings: transformers' LlamaConfig default 2048 */
    CHECK_OK(parse(edit(k_llama2_7b, "\"max_position_embeddings\": 4096,", ""), &a, &err), err);
    CHECK_EQ_INT(a.max_positions, 2048);
    /* no num_key_value_heads: multi-head attention */
    CHECK_OK(parse(edit(k_tinyllama, "\"num_key_value_heads\": 4,", ""), &a, &err), err);
    CHECK_EQ_INT(a.n_kv_heads, 32);
    /* other rope scalings */
    CHECK_OK(parse(edit(k_llama2_7b, "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}"),
                   &a, &err),
             err);
    CHECK_EQ_INT(a.rope_scaling, LLMOPS_ROPE_SCALING_LINEAR);
    CHECK_DBL(a.rope_factor, 4.0);
    CHECK_OK(parse(edit(k_llama2_7b, "\"rope_scaling\": null",
                        "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0, "
                        "\"original_max_position_embeddings\": 32768}"),
                   &a, &err),
             err);
    CHECK_EQ_INT(a.rope_scaling, LLMOPS_ROPE_SCALING_YARN);
    CHECK_EQ_INT(a.rope_original_max_positions, 32768);
    CHECK_OK(parse(edit(k_llama2_7b, "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}"),
                   &a, &err),
             err);
    CHECK_EQ_INT(a.rope_scaling, LLMOPS_ROPE_SCALING_DYNAMIC);
    CHECK_DBL(a.rope_factor, 2.0);
    /* pad id from the config; null ids stay unknown */
    CHECK_OK(parse(edit(k_llama2_7b, "\"bos_token_id\": 1", "\"bos_token_id\": null, \"pad_token_id\": 0"), &a, &err),
             err);
    CHECK_EQ_INT(a.bos_token_id, -1);
    CHECK_EQ_INT(a.pad_token_id, 0);
    /* the text need not be NUL-terminated: only len bytes are read */
    char *copy = malloc(sizeof k_llama2_7b + 8);
    CHECK(copy != NULL);
    memcpy(copy, k_llama2_7b, sizeof k_llama2_7b - 1);
    memcpy(copy + sizeof k_llama2_7b - 1, "garbage!", 8);
    llmops_status st = llmops_arch_from_hf_config(copy, sizeof k_llama2_7b - 1, "config.json", &a, &err);
    free(copy);
    CHECK_OK(st, err);
    CHECK_EQ_INT(a.vocab_size, 32000);
}

/* ---- errors -------------------------------------------------------------------------------- */

TEST(arch_errors_missing_and_wrong_types) {
    llmops_error err = {0};
    llmops_arch a;
    /* each required field, removed, is named */
    static const struct {
        const char *line, *name;
    } req[] = {{"  \"hidden_size\": 4096,\n", "hidden_size"},
               {"  \"intermediate_size\": 11008,\n", "intermediate_size"},
               {"  \"num_hidden_layers\": 32,\n", "num_hidden_layers"},
               {"  \"num_attention_heads\": 32,\n", "num_attention_heads"},
               {"  \"model_type\": \"llama\",\n", "model_type"},
               {"  \"vocab_size\": 32000\n", "vocab_size"}};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        const char *text = edit(k_llama2_7b, req[i].line, "");
        char fixed[8192];
        /* drop the comma that the removed last line leaves behind */
        snprintf(fixed, sizeof fixed, "%s", text);
        char *tail = strstr(fixed, "true,\n}");
        if (tail) memcpy(tail, "true \n}", 7);
        llmops_status st = parse(fixed, &a, &err);
        CHECK_MSG(st == LLMOPS_ERR_FORMAT, "without %s: %s (%s)", req[i].name, llmops_status_str(st), err.msg);
        CHECK_MSG(strstr(err.msg, req[i].name) && strstr(err.msg, "missing") && strstr(err.msg, "config.json"),
                  "without %s: \"%s\"", req[i].name, err.msg);
    }
    CHECK_ERR(parse(edit(k_gpt2, "\"n_head\": 12,", ""), &a, &err), LLMOPS_ERR_FORMAT, err, "\"n_head\" is missing");
    CHECK_ERR(parse(edit(k_bert_base, "\"intermediate_size\": 3072,", ""), &a, &err), LLMOPS_ERR_FORMAT, err,
              "\"intermediate_size\" is missing");

    /* wrong types name the field, the wanted type and the found one */
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_size\": 4096", "\"hidden_size\": \"4096\""), &a, &err),
              LLMOPS_ERR_FORMAT, err, "config.json: \"hidden_size\": expected an integer, got string");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"num_hidden_layers\": 32", "\"num_hidden_layers\": 32.5"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"num_hidden_layers\": expected an integer, got number");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_size\": 4096", "\"hidden_size\": 1e300"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"hidden_size\": expected an integer, got number");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_size\": 4096", "\"hidden_size\": -9.3e18"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"hidden_size\": expected an integer, got number");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": [1e-05]"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"rms_norm_eps\": expected a number, got array");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"tie_word_embeddings\": expected true or false, got integer");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"model_type\": \"llama\"", "\"model_type\": 7"), &a, &err), LLMOPS_ERR_FORMAT,
              err, "\"model_type\": expected a string, got integer");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_act\": \"silu\"", "\"hidden_act\": true"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"hidden_act\": expected a string, got boolean");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"eos_token_id\": 2", "\"eos_token_id\": \"</s>\""), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"eos_token_id\": expected a token id, got string");
    CHECK_ERR(parse(edit(k_llama31_8b, "[128001, 128008, 128009]", "[{}]"), &a, &err), LLMOPS_ERR_FORMAT, err,
              "\"eos_token_id\": expected a token id, got object");
    CHECK_ERR(parse(edit(k_qwen2_05b, "\"use_sliding_window\": false", "\"use_sliding_window\": \"no\""), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"use_sliding_window\": expected true or false, got string");
    CHECK_ERR(parse(edit(k_gpt2, "\"n_inner\": null", "\"n_inner\": \"3072\""), &a, &err), LLMOPS_ERR_FORMAT, err,
              "\"n_inner\": expected an integer, got string");
    /* a null required field is as good as missing: the value it leaves is rejected by name */
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_size\": 4096", "\"hidden_size\": null"), &a, &err), LLMOPS_ERR_FORMAT,
              err, "hidden_size");
}

TEST(arch_errors_unsupported) {
    llmops_error err = {0};
    llmops_arch a;
    CHECK_ERR(parse(edit(k_llama2_7b, "\"model_type\": \"llama\"", "\"model_type\": \"falcon\""), &a, &err),
              LLMOPS_ERR_UNSUPPORTED, err, "model_type 'falcon' is not supported");
    CHECK(strstr(err.msg, "config.json"));
    CHECK_ERR(parse(edit(k_llama2_7b, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"tanh\""), &a, &err),
              LLMOPS_ERR_UNSUPPORTED, err, "hidden_act");
    CHECK(strstr(err.msg, "tanh"));
    CHECK_ERR(parse(edit(k_gpt2, "\"gelu_new\"", "\"mish\""), &a, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "activation_function");

    /* rope_scaling: unknown type, no type, not an object, factor not positive */
    CHECK_ERR(parse(edit(k_llama31_8b, "\"rope_type\": \"llama3\"", "\"rope_type\": \"longrope\""), &a, &err),
              LLMOPS_ERR_UNSUPPORTED, err, "rope_scaling type 'longrope' is not supported");
    CHECK_ERR(parse(edit(k_llama31_8b, "\"rope_type\": \"llama3\"", "\"kind\": \"llama3\""), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"rope_scaling\" has no \"rope_type\"");
    CHECK_ERR(parse(edit(k_llama2_7b, "\"rope_scaling\": null", "\"rope_scaling\": \"linear\""), &a, &err),
              LLMOPS_ERR_FORMAT, err, "\"rope_scaling\": expected an object");
    CHECK_ERR(parse(edit(k_llama31_8b, "\"factor\": 8.0", "\"factor\": 0"), &a, &err), LLMOPS_ERR_FORMAT, err,
              "factor must be positive");
    CHECK_ERR(parse(edit(k_llama31_8b, "\"factor\": 8.0", "\"factor\": \"8\""), &a, &err), LLMOPS_ERR_FORMAT, err,
              "\"factor\": expected a number, got string");
    CHECK_ERR(parse(edit(k_llama31_8b, "\"rope_type\": \"llama3\"", "\"rope_type\": 3"), &a, &err), LLMOPS_ERR_FORMAT,
              err, "\"rope_type\": expected a string, got integer");
}

TEST(arch_errors_inconsistent_shapes) {
    llmops_error err = {0};
    llmops_arch a;
    /* 32 query heads cannot share 5 KV heads */
    CHECK_ERR(parse(edit(k_mistral_7b, "\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "num_heads 32 is not a multiple of num_kv_heads 5");
    CHECK(!strncmp(err.msg, "config.json: ", 13));
    /* GPT-2 and BERT split the width evenly over the heads */
    CHECK_ERR(parse(edit(k_gpt2, "\"n_embd\": 768", "\"n_embd\": 770"), &a, &err), LLMOPS_ERR_FORMAT, err,
              "hidden_size 770 is not num_heads 12");
    CHECK_ERR(parse(edit(k_bert_base, "\"num_attention_heads\": 12", "\"num_attention_heads\": 10"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "hidden_size 768 is not num_heads 10");
    /* more KV heads than heads, zero and negative sizes */
    CHECK_ERR(parse(edit(k_tinyllama, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 64"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "num_heads 32 is not a multiple of num_kv_heads 64");
    CHECK_ERR(parse(edit(k_tinyllama, "\"num_hidden_layers\": 22", "\"num_hidden_layers\": 0"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "num_layers must be between 1 and 2^31-1 (got 0)");
    CHECK_ERR(parse(edit(k_tinyllama, "\"vocab_size\": 32000", "\"vocab_size\": -5"), &a, &err), LLMOPS_ERR_FORMAT, err,
              "vocab_size must be between 1 and 2^31-1 (got -5)");
    CHECK_ERR(parse(edit(k_tinyllama, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 0"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "num_kv_heads must be between");
    CHECK_ERR(parse(edit(k_tinyllama, "\"hidden_size\": 2048", "\"hidden_size\": 4294967296"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "hidden_size must be between 1 and 2^31-1 (got 4294967296)");
    CHECK_ERR(parse(edit(k_tinyllama, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0"), &a, &err), LLMOPS_ERR_FORMAT,
              err, "norm epsilon must be positive");
    CHECK_ERR(parse(edit(k_tinyllama, "\"rope_theta\": 10000.0", "\"rope_theta\": -1"), &a, &err), LLMOPS_ERR_FORMAT,
              err, "rope_theta must be positive");
    /* partial rotary that leaves an odd number of dimensions (64 × 0.3 = 19) */
    CHECK_ERR(parse(edit(k_tinyllama, "\"pretraining_tp\": 1", "\"partial_rotary_factor\": 0.3"), &a, &err),
              LLMOPS_ERR_FORMAT, err, "rotary dimension 19 must be even");
}

TEST(arch_errors_bad_json) {
    llmops_error err = {0};
    llmops_arch a;
    /* line 3 is `  "hidden_size": 4096,,`: the second comma is column 23 */
    static const char bad[] = "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 4096,,\n  \"x\": 1\n}\n";
    CHECK_ERR(parse(bad, &a, &err), LLMOPS_ERR_FORMAT, err, "config.json:3:23:");
    /* an unterminated string on line 2 */
    CHECK_ERR(parse("{\n  \"model_type\": \"lla", &a, &err), LLMOPS_ERR_FORMAT, err, "config.json:2:");
    CHECK_ERR(parse("", &a, &err), LLMOPS_ERR_FORMAT, err, "config.json:");
    /* duplicate keys are rejected, not resolved silently */
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"model_type\": \"gpt2\"}", &a, &err), LLMOPS_ERR_FORMAT, err,
              "model_type");
    /* the top level must be an object */
    CHECK_ERR(parse("[1, 2, 3]", &a, &err), LLMOPS_ERR_FORMAT, err, "config.json: expected a JSON object, got array");
    /* jansson itself refuses a scalar at the top level, with a position */
    CHECK_ERR(parse("\"llama\"", &a, &err), LLMOPS_ERR_FORMAT, err, "config.json:1:");
    CHECK_ERR(parse("{}", &a, &err), LLMOPS_ERR_FORMAT, err, "required field \"model_type\" is missing");

    /* from a file, the path is the origin */
    const char *path = test_tmpfile("config.json");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fputs(bad, f);
    fclose(f);
    CHECK_ERR(llmops_arch_from_hf_config_file(path, &a, &err), LLMOPS_ERR_FORMAT, err, ":3:23:");
    CHECK(strstr(err.msg, path) == err.msg);
}

TEST(arch_init_defaults) {
    llmops_arch a;
    memset(&a, 0x5a, sizeof a);
    llmops_arch_init(&a);
    CHECK_EQ_INT(a.family, LLMOPS_ARCH_UNKNOWN);
    CHECK_EQ_INT(a.bos_token_id, -1);
    CHECK_EQ_INT(a.eos_token_id, -1);
    CHECK_EQ_INT(a.pad_token_id, -1);
    CHECK_DBL(a.rope_theta, 10000.0);
    CHECK_DBL(a.norm_eps, 1e-5);
    CHECK_EQ_STR(a.hf_model_type, "");
    CHECK_EQ_STR(llmops_arch_family_name(LLMOPS_ARCH_UNKNOWN), "unknown");
    llmops_error err = {0};
    CHECK(llmops_arch_validate(&a, &err) == LLMOPS_ERR_FORMAT); /* all sizes zero */
}
