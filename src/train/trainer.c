/*
 * The training core: forward and backward passes of a decoder over a
 * micro-batch of token sequences (include/llmops/train.h), for LoRA over a
 * frozen base (as loaded, or re-quantized for QLoRA), full fine-tuning and
 * training from scratch.
 *
 * Layout. Trainable tensors live in two allocations carved in tensor order
 * (values, gradients). A linear layer is a tops_mat (frozen model view, a
 * trainer-owned quantized copy, or a trainable F32 tensor) with an optional
 * F32 bias and optional LoRA factors. Frozen 1-D weights (norms, biases) are
 * converted to F32 once at create.
 *
 * Activations (n = n_seq · seq_len tokens; d hidden, W = qd + 2·kvd, F = 2·ffn
 * gated or ffn, r = LoRA rank), kept per layer, or for one layer with
 * `recompute` (each layer's forward is rerun during the backward pass):
 *   xs    (L+1, n, d)  the residual stream entering each layer, and after the last
 *   hn1   (n, d)       attention-norm output; rs1, mu1 (n) its 1/σ and mean
 *   qkv   (n, W)       q | k | v, q and k after RoPE
 *   att   (n, qd)      attention output, input of the output projection
 *   xmid  (n, d)       residual after attention
 *   hn2   (n, d)       FFN-norm output; rs2, mu2 (n)
 *   ff    (n, F)       gate | up (gated), or the pre-activation
 *   u     (n, r)       per LoRA linear: the A-branch output (dropout applied to its input)
 * Attention scores are recomputed in the backward pass a block of queries at a
 * time (tops_attn_bwd), so no T × T matrix is kept. The LM head and the
 * cross-entropy run in chunks of counted positions. Dropout masks are a hash
 * of (step key, linear, element), so recomputing a layer reproduces them.
 *
 * Threads. One pool: matrix products are split by output columns over it
 * with OpenBLAS single-threaded in each slice (tops_gemm_par), attention runs
 * one (sequence, head) per task, elementwise work by rows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmops/alloc.h"
#include "llmops/kernels.h"
#include "llmops/tensor.h"
#include "llmops/train.h"
#include "model/model_internal.h"
#include "train/train_ops.h"

enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_N };

/* A 1-D parameter: F32 values (trainable tensor or frozen copy) and its gradient (NULL: frozen). */
typedef struct {
    float *w, *g;
    int ti; /* tensor index, or -1 */
} tvec;

typedef struct {
    int present;
    tops_mat W;      /* (out, in)                                            */
    int wi;          /* tensor index of W when trainable, or -1              */
    tvec b;          /* bias (out), w NULL when absent                       */
    int64_t off;     /* first output column within the layer's qkv / ff buffer */
    int ia, ib;      /* LoRA A (r, in) and B (out, r) tensor indices, or -1  */
    int ui;          /* slot of its u buffer in the activations              */
    int id;          /* unique number (dropout masks)                        */
} tlin;

typedef struct {
    tvec n1w, n1b, n2w, n2b;
    tlin lin[LIN_N];
} tlayer;

/* Activation buffers of one layer (shapes in the file comment). */
typedef struct {
    float *hn1, *rs1, *mu1, *qkv, *att, *xmid, *hn2, *rs2, *mu2, *ff;
    float *u[LIN_N];
} lacts;

typedef struct {
    void *p;
    size_t bytes;
} owned_buf;

struct llmops_trainer {
    llmops_arch arch;
    llmops_trainer_params p;
    const llmops_model *m;  /* NULL for SCRATCH */
    int rope_neox;
    float *rope_freqs;      /* (rope_dim/2), owned */
    llmops_threadpool *pool;
    int nth;
    int blas_threads;       /* 1: products split over the pool (tops_gemm_par); else OpenBLAS threads */
    /* tensors */
    llmops_train_tensor *t;
    size_t n_t, cap_t;
    float *wblock, *gblock; /* all values / all gradients, in tensor order */
    uint64_t n_trainable;
    /* the model */
    tops_mat tok, pos, out; /* out.data == tok.data when tied */
    int tok_i, pos_i, out_i;
    tvec onw, onb;          /* final norm */
    tlayer *layers;
    int n_lora_slots;       /* u buffers per layer */
    float lora_scale;
    /* memory */
    owned_buf *own;
    size_t n_own, cap_own;
    uint64_t bytes_now, bytes_peak;
    /* activations and scratch: set 0, xs and scratch for cap_n tokens and cap_T positions; the other
     * layers' sets (lay_block) for cap_nl tokens, sets 1 .. cap_sets-1 */
    size_t cap_n, cap_nl;
    int cap_T, cap_sets;
    void *act_block, *scr_block, *lay_block;
    size_t act_bytes, scr_bytes, lay_bytes;
    lacts *sets;            /* (n_layers) */
    float *xs, *hf, *rsf, *muf;
    float *dkvh;            /* (n, 2·qd) GQA: per-head dk | dv before the sum over each group */
    float *h, *dx, *dhn, *dqkv, *datt, *dff, *dh, *du, *xdrop;
    float *rope_cs, *rope_sn, *attn_scr, *logits, *xc, *dxc, *normpart;
    int32_t *rows;
    double *rowloss;        /* (chunk_rows) */
    size_t chunk_rows;      /* LM-head rows per chunk */
    tops_mm_ctx mm;
    /* dropout */
    uint64_t rng;
    uint64_t drop_key;
    int drop_on;
};

/* ---- random numbers ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *s) {
    *s += 0x9e3779b97f4a7c15ULL;
    return mix64(*s);
}

/* Uniform in [0, 1). */
static double unif(uint64_t *s) { return (double)(next64(s) >> 11) * (1.0 / 9007199254740992.0); }

