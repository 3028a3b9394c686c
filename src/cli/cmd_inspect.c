/*
 * llmops inspect: the metadata and tensor table of a GGUF file, a safetensors
 * file (or sharded set), a Hugging Face folder or a llama2.c checkpoint, as
 * text or as JSON (--json) for scripts and tests.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli.h"
#include "llmops/convert.h"
#include "llmops/fileio.h"
#include "llmops/gguf.h"
#include "llmops/hash.h"
#include "llmops/llama2c.h"
#include "llmops/safetensors.h"

void usage_inspect(FILE *out) {
    fprintf(out,
            "usage: llmops inspect FILE|DIR [--json] [--hash] [--no-tensors] [--max-items N]\n\n"
            "Prints the metadata and the tensor table (name, type, shape, offset, bytes) of:\n"
            "  a GGUF file (v2/v3), a safetensors file or model.safetensors.index.json,\n"
            "  a Hugging Face folder (config.json + safetensors), a llama2.c checkpoint.\n"
            "GGUF shapes are listed as stored (ne[0], innermost first); safetensors and\n"
            "llama2.c shapes row-major (outermost first). Offsets are relative to the data\n"
            "section (GGUF) or byte buffer (safetensors), absolute for llama2.c.\n\n"
            "options:\n"
            "  --json          machine-readable output\n"
            "  --hash          add the SHA-256 of each tensor's bytes\n"
            "  --no-tensors    metadata only\n"
            "  --max-items N   array elements shown in text output (default 8)\n");
}

typedef struct {
    int json, hash, no_tensors;
    long max_items;
} inspect_opts;

/* ---- JSON building -------------------------------------------------------------- */

/* UTF-8 text with each invalid byte replaced by U+FFFD, as a JSON string. */
static json_t *json_text(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    llmops_buf b;
    llmops_buf_init(&b, n * 3 + 16);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && len > 1) {
            json_t *probe = json_stringn(s + i, len); /* rejects overlongs and surrogates */
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok) {
            llmops_buf_append(&b, s + i, len, NULL);
            i += len;
        } else {
            llmops_buf_append(&b, "\xef\xbf\xbd", 3, NULL);
            i++;
        }
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    llmops_buf_free(&b);
    return j;
}

static json_t *json_f64(double d) { return isfinite(d) ? json_real(d) : json_null(); }

static json_t *json_u64(uint64_t v) {
    if (v <= (uint64_t)INT64_MAX) return json_integer((json_int_t)v);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return json_string(buf);
}

static json_t *gguf_scalar_json(llmops_gguf_type t, const llmops_gguf_value *v) {
    switch (t) {
    case LLMOPS_GGUF_BOOL: return json_boolean(v->v.u64);
    case LLMOPS_GGUF_UINT8:
    case LLMOPS_GGUF_UINT16:
    case LLMOPS_GGUF_UINT32:
    case LLMOPS_GGUF_UINT64: return json_u64(v->v.u64);
    case LLMOPS_GGUF_INT8:
    case LLMOPS_GGUF_INT16:
    case LLMOPS_GGUF_INT32:
    case LLMOPS_GGUF_INT64: return json_integer(v->v.i64);
    case LLMOPS_GGUF_FLOAT32:
    case LLMOPS_GGUF_FLOAT64: return json_f64(v->v.f64);
    case LLMOPS_GGUF_STRING: return json_text(v->v.str.data, (size_t)v->v.str.len);
    default: return json_null();
    }
}

static json_t *gguf_array_json(const llmops_gguf_array *a) {
    json_t *list = json_array();
    for (uint64_t i = 0; list && i < a->n; i++) {
        json_t *e;
        if (a->type == LLMOPS_GGUF_STRING) e = json_text(a->strs[i].data, (size_t)a->strs[i].len);
        else if (a->type == LLMOPS_GGUF_ARRAY) {
            e = json_object();
            json_object_set_new(e, "elem_type", json_string(llmops_gguf_type_name(a->items[i].v.arr.type)));
            json_object_set_new(e, "value", gguf_array_json(&a->items[i].v.arr));
        } else {
            llmops_gguf_value v = {.type = a->type};
            if (a->type == LLMOPS_GGUF_FLOAT32 || a->type == LLMOPS_GGUF_FLOAT64) v.v.f64 = llmops_gguf_arr_f64(a, i);
            else if (a->type == LLMOPS_GGUF_INT8 || a->type == LLMOPS_GGUF_INT16 || a->type == LLMOPS_GGUF_INT32 ||
                     a->type == LLMOPS_GGUF_INT64)
                v.v.i64 = llmops_gguf_arr_i64(a, i);
            else v.v.u64 = llmops_gguf_arr_u64(a, i);
            e = gguf_scalar_json(a->type, &v);
        }
        json_array_append_new(list, e);
    }
    return list;
}

