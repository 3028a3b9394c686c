/*
 * llama2.c checkpoints and tokenizer.bin.
 *
 * The layouts are those written by karpathy/llama2.c export.py
 * (legacy_export: 7 int32, then tok_embeddings, attention_norm, wq, wk, wv,
 * wo, ffn_norm, w1, w2, w3, norm, freqs_cos, freqs_sin, [output];
 * version1_export: "ak42", version, 7 int32, shared flag byte, zero padding to
 * 256, then attention_norm, ffn_norm, norm, tok_embeddings, wq, wk, wv, wo,
 * w1, w2, w3, [output]) and tokenizer.py (int32 max_token_length, then per
 * piece float32 score, int32 length, bytes). Offsets are computed here by hand
 * and values read with fseek/fread, not through the library.
 */
#include <math.h>
#include <stdlib.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/llama2c.h"

/* ---- helpers ------------------------------------------------------------------------ */

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n + 16 : 16);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return p;
}

static int read_f32_at(const char *path, long off, float *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fseek(f, off, SEEK_SET) == 0 && fread(out, 4, 1, f) == 1;
    fclose(f);
    return ok;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- stories260K.bin --------------------------------------------------------------------- */

/*
 * dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads (kv_dim 32), vocab 512,
 * seq_len 512, head_size 8. Float counts in export order and the byte offsets
 * they give after the 28-byte header:
 *   token_embedding_table 512·64   = 32768 @ 28
 *   rms_att_weight        5·64     =   320 @ 131100
 *   wq                    5·64·64  = 20480 @ 132380
 *   wk                    5·32·64  = 10240 @ 214300
 *   wv                    5·32·64  = 10240 @ 255260
 *   wo                    5·64·64  = 20480 @ 296220
 *   rms_ffn_weight        5·64     =   320 @ 378140
 *   w1                    5·172·64 = 55040 @ 379420
 *   w2                    5·64·172 = 55040 @ 599580
 *   w3                    5·172·64 = 55040 @ 819740
 *   rms_final_weight      64              @ 1039900
 *   freq_cis_real         512·4    =  2048 @ 1040156
 *   freq_cis_imag         512·4    =  2048 @ 1048348
 *   end                                     1056540 (the file size)
 */
static const struct {
    const char *name;
    uint32_t n_dims;
    uint64_t shape[3];
    uint64_t offset;
} k_stories[] = {
    {"token_embedding_table", 2, {512, 64, 0}, 28},
    {"rms_att_weight", 2, {5, 64, 0}, 131100},
    {"wq", 3, {5, 64, 64}, 132380},
    {"wk", 3, {5, 32, 64}, 214300},
    {"wv", 3, {5, 32, 64}, 255260},
    {"wo", 3, {5, 64, 64}, 296220},
    {"rms_ffn_weight", 2, {5, 64, 0}, 378140},
    {"w1", 3, {5, 172, 64}, 379420},
    {"w2", 3, {5, 64, 172}, 599580},
    {"w3", 3, {5, 172, 64}, 819740},
    {"rms_final_weight", 1, {64, 0, 0}, 1039900},
    {"freq_cis_real", 2, {512, 4, 0}, 1040156},
    {"freq_cis_imag", 2, {512, 4, 0}, 1048348},
};

TEST(llama2c_stories260k_header_and_table) {
    const char *path = test_asset("llm/stories260K/stories260K.bin");
    if (!path) SKIP("llm/stories260K/stories260K.bin is not among the assets");
    llmops_error err = {0};
    llmops_llama2c *m = NULL;
    CHECK_OK(llmops_llama2c_open(path, &m, &err), err);
    CHECK_EQ_INT(m->version, 0);
    CHECK_EQ_INT(m->dim, 64);
    CHECK_EQ_INT(m->hidden_dim, 172);
    CHECK_EQ_INT(m->n_layers, 5);
    CHECK_EQ_INT(m->n_heads, 8);
    CHECK_EQ_INT(m->n_kv_heads, 4);
    CHECK_EQ_INT(m->vocab_size, 512);
    CHECK_EQ_INT(m->seq_len, 512);
    CHECK_EQ_INT(m->shared_classifier, 1);
    CHECK_EQ_INT(m->size, 1056540);
    CHECK_EQ_INT(m->n_tensors, sizeof k_stories / sizeof k_stories[0]);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const llmops_llama2c_tensor *t = &m->tensors[i];
        CHECK_EQ_STR(t->name, k_stories[i].name);
        CHECK_EQ_INT(t->n_dims, k_stories[i].n_dims);
        for (int k = 0; k < 3; k++) CHECK_EQ_INT(t->shape[k], k_stories[i].shape[k]);
        CHECK_MSG(t->offset == k_stories[i].offset, "%s at %llu, expected %llu", t->name,
                  (unsigned long long)t->offset, (unsigned long long)k_stories[i].offset);
        CHECK((const unsigned char *)t->data == m->data + k_stories[i].offset);
        CHECK(llmops_llama2c_find(m, k_stories[i].name) == t);
    }
    CHECK(llmops_llama2c_find(m, "wcls") == NULL); /* shared with the embedding */
    CHECK(llmops_llama2c_find(m, "output") == NULL);
    CHECK(llmops_llama2c_sniff(m->data, m->size) == 1);
    CHECK(llmops_llama2c_sniff(m->data, m->size - 4) == 0);

    /* the descriptor run.c implies */
    llmops_arch a;
    llmops_llama2c_arch(m, &a);
    CHECK_EQ_INT(a.family, LLMOPS_ARCH_LLAMA);
    CHECK_EQ_STR(a.hf_model_type, "llama");
    CHECK_EQ_INT(a.hidden_size, 64);
    CHECK_EQ_INT(a.ffn_size, 172);
    CHECK_EQ_INT(a.n_layers, 5);
    CHECK_EQ_INT(a.n_heads, 8);
    CHECK_EQ_INT(a.n_kv_heads, 4);
    CHECK_EQ_INT(a.head_dim, 8);
    CHECK_EQ_INT(a.rope_dim, 8);
    CHECK_EQ_INT(a.vocab_size, 512);
    CHECK_EQ_INT(a.max_positions, 512);
    CHECK(a.norm_eps == 1e-5 && a.rope_theta == 10000.0);
    CHECK(a.norm == LLMOPS_NORM_RMS && a.act == LLMOPS_ACT_SILU && a.gated_ffn && a.pos == LLMOPS_POS_ROPE);
    CHECK_EQ_INT(a.tie_embeddings, 1);
    CHECK_EQ_INT(a.bos_token_id, 1);
    CHECK_EQ_INT(a.eos_token_id, 2);
    CHECK_OK(llmops_arch_validate(&a, &err), err);
    llmops_llama2c_free(m);
}

