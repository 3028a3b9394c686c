#include "formats/convert_names.h"

#include <stdio.h>
#include <string.h>

#define L "model.layers.%d."
static const conv_name k_llama[] = {
    {"model.embed_tokens.weight", "token_embd.weight", XF_NONE},
    {"model.norm.weight", "output_norm.weight", XF_NONE},
    {"lm_head.weight", "output.weight", XF_NONE},
    {L "input_layernorm.weight", "blk.%d.attn_norm.weight", XF_NONE},
    {L "self_attn.q_proj.weight", "blk.%d.attn_q.weight", XF_PERMUTE_Q},
    {L "self_attn.q_proj.bias", "blk.%d.attn_q.bias", XF_PERMUTE_Q},
    {L "self_attn.k_proj.weight", "blk.%d.attn_k.weight", XF_PERMUTE_K},
    {L "self_attn.k_proj.bias", "blk.%d.attn_k.bias", XF_PERMUTE_K},
    {L "self_attn.v_proj.weight", "blk.%d.attn_v.weight", XF_NONE},
    {L "self_attn.v_proj.bias", "blk.%d.attn_v.bias", XF_NONE},
    {L "self_attn.o_proj.weight", "blk.%d.attn_output.weight", XF_NONE},
    {L "self_attn.o_proj.bias", "blk.%d.attn_output.bias", XF_NONE},
    {L "post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {L "mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", XF_NONE},
    {L "mlp.gate_proj.bias", "blk.%d.ffn_gate.bias", XF_NONE},
    {L "mlp.up_proj.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {L "mlp.up_proj.bias", "blk.%d.ffn_up.bias", XF_NONE},
    {L "mlp.down_proj.weight", "blk.%d.ffn_down.weight", XF_NONE},
    {L "mlp.down_proj.bias", "blk.%d.ffn_down.bias", XF_NONE},
};

/* Qwen2 uses NeoX-style rotation in llama.cpp: q/k rows stay as HF has them. */
static const conv_name k_qwen2[] = {
    {"model.embed_tokens.weight", "token_embd.weight", XF_NONE},
    {"model.norm.weight", "output_norm.weight", XF_NONE},
    {"lm_head.weight", "output.weight", XF_NONE},
    {L "input_layernorm.weight", "blk.%d.attn_norm.weight", XF_NONE},
    {L "self_attn.q_proj.weight", "blk.%d.attn_q.weight", XF_NONE},
    {L "self_attn.q_proj.bias", "blk.%d.attn_q.bias", XF_NONE},
    {L "self_attn.k_proj.weight", "blk.%d.attn_k.weight", XF_NONE},
    {L "self_attn.k_proj.bias", "blk.%d.attn_k.bias", XF_NONE},
    {L "self_attn.v_proj.weight", "blk.%d.attn_v.weight", XF_NONE},
    {L "self_attn.v_proj.bias", "blk.%d.attn_v.bias", XF_NONE},
    {L "self_attn.o_proj.weight", "blk.%d.attn_output.weight", XF_NONE},
    {L "post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {L "mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", XF_NONE},
    {L "mlp.up_proj.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {L "mlp.down_proj.weight", "blk.%d.ffn_down.weight", XF_NONE},
};
#undef L

#define H "h.%d."
static const conv_name k_gpt2[] = {
    {"wte.weight", "token_embd.weight", XF_NONE},
    {"wpe.weight", "position_embd.weight", XF_NONE},
    {H "ln_1.weight", "blk.%d.attn_norm.weight", XF_NONE},
    {H "ln_1.bias", "blk.%d.attn_norm.bias", XF_NONE},
    {H "attn.c_attn.weight", "blk.%d.attn_qkv.weight", XF_TRANSPOSE},
    {H "attn.c_attn.bias", "blk.%d.attn_qkv.bias", XF_NONE},
    {H "attn.c_proj.weight", "blk.%d.attn_output.weight", XF_TRANSPOSE},
    {H "attn.c_proj.bias", "blk.%d.attn_output.bias", XF_NONE},
    {H "ln_2.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {H "ln_2.bias", "blk.%d.ffn_norm.bias", XF_NONE},
    {H "mlp.c_fc.weight", "blk.%d.ffn_up.weight", XF_TRANSPOSE},
    {H "mlp.c_fc.bias", "blk.%d.ffn_up.bias", XF_NONE},
    {H "mlp.c_proj.weight", "blk.%d.ffn_down.weight", XF_TRANSPOSE},
    {H "mlp.c_proj.bias", "blk.%d.ffn_down.bias", XF_NONE},
    {"ln_f.weight", "output_norm.weight", XF_NONE},
    {"ln_f.bias", "output_norm.bias", XF_NONE},
    {"lm_head.weight", "output.weight", XF_NONE},
};
#undef H

#define E "encoder.layer.%d."
static const conv_name k_bert[] = {
    {"embeddings.word_embeddings.weight", "token_embd.weight", XF_NONE},
    {"embeddings.token_type_embeddings.weight", "token_types.weight", XF_NONE},
    {"embeddings.position_embeddings.weight", "position_embd.weight", XF_NONE},
    {"embeddings.LayerNorm.weight", "token_embd_norm.weight", XF_NONE},
    {"embeddings.LayerNorm.bias", "token_embd_norm.bias", XF_NONE},
    {E "attention.self.query.weight", "blk.%d.attn_q.weight", XF_NONE},
    {E "attention.self.query.bias", "blk.%d.attn_q.bias", XF_NONE},
    {E "attention.self.key.weight", "blk.%d.attn_k.weight", XF_NONE},
    {E "attention.self.key.bias", "blk.%d.attn_k.bias", XF_NONE},
    {E "attention.self.value.weight", "blk.%d.attn_v.weight", XF_NONE},
    {E "attention.self.value.bias", "blk.%d.attn_v.bias", XF_NONE},
    {E "attention.output.dense.weight", "blk.%d.attn_output.weight", XF_NONE},
    {E "attention.output.dense.bias", "blk.%d.attn_output.bias", XF_NONE},
    {E "attention.output.LayerNorm.weight", "blk.%d.attn_output_norm.weight", XF_NONE},
    {E "attention.output.LayerNorm.bias", "blk.%d.attn_output_norm.bias", XF_NONE},
    {E "intermediate.dense.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {E "intermediate.dense.bias", "blk.%d.ffn_up.bias", XF_NONE},
    {E "output.dense.weight", "blk.%d.ffn_down.weight", XF_NONE},
    {E "output.dense.bias", "blk.%d.ffn_down.bias", XF_NONE},
    {E "output.LayerNorm.weight", "blk.%d.layer_output_norm.weight", XF_NONE},
    {E "output.LayerNorm.bias", "blk.%d.layer_output_norm.bias", XF_NONE},
};
#undef E

const conv_name *conv_names(llmops_arch_family f, size_t *n) {
    switch (f) {
    case LLMOPS_ARCH_LLAMA:
    case LLMOPS_ARCH_MISTRAL: *n = sizeof k_llama / sizeof k_llama[0]; return k_llama;
    case LLMOPS_ARCH_QWEN2: *n = sizeof k_qwen2 / sizeof k_qwen2[0]; return k_qwen2;
    case LLMOPS_ARCH_GPT2: *n = sizeof k_gpt2 / sizeof k_gpt2[0]; return k_gpt2;
    case LLMOPS_ARCH_BERT: *n = sizeof k_bert / sizeof k_bert[0]; return k_bert;
    default: *n = 0; return NULL;
    }
}

int conv_match(const char *pattern, const char *name, int *layer) {
    const char *pd = strstr(pattern, "%d");
    if (!pd) {
        *layer = -1;
        return strcmp(pattern, name) == 0;
    }
    size_t pre = (size_t)(pd - pattern);
    if (strncmp(pattern, name, pre) != 0) return 0;
    const char *p = name + pre;
    if (*p < '0' || *p > '9') return 0;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return 0;
        p++;
    }
    if (strcmp(p, pd + 2) != 0) return 0;
    *layer = (int)v;
    return 1;
}

void conv_format(const char *pattern, int layer, char *out, size_t cap) {
    const char *pd = strstr(pattern, "%d");
    if (!pd) {
        snprintf(out, cap, "%s", pattern);
        return;
    }
    snprintf(out, cap, "%.*s%d%s", (int)(pd - pattern), pattern, layer, pd + 2);
}

int conv_hf_ignored(const char *name) {
    static const char *const suffixes[] = {".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq", "position_ids"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t m = strlen(suffixes[i]);
        if (n >= m && strcmp(name + n - m, suffixes[i]) == 0) return 1;
    }
    return strncmp(name, "pooler.", 7) == 0 || strncmp(name, "cls.", 4) == 0;
}
