/* Files: mmap, bounded reads, atomic writes, mkdirs, path_join. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../unit/test.h"
#include "llmops/alloc.h"
#include "llmops/fileio.h"

/* Writes a file with stdio, independently of the code under test. */
static int write_plain(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return 0;
    int ok = fwrite(data, 1, len, fp) == len;
    return (fclose(fp) == 0) && ok;
}

/* Number of entries in dir other than . and .. */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

TEST(fileio_mmap_file_and_empty) {
    llmops_error err = {0};
    const char *path = test_tmpfile("data.bin");
    CHECK(write_plain(path, "hello mmap", 10));
    llmops_mmap m;
    CHECK_OK(llmops_mmap_open(path, &m, &err), err);
    CHECK_EQ_INT(m.size, 10);
    CHECK(m.data != NULL && memcmp(m.data, "hello mmap", 10) == 0);
    llmops_mmap_close(&m);
    CHECK(m.data == NULL && m.size == 0);
    llmops_mmap_close(&m); /* twice is harmless */

    const char *empty = test_tmpfile("empty.bin");
    CHECK(write_plain(empty, "", 0));
    CHECK_OK(llmops_mmap_open(empty, &m, &err), err);
    CHECK(m.data == NULL);
    CHECK_EQ_INT(m.size, 0);
    llmops_mmap_close(&m);

    /* a directory is not a regular file */
    CHECK_ERR(llmops_mmap_open(test_tmpdir(), &m, &err), LLMOPS_ERR_IO, err, "not a regular file");
}

TEST(fileio_missing_file_names_path) {
    llmops_error err = {0};
    const char *path = test_tmpfile("does-not-exist.gguf");
    llmops_mmap m;
    CHECK_ERR(llmops_mmap_open(path, &m, &err), LLMOPS_ERR_IO, err, path);
    CHECK(strstr(err.msg, "No such file") != NULL);
    char *data = (char *)1;
    size_t len = 7;
    CHECK_ERR(llmops_file_read_all(path, 100, &data, &len, &err), LLMOPS_ERR_IO, err, path);
    CHECK(data == NULL);
    CHECK_EQ_INT(len, 0);
}

TEST(fileio_read_all_with_cap) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    /* larger than read_all's internal chunk, so the cap is hit across reads */
    enum { N = 200000 };
    char *buf = malloc(N);
    CHECK(buf != NULL);
    for (size_t i = 0; i < N; i++) buf[i] = (char)('a' + i % 26);
    const char *path = test_tmpfile("big.txt");
    int wrote = write_plain(path, buf, N);
    char *data = NULL;
    size_t len = 0;
    llmops_status st = llmops_file_read_all(path, N, &data, &len, &err); /* exactly the cap */
    int same = st == LLMOPS_OK && len == N && memcmp(data, buf, N) == 0 && data[N] == '\0';
    free(buf);
    CHECK(wrote);
    CHECK_OK(st, err);
    CHECK(same);
    llmops_free(data);

    CHECK_ERR(llmops_file_read_all(path, N - 1, &data, &len, &err), LLMOPS_ERR_LIMIT, err, "larger than");
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(data == NULL);

    const char *empty = test_tmpfile("empty.txt");
    CHECK(write_plain(empty, "", 0));
    CHECK_OK(llmops_file_read_all(empty, 0, &data, &len, &err), err);
    CHECK_EQ_STR(data, "");
    CHECK_EQ_INT(len, 0);
    llmops_free(data);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

