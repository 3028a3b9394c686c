/*
 * llmops/fileio.h — files: read-only memory maps, bounded reads, atomic writes.
 *
 *     llmops_mmap m;
 *     if (llmops_mmap_open(path, &m, &err)) return err.code;
 *     ... m.data[0 .. m.size) ...
 *     llmops_mmap_close(&m);
 */
#ifndef LLMOPS_FILEIO_H
#define LLMOPS_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "llmops/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmops_mmap {
    const uint8_t *data; /* NULL for an empty file                     */
    size_t size;
} llmops_mmap;

/* Maps `path` read-only (MAP_PRIVATE). An empty file gives data=NULL, size=0. */
llmops_status llmops_mmap_open(const char *path, llmops_mmap *out, llmops_error *err);
void llmops_mmap_close(llmops_mmap *m);

/* size bytes of zeroed read-write memory at a 2 MiB aligned address, in huge pages where the kernel
 * gives them (as llmops_mmap_open maps large files; LLMOPS_HUGEPAGES=0: small pages); NULL if there is
 * no memory. Freed by llmops_huge_free with the same size. */
void *llmops_huge_alloc(size_t size);
void llmops_huge_free(void *p, size_t size);

/* Reads a whole file into a NUL-terminated heap buffer (llmops_free), failing
 * with LIMIT when it is larger than `max` bytes. */
llmops_status llmops_file_read_all(const char *path, size_t max, char **out, size_t *len,
                                   llmops_error *err);

/* Writes `len` bytes to `path` atomically: a temporary file in the same
 * directory, fsync, rename, fsync of the directory. */
llmops_status llmops_file_write_atomic(const char *path, const void *data, size_t len,
                                       llmops_error *err);

/* A writer that streams into "<path>.tmp.<pid>" and renames on commit, so a
 * crash or error never leaves a half-written file under the final name. It
 * writes whole aligned 2 MiB pieces (LLMOPS_FILE_CHUNK): the kernel then
 * caches a large file in 2 MiB folios, which a later map of it (a model's
 * weights) reads through huge pages. */
enum { LLMOPS_FILE_CHUNK = 2 << 20 };
typedef struct llmops_atomic_file {
    int fd;
    uint8_t *buf;  /* the file's bytes [base, base + len), base a multiple of LLMOPS_FILE_CHUNK */
    uint64_t base;
    size_t len;
    char *final_path;
    char *tmp_path;
} llmops_atomic_file;

llmops_status llmops_atomic_file_open(llmops_atomic_file *f, const char *path, llmops_error *err);
llmops_status llmops_atomic_file_write(llmops_atomic_file *f, const void *data, size_t len,
                                       llmops_error *err);
/* Writes zero bytes until the file offset is a multiple of `align`. */
llmops_status llmops_atomic_file_pad(llmops_atomic_file *f, uint64_t align, llmops_error *err);
uint64_t llmops_atomic_file_tell(const llmops_atomic_file *f);
/* fsync + rename; the object is closed either way. */
llmops_status llmops_atomic_file_commit(llmops_atomic_file *f, llmops_error *err);
/* Removes the temporary file. Safe to call after commit (no-op). */
void llmops_atomic_file_abort(llmops_atomic_file *f);

/* Copies a file to `to` atomically (temporary file, fsync, rename); `to` is replaced. */
llmops_status llmops_file_copy(const char *from, const char *to, llmops_error *err);
/* 1 when path names a directory / a regular file. */
int llmops_path_is_dir(const char *path);
int llmops_path_is_file(const char *path);
/* "dir/name" in a heap buffer (llmops_free); NULL on allocation failure. */
char *llmops_path_join(const char *dir, const char *name);
/* mkdir -p. */
llmops_status llmops_mkdirs(const char *path, llmops_error *err);

#ifdef __cplusplus
}
#endif
#endif