static double normal01(uint64_t *s) {
    double u1 = unif(s), u2 = unif(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Whether element idx of linear `id`'s dropout input is kept in this step. */
static int drop_keep(uint64_t key, int id, uint64_t idx, float p) {
    uint64_t h = mix64(key ^ ((uint64_t)(id + 1) * 0xd1b54a32d192ed03ULL) ^ (idx * 0x9e3779b97f4a7c15ULL));
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}

/* ---- memory accounting -------------------------------------------------------------------- */

static void count_bytes(llmops_trainer *t, int64_t delta) {
    t->bytes_now = (uint64_t)((int64_t)t->bytes_now + delta);
    if (t->bytes_now > t->bytes_peak) t->bytes_peak = t->bytes_now;
}

/* A buffer owned until the trainer is freed. */
static void *own_alloc(llmops_trainer *t, size_t bytes) {
    if (t->n_own == t->cap_own) {
        size_t nc = t->cap_own ? 2 * t->cap_own : 32;
        owned_buf *no = llmops_reallocarray(t->own, nc, sizeof *no);
        if (!no) return NULL;
        t->own = no;
        t->cap_own = nc;
    }
    void *p = llmops_malloc(bytes ? bytes : 1);
    if (!p) return NULL;
    t->own[t->n_own++] = (owned_buf){p, bytes};
    count_bytes(t, (int64_t)bytes);
    return p;
}

/* ---- parameters -------------------------------------------------------------------------------- */

void llmops_trainer_params_init(llmops_trainer_params *p) {
    memset(p, 0, sizeof *p);
    p->method = LLMOPS_TRAIN_LORA;
    p->lora_rank = 8;
    p->lora_alpha = 16.0f;
    p->lora_dropout = 0.0f;
    p->lora_targets = LLMOPS_LORA_Q | LLMOPS_LORA_V;
    p->base_type = LLMOPS_DTYPE_Q8_0;
    p->recompute = 0;
    p->n_threads = 0;
    p->seed = 42;
}

static int add_tensor(llmops_trainer *t, const char *name, int64_t rows, int64_t cols, int decay, int layer) {
    if (t->n_t == t->cap_t) {
        size_t nc = t->cap_t ? 2 * t->cap_t : 64;
        llmops_train_tensor *nt = llmops_reallocarray(t->t, nc, sizeof *nt);
        if (!nt) return -1;
        t->t = nt;
        t->cap_t = nc;
    }
    llmops_train_tensor *e = &t->t[t->n_t];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->rows = rows;
    e->cols = cols;
    e->decay = decay;
    e->layer = layer;
    return (int)t->n_t++;
}

static const char *k_lin_names[LIN_N] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

static unsigned lin_target_bit(const llmops_trainer *t, int slot) {
    static const unsigned bits[LIN_N] = {LLMOPS_LORA_Q, LLMOPS_LORA_K, LLMOPS_LORA_V, LLMOPS_LORA_O,
                                          LLMOPS_LORA_GATE, LLMOPS_LORA_UP, LLMOPS_LORA_DOWN};
    if (slot == LIN_Q && t->arch.fused_qkv) return LLMOPS_LORA_Q | LLMOPS_LORA_K | LLMOPS_LORA_V | LLMOPS_LORA_QKV;
    if (slot <= LIN_V) return bits[slot] | LLMOPS_LORA_QKV;
    return bits[slot];
}

static void lin_name(const llmops_trainer *t, int l, int slot, const char *suffix, char *buf, size_t cap) {
    const char *nm = slot == LIN_Q && t->arch.fused_qkv ? "attn_qkv" : k_lin_names[slot];
    snprintf(buf, cap, "blk.%d.%s.%s", l, nm, suffix);
}

static tops_mat mat_of_view(const mview *v) {
    tops_mat m = {v->type, v->data, v->row_bytes, v->rows, v->cols, NULL};
    return m;
}

/* Frozen 1-D weight as an owned F32 copy. */
static llmops_status vec_frozen(llmops_trainer *t, const mview *v, tvec *out, llmops_error *err) {
    out->ti = -1;
    out->g = NULL;
    out->w = NULL;
    if (!v || !v->data) return LLMOPS_OK;
    size_t n = (size_t)(v->rows * v->cols);
    out->w = own_alloc(t, n * sizeof(float));
    if (!out->w) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    mm_dequant_row(v->type, v->data, out->w, n);
    return LLMOPS_OK;
}

/* Shapes of the architecture, as ints of the sizes the code uses. */
typedef struct {
    size_t d, hd, qd, kvd, W, f, F, V, r;
    int H, G, L;
} dims;

static dims dims_of(const llmops_trainer *t) {
    const llmops_arch *a = &t->arch;
    dims D;
    D.d = (size_t)a->hidden_size;
    D.hd = (size_t)a->head_dim;
    D.H = (int)a->n_heads;
    D.G = (int)a->n_kv_heads;
    D.L = (int)a->n_layers;
    D.qd = (size_t)D.H * D.hd;
    D.kvd = (size_t)D.G * D.hd;
    D.W = D.qd + 2 * D.kvd;
    D.f = (size_t)a->ffn_size;
    D.F = a->gated_ffn ? 2 * D.f : D.f;
    D.V = (size_t)a->vocab_size;
    D.r = t->p.method == LLMOPS_TRAIN_LORA || t->p.method == LLMOPS_TRAIN_QLORA ? (size_t)t->p.lora_rank : 0;
    return D;
}

/* The model's view of linear `slot` of layer l (and its bias), or NULL. */
static const mview *model_lin(const llmops_model *m, int l, int slot, const mview **bias) {
    const mlayer *L = &m->layers[l];
    const mview *w = NULL, *b = NULL;
    switch (slot) {
    case LIN_Q: w = L->wqkv.data ? &L->wqkv : &L->wq, b = L->wqkv.data ? &L->bqkv : &L->bq; break;
    case LIN_K: w = &L->wk, b = &L->bk; break;
    case LIN_V: w = &L->wv, b = &L->bv; break;
    case LIN_O: w = &L->wo, b = &L->bo; break;
    case LIN_GATE: w = &L->w_gate, b = &L->b_gate; break;
    case LIN_UP: w = &L->w_up, b = &L->b_up; break;
    case LIN_DOWN: w = &L->w_down, b = &L->b_down; break;
    }
    *bias = b && b->data ? b : NULL;
    return w && w->data ? w : NULL;
}

/* Shape of linear `slot` from the architecture; 0 when the architecture has none. */
static int arch_lin(const llmops_trainer *t, int slot, int64_t *rows, int64_t *cols, int *bias) {
    const llmops_arch *a = &t->arch;
    dims D = dims_of(t);
    *bias = 0;
    switch (slot) {
    case LIN_Q: *rows = (int64_t)(a->fused_qkv ? D.W : D.qd), *cols = (int64_t)D.d, *bias = a->qkv_bias; return 1;
    case LIN_K:
    case LIN_V:
        if (a->fused_qkv) return 0;
        *rows = (int64_t)D.kvd, *cols = (int64_t)D.d, *bias = a->qkv_bias;
        return 1;
    case LIN_O: *rows = (int64_t)D.d, *cols = (int64_t)D.qd, *bias = a->attn_out_bias; return 1;
    case LIN_GATE:
        if (!a->gated_ffn) return 0;
        *rows = (int64_t)D.f, *cols = (int64_t)D.d, *bias = a->mlp_bias;
        return 1;
    case LIN_UP: *rows = (int64_t)D.f, *cols = (int64_t)D.d, *bias = a->mlp_bias; return 1;
    case LIN_DOWN: *rows = (int64_t)D.d, *cols = (int64_t)D.f, *bias = a->mlp_bias; return 1;
    }
    return 0;
}

static int64_t lin_offset(const llmops_trainer *t, int slot) {
    dims D = dims_of(t);
    switch (slot) {
    case LIN_K: return (int64_t)D.qd;
    case LIN_V: return (int64_t)(D.qd + D.kvd);
    case LIN_UP: return t->arch.gated_ffn ? (int64_t)D.f : 0;
    default: return 0;
    }
}

/* ---- building the tensor list ------------------------------------------------------------------- */

#define TRY_ADD(idx, ...)                                                                         \
    do {                                                                                          \
        char nm_[96];                                                                             \
        snprintf(nm_, sizeof nm_, __VA_ARGS__);                                                   \
        (idx) = add_tensor(t, nm_, rows_, cols_, decay_, layer_);                                 \
        if ((idx) < 0) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");          \
    } while (0)

/* Registers every tensor the method trains, in order, and records the frozen views. */
static llmops_status plan(llmops_trainer *t, llmops_error *err) {
    const llmops_model *m = t->m;
    const llmops_arch *a = &t->arch;
    dims D = dims_of(t);
    int full = t->p.method == LLMOPS_TRAIN_FULL || t->p.method == LLMOPS_TRAIN_SCRATCH;
    int tied = m ? m->output.data == m->tok_embd.data : a->tie_embeddings;
    int64_t rows_, cols_;
    int decay_, layer_ = -1;
    t->tok_i = t->pos_i = t->out_i = -1;
    /* embeddings */
    if (full) {
        rows_ = (int64_t)D.V, cols_ = (int64_t)D.d, decay_ = 1;
        TRY_ADD(t->tok_i, "token_embd.weight");
        if (a->pos == LLMOPS_POS_LEARNED) {
            rows_ = m ? m->pos_embd.rows : a->max_positions;
            TRY_ADD(t->pos_i, "position_embd.weight");
        }
    } else {
        t->tok = mat_of_view(&m->tok_embd);
        if (m->pos_embd.data) t->pos = mat_of_view(&m->pos_embd);
    }
    /* layers */
    int lin_id = 0;
    t->n_lora_slots = 0;
    for (int l = 0; l < D.L; l++) {
        tlayer *TL = &t->layers[l];
        int uslot = 0;
        layer_ = l;
        int has_nb = m ? m->layers[l].attn_norm_b.data != NULL : a->norm_bias;
        tvec *norms[2][2] = {{&TL->n1w, &TL->n1b}, {&TL->n2w, &TL->n2b}};
        for (int k = 0; k < 2; k++) norms[k][0]->ti = norms[k][1]->ti = -1;
        if (full) {
            rows_ = 1, cols_ = (int64_t)D.d, decay_ = 0;
            TRY_ADD(TL->n1w.ti, "blk.%d.attn_norm.weight", l);
            if (has_nb) TRY_ADD(TL->n1b.ti, "blk.%d.attn_norm.bias", l);
        } else {
            llmops_status st = vec_frozen(t, &m->layers[l].attn_norm, &TL->n1w, err);
            if (!st) st = vec_frozen(t, &m->layers[l].attn_norm_b, &TL->n1b, err);
            if (st) return st;
        }
        for (int s = 0; s < LIN_N; s++) {
            tlin *li = &TL->lin[s];
            li->wi = li->ia = li->ib = li->ui = -1;
            li->b.ti = -1;
            li->id = lin_id++;
            int64_t r, c;
            int has_bias;
            if (!arch_lin(t, s, &r, &c, &has_bias)) continue;
            const mview *bv = NULL, *wv = m ? model_lin(m, l, s, &bv) : NULL;
            if (m) {
                if (!wv) continue;
                has_bias = bv != NULL;
            }
            li->present = 1;
            li->off = lin_offset(t, s);
            li->W.rows = r, li->W.cols = c;
            /* ffn_norm sits between attn_output and the first FFN linear */
            if (full && (s == LIN_GATE || (s == LIN_UP && !TL->lin[LIN_GATE].present))) {
                int has_nb2 = m ? m->layers[l].ffn_norm_b.data != NULL : a->norm_bias;
                rows_ = 1, cols_ = (int64_t)D.d, decay_ = 0;
                TRY_ADD(TL->n2w.ti, "blk.%d.ffn_norm.weight", l);
                if (has_nb2) TRY_ADD(TL->n2b.ti, "blk.%d.ffn_norm.bias", l);
            }
            char nm[96];
            if (full) {
                rows_ = r, cols_ = c, decay_ = 1;
                lin_name(t, l, s, "weight", nm, sizeof nm);
                TRY_ADD(li->wi, "%s", nm);
                if (has_bias) {
                    rows_ = 1, cols_ = r, decay_ = 0;
                    lin_name(t, l, s, "bias", nm, sizeof nm);
                    TRY_ADD(li->b.ti, "%s", nm);
                }
            } else {
                li->W = mat_of_view(wv);
                llmops_status st = vec_frozen(t, bv, &li->b, err);
                if (st) return st;
                if (t->p.lora_targets & lin_target_bit(t, s)) {
                    rows_ = t->p.lora_rank, cols_ = c, decay_ = 1;
                    lin_name(t, l, s, "weight.lora_a", nm, sizeof nm);
                    TRY_ADD(li->ia, "%s", nm);
                    rows_ = r, cols_ = t->p.lora_rank;
                    lin_name(t, l, s, "weight.lora_b", nm, sizeof nm);
                    TRY_ADD(li->ib, "%s", nm);
                    li->ui = uslot++;
                }
            }
        }
        if (!full) {
            llmops_status st = vec_frozen(t, &m->layers[l].ffn_norm, &TL->n2w, err);
            if (!st) st = vec_frozen(t, &m->layers[l].ffn_norm_b, &TL->n2b, err);
            if (st) return st;
        }
        if (uslot > t->n_lora_slots) t->n_lora_slots = uslot;
    }
    /* final norm and output */
    layer_ = -1;
    t->onw.ti = t->onb.ti = -1;
    if (full) {
        int has_b = m ? m->output_norm_b.data != NULL : a->norm_bias;
        rows_ = 1, cols_ = (int64_t)D.d, decay_ = 0;
        TRY_ADD(t->onw.ti, "output_norm.weight");
        if (has_b) TRY_ADD(t->onb.ti, "output_norm.bias");
        if (!tied) {
            rows_ = (int64_t)D.V, cols_ = (int64_t)D.d, decay_ = 1;
            TRY_ADD(t->out_i, "output.weight");
        }
    } else {
        llmops_status st = vec_frozen(t, &m->output_norm, &t->onw, err);
        if (!st) st = vec_frozen(t, &m->output_norm_b, &t->onb, err);
        if (st) return st;
        t->out = mat_of_view(&m->output);
    }
    return LLMOPS_OK;
}
#undef TRY_ADD

/* Points every trainable slot at its carved values and gradients. */
static void bind_tensors(llmops_trainer *t) {
    dims D = dims_of(t);
#define BINDV(v)                                                                                  \
    do {                                                                                          \
        if ((v).ti >= 0) (v).w = t->t[(v).ti].w, (v).g = t->t[(v).ti].g;                         \
    } while (0)
    for (int l = 0; l < D.L; l++) {
        tlayer *TL = &t->layers[l];
        BINDV(TL->n1w);
        BINDV(TL->n1b);
        BINDV(TL->n2w);
        BINDV(TL->n2b);
        for (int s = 0; s < LIN_N; s++) {
            tlin *li = &TL->lin[s];
            BINDV(li->b);
            if (li->wi >= 0) {
                llmops_train_tensor *e = &t->t[li->wi];
                li->W = (tops_mat){LLMOPS_DTYPE_F32, e->w, (size_t)e->cols * sizeof(float), e->rows, e->cols, e->g};
            }
        }
    }
    BINDV(t->onw);
    BINDV(t->onb);
#undef BINDV
    if (t->tok_i >= 0) {
        llmops_train_tensor *e = &t->t[t->tok_i];
        t->tok = (tops_mat){LLMOPS_DTYPE_F32, e->w, (size_t)e->cols * sizeof(float), e->rows, e->cols, e->g};
        if (t->out_i < 0) t->out = t->tok; /* tied: both uses add into one gradient */
    }
    if (t->pos_i >= 0) {
        llmops_train_tensor *e = &t->t[t->pos_i];
        t->pos = (tops_mat){LLMOPS_DTYPE_F32, e->w, (size_t)e->cols * sizeof(float), e->rows, e->cols, e->g};
    }
    if (t->out_i >= 0) {
        llmops_train_tensor *e = &t->t[t->out_i];
        t->out = (tops_mat){LLMOPS_DTYPE_F32, e->w, (size_t)e->cols * sizeof(float), e->rows, e->cols, e->g};
    }
}

static llmops_status carve(llmops_trainer *t, llmops_error *err) {
    uint64_t total = 0;
    for (size_t i = 0; i < t->n_t; i++) total += (uint64_t)(t->t[i].rows * t->t[i].cols);
    t->n_trainable = total;
    uint64_t bytes;
    if (!llmops_mul_ok(total ? total : 1, sizeof(float), &bytes) || bytes > SIZE_MAX / 2)
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "too many trainable parameters");
    t->wblock = own_alloc(t, (size_t)bytes);
    t->gblock = t->wblock ? own_alloc(t, (size_t)bytes) : NULL;
    if (!t->wblock || !t->gblock)
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for %llu trainable parameters (%llu bytes each for values and gradients)",
                                (unsigned long long)total, (unsigned long long)bytes);
    memset(t->gblock, 0, (size_t)bytes);
    size_t off = 0;
    for (size_t i = 0; i < t->n_t; i++) {
        t->t[i].w = t->wblock + off;
        t->t[i].g = t->gblock + off;
        off += (size_t)(t->t[i].rows * t->t[i].cols);
    }
    bind_tensors(t);
    return LLMOPS_OK;
}

/* ---- initial values ------------------------------------------------------------------------------ */

static void copy_view(const mview *v, float *dst) {
    for (int64_t r = 0; r < v->rows; r++)
        mm_dequant_row(v->type, (const uint8_t *)v->data + (size_t)r * v->row_bytes, dst + (size_t)(r * v->cols),
                       (size_t)v->cols);
}

/* FULL: master copies of the model's weights. */
static void init_from_model(llmops_trainer *t) {
    const llmops_model *m = t->m;
    dims D = dims_of(t);
    if (t->tok_i >= 0) copy_view(&m->tok_embd, t->t[t->tok_i].w);
    if (t->pos_i >= 0) copy_view(&m->pos_embd, t->t[t->pos_i].w);
    for (int l = 0; l < D.L; l++) {
        tlayer *TL = &t->layers[l];
        const mlayer *ML = &m->layers[l];
        if (TL->n1w.ti >= 0) copy_view(&ML->attn_norm, TL->n1w.w);
        if (TL->n1b.ti >= 0) copy_view(&ML->attn_norm_b, TL->n1b.w);
        if (TL->n2w.ti >= 0) copy_view(&ML->ffn_norm, TL->n2w.w);
        if (TL->n2b.ti >= 0) copy_view(&ML->ffn_norm_b, TL->n2b.w);
        for (int s = 0; s < LIN_N; s++) {
            tlin *li = &TL->lin[s];
            if (!li->present) continue;
            const mview *bv, *wv = model_lin(m, l, s, &bv);
            if (li->wi >= 0) copy_view(wv, t->t[li->wi].w);
            if (li->b.ti >= 0) copy_view(bv, li->b.w);
        }
    }
    if (t->onw.ti >= 0) copy_view(&m->output_norm, t->onw.w);
    if (t->onb.ti >= 0) copy_view(&m->output_norm_b, t->onb.w);
    if (t->out_i >= 0) copy_view(&m->output, t->t[t->out_i].w);
}

/* SCRATCH: N(0, 0.02) weights, residual output projections /√(2L), norms 1, biases 0. */
static void init_scratch(llmops_trainer *t) {
    uint64_t s = t->p.seed ^ 0x5eed5eed5eedULL;
    double resid = 0.02 / sqrt(2.0 * (double)t->arch.n_layers);
    for (size_t i = 0; i < t->n_t; i++) {
        llmops_train_tensor *e = &t->t[i];
        size_t n = (size_t)(e->rows * e->cols);
        const char *dot = strrchr(e->name, '.');
        int is_bias = dot && !strcmp(dot, ".bias");
        if (strstr(e->name, "norm")) {
            for (size_t k = 0; k < n; k++) e->w[k] = is_bias ? 0.0f : 1.0f;
            continue;
        }
        if (is_bias) {
            memset(e->w, 0, n * sizeof(float));
            continue;
        }
        double sd = strstr(e->name, "attn_output.") || strstr(e->name, "ffn_down.") ? resid : 0.02;
        for (size_t k = 0; k < n; k++) e->w[k] = (float)(sd * normal01(&s));
    }
}

/* LoRA: A ~ U(−1/√in, 1/√in) (PEFT's kaiming_uniform(a=√5)), B = 0. */
static void init_lora(llmops_trainer *t) {
    uint64_t s = t->p.seed;
    for (size_t i = 0; i < t->n_t; i++) {
        llmops_train_tensor *e = &t->t[i];
        size_t n = (size_t)(e->rows * e->cols);
        size_t len = strlen(e->name);
        if (len > 7 && !strcmp(e->name + len - 7, ".lora_a")) {
            double bound = 1.0 / sqrt((double)e->cols);
            for (size_t k = 0; k < n; k++) e->w[k] = (float)((2.0 * unif(&s) - 1.0) * bound);
        } else {
            memset(e->w, 0, n * sizeof(float));
        }
    }
}

/* ---- QLoRA: frozen linears re-quantized --------------------------------------------------------- */

typedef struct {
    const tops_mat *src;
    int type;
    uint8_t *dst;
    size_t dst_row;
    int fail, nomem;
} requant_job;

static void requant_rows(void *vj, size_t begin, size_t end, int ith) {
    (void)ith;
    requant_job *J = vj;
    size_t cols = (size_t)J->src->cols;
    float *row = llmops_malloc(cols * sizeof(float));
    if (!row) {
        J->nomem = 1;
        return;
    }
    for (size_t r = begin; r < end; r++) {
        mm_dequant_row(J->src->type, (const uint8_t *)J->src->data + r * J->src->row_bytes, row, cols);
        if (llmops_quantize_row(J->type, row, J->dst + r * J->dst_row, cols, NULL)) J->fail = 1;
    }
    llmops_free(row);
}

/* The type a row of `cols` floats is stored in: base_type, or (as llmops_quantize_model does for rows
 * that do not split into its blocks) Q8_0 when they split into 32s, else F16. */
static int qlora_type(int base, int64_t cols) {
    const llmops_dtype_info *ti = llmops_dtype_get(base);
    if (ti && cols % ti->block_size == 0) return base;
    return cols % 32 == 0 ? LLMOPS_DTYPE_Q8_0 : LLMOPS_DTYPE_F16;
}

/* Replaces the frozen matrix *W by a trainer-owned copy in the QLoRA base type. */
static llmops_status requant_mat(llmops_trainer *t, tops_mat *W, const char *what, llmops_error *err) {
    int type = qlora_type(t->p.base_type, W->cols);
    uint64_t rb = 0;
    llmops_status st = llmops_dtype_nbytes(type, (uint64_t)W->cols, (uint64_t)W->cols, &rb, err);
    if (st) return st;
    uint8_t *dst = own_alloc(t, (size_t)rb * (size_t)W->rows);
    if (!dst) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory for the quantized base (%s)", what);
    requant_job J = {W, type, dst, (size_t)rb, 0, 0};
    llmops_threadpool_parallel_for(t->pool, (size_t)W->rows, 16, requant_rows, &J);
    if (J.nomem) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory quantizing %s", what);
    if (J.fail)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "cannot quantize %s to %s (non-finite weights?)", what,
                                llmops_dtype_name(type));
    W->type = type;
    W->data = dst;
    W->row_bytes = (size_t)rb;
    return LLMOPS_OK;
}