TEST(fileio_atomic_write_and_abort) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    const char *dir = test_tmpdir();
    const char *path = test_tmpfile("out.bin");
    CHECK_OK(llmops_file_write_atomic(path, "first version", 13, &err), err);
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(llmops_file_read_all(path, 1000, &data, &len, &err), err);
    CHECK_EQ_STR(data, "first version");
    llmops_free(data);
    CHECK_EQ_INT(count_entries(dir), 1); /* no temporary left behind */

    /* overwriting replaces the whole content */
    CHECK_OK(llmops_file_write_atomic(path, "v2", 2, &err), err);
    CHECK_OK(llmops_file_read_all(path, 1000, &data, &len, &err), err);
    CHECK_EQ_STR(data, "v2");
    llmops_free(data);

    /* streaming writer: pad + tell, then abort leaves the old file intact */
    llmops_atomic_file f;
    CHECK_OK(llmops_atomic_file_open(&f, path, &err), err);
    CHECK_OK(llmops_atomic_file_write(&f, "abc", 3, &err), err);
    CHECK_OK(llmops_atomic_file_pad(&f, 32, &err), err);
    CHECK_EQ_INT(llmops_atomic_file_tell(&f), 32);
    CHECK_EQ_INT(count_entries(dir), 2); /* the temporary exists while writing */
    llmops_atomic_file_abort(&f);
    CHECK_EQ_INT(count_entries(dir), 1);
    CHECK_OK(llmops_file_read_all(path, 1000, &data, &len, &err), err);
    CHECK_EQ_STR(data, "v2");
    llmops_free(data);

    /* ... and commit replaces it */
    CHECK_OK(llmops_atomic_file_open(&f, path, &err), err);
    CHECK_OK(llmops_atomic_file_write(&f, "abc", 3, &err), err);
    CHECK_OK(llmops_atomic_file_pad(&f, 8, &err), err);
    CHECK_OK(llmops_atomic_file_commit(&f, &err), err);
    llmops_atomic_file_abort(&f); /* after commit: a no-op */
    CHECK_OK(llmops_file_read_all(path, 1000, &data, &len, &err), err);
    CHECK_EQ_INT(len, 8);
    CHECK(memcmp(data, "abc\0\0\0\0\0", 8) == 0);
    llmops_free(data);
    CHECK_EQ_INT(count_entries(dir), 1);

    /* a directory that does not exist: an error naming the temporary */
    const char *bad = test_tmpfile("no-dir/out.bin");
    CHECK_ERR(llmops_file_write_atomic(bad, "x", 1, &err), LLMOPS_ERR_IO, err, "no-dir/out.bin");
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* Byte i of the large test files: a pattern no run of zeros or repeated block hides. */
static uint8_t pattern_byte(size_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

/* The streaming writer buffers 2 MiB aligned pieces and writes a caller's whole pieces
 * straight through: odd write sizes across those boundaries, a pad, tell, commit. */
TEST(fileio_atomic_file_large_writes_across_pieces) {
    long live = llmops_alloc_live();
    llmops_error err = {0};
    const char *path = test_tmpfile("large.bin");
    const size_t total = 5 * (size_t)LLMOPS_FILE_CHUNK + 12345;
    uint8_t *want = llmops_malloc(total + 4096);
    CHECK(want != NULL);
    for (size_t i = 0; i < total; i++) want[i] = pattern_byte(i);
    llmops_atomic_file f;
    CHECK_OK(llmops_atomic_file_open(&f, path, &err), err);
    /* pieces: small, one crossing the first boundary, a 2-piece direct write after a partial buffer, one
     * starting exactly on a boundary with several whole pieces, the rest */
    const size_t cuts[] = {0, 1000, (size_t)LLMOPS_FILE_CHUNK + 7, 3 * (size_t)LLMOPS_FILE_CHUNK,
                           3 * (size_t)LLMOPS_FILE_CHUNK + 1, total};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
        CHECK_OK(llmops_atomic_file_write(&f, want + cuts[k], cuts[k + 1] - cuts[k], &err), err);
        CHECK_EQ_INT((long long)llmops_atomic_file_tell(&f), (long long)cuts[k + 1]);
    }
    CHECK_OK(llmops_atomic_file_pad(&f, 4096, &err), err);
    const size_t padded = (total + 4095) / 4096 * 4096;
    for (size_t i = total; i < padded; i++) want[i] = 0;
    CHECK_EQ_INT((long long)llmops_atomic_file_tell(&f), (long long)padded);
    CHECK_OK(llmops_atomic_file_commit(&f, &err), err);
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(llmops_file_read_all(path, (size_t)64 << 20, &data, &len, &err), err);
    CHECK_EQ_INT((long long)len, (long long)padded);
    CHECK(memcmp(data, want, padded) == 0);
    llmops_free(data);
    llmops_free(want);
    unlink(path);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}

/* FilePmdMapped of the mapping starting at p, in kB, from the kernel's own account; -1 if not found. */
static long pmd_mapped_kb(const void *p) {
    FILE *fp = fopen("/proc/self/smaps", "r");
    if (!fp) return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (kb < 0 && fgets(line, sizeof line, fp)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) in = lo == (unsigned long)(uintptr_t)p;
        else if (in && !strncmp(line, "FilePmdMapped:", 14)) kb = strtol(line + 14, NULL, 10);
    }
    fclose(fp);
    return kb;
}

