/*
 * Element types: block layouts against ggml, half/bfloat16 conversions against
 * numpy and PyTorch, float-array conversion, and reference dequantisation of
 * the 32-element block types against blocks built by hand from ggml's layout.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../unit/test.h"
#include "llmops/tensor.h"

/* ---- layouts ------------------------------------------------------------------- */

/*
 * Expected values are ggml's, written out by hand from ggml/src/ggml-common.h
 * (ggml-org/llama.cpp, the block_* structs and their static_asserts, QK_K = 256)
 * and the enum ggml_type ids in ggml/include/ggml.h. They are literals on
 * purpose: the library's table must agree with ggml, not with itself.
 */
static const struct {
    int id;            /* enum ggml_type value                                 */
    const char *name;
    uint32_t blck;     /* elements per block                                   */
    uint32_t size;     /* sizeof(block_*)                                      */
    int quantized;
} k_ggml[] = {
    {0, "F32", 1, 4, 0},
    {1, "F16", 1, 2, 0},
    {2, "Q4_0", 32, 18, 1},     /* ggml_half d; uint8_t qs[16]                         */
    {3, "Q4_1", 32, 20, 1},     /* ggml_half d, m; uint8_t qs[16]                      */
    {6, "Q5_0", 32, 22, 1},     /* ggml_half d; uint8_t qh[4]; uint8_t qs[16]          */
    {7, "Q5_1", 32, 24, 1},     /* ggml_half d, m; uint8_t qh[4]; uint8_t qs[16]       */
    {8, "Q8_0", 32, 34, 1},     /* ggml_half d; int8_t qs[32]                          */
    {9, "Q8_1", 32, 36, 1},     /* ggml_half d, s; int8_t qs[32]                       */
    {10, "Q2_K", 256, 84, 1},   /* scales[16] qs[64] d dmin                            */
    {11, "Q3_K", 256, 110, 1},  /* hmask[32] qs[64] scales[12] d                       */
    {12, "Q4_K", 256, 144, 1},  /* d dmin scales[12] qs[128]                           */
    {13, "Q5_K", 256, 176, 1},  /* d dmin scales[12] qh[32] qs[128]                    */
    {14, "Q6_K", 256, 210, 1},  /* ql[128] qh[64] scales[16] d                         */
    {15, "Q8_K", 256, 292, 1},  /* float d; int8 qs[256]; int16 bsums[16]              */
    {16, "IQ2_XXS", 256, 66, 1},
    {17, "IQ2_XS", 256, 74, 1},
    {18, "IQ3_XXS", 256, 98, 1},
    {19, "IQ1_S", 256, 50, 1},
    {20, "IQ4_NL", 32, 18, 1},
    {21, "IQ3_S", 256, 110, 1},
    {22, "IQ2_S", 256, 82, 1},
    {23, "IQ4_XS", 256, 136, 1},
    {24, "I8", 1, 1, 0},
    {25, "I16", 1, 2, 0},
    {26, "I32", 1, 4, 0},
    {27, "I64", 1, 8, 0},
    {28, "F64", 1, 8, 0},
    {29, "IQ1_M", 256, 56, 1},
    {30, "BF16", 1, 2, 0},
    {34, "TQ1_0", 256, 54, 1},  /* qs[48] qh[4] d                                      */
    {35, "TQ2_0", 256, 66, 1},  /* qs[64] d                                            */
    {39, "MXFP4", 32, 17, 1},   /* uint8_t e; uint8_t qs[16]                           */
};

TEST(dtype_layouts_match_ggml) {
    for (size_t i = 0; i < sizeof k_ggml / sizeof k_ggml[0]; i++) {
        const llmops_dtype_info *ti = llmops_dtype_get(k_ggml[i].id);
        CHECK_MSG(ti != NULL, "type id %d (%s) is unknown", k_ggml[i].id, k_ggml[i].name);
        CHECK_EQ_INT(ti->type, k_ggml[i].id);
        CHECK_EQ_STR(ti->name, k_ggml[i].name);
        CHECK_MSG(ti->block_size == k_ggml[i].blck, "%s: block size %u, ggml %u", ti->name, ti->block_size,
                  k_ggml[i].blck);
        CHECK_MSG(ti->type_size == k_ggml[i].size, "%s: type size %u, ggml %u", ti->name, ti->type_size,
                  k_ggml[i].size);
        CHECK_EQ_INT(ti->quantized, k_ggml[i].quantized);
        CHECK_EQ_INT(ti->in_gguf, 1);
        CHECK_EQ_STR(llmops_dtype_name(k_ggml[i].id), k_ggml[i].name);
    }
    /* the enum constants themselves are ggml's ids */
    CHECK_EQ_INT(LLMOPS_DTYPE_Q5_0, 6);
    CHECK_EQ_INT(LLMOPS_DTYPE_Q8_K, 15);
    CHECK_EQ_INT(LLMOPS_DTYPE_BF16, 30);
    CHECK_EQ_INT(LLMOPS_DTYPE_TQ1_0, 34);
    /* ids ggml removed (Q4_2, Q4_3, the Q4_0_4_4 family) or never had */
    static const int gone[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 99, 107, -1, 1 << 30};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        CHECK_MSG(llmops_dtype_get(gone[i]) == NULL, "id %d should be unknown", gone[i]);
        CHECK_EQ_STR(llmops_dtype_name(gone[i]), "?");
    }
}

