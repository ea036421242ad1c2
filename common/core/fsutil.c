/* File-system helpers: atomic writes, mkdir -p, rm -r, whole-file reads, fsync. */
#include "common/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/log.h"

int fs_atomic_begin(struct fs_atomic *a, const char *path) {
    if (!a || !path || !*path) return sushi_error(SUSHI_EINVAL, "fs_atomic_begin: empty path");
    memset(a, 0, sizeof *a);
    a->fd = -1;
    size_t n = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(n + 16);
    if (!a->path || !a->tmp) {
        fs_atomic_abort(a);
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    }
    snprintf(a->tmp, n + 16, "%s.tmp-XXXXXX", path);
    a->fd = mkstemp(a->tmp);
    if (a->fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        fs_atomic_abort(a);
        return sushi_error(SUSHI_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    return SUSHI_OK;
}

int fs_atomic_write(struct fs_atomic *a, const void *buf, size_t n) {
    if (!a || a->fd < 0) return sushi_error(SUSHI_EINVAL, "fs_atomic_write: file not open");
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(a->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return sushi_error(SUSHI_EIO, "%s: write failed: %s", a->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return SUSHI_OK;
}

void fs_atomic_abort(struct fs_atomic *a) {
    if (!a) return;
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
    a->fd = -1;
}

int fs_atomic_commit(struct fs_atomic *a) {
    if (!a || a->fd < 0) return sushi_error(SUSHI_EINVAL, "fs_atomic_commit: file not open");
    int rc = SUSHI_OK;
    if (fsync(a->fd) != 0)
        rc = sushi_error(SUSHI_EIO, "%s: fsync failed: %s", a->path, strerror(errno));
    if (close(a->fd) != 0 && rc == SUSHI_OK)
        rc = sushi_error(SUSHI_EIO, "%s: close failed: %s", a->path, strerror(errno));
    a->fd = -1;
    if (rc == SUSHI_OK && rename(a->tmp, a->path) != 0)
        rc = sushi_error(SUSHI_EIO, "%s: rename from %s failed: %s", a->path, a->tmp,
                         strerror(errno));
    if (rc == SUSHI_OK) {
        free(a->tmp);
        a->tmp = NULL;   /* renamed: nothing to unlink */
        rc = fs_fsync_parent(a->path);
    }
    fs_atomic_abort(a);
    return rc;
}

int fs_write_atomic(const char *path, const void *buf, size_t n) {
    struct fs_atomic a;
    int rc = fs_atomic_begin(&a, path);
    if (rc) return rc;
    rc = fs_atomic_write(&a, buf, n);
    if (rc) {
        fs_atomic_abort(&a);
        return rc;
    }
    return fs_atomic_commit(&a);
}

int fs_read_all(const char *path, char **buf, size_t *n) {
    if (!path || !buf) return sushi_error(SUSHI_EINVAL, "fs_read_all: null argument");
    *buf = NULL;
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return sushi_error(e == ENOENT ? SUSHI_ENOTFOUND : SUSHI_EIO, "%s: cannot open: %s",
                           path, strerror(e));
    }
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + len, 1, cap - len - 1, f);
        len += r;
        if (len + 1 < cap) break;
        char *nb = realloc(b, cap * 2);
        if (!nb) { free(b); b = NULL; break; }
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!b) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    if (err) {
        free(b);
        return sushi_error(SUSHI_EIO, "%s: read failed", path);
    }
    b[len] = 0;
    *buf = b;
    if (n) *n = len;
    return SUSHI_OK;
}

int fs_mkdir_p(const char *path, unsigned mode) {
    if (!path || !*path) return sushi_error(SUSHI_EINVAL, "fs_mkdir_p: empty path");
    char *p = strdup(path);
    if (!p) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, mode) != 0 && errno != EEXIST) {
                int e = errno;
                int rc = sushi_error(SUSHI_EIO, "%s: cannot create folder %s: %s", path, p,
                                     strerror(e));
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    if (!fs_is_dir(path)) return sushi_error(SUSHI_EIO, "%s: exists and is not a folder", path);
    return SUSHI_OK;
}

int fs_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sushi_error(SUSHI_EIO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = SUSHI_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = sushi_error(SUSHI_EIO, "%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int fs_fsync_parent(const char *path) {
    char *p = strdup(path);
    if (!p) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    int rc = fs_fsync_path(dirname(p));
    free(p);
    return rc;
}

int fs_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return SUSHI_OK;
        return sushi_error(SUSHI_EIO, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return sushi_error(SUSHI_EIO, "%s: cannot open folder: %s", path, strerror(errno));
        struct dirent *e;
        int rc = SUSHI_OK;
        while (rc == SUSHI_OK && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(n);
            if (!child) { rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", path); break; }
            snprintf(child, n, "%s/%s", path, e->d_name);
            rc = fs_remove_tree(child);
            free(child);
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0)
            return sushi_error(SUSHI_EIO, "%s: cannot remove folder: %s", path, strerror(errno));
        return SUSHI_OK;
    }
    if (unlink(path) != 0) return sushi_error(SUSHI_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return SUSHI_OK;
}

int fs_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_exists(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0;
}

long long fs_file_size(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return sushi_error(SUSHI_ENOTFOUND, "%s: %s", path ? path : "(null)", strerror(errno));
    if (!S_ISREG(st.st_mode)) return sushi_error(SUSHI_EFORMAT, "%s: not a regular file", path);
    return (long long)st.st_size;
}
