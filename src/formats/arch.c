#include "llmops/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"

void llmops_arch_init(llmops_arch *a) {
    memset(a, 0, sizeof *a);
    a->norm_eps = 1e-5;
    a->rope_theta = 10000.0;
    a->rope_factor = 1.0;
    a->causal = 1;
    a->bos_token_id = a->eos_token_id = a->pad_token_id = -1;
}

const char *llmops_arch_family_name(llmops_arch_family f) {
    switch (f) {
    case LLMOPS_ARCH_LLAMA: return "llama";
    case LLMOPS_ARCH_MISTRAL: return "mistral";
    case LLMOPS_ARCH_QWEN2: return "qwen2";
    case LLMOPS_ARCH_GPT2: return "gpt2";
    case LLMOPS_ARCH_BERT: return "bert";
    default: return "unknown";
    }
}

const char *llmops_arch_gguf_name(llmops_arch_family f) {
    /* llama.cpp runs Mistral (dense) as "llama" */
    return f == LLMOPS_ARCH_MISTRAL ? "llama" : llmops_arch_family_name(f);
}

static llmops_status parse_act(const char *s, llmops_act_kind *out, const char *origin, const char *key,
                               llmops_error *err) {
    if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = LLMOPS_ACT_SILU;
    else if (!strcmp(s, "gelu")) *out = LLMOPS_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast") ||
             !strcmp(s, "gelu_python_tanh"))
        *out = LLMOPS_ACT_GELU_TANH;
    else if (!strcmp(s, "relu")) *out = LLMOPS_ACT_RELU;
    else
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: \"%s\": unsupported activation '%s'", origin, key, s);
    return LLMOPS_OK;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        llmops_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                       \
    } while (0)

static llmops_status require_int(const json_t *o, const char *key, int64_t *out, const char *origin,
                                 llmops_error *err) {
    if (!json_object_get(o, key))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: required field \"%s\" is missing", origin, key);
    return llmops_json_opt_int(o, key, out, origin, err);
}

/* Token ids may be an integer or a list (several EOS ids in Llama 3); take the first. */
static llmops_status token_id(const json_t *o, const char *key, int64_t *out, const char *origin, llmops_error *err) {
    json_t *v = json_object_get(o, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return LLMOPS_OK;
    if (!json_is_integer(v))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"%s\": expected a token id, got %s", origin, key,
                                llmops_json_type_name(v));
    *out = json_integer_value(v);
    return LLMOPS_OK;
}

static llmops_status rope_scaling(const json_t *o, llmops_arch *a, const char *origin, llmops_error *err) {
    json_t *rs = json_object_get(o, "rope_scaling");
    if (!rs || json_is_null(rs)) return LLMOPS_OK;
    if (!json_is_object(rs))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"rope_scaling\": expected an object", origin);
    const char *type = NULL;
    TRY(llmops_json_opt_str(rs, "rope_type", &type, origin, err));
    if (!type) TRY(llmops_json_opt_str(rs, "type", &type, origin, err));
    if (!type)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: \"rope_scaling\" has no \"rope_type\"", origin);
    TRY(llmops_json_opt_num(rs, "factor", &a->rope_factor, origin, err));
    if (!strcmp(type, "linear")) a->rope_scaling = LLMOPS_ROPE_SCALING_LINEAR;
    else if (!strcmp(type, "llama3")) {
        a->rope_scaling = LLMOPS_ROPE_SCALING_LLAMA3;
        a->rope_low_freq_factor = 1.0;
        a->rope_high_freq_factor = 4.0;
        a->rope_original_max_positions = 8192;
        TRY(llmops_json_opt_num(rs, "low_freq_factor", &a->rope_low_freq_factor, origin, err));
        TRY(llmops_json_opt_num(rs, "high_freq_factor", &a->rope_high_freq_factor, origin, err));
        TRY(llmops_json_opt_int(rs, "original_max_position_embeddings", &a->rope_original_max_positions, origin, err));
    } else if (!strcmp(type, "yarn")) {
        a->rope_scaling = LLMOPS_ROPE_SCALING_YARN;
        TRY(llmops_json_opt_int(rs, "original_max_position_embeddings", &a->rope_original_max_positions, origin, err));
    } else if (!strcmp(type, "dynamic")) {
        a->rope_scaling = LLMOPS_ROPE_SCALING_DYNAMIC;
    } else if (!strcmp(type, "default")) {
        a->rope_scaling = LLMOPS_ROPE_SCALING_NONE;
    } else {
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported", origin, type);
    }
    if (!(a->rope_factor > 0))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: rope_scaling.factor must be positive", origin);
    return LLMOPS_OK;
}