/*
 * QLoRA: every frozen 2-D weight but the position table — the layers' linears, the token embedding
 * and an untied output — is re-quantized to base_type, the tensors llmops_quantize_model converts.
 */
static llmops_status requantize(llmops_trainer *t, llmops_error *err) {
    dims D = dims_of(t);
    llmops_status st;
    char what[64];
    for (int l = 0; l < D.L; l++)
        for (int s = 0; s < LIN_N; s++) {
            tlin *li = &t->layers[l].lin[s];
            if (!li->present) continue;
            snprintf(what, sizeof what, "blk.%d.%s", l, k_lin_names[s]);
            if ((st = requant_mat(t, &li->W, what, err))) return st;
        }
    int tied = t->out.data == t->tok.data;
    if ((st = requant_mat(t, &t->tok, "token_embd", err))) return st;
    if (tied) t->out = t->tok;
    else if ((st = requant_mat(t, &t->out, "output", err))) return st;
    return LLMOPS_OK;
}

/* ---- create / free ------------------------------------------------------------------------------- */

void llmops_trainer_free(llmops_trainer *t) {
    if (!t) return;
    llmops_threadpool_free(t->pool);
    for (size_t i = 0; i < t->n_own; i++) llmops_free(t->own[i].p);
    llmops_free(t->own);
    llmops_free(t->act_block);
    llmops_free(t->scr_block);
    llmops_free(t->lay_block);
    llmops_free(t->sets);
    llmops_free(t->t);
    llmops_free(t->layers);
    llmops_free(t->mm.panel);
    llmops_free(t);
}

static llmops_status check_params(const llmops_arch *a, const llmops_trainer_params *p, llmops_error *err) {
    if (a->family == LLMOPS_ARCH_BERT || !a->causal)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED,
                                "training supports decoder models only (llama, mistral, qwen2, gpt2), not %s",
                                llmops_arch_family_name(a->family));
    if (a->family == LLMOPS_ARCH_UNKNOWN)
        return llmops_error_set(err, LLMOPS_ERR_UNSUPPORTED, "training: unknown architecture family");
    if ((p->method == LLMOPS_TRAIN_LORA || p->method == LLMOPS_TRAIN_QLORA) &&
        (p->lora_rank < 1 || p->lora_rank > 65536))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "LoRA rank must be 1..65536, not %d", p->lora_rank);
    if (!(p->lora_dropout >= 0.0f && p->lora_dropout < 1.0f))
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "LoRA dropout must be in [0, 1), not %g", (double)p->lora_dropout);
    if (p->method == LLMOPS_TRAIN_QLORA && p->base_type != LLMOPS_DTYPE_Q8_0 && p->base_type != LLMOPS_DTYPE_Q4_0 &&
        p->base_type != LLMOPS_DTYPE_Q4_K)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "QLoRA base type must be Q8_0, Q4_0 or Q4_K, not %s",
                                llmops_dtype_name(p->base_type));
    if (p->method < LLMOPS_TRAIN_LORA || p->method > LLMOPS_TRAIN_SCRATCH)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "unknown training method %d", (int)p->method);
    return LLMOPS_OK;
}