TEST(dtype_safetensors_types) {
    /* the dtype strings of the safetensors format specification */
    static const struct {
        const char *st;
        int bytes;
        int in_gguf;
    } st[] = {{"BOOL", 1, 0}, {"U8", 1, 0},      {"I8", 1, 1},      {"F8_E5M2", 1, 0}, {"F8_E4M3", 1, 0},
              {"I16", 2, 1},  {"U16", 2, 0},     {"F16", 2, 1},     {"BF16", 2, 1},    {"I32", 4, 1},
              {"U32", 4, 0},  {"F32", 4, 1},     {"F64", 8, 1},     {"I64", 8, 1},     {"U64", 8, 0}};
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        const llmops_dtype_info *ti = llmops_dtype_by_st_name(st[i].st, strlen(st[i].st));
        CHECK_MSG(ti != NULL, "safetensors dtype %s unknown", st[i].st);
        CHECK_EQ_STR(ti->st_name, st[i].st);
        CHECK_EQ_INT(ti->block_size, 1);
        CHECK_EQ_INT(ti->type_size, st[i].bytes);
        CHECK_EQ_INT(ti->quantized, 0);
        CHECK_EQ_INT(ti->in_gguf, st[i].in_gguf);
        if (!st[i].in_gguf) CHECK(ti->type >= 100);
    }
    /* quantized types have no safetensors spelling */
    CHECK(llmops_dtype_get(LLMOPS_DTYPE_Q4_K)->st_name == NULL);
    CHECK(llmops_dtype_by_st_name("Q4_0", 4) == NULL);
    /* exact case, exact length (the name need not be NUL-terminated) */
    CHECK(llmops_dtype_by_st_name("f32", 3) == NULL);
    CHECK(llmops_dtype_by_st_name("F3", 2) == NULL);
    CHECK(llmops_dtype_by_st_name("F32\"}", 3) == llmops_dtype_get(LLMOPS_DTYPE_F32));
    CHECK(llmops_dtype_by_st_name("F32X", 4) == NULL);
    CHECK(llmops_dtype_by_st_name("", 0) == NULL);
}

TEST(dtype_lookup_by_name) {
    CHECK(llmops_dtype_by_name("q4_k") == llmops_dtype_get(LLMOPS_DTYPE_Q4_K));
    CHECK(llmops_dtype_by_name("Q4_K") == llmops_dtype_get(LLMOPS_DTYPE_Q4_K));
    CHECK(llmops_dtype_by_name("bf16") == llmops_dtype_get(LLMOPS_DTYPE_BF16));
    CHECK(llmops_dtype_by_name("f32") == llmops_dtype_get(LLMOPS_DTYPE_F32));
    CHECK(llmops_dtype_by_name("iq2_xxs") == llmops_dtype_get(LLMOPS_DTYPE_IQ2_XXS));
    CHECK(llmops_dtype_by_name("u8") == llmops_dtype_get(LLMOPS_DTYPE_U8));
    CHECK(llmops_dtype_by_name("F8_E4M3") == llmops_dtype_get(LLMOPS_DTYPE_F8_E4M3));
    CHECK(llmops_dtype_by_name("Q4_2") == NULL);
    CHECK(llmops_dtype_by_name("q4") == NULL);
    CHECK(llmops_dtype_by_name("q4_k ") == NULL);
    CHECK(llmops_dtype_by_name("") == NULL);
    for (size_t i = 0; i < sizeof k_ggml / sizeof k_ggml[0]; i++)
        CHECK(llmops_dtype_by_name(k_ggml[i].name) == llmops_dtype_get(k_ggml[i].id));
}

TEST(dtype_nbytes) {
    llmops_error err = {0};
    uint64_t n = 0;
    /* the header's example: a 4096-wide Q4_K row is 16 blocks of 144 bytes */
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_Q4_K, 4096, 4096, &n, &err), err);
    CHECK_EQ_INT(n, 2304);
    /* llama-7B-ish attention matrix */
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_Q4_0, 4096, 4096ull * 4096, &n, &err), err);
    CHECK_EQ_INT(n, 4096ull * 4096 / 32 * 18);
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_Q6_K, 256, 512, &n, &err), err);
    CHECK_EQ_INT(n, 2 * 210);
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_F32, 3, 15, &n, &err), err);
    CHECK_EQ_INT(n, 60);
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_BF16, 7, 7, &n, &err), err);
    CHECK_EQ_INT(n, 14);
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_I64, 5, 10, &n, &err), err);
    CHECK_EQ_INT(n, 80);
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_F16, 0, 0, &n, &err), err);
    CHECK_EQ_INT(n, 0);

    /* a row that ends inside a block */
    CHECK_ERR(llmops_dtype_nbytes(LLMOPS_DTYPE_Q4_0, 48, 96, &n, &err), LLMOPS_ERR_FORMAT, err, "48");
    CHECK(strstr(err.msg, "Q4_0") && strstr(err.msg, "32"));
    CHECK_ERR(llmops_dtype_nbytes(LLMOPS_DTYPE_Q4_K, 4095, 4095, &n, &err), LLMOPS_ERR_FORMAT, err, "256");

    /* 2^62 floats are 2^64 bytes */
    CHECK_ERR(llmops_dtype_nbytes(LLMOPS_DTYPE_F32, 4, 1ull << 62, &n, &err), LLMOPS_ERR_LIMIT, err, "overflow");
    CHECK_OK(llmops_dtype_nbytes(LLMOPS_DTYPE_F32, 4, (1ull << 62) - 1, &n, &err), err);
    CHECK_EQ_INT(n, UINT64_MAX - 3);
    /* (2^64 - 32) / 32 blocks × 34 bytes; Q4_0 (18 bytes per 32) never overflows */
    CHECK_ERR(llmops_dtype_nbytes(LLMOPS_DTYPE_Q8_0, 32, UINT64_MAX - 31, &n, &err), LLMOPS_ERR_LIMIT, err,
              "overflow");

    CHECK_ERR(llmops_dtype_nbytes(4, 32, 32, &n, &err), LLMOPS_ERR_UNSUPPORTED, err, "4");
    CHECK_ERR(llmops_dtype_nbytes(-7, 1, 1, &n, &err), LLMOPS_ERR_UNSUPPORTED, err, "-7");
    CHECK_ERR(llmops_dtype_nbytes(12345, 1, 1, &n, &err), LLMOPS_ERR_UNSUPPORTED, err, "12345");
    /* NULL err is allowed */
    CHECK(llmops_dtype_nbytes(12345, 1, 1, &n, NULL) == LLMOPS_ERR_UNSUPPORTED);
}