/* Llama, Mistral, Qwen2: RMSNorm, RoPE, SwiGLU, GQA. */
static llmops_status llama_like(const json_t *o, llmops_arch *a, const char *origin, llmops_error *err) {
    a->norm = LLMOPS_NORM_RMS;
    a->pos = LLMOPS_POS_ROPE;
    a->gated_ffn = 1;
    a->act = LLMOPS_ACT_SILU;
    a->norm_eps = 1e-6;
    TRY(require_int(o, "hidden_size", &a->hidden_size, origin, err));
    TRY(require_int(o, "intermediate_size", &a->ffn_size, origin, err));
    TRY(require_int(o, "num_hidden_layers", &a->n_layers, origin, err));
    TRY(require_int(o, "num_attention_heads", &a->n_heads, origin, err));
    TRY(require_int(o, "vocab_size", &a->vocab_size, origin, err));
    a->n_kv_heads = a->n_heads;
    TRY(llmops_json_opt_int(o, "num_key_value_heads", &a->n_kv_heads, origin, err));
    TRY(llmops_json_opt_num(o, "rms_norm_eps", &a->norm_eps, origin, err));
    TRY(llmops_json_opt_num(o, "rope_theta", &a->rope_theta, origin, err));
    a->max_positions = 2048;
    TRY(llmops_json_opt_int(o, "max_position_embeddings", &a->max_positions, origin, err));
    const char *act = NULL;
    TRY(llmops_json_opt_str(o, "hidden_act", &act, origin, err));
    if (act) TRY(parse_act(act, &a->act, origin, "hidden_act", err));
    TRY(llmops_json_opt_bool(o, "attention_bias", &a->qkv_bias, origin, err));
    a->attn_out_bias = a->qkv_bias;
    TRY(llmops_json_opt_bool(o, "mlp_bias", &a->mlp_bias, origin, err));
    TRY(rope_scaling(o, a, origin, err));
    if (a->n_heads > 0) a->head_dim = a->hidden_size / a->n_heads;
    TRY(llmops_json_opt_int(o, "head_dim", &a->head_dim, origin, err));
    json_t *sw = json_object_get(o, "sliding_window");
    if (json_is_integer(sw)) a->sliding_window = json_integer_value(sw);
    return LLMOPS_OK;
}

static llmops_status gpt2(const json_t *o, llmops_arch *a, const char *origin, llmops_error *err) {
    a->norm = LLMOPS_NORM_LAYER;
    a->norm_bias = 1;
    a->pos = LLMOPS_POS_LEARNED;
    a->act = LLMOPS_ACT_GELU_TANH;
    a->qkv_bias = a->attn_out_bias = a->mlp_bias = 1;
    a->fused_qkv = 1;
    a->tie_embeddings = 1;
    TRY(require_int(o, "n_embd", &a->hidden_size, origin, err));
    TRY(require_int(o, "n_layer", &a->n_layers, origin, err));
    TRY(require_int(o, "n_head", &a->n_heads, origin, err));
    TRY(require_int(o, "vocab_size", &a->vocab_size, origin, err));
    a->max_positions = 1024;
    TRY(llmops_json_opt_int(o, "n_positions", &a->max_positions, origin, err));
    a->ffn_size = a->hidden_size > 0 && a->hidden_size <= INT64_MAX / 4 ? 4 * a->hidden_size : 0; /* no overflow */
    TRY(llmops_json_opt_int(o, "n_inner", &a->ffn_size, origin, err));
    TRY(llmops_json_opt_num(o, "layer_norm_epsilon", &a->norm_eps, origin, err));
    const char *act = NULL;
    TRY(llmops_json_opt_str(o, "activation_function", &act, origin, err));
    if (act) TRY(parse_act(act, &a->act, origin, "activation_function", err));
    a->n_kv_heads = a->n_heads;
    if (a->n_heads > 0) a->head_dim = a->hidden_size / a->n_heads;
    a->bos_token_id = a->eos_token_id = 50256;
    return LLMOPS_OK;
}