TEST(llama2c_stories260k_weights_at_hand_offsets) {
    const char *path = test_asset("llm/stories260K/stories260K.bin");
    if (!path) SKIP("llm/stories260K/stories260K.bin is not among the assets");
    llmops_error err = {0};
    llmops_llama2c *m = NULL;
    CHECK_OK(llmops_llama2c_open(path, &m, &err), err);
    /* name, flat index into the tensor, byte offset in the file (by hand) */
    static const struct {
        const char *name;
        uint64_t index;
        long offset;
    } w[] = {
        {"token_embedding_table", 0, 28},
        {"token_embedding_table", 300 * 64 + 7, 28 + (300 * 64 + 7) * 4},
        {"rms_att_weight", 3 * 64 + 1, 131100 + (3 * 64 + 1) * 4},
        {"wq", (4 * 64 + 63) * 64 + 0, 132380 + ((4 * 64 + 63) * 64 + 0) * 4},
        {"wk", (1 * 32 + 31) * 64 + 63, 214300 + ((1 * 32 + 31) * 64 + 63) * 4},
        {"wv", 0, 255260},
        {"wo", (2 * 64 + 5) * 64 + 9, 296220 + ((2 * 64 + 5) * 64 + 9) * 4},
        {"rms_ffn_weight", 4 * 64 + 63, 378140 + (4 * 64 + 63) * 4},
        {"w1", (0 * 172 + 171) * 64 + 1, 379420 + ((0 * 172 + 171) * 64 + 1) * 4},
        {"w2", (2 * 64 + 10) * 172 + 171, 599580 + ((2 * 64 + 10) * 172 + 171) * 4},
        {"w3", 5 * 172 * 64 - 1, 1039896}, /* the last float before rms_final_weight */
        {"rms_final_weight", 63, 1039900 + 63 * 4},
        {"freq_cis_imag", 511 * 4 + 3, 1056536}, /* the last float of the file */
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        const llmops_llama2c_tensor *t = llmops_llama2c_find(m, w[i].name);
        CHECK(t != NULL);
        float want;
        CHECK(read_f32_at(path, w[i].offset, &want));
        CHECK_MSG(bits(t->data[w[i].index]) == bits(want), "%s[%llu] = %.9g, file at %ld holds %.9g", w[i].name,
                  (unsigned long long)w[i].index, (double)t->data[w[i].index], w[i].offset, (double)want);
    }
    /* RMSNorm gains of a trained model are positive and of order 1 */
    const llmops_llama2c_tensor *g = llmops_llama2c_find(m, "rms_final_weight");
    for (int i = 0; i < 64; i++) CHECK_MSG(g->data[i] > 0.05f && g->data[i] < 20.0f, "gain %d = %g", i, (double)g->data[i]);
    /*
     * freqs_cos/freqs_sin are known in closed form (model.py
     * precompute_freqs_cis): pos · 10000^(−2i/8) for i < 4. If the table were
     * misplaced by even one float these would not match.
     */
    const llmops_llama2c_tensor *re = llmops_llama2c_find(m, "freq_cis_real");
    const llmops_llama2c_tensor *im = llmops_llama2c_find(m, "freq_cis_imag");
    for (int pos = 0; pos < 512; pos++)
        for (int i = 0; i < 4; i++) {
            double ang = pos * pow(10000.0, -2.0 * i / 8.0);
            CHECK_MSG(fabs(re->data[pos * 4 + i] - cos(ang)) < 2e-4, "cos[%d][%d] = %g vs %g", pos, i,
                      (double)re->data[pos * 4 + i], cos(ang));
            CHECK_MSG(fabs(im->data[pos * 4 + i] - sin(ang)) < 2e-4, "sin[%d][%d] = %g vs %g", pos, i,
                      (double)im->data[pos * 4 + i], sin(ang));
        }
    llmops_llama2c_free(m);
}