/* ---- half and bfloat16 against numpy / PyTorch ------------------------------------ */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu); }
static int f32_is_nan(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu); }

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* float32 bit patterns that exercise every branch of both narrowings */
static const uint32_t k_special[] = {
    0x00000000, 0x80000000,                         /* ±0                                        */
    0x00000001, 0x80000001, 0x007fffff, 0x00400000, /* float32 subnormals                        */
    0x00008000, 0x00018000, 0x00017fff, 0x00008001, /* bf16 ties/near-ties among f32 subnormals  */
    0x00800000, 0x80800000,                         /* smallest normal float                     */
    0x33800000, 0xb3800000,                         /* 2^-24: smallest half subnormal            */
    0x33000000, 0x33000001, 0x32ffffff,             /* 2^-25: tie to 0, just above, just below   */
    0x33c00000, 0x34200000, 0x34600000,             /* 3, 5, 7 × 2^-25: ties between subnormals  */
    0x387fc000, 0x387fe000, 0x387fdfff, 0x38800000, /* largest half subnormal, tie into normals  */
    0x3f800000, 0xbf800000, 0x3f801000, 0x3f803000, /* 1, -1, 1+2^-11 (tie even), 1+3·2^-11 (odd) */
    0x3f801001, 0x3f800fff,                         /* just above / below the tie                */
    0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, /* bf16 ties at even/odd, near-ties          */
    0x477fe000, 0xc77fe000,                         /* 65504: largest finite half                */
    0x477fefff, 0x477ff000, 0x477ff001, 0x47800000, /* below/at/above the overflow tie, 65536    */
    0x7f7f0000, 0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, /* largest finite bf16, its tie to inf, FLT_MAX */
    0xff7fffff, 0x7f7effff, 0x7f7e8000,             /* -FLT_MAX, below max, tie at even           */
    0x7f800000, 0xff800000,                         /* ±inf                                      */
    0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, /* quiet and signalling NaNs                 */
    0x7fffffff, 0xffffffff, 0x7f802000, 0x7fe00001, /* NaN payloads in the low bits              */
    0x3dcccccd, 0x40490fdb, 0xc2f6e979, 0x3eaaaaab, /* 0.1, pi, -123.456, 1/3                    */
};

#define N_RANDOM 100000

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Reads exactly n bytes; 0 if the file is missing or of another size. */
static int read_bytes(const char *path, void *p, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(p, 1, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return got == n && !extra;
}

/*
 * The oracle: numpy's float32→float16 (npy_floatbits_to_halfbits) and
 * PyTorch's float32→bfloat16 (c10::round_to_nearest_even) and the widenings
 * back, run over the inputs in f32.bin; or ("f64") numpy's float64→float16
 * over f64.bin. Prints "skip: ..." when a module is
 * missing, "ok" otherwise.
 */
static const char k_oracle_py[] =
    "import sys\n"
    "d = sys.argv[1]\n"
    "try:\n"
    "    import numpy as np\n"
    "except Exception as e:\n"
    "    print('skip: numpy is not importable:', e); sys.exit(0)\n"
    "if sys.argv[2] == 'f64':\n"
    "    y = np.fromfile(d + '/f64.bin', dtype=np.float64)\n"
    "    with np.errstate(all='ignore'):\n"
    "        y.astype(np.float16).view(np.uint16).tofile(d + '/narrow.bin')\n"
    "    print('ok'); sys.exit(0)\n"
    "x = np.fromfile(d + '/f32.bin', dtype=np.uint32).view(np.float32)\n"
    "h = np.arange(65536, dtype=np.uint32).astype(np.uint16)\n"
    "if sys.argv[2] == 'f16':\n"
    "    with np.errstate(all='ignore'):\n"
    "        x.astype(np.float16).view(np.uint16).tofile(d + '/narrow.bin')\n"
    "        h.view(np.float16).astype(np.float32).view(np.uint32).tofile(d + '/widen.bin')\n"
    "else:\n"
    "    try:\n"
    "        import torch\n"
    "    except Exception as e:\n"
    "        print('skip: torch is not importable:', e); sys.exit(0)\n"
    "    t = torch.from_numpy(x.copy()).to(torch.bfloat16)\n"
    "    t.view(torch.int16).numpy().view(np.uint16).tofile(d + '/narrow.bin')\n"
    "    b = torch.from_numpy(h.view(np.int16).copy()).view(torch.bfloat16)\n"
    "    b.to(torch.float32).numpy().view(np.uint32).tofile(d + '/widen.bin')\n"
    "print('ok')\n";

/* Runs the oracle for "f16" or "bf16". Returns 1 ok, 0 skip (reason in why), -1 failure. */
static int run_oracle(const char *kind, const uint32_t *in, size_t n, uint16_t *narrow, uint32_t *widen,
                      char *why, size_t why_len) {
    const char *py = "/usr/bin/python3";
    if (access(py, X_OK) != 0) {
        snprintf(why, why_len, "%s is not installed", py);
        return 0;
    }
    if (!write_bytes(test_tmpfile("f32.bin"), in, n * 4) || !write_bytes(test_tmpfile("oracle.py"), k_oracle_py,
                                                                         sizeof k_oracle_py - 1)) {
        snprintf(why, why_len, "cannot write oracle inputs");
        return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s' '%s' %s 2>&1", py, test_tmpfile("oracle.py"), test_tmpdir(), kind);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_len, "popen failed");
        return -1;
    }
    char out[512] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    if (!strncmp(out, "skip: ", 6)) {
        out[strcspn(out, "\n")] = '\0';
        snprintf(why, why_len, "%s", out + 6);
        return 0;
    }
    if (status != 0 || strncmp(out, "ok", 2)) {
        snprintf(why, why_len, "oracle failed (status %d): %s", status, out);
        return -1;
    }
    if (!read_bytes(test_tmpfile("narrow.bin"), narrow, n * 2) ||
        !read_bytes(test_tmpfile("widen.bin"), widen, 65536 * 4)) {
        snprintf(why, why_len, "oracle outputs have the wrong size");
        return -1;
    }
    return 1;
}

/* Runs the f64 → f16 oracle over n doubles. Same returns as run_oracle. */
static int run_f64_oracle(const double *in, size_t n, uint16_t *narrow, char *why, size_t why_len) {
    const char *py = "/usr/bin/python3";
    if (access(py, X_OK) != 0) {
        snprintf(why, why_len, "%s is not installed", py);
        return 0;
    }
    if (!write_bytes(test_tmpfile("f64.bin"), in, n * 8) ||
        !write_bytes(test_tmpfile("oracle.py"), k_oracle_py, sizeof k_oracle_py - 1)) {
        snprintf(why, why_len, "cannot write oracle inputs");
        return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s' '%s' f64 2>&1", py, test_tmpfile("oracle.py"), test_tmpdir());
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_len, "popen failed");
        return -1;
    }
    char out[512] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    if (!strncmp(out, "skip: ", 6)) {
        out[strcspn(out, "\n")] = '\0';
        snprintf(why, why_len, "%s", out + 6);
        return 0;
    }
    if (status != 0 || strncmp(out, "ok", 2) || !read_bytes(test_tmpfile("narrow.bin"), narrow, n * 2)) {
        snprintf(why, why_len, "oracle failed (status %d): %s", status, out);
        return -1;
    }
    return 1;
}

