/* Which checkpoints to evaluate and when. A checkpoint is a directory holding
 * config.json and model.safetensors (or model.safetensors.index.json); savers swap them
 * in by rename, so a version is identified by both files' device, inode, size and
 * mtime. A watched directory is polled (the caller polls every second): an entry is due
 * once its files are complete and unchanged between two polls; an announced one (an
 * events message) is due at once. Each version is evaluated once: success or failure,
 * it is marked done, and a changed version (a rewrite, a completed copy) is due again. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/core/log.h"
#include "services/eval/eval.h"

static int sig_file(const char *dir, const char *name, const char *alt, struct eval_sig *s, int i) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (!alt) return SUSHI_ENOTFOUND;
        snprintf(path, sizeof path, "%s/%s", dir, alt);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return SUSHI_ENOTFOUND;
    }
    s->dev[i] = st.st_dev;
    s->ino[i] = st.st_ino;
    s->size[i] = st.st_size;
    s->mtime_ns[i] = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    return 0;
}

int eval_sig_read(const char *dir, struct eval_sig *s) {
    if (!dir || !s) return sushi_error(SUSHI_EINVAL, "eval_sig_read: NULL argument");
    memset(s, 0, sizeof *s);
    if (sig_file(dir, "config.json", NULL, s, 0) ||
        sig_file(dir, "model.safetensors", "model.safetensors.index.json", s, 1))
        return SUSHI_ENOTFOUND;
    return 0;
}

static int sig_equal(const struct eval_sig *a, const struct eval_sig *b) {
    return memcmp(a, b, sizeof *a) == 0;
}

int eval_watch_init(struct eval_watch *w, const char *dir) {
    if (!w) return sushi_error(SUSHI_EINVAL, "eval_watch_init: NULL argument");
    memset(w, 0, sizeof *w);
    if (dir && !(w->dir = strdup(dir))) return sushi_error(SUSHI_ENOMEM, "eval: watch %s", dir);
    return 0;
}

void eval_watch_free(struct eval_watch *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->items[i].path);
    free(w->items);
    free(w->dir);
    memset(w, 0, sizeof *w);
}

/* the entry for path, created when new; -1 on allocation failure */
static int watch_entry(struct eval_watch *w, const char *path) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->items[i].path, path)) return i;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        struct eval_tracked *g = realloc(w->items, (size_t)cap * sizeof *g);
        if (!g) return -1;
        w->items = g;
        w->cap = cap;
    }
    struct eval_tracked *e = &w->items[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->path = strdup(path))) return -1;
    return w->n++;
}

int eval_watch_announce(struct eval_watch *w, const char *path) {
    if (!w || !path || !*path) return sushi_error(SUSHI_EINVAL, "eval_watch_announce: empty path");
    int i = watch_entry(w, path);
    if (i < 0) return sushi_error(SUSHI_ENOMEM, "eval: tracking %s", path);
    w->items[i].announced = 1;
    return 0;
}

/* a name a saver uses while writing or swapping (DIR.tmp-XXXXXX, DIR.old) */
static int transient_name(const char *name) {
    size_t n = strlen(name);
    return name[0] == '.' || strstr(name, ".tmp-") || (n > 4 && !strcmp(name + n - 4, ".old"));
}

/* adds the watched directory itself when it is a checkpoint, else its subdirectories */
static int watch_rescan(struct eval_watch *w) {
    struct eval_sig s;
    if (eval_sig_read(w->dir, &s) == 0) return watch_entry(w, w->dir) < 0 ? SUSHI_ENOMEM : 0;
    DIR *d = opendir(w->dir);
    if (!d) return 0;   /* not there yet: the trainer creates it */
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        if (transient_name(de->d_name)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", w->dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (eval_sig_read(path, &s) != 0) continue;
        if (watch_entry(w, path) < 0) rc = sushi_error(SUSHI_ENOMEM, "eval: tracking %s", path);
    }
    closedir(d);
    return rc;
}

int eval_watch_scan(struct eval_watch *w) {
    if (!w) return sushi_error(SUSHI_EINVAL, "eval_watch_scan: NULL argument");
    int rc = w->dir ? watch_rescan(w) : 0;
    for (int i = 0; i < w->n; i++) {
        struct eval_tracked *e = &w->items[i];
        struct eval_sig cur;
        e->due = 0;
        e->present = eval_sig_read(e->path, &cur) == 0;
        if (!e->present) { e->have_seen = 0; continue; }
        int stable = e->have_seen && sig_equal(&cur, &e->seen);
        int done = e->have_done && sig_equal(&cur, &e->done);
        e->due = (stable || e->announced) && !done;
        if (done) e->announced = 0;
        e->seen = cur;
        e->have_seen = 1;
    }
    return rc;
}

int eval_watch_next(struct eval_watch *w) {
    for (int i = 0; w && i < w->n; i++)
        if (w->items[i].due) {
            w->items[i].due = 0;
            return i;
        }
    return -1;
}

void eval_watch_mark(struct eval_watch *w, int i) {
    if (!w || i < 0 || i >= w->n) return;
    w->items[i].done = w->items[i].seen;
    w->items[i].have_done = 1;
    w->items[i].announced = 0;
}