/* ---- tok512.bin -------------------------------------------------------------------------- */

TEST(llama2c_tok512_vocab) {
    const char *path = test_asset("llm/stories260K/tok512.bin");
    if (!path) SKIP("llm/stories260K/tok512.bin is not among the assets");
    llmops_error err = {0};
    llmops_llama2c_vocab v;
    CHECK_OK(llmops_llama2c_vocab_load(path, 512, &v, &err), err);
    CHECK_EQ_INT(v.n, 512);
    CHECK_EQ_STR(v.pieces[0], "<unk>");
    CHECK_EQ_STR(v.pieces[1], "\n<s>\n");  /* tokenizer.py writes BOS and EOS this way */
    CHECK_EQ_STR(v.pieces[2], "\n</s>\n");
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        CHECK_EQ_STR(v.pieces[3 + b], want);
        CHECK_EQ_INT(v.lens[3 + b], 6);
    }
    CHECK(v.pieces[259][0] == ' '); /* '▁' is stored as a space */

    /* every entry against an independent walk over the raw bytes */
    size_t size = 0;
    unsigned char *raw = slurp(path, &size);
    CHECK(raw != NULL);
    int32_t mtl;
    memcpy(&mtl, raw, 4);
    CHECK_EQ_INT(v.max_token_length, mtl);
    size_t pos = 4;
    uint32_t longest = 0;
    for (size_t i = 0; i < 512; i++) {
        float score;
        int32_t len;
        memcpy(&score, raw + pos, 4);
        memcpy(&len, raw + pos + 4, 4);
        CHECK_MSG(bits(v.scores[i]) == bits(score), "score %zu", i);
        CHECK_EQ_INT(v.lens[i], len);
        CHECK(!memcmp(v.pieces[i], raw + pos + 8, (size_t)len) && v.pieces[i][len] == '\0');
        if ((uint32_t)len > longest) longest = (uint32_t)len;
        pos += 8 + (size_t)len;
    }
    CHECK_EQ_INT(pos, size);
    CHECK_EQ_INT(longest, mtl); /* tokenizer.py stores the longest piece's length */
    free(raw);
    llmops_llama2c_vocab_free(&v);
    llmops_llama2c_vocab_free(&v); /* idempotent */

    /* the count the model expects */
    CHECK_ERR(llmops_llama2c_vocab_load(path, 500, &v, &err), LLMOPS_ERR_FORMAT, err,
              "holds 512 tokens but the model has a vocabulary of 500");
    CHECK(strstr(err.msg, "tok512.bin"));
    CHECK_OK(llmops_llama2c_vocab_load(path, 0, &v, &err), err);
    CHECK_EQ_INT(v.n, 512);
    llmops_llama2c_vocab_free(&v);
    CHECK_ERR(llmops_llama2c_vocab_load(test_tmpfile("nope.bin"), 0, &v, &err), LLMOPS_ERR_IO, err, "nope.bin");
}