/* k_special followed by N_RANDOM patterns from a fixed seed. */
static uint32_t *oracle_inputs(size_t *n) {
    size_t ns = sizeof k_special / sizeof k_special[0];
    uint32_t *in = malloc((ns + N_RANDOM) * 4);
    if (!in) return NULL;
    memcpy(in, k_special, sizeof k_special);
    uint64_t seed = 0x11a3a0f5eedull;
    for (size_t i = 0; i < N_RANDOM; i += 2) {
        uint64_t r = splitmix64(&seed);
        in[ns + i] = (uint32_t)r;
        in[ns + i + 1] = (uint32_t)(r >> 32);
    }
    *n = ns + N_RANDOM;
    return in;
}

static void check_against_oracle(int bf16) {
    size_t n = 0;
    uint32_t *in = oracle_inputs(&n);
    uint16_t *narrow = malloc(n * 2);
    uint32_t *widen = malloc(65536 * 4);
    CHECK(in && narrow && widen);
    char why[600];
    int r = run_oracle(bf16 ? "bf16" : "f16", in, n, narrow, widen, why, sizeof why);
    if (r <= 0) {
        free(in), free(narrow), free(widen);
        if (r == 0) SKIP("%s", why);
        CHECK_MSG(0, "%s", why);
    }
    size_t bad = 0;
    for (size_t i = 0; i < n && bad < 10; i++) {
        uint16_t want = narrow[i];
        uint16_t got = bf16 ? llmops_fp32_to_bf16(u2f(in[i])) : llmops_fp32_to_fp16(u2f(in[i]));
        int ok = bf16 ? (bf16_is_nan(want) ? bf16_is_nan(got) : got == want)
                      : (f16_is_nan(want) ? f16_is_nan(got) : got == want);
        if (!ok) {
            test_fail(__FILE__, __LINE__, "%s(0x%08x = %.9g) = 0x%04x, oracle 0x%04x", bf16 ? "fp32_to_bf16" : "fp32_to_fp16",
                      in[i], (double)u2f(in[i]), got, want);
            bad++;
        }
    }
    for (uint32_t h = 0; h < 65536 && bad < 10; h++) {
        uint32_t want = widen[h];
        uint32_t got = f2u(bf16 ? llmops_bf16_to_fp32((uint16_t)h) : llmops_fp16_to_fp32((uint16_t)h));
        int ok = f32_is_nan(want) ? f32_is_nan(got) : got == want;
        if (!ok) {
            test_fail(__FILE__, __LINE__, "%s(0x%04x) = 0x%08x, oracle 0x%08x", bf16 ? "bf16_to_fp32" : "fp16_to_fp32", h,
                      got, want);
            bad++;
        }
    }
    free(in), free(narrow), free(widen);
}

TEST(dtype_fp16_matches_numpy) { check_against_oracle(0); }
TEST(dtype_bf16_matches_torch) { check_against_oracle(1); }

/*
 * numpy narrows float64 to float16 directly (npy_doublebits_to_halfbits), with
 * one rounding: the oracle for F64 sources in llmops_convert_floats. Inputs are
 * random doubles in and around the half range, and half ties ± a few double ulps.
 */
