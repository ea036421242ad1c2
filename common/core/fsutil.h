/* File-system helpers for durable output: atomic file writes (temporary file in the
 * same folder, fsync, rename, fsync of the folder), mkdir -p, recursive removal and
 * whole-file reads. Every function records a message naming the path on failure. */
#ifndef SUSHI_FSUTIL_H
#define SUSHI_FSUTIL_H

#include <stddef.h>

/* An open temporary file that becomes `path` on fs_atomic_commit. */
struct fs_atomic {
    char *path;     /* final name */
    char *tmp;      /* PATH.tmp-XXXXXX in the same folder */
    int fd;
};

int fs_atomic_begin(struct fs_atomic *a, const char *path);
/* Writes all n bytes (retrying short writes). */
int fs_atomic_write(struct fs_atomic *a, const void *buf, size_t n);
/* fsync, close, rename over `path`, fsync the folder. Frees `a` either way. */
int fs_atomic_commit(struct fs_atomic *a);
/* Removes the temporary file and frees `a` (safe after a failed commit). */
void fs_atomic_abort(struct fs_atomic *a);

/* Writes a whole buffer to `path` atomically. */
int fs_write_atomic(const char *path, const void *buf, size_t n);
/* Reads a whole file into a malloc'd, NUL-terminated buffer; *n gets its length. */
int fs_read_all(const char *path, char **buf, size_t *n);

int fs_mkdir_p(const char *path, unsigned mode);
/* fsync of a file or folder by path. */
int fs_fsync_path(const char *path);
/* fsync of the folder holding `path`. */
int fs_fsync_parent(const char *path);
/* rm -r (files, folders; does not follow symlinks). Missing path is not an error. */
int fs_remove_tree(const char *path);
int fs_is_dir(const char *path);
int fs_exists(const char *path);
/* Size of a regular file in bytes, or a negative SUSHI_E* code. */
long long fs_file_size(const char *path);

/* Atomic directories (fsdir.c), e.g. checkpoints: everything is written into a
 * temporary DIR.tmp-XXXXXX beside DIR, fsynced, then swapped in: an old DIR is renamed
 * to DIR.old, the new one to DIR, DIR.old removed, the parent fsynced. If a crash
 * leaves only DIR.old, readers fall back to it (fs_dir_resolve). One writer per DIR.
 * fs_dir_stage: removes DIR.tmp-XXXXXX folders an interrupted save left, creates the
 * parent and a fresh temporary folder, its name into tmp (cap bytes; trailing slashes
 * of dir ignored). fs_dir_publish: fsyncs tmp and swaps it in as dir; on failure tmp is
 * removed (the message of the failure kept). fs_dir_resolve: DIR, or DIR.old when only
 * that survived, into buf. */
int fs_dir_stage(const char *dir, char *tmp, size_t cap);
int fs_dir_publish(const char *tmp, const char *dir);
int fs_dir_resolve(const char *dir, char *buf, size_t cap);

#endif