/* ---- synthetic checkpoints ------------------------------------------------------------------ */

/* A small network: dim 16, hidden 40, 2 layers, 4 heads, 2 KV heads (kv_dim 8,
 * head_size 4), vocab 24, seq_len 8. */
enum { D = 16, H = 40, NL = 2, NH = 4, NKV = 2, V = 24, S = 8, KVD = D * NKV / NH, HS = D / NH };

typedef struct {
    const char *name;
    size_t n;
} group;

/* export.py's order for version 1 */
static const group k_v1[] = {
    {"rms_att_weight", NL * D}, {"rms_ffn_weight", NL * D}, {"rms_final_weight", D},
    {"token_embedding_table", V * D}, {"wq", NL * D * D}, {"wk", NL * KVD * D},
    {"wv", NL * KVD * D}, {"wo", NL * D * D}, {"w1", NL * H * D},
    {"w2", NL * D * H}, {"w3", NL * H * D}, {"wcls", V * D},
};

/* export.py's order for the legacy layout */
static const group k_v0[] = {
    {"token_embedding_table", V * D}, {"rms_att_weight", NL * D}, {"wq", NL * D * D},
    {"wk", NL * KVD * D}, {"wv", NL * KVD * D}, {"wo", NL * D * D},
    {"rms_ffn_weight", NL * D}, {"w1", NL * H * D}, {"w2", NL * D * H},
    {"w3", NL * H * D}, {"rms_final_weight", D}, {"freq_cis_real", S * HS / 2},
    {"freq_cis_imag", S * HS / 2}, {"wcls", V * D},
};

static uint64_t g_rng = 0x1a2b3c4d5e6f7788ull;

static float rand_float(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/*
 * Builds a checkpoint in memory: `hdr` bytes of header, then the groups in
 * order, each filled with fresh random floats. *floats receives a copy of
 * every group (the expected contents), *offsets each group's byte offset.
 */
static unsigned char *build(const void *hdr, size_t hdr_len, const group *g, size_t ng, size_t *size,
                            size_t *offsets) {
    size_t total = hdr_len;
    for (size_t i = 0; i < ng; i++) total += g[i].n * 4;
    unsigned char *p = malloc(total);
    if (!p) return NULL;
    memcpy(p, hdr, hdr_len);
    size_t off = hdr_len;
    for (size_t i = 0; i < ng; i++) {
        offsets[i] = off;
        for (size_t k = 0; k < g[i].n; k++) {
            float f = rand_float();
            memcpy(p + off + 4 * k, &f, 4);
        }
        off += g[i].n * 4;
    }
    *size = total;
    return p;
}

static void v1_header(unsigned char hdr[256], int32_t version, int shared) {
    memset(hdr, 0, 256);
    uint32_t magic = 0x616b3432; /* "ak42", struct.pack('I') */
    int32_t cfg[7] = {D, H, NL, NH, NKV, V, S};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &version, 4);
    memcpy(hdr + 8, cfg, sizeof cfg);
    hdr[36] = (unsigned char)shared;
}

