/* Files: mmap, bounded reads, atomic writes, mkdirs, path_join. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

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
