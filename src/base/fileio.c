#include "llmops/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "llmops/alloc.h"
#include "llmops/log.h"

/*
 * Weights are read once per token from end to end, and through 4 KiB pages
 * that costs a TLB miss and a restart of the hardware prefetcher every 4 KiB:
 * on this project's machines a model decodes some 30% faster when its file
 * is mapped through 2 MiB pages. The kernel maps a file that way when the
 * mapping is 2 MiB aligned (file offset 0 at an aligned address), asked for
 * with MADV_HUGEPAGE, and the page cache holds the file in 2 MiB folios. A
 * file read from disk under such a mapping is cached in them (the readahead
 * of a VM_HUGEPAGE fault is PMD sized), and so is one this project wrote
 * (llmops_atomic_file writes aligned 2 MiB pieces); one another program
 * wrote in small pieces is cached in small folios and stays so, and so does
 * a part of a cached file that was evicted and read back in small pieces. For
 * large files (HUGE_RECACHE_MIN) the 2 MiB blocks held that way are dropped
 * from the cache (recache_small_blocks), to be read back in 2 MiB folios
 * under the mapping: posix_fadvise(DONTNEED)
 * drops only clean pages no other mapping uses (fdatasync first, so a file
 * just written is clean), so nothing is lost and other users of the file are
 * not disturbed. LLMOPS_HUGEPAGES=0 turns all of this off (a plain mapping).
 */
#define HUGE_BYTES ((size_t)2 << 20)
#define HUGE_RECACHE_MIN ((size_t)64 << 20)

static int hugepages_wanted(void) {
    const char *e = getenv("LLMOPS_HUGEPAGES");
    return !(e && e[0] == '0' && !e[1]);
}

/* Whether the kernel maps anything through transparent huge pages ("never" in its setting, or no such
 * setting: no), so that re-reading a file's blocks can get them: otherwise every load would drop and
 * read again a file that can only ever be cached in small pages. */
static int thp_possible(void) {
    char buf[128] = {0};
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n > 0 && !strstr(buf, "[never]");
}

