/*
 * Checkpoints of a fine-tuning run: RUN/checkpoints/step-N/ holds
 *   trainable.safetensors   every trainable tensor (F32, the trainer's names)
 *   optimizer.safetensors   AdamW moments "NAME.m" and "NAME.v"
 *   state.json              step, optimizer steps, dropout RNG, data position,
 *                           best validation loss, tokens seen
 * A checkpoint is written into a temporary folder, flushed and renamed, and only
 * then named by RUN/checkpoints/latest (replaced atomically), so a run killed
 * at any instant resumes from the last complete checkpoint.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "llmops/fileio.h"
#include "llmops/hash.h"
#include "llmops/log.h"
#include "llmops/safetensors.h"
#include "train/finetune_internal.h"

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rmtree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static llmops_status write_tensors(ft_run *r, const char *path, int moments, llmops_error *err) {
    llmops_st_writer *w = llmops_st_writer_create();
    if (!w) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    llmops_status st = LLMOPS_OK;
    char name[128];
    for (size_t i = 0; !st && i < llmops_trainer_n_tensors(r->t); i++) {
        const llmops_train_tensor *x = llmops_trainer_tensor(r->t, i);
        uint64_t shape[2] = {(uint64_t)x->rows, (uint64_t)x->cols};
        if (!moments) {
            st = llmops_st_writer_add(w, x->name, LLMOPS_DTYPE_F32, 2, shape, x->w, err);
        } else {
            snprintf(name, sizeof name, "%s.m", x->name);
            st = llmops_st_writer_add(w, name, LLMOPS_DTYPE_F32, 2, shape, llmops_adamw_m(r->opt, i), err);
            snprintf(name, sizeof name, "%s.v", x->name);
            if (!st) st = llmops_st_writer_add(w, name, LLMOPS_DTYPE_F32, 2, shape, llmops_adamw_v(r->opt, i), err);
        }
    }
    if (!st) st = llmops_st_writer_write(w, path, err);
    llmops_st_writer_free(w);
    return st;
}

/* Copies tensor values from a safetensors file into the trainer (weights) or optimizer (moments). */
static llmops_status read_tensors(ft_run *r, const char *path, int moments, llmops_error *err) {
    llmops_safetensors *sf;
    llmops_status st = llmops_safetensors_open(path, &sf, err);
    if (st) return st;
    char name[128];
    for (size_t i = 0; !st && i < llmops_trainer_n_tensors(r->t); i++) {
        llmops_train_tensor *x = llmops_trainer_tensor(r->t, i);
        for (int k = 0; !st && k < (moments ? 2 : 1); k++) {
            if (moments) snprintf(name, sizeof name, "%s.%c", x->name, k ? 'v' : 'm');
            else snprintf(name, sizeof name, "%s", x->name);
            const llmops_st_tensor *t = llmops_safetensors_find(sf, name);
            if (!t) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: tensor '%s' is missing (a checkpoint of another run?)",
                                      path, name);
                break;
            }
            if (t->type != LLMOPS_DTYPE_F32 || t->n_dims != 2 || t->shape[0] != (uint64_t)x->rows ||
                t->shape[1] != (uint64_t)x->cols) {
                st = llmops_error_set(err, LLMOPS_ERR_FORMAT,
                                      "%s: tensor '%s' does not have the trainer's shape [%lld, %lld] F32", path, name,
                                      (long long)x->rows, (long long)x->cols);
                break;
            }
            float *dst = moments ? (k ? llmops_adamw_v(r->opt, i) : llmops_adamw_m(r->opt, i)) : x->w;
            memcpy(dst, llmops_safetensors_data(sf, t), (size_t)(x->rows * x->cols) * sizeof(float));
        }
    }
    llmops_safetensors_free(sf);
    return st;
}

static llmops_status write_state(ft_run *r, const char *path, llmops_error *err) {
    llmops_data_pos pos = llmops_dataset_get_pos(r->ds, LLMOPS_SPLIT_TRAIN);
    char rng[32];
    snprintf(rng, sizeof rng, "%016" PRIx64, llmops_trainer_rng_get(r->t));
    json_t *o = json_pack("{s:I,s:I,s:s,s:{s:I,s:I},s:I,s:I,s:I,s:s}", "step", (json_int_t)r->step, "optimizer_steps",
                          (json_int_t)llmops_adamw_steps(r->opt), "rng", rng, "data", "epoch", (json_int_t)pos.epoch,
                          "index", (json_int_t)pos.index, "best_step", (json_int_t)r->best_step, "bad_evals",
                          (json_int_t)r->bad_evals, "tokens", (json_int_t)r->tokens_run, "method",
                          llmops_trainer_get_params(r->t)->method == LLMOPS_TRAIN_FULL ? "full" : "other");
    if (!o) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    /* NaN is not JSON: an absent best is null */
    json_object_set_new(o, "best_val_loss", isnan(r->best_val) ? json_null() : json_real(r->best_val));
    json_object_set_new(o, "val_loss_first", isnan(r->val_first) ? json_null() : json_real(r->val_first));
    llmops_status st = llmops_json_write_file(o, path, 2, err);
    json_decref(o);
    return st;
}

