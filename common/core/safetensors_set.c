/* One checkpoint's tensors over a single safetensors file or index-named shards, with
 * a hashed name lookup (see struct st_set in safetensors.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"

#define SET_PATH_MAX 4352

static uint64_t set_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t set_slot(const struct st_set *s, const char *name) {
    size_t i = (size_t)set_hash(name) & (s->cap - 1);
    while (s->slots[i] && strcmp(s->tensors[s->slots[i] - 1]->name, name)) i = (i + 1) & (s->cap - 1);
    return i;
}

const struct st_tensor *st_set_find(const struct st_set *s, const char *name, const struct st_file **file) {
    if (!s || !name || !s->cap) return NULL;
    size_t k = s->slots[set_slot(s, name)];
    if (!k) return NULL;
    if (file) *file = s->owner[k - 1];
    return s->tensors[k - 1];
}

void st_set_close(struct st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    free(s->files);
    free(s->tensors);
    free(s->owner);
    free(s->slots);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

/* Indexes every tensor of the opened files; refuses a name found twice. */
static int set_build(struct st_set *s) {
    size_t n = 0;
    for (size_t f = 0; f < s->n_files; f++) n += s->files[f].n;
    s->cap = 16;
    while (s->cap < 2 * n) s->cap *= 2;
    s->tensors = calloc(n ? n : 1, sizeof *s->tensors);
    s->owner = calloc(n ? n : 1, sizeof *s->owner);
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->tensors || !s->owner || !s->slots) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", s->dir);
    for (size_t f = 0; f < s->n_files; f++) {
        for (size_t t = 0; t < s->files[f].n; t++) {
            const struct st_tensor *x = &s->files[f].tensors[t];
            size_t i = set_slot(s, x->name);
            if (s->slots[i])
                return sushi_error(SUSHI_EFORMAT, "%s: tensor %s appears in both %s and %s", s->dir, x->name,
                                   s->owner[s->slots[i] - 1]->path, s->files[f].path);
            s->tensors[s->n] = x;
            s->owner[s->n] = &s->files[f];
            s->slots[i] = ++s->n;
        }
    }
    return SUSHI_OK;
}

static int set_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Opens the shards the index names; checks index and shards agree tensor by tensor. */
static int set_open_index(struct st_set *s, const char *index_path) {
    json_error_t err;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return sushi_error(SUSHI_EFORMAT, "%s: corrupt JSON at line %d: %s", index_path, err.line, err.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = SUSHI_OK;
    const char **shards = NULL;
    size_t n_shards = 0;
    if (!json_is_object(wm)) {
        rc = sushi_error(SUSHI_EFORMAT, "%s: weight_map: missing or not a map", index_path);
        goto done;
    }
    shards = calloc(json_object_size(wm) + 1, sizeof *shards);
    if (!shards) { rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", index_path); goto done; }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        const char *file = json_string_value(v);
        if (!file || !*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, ".")) {
            rc = sushi_error(SUSHI_EFORMAT, "%s: weight_map.%s: bad shard file name", index_path, name);
            goto done;
        }
        shards[n_shards++] = file;
    }
    qsort(shards, n_shards, sizeof *shards, set_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (!u || strcmp(shards[u - 1], shards[i])) shards[u++] = shards[i];
    s->files = calloc(u ? u : 1, sizeof *s->files);
    if (!s->files) { rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", index_path); goto done; }
    for (size_t i = 0; i < u && !rc; i++) {
        char path[SET_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", s->dir, shards[i]);
        if (!(rc = st_open(&s->files[i], path))) s->n_files++;
    }
    if (!rc) rc = set_build(s);
    json_object_foreach(wm, name, v) {
        if (rc) break;
        const struct st_file *owner = NULL;
        if (!st_set_find(s, name, &owner)) {
            rc = sushi_error(SUSHI_ENOTFOUND, "%s: tensor %s: listed in the index but missing from %s",
                             index_path, name, json_string_value(v));
        } else {
            const char *base = strrchr(owner->path, '/');
            if (strcmp(base ? base + 1 : owner->path, json_string_value(v)))
                rc = sushi_error(SUSHI_EFORMAT, "%s: tensor %s: the index says %s but it is in %s", index_path,
                                 name, json_string_value(v), owner->path);
        }
    }
    for (size_t i = 0; i < s->n && !rc; i++)
        if (!json_object_get(wm, s->tensors[i]->name))
            rc = sushi_error(SUSHI_EFORMAT, "%s: tensor %s in %s is not listed in the index", index_path,
                             s->tensors[i]->name, s->owner[i]->path);
done:
    free(shards);
    json_decref(root);
    return rc;
}

int st_set_open(struct st_set *s, const char *dir, const char *stem) {
    if (!s || !dir || !stem) return sushi_error(SUSHI_EINVAL, "st_set_open: null argument");
    memset(s, 0, sizeof *s);
    s->dir = strdup(dir);
    if (!s->dir) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", dir);
    char path[SET_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.safetensors.index.json", dir, stem);
    int rc;
    if (fs_exists(path)) {
        rc = set_open_index(s, path);
    } else {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, stem);
        s->files = calloc(1, sizeof *s->files);
        rc = s->files ? st_open(&s->files[0], path) : sushi_error(SUSHI_ENOMEM, "%s: out of memory", dir);
        if (!rc) {
            s->n_files = 1;
            rc = set_build(s);
        }
    }
    if (rc) st_set_close(s);
    return rc;
}
