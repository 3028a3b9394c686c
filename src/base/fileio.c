#include "llmops/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmops/alloc.h"

llmops_status llmops_mmap_open(const char *path, llmops_mmap *out, llmops_error *err) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return llmops_error_set(err, LLMOPS_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return LLMOPS_OK;
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)sb.st_size;
    return LLMOPS_OK;
}

void llmops_mmap_close(llmops_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

llmops_status llmops_file_read_all(const char *path, size_t max, char **out, size_t *len,
                                   llmops_error *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    llmops_buf b;
    llmops_buf_init(&b, max);
    char chunk[65536];
    llmops_status st = LLMOPS_OK;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, fp);
        if (n > 0 && (st = llmops_buf_append(&b, chunk, n, err)) != LLMOPS_OK) break;
        if (n < sizeof chunk) {
            if (ferror(fp)) st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(fp);
    if (st == LLMOPS_ERR_LIMIT)
        llmops_error_set(err, st, "%s: file is larger than the limit of %zu bytes", path, max);
    if (st) {
        llmops_buf_free(&b);
        return st;
    }
    size_t n = 0;
    char *d = llmops_buf_detach(&b, &n);
    if (!d) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", path);
    *out = d;
    if (len) *len = n;
    return LLMOPS_OK;
}

static void fsync_parent_dir(const char *path) {
    char *copy = llmops_strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    llmops_free(copy);
}

llmops_status llmops_atomic_file_open(llmops_atomic_file *f, const char *path, llmops_error *err) {
    f->fp = NULL;
    f->final_path = llmops_strdup(path);
    size_t n = strlen(path) + 32;
    f->tmp_path = llmops_malloc(n);
    if (!f->final_path || !f->tmp_path) {
        llmops_free(f->final_path);
        llmops_free(f->tmp_path);
        f->final_path = f->tmp_path = NULL;
        return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        llmops_status st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot create: %s", f->tmp_path,
                                            strerror(errno));
        llmops_free(f->final_path);
        llmops_free(f->tmp_path);
        f->final_path = f->tmp_path = NULL;
        return st;
    }
    return LLMOPS_OK;
}

llmops_status llmops_atomic_file_write(llmops_atomic_file *f, const void *data, size_t len,
                                       llmops_error *err) {
    if (len && fwrite(data, 1, len, f->fp) != len)
        return llmops_error_set(err, LLMOPS_ERR_IO, "%s: write failed: %s", f->tmp_path, strerror(errno));
    return LLMOPS_OK;
}

uint64_t llmops_atomic_file_tell(const llmops_atomic_file *f) {
    long pos = ftell(f->fp);
    return pos < 0 ? 0 : (uint64_t)pos;
}

llmops_status llmops_atomic_file_pad(llmops_atomic_file *f, uint64_t align, llmops_error *err) {
    static const uint8_t zeros[64];
    uint64_t pos = llmops_atomic_file_tell(f);
    uint64_t pad = (align - pos % align) % align;
    while (pad > 0) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        llmops_status st = llmops_atomic_file_write(f, zeros, n, err);
        if (st) return st;
        pad -= n;
    }
    return LLMOPS_OK;
}

llmops_status llmops_atomic_file_commit(llmops_atomic_file *f, llmops_error *err) {
    llmops_status st = LLMOPS_OK;
    if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: flush failed: %s", f->tmp_path, strerror(errno));
    if (fclose(f->fp) != 0 && !st)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    f->fp = NULL;
    if (!st && rename(f->tmp_path, f->final_path) != 0)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: rename failed: %s", f->final_path, strerror(errno));
    if (st) unlink(f->tmp_path);
    else fsync_parent_dir(f->final_path);
    llmops_free(f->tmp_path);
    llmops_free(f->final_path);
    f->tmp_path = f->final_path = NULL;
    return st;
}

void llmops_atomic_file_abort(llmops_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    llmops_free(f->tmp_path);
    llmops_free(f->final_path);
    f->fp = NULL;
    f->tmp_path = f->final_path = NULL;
}

llmops_status llmops_file_write_atomic(const char *path, const void *data, size_t len,
                                       llmops_error *err) {
    llmops_atomic_file f;
    llmops_status st = llmops_atomic_file_open(&f, path, err);
    if (st) return st;
    if ((st = llmops_atomic_file_write(&f, data, len, err)) != LLMOPS_OK) {
        llmops_atomic_file_abort(&f);
        return st;
    }
    return llmops_atomic_file_commit(&f, err);
}

int llmops_path_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int llmops_path_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

char *llmops_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = llmops_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

llmops_status llmops_mkdirs(const char *path, llmops_error *err) {
    if (!path[0]) return llmops_error_set(err, LLMOPS_ERR_INVALID_ARG, "mkdirs: empty path");
    char *copy = llmops_strdup(path);
    if (!copy) return llmops_error_set(err, LLMOPS_ERR_NOMEM, "out of memory");
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            llmops_status st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot create directory: %s",
                                                copy, strerror(errno));
            llmops_free(copy);
            return st;
        }
        *p = '/';
    }
    llmops_status st = LLMOPS_OK;
    if (mkdir(copy, 0777) != 0 && errno != EEXIST)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot create directory: %s", copy, strerror(errno));
    else if (!llmops_path_is_dir(copy))
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: exists and is not a directory", copy);
    llmops_free(copy);
    return st;
}

/* Streams `from` into an atomic file at `to`: `to` is either the whole copy or untouched. */
llmops_status llmops_file_copy(const char *from, const char *to, llmops_error *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: %s", from, strerror(errno));
    llmops_atomic_file af;
    llmops_status st = llmops_atomic_file_open(&af, to, err);
    if (st) {
        fclose(in);
        return st;
    }
    char buf[1 << 16];
    size_t n;
    while (!st && (n = fread(buf, 1, sizeof buf, in)) > 0) st = llmops_atomic_file_write(&af, buf, n, err);
    if (!st && ferror(in)) st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: read error", from);
    fclose(in);
    if (st) {
        llmops_atomic_file_abort(&af);
        return st;
    }
    return llmops_atomic_file_commit(&af, err);
}