/* RoPE frequencies with the architecture's scaling (as the model loader computes them). */
static void rope_freqs_of(const llmops_arch *a, float *f) {
    int64_t half = a->rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double freq = 1.0 / pow(a->rope_theta, (double)(2 * i) / (double)a->rope_dim);
        if (a->rope_scaling == LLMOPS_ROPE_SCALING_LINEAR) freq /= a->rope_factor;
        else if (a->rope_scaling == LLMOPS_ROPE_SCALING_LLAMA3) {
            double lo = (double)a->rope_original_max_positions / a->rope_low_freq_factor;
            double hi = (double)a->rope_original_max_positions / a->rope_high_freq_factor;
            double wl = 2.0 * M_PI / freq;
            if (wl > lo) freq /= a->rope_factor;
            else if (wl >= hi) {
                double smooth = ((double)a->rope_original_max_positions / wl - a->rope_low_freq_factor) /
                                (a->rope_high_freq_factor - a->rope_low_freq_factor);
                freq = (1.0 - smooth) * freq / a->rope_factor + smooth * freq;
            }
        }
        f[i] = (float)freq;
    }
}

static llmops_status create_common(const llmops_arch *a, const llmops_model *m, const llmops_trainer_params *p,
                                   llmops_trainer **out, llmops_error *err) {
    *out = NULL;
    llmops_status st = check_params(a, p, err);
    if (!st) st = tops_blas_load(err);
    if (st) return st;
    llmops_trainer *t = llmops_calloc(1, sizeof *t);
    if (!t) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    t->arch = *a;
    t->p = *p;
    t->m = m;
    t->rope_neox = m ? m->rope_neox : 1;
    t->lora_scale = p->lora_alpha / (float)(p->lora_rank > 0 ? p->lora_rank : 1);
    t->rng = mix64(p->seed ^ 0xd20d20d20dULL);
    if ((st = llmops_threadpool_create(p->n_threads, &t->pool, err))) goto fail;
    t->nth = llmops_threadpool_n_threads(t->pool);
    t->mm.pool = t->pool;
    /* LLMOPS_TRAIN_GEMM=blas lets OpenBLAS thread each product instead (for comparisons) */
    const char *gm = getenv("LLMOPS_TRAIN_GEMM");
    t->blas_threads = gm && !strcmp(gm, "blas") ? t->nth : 1;
    t->mm.gemm_pool = t->blas_threads > 1 ? NULL : t->pool;
    t->layers = llmops_calloc((size_t)a->n_layers, sizeof *t->layers);
    t->sets = llmops_calloc((size_t)a->n_layers, sizeof *t->sets);
    t->cap_sets = 1;
    if (!t->layers || !t->sets) {
        st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (a->pos == LLMOPS_POS_ROPE) {
        t->rope_freqs = own_alloc(t, (size_t)(a->rope_dim / 2 + 1) * sizeof(float));
        if (!t->rope_freqs) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (m) memcpy(t->rope_freqs, m->rope_freqs, (size_t)(a->rope_dim / 2) * sizeof(float));
        else rope_freqs_of(a, t->rope_freqs);
    }
    if ((st = plan(t, err)) || (st = carve(t, err))) goto fail;
    if (p->method == LLMOPS_TRAIN_FULL) init_from_model(t);
    else if (p->method == LLMOPS_TRAIN_SCRATCH) init_scratch(t);
    else init_lora(t);
    if (p->method == LLMOPS_TRAIN_QLORA && (st = requantize(t, err))) goto fail;
    /* a panel buffer for the widest frozen matrix that is not plain F32 */
    size_t panel = 0;
    const tops_mat *mats[2] = {&t->tok, &t->out};
    for (int k = 0; k < 2; k++)
        if (mats[k]->data && mats[k]->type != LLMOPS_DTYPE_F32) {
            size_t need = tops_panel_rows(mats[k]->cols) * (size_t)mats[k]->cols;
            if (need > panel) panel = need;
        }
    for (int l = 0; l < (int)a->n_layers; l++)
        for (int s = 0; s < LIN_N; s++) {
            const tops_mat *W = &t->layers[l].lin[s].W;
            if (!t->layers[l].lin[s].present || W->type == LLMOPS_DTYPE_F32) continue;
            size_t need = tops_panel_rows(W->cols) * (size_t)W->cols;
            if (need > panel) panel = need;
        }
    if (panel) {
        t->mm.panel = llmops_malloc(panel * sizeof(float));
        if (!t->mm.panel) {
            st = llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        t->mm.panel_floats = panel;
        count_bytes(t, (int64_t)(panel * sizeof(float)));
    }
    *out = t;
    return LLMOPS_OK;
fail:
    llmops_trainer_free(t);
    return st;
}

llmops_status llmops_trainer_create(const llmops_model *m, const llmops_trainer_params *p, llmops_trainer **out,
                                    llmops_error *err) {
    llmops_trainer_params defaults;
    if (!p) {
        llmops_trainer_params_init(&defaults);
        p = &defaults;
    }
    if (!m) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "llmops_trainer_create: no model");
    if (p->method == LLMOPS_TRAIN_SCRATCH)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                "method SCRATCH takes an architecture: use llmops_trainer_create_scratch");
    return create_common(&m->arch, m, p, out, err);
}

llmops_status llmops_trainer_create_scratch(const llmops_arch *a, const llmops_trainer_params *p,
                                            llmops_trainer **out, llmops_error *err) {
    llmops_trainer_params q;
    if (p) q = *p;
    else llmops_trainer_params_init(&q);
    q.method = LLMOPS_TRAIN_SCRATCH;
    *out = NULL;
    if (!a) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "llmops_trainer_create_scratch: no architecture");
    if (a->family == LLMOPS_ARCH_BERT || !a->causal) return check_params(a, &q, err);
    llmops_status st = llmops_arch_validate(a, err);
    if (st) return st;
    return create_common(a, NULL, &q, out, err);
}

/* ---- accessors -------------------------------------------------------------------------------------- */

const llmops_arch *llmops_trainer_arch(const llmops_trainer *t) { return &t->arch; }
int llmops_trainer_rope_neox(const llmops_trainer *t) { return t->rope_neox; }
const llmops_trainer_params *llmops_trainer_get_params(const llmops_trainer *t) { return &t->p; }
size_t llmops_trainer_n_tensors(const llmops_trainer *t) { return t->n_t; }
llmops_train_tensor *llmops_trainer_tensor(llmops_trainer *t, size_t i) { return i < t->n_t ? &t->t[i] : NULL; }
uint64_t llmops_trainer_n_trainable(const llmops_trainer *t) { return t->n_trainable; }
uint64_t llmops_trainer_rng_get(const llmops_trainer *t) { return t->rng; }
void llmops_trainer_rng_set(llmops_trainer *t, uint64_t state) { t->rng = state; }
uint64_t llmops_trainer_peak_bytes(const llmops_trainer *t) { return t->bytes_peak; }

llmops_train_tensor *llmops_trainer_find(llmops_trainer *t, const char *name) {
    for (size_t i = 0; i < t->n_t; i++)
        if (!strcmp(t->t[i].name, name)) return &t->t[i];
    return NULL;
}

struct llmops_threadpool *llmops_trainer_pool(llmops_trainer *t) { return t->pool; }

llmops_status llmops_trainer_dropout_mask(const llmops_trainer *t, const char *weight, size_t n, float *mask,
                                          llmops_error *err) {
    float p = t->p.lora_dropout;
    if (!(p > 0)) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "the trainer has no LoRA dropout");
    for (int l = 0; l < (int)t->arch.n_layers; l++)
        for (int s = 0; s < LIN_N; s++) {
            const tlin *li = &t->layers[l].lin[s];
            char name[96];
            if (!li->present || li->ia < 0) continue;
            lin_name(t, l, s, "weight", name, sizeof name);
            if (strcmp(name, weight) != 0) continue;
            size_t in = (size_t)li->W.cols;
            float inv = 1.0f / (1.0f - p);
            for (size_t i = 0; i < n; i++)
                for (size_t c = 0; c < in; c++)
                    mask[i * in + c] = drop_keep(t->drop_key, li->id, (uint64_t)(i * in + c), p) ? inv : 0.0f;
            return LLMOPS_OK;
        }
    return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "no LoRA-adapted weight named '%s'", weight);
}

static void zero_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    float *g = vj;
    memset(g + b, 0, (e - b) * sizeof(float));
}

void llmops_trainer_zero_grad(llmops_trainer *t) {
    if (!t->gblock) return;
    size_t n = (size_t)t->n_trainable;
    if (n < ((size_t)1 << 20) || llmops_threadpool_parallel_for(t->pool, n, (size_t)1 << 18, zero_rows, t->gblock))
        memset(t->gblock, 0, n * sizeof(float));
}


/* ---- buffers for a batch shape ------------------------------------------------------------------- */

#define ALIGN_F 16 /* floats: each carved buffer starts on a 64-byte boundary */

static size_t up16(size_t n) { return (n + ALIGN_F - 1) / ALIGN_F * ALIGN_F; }

/* Carves `n` floats from *cur (a NULL base only counts). */
static float *carve_f(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur += up16(n);
    return p;
}

/* One layer's activation set of n tokens, carved from base at *cur (a NULL base only counts). */
static void carve_set(llmops_trainer *t, float *base, size_t *cur, size_t n, lacts *A) {
    dims D = dims_of(t);
    A->hn1 = carve_f(base, cur, n * D.d);
    A->rs1 = carve_f(base, cur, n);
    A->mu1 = carve_f(base, cur, n);
    A->qkv = carve_f(base, cur, n * D.W);
    A->att = carve_f(base, cur, n * D.qd);
    A->xmid = carve_f(base, cur, n * D.d);
    A->hn2 = carve_f(base, cur, n * D.d);
    A->rs2 = carve_f(base, cur, n);
    A->mu2 = carve_f(base, cur, n);
    A->ff = carve_f(base, cur, n * D.F);
    for (int s = 0; s < LIN_N; s++) A->u[s] = NULL;
    for (int s = 0; s < t->n_lora_slots; s++) A->u[s] = carve_f(base, cur, n * D.r);
}