static int fsync_dir(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int rc = fsync(fileno(f));
    fclose(f);
    return rc;
}

llmops_status ft_save_checkpoint(ft_run *r, llmops_error *err) {
    char ck[1100], tmp[1200], fin[1200], p[1300];
    snprintf(ck, sizeof ck, "%s/checkpoints", r->dir);
    llmops_status st = llmops_mkdirs(ck, err);
    if (st) return st;
    snprintf(tmp, sizeof tmp, "%s/.tmp-step-%08lld", ck, (long long)r->step);
    snprintf(fin, sizeof fin, "%s/step-%08lld", ck, (long long)r->step);
    rmtree(tmp);
    if ((st = llmops_mkdirs(tmp, err))) return st;
    snprintf(p, sizeof p, "%s/trainable.safetensors", tmp);
    if ((st = write_tensors(r, p, 0, err))) return st;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    if ((st = write_tensors(r, p, 1, err))) return st;
    snprintf(p, sizeof p, "%s/state.json", tmp);
    if ((st = write_state(r, p, err))) return st;
    fsync_dir(tmp);
    rmtree(fin);
    if (rename(tmp, fin) != 0)
        return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot rename to %s: %s", tmp, fin, strerror(errno));
    fsync_dir(ck);
    char name[64];
    int len = snprintf(name, sizeof name, "step-%08lld\n", (long long)r->step);
    snprintf(p, sizeof p, "%s/latest", ck);
    if ((st = llmops_file_write_atomic(p, name, (size_t)len, err))) return st;
    /* prune: keep the newest `keep` step folders */
    int64_t keep = r->job->c.ckpt.keep;
    for (int64_t s = r->step - 1; s >= 0 && keep > 0; s--) {
        char d[1200];
        snprintf(d, sizeof d, "%s/step-%08lld", ck, (long long)s);
        if (!llmops_path_is_dir(d)) continue;
        if (keep > 1) {
            keep--;
            continue;
        }
        rmtree(d);
    }
    return LLMOPS_OK;
}

llmops_status ft_save_best(ft_run *r, llmops_error *err) {
    char d[1100], p[1200];
    snprintf(d, sizeof d, "%s/best", r->dir);
    llmops_status st = llmops_mkdirs(d, err);
    if (st) return st;
    snprintf(p, sizeof p, "%s/trainable.safetensors", d);
    if ((st = write_tensors(r, p, 0, err))) return st;
    char note[128];
    int len = snprintf(note, sizeof note, "{\"step\": %lld, \"val_loss\": %.9g}\n", (long long)r->step, r->best_val);
    snprintf(p, sizeof p, "%s/best.json", d);
    return llmops_file_write_atomic(p, note, (size_t)len, err);
}

llmops_status ft_load_best(ft_run *r, llmops_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/best/trainable.safetensors", r->dir);
    return read_tensors(r, p, 0, err);
}

llmops_status ft_start_run_dir(ft_run *r, llmops_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints/latest", r->dir);
    if (llmops_path_is_file(p))
        return llmops_error_set(err, LLMOPS_ERR_CONFIG,
                                "%s already holds a run; continue it with --resume %s, or set another output.dir",
                                r->dir, r->dir);
    char *text = NULL;
    size_t len = 0;
    llmops_status st = llmops_file_read_all(r->job->config_path, 8u << 20, &text, &len, err);
    if (st) return st;
    snprintf(p, sizeof p, "%s/config.yaml", r->dir);
    st = llmops_file_write_atomic(p, text, len, err);
    llmops_free(text);
    if (st) return st;
    snprintf(p, sizeof p, "%s/metrics.jsonl", r->dir);
    remove(p);
    return LLMOPS_OK;
}