/* Writes n pattern bytes in 4 KiB write() calls, as a program that writes in small pieces does. */
static int write_small_pieces(const char *path, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 0;
    uint8_t buf[4096];
    int ok = 1;
    for (size_t at = 0; ok && at < n; at += sizeof buf) {
        size_t k = n - at < sizeof buf ? n - at : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = pattern_byte(at + i);
        ok = write(fd, buf, k) == (ssize_t)k;
    }
    return close(fd) == 0 && ok;
}

/* n bytes of pattern_byte written to path by llmops_atomic_file in pieces of `piece` bytes (n a multiple
 * of it): 1 when written and committed. */
static int write_pattern_atomic(const char *path, size_t n, size_t piece) {
    llmops_error err = {0};
    llmops_atomic_file f;
    if (llmops_atomic_file_open(&f, path, &err)) return 0;
    uint8_t *buf = llmops_malloc(piece);
    int ok = buf != NULL;
    for (size_t at = 0; ok && at < n; at += piece) {
        for (size_t i = 0; i < piece; i++) buf[i] = pattern_byte(at + i);
        ok = llmops_atomic_file_write(&f, buf, piece, &err) == LLMOPS_OK;
    }
    llmops_free(buf);
    if (!ok) {
        llmops_atomic_file_abort(&f);
        return 0;
    }
    return llmops_atomic_file_commit(&f, &err) == LLMOPS_OK;
}

/* llmops_mmap_open with the huge-page mapping, which is what is tested, whatever the caller's
 * environment says (LLMOPS_HUGEPAGES is restored after). */
static llmops_status mmap_open_huge(const char *path, llmops_mmap *m, llmops_error *err) {
    const char *env = getenv("LLMOPS_HUGEPAGES");
    char *saved = env ? llmops_strdup(env) : NULL;
    unsetenv("LLMOPS_HUGEPAGES");
    llmops_status st = llmops_mmap_open(path, m, err);
    if (saved) setenv("LLMOPS_HUGEPAGES", saved, 1);
    llmops_free(saved);
    return st;
}

/*
 * Large files map 2 MiB aligned, with the right bytes, and through huge pages
 * where the kernel can: a file this project wrote at once, and one written in
 * small pieces (cached in small folios) after the mapping reads it again. The
 * kernel's own account (FilePmdMapped) is the judge; where a file this project
 * wrote does not get huge pages either (THP off, a file system without large
 * folios), only the bytes are checked.
 */
TEST(fileio_mmap_large_file_huge_pages) {
    llmops_error err = {0};
    const size_t n = (size_t)66 << 20;
    const char *ours = test_tmpfile("ours.bin");
    CHECK(write_pattern_atomic(ours, n, (size_t)1 << 20));
    const char *small = test_tmpfile("small.bin");
    CHECK(write_small_pieces(small, n));

    /* the huge-page mapping is what is tested, whatever the caller's environment says */
    const char *env = getenv("LLMOPS_HUGEPAGES");
    char *saved = env ? llmops_strdup(env) : NULL;
    unsetenv("LLMOPS_HUGEPAGES");
    long kb[2];
    const char *paths[2] = {ours, small};
    for (int k = 0; k < 2; k++) {
        llmops_mmap m;
        CHECK_OK(llmops_mmap_open(paths[k], &m, &err), err);
        CHECK_EQ_INT((long long)m.size, (long long)n);
        CHECK_EQ_INT((long long)((uintptr_t)m.data % ((uintptr_t)2 << 20)), 0);
        size_t bad = 0;
        for (size_t i = 0; i < n; i += 4093) bad += m.data[i] != pattern_byte(i);
        CHECK_EQ_INT((long long)bad, 0);
        kb[k] = pmd_mapped_kb(m.data);
        llmops_mmap_close(&m);
    }
    /* the plain mapping (LLMOPS_HUGEPAGES=0) reads the same bytes */
    setenv("LLMOPS_HUGEPAGES", "0", 1);
    llmops_mmap m;
    llmops_status st = llmops_mmap_open(small, &m, &err);
    if (saved) setenv("LLMOPS_HUGEPAGES", saved, 1);
    else unsetenv("LLMOPS_HUGEPAGES");
    llmops_free(saved);
    CHECK_OK(st, err);
    CHECK(m.data[12345] == pattern_byte(12345) && m.data[n - 1] == pattern_byte(n - 1));
    llmops_mmap_close(&m);
    unlink(ours);
    unlink(small);
    /* all of it read (touched above) through huge pages: at most the last partial 2 MiB in small ones */
    const long full = (long)(n >> 10) - 2048;
    if (kb[0] < full)
        SKIP("the kernel mapped %ld of %zu kB of a file written in 2 MiB pieces through huge pages (THP off, no "
             "large folios in this file system, or no free 2 MiB pages)", kb[0], n >> 10);
    if (kb[1] < full) fprintf(stderr, "    FilePmdMapped %ld kB of %zu kB for the file written in small pieces\n", kb[1], n >> 10);
    CHECK(kb[1] >= full);
}