/* Set 0 (the only one evaluation and recompute use) and the residual stream. */
static size_t layout_acts(llmops_trainer *t, float *base, size_t n) {
    dims D = dims_of(t);
    size_t cur = 0;
    lacts sizing; /* with base NULL the carve only counts floats: the views land here and are dropped */
    carve_set(t, base, &cur, n, base ? &t->sets[0] : &sizing);
    t->xs = carve_f(base, &cur, (size_t)(D.L + 1) * n * D.d);
    t->hf = carve_f(base, &cur, n * D.d);
    t->rsf = carve_f(base, &cur, n);
    t->muf = carve_f(base, &cur, n);
    return cur;
}

/* Sets 1 .. sets-1: the other layers' activations, kept only when training without recompute. */
static size_t layout_layers(llmops_trainer *t, float *base, size_t n, int sets) {
    size_t cur = 0;
    lacts sizing; /* with base NULL the carve only counts floats: the views land here and are dropped */
    for (int k = 1; k < sets; k++) carve_set(t, base, &cur, n, base ? &t->sets[k] : &sizing);
    return cur;
}

static size_t layout_scratch(llmops_trainer *t, float *base, size_t n, int T) {
    dims D = dims_of(t);
    size_t cur = 0, half = t->arch.pos == LLMOPS_POS_ROPE ? (size_t)t->arch.rope_dim / 2 : 0;
    size_t widest = D.d > D.f ? D.d : D.f;
    if (D.qd > widest) widest = D.qd;
    t->h = carve_f(base, &cur, n * D.f);
    t->dx = carve_f(base, &cur, n * D.d);
    t->dhn = carve_f(base, &cur, n * D.d);
    t->dqkv = carve_f(base, &cur, n * D.W);
    t->dkvh = D.H > D.G ? carve_f(base, &cur, n * 2 * D.qd) : NULL;
    t->datt = carve_f(base, &cur, n * D.qd);
    t->dff = carve_f(base, &cur, n * D.F);
    t->dh = carve_f(base, &cur, n * D.f);
    t->du = carve_f(base, &cur, n * D.r);
    t->xdrop = t->p.lora_dropout > 0 && D.r ? carve_f(base, &cur, n * widest) : NULL;
    t->rope_cs = carve_f(base, &cur, (size_t)T * half);
    t->rope_sn = carve_f(base, &cur, (size_t)T * half);
    t->attn_scr = carve_f(base, &cur, (size_t)t->nth * tops_attn_scratch(T));
    /* logits of up to 32 Mi floats at a time (the LM head's dW product then has a deep inner
     * dimension; fewer passes over its V × d gradient) */
    size_t C = (32u << 20) / D.V;
    if (C > 1024) C = 1024;
    if (t->p.head_chunk > 0) C = (size_t)t->p.head_chunk;
    if (C < 16) C = 16;
    if (C > n) C = n;
    t->chunk_rows = C;
    t->logits = carve_f(base, &cur, C * D.V);
    t->rowloss = (double *)carve_f(base, &cur, 2 * C); /* C doubles, 64-byte aligned */
    t->xc = carve_f(base, &cur, C * D.d);
    t->dxc = carve_f(base, &cur, C * D.d);
    t->normpart = carve_f(base, &cur, (size_t)t->nth * 2 * D.d);
    t->rows = (int32_t *)carve_f(base, &cur, n);
    return cur;
}

static void free_layer_block(llmops_trainer *t) {
    if (t->lay_block) count_bytes(t, -(int64_t)t->lay_bytes);
    llmops_free(t->lay_block);
    t->lay_block = NULL;
    t->cap_nl = 0;
    t->cap_sets = 1;
}

static void free_buffers(llmops_trainer *t) {
    if (t->act_block) count_bytes(t, -(int64_t)t->act_bytes);
    if (t->scr_block) count_bytes(t, -(int64_t)t->scr_bytes);
    llmops_free(t->act_block);
    llmops_free(t->scr_block);
    t->act_block = t->scr_block = NULL;
    t->cap_n = 0;
    t->cap_T = 0;
}

static llmops_status nomem_acts(size_t n, size_t floats, llmops_error *err) {
    return llmops_error_set(err, LLMOPS_ERR_NOMEM,
                            "out of memory for the activations of %zu tokens (%zu MiB; try recompute or a smaller batch)", n,
                            floats * sizeof(float) >> 20);
}

/*
 * Activation and scratch buffers for n tokens in rows of T positions, `sets` layers kept. Set 0,
 * the residual stream and the scratch grow with the largest batch seen; the other layers' sets
 * (training without recompute) are a separate block, so an evaluation of a larger batch does not
 * make every layer's set grow.
 */
static llmops_status ensure_buffers(llmops_trainer *t, size_t n, int T, int sets, llmops_error *err) {
    if (!t->act_block || n > t->cap_n || T > t->cap_T) {
        size_t cn = n > t->cap_n ? n : t->cap_n;
        int cT = T > t->cap_T ? T : t->cap_T;
        free_buffers(t);
        size_t fa = layout_acts(t, NULL, cn), fs = layout_scratch(t, NULL, cn, cT);
        t->act_block = llmops_malloc(fa * sizeof(float));
        t->scr_block = t->act_block ? llmops_malloc(fs * sizeof(float)) : NULL;
        if (!t->scr_block) {
            free_buffers(t);
            return nomem_acts(cn, fa + fs, err);
        }
        t->act_bytes = fa * sizeof(float);
        t->scr_bytes = fs * sizeof(float);
        count_bytes(t, (int64_t)(t->act_bytes + t->scr_bytes));
        t->cap_n = cn;
        t->cap_T = cT;
        layout_acts(t, t->act_block, cn);
        layout_scratch(t, t->scr_block, cn, cT);
        if (t->arch.pos == LLMOPS_POS_ROPE) tops_rope_table(t->rope_freqs, t->arch.rope_dim, cT, t->rope_cs, t->rope_sn);
    }
    if (sets > 1 && (!t->lay_block || n > t->cap_nl || sets > t->cap_sets)) {
        size_t cn = n > t->cap_nl ? n : t->cap_nl;
        int cs = sets > t->cap_sets ? sets : t->cap_sets;
        free_layer_block(t);
        size_t fl = layout_layers(t, NULL, cn, cs);
        t->lay_block = llmops_malloc(fl * sizeof(float));
        if (!t->lay_block) return nomem_acts(cn, fl, err);
        t->lay_bytes = fl * sizeof(float);
        count_bytes(t, (int64_t)t->lay_bytes);
        t->cap_nl = cn;
        t->cap_sets = cs;
        layout_layers(t, t->lay_block, cn, cs);
    }
    return LLMOPS_OK;
}

/* Elementwise work below this many elements runs on the calling thread. */
#define SMALL_WORK ((size_t)1 << 20)

/* ---- parallel elementwise pieces --------------------------------------------------------------- */

typedef struct {
    llmops_trainer *t;
    const float *x, *w, *b, *rs, *mu, *dy;
    float *y, *rso, *muo, *dx, *gw, *gb;
    size_t n, d;
} norm_job;

static void norm_fwd_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    norm_job *J = vj;
    size_t d = J->d;
    if (J->t->arch.norm == LLMOPS_NORM_RMS)
        tops_rmsnorm_fwd(J->x + b * d, J->w, J->y + b * d, J->rso + b, e - b, d, J->t->arch.norm_eps);
    else
        tops_layernorm_fwd(J->x + b * d, J->w, J->b, J->y + b * d, J->muo + b, J->rso + b, e - b, d,
                           J->t->arch.norm_eps);
}

static void norm_fwd(llmops_trainer *t, const float *x, const tvec *w, const tvec *b, float *y, float *rs, float *mu,
                     size_t n) {
    norm_job J = {.t = t, .x = x, .w = w->w, .b = b->w, .y = y, .rso = rs, .muo = mu, .n = n, .d = (size_t)t->arch.hidden_size};
    if (n * J.d < SMALL_WORK) norm_fwd_rows(&J, 0, n, 0); /* cheaper than waking the pool */
    else llmops_threadpool_parallel_for(t->pool, n, 32, norm_fwd_rows, &J);
}

static void norm_bwd_thread(void *vj, int ith, int nth) {
    norm_job *J = vj;
    size_t d = J->d, b = J->n * (size_t)ith / (size_t)nth, e = J->n * (size_t)(ith + 1) / (size_t)nth;
    float *gw = J->gw ? J->t->normpart + (size_t)ith * 2 * d : NULL, *gb = J->gb ? gw + d : NULL;
    if (gw) memset(gw, 0, 2 * d * sizeof(float));
    if (e <= b) return;
    if (J->t->arch.norm == LLMOPS_NORM_RMS)
        tops_rmsnorm_bwd(J->x + b * d, J->w, J->rs + b, J->dy + b * d, J->dx + b * d, gw, e - b, d);
    else tops_layernorm_bwd(J->x + b * d, J->w, J->mu + b, J->rs + b, J->dy + b * d, J->dx + b * d, gw, gb, e - b, d);
}

/* dx += ∂norm/∂x · dy; the weight and bias gradients (when trainable) += their parts. */
static void norm_bwd(llmops_trainer *t, const float *x, const tvec *w, const tvec *b, const float *rs, const float *mu,
                     const float *dy, float *dx, size_t n) {
    size_t d = (size_t)t->arch.hidden_size;
    norm_job J = {.t = t, .x = x, .w = w->w, .rs = rs, .mu = mu, .dy = dy, .dx = dx, .gw = w->g, .gb = b->g, .n = n, .d = d};
    int parts = n * d < SMALL_WORK ? 1 : t->nth;
    if (parts == 1) norm_bwd_thread(&J, 0, 1);
    else llmops_threadpool_run(t->pool, norm_bwd_thread, &J);
    for (int k = 0; k < parts; k++) {
        const float *pw = t->normpart + (size_t)k * 2 * d;
        if (w->g)
            for (size_t i = 0; i < d; i++) w->g[i] += pw[i];
        if (b->g)
            for (size_t i = 0; i < d; i++) b->g[i] += pw[d + i];
    }
}

typedef struct {
    llmops_trainer *t;
    float *buf;
    size_t ld;
    int T, inverse;
} rope_job;

static void rope_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    rope_job *J = vj;
    const llmops_arch *a = &J->t->arch;
    size_t half = (size_t)a->rope_dim / 2, qd = (size_t)(a->n_heads * a->head_dim);
    for (size_t i = b; i < e; i++) {
        size_t pos = i % (size_t)J->T;
        const float *cs = J->t->rope_cs + pos * half, *sn = J->t->rope_sn + pos * half;
        float *row = J->buf + i * J->ld;
        tops_rope(row, (int)a->n_heads, a->head_dim, a->rope_dim, cs, sn, J->t->rope_neox, J->inverse);
        tops_rope(row + qd, (int)a->n_kv_heads, a->head_dim, a->rope_dim, cs, sn, J->t->rope_neox, J->inverse);
    }
}