TEST(dtype_f64_to_fp16_matches_numpy) {
    enum { N = 40000 };
    double *in = malloc(N * sizeof *in);
    uint16_t *want = malloc(N * 2), *got = malloc(N * 2);
    CHECK(in && want && got);
    uint64_t seed = 0xf64f16ull;
    for (int i = 0; i < N; i++) {
        uint64_t r = splitmix64(&seed);
        uint64_t sign = r >> 63, exp = 1023 - 30 + (r >> 52) % 50, man = r & 0xfffffffffffffull;
        if (i % 2) {
            /* a half tie: keep 11 significant bits, set the 12th, nudge by -2..2 ulps */
            man = (man & ~((1ull << 42) - 1)) | (1ull << 41);
            man += (uint64_t)((int64_t)(r >> 20) % 5 - 2);
            man &= 0xfffffffffffffull;
        }
        uint64_t bits = sign << 63 | exp << 52 | man;
        memcpy(&in[i], &bits, 8);
    }
    char why[600];
    int r = run_f64_oracle(in, N, want, why, sizeof why);
    if (r <= 0) {
        free(in), free(want), free(got);
        if (r == 0) SKIP("%s", why);
        CHECK_MSG(0, "%s", why);
    }
    llmops_error err = {0};
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, in, LLMOPS_DTYPE_F16, got, N, &err), err);
    int bad = 0;
    for (int i = 0; i < N && bad < 10; i++)
        if (got[i] != want[i]) {
            test_fail(__FILE__, __LINE__, "f64 %.17g → f16 0x%04x, numpy 0x%04x", in[i], got[i], want[i]);
            bad++;
        }
    free(in), free(want), free(got);
}

/* A few hand-derived cases that need no Python, so they run everywhere. */
TEST(dtype_half_known_values) {
    static const struct {
        uint32_t f32;
        uint16_t f16, bf16;
    } k[] = {
        {0x3f800000, 0x3c00, 0x3f80}, /* 1                                    */
        {0xc0000000, 0xc000, 0xc000}, /* -2                                   */
        {0x477fe000, 0x7bff, 0x4780}, /* 65504 (bf16 rounds up to 65536)       */
        {0x477ff000, 0x7c00, 0x4780}, /* 65520: tie between 65504 and inf → inf */
        {0x33800000, 0x0001, 0x3380}, /* 2^-24                                */
        {0x33000000, 0x0000, 0x3300}, /* 2^-25: tie → 0 (even)               */
        {0x33c00000, 0x0002, 0x33c0}, /* 3·2^-25: tie → 2·2^-24 (even)        */
        {0x3dcccccd, 0x2e66, 0x3dcd}, /* 0.1                                  */
        {0x3f808000, 0x3c04, 0x3f80}, /* 1+2^-8: bf16 tie → even              */
        {0x3f818000, 0x3c0c, 0x3f82}, /* 1+3·2^-8: bf16 tie → odd rounds up   */
        {0x7f7fffff, 0x7c00, 0x7f80}, /* FLT_MAX → inf in both                */
        {0x80000000, 0x8000, 0x8000}, /* -0                                   */
        {0xff800000, 0xfc00, 0xff80}, /* -inf                                 */
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK_MSG(llmops_fp32_to_fp16(u2f(k[i].f32)) == k[i].f16, "fp16(0x%08x) = 0x%04x, want 0x%04x", k[i].f32,
                  llmops_fp32_to_fp16(u2f(k[i].f32)), k[i].f16);
        CHECK_MSG(llmops_fp32_to_bf16(u2f(k[i].f32)) == k[i].bf16, "bf16(0x%08x) = 0x%04x, want 0x%04x", k[i].f32,
                  llmops_fp32_to_bf16(u2f(k[i].f32)), k[i].bf16);
    }
    CHECK(llmops_fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(llmops_fp16_to_fp32(0x0001) == 0x1p-24f);
    CHECK(llmops_fp16_to_fp32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(f2u(llmops_fp16_to_fp32(0x8000)) == 0x80000000u);
    CHECK(f2u(llmops_fp16_to_fp32(0x8001)) == 0xb3800000u);
    CHECK(llmops_fp16_to_fp32(0xfc00) == -INFINITY);
    CHECK(isnan(llmops_fp16_to_fp32(0x7c01)) && isnan(llmops_fp16_to_fp32(0xfe00)));
    CHECK(llmops_bf16_to_fp32(0x4049) == 3.140625f);
    CHECK(isnan(llmops_bf16_to_fp32(0x7f81)));
    /* NaN never collapses into inf, whatever the payload */
    CHECK(f16_is_nan(llmops_fp32_to_fp16(u2f(0x7f800001))));
    CHECK(f16_is_nan(llmops_fp32_to_fp16(u2f(0xff802000))));
    CHECK(bf16_is_nan(llmops_fp32_to_bf16(u2f(0x7f800001))));
    CHECK(bf16_is_nan(llmops_fp32_to_bf16(u2f(0xffffffff))));
}

/* ---- llmops_convert_floats ------------------------------------------------------- */

TEST(dtype_convert_floats) {
    llmops_error err = {0};
    /* values exactly representable in every type, and 0.1 which rounds */
    static const float f32[5] = {1.0f, -2.0f, 0.5f, 0.1f, 65504.0f};
    static const uint16_t f16[5] = {0x3c00, 0xc000, 0x3800, 0x2e66, 0x7bff};
    static const uint16_t bf16[5] = {0x3f80, 0xc000, 0x3f00, 0x3dcd, 0x4780};
    static const double f64[5] = {1.0, -2.0, 0.5, 0.1, 65504.0};
    /* odd offsets: unaligned pointers are allowed */
    unsigned char src[64], dst[64];
    uint16_t h[5];
    float f[5];

    memcpy(src + 1, f32, sizeof f32);
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F32, src + 1, LLMOPS_DTYPE_F16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(!memcmp(h, f16, sizeof h));
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F32, src + 1, LLMOPS_DTYPE_BF16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(!memcmp(h, bf16, sizeof h));

    memcpy(src + 1, f16, sizeof f16);
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F16, src + 1, LLMOPS_DTYPE_F32, dst + 3, 5, &err), err);
    memcpy(f, dst + 3, sizeof f);
    CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f && f[3] == 0.0999755859375f && f[4] == 65504.0f);
    /* F16 → BF16 goes through float: 0.0999755859375 = 0x3dccc000 → 0x3dcd */
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F16, src + 1, LLMOPS_DTYPE_BF16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(!memcmp(h, bf16, sizeof h));

    memcpy(src + 1, bf16, sizeof bf16);
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_BF16, src + 1, LLMOPS_DTYPE_F32, dst + 3, 5, &err), err);
    memcpy(f, dst + 3, sizeof f);
    CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f && f[3] == 0.10009765625f && f[4] == 65536.0f);
    /* BF16 → F16: 65536 overflows half */
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_BF16, src + 1, LLMOPS_DTYPE_F16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(h[0] == 0x3c00 && h[1] == 0xc000 && h[2] == 0x3800 && h[3] == 0x2e68 && h[4] == 0x7c00);

    memcpy(src + 1, f64, sizeof f64);
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, src + 1, LLMOPS_DTYPE_F32, dst + 3, 5, &err), err);
    memcpy(f, dst + 3, sizeof f);
    CHECK(!memcmp(f, f32, sizeof f));
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, src + 1, LLMOPS_DTYPE_F16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(!memcmp(h, f16, sizeof h));
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, src + 1, LLMOPS_DTYPE_BF16, dst + 3, 5, &err), err);
    memcpy(h, dst + 3, sizeof h);
    CHECK(!memcmp(h, bf16, sizeof h));

    /* same type: a copy */
    memcpy(src + 1, f16, sizeof f16);
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F16, src + 1, LLMOPS_DTYPE_F16, dst + 3, 5, &err), err);
    CHECK(!memcmp(dst + 3, f16, sizeof f16));
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F32, src, LLMOPS_DTYPE_F16, dst, 0, &err), err);

    /* F64 is a source type only; quantized and integer types are not floats */
    CHECK_ERR(llmops_convert_floats(LLMOPS_DTYPE_F32, src, LLMOPS_DTYPE_F64, dst, 1, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "F64");
    CHECK_ERR(llmops_convert_floats(LLMOPS_DTYPE_Q4_0, src, LLMOPS_DTYPE_F32, dst, 32, &err), LLMOPS_ERR_UNSUPPORTED,
              err, "Q4_0");
    CHECK_ERR(llmops_convert_floats(LLMOPS_DTYPE_F32, src, LLMOPS_DTYPE_I32, dst, 1, &err), LLMOPS_ERR_UNSUPPORTED, err,
              "I32");
    CHECK_ERR(llmops_convert_floats(999, src, LLMOPS_DTYPE_F32, dst, 1, &err), LLMOPS_ERR_UNSUPPORTED, err, "?");
}