/* The kB of `path` the kernel maps through huge pages when a plain aligned MADV_HUGEPAGE mapping (made here,
 * not by the code under test) touches each of its 2 MiB blocks: what the page cache holds in 2 MiB folios. */
static long plain_huge_kb(const char *path, size_t n) {
    const size_t H = (size_t)2 << 20;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    uint8_t *r = mmap(NULL, n + H, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long kb = -1;
    if (r != MAP_FAILED) {
        uint8_t *al = (uint8_t *)(((uintptr_t)r + H - 1) & ~(uintptr_t)(H - 1));
        uint8_t *p = mmap(al, n, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
        if (p != MAP_FAILED) {
            madvise(p, n, MADV_HUGEPAGE);
            for (size_t at = 0; at < n; at += H) (void)*(const volatile uint8_t *)(p + at);
            kb = pmd_mapped_kb(p);
        }
        munmap(r, n + H);
    }
    close(fd);
    return kb;
}

/*
 * A file cached in 2 MiB folios but for some blocks, evicted and read back in small pieces (whole, or in
 * part): the mapping reads those blocks again into huge pages, and only those. A probe of a few blocks
 * missed such files (SmolLM Q8_0: 11 of 68 blocks in 4 KiB pages).
 */
TEST(fileio_mmap_reads_small_blocks_again) {
    llmops_error err = {0};
    const size_t H = (size_t)2 << 20, n = (size_t)66 << 20, nb = n / H;
    const char *path = test_tmpfile("blocks.bin");
    CHECK(write_pattern_atomic(path, n, H));
    const long full = (long)(nb * (H >> 10));
    if (plain_huge_kb(path, n) < full) {
        unlink(path);
        SKIP("the kernel does not map a file written in 2 MiB pieces through huge pages (THP off, no large folios)");
    }
    /* blocks 1, 9 and 30 dropped and read back in 4 KiB pieces; block 17 dropped and its first 64 KiB read */
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    uint8_t *buf = llmops_malloc(H);
    CHECK(buf != NULL);
    const size_t small[] = {1, 9, 30, 17};
    for (size_t k = 0; k < 4; k++) {
        const off_t at = (off_t)(small[k] * H);
        CHECK(posix_fadvise(fd, at, (off_t)H, POSIX_FADV_DONTNEED) == 0);
        for (size_t o = 0; o < (k < 3 ? H : (size_t)64 << 10); o += 4096) CHECK(pread(fd, buf, 4096, at + (off_t)o) == 4096);
    }
    close(fd);
    llmops_free(buf);
    const long before = plain_huge_kb(path, n);
    if (before >= full) {
        unlink(path);
        SKIP("the kernel read the small pieces back into 2 MiB folios itself");
    }
    llmops_mmap m;
    CHECK_OK(mmap_open_huge(path, &m, &err), err);
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 4093) bad += m.data[i] != pattern_byte(i);
    CHECK_EQ_INT((long long)bad, 0);
    for (size_t at = 0; at < n; at += H) (void)*(const volatile uint8_t *)(m.data + at);
    const long after = pmd_mapped_kb(m.data);
    llmops_mmap_close(&m);
    unlink(path);
    if (after < full) fprintf(stderr, "    FilePmdMapped %ld kB of %ld kB (%ld kB before the mapping)\n", after, full, before);
    CHECK(after >= full);
}

/*
 * A file read from disk through a huge-page mapping (so cached in 2 MiB folios, some of them marked for
 * the kernel's readahead), then evicted block by block as the kernel evicts cold cache: the mapping
 * reads the missing blocks back each as one 2 MiB folio, however the cached ones lie between them.
 * Touching a cached block marked for readahead reads ahead into the blocks after it, and a readahead
 * window that meets a cached block reads the rest of itself in 4 KiB pages: the loader before MADV_RANDOM
 * left TinyLlama Q8_0, 40% of its blocks evicted at random, with 48-62 of 557 blocks small.
 */
TEST(fileio_mmap_refills_evicted_blocks_whole) {
    llmops_error err = {0};
    const size_t H = (size_t)2 << 20, n = (size_t)80 << 20, nb = n / H;
    const char *path = test_tmpfile("evicted.bin");
    CHECK(write_pattern_atomic(path, n, H));
    const long full = (long)(nb * (H >> 10));
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0); /* read from disk under a huge mapping */
    if (plain_huge_kb(path, n) < full) {
        close(fd);
        unlink(path);
        SKIP("the kernel does not read a file into 2 MiB folios under a huge-page mapping (THP off, no large folios)");
    }
    /* two blocks in five evicted, in an irregular pattern (every block's fate from a fixed generator) */
    uint64_t g = 0x9E3779B97F4A7C15ull;
    size_t evicted = 0;
    for (size_t b = 0; b < nb; b++) {
        g = g * 6364136223846793005ull + 1442695040888963407ull;
        if ((g >> 33) % 5 < 2) {
            CHECK(posix_fadvise(fd, (off_t)(b * H), (off_t)H, POSIX_FADV_DONTNEED) == 0);
            evicted++;
        }
    }
    close(fd);
    CHECK(evicted > 0 && evicted < nb);
    llmops_mmap m;
    CHECK_OK(mmap_open_huge(path, &m, &err), err);
    size_t bad = 0; /* read front to back, as a decode step reads its weights */
    for (size_t i = 0; i < n; i += 4093) bad += m.data[i] != pattern_byte(i);
    CHECK_EQ_INT((long long)bad, 0);
    const long after = pmd_mapped_kb(m.data);
    llmops_mmap_close(&m);
    unlink(path);
    if (after < full) fprintf(stderr, "    FilePmdMapped %ld kB of %ld kB (%zu of %zu blocks evicted)\n", after, full, evicted, nb);
    CHECK(after >= full);
}