/* A fresh private anonymous mapping of size bytes (prot) at a 2 MiB aligned address, or NULL. */
static uint8_t *reserve_aligned(size_t size, int prot) {
    uint8_t *r = mmap(NULL, size + HUGE_BYTES, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return NULL;
    uint8_t *al = (uint8_t *)(((uintptr_t)r + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    /* the reservation's ends outside the pages of [al, al + size) */
    uint8_t *end = al + ((size + 4095) & ~(size_t)4095), *rend = r + size + HUGE_BYTES;
    if (al > r) munmap(r, (size_t)(al - r));
    if (rend > end) munmap(end, (size_t)(rend - end));
    return al;
}

/* The file mapped read-only at a 2 MiB aligned address with MADV_HUGEPAGE, or MAP_FAILED. */
static void *map_aligned(int fd, size_t size) {
    uint8_t *al = reserve_aligned(size, PROT_NONE);
    if (!al) return MAP_FAILED;
    void *p = mmap(al, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        munmap(al, size);
        return MAP_FAILED;
    }
    madvise(p, size, MADV_HUGEPAGE);
    return p;
}

void *llmops_huge_alloc(size_t size) {
    uint8_t *p = reserve_aligned(size, PROT_READ | PROT_WRITE);
    if (p && hugepages_wanted()) madvise(p, size, MADV_HUGEPAGE);
    return p;
}

void llmops_huge_free(void *p, size_t size) {
    if (p) munmap(p, size);
}

/* The kB of the mapping that starts at p mapped through huge pages (FilePmdMapped in /proc/self/smaps);
 * -1 where that cannot be told. */
static long pmd_kb(const uint8_t *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (kb < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) /* a mapping's first line */
            in = lo == (unsigned long)(uintptr_t)p;
        else if (in && !strncmp(line, "FilePmdMapped:", 14))
            kb = strtol(line + 14, NULL, 10);
    }
    fclose(f);
    return kb;
}

/* What recache_small_blocks knows of a 2 MiB block. */
enum { BLK_UNCACHED, BLK_PART, BLK_WHOLE, BLK_SMALL, BLK_HUGE };

/*
 * Among the blocks [b0, b1) held whole by the cache (BLK_WHOLE), those the kernel maps through small
 * pages, marked BLK_SMALL: the range is unmapped (the cache stays), its whole blocks touched, and if some but not
 * all came back through huge pages, each half is looked at the same way (none: all are small). A few
 * reads of smaps for a few such blocks, not one per block (on a 600 MB mapping each read takes about a
 * millisecond).
 */
static void find_small(uint8_t *p, uint8_t *state, size_t b0, size_t b1) {
    size_t n = 0;
    for (size_t b = b0; b < b1; b++) n += state[b] == BLK_WHOLE;
    if (!n) return;
    madvise(p + b0 * HUGE_BYTES, (b1 - b0) * HUGE_BYTES, MADV_DONTNEED);
    const long before = pmd_kb(p);
    for (size_t b = b0; b < b1; b++)
        if (state[b] == BLK_WHOLE) (void)*(const volatile uint8_t *)(p + b * HUGE_BYTES);
    const long after = pmd_kb(p);
    if (before < 0 || after < 0 || after - before >= (long)(n * (HUGE_BYTES >> 10))) return;
    if (after == before || b1 - b0 == 1) { /* none of them huge (a file cached in small folios throughout) */
        for (size_t b = b0; b < b1; b++)
            if (state[b] == BLK_WHOLE) state[b] = BLK_SMALL;
        return;
    }
    find_small(p, state, b0, b0 + (b1 - b0) / 2);
    find_small(p, state, b0 + (b1 - b0) / 2, b1);
}

/*
 * The file's whole 2 MiB blocks that the page cache holds in small folios, dropped from it and read
 * again under the mapping, each as one 2 MiB folio. The cache of a large file can be evicted in part and
 * read back in small pieces (another program, the kernel's readahead): block by block, not the whole
 * file (SmolLM Q8_0, a file this project wrote: 11 of its 68 blocks, so decoding read 16% of its weights
 * through 4 KiB pages, which a probe of a few blocks did not see). mincore tells the blocks the cache
 * holds in part (never one 2 MiB folio) from those it holds whole, and of the whole ones find_small
 * those in small folios. Those are dropped and read again at once, in order, with the blocks not cached
 * at all where others are (a file evicted in part: the kernel evicts cold cache in whole folios).
 *
 * All of this, find_small's touches too, runs with the mapping advised MADV_RANDOM, so that a fault
 * reads its own 2 MiB folio and no more. Otherwise a fault on a block not cached reads ahead, and so
 * does one on a cached block that carries the kernel's readahead mark (as blocks read ahead before do):
 * windows that grow as blocks are read in order, and a window that meets a block already cached reads
 * the rest of itself in 4 KiB pages (TinyLlama Q8_0 with 40% of its blocks evicted at random: 48-62 of
 * its 557 blocks ended in small folios, 9-11% of the weights, the loader's own reads included). Where
 * no cached block stays (a file not cached but for a partly cached first block, as format detection
 * leaves it), the blocks are read with readahead, which then meets none. A file not cached at all is
 * left to its first reads, likewise. Two rounds at most (pages another process maps are not dropped).
 * Returns the number of blocks still small; *filled: the blocks not cached that were read.
 */
static size_t recache_small_blocks(int fd, uint8_t *p, size_t size, size_t *dropped, size_t *filled) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), per = HUGE_BYTES / page, nb = size / HUGE_BYTES;
    unsigned char *vec = nb ? malloc(nb * per) : NULL;
    uint8_t *state = nb ? calloc(nb, 1) : NULL; /* BLK_* */
    size_t left = 0, uncached = 0;
    *dropped = *filled = 0;
    if (!vec || !state || mincore(p, nb * HUGE_BYTES, vec) != 0) goto out;
    for (size_t b = 0; b < nb; b++) {
        size_t n = 0;
        for (size_t i = 0; i < per; i++) n += vec[b * per + i] & 1;
        state[b] = n == 0 ? BLK_UNCACHED : n < per ? BLK_PART : BLK_WHOLE;
        uncached += state[b] == BLK_UNCACHED;
    }
    madvise(p, nb * HUGE_BYTES, MADV_RANDOM);
    for (int round = 0; round < 2; round++) {
        find_small(p, state, 0, nb);
        left = 0;
        for (size_t b = 0; b < nb; b++) left += state[b] == BLK_PART || state[b] == BLK_SMALL;
        if (round == 1 || (!left && (uncached == 0 || uncached == nb))) break;
        fdatasync(fd); /* pages still dirty (a file just written) would stay */
        for (size_t b = 0; b < nb; b++) {
            if (state[b] != BLK_PART && state[b] != BLK_SMALL) continue;
            madvise(p + b * HUGE_BYTES, HUGE_BYTES, MADV_DONTNEED); /* our mapping of them goes first */
            posix_fadvise(fd, (off_t)(b * HUGE_BYTES), (off_t)HUGE_BYTES, POSIX_FADV_DONTNEED);
            ++*dropped;
        }
        *filled = uncached;
        size_t kept = 0;
        for (size_t b = 0; b < nb; b++) kept += state[b] == BLK_WHOLE;
        if (!kept) madvise(p, nb * HUGE_BYTES, MADV_NORMAL); /* nothing cached in the way: read ahead */
        for (size_t b = 0; b < nb; b++) /* read back (and those not cached), and looked at again in the next round */
            if (state[b] != BLK_WHOLE) (void)*(const volatile uint8_t *)(p + b * HUGE_BYTES), state[b] = BLK_WHOLE;
            else state[b] = BLK_HUGE; /* already seen in huge pages */
        madvise(p, nb * HUGE_BYTES, MADV_RANDOM);
    }
    madvise(p, nb * HUGE_BYTES, MADV_NORMAL); /* readahead as before for the first reads (MADV_HUGEPAGE stays) */
out:
    free(vec);
    free(state);
    return left;
}

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
    const size_t size = (size_t)sb.st_size;
    void *p = MAP_FAILED;
    if (size >= HUGE_BYTES && hugepages_wanted()) {
        p = map_aligned(fd, size);
        size_t dropped = 0, filled = 0, left = 0;
        struct statfs fs; /* tmpfs and ramfs pages are the file itself: nothing to drop and read again */
        if (p != MAP_FAILED && size >= HUGE_RECACHE_MIN && thp_possible() &&
            !(fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)))
            left = recache_small_blocks(fd, p, size, &dropped, &filled);
        if (dropped || filled)
            LLMOPS_INFO("%s: %zu of its 2 MiB blocks were cached in small pages and read again, %zu not cached were "
                        "read; %zu are in small pages",
                        path, dropped, filled, left);
    }
    if (p == MAP_FAILED) p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    out->data = p;
    out->size = size;
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
    *f = (llmops_atomic_file){.fd = -1};
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
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0) {
        llmops_status st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: cannot create: %s", f->tmp_path,
                                            strerror(errno));
        llmops_free(f->final_path);
        llmops_free(f->tmp_path);
        f->final_path = f->tmp_path = NULL;
        return st;
    }
    return LLMOPS_OK;
}