/*
 * F64 → F16/BF16 must round once, from the double: 1 + 2^-11 + 2^-40 lies just
 * above the half tie between 1 and 1 + 2^-10, so the answer is 0x3c01. Going
 * through float first rounds it onto the tie (float keeps 23 bits) and then
 * to even, 0x3c00. Likewise 1 + 2^-8 + 2^-30 for bfloat16 (→ 0x3f81).
 */
TEST(dtype_convert_f64_rounds_once) {
    llmops_error err = {0};
    double d[4] = {1.0 + 0x1p-11 + 0x1p-40, -(1.0 + 0x1p-11 + 0x1p-40), 1.0 + 0x1p-11 - 0x1p-40,
                   0x1p-25 + 0x1p-60};
    uint16_t h[4];
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, d, LLMOPS_DTYPE_F16, h, 4, &err), err);
    CHECK_MSG(h[0] == 0x3c01 && h[1] == 0xbc01 && h[2] == 0x3c00 && h[3] == 0x0001,
              "got 0x%04x 0x%04x 0x%04x 0x%04x", h[0], h[1], h[2], h[3]);
    double b[3] = {1.0 + 0x1p-8 + 0x1p-30, 1.0 + 0x1p-8, 1.0 + 0x1p-8 - 0x1p-30};
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, b, LLMOPS_DTYPE_BF16, h, 3, &err), err);
    CHECK_MSG(h[0] == 0x3f81 && h[1] == 0x3f80 && h[2] == 0x3f80, "got 0x%04x 0x%04x 0x%04x", h[0], h[1], h[2]);
    /* to F32 it is plain round-to-nearest-even */
    float f[2];
    double e[2] = {1.0 + 0x1p-24, 1.0 + 0x1p-24 + 0x1p-50};
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, e, LLMOPS_DTYPE_F32, f, 2, &err), err);
    CHECK(f[0] == 1.0f && f[1] == 1.0f + 0x1p-23f);
    /* out-of-range doubles, infinities and NaN */
    double x[4] = {1e300, -1e300, INFINITY, NAN};
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, x, LLMOPS_DTYPE_F16, h, 4, &err), err);
    CHECK(h[0] == 0x7c00 && h[1] == 0xfc00 && h[2] == 0x7c00 && f16_is_nan(h[3]));
    CHECK_OK(llmops_convert_floats(LLMOPS_DTYPE_F64, x, LLMOPS_DTYPE_BF16, h, 4, &err), err);
    CHECK(h[0] == 0x7f80 && h[1] == 0xff80 && h[2] == 0x7f80 && bf16_is_nan(h[3]));
}

/* ---- reference dequantisation -------------------------------------------------------- */