/* Checks every tensor of m against the groups written by build(). */
static void check_groups(const llmops_llama2c *m, const unsigned char *file, const group *g, size_t ng,
                         const size_t *offsets) {
    CHECK_EQ_INT(m->n_tensors, ng);
    for (size_t i = 0; i < ng; i++) {
        const llmops_llama2c_tensor *t = llmops_llama2c_find(m, g[i].name);
        CHECK_MSG(t != NULL, "%s missing", g[i].name);
        CHECK_EQ_STR(m->tensors[i].name, g[i].name); /* table in file order */
        CHECK_MSG(t->offset == offsets[i], "%s at %llu, written at %zu", g[i].name, (unsigned long long)t->offset,
                  offsets[i]);
        CHECK((const unsigned char *)t->data == file + offsets[i]);
        uint64_t n = 1;
        for (uint32_t k = 0; k < t->n_dims; k++) n *= t->shape[k];
        CHECK_MSG(n == g[i].n, "%s holds %llu floats, %zu written", g[i].name, (unsigned long long)n, g[i].n);
        CHECK(!memcmp(t->data, file + offsets[i], g[i].n * 4));
    }
}

TEST(llama2c_synthetic_v1_roundtrip) {
    llmops_error err = {0};
    unsigned char hdr[256];
    size_t size, offsets[16];
    for (int shared = 0; shared <= 1; shared++) {
        v1_header(hdr, 1, shared);
        size_t ng = sizeof k_v1 / sizeof k_v1[0] - (size_t)shared; /* wcls only when not shared */
        unsigned char *file = build(hdr, 256, k_v1, ng, &size, offsets);
        CHECK(file != NULL);
        CHECK_EQ_INT(offsets[0], 256);
        CHECK_EQ_INT(offsets[3], 256 + (2 * NL * D + D) * 4); /* the embedding follows the norms */
        llmops_llama2c *m = NULL;
        llmops_status st = llmops_llama2c_parse(file, size, "v1.bin", &m, &err);
        if (st) free(file);
        CHECK_OK(st, err);
        CHECK_EQ_INT(m->version, 1);
        CHECK(m->dim == D && m->hidden_dim == H && m->n_layers == NL && m->n_heads == NH && m->n_kv_heads == NKV &&
              m->vocab_size == V && m->seq_len == S);
        CHECK_EQ_INT(m->shared_classifier, shared);
        CHECK(m->data == file && m->size == size);
        check_groups(m, file, k_v1, ng, offsets);
        if (test_failed()) return;
        CHECK(llmops_llama2c_find(m, "freq_cis_real") == NULL); /* version 1 stores none */
        const llmops_llama2c_tensor *wk = llmops_llama2c_find(m, "wk");
        CHECK(wk->n_dims == 3 && wk->shape[0] == NL && wk->shape[1] == KVD && wk->shape[2] == D);
        const llmops_llama2c_tensor *w2 = llmops_llama2c_find(m, "w2");
        CHECK(w2->shape[0] == NL && w2->shape[1] == D && w2->shape[2] == H);
        CHECK_EQ_INT(llmops_llama2c_sniff(file, size), 1);
        llmops_llama2c_free(m);

        /* the same bytes from a file, through the mapping */
        const char *path = test_tmpfile("v1.bin");
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(file, 1, size, f) == size);
        fclose(f);
        CHECK_OK(llmops_llama2c_open(path, &m, &err), err);
        const llmops_llama2c_tensor *emb = llmops_llama2c_find(m, "token_embedding_table");
        CHECK(!memcmp(emb->data, file + offsets[3], V * D * 4));
        llmops_llama2c_free(m);
        free(file);
    }
}