TEST(fileio_mkdirs) {
    llmops_error err = {0};
    const char *deep = test_tmpfile("a/b/c/d");
    CHECK_OK(llmops_mkdirs(deep, &err), err);
    CHECK(llmops_path_is_dir(deep));
    CHECK(!llmops_path_is_file(deep));
    CHECK_OK(llmops_mkdirs(deep, &err), err); /* existing: fine */
    const char *slash = test_tmpfile("x/y/");
    CHECK_OK(llmops_mkdirs(slash, &err), err);
    CHECK(llmops_path_is_dir(test_tmpfile("x/y")));

    /* a regular file in the way is an error, not a silent success */
    const char *file = test_tmpfile("plain");
    CHECK(write_plain(file, "x", 1));
    CHECK(llmops_path_is_file(file));
    CHECK_ERR(llmops_mkdirs(file, &err), LLMOPS_ERR_IO, err, "not a directory");
    CHECK_ERR(llmops_mkdirs(test_tmpfile("plain/sub"), &err), LLMOPS_ERR_IO, err, "plain");
    CHECK_ERR(llmops_mkdirs("", &err), LLMOPS_ERR_INVALID_ARG, err, "empty");
}

TEST(fileio_path_join) {
    long live = llmops_alloc_live();
    char *p = llmops_path_join("dir", "name");
    CHECK_EQ_STR(p, "dir/name");
    llmops_free(p);
    p = llmops_path_join("dir/", "name");
    CHECK_EQ_STR(p, "dir/name");
    llmops_free(p);
    p = llmops_path_join("/", "etc");
    CHECK_EQ_STR(p, "/etc");
    llmops_free(p);
    p = llmops_path_join("", "name");
    CHECK_EQ_STR(p, "name");
    llmops_free(p);
    llmops_alloc_fail_nth(0);
    p = llmops_path_join("a", "b");
    llmops_alloc_fail_nth(-1);
    CHECK(p == NULL);
    CHECK_EQ_INT(llmops_alloc_live(), live);
}