/*
 * Blocks are built here byte by byte from the layouts in ggml-common.h, and the
 * expected values follow dequantize_row_q*_* in ggml/src/ggml-quants.c:
 *   Q8_0: y[j] = d·qs[j]
 *   Q4_0: y[j] = d·((qs[j] & 15) − 8),  y[j+16] = d·((qs[j] >> 4) − 8)
 *   Q4_1: y[j] = d·(qs[j] & 15) + m,    y[j+16] = d·(qs[j] >> 4) + m
 *   Q5_0: the 5th bit of element i is bit i of the little-endian uint32 qh; −16
 *   Q5_1: as Q5_0 with + m instead of − 16
 * Scales are f16 patterns with hand-computed values and every product and sum
 * below is exact in float, so the comparison is ==.
 */
#define H_HALF 0x3800       /* 0.5                                         */
#define H_TENTH 0x2e66      /* 1638/16384 = 0.0999755859375                */
#define H_THIRD 0x3555      /* 1365/4096  = 0.333251953125                 */
#define H_NEG2 0xc000       /* -2                                          */
#define H_TINY 0x0001       /* 2^-24 (a subnormal scale)                   */

static void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* quant values for block b: spread over the whole range, different per block */
static int qval(int b, int i, int bits) { return (i * 7 + b * 5 + (i >> 3)) & ((1 << bits) - 1); }

TEST(dtype_dequant_q8_0) {
    llmops_error err = {0};
    uint8_t blk[3 * 34];
    static const uint16_t d16[3] = {H_HALF, H_TENTH, H_TINY};
    static const double dv[3] = {0.5, 0.0999755859375, 0x1p-24};
    for (int b = 0; b < 3; b++) {
        put_half(blk + b * 34, d16[b]);
        for (int j = 0; j < 32; j++) blk[b * 34 + 2 + j] = (uint8_t)(int8_t)(j * 8 - 128 + b); /* -128 .. 122 */
    }
    float y[96];
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q8_0, blk, y, 96, &err), err);
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 32; j++) {
            double want = dv[b] * (j * 8 - 128 + b);
            CHECK_MSG(y[b * 32 + j] == (float)want, "block %d elem %d: %.9g != %.9g", b, j, (double)y[b * 32 + j], want);
        }
    CHECK(y[0] == -64.0f && y[31] == 60.0f); /* 0.5 × -128, 0.5 × 120 */
}

TEST(dtype_dequant_q4_0_q4_1) {
    llmops_error err = {0};
    /* Q4_0: 18 bytes per block */
    uint8_t b0[2 * 18];
    static const uint16_t d16[2] = {H_HALF, H_NEG2};
    static const double dv[2] = {0.5, -2.0};
    for (int b = 0; b < 2; b++) {
        put_half(b0 + b * 18, d16[b]);
        for (int j = 0; j < 16; j++)
            b0[b * 18 + 2 + j] = (uint8_t)(qval(b, j, 4) | qval(b, j + 16, 4) << 4);
    }
    float y[64];
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q4_0, b0, y, 64, &err), err);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 32; i++)
            CHECK_MSG(y[b * 32 + i] == (float)(dv[b] * (qval(b, i, 4) - 8)), "q4_0 block %d elem %d: %g", b, i,
                      (double)y[b * 32 + i]);
    /* a literal block: nibbles 0x0 (low) and 0xf (high) → -8·d and 7·d */
    uint8_t lit[18] = {0};
    put_half(lit, H_HALF);
    memset(lit + 2, 0xf0, 16);
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q4_0, lit, y, 32, &err), err);
    CHECK(y[0] == -4.0f && y[15] == -4.0f && y[16] == 3.5f && y[31] == 3.5f);

    /* Q4_1: 20 bytes per block, d then m */
    uint8_t b1[2 * 20];
    static const uint16_t m16[2] = {H_THIRD, H_NEG2};
    static const double mv[2] = {0.333251953125, -2.0};
    static const uint16_t e16[2] = {H_TENTH, H_HALF};
    static const double ev[2] = {0.0999755859375, 0.5};
    for (int b = 0; b < 2; b++) {
        put_half(b1 + b * 20, e16[b]);
        put_half(b1 + b * 20 + 2, m16[b]);
        for (int j = 0; j < 16; j++)
            b1[b * 20 + 4 + j] = (uint8_t)(qval(b, j, 4) | qval(b, j + 16, 4) << 4);
    }
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q4_1, b1, y, 64, &err), err);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 32; i++)
            CHECK_MSG(y[b * 32 + i] == (float)(ev[b] * qval(b, i, 4) + mv[b]), "q4_1 block %d elem %d: %g", b, i,
                      (double)y[b * 32 + i]);
}

static void build_q5(uint8_t *blk, int b, int has_min, uint16_t d, uint16_t m) {
    put_half(blk, d);
    if (has_min) put_half(blk + 2, m);
    uint8_t *qh = blk + (has_min ? 4 : 2), *qs = qh + 4;
    uint32_t bits = 0;
    for (int i = 0; i < 32; i++)
        if (qval(b, i, 5) & 16) bits |= 1u << i;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(bits >> (8 * k)); /* little-endian */
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((qval(b, j, 5) & 15) | (qval(b, j + 16, 5) & 15) << 4);
}