static void rope_apply(llmops_trainer *t, float *qkv, size_t n, int T, int inverse) {
    if (t->arch.pos != LLMOPS_POS_ROPE) return;
    rope_job J = {t, qkv, dims_of(t).W, T, inverse};
    if (n * (size_t)(t->arch.n_heads + t->arch.n_kv_heads) * (size_t)t->arch.rope_dim < SMALL_WORK) rope_rows(&J, 0, n, 0);
    else llmops_threadpool_parallel_for(t->pool, n, 16, rope_rows, &J);
}

typedef struct {
    llmops_trainer *t;
    lacts *A;
    int T;
} attn_job;

static void attn_fwd_items(void *vj, size_t b, size_t e, int ith) {
    attn_job *J = vj;
    dims D = dims_of(J->t);
    float *scr = J->t->attn_scr + (size_t)ith * tops_attn_scratch(J->t->cap_T);
    float scale = 1.0f / sqrtf((float)D.hd);
    for (size_t w = b; w < e; w++) {
        size_t s = w / (size_t)D.H, h = w % (size_t)D.H, g = h / (size_t)(D.H / D.G);
        const float *base = J->A->qkv + s * (size_t)J->T * D.W;
        tops_attn_fwd(base + h * D.hd, D.W, base + D.qd + g * D.hd, base + D.qd + D.kvd + g * D.hd, D.W,
                      J->A->att + s * (size_t)J->T * D.qd + h * D.hd, D.qd, J->T, (int64_t)D.hd,
                      J->t->arch.sliding_window, scale, scr);
    }
}

/*
 * Backward of one (sequence, head). With GQA the heads of a group would race on their shared
 * dk, dv, so each head writes its own slice of t->dkvh and attn_gqa_sum adds them up after.
 */
static void attn_bwd_items(void *vj, size_t b, size_t e, int ith) {
    attn_job *J = vj;
    llmops_trainer *t = J->t;
    dims D = dims_of(t);
    float *scr = t->attn_scr + (size_t)ith * tops_attn_scratch(t->cap_T);
    float scale = 1.0f / sqrtf((float)D.hd);
    for (size_t w = b; w < e; w++) {
        size_t s = w / (size_t)D.H, h = w % (size_t)D.H, g = h / (size_t)(D.H / D.G);
        size_t row0 = s * (size_t)J->T;
        const float *base = J->A->qkv + row0 * D.W;
        float *dbase = t->dqkv + row0 * D.W, *dk, *dv;
        size_t ldkv;
        if (t->dkvh) {
            dk = t->dkvh + row0 * 2 * D.qd + h * D.hd;
            dv = dk + D.qd;
            ldkv = 2 * D.qd;
        } else {
            dk = dbase + D.qd + g * D.hd;
            dv = dbase + D.qd + D.kvd + g * D.hd;
            ldkv = D.W;
        }
        tops_attn_bwd(base + h * D.hd, D.W, base + D.qd + g * D.hd, base + D.qd + D.kvd + g * D.hd, D.W,
                      t->datt + row0 * D.qd + h * D.hd, D.qd, dbase + h * D.hd, D.W, dk, dv, ldkv, J->T,
                      (int64_t)D.hd, t->arch.sliding_window, scale, scr);
    }
}

static void attn_gqa_sum(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    attn_job *J = vj;
    llmops_trainer *t = J->t;
    dims D = dims_of(t);
    size_t group = (size_t)(D.H / D.G);
    for (size_t i = b; i < e; i++) {
        const float *src = t->dkvh + i * 2 * D.qd;
        float *dk = t->dqkv + i * D.W + D.qd, *dv = dk + D.kvd;
        for (size_t h = 0; h < (size_t)D.H; h++) {
            size_t g = h / group;
            for (size_t c = 0; c < D.hd; c++) {
                dk[g * D.hd + c] += src[h * D.hd + c];
                dv[g * D.hd + c] += src[D.qd + h * D.hd + c];
            }
        }
    }
}

/* Attention of every (sequence, head); OpenBLAS runs single-threaded inside the pool's threads. */
static void attention(llmops_trainer *t, lacts *A, int n_seq, int T, int backward) {
    dims D = dims_of(t);
    attn_job J = {t, A, T};
    if (t->blas_threads > 1) tops_blas_threads(1);
    if (backward) {
        size_t n = (size_t)n_seq * (size_t)T;
        if (t->dkvh) memset(t->dkvh, 0, n * 2 * D.qd * sizeof(float));
        llmops_threadpool_parallel_for(t->pool, (size_t)n_seq * (size_t)D.H, 1, attn_bwd_items, &J);
        if (t->dkvh) llmops_threadpool_parallel_for(t->pool, n, 64, attn_gqa_sum, &J);
    } else llmops_threadpool_parallel_for(t->pool, (size_t)n_seq * (size_t)D.H, 1, attn_fwd_items, &J);
    if (t->blas_threads > 1) tops_blas_threads(t->blas_threads);
}

typedef struct {
    llmops_trainer *t;
    const float *ff;
    float *h, *dff;
    const float *dh;
} mlp_job;

static void mlp_fwd_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    mlp_job *J = vj;
    dims D = dims_of(J->t);
    llmops_act_kind k = J->t->arch.act;
    for (size_t i = b; i < e; i++) {
        const float *ff = J->ff + i * D.F;
        float *h = J->h + i * D.f;
        if (k == LLMOPS_ACT_SILU) {
            tops_vec_silu(ff, h, NULL, D.f);
            if (J->t->arch.gated_ffn)
                for (size_t j = 0; j < D.f; j++) h[j] *= ff[D.f + j];
        } else if (J->t->arch.gated_ffn) {
            for (size_t j = 0; j < D.f; j++) h[j] = tops_act(k, ff[j]) * ff[D.f + j];
        } else {
            for (size_t j = 0; j < D.f; j++) h[j] = tops_act(k, ff[j]);
        }
    }
}

/* Backward preparation: h as in the forward pass, and act(gate), act'(gate) parked in dff. */
static void mlp_prep_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    mlp_job *J = vj;
    dims D = dims_of(J->t);
    llmops_act_kind k = J->t->arch.act;
    for (size_t i = b; i < e; i++) {
        const float *ff = J->ff + i * D.F;
        float *h = J->h + i * D.f, *dff = J->dff + i * D.F;
        if (k == LLMOPS_ACT_SILU) { /* the same values as tops_act_both's, eight at a time */
            if (J->t->arch.gated_ffn) {
                tops_vec_silu(ff, dff + D.f, dff, D.f);
                for (size_t j = 0; j < D.f; j++) h[j] = dff[D.f + j] * ff[D.f + j];
            } else {
                tops_vec_silu(ff, h, dff, D.f);
            }
            continue;
        }
        for (size_t j = 0; j < D.f; j++) {
            float a, g;
            tops_act_both(k, ff[j], &a, &g);
            dff[j] = g;
            if (J->t->arch.gated_ffn) {
                dff[D.f + j] = a;
                h[j] = a * ff[D.f + j];
            } else {
                h[j] = a;
            }
        }
    }
}

/* dff = ∂/∂(gate | up) or ∂/∂(pre-activation) from dh, with what mlp_prep_rows parked. */
static void mlp_bwd_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    mlp_job *J = vj;
    dims D = dims_of(J->t);
    for (size_t i = b; i < e; i++) {
        const float *ff = J->ff + i * D.F, *dh = J->dh + i * D.f;
        float *dff = J->dff + i * D.F;
        if (J->t->arch.gated_ffn)
            for (size_t j = 0; j < D.f; j++) {
                float g = dff[j], a = dff[D.f + j];
                dff[j] = dh[j] * ff[D.f + j] * g;
                dff[D.f + j] = dh[j] * a;
            }
        else
            for (size_t j = 0; j < D.f; j++) dff[j] *= dh[j];
    }
}

/* ---- dropout on the input of a LoRA A branch ------------------------------------------------------ */

typedef struct {
    llmops_trainer *t;
    const float *x;
    size_t ldx, cols;
    float *y;   /* (n, cols) */
    float *acc; /* backward: acc (ld lda) += mask · y / (1 − p) */
    size_t lda;
    int id;
} drop_job;

static void drop_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    drop_job *J = vj;
    float p = J->t->p.lora_dropout, inv = 1.0f / (1.0f - p);
    for (size_t i = b; i < e; i++)
        for (size_t c = 0; c < J->cols; c++) {
            int keep = drop_keep(J->t->drop_key, J->id, (uint64_t)(i * J->cols + c), p);
            if (J->acc) {
                if (keep) J->acc[i * J->lda + c] += J->y[i * J->cols + c] * inv;
            } else {
                J->y[i * J->cols + c] = keep ? J->x[i * J->ldx + c] * inv : 0.0f;
            }
        }
}

/* ---- linears -------------------------------------------------------------------------------------- */

/* LoRA branch of a linear: u = drop(X) Aᵀ, and with add, Y += scale · u Bᵀ. */
static void lora_fwd(llmops_trainer *t, const tlin *li, const float *X, size_t ldx, size_t n, float *Y, size_t ldy,
                     float *u, int add) {
    if (li->ia < 0) return;
    size_t out = (size_t)li->W.rows, in = (size_t)li->W.cols, r = (size_t)t->p.lora_rank;
    const float *Xd = X;
    size_t ldd = ldx;
    if (t->drop_on) {
        drop_job J = {t, X, ldx, in, t->xdrop, NULL, 0, li->id};
        llmops_threadpool_parallel_for(t->pool, n, 16, drop_rows, &J);
        Xd = t->xdrop;
        ldd = in;
    }
    tops_gemm(0, 1, n, r, in, 1.0f, Xd, ldd, t->t[li->ia].w, in, 0.0f, u, r);
    if (add) tops_gemm_par(t->mm.gemm_pool, 0, 1, n, out, r, t->lora_scale, u, r, t->t[li->ib].w, r, 1.0f, Y, ldy);
}

/* Y (ldy) = X Wᵀ + b + scale · (drop(X) Aᵀ) Bᵀ (+ beta·Y); with main = 0 only u = drop(X) Aᵀ. */
static void lin_fwd(llmops_trainer *t, const tlin *li, const float *X, size_t ldx, size_t n, float *Y, size_t ldy,
                    float beta, float *u, int main) {
    if (main) {
        tops_linear_fwd(&t->mm, &li->W, X, ldx, n, Y, ldy, beta);
        if (li->b.w) tops_bias_fwd(li->b.w, Y, ldy, n, (size_t)li->W.rows);
    }
    lora_fwd(t, li, X, ldx, n, Y, ldy, u, main);
}