static json_t *shape_json(const uint64_t *shape, uint32_t n) {
    json_t *s = json_array();
    for (uint32_t i = 0; i < n; i++) json_array_append_new(s, json_u64(shape[i]));
    return s;
}

static json_t *tensor_json(const char *name, size_t name_len, const char *type, const uint64_t *shape, uint32_t n_dims,
                           uint64_t offset, uint64_t nbytes, const void *data, int hash) {
    json_t *t = json_object();
    json_object_set_new(t, "name", json_text(name, name_len));
    json_object_set_new(t, "type", json_string(type));
    json_object_set_new(t, "shape", shape_json(shape, n_dims));
    json_object_set_new(t, "offset", json_u64(offset));
    json_object_set_new(t, "nbytes", json_u64(nbytes));
    if (hash) {
        char hex[LLMOPS_SHA256_HEX_SIZE];
        llmops_sha256_hex(data, (size_t)nbytes, hex);
        json_object_set_new(t, "sha256", json_string(hex));
    }
    return t;
}

static json_t *arch_json(const llmops_arch *a) {
    json_t *o = json_object();
    json_object_set_new(o, "family", json_string(llmops_arch_family_name(a->family)));
    json_object_set_new(o, "model_type", json_string(a->hf_model_type));
    json_object_set_new(o, "vocab_size", json_integer(a->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(a->hidden_size));
    json_object_set_new(o, "n_layers", json_integer(a->n_layers));
    json_object_set_new(o, "n_heads", json_integer(a->n_heads));
    json_object_set_new(o, "n_kv_heads", json_integer(a->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(a->head_dim));
    json_object_set_new(o, "ffn_size", json_integer(a->ffn_size));
    json_object_set_new(o, "max_positions", json_integer(a->max_positions));
    json_object_set_new(o, "norm", json_string(a->norm == LLMOPS_NORM_RMS ? "rms" : "layer"));
    json_object_set_new(o, "norm_eps", json_real(a->norm_eps));
    static const char *const acts[] = {"silu", "gelu", "gelu_tanh", "relu"};
    json_object_set_new(o, "activation", json_string(acts[a->act]));
    json_object_set_new(o, "gated_ffn", json_boolean(a->gated_ffn));
    json_object_set_new(o, "position", json_string(a->pos == LLMOPS_POS_ROPE ? "rope" : "learned"));
    if (a->pos == LLMOPS_POS_ROPE) {
        json_object_set_new(o, "rope_theta", json_real(a->rope_theta));
        json_object_set_new(o, "rope_dim", json_integer(a->rope_dim));
        static const char *const sc[] = {"none", "linear", "llama3", "yarn", "dynamic"};
        json_object_set_new(o, "rope_scaling", json_string(sc[a->rope_scaling]));
        if (a->rope_scaling) json_object_set_new(o, "rope_factor", json_real(a->rope_factor));
    }
    json_object_set_new(o, "qkv_bias", json_boolean(a->qkv_bias));
    json_object_set_new(o, "tie_embeddings", json_boolean(a->tie_embeddings));
    json_object_set_new(o, "causal", json_boolean(a->causal));
    return o;
}

/* ---- text output helpers ---------------------------------------------------------- */

static void print_text(FILE *f, const char *s, size_t n, size_t max) {
    fputc('"', f);
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (n > max) fprintf(f, "… (%zu bytes)", n);
}

static void print_scalar(FILE *f, llmops_gguf_type t, const llmops_gguf_value *v) {
    switch (t) {
    case LLMOPS_GGUF_BOOL: fputs(v->v.u64 ? "true" : "false", f); break;
    case LLMOPS_GGUF_UINT8:
    case LLMOPS_GGUF_UINT16:
    case LLMOPS_GGUF_UINT32:
    case LLMOPS_GGUF_UINT64: fprintf(f, "%" PRIu64, v->v.u64); break;
    case LLMOPS_GGUF_INT8:
    case LLMOPS_GGUF_INT16:
    case LLMOPS_GGUF_INT32:
    case LLMOPS_GGUF_INT64: fprintf(f, "%" PRId64, v->v.i64); break;
    case LLMOPS_GGUF_FLOAT32:
    case LLMOPS_GGUF_FLOAT64: fprintf(f, "%.9g", v->v.f64); break;
    case LLMOPS_GGUF_STRING: print_text(f, v->v.str.data, (size_t)v->v.str.len, 160); break;
    default: break;
    }
}

static void print_array(FILE *f, const llmops_gguf_array *a, long max) {
    fprintf(f, "[%s × %" PRIu64 "]", llmops_gguf_type_name(a->type), a->n);
    for (uint64_t i = 0; i < a->n && (long)i < max; i++) {
        fputs(i ? ", " : " ", f);
        if (a->type == LLMOPS_GGUF_STRING) print_text(f, a->strs[i].data, (size_t)a->strs[i].len, 40);
        else if (a->type == LLMOPS_GGUF_ARRAY) print_array(f, &a->items[i].v.arr, 3);
        else if (a->type == LLMOPS_GGUF_FLOAT32 || a->type == LLMOPS_GGUF_FLOAT64)
            fprintf(f, "%.6g", llmops_gguf_arr_f64(a, i));
        else if (a->type == LLMOPS_GGUF_INT8 || a->type == LLMOPS_GGUF_INT16 || a->type == LLMOPS_GGUF_INT32 ||
                 a->type == LLMOPS_GGUF_INT64)
            fprintf(f, "%" PRId64, llmops_gguf_arr_i64(a, i));
        else fprintf(f, "%" PRIu64, llmops_gguf_arr_u64(a, i));
    }
    if ((long)a->n > max) fputs(", …", f);
}

static void shape_text(char *buf, size_t cap, const uint64_t *shape, uint32_t n) {
    size_t o = 0;
    buf[0] = '\0';
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (uint32_t i = 0; i < n && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %" PRIu64 : "%" PRIu64, shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static void human_bytes(char *buf, size_t cap, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)n / (double)(1ull << 30));
    else if (n >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", (double)n / (double)(1ull << 20));
    else if (n >= 1024) snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
    else snprintf(buf, cap, "%" PRIu64 " B", n);
}

static void tensor_row(const char *name, size_t nlen, const char *type, const uint64_t *shape, uint32_t nd,
                       uint64_t off, uint64_t nbytes, const void *data, int hash) {
    char sh[128];
    shape_text(sh, sizeof sh, shape, nd);
    printf("  %-40.*s %-8s %-22s %12" PRIu64 " %12" PRIu64, (int)nlen, name, type, sh, off, nbytes);
    if (hash) {
        char hex[LLMOPS_SHA256_HEX_SIZE];
        llmops_sha256_hex(data, (size_t)nbytes, hex);
        printf("  %s", hex);
    }
    putchar('\n');
}

static void tensor_header(int hash) {
    printf("  %-40s %-8s %-22s %12s %12s%s\n", "name", "type", "shape", "offset", "bytes", hash ? "  sha256" : "");
}

static int emit_json(json_t *root) {
    llmops_buf b;
    llmops_buf_init(&b, (size_t)1 << 31);
    llmops_error err = {0};
    llmops_status st = llmops_json_dump(root, 2, &b, &err);
    json_decref(root);
    if (st) {
        llmops_buf_free(&b);
        return cli_fail("%s", err.msg);
    }
    fwrite(b.data, 1, b.len, stdout);
    putchar('\n');
    llmops_buf_free(&b);
    return 0;
}

/* ---- per format ---------------------------------------------------------------------- */

static int inspect_gguf(const char *path, const inspect_opts *o) {
    llmops_gguf *g;
    llmops_error err = {0};
    if (llmops_gguf_open(path, &g, &err)) return cli_fail("%s", err.msg);
    size_t nkv = llmops_gguf_n_kv(g), nt = llmops_gguf_n_tensors(g);
    llmops_arch a;
    int have_arch = llmops_arch_from_gguf(g, &a, NULL) == LLMOPS_OK;
    if (o->json) {
        json_t *root = json_object(), *hdr = json_object(), *meta = json_array(), *tens = json_array();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string("gguf"));
        json_object_set_new(hdr, "version", json_integer(llmops_gguf_version(g)));
        json_object_set_new(hdr, "alignment", json_integer(llmops_gguf_alignment(g)));
        json_object_set_new(hdr, "data_offset", json_u64(llmops_gguf_data_offset(g)));
        json_object_set_new(root, "gguf", hdr);
        if (have_arch) json_object_set_new(root, "architecture", arch_json(&a));
        for (size_t i = 0; i < nkv; i++) {
            const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
            json_t *e = json_object();
            json_object_set_new(e, "key", json_text(kv->key.data, (size_t)kv->key.len));
            json_object_set_new(e, "type", json_string(llmops_gguf_type_name(kv->value.type)));
            if (kv->value.type == LLMOPS_GGUF_ARRAY) {
                json_object_set_new(e, "elem_type", json_string(llmops_gguf_type_name(kv->value.v.arr.type)));
                json_object_set_new(e, "value", gguf_array_json(&kv->value.v.arr));
            } else {
                json_object_set_new(e, "value", gguf_scalar_json(kv->value.type, &kv->value));
            }
            json_array_append_new(meta, e);
        }
        json_object_set_new(root, "metadata", meta);
        for (size_t i = 0; i < nt && !o->no_tensors; i++) {
            const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
            json_array_append_new(tens, tensor_json(t->name.data, (size_t)t->name.len, llmops_dtype_name(t->type), t->ne,
                                                    t->n_dims, t->offset, t->nbytes, llmops_gguf_tensor_data(g, t),
                                                    o->hash));
        }
        json_object_set_new(root, "tensors", tens);
        llmops_gguf_free(g);
        return emit_json(root);
    }
    char hb[32];
    human_bytes(hb, sizeof hb, llmops_gguf_file_size(g));
    printf("%s: GGUF v%u, %s, alignment %u, data section at byte %" PRIu64 "\n", path, llmops_gguf_version(g), hb,
           llmops_gguf_alignment(g), llmops_gguf_data_offset(g));
    if (have_arch)
        printf("architecture: %s, %" PRId64 " layers, width %" PRId64 ", %" PRId64 " heads (%" PRId64
               " KV), vocabulary %" PRId64 ", context %" PRId64 "\n",
               llmops_arch_family_name(a.family), a.n_layers, a.hidden_size, a.n_heads, a.n_kv_heads, a.vocab_size,
               a.max_positions);
    printf("\nmetadata (%zu keys):\n", nkv);
    for (size_t i = 0; i < nkv; i++) {
        const llmops_gguf_kv *kv = llmops_gguf_kv_at(g, i);
        printf("  %-44.*s %-8s ", (int)kv->key.len, kv->key.data, llmops_gguf_type_name(kv->value.type));
        if (kv->value.type == LLMOPS_GGUF_ARRAY) print_array(stdout, &kv->value.v.arr, o->max_items);
        else print_scalar(stdout, kv->value.type, &kv->value);
        putchar('\n');
    }
    if (!o->no_tensors) {
        uint64_t total = 0;
        for (size_t i = 0; i < nt; i++) total += llmops_gguf_tensor_at(g, i)->nbytes;
        human_bytes(hb, sizeof hb, total);
        printf("\ntensors (%zu, %s; shape is ne[0..], innermost first):\n", nt, hb);
        tensor_header(o->hash);
        for (size_t i = 0; i < nt; i++) {
            const llmops_gguf_tensor *t = llmops_gguf_tensor_at(g, i);
            tensor_row(t->name.data, (size_t)t->name.len, llmops_dtype_name(t->type), t->ne, t->n_dims, t->offset,
                       t->nbytes, llmops_gguf_tensor_data(g, t), o->hash);
        }
    }
    llmops_gguf_free(g);
    return 0;
}

static int inspect_safetensors(const char *path, const char *config_path, const inspect_opts *o) {
    llmops_st_model *m;
    llmops_error err = {0};
    llmops_arch a;
    int have_arch = 0;
    if (config_path) {
        if (llmops_arch_from_hf_config_file(config_path, &a, &err)) return cli_fail("%s", err.msg);
        have_arch = 1;
    }
    if (llmops_st_model_open(path, &m, &err)) return cli_fail("%s", err.msg);
    size_t nt = llmops_st_model_n_tensors(m), ns = llmops_st_model_n_shards(m);
    if (o->json) {
        json_t *root = json_object(), *meta = json_array(), *tens = json_array(), *files = json_array();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string(config_path ? "hf" : "safetensors"));
        if (have_arch) json_object_set_new(root, "architecture", arch_json(&a));
        for (size_t s = 0; s < ns; s++) json_array_append_new(files, json_string(llmops_st_model_shard_path(m, s)));
        json_object_set_new(root, "files", files);
        const llmops_safetensors *first = llmops_st_model_shard(m, 0);
        for (size_t i = 0; i < llmops_safetensors_n_metadata(first); i++) {
            const char *k, *v;
            llmops_safetensors_metadata_at(first, i, &k, &v);
            json_t *e = json_object();
            json_object_set_new(e, "key", json_string(k));
            json_object_set_new(e, "type", json_string("string"));
            json_object_set_new(e, "value", json_string(v));
            json_array_append_new(meta, e);
        }
        json_object_set_new(root, "metadata", meta);
        for (size_t i = 0; i < nt && !o->no_tensors; i++) {
            const llmops_safetensors *sh;
            const llmops_st_tensor *t = llmops_st_model_tensor_at(m, i, &sh);
            json_t *e = tensor_json(t->name, strlen(t->name), llmops_dtype_get(t->type)->st_name, t->shape, t->n_dims,
                                    t->begin, t->end - t->begin, llmops_safetensors_data(sh, t), o->hash);
            if (ns > 1)
                for (size_t s = 0; s < ns; s++)
                    if (llmops_st_model_shard(m, s) == sh)
                        json_object_set_new(e, "file", json_string(llmops_st_model_shard_path(m, s)));
            json_array_append_new(tens, e);
        }
        json_object_set_new(root, "tensors", tens);
        llmops_st_model_free(m);
        return emit_json(root);
    }
    printf("%s: %s, %zu file%s\n", path, config_path ? "Hugging Face model" : "safetensors", ns, ns == 1 ? "" : "s");
    if (have_arch)
        printf("architecture: %s (%s), %" PRId64 " layers, width %" PRId64 ", %" PRId64 " heads (%" PRId64
               " KV), ffn %" PRId64 ", vocabulary %" PRId64 ", context %" PRId64 ", norm eps %g\n",
               a.hf_model_type, a.hf_architecture, a.n_layers, a.hidden_size, a.n_heads, a.n_kv_heads, a.ffn_size,
               a.vocab_size, a.max_positions, a.norm_eps);
    const llmops_safetensors *first = llmops_st_model_shard(m, 0);
    size_t nm = llmops_safetensors_n_metadata(first);
    if (nm) {
        printf("\nmetadata (%zu keys):\n", nm);
        for (size_t i = 0; i < nm; i++) {
            const char *k, *v;
            llmops_safetensors_metadata_at(first, i, &k, &v);
            printf("  %-44s ", k);
            print_text(stdout, v, strlen(v), 160);
            putchar('\n');
        }
    }
    if (!o->no_tensors) {
        for (size_t s = 0; s < ns; s++) {
            const llmops_safetensors *sh = llmops_st_model_shard(m, s);
            printf("\n%s: %zu tensors, buffer at byte %" PRIu64 " (shape row-major):\n", llmops_st_model_shard_path(m, s),
                   llmops_safetensors_n_tensors(sh), llmops_safetensors_buffer_offset(sh));
            tensor_header(o->hash);
            for (size_t i = 0; i < llmops_safetensors_n_tensors(sh); i++) {
                const llmops_st_tensor *t = llmops_safetensors_tensor_at(sh, i);
                tensor_row(t->name, strlen(t->name), llmops_dtype_get(t->type)->st_name, t->shape, t->n_dims, t->begin,
                           t->end - t->begin, llmops_safetensors_data(sh, t), o->hash);
            }
        }
    }
    llmops_st_model_free(m);
    return 0;
}

static int inspect_llama2c(const char *path, const inspect_opts *o) {
    llmops_llama2c *m;
    llmops_error err = {0};
    if (llmops_llama2c_open(path, &m, &err)) return cli_fail("%s", err.msg);
    llmops_arch a;
    llmops_llama2c_arch(m, &a);
    if (o->json) {
        json_t *root = json_object(), *hdr = json_object(), *tens = json_array();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string("llama2c"));
        json_object_set_new(hdr, "version", json_integer(m->version));
        json_object_set_new(hdr, "dim", json_integer(m->dim));
        json_object_set_new(hdr, "hidden_dim", json_integer(m->hidden_dim));
        json_object_set_new(hdr, "n_layers", json_integer(m->n_layers));
        json_object_set_new(hdr, "n_heads", json_integer(m->n_heads));
        json_object_set_new(hdr, "n_kv_heads", json_integer(m->n_kv_heads));
        json_object_set_new(hdr, "vocab_size", json_integer(m->vocab_size));
        json_object_set_new(hdr, "seq_len", json_integer(m->seq_len));
        json_object_set_new(hdr, "shared_classifier", json_boolean(m->shared_classifier));
        json_object_set_new(root, "llama2c", hdr);
        json_object_set_new(root, "architecture", arch_json(&a));
        for (size_t i = 0; i < m->n_tensors && !o->no_tensors; i++) {
            const llmops_llama2c_tensor *t = &m->tensors[i];
            uint64_t n = 1;
            for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
            json_array_append_new(tens, tensor_json(t->name, strlen(t->name), "F32", t->shape, t->n_dims, t->offset,
                                                    n * 4, t->data, o->hash));
        }
        json_object_set_new(root, "tensors", tens);
        llmops_llama2c_free(m);
        return emit_json(root);
    }
    printf("%s: llama2.c checkpoint (%s), dim %d, hidden %d, %d layers, %d heads (%d KV), vocabulary %d, "
           "context %d, classifier %s\n",
           path, m->version ? "version 1" : "legacy", m->dim, m->hidden_dim, m->n_layers, m->n_heads, m->n_kv_heads,
           m->vocab_size, m->seq_len, m->shared_classifier ? "shared with the embedding" : "separate");
    if (!o->no_tensors) {
        printf("\ntensors (%zu; shape row-major; offset absolute):\n", m->n_tensors);
        tensor_header(o->hash);
        for (size_t i = 0; i < m->n_tensors; i++) {
            const llmops_llama2c_tensor *t = &m->tensors[i];
            uint64_t n = 1;
            for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
            tensor_row(t->name, strlen(t->name), "F32", t->shape, t->n_dims, t->offset, n * 4, t->data, o->hash);
        }
    }
    llmops_llama2c_free(m);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"hash", no_argument, 0, 'H'},
                                         {"no-tensors", no_argument, 0, 'T'},
                                         {"max-items", required_argument, 0, 'm'},
                                         {0, 0, 0, 0}};
    inspect_opts o = {0, 0, 0, 8};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j': o.json = 1; break;
        case 'H': o.hash = 1; break;
        case 'T': o.no_tensors = 1; break;
        case 'm': {
            char *end;
            o.max_items = strtol(optarg, &end, 10);
            if (*end || o.max_items < 0) return cli_usage_error("inspect", "--max-items needs a count");
            break;
        }
        default: return cli_usage_error("inspect", "unknown option");
        }
    }
    if (argc - optind != 1) return cli_usage_error("inspect", "expected one FILE or DIR");
    const char *path = argv[optind];
    llmops_json_init();
    switch (llmops_detect_format(path)) {
    case LLMOPS_FORMAT_GGUF: return inspect_gguf(path, &o);
    case LLMOPS_FORMAT_SAFETENSORS: return inspect_safetensors(path, NULL, &o);
    case LLMOPS_FORMAT_LLAMA2C: return inspect_llama2c(path, &o);
    case LLMOPS_FORMAT_HF_DIR: {
        char *cfg = llmops_path_join(path, "config.json");
        int r = inspect_safetensors(path, cfg, &o);
        llmops_free(cfg);
        return r;
    }
    default:
        if (!llmops_path_is_file(path) && !llmops_path_is_dir(path)) return cli_fail("%s: no such file or folder", path);
        return cli_fail("%s: not a GGUF, safetensors, Hugging Face folder or llama2.c checkpoint", path);
    }
}