TEST(llama2c_synthetic_legacy_separate_classifier) {
    llmops_error err = {0};
    int32_t cfg[7] = {D, H, NL, NH, NKV, -V, S}; /* negative vocab: wcls follows */
    size_t size, offsets[16];
    size_t ng = sizeof k_v0 / sizeof k_v0[0];
    unsigned char *file = build(cfg, sizeof cfg, k_v0, ng, &size, offsets);
    CHECK(file != NULL);
    CHECK_EQ_INT(size, 28 + 4 * (2 * V * D + 2 * NL * D + 2 * NL * D * D + 2 * NL * KVD * D + 3 * NL * H * D + D +
                                 S * HS));
    llmops_llama2c *m = NULL;
    CHECK_OK(llmops_llama2c_parse(file, size, "legacy.bin", &m, &err), err);
    CHECK_EQ_INT(m->version, 0);
    CHECK_EQ_INT(m->vocab_size, V);
    CHECK_EQ_INT(m->shared_classifier, 0);
    check_groups(m, file, k_v0, ng, offsets);
    if (test_failed()) return;
    const llmops_llama2c_tensor *wcls = llmops_llama2c_find(m, "wcls");
    CHECK(wcls && wcls->shape[0] == V && wcls->shape[1] == D && wcls->offset + V * D * 4 == size);
    const llmops_llama2c_tensor *fr = llmops_llama2c_find(m, "freq_cis_real");
    CHECK(fr && fr->shape[0] == S && fr->shape[1] == HS / 2);
    llmops_arch a;
    llmops_llama2c_arch(m, &a);
    CHECK_EQ_INT(a.tie_embeddings, 0);
    llmops_llama2c_free(m);

    /* the same weights with a positive vocab size are one classifier short */
    cfg[5] = V;
    memcpy(file, cfg, sizeof cfg);
    CHECK_ERR(llmops_llama2c_parse(file, size, "legacy.bin", &m, &err), LLMOPS_ERR_FORMAT, err, "legacy.bin");
    CHECK(m == NULL);
    CHECK_OK(llmops_llama2c_parse(file, size - V * D * 4, "legacy.bin", &m, &err), err);
    CHECK_EQ_INT(m->shared_classifier, 1);
    CHECK_EQ_INT(m->n_tensors, ng - 1);
    llmops_llama2c_free(m);
    llmops_llama2c_free(NULL);
    free(file);
}

/* ---- hostile inputs ----------------------------------------------------------------------------- */