llmops_status ft_open_metrics(ft_run *r, llmops_error *err) {
    if (r->dist.rank != 0) return LLMOPS_OK;
    char p[1200];
    snprintf(p, sizeof p, "%s/metrics.jsonl", r->dir);
    if (r->step > 0) {
        /* a resumed run: drop what the interrupted run logged after its checkpoint */
        char *text = NULL;
        size_t len = 0;
        if (llmops_file_read_all(p, (size_t)1 << 31, &text, &len, NULL) == LLMOPS_OK) {
            llmops_buf keep;
            llmops_buf_init(&keep, (size_t)1 << 31);
            char *line = text;
            while (line < text + len) {
                char *nl = memchr(line, '\n', (size_t)(text + len - line));
                size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
                json_t *o = NULL;
                int keep_it = 0;
                if (nl && llmops_json_parse(line, n, p, &o, NULL) == LLMOPS_OK) {
                    json_t *s = json_object_get(o, "step");
                    keep_it = json_is_integer(s) && json_integer_value(s) <= r->step;
                }
                json_decref(o);
                if (keep_it && llmops_buf_append(&keep, line, n + 1, err)) {
                    llmops_free(text);
                    llmops_buf_free(&keep);
                    return err->code;
                }
                line += n + 1;
            }
            llmops_free(text);
            llmops_status st = llmops_file_write_atomic(p, keep.data ? keep.data : "", keep.len, err);
            llmops_buf_free(&keep);
            if (st) return st;
        }
    }
    r->metrics = fopen(p, "a");
    if (!r->metrics) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s", p, strerror(errno));
    return LLMOPS_OK;
}

llmops_status ft_resume(ft_run *r, llmops_error *err) {
    char ck[1100], p[1400], *name = NULL;
    size_t len = 0;
    snprintf(ck, sizeof ck, "%s/checkpoints", r->dir);
    snprintf(p, sizeof p, "%s/latest", ck);
    llmops_status st = llmops_file_read_all(p, 256, &name, &len, err);
    if (st) return llmops_error_set(err, LLMOPS_ERR_NOT_FOUND, "%s: no checkpoint to resume from (%s)", r->dir, err->msg);
    while (len && (name[len - 1] == '\n' || name[len - 1] == '\r')) name[--len] = '\0';
    if (!len || strchr(name, '/')) {
        llmops_free(name);
        return llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s/latest: not a checkpoint name", ck);
    }
    char d[1300];
    snprintf(d, sizeof d, "%s/%s", ck, name);
    llmops_free(name);
    snprintf(p, sizeof p, "%s/trainable.safetensors", d);
    if ((st = read_tensors(r, p, 0, err))) return st;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", d);
    if ((st = read_tensors(r, p, 1, err))) return st;
    snprintf(p, sizeof p, "%s/state.json", d);
    json_t *o;
    if ((st = llmops_json_load_file(p, 1 << 20, &o, err))) return st;
    int64_t step = 0, osteps = 0, epoch = 0, index = 0, best_step = 0, bad = 0, tokens = 0;
    const char *rng = NULL;
    json_t *data = json_object_get(o, "data");
    if ((st = llmops_json_opt_int(o, "step", &step, p, err)) || (st = llmops_json_opt_int(o, "optimizer_steps", &osteps, p, err)) ||
        (st = llmops_json_opt_str(o, "rng", &rng, p, err)) || (st = llmops_json_opt_int(o, "best_step", &best_step, p, err)) ||
        (st = llmops_json_opt_int(o, "bad_evals", &bad, p, err)) || (st = llmops_json_opt_int(o, "tokens", &tokens, p, err)) ||
        !json_is_object(data) || (st = llmops_json_opt_int(data, "epoch", &epoch, p, err)) ||
        (st = llmops_json_opt_int(data, "index", &index, p, err)) || !rng) {
        json_decref(o);
        if (!st) st = llmops_error_set(err, LLMOPS_ERR_FORMAT, "%s: missing data position or RNG state", p);
        return st;
    }
    r->step = step;
    llmops_adamw_set_steps(r->opt, osteps);
    llmops_trainer_rng_set(r->t, strtoull(rng, NULL, 16));
    r->best_step = best_step;
    r->bad_evals = bad;
    json_t *bv = json_object_get(o, "best_val_loss"), *vf = json_object_get(o, "val_loss_first");
    r->best_val = json_is_number(bv) ? json_number_value(bv) : NAN;
    r->val_first = json_is_number(vf) ? json_number_value(vf) : NAN;
    json_decref(o);
    llmops_data_pos pos = {epoch, index};
    if ((st = llmops_dataset_set_pos(r->ds, LLMOPS_SPLIT_TRAIN, pos, err))) return st;
    LLMOPS_INFO("resumed %s at step %lld", d, (long long)step);
    return LLMOPS_OK;
}