static llmops_status bert(const json_t *o, llmops_arch *a, const char *origin, llmops_error *err) {
    a->norm = LLMOPS_NORM_LAYER;
    a->norm_bias = 1;
    a->pos = LLMOPS_POS_LEARNED;
    a->act = LLMOPS_ACT_GELU;
    a->qkv_bias = a->attn_out_bias = a->mlp_bias = 1;
    a->causal = 0;
    a->norm_eps = 1e-12;
    TRY(require_int(o, "hidden_size", &a->hidden_size, origin, err));
    TRY(require_int(o, "intermediate_size", &a->ffn_size, origin, err));
    TRY(require_int(o, "num_hidden_layers", &a->n_layers, origin, err));
    TRY(require_int(o, "num_attention_heads", &a->n_heads, origin, err));
    TRY(require_int(o, "vocab_size", &a->vocab_size, origin, err));
    a->max_positions = 512;
    TRY(llmops_json_opt_int(o, "max_position_embeddings", &a->max_positions, origin, err));
    a->type_vocab_size = 2;
    TRY(llmops_json_opt_int(o, "type_vocab_size", &a->type_vocab_size, origin, err));
    TRY(llmops_json_opt_num(o, "layer_norm_eps", &a->norm_eps, origin, err));
    const char *act = NULL;
    TRY(llmops_json_opt_str(o, "hidden_act", &act, origin, err));
    if (act) TRY(parse_act(act, &a->act, origin, "hidden_act", err));
    const char *pet = NULL;
    TRY(llmops_json_opt_str(o, "position_embedding_type", &pet, origin, err));
    if (pet && strcmp(pet, "absolute"))
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "%s: position_embedding_type '%s' is not supported", origin,
                                pet);
    a->n_kv_heads = a->n_heads;
    if (a->n_heads > 0) a->head_dim = a->hidden_size / a->n_heads;
    return LLMOPS_OK;
}

static llmops_status from_json(const json_t *o, const char *origin, llmops_arch *a, llmops_error *err) {
    llmops_arch_init(a);
    if (!json_is_object(o))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: expected a JSON object, got %s", origin,
                                llmops_json_type_name(o));
    const char *mt = NULL;
    TRY(llmops_json_opt_str(o, "model_type", &mt, origin, err));
    if (!mt) return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: required field \"model_type\" is missing", origin);
    snprintf(a->hf_model_type, sizeof a->hf_model_type, "%s", mt);
    json_t *archs = json_object_get(o, "architectures");
    if (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
        snprintf(a->hf_architecture, sizeof a->hf_architecture, "%s", json_string_value(json_array_get(archs, 0)));
    llmops_status st;
    if (!strcmp(mt, "llama")) {
        a->family = LLMOPS_ARCH_LLAMA;
        st = llama_like(o, a, origin, err);
    } else if (!strcmp(mt, "mistral")) {
        a->family = LLMOPS_ARCH_MISTRAL;
        st = llama_like(o, a, origin, err);
    } else if (!strcmp(mt, "qwen2")) {
        a->family = LLMOPS_ARCH_QWEN2;
        st = llama_like(o, a, origin, err);
        a->qkv_bias = 1;      /* Qwen2 always has q/k/v biases and none on o_proj */
        a->attn_out_bias = 0;
        int use_sw = 0;
        if (!st) st = llmops_json_opt_bool(o, "use_sliding_window", &use_sw, origin, err);
        if (!use_sw) a->sliding_window = 0;
    } else if (!strcmp(mt, "gpt2")) {
        a->family = LLMOPS_ARCH_GPT2;
        st = gpt2(o, a, origin, err);
    } else if (!strcmp(mt, "bert")) {
        a->family = LLMOPS_ARCH_BERT;
        st = bert(o, a, origin, err);
    } else {
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "%s: model_type '%s' is not supported (llama, mistral, qwen2, gpt2, bert)", origin, mt);
    }
    if (st) return st;
    if (a->family != LLMOPS_ARCH_GPT2) {
        a->tie_embeddings = a->family == LLMOPS_ARCH_BERT ? 1 : 0;
        TRY(llmops_json_opt_bool(o, "tie_word_embeddings", &a->tie_embeddings, origin, err));
    } else {
        TRY(llmops_json_opt_bool(o, "tie_word_embeddings", &a->tie_embeddings, origin, err));
    }
    TRY(token_id(o, "bos_token_id", &a->bos_token_id, origin, err));
    TRY(token_id(o, "eos_token_id", &a->eos_token_id, origin, err));
    TRY(token_id(o, "pad_token_id", &a->pad_token_id, origin, err));
    a->rope_dim = a->pos == LLMOPS_POS_ROPE ? a->head_dim : 0;
    double prf = 1.0;
    TRY(llmops_json_opt_num(o, "partial_rotary_factor", &prf, origin, err));
    if (a->pos == LLMOPS_POS_ROPE && prf != 1.0) {
        double r = (double)a->head_dim * prf; /* the cast is UB outside int64: such a factor is invalid */
        a->rope_dim = r > -0x1p62 && r < 0x1p62 ? (int64_t)r : -1;
    }
    st = llmops_arch_validate(a, err);
    if (st) return llmops_error_prefix(err, "%s: ", origin);
    return LLMOPS_OK;
}