TEST(llama2c_hostile_checkpoints) {
    llmops_error err = {0};
    llmops_llama2c *m = NULL;
    int32_t cfg[7] = {D, H, NL, NH, NKV, V, S};
    size_t size, offsets[16];
    size_t ng = sizeof k_v0 / sizeof k_v0[0] - 1;
    unsigned char *file = build(cfg, sizeof cfg, k_v0, ng, &size, offsets);
    CHECK(file != NULL);
    CHECK_OK(llmops_llama2c_parse(file, size, "ok.bin", &m, &err), err);
    llmops_llama2c_free(m);

    /* truncated by one float, and one float too long */
    CHECK_ERR(llmops_llama2c_parse(file, size - 4, "cut.bin", &m, &err), LLMOPS_ERR_FORMAT, err, "cut.bin");
    CHECK(strstr(err.msg, "truncated"));
    char want[128];
    snprintf(want, sizeof want, "describes %zu bytes", size);
    CHECK(strstr(err.msg, want));
    CHECK(m == NULL);
    CHECK_ERR(llmops_llama2c_parse(file, size + 4, "long.bin", &m, &err), LLMOPS_ERR_FORMAT, err, "holds");
    /* shorter than a header */
    CHECK_ERR(llmops_llama2c_parse(file, 27, "tiny.bin", &m, &err), LLMOPS_ERR_FORMAT, err,
              "27 bytes is too short for a llama2.c checkpoint");
    CHECK_ERR(llmops_llama2c_parse(file, 0, "empty.bin", &m, &err), LLMOPS_ERR_FORMAT, err, "too short");

    /* implausible headers: each names every field */
    static const struct {
        int field;
        int32_t value;
    } bad[] = {
        {0, 0},          /* dim 0                          */
        {0, -64},        /* negative dim                   */
        {0, 18},         /* dim not a multiple of n_heads  */
        {1, 0},          /* hidden 0                       */
        {2, -1},         /* negative layers                */
        {2, 100000},     /* absurd layer count             */
        {3, 0},          /* no heads                       */
        {4, 8},          /* more KV heads than heads       */
        {4, 3},          /* KV heads do not divide heads   */
        {5, 0},          /* vocab 0                        */
        {5, 1 << 30},    /* absurd vocab                   */
        {6, 0},          /* seq_len 0                      */
        {6, -8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t c[7] = {D, H, NL, NH, NKV, V, S};
        c[bad[i].field] = bad[i].value;
        memcpy(file, c, sizeof c);
        llmops_status st = llmops_llama2c_parse(file, size, "bad.bin", &m, &err);
        CHECK_MSG(st == LLMOPS_ERR_FORMAT, "field %d = %d: %s", bad[i].field, bad[i].value, llmops_status_str(st));
        CHECK_MSG(strstr(err.msg, "is not a valid llama2.c configuration") && strstr(err.msg, "dim=") &&
                      strstr(err.msg, "seq_len="),
                  "field %d = %d: \"%s\"", bad[i].field, bad[i].value, err.msg);
        CHECK(m == NULL);
        CHECK(llmops_llama2c_sniff(file, size) == 0);
    }
    free(file);

    /* version 1 magic with another version number */
    unsigned char hdr[256];
    v1_header(hdr, 2, 1);
    CHECK_ERR(llmops_llama2c_parse(hdr, sizeof hdr, "v2.bin", &m, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "version 2 is not supported");
    /* version 1 header with no weights behind it */
    v1_header(hdr, 1, 1);
    CHECK_ERR(llmops_llama2c_parse(hdr, sizeof hdr, "hdr.bin", &m, &err), LLMOPS_ERR_FORMAT, err, "file holds 256 bytes");
    CHECK_ERR(llmops_llama2c_open(test_tmpfile("absent.bin"), &m, &err), LLMOPS_ERR_IO, err, "absent.bin");
    CHECK(m == NULL);
}

/* A tokenizer.bin in memory: max_token_length, then (score, len, bytes)… */
static size_t put_piece(unsigned char *p, size_t pos, float score, int32_t len, const char *bytes) {
    memcpy(p + pos, &score, 4);
    memcpy(p + pos + 4, &len, 4);
    if (len > 0) memcpy(p + pos + 8, bytes, (size_t)len);
    return pos + 8 + (len > 0 ? (size_t)len : 0);
}

TEST(llama2c_hostile_vocabs) {
    llmops_error err = {0};
    llmops_llama2c_vocab v;
    unsigned char buf[256];
    int32_t mtl = 6;
    memcpy(buf, &mtl, 4);
    size_t n = 4;
    n = put_piece(buf, n, 0.0f, 5, "<unk>");
    n = put_piece(buf, n, -1.5f, 1, "a");
    n = put_piece(buf, n, -2.0f, 0, "");
    CHECK_OK(llmops_llama2c_vocab_parse(buf, n, "tok.bin", 3, &v, &err), err);
    CHECK(v.n == 3 && v.max_token_length == 6);
    CHECK(v.scores[1] == -1.5f && v.lens[2] == 0 && v.pieces[2][0] == '\0');
    CHECK_EQ_STR(v.pieces[1], "a");
    llmops_llama2c_vocab_free(&v);

    /* negative length (entry 1's length field is at byte 4 + 13 + 4 = 21) */
    unsigned char bad[256];
    memcpy(bad, buf, n);
    int32_t neg = -1;
    memcpy(bad + 21, &neg, 4);
    CHECK_ERR(llmops_llama2c_vocab_parse(bad, n, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err,
              "tok.bin: offset 21: entry 1 has length -1");
    CHECK(v.pieces == NULL && v.n == 0);
    /* a length that runs past the end (and within max_token_length) */
    int32_t five = 5;
    memcpy(bad + 21, &five, 4);
    CHECK_ERR(llmops_llama2c_vocab_parse(bad, 4 + 13 + 8 + 3, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err,
              "entry 1 has length 5");
    CHECK(strstr(err.msg, "3 bytes left"));
    /* longer than max_token_length */
    int32_t big = 7;
    memcpy(bad + 21, &big, 4);
    CHECK_ERR(llmops_llama2c_vocab_parse(bad, n, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err,
              "max_token_length 6");
    /* an entry cut inside its score/length header */
    CHECK_ERR(llmops_llama2c_vocab_parse(buf, n - 3, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err,
              "entry 2 is truncated");
    /* implausible max_token_length, and no room for it */
    memcpy(bad, buf, n);
    int32_t zero = 0;
    memcpy(bad, &zero, 4);
    CHECK_ERR(llmops_llama2c_vocab_parse(bad, n, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err,
              "max_token_length 0 is not plausible");
    CHECK_ERR(llmops_llama2c_vocab_parse(buf, 3, "tok.bin", 0, &v, &err), LLMOPS_ERR_FORMAT, err, "too short");
    /* count mismatch */
    CHECK_ERR(llmops_llama2c_vocab_parse(buf, n, "tok.bin", 4, &v, &err), LLMOPS_ERR_FORMAT, err,
              "holds 3 tokens but the model has a vocabulary of 4");
    /* no entries at all is a valid, empty vocabulary */
    CHECK_OK(llmops_llama2c_vocab_parse(buf, 4, "tok.bin", 0, &v, &err), err);
    CHECK_EQ_INT(v.n, 0);
    llmops_llama2c_vocab_free(&v);
}

/* Every allocation of the vocabulary and checkpoint parsers may fail; nothing leaks. */
TEST(llama2c_allocation_failures) {
    llmops_error err = {0};
    unsigned char buf[128];
    int32_t mtl = 5;
    memcpy(buf, &mtl, 4);
    size_t n = 4;
    n = put_piece(buf, n, 0.0f, 5, "<unk>");
    n = put_piece(buf, n, -1.0f, 2, "ab");
    n = put_piece(buf, n, -2.0f, 3, "abc");
    long live = llmops_alloc_live();
    for (long k = 0;; k++) {
        llmops_llama2c_vocab v;
        llmops_alloc_fail_nth(k);
        llmops_status st = llmops_llama2c_vocab_parse(buf, n, "tok.bin", 0, &v, &err);
        int fired = llmops_alloc_failure_fired();
        llmops_alloc_fail_nth(-1);
        if (st == LLMOPS_OK) {
            CHECK(!fired);
            CHECK_EQ_INT(v.n, 3);
            llmops_llama2c_vocab_free(&v);
            CHECK_EQ_INT(llmops_alloc_live(), live);
            break;
        }
        CHECK_MSG(st == LLMOPS_ERR_NOMEM, "failure %ld: %s", k, err.msg);
        CHECK_EQ_INT(llmops_alloc_live(), live);
        CHECK(k < 100);
    }

    int32_t cfg[7] = {D, H, NL, NH, NKV, V, S};
    size_t size, offsets[16];
    unsigned char *file = build(cfg, sizeof cfg, k_v0, sizeof k_v0 / sizeof k_v0[0] - 1, &size, offsets);
    CHECK(file != NULL);
    llmops_llama2c *m = NULL;
    llmops_alloc_fail_nth(0);
    llmops_status st = llmops_llama2c_parse(file, size, "ok.bin", &m, &err);
    llmops_alloc_fail_nth(-1);
    CHECK(st == LLMOPS_ERR_NOMEM && m == NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
    free(file);
}