TEST(dtype_dequant_q5_0_q5_1) {
    llmops_error err = {0};
    float y[64];
    uint8_t b0[2 * 22];
    build_q5(b0, 0, 0, H_HALF, 0);
    build_q5(b0 + 22, 1, 0, H_TENTH, 0);
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q5_0, b0, y, 64, &err), err);
    for (int i = 0; i < 32; i++) {
        CHECK_MSG(y[i] == (float)(0.5 * (qval(0, i, 5) - 16)), "q5_0 elem %d: %g", i, (double)y[i]);
        CHECK_MSG(y[32 + i] == (float)(0.0999755859375 * (qval(1, i, 5) - 16)), "q5_0 block 1 elem %d: %g", i,
                  (double)y[32 + i]);
    }
    /* every high bit set except element 31's: 31 → 15·d, and element 31 = 15 − 16 */
    uint8_t lit[22];
    put_half(lit, H_HALF);
    lit[2] = lit[3] = lit[4] = 0xff;
    lit[5] = 0x7f;
    memset(lit + 6, 0xff, 16);
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q5_0, lit, y, 32, &err), err);
    CHECK(y[0] == 7.5f && y[16] == 7.5f && y[30] == 7.5f && y[31] == -0.5f);

    uint8_t b1[2 * 24];
    build_q5(b1, 0, 1, H_TENTH, H_THIRD);
    build_q5(b1 + 24, 1, 1, H_HALF, H_NEG2);
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q5_1, b1, y, 64, &err), err);
    for (int i = 0; i < 32; i++) {
        CHECK_MSG(y[i] == (float)(0.0999755859375 * qval(0, i, 5) + 0.333251953125), "q5_1 elem %d: %g", i,
                  (double)y[i]);
        CHECK_MSG(y[32 + i] == (float)(0.5 * qval(1, i, 5) - 2.0), "q5_1 block 1 elem %d: %g", i, (double)y[32 + i]);
    }
}

TEST(dtype_dequant_errors_and_floats) {
    llmops_error err = {0};
    uint8_t blk[256] = {0};
    float y[256];
    CHECK_ERR(llmops_dequantize_ref(LLMOPS_DTYPE_Q4_K, blk, y, 256, &err), LLMOPS_ERR_UNSUPPORTED, err, "Q4_K");
    CHECK_ERR(llmops_dequantize_ref(LLMOPS_DTYPE_Q8_1, blk, y, 32, &err), LLMOPS_ERR_UNSUPPORTED, err, "Q8_1");
    CHECK_ERR(llmops_dequantize_ref(LLMOPS_DTYPE_IQ4_NL, blk, y, 32, &err), LLMOPS_ERR_UNSUPPORTED, err, "IQ4_NL");
    CHECK_ERR(llmops_dequantize_ref(77, blk, y, 32, &err), LLMOPS_ERR_UNSUPPORTED, err, "77");
    CHECK_ERR(llmops_dequantize_ref(LLMOPS_DTYPE_Q8_0, blk, y, 33, &err), LLMOPS_ERR_INVALID_ARG, err, "33");
    CHECK_ERR(llmops_dequantize_ref(LLMOPS_DTYPE_I32, blk, y, 4, &err), LLMOPS_ERR_UNSUPPORTED, err, "I32");
    /* the float types are widened */
    uint16_t h[3] = {0x3c00, 0xc000, 0x7bff};
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_F16, h, y, 3, &err), err);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 65504.0f);
    uint16_t b[2] = {0x3f80, 0x4049};
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_BF16, b, y, 2, &err), err);
    CHECK(y[0] == 1.0f && y[1] == 3.140625f);
    double d[2] = {0.25, -8.0};
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_F64, d, y, 2, &err), err);
    CHECK(y[0] == 0.25f && y[1] == -8.0f);
    CHECK_OK(llmops_dequantize_ref(LLMOPS_DTYPE_Q8_0, blk, y, 0, &err), err);
}

/*
 * The row conversion (F16C where present) equals llmops_fp32_to_fp16 bit for bit, NaN payloads
 * included: every sign/exponent/top-7-mantissa pattern (the high 16 bits) with low halves that put
 * the rounding point of normals and of each subnormal shift on, just under and just over a tie,
 * with both parities (so overflow to inf, ±0, subnormals, Inf and every NaN class are in), plus
 * random bits; then every length 0..40 at odd offsets, nothing written past n.
 */
TEST(dtype_fp16_row_matches_scalar) {
    static const uint16_t lo[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2fff, 0x3000,
                                  0x3001, 0x4000, 0x5fff, 0x6000, 0x6001, 0x7fff, 0x8000, 0x8001, 0x9fff,
                                  0xa000, 0xc000, 0xdfff, 0xe000, 0xffff, 0x5a5a};
    enum { NLO = sizeof lo / sizeof lo[0], ROW = 65536 };
    float *in = malloc(ROW * sizeof *in);
    uint16_t *got = malloc((ROW + 8) * sizeof *got);
    CHECK(in && got);
    size_t bad = 0;
    uint64_t s = 99;
    for (size_t l = 0; l <= NLO && bad < 10; l++) {
        for (uint32_t hi = 0; hi < ROW; hi++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            in[hi] = u2f(l < NLO ? hi << 16 | lo[l] : (uint32_t)(s >> 32));
        }
        got[ROW] = 0xabcd;
        llmops_fp32_to_fp16_row(in, got, ROW);
        CHECK(got[ROW] == 0xabcd);
        for (size_t i = 0; i < ROW && bad < 10; i++) {
            uint16_t want = llmops_fp32_to_fp16(in[i]);
            if (got[i] != want) {
                test_fail(__FILE__, __LINE__, "fp32_to_fp16_row(0x%08x) = 0x%04x, scalar 0x%04x", f2u(in[i]), got[i], want);
                bad++;
            }
        }
    }
    for (size_t off = 0; off < 4; off++)
        for (size_t n = 0; n <= 40; n++) {
            for (size_t i = 0; i < 48; i++) got[i] = 0xabcd;
            llmops_fp32_to_fp16_row(in + 1000 + off, got + off, n);
            for (size_t i = 0; i < 48; i++) {
                uint16_t want = i >= off && i < off + n ? llmops_fp32_to_fp16(in[1000 + i]) : 0xabcd;
                CHECK_MSG(got[i] == want, "row n=%zu off=%zu i=%zu", n, off, i);
            }
        }
    free(in), free(got);
}