llmops_status llmops_arch_from_hf_config(const char *text, size_t len, const char *origin, llmops_arch *a,
                                         llmops_error *err) {
    json_t *root = NULL;
    llmops_status st = llmops_json_parse(text, len, origin, &root, err);
    if (st) return st;
    st = from_json(root, origin, a, err);
    json_decref(root);
    return st;
}

llmops_status llmops_arch_from_hf_config_file(const char *path, llmops_arch *a, llmops_error *err) {
    json_t *root = NULL;
    llmops_status st = llmops_json_load_file(path, 16u << 20, &root, err);
    if (st) return st;
    st = from_json(root, path, a, err);
    json_decref(root);
    return st;
}

llmops_status llmops_arch_validate(const llmops_arch *a, llmops_error *err) {
    const int64_t big = (int64_t)1 << 31;
    struct {
        const char *name;
        int64_t v;
    } pos[] = {{"vocab_size", a->vocab_size}, {"hidden_size", a->hidden_size}, {"num_layers", a->n_layers},
               {"num_heads", a->n_heads},     {"num_kv_heads", a->n_kv_heads}, {"head_dim", a->head_dim},
               {"intermediate_size", a->ffn_size}, {"max_positions", a->max_positions}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v >= big)
            return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s must be between 1 and 2^31-1 (got %lld)", pos[i].name,
                                    (long long)pos[i].v);
    if (a->n_heads % a->n_kv_heads)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "num_heads %lld is not a multiple of num_kv_heads %lld",
                                (long long)a->n_heads, (long long)a->n_kv_heads);
    if (a->head_dim * a->n_heads != a->hidden_size && a->family != LLMOPS_ARCH_LLAMA &&
        a->family != LLMOPS_ARCH_MISTRAL && a->family != LLMOPS_ARCH_QWEN2)
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "hidden_size %lld is not num_heads %lld × head_dim %lld",
                                (long long)a->hidden_size, (long long)a->n_heads, (long long)a->head_dim);
    if (a->pos == LLMOPS_POS_ROPE && (a->rope_dim <= 0 || a->rope_dim > a->head_dim || a->rope_dim % 2))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "rotary dimension %lld must be even and at most head_dim %lld",
                                (long long)a->rope_dim, (long long)a->head_dim);
    if (!(a->norm_eps > 0) || !isfinite(a->norm_eps))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "norm epsilon must be positive");
    if (a->pos == LLMOPS_POS_ROPE && (!(a->rope_theta > 0) || !isfinite(a->rope_theta)))
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "rope_theta must be positive");
    return LLMOPS_OK;
}
