/* Internal layout of llmops_model and llmops_context. */
#ifndef LLMOPS_MODEL_INTERNAL_H
#define LLMOPS_MODEL_INTERNAL_H

#include <stdatomic.h>

#include "llmops/gguf.h"
#include "llmops/llama2c.h"
#include "llmops/model.h"
#include "llmops/safetensors.h"
#include "llmops/threadpool.h"

/* A weight: rows × cols, row-major, each row `row_bytes` bytes of `type`. */
typedef struct {
    int type;
    int64_t rows, cols;
    size_t row_bytes;
    const void *data; /* NULL: absent */
} mview;

typedef struct {
    mview attn_norm, attn_norm_b;
    mview wq, wk, wv, wqkv, bq, bk, bv, bqkv;
    mview wo, bo;
    mview attn_out_norm, attn_out_norm_b;   /* BERT: post-attention LayerNorm */
    mview ffn_norm, ffn_norm_b;
    mview w_gate, w_up, w_down, b_gate, b_up, b_down;
    mview out_norm, out_norm_b;             /* BERT: post-FFN LayerNorm */
} mlayer;

struct llmops_model {
    llmops_arch arch;
    int rope_neox;             /* 1: rotate halves (HF, Qwen2 GGUF); 0: adjacent pairs (llama.cpp llama, llama2.c) */
    mview tok_embd, pos_embd, type_embd, embd_norm, embd_norm_b;
    mview output_norm, output_norm_b, output;
    float *rope_freqs;         /* (head_dim/2) frequency per rotated pair, scaling applied */
    mlayer *layers;
    llmops_tokenizer *tok;
    /* storage */
    llmops_gguf *gguf;
    llmops_llama2c *l2c;
    llmops_st_model *st;
    void **owned;              /* buffers made at load (transposed GPT-2 weights) */
    size_t n_owned;
    uint64_t weight_bytes, n_params;
    char desc[160];
};

typedef struct {
    int32_t pos;
    uint64_t seqs;             /* bit s: the cell belongs to sequence s */
} kv_cell;

struct llmops_context {
    const llmops_model *m;
    llmops_context_params p;
    llmops_threadpool *pool;
    uint32_t n_cells;
    kv_cell *cells;
    uint32_t used_hi;          /* cells [0, used_hi) may be in use */
    void *k, *v;               /* per layer: n_cells × kv_dim of kv_type */
    size_t kv_elt;             /* bytes per element */
    /* outputs of the last decode */
    float *out;                /* n_out × out_width */
    size_t *out_index;         /* item → row in out, or SIZE_MAX */
    size_t out_cap_items, out_rows_cap, out_width;
    /* scratch (alloc_scratch in model_eval.c): x, q for scratch_tokens tokens (a chunk of the batch),
     * the others for slice_tokens; att is q */
    float *x, *h, *q, *kk, *vv, *att, *ff1, *ff2, *wtmp;
    /* attention scratch, attn_stride floats per thread (see attend_block) */
    float *scores;
    size_t attn_stride, attn_qblk;
    float *rope_cs;            /* cos/sin of one position (rope_dim floats)     */
    /* the one-token path (decode_fused in model_eval.c): one parallel region per token */
    float *fused_norm;         /* per thread: the normalized residual (fused_d floats) */
    size_t fused_d, fused_stride;
    atomic_size_t *fused_ctr;  /* work counters, one per phase of the token     */
    size_t fused_n_ctr;
    _Atomic uint64_t *fused_rng; /* per phase and thread: rows taken from its range (fused_take), a line each */
    size_t fused_n_rng;
    uint32_t scratch_tokens, slice_tokens;
    /* LoRA adapters applied after the adapted products (src/model/lora.c) */
    const struct llmops_adapter **lora;
    float *lora_scale;         /* the user's scale of each                     */
    float *lora_tmp;           /* (slice_tokens, largest rank)                 */
    size_t n_lora;
};

/* Attention inner loops (src/model/attn_kernels.c): SIMD when the CPU has it. */
typedef struct {
    float (*dot_f32)(const void *k, const float *q, size_t n);
    float (*dot_f16)(const void *k, const float *q, size_t n);
    void (*axpy_f32)(const void *v, float a, float *y, size_t n);
    void (*axpy_f16)(const void *v, float a, float *y, size_t n);
    /* S[r·lds + j] = Σ_i Q[r·hd + i] · Kt[i·16 + j], r < nq, j < 16: scores of nq queries against 16
     * keys stored transposed (hd × 16) */
    void (*qk16)(const float *Q, size_t nq, size_t hd, const float *Kt, float *S, size_t lds);
    /* O[r·hd + i] += Σ_{c < nc} P[r·lds + c] · V[c·hd + i], r < nq: weighted sums of nc value rows */
    void (*pv)(const float *P, size_t lds, size_t nq, const float *V, size_t nc, size_t hd, float *O);
    /* dst[i] = the f16 src[i] as a float */
    void (*cvt_f16)(const void *src, float *dst, size_t n);
    /* decode, straight from an F16 cache: S[r·lds + c] = Σ_i Q[r·hd + i] · K[c·ldk + i] and
     * O[r·hd + i] += Σ_c P[r·lds + c] · V[c·ldv + i], r < nq, c < nc (key and value rows ldk, ldv apart) */
    void (*qk_f16)(const uint16_t *K, size_t ldk, size_t nc, const float *Q, size_t nq, size_t hd, float *S, size_t lds);
    void (*pv_f16)(const float *P, size_t lds, size_t nq, const uint16_t *V, size_t ldv, size_t nc, size_t hd, float *O);
} attn_kernels;
const attn_kernels *attn_kernels_get(int force_scalar);

/* Matrix products and row conversion for the engine (src/model/mm.c). */
void mm_matmul(int type, const void *W, size_t rows, size_t cols, const float *X, size_t n, float *Y,
               llmops_threadpool *pool);
void mm_dequant_row(int type, const void *src, float *dst, size_t n);
/* y_p = W_p x for several weights sharing x, in one parallel region (decode). */
typedef struct {
    int type;
    const void *W;
    size_t rows;
    float *y;
} mm_part;
void mm_matvec_multi(const mm_part *parts, size_t n_parts, size_t cols, const float *x, llmops_threadpool *pool);

/* LoRA (src/model/lora.c): the adapted weights of a layer, by kind. */
enum { LW_Q = 0, LW_K, LW_V, LW_QKV, LW_O, LW_GATE, LW_UP, LW_DOWN, LW_N };
/* Y (n × out) += Σ adapters: scale · (X Aᵀ) Bᵀ for weight `kind` of `layer`; X is n × in. */
void lora_apply(llmops_context *ctx, int layer, int kind, const float *X, size_t n, float *Y);
void lora_ctx_free(llmops_context *ctx);
/* "blk.N.attn_q.weight" → layer N, LW_Q; 0 when the name is no adaptable weight. */
int lora_kind_parse(const char *name, int *layer, int *kind);
const char *lora_kind_name(int kind);
/* The model an adapter was loaded for. */
const llmops_model *lora_adapter_model(const struct llmops_adapter *a);
/* Permutes the rows of a rows × cols F32 matrix between Hugging Face's rotate-half order and
 * llama.cpp's interleaved pairs (to_gguf = 1: HF → llama.cpp). 0 on success, -1 on a bad head
 * split, -2 out of memory. */
int lora_permute_rows(float *w, int64_t rows, int64_t cols, int64_t n_head, int to_gguf);

#endif