/* LoRA factor gradients, and dX (ld lddx, +=) of the branch unless NULL. */
static void lora_bwd(llmops_trainer *t, const tlin *li, const float *X, size_t ldx, size_t n, const float *dY,
                     size_t ldy, float *dX, size_t lddx, const float *u) {
    if (li->ia < 0) return;
    size_t out = (size_t)li->W.rows, in = (size_t)li->W.cols, r = (size_t)t->p.lora_rank;
    llmops_train_tensor *A = &t->t[li->ia], *B = &t->t[li->ib];
    float s = t->lora_scale;
    tops_gemm(0, 0, n, r, out, s, dY, ldy, B->w, r, 0.0f, t->du, r);
    tops_gemm(1, 0, out, r, n, s, dY, ldy, u, r, 1.0f, B->g, r); /* (out × r): small */
    const float *Xd = X;
    size_t ldd = ldx;
    if (t->drop_on) {
        drop_job J = {t, X, ldx, in, t->xdrop, NULL, 0, li->id};
        llmops_threadpool_parallel_for(t->pool, n, 16, drop_rows, &J);
        Xd = t->xdrop;
        ldd = in;
    }
    tops_gemm_par(t->mm.gemm_pool, 1, 0, r, in, n, 1.0f, t->du, r, Xd, ldd, 1.0f, A->g, in);
    if (!dX) return;
    if (t->drop_on) {
        tops_gemm_par(t->mm.gemm_pool, 0, 0, n, in, r, 1.0f, t->du, r, A->w, in, 0.0f, t->xdrop, in);
        drop_job J = {t, NULL, 0, in, t->xdrop, dX, lddx, li->id};
        llmops_threadpool_parallel_for(t->pool, n, 16, drop_rows, &J);
    } else {
        tops_gemm_par(t->mm.gemm_pool, 0, 0, n, in, r, 1.0f, t->du, r, A->w, in, 1.0f, dX, lddx);
    }
}

/* Gradients of lin_fwd: weights (when trainable), LoRA factors, and dX (ld lddx, +=) unless NULL. */
static void lin_bwd(llmops_trainer *t, const tlin *li, const float *X, size_t ldx, size_t n, const float *dY,
                    size_t ldy, float *dX, size_t lddx, const float *u) {
    tops_linear_bwd_w(&t->mm, &li->W, dY, ldy, X, ldx, n);
    if (li->b.g) tops_bias_bwd(li->b.g, dY, ldy, n, (size_t)li->W.rows);
    tops_linear_bwd_x(&t->mm, &li->W, dY, ldy, n, dX, lddx);
    lora_bwd(t, li, X, ldx, n, dY, ldy, dX, lddx, u);
}

/* Whether the main products of lins[0..nl) can share one parallel region (F32 weights in place). */
static int multi_ok(const llmops_trainer *t, tlin *const *lins, int nl) {
    if (!t->mm.gemm_pool || nl < 2) return 0;
    for (int i = 0; i < nl; i++)
        if (!tops_mat_plain_f32(&lins[i]->W)) return 0;
    return 1;
}

/* lin_fwd (beta 0) of linears sharing X, writing columns li->off.. of Y. */
static void lin_fwd_multi(llmops_trainer *t, tlin *const *lins, int nl, const float *X, size_t ldx, size_t n, float *Y,
                          size_t ldy, float *const *us) {
    if (!multi_ok(t, lins, nl)) {
        for (int i = 0; i < nl; i++) lin_fwd(t, lins[i], X, ldx, n, Y + lins[i]->off, ldy, 0.0f, us[i], 1);
        return;
    }
    tops_gemm_desc d[LIN_N];
    for (int i = 0; i < nl; i++) {
        const tops_mat *W = &lins[i]->W;
        d[i] = (tops_gemm_desc){0, 1, n, (size_t)W->rows, (size_t)W->cols, 1.0f, X, ldx, W->data, (size_t)W->cols,
                                0.0f, Y + lins[i]->off, ldy};
    }
    tops_gemm_batch(t->mm.gemm_pool, d, (size_t)nl);
    for (int i = 0; i < nl; i++) {
        if (lins[i]->b.w) tops_bias_fwd(lins[i]->b.w, Y + lins[i]->off, ldy, n, (size_t)lins[i]->W.rows);
        lora_fwd(t, lins[i], X, ldx, n, Y + lins[i]->off, ldy, us[i], 1);
    }
}

/* lin_bwd of linears sharing X (and dX), their output gradients at columns li->off.. of dY. */
static void lin_bwd_multi(llmops_trainer *t, tlin *const *lins, int nl, const float *X, size_t ldx, size_t n,
                          const float *dY, size_t ldy, float *dX, size_t lddx, float *const *us) {
    if (!multi_ok(t, lins, nl)) {
        for (int i = 0; i < nl; i++) lin_bwd(t, lins[i], X, ldx, n, dY + lins[i]->off, ldy, dX, lddx, us[i]);
        return;
    }
    tops_gemm_desc d[LIN_N];
    size_t nd = 0;
    for (int i = 0; i < nl; i++) {
        const tops_mat *W = &lins[i]->W;
        if (W->g)
            d[nd++] = (tops_gemm_desc){1, 0, (size_t)W->rows, (size_t)W->cols, n, 1.0f, dY + lins[i]->off, ldy, X, ldx,
                                       1.0f, W->g, (size_t)W->cols};
        if (lins[i]->b.g) tops_bias_bwd(lins[i]->b.g, dY + lins[i]->off, ldy, n, (size_t)W->rows);
    }
    if (nd) tops_gemm_batch(t->mm.gemm_pool, d, nd);
    if (dX) { /* every product adds into the same columns of dX: same n, same slices */
        for (int i = 0; i < nl; i++) {
            const tops_mat *W = &lins[i]->W;
            d[i] = (tops_gemm_desc){0, 0, n, (size_t)W->cols, (size_t)W->rows, 1.0f, dY + lins[i]->off, ldy, W->data,
                                    (size_t)W->cols, 1.0f, dX, lddx};
        }
        tops_gemm_batch(t->mm.gemm_pool, d, (size_t)nl);
    }
    for (int i = 0; i < nl; i++) lora_bwd(t, lins[i], X, ldx, n, dY + lins[i]->off, ldy, dX, lddx, us[i]);
}

/* The present linears among slots [s0, s1] of layer L, and their u buffers. */
static int gather_lins(tlayer *L, lacts *A, int s0, int s1, tlin **lins, float **us) {
    int nl = 0;
    for (int s = s0; s <= s1; s++) {
        tlin *li = &L->lin[s];
        if (!li->present) continue;
        lins[nl] = li;
        us[nl++] = A->u[li->ui < 0 ? 0 : li->ui];
    }
    return nl;
}

/* ---- one layer ------------------------------------------------------------------------------------- */

/* Forward of layer l from x (n, d) into x_out (NULL: stop after what the backward pass needs). */
static void layer_fwd(llmops_trainer *t, int l, const float *x, lacts *A, float *x_out, int n_seq, int T) {
    dims D = dims_of(t);
    tlayer *L = &t->layers[l];
    size_t n = (size_t)n_seq * (size_t)T;
    norm_fwd(t, x, &L->n1w, &L->n1b, A->hn1, A->rs1, A->mu1, n);
    tlin *lins[LIN_N];
    float *us[LIN_N];
    int nl = gather_lins(L, A, LIN_Q, LIN_V, lins, us);
    lin_fwd_multi(t, lins, nl, A->hn1, D.d, n, A->qkv, D.W, us);
    rope_apply(t, A->qkv, n, T, 0);
    attention(t, A, n_seq, T, 0);
    memcpy(A->xmid, x, n * D.d * sizeof(float));
    lin_fwd(t, &L->lin[LIN_O], A->att, D.qd, n, A->xmid, D.d, 1.0f, A->u[L->lin[LIN_O].ui < 0 ? 0 : L->lin[LIN_O].ui], 1);
    norm_fwd(t, A->xmid, &L->n2w, &L->n2b, A->hn2, A->rs2, A->mu2, n);
    nl = gather_lins(L, A, LIN_GATE, LIN_UP, lins, us);
    lin_fwd_multi(t, lins, nl, A->hn2, D.d, n, A->ff, D.F, us);
    tlin *dn = &L->lin[LIN_DOWN];
    if (!x_out && dn->ia < 0) return;
    mlp_job M = {t, A->ff, t->h, NULL, NULL};
    llmops_threadpool_parallel_for(t->pool, n, 16, mlp_fwd_rows, &M);
    if (x_out) memcpy(x_out, A->xmid, n * D.d * sizeof(float));
    lin_fwd(t, dn, t->h, D.f, n, x_out, D.d, 1.0f, A->u[dn->ui < 0 ? 0 : dn->ui], x_out != NULL);
}

/* Backward of layer l: t->dx holds ∂loss/∂x_out and becomes ∂loss/∂x (when need_dx). */
static void layer_bwd(llmops_trainer *t, int l, const float *x, lacts *A, int n_seq, int T, int need_dx) {
    dims D = dims_of(t);
    tlayer *L = &t->layers[l];
    size_t n = (size_t)n_seq * (size_t)T;
#define U(li) A->u[(li)->ui < 0 ? 0 : (li)->ui]
    /* MLP */
    mlp_job M = {t, A->ff, t->h, t->dff, t->dh};
    llmops_threadpool_parallel_for(t->pool, n, 16, mlp_prep_rows, &M);
    memset(t->dh, 0, n * D.f * sizeof(float));
    tlin *dn = &L->lin[LIN_DOWN];
    lin_bwd(t, dn, t->h, D.f, n, t->dx, D.d, t->dh, D.f, U(dn));
    llmops_threadpool_parallel_for(t->pool, n, 16, mlp_bwd_rows, &M);
    memset(t->dhn, 0, n * D.d * sizeof(float));
    tlin *lins[LIN_N];
    float *us[LIN_N];
    int nl = gather_lins(L, A, LIN_GATE, LIN_UP, lins, us);
    lin_bwd_multi(t, lins, nl, A->hn2, D.d, n, t->dff, D.F, t->dhn, D.d, us);
    norm_bwd(t, A->xmid, &L->n2w, &L->n2b, A->rs2, A->mu2, t->dhn, t->dx, n);
    /* attention */
    memset(t->datt, 0, n * D.qd * sizeof(float));
    tlin *o = &L->lin[LIN_O];
    lin_bwd(t, o, A->att, D.qd, n, t->dx, D.d, t->datt, D.qd, U(o));
    memset(t->dqkv, 0, n * D.W * sizeof(float));
    attention(t, A, n_seq, T, 1);
    rope_apply(t, t->dqkv, n, T, 1);
    int need_dhn = need_dx || L->n1w.g || L->n1b.g;
    if (need_dhn) memset(t->dhn, 0, n * D.d * sizeof(float));
    nl = gather_lins(L, A, LIN_Q, LIN_V, lins, us);
    lin_bwd_multi(t, lins, nl, A->hn1, D.d, n, t->dqkv, D.W, need_dhn ? t->dhn : NULL, D.d, us);
    if (need_dhn) norm_bwd(t, x, &L->n1w, &L->n1b, A->rs1, A->mu1, t->dhn, t->dx, n);
#undef U
}