/* Writes all n bytes at the file's offset (write may write less, or be interrupted). */
static llmops_status write_full(llmops_atomic_file *f, const uint8_t *p, size_t n, llmops_error *err) {
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return llmops_error_set(err, LLMOPS_ERR_IO, "%s: write failed: %s", f->tmp_path,
                                    w < 0 ? strerror(errno) : "no progress");
        p += w, n -= (size_t)w;
    }
    return LLMOPS_OK;
}

llmops_status llmops_atomic_file_write(llmops_atomic_file *f, const void *data, size_t len,
                                       llmops_error *err) {
    const uint8_t *p = data;
    while (len > 0) {
        if (f->len == 0 && len >= LLMOPS_FILE_CHUNK) { /* whole aligned pieces straight from the caller */
            size_t n = len - len % LLMOPS_FILE_CHUNK;
            llmops_status st = write_full(f, p, n, err);
            if (st) return st;
            f->base += n, p += n, len -= n;
            continue;
        }
        if (!f->buf && !(f->buf = llmops_malloc(LLMOPS_FILE_CHUNK)))
            return llmops_error_set(err, LLMOPS_ERR_NOMEM, "%s: out of memory", f->tmp_path);
        size_t n = LLMOPS_FILE_CHUNK - f->len < len ? LLMOPS_FILE_CHUNK - f->len : len;
        memcpy(f->buf + f->len, p, n);
        f->len += n, p += n, len -= n;
        if (f->len == LLMOPS_FILE_CHUNK) {
            llmops_status st = write_full(f, f->buf, f->len, err);
            if (st) return st;
            f->base += f->len, f->len = 0;
        }
    }
    return LLMOPS_OK;
}

uint64_t llmops_atomic_file_tell(const llmops_atomic_file *f) { return f->base + f->len; }

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

/* Only an open file (tmp_path set) owns fd: a zeroed, never opened one has fd 0. */
static void atomic_file_release(llmops_atomic_file *f) {
    if (f->tmp_path && f->fd >= 0) close(f->fd);
    llmops_free(f->buf);
    llmops_free(f->tmp_path);
    llmops_free(f->final_path);
    *f = (llmops_atomic_file){.fd = -1};
}

llmops_status llmops_atomic_file_commit(llmops_atomic_file *f, llmops_error *err) {
    llmops_status st = f->len ? write_full(f, f->buf, f->len, err) : LLMOPS_OK;
    if (!st && fsync(f->fd) != 0)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: flush failed: %s", f->tmp_path, strerror(errno));
    if (close(f->fd) != 0 && !st)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    f->fd = -1;
    if (!st && rename(f->tmp_path, f->final_path) != 0)
        st = llmops_error_set(err, LLMOPS_ERR_IO, "%s: rename failed: %s", f->final_path, strerror(errno));
    if (st) unlink(f->tmp_path);
    else fsync_parent_dir(f->final_path);
    atomic_file_release(f);
    return st;
}

void llmops_atomic_file_abort(llmops_atomic_file *f) {
    if (f->tmp_path) unlink(f->tmp_path);
    atomic_file_release(f);
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
