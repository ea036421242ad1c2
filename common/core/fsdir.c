/* Atomic directories (fsutil.h): stage into DIR.tmp-XXXXXX, publish by renames, read
 * DIR or the DIR.old an interrupted publish left. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"

#define FSDIR_MAX 4096

/* dir without trailing slashes into buf; the length or a negative error */
static int fsdir_clean(const char *dir, char *buf, size_t cap, size_t room) {
    if (!dir || !*dir || !buf) return sushi_error(SUSHI_EINVAL, "fs_dir: empty directory name");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n + room >= cap) return sushi_error(SUSHI_EINVAL, "%s: path too long", dir);
    snprintf(buf, cap, "%.*s", (int)n, dir);
    return (int)n;
}

/* Removes DIR.tmp-XXXXXX folders a save killed mid-way left behind (they can be as
 * large as the directory). */
static int fsdir_remove_stale(const char *dir) {
    char parent[FSDIR_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : dir;
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    if (slash == parent) snprintf(parent, sizeof parent, "/");
    size_t bl = strlen(base);
    DIR *d = opendir(parent);
    if (!d) return sushi_error(SUSHI_EIO, "%s: cannot open folder: %s", parent, strerror(errno));
    int rc = SUSHI_OK;
    struct dirent *e;
    while (rc == SUSHI_OK && (e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp-", 5) || strlen(e->d_name) != bl + 11)
            continue;
        char path[FSDIR_MAX + 258];   /* parent, '/', a file name (≤ 255) */
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        log_warn("%s: removing %s left by an interrupted save", dir, path);
        rc = fs_remove_tree(path);
    }
    closedir(d);
    return rc;
}

int fs_dir_stage(const char *dir_in, char *tmp, size_t cap) {
    char dir[FSDIR_MAX - 64];
    int n = fsdir_clean(dir_in, dir, sizeof dir, 32);
    if (n < 0) return n;
    if (!tmp || cap < (size_t)n + 12) return sushi_error(SUSHI_EINVAL, "%s: no room for the temporary name", dir);
    /* the parent must exist for the temporary directory beside dir */
    snprintf(tmp, cap, "%s", dir);
    char *slash = strrchr(tmp, '/');
    int rc = SUSHI_OK;
    if (slash && slash != tmp) {
        *slash = 0;
        if ((rc = fs_mkdir_p(tmp, 0755))) return rc;
    }
    if ((rc = fsdir_remove_stale(dir))) return rc;
    snprintf(tmp, cap, "%s.tmp-XXXXXX", dir);
    if (!mkdtemp(tmp))
        return sushi_error(SUSHI_EIO, "%s: cannot create a temporary directory: %s", dir, strerror(errno));
    return SUSHI_OK;
}

/* tmp (complete, fsynced) becomes dir; an older dir is replaced without a moment in
 * which neither a complete dir nor dir.old exists. */
static int fsdir_swap_in(const char *tmp, const char *dir) {
    char old[FSDIR_MAX + 8];
    snprintf(old, sizeof old, "%s.old", dir);
    int rc = fs_remove_tree(old);
    if (rc) return rc;
    int had_old = fs_exists(dir);
    if (had_old && rename(dir, old) != 0)
        return sushi_error(SUSHI_EIO, "%s: cannot move the previous version aside: %s", dir, strerror(errno));
    if (rename(tmp, dir) != 0) {
        rc = sushi_error(SUSHI_EIO, "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
        if (had_old && rename(old, dir) != 0) log_error("%s: could not restore the previous version from %s", dir, old);
        return rc;
    }
    if ((rc = fs_fsync_parent(dir))) return rc;
    if (had_old && (rc = fs_remove_tree(old))) return rc;
    return fs_fsync_parent(dir);
}

int fs_dir_publish(const char *tmp, const char *dir_in) {
    char dir[FSDIR_MAX];
    int rc = fsdir_clean(dir_in, dir, sizeof dir, 8);
    if (rc < 0 || !tmp) return rc < 0 ? rc : sushi_error(SUSHI_EINVAL, "fs_dir_publish: no temporary directory");
    rc = fs_fsync_path(tmp);
    if (!rc) rc = fsdir_swap_in(tmp, dir);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        fs_remove_tree(tmp);
        return sushi_error(rc, "%s", msg);
    }
    return SUSHI_OK;
}

int fs_dir_resolve(const char *dir, char *buf, size_t cap) {
    int n = fsdir_clean(dir, buf, cap, 5);
    if (n < 0) return n;
    if (fs_is_dir(buf)) return SUSHI_OK;
    snprintf(buf + n, cap - (size_t)n, ".old");
    if (fs_is_dir(buf)) {
        log_warn("%.*s: missing; reading %s left by an interrupted save", n, dir, buf);
        return SUSHI_OK;
    }
    buf[n] = 0;
    return sushi_error(SUSHI_ENOTFOUND, "%s: no such directory", buf);
}