/* ---- embeddings and the LM head ----------------------------------------------------------------------- */

static void embed(llmops_trainer *t, const int32_t *tokens, size_t n, int T, float *x) {
    size_t d = (size_t)t->arch.hidden_size;
    for (size_t i = 0; i < n; i++) {
        float *xr = x + i * d;
        mm_dequant_row(t->tok.type, (const uint8_t *)t->tok.data + (size_t)tokens[i] * t->tok.row_bytes, xr, d);
        if (t->pos.data) {
            float *pe = t->dxc; /* a row of scratch */
            mm_dequant_row(t->pos.type, (const uint8_t *)t->pos.data + (i % (size_t)T) * t->pos.row_bytes, pe, d);
            for (size_t k = 0; k < d; k++) xr[k] += pe[k];
        }
    }
}

static void embed_bwd(llmops_trainer *t, const int32_t *tokens, size_t n, int T) {
    size_t d = (size_t)t->arch.hidden_size;
    for (size_t i = 0; i < n; i++) {
        const float *g = t->dx + i * d;
        if (t->tok.g) {
            float *dst = t->tok.g + (size_t)tokens[i] * d;
            for (size_t k = 0; k < d; k++) dst[k] += g[k];
        }
        if (t->pos.g) {
            float *dst = t->pos.g + (i % (size_t)T) * d;
            for (size_t k = 0; k < d; k++) dst[k] += g[k];
        }
    }
}

typedef struct {
    llmops_trainer *t;
    const int32_t *targets;
    size_t r0;
    float scale;
    int grad;
    double *loss;
} ce_job;

static void ce_rows(void *vj, size_t b, size_t e, int ith) {
    (void)ith;
    ce_job *J = vj;
    size_t V = (size_t)J->t->arch.vocab_size;
    for (size_t i = b; i < e; i++) {
        int32_t row = J->t->rows[J->r0 + i];
        J->loss[i] = tops_ce_row(J->t->logits + i * V, (int64_t)V, J->targets[row], J->scale, J->grad);
    }
}

/* Final norm, logits of the counted positions chunk by chunk, cross-entropy; with grad, t->dx = ∂/∂xs[L]. */
static void head(llmops_trainer *t, const int32_t *targets, size_t n, float scale, int grad, double *loss_sum,
                 int64_t *n_counted) {
    dims D = dims_of(t);
    const float *xL = t->xs + (size_t)D.L * n * D.d;
    norm_fwd(t, xL, &t->onw, &t->onb, t->hf, t->rsf, t->muf, n);
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        if (targets[i] >= 0) t->rows[nc++] = (int32_t)i;
    if (grad) memset(t->dhn, 0, n * D.d * sizeof(float));
    double total = 0;
    double *rowloss = t->rowloss;
    for (size_t r0 = 0; r0 < nc; r0 += t->chunk_rows) {
        size_t m = nc - r0 < t->chunk_rows ? nc - r0 : t->chunk_rows;
        for (size_t i = 0; i < m; i++) memcpy(t->xc + i * D.d, t->hf + (size_t)t->rows[r0 + i] * D.d, D.d * sizeof(float));
        tops_linear_fwd(&t->mm, &t->out, t->xc, D.d, m, t->logits, D.V, 0.0f);
        ce_job J = {t, targets, r0, scale, grad, rowloss};
        llmops_threadpool_parallel_for(t->pool, m, 4, ce_rows, &J);
        for (size_t i = 0; i < m; i++) total += rowloss[i];
        if (!grad) continue;
        memset(t->dxc, 0, m * D.d * sizeof(float));
        tops_linear_bwd_x(&t->mm, &t->out, t->logits, D.V, m, t->dxc, D.d);
        tops_linear_bwd_w(&t->mm, &t->out, t->logits, D.V, t->xc, D.d, m);
        for (size_t i = 0; i < m; i++) {
            float *dst = t->dhn + (size_t)t->rows[r0 + i] * D.d;
            const float *src = t->dxc + i * D.d;
            for (size_t k = 0; k < D.d; k++) dst[k] += src[k];
        }
    }
    if (grad) {
        memset(t->dx, 0, n * D.d * sizeof(float));
        norm_bwd(t, xL, &t->onw, &t->onb, t->rsf, t->muf, t->dhn, t->dx, n);
    }
    *loss_sum = total;
    *n_counted = (int64_t)nc;
}

/* ---- the passes ---------------------------------------------------------------------------------------- */

static llmops_status check_batch(const llmops_trainer *t, const int32_t *tokens, const int32_t *targets, int n_seq,
                                 int seq_len, llmops_error *err) {
    const llmops_arch *a = &t->arch;
    if (!tokens) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no tokens");
    if (n_seq < 1 || seq_len < 1)
        return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "batch shape %d × %d: both must be at least 1", n_seq, seq_len);
    if (seq_len > a->max_positions || (t->pos.data && seq_len > t->pos.rows))
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "seq_len %d exceeds the model's context length %lld", seq_len,
                                (long long)(t->pos.data && t->pos.rows < a->max_positions ? t->pos.rows : a->max_positions));
    if ((int64_t)n_seq * seq_len > ((int64_t)1 << 24))
        return llmops_error_set(err, LLMOPS_ERR_LIMIT, "batch of %d × %d tokens is too large (at most 2^24)", n_seq, seq_len);
    size_t n = (size_t)n_seq * (size_t)seq_len;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= a->vocab_size)
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "token %d at sequence %zu position %zu is outside the vocabulary of %lld",
                                    tokens[i], i / (size_t)seq_len, i % (size_t)seq_len, (long long)a->vocab_size);
        if (targets && (targets[i] < -1 || targets[i] >= a->vocab_size))
            return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG,
                                    "target %d at sequence %zu position %zu is outside the vocabulary of %lld (use -1 to skip)",
                                    targets[i], i / (size_t)seq_len, i % (size_t)seq_len, (long long)a->vocab_size);
    }
    return LLMOPS_OK;
}

/* Embeddings and every layer; per_layer: keep each layer's activations (else set 0 is reused). */
static void forward_layers(llmops_trainer *t, const int32_t *tokens, int n_seq, int T, int per_layer) {
    dims D = dims_of(t);
    size_t n = (size_t)n_seq * (size_t)T;
    embed(t, tokens, n, T, t->xs);
    for (int l = 0; l < D.L; l++)
        layer_fwd(t, l, t->xs + (size_t)l * n * D.d, &t->sets[per_layer ? l : 0], t->xs + (size_t)(l + 1) * n * D.d, n_seq, T);
}

llmops_status llmops_trainer_forward_backward(llmops_trainer *t, const int32_t *tokens, const int32_t *targets,
                                              int n_seq, int seq_len, float loss_scale, double *loss_sum,
                                              int64_t *n_counted, llmops_error *err) {
    if (!targets) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no targets");
    llmops_status st = check_batch(t, tokens, targets, n_seq, seq_len, err);
    if (st) return st;
    dims D = dims_of(t);
    size_t n = (size_t)n_seq * (size_t)seq_len;
    int per_layer = !t->p.recompute;
    if ((st = ensure_buffers(t, n, seq_len, per_layer ? D.L : 1, err))) return st;
    tops_blas_threads(t->blas_threads);
    t->drop_key = next64(&t->rng);
    t->drop_on = t->p.lora_dropout > 0 && D.r > 0;
    forward_layers(t, tokens, n_seq, seq_len, per_layer);
    double loss;
    int64_t cnt;
    head(t, targets, n, loss_scale, 1, &loss, &cnt);
    int emb_train = t->tok.g != NULL || t->pos.g != NULL;
    for (int l = cnt ? D.L - 1 : -1; l >= 0; l--) { /* nothing counted: every gradient is zero */
        const float *x = t->xs + (size_t)l * n * D.d;
        lacts *A = &t->sets[per_layer ? l : 0];
        if (!per_layer) layer_fwd(t, l, x, A, NULL, n_seq, seq_len);
        layer_bwd(t, l, x, A, n_seq, seq_len, l > 0 || emb_train);
    }
    if (emb_train && cnt) embed_bwd(t, tokens, n, seq_len);
    t->drop_on = 0;
    if (loss_sum) *loss_sum = loss;
    if (n_counted) *n_counted = cnt;
    return LLMOPS_OK;
}

llmops_status llmops_trainer_eval(llmops_trainer *t, const int32_t *tokens, const int32_t *targets, int n_seq,
                                  int seq_len, double *loss_sum, int64_t *n_counted, llmops_error *err) {
    if (!targets) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no targets");
    llmops_status st = check_batch(t, tokens, targets, n_seq, seq_len, err);
    if (st) return st;
    size_t n = (size_t)n_seq * (size_t)seq_len;
    if ((st = ensure_buffers(t, n, seq_len, 1, err))) return st;
    tops_blas_threads(t->blas_threads);
    t->drop_on = 0;
    forward_layers(t, tokens, n_seq, seq_len, 0);
    double loss;
    int64_t cnt;
    head(t, targets, n, 1.0f, 0, &loss, &cnt);
    if (loss_sum) *loss_sum = loss;
    if (n_counted) *n_counted = cnt;
    return LLMOPS_OK;
}

llmops_status llmops_trainer_logits(llmops_trainer *t, const int32_t *tokens, int n_seq, int seq_len, float *out,
                                    llmops_error *err) {
    llmops_status st = check_batch(t, tokens, NULL, n_seq, seq_len, err);
    if (st) return st;
    if (!out) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "no output buffer");
    dims D = dims_of(t);
    size_t n = (size_t)n_seq * (size_t)seq_len;
    if ((st = ensure_buffers(t, n, seq_len, 1, err))) return st;
    tops_blas_threads(t->blas_threads);
    t->drop_on = 0;
    forward_layers(t, tokens, n_seq, seq_len, 0);
    norm_fwd(t, t->xs + (size_t)D.L * n * D.d, &t->onw, &t->onb, t->hf, t->rsf, t->muf, n);
    for (size_t r0 = 0; r0 < n; r0 += t->chunk_rows) {
        size_t m = n - r0 < t->chunk_rows ? n - r0 : t->chunk_rows;
        tops_linear_fwd(&t->mm, &t->out, t->hf + r0 * D.d, D.d, m, out + r0 * D.V, D.V, 0.0f);
    }
    return LLMOPS_OK;
}
