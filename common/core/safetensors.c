/* safetensors reader (memory-mapped, validated before use) and atomic writer. */
#include "common/core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"

#define ST_MAX_HEADER (100u << 20)   /* as the reference implementation: 100 MB */
#define ST_META_KEY "__metadata__"

/* ---------------------------------------------------------------- reading */

static int st_parse_tensor(struct st_file *f, const char *name, json_t *v, size_t data_size,
                           const char *data, struct st_tensor *t) {
    const char *path = f->path;
    if (!json_is_object(v))
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: header entry is not an object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: missing or non-string dtype", path, name);
    int dt = dtype_from_name(json_string_value(jd));
    if (dt < 0)
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: unknown dtype \"%s\"", path, name,
                           json_string_value(jd));
    if (!json_is_array(js))
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: missing or non-array shape", path, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: tensor %s: %zu dimensions (at most %d)", path,
                           name, nd, ST_MAX_DIMS);
    t->dtype = (enum dtype)dt;
    t->ndim = (int)nd;
    unsigned __int128 numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: shape[%zu] is not a non-negative integer",
                               path, name, i);
        t->shape[i] = json_integer_value(d);
        numel *= (unsigned __int128)t->shape[i];
        if (numel > ((unsigned __int128)1 << 62))
            return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: shape too large", path, name);
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: data_offsets must be [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: bad data_offsets [%lld, %lld]", path, name,
                           (long long)b, (long long)e);
    if ((unsigned long long)e > data_size)
        return sushi_error(SUSHI_EFORMAT,
                           "%s: tensor %s: data_offsets [%lld, %lld] beyond the data (%zu bytes; file truncated?)",
                           path, name, (long long)b, (long long)e, data_size);
    unsigned __int128 want = numel * dtype_size(t->dtype);
    if (want != (unsigned __int128)(e - b))
        return sushi_error(SUSHI_EFORMAT,
                           "%s: tensor %s: shape x dtype size is %llu bytes but data_offsets span %lld",
                           path, name, (unsigned long long)want, (long long)(e - b));
    t->data = data + b;
    t->nbytes = (size_t)(e - b);
    t->name = strdup(name);
    if (!t->name) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    return SUSHI_OK;
}

static int st_parse_meta(struct st_file *f, json_t *m) {
    if (!json_is_object(m))
        return sushi_error(SUSHI_EFORMAT, "%s: %s is not an object", f->path, ST_META_KEY);
    size_t n = json_object_size(m);
    f->meta_keys = calloc(n ? n : 1, sizeof(char *));
    f->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", f->path);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return sushi_error(SUSHI_EFORMAT, "%s: %s.%s is not a string", f->path, ST_META_KEY, k);
        f->meta_keys[f->n_meta] = strdup(k);
        f->meta_values[f->n_meta] = strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return sushi_error(SUSHI_ENOMEM, "%s: out of memory", f->path);
    }
    return SUSHI_OK;
}

static int st_cmp_begin(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a, *y = *(const struct st_tensor *const *)b;
    if (x->data != y->data) return (const char *)x->data < (const char *)y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Tensors must not share bytes (empty tensors take none). */
static int st_check_overlap(struct st_file *f) {
    if (f->n < 2) return SUSHI_OK;
    struct st_tensor **s = malloc(f->n * sizeof *s);
    if (!s) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++) s[i] = &f->tensors[i];
    qsort(s, f->n, sizeof *s, st_cmp_begin);
    int rc = SUSHI_OK;
    const struct st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n && rc == SUSHI_OK; i++) {
        if (s[i]->nbytes == 0) continue;
        if (prev && (const char *)prev->data + prev->nbytes > (const char *)s[i]->data)
            rc = sushi_error(SUSHI_EFORMAT, "%s: tensors %s and %s overlap in the data", f->path,
                             prev->name, s[i]->name);
        prev = s[i];
    }
    free(s);
    return rc;
}

static int st_parse_header(struct st_file *f, const char *hdr, size_t len, const char *data,
                           size_t data_size) {
    json_error_t jerr;
    json_t *root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sushi_error(SUSHI_EFORMAT, "%s: corrupt header JSON at byte %d: %s", f->path,
                           jerr.position, jerr.text);
    int rc = SUSHI_OK;
    if (!json_is_object(root)) {
        rc = sushi_error(SUSHI_EFORMAT, "%s: header JSON is not an object", f->path);
        goto done;
    }
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) { rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", f->path); goto done; }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, ST_META_KEY)) rc = st_parse_meta(f, v);
        else if (!(rc = st_parse_tensor(f, k, v, data_size, data, &f->tensors[f->n]))) f->n++;
        if (rc) goto done;
    }
    rc = st_check_overlap(f);
done:
    json_decref(root);
    return rc;
}

int st_open(struct st_file *f, const char *path) {
    if (!f || !path) return sushi_error(SUSHI_EINVAL, "st_open: null argument");
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sushi_error(e == ENOENT ? SUSHI_ENOTFOUND : SUSHI_EIO, "%s: cannot open: %s", path,
                           strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sushi_error(SUSHI_EIO, "%s: not a readable regular file", path);
    }
    f->path = strdup(path);
    if (!f->path) { close(fd); return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path); }
    size_t size = (size_t)st.st_size;
    int rc = SUSHI_OK;
    if (size < 8) {
        close(fd);
        rc = sushi_error(SUSHI_EFORMAT, "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                         path, size);
        goto fail;
    }
    f->map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = sushi_error(SUSHI_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map_size = size;
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER || hlen > size - 8) {
        rc = sushi_error(SUSHI_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes; truncated or corrupt)",
                         path, (unsigned long long)hlen, size);
        goto fail;
    }
    rc = st_parse_header(f, (const char *)p + 8, (size_t)hlen, (const char *)p + 8 + hlen,
                         size - 8 - (size_t)hlen);
    if (rc) goto fail;
    return SUSHI_OK;
fail:
    st_close(f);
    return rc;
}

void st_close(struct st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    for (size_t i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const struct st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

size_t st_numel(const struct st_tensor *t) {
    if (!t) return 0;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* "[2, 3]" into buf */
static const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

int st_expect(const struct st_file *f, const char *name, enum dtype dt, int ndim,
              const int64_t *shape) {
    if (!f || !name || ndim < 0 || ndim > ST_MAX_DIMS || (ndim && !shape))
        return sushi_error(SUSHI_EINVAL, "st_expect: bad argument");
    const struct st_tensor *t = st_find(f, name);
    if (!t) return sushi_error(SUSHI_ENOTFOUND, "%s: missing tensor %s", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    char a[160], b[160];
    if (!same)
        return sushi_error(SUSHI_ESHAPE, "%s: tensor %s: wrong shape: expected %s, got %s", f->path,
                           name, st_shape_str(a, sizeof a, ndim, shape),
                           st_shape_str(b, sizeof b, t->ndim, t->shape));
    if (t->dtype != dt)
        return sushi_error(SUSHI_ESHAPE, "%s: tensor %s: wrong dtype: expected %s, got %s", f->path,
                           name, dtype_name(dt), dtype_name(t->dtype));
    return SUSHI_OK;
}

/* ---------------------------------------------------------------- writing */

struct st_entry {
    char *name;
    enum dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
};

struct st_writer {
    size_t n, cap;
    struct st_entry *e;
    json_t *meta;
};

struct st_writer *st_writer_new(void) {
    struct st_writer *w = calloc(1, sizeof *w);
    if (!w) { sushi_error(SUSHI_ENOMEM, "st_writer_new: out of memory"); return NULL; }
    w->meta = json_object();
    if (!w->meta) { free(w); sushi_error(SUSHI_ENOMEM, "st_writer_new: out of memory"); return NULL; }
    return w;
}

void st_writer_free(struct st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    json_decref(w->meta);
    free(w);
}

int st_writer_add(struct st_writer *w, const char *name, enum dtype dt, int ndim,
                  const int64_t *shape, const void *data) {
    if (!w || !name || !*name) return sushi_error(SUSHI_EINVAL, "st_writer_add: missing writer or name");
    if (!strcmp(name, ST_META_KEY)) return sushi_error(SUSHI_EINVAL, "st_writer_add: reserved name %s", name);
    if (dtype_size(dt) == 0) return sushi_error(SUSHI_EINVAL, "st_writer_add: tensor %s: invalid dtype %d", name, (int)dt);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim && !shape))
        return sushi_error(SUSHI_EINVAL, "st_writer_add: tensor %s: bad rank %d", name, ndim);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return sushi_error(SUSHI_EINVAL, "st_writer_add: duplicate tensor %s", name);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return sushi_error(SUSHI_EINVAL, "st_writer_add: tensor %s: negative dimension", name);
        numel *= (size_t)shape[i];
    }
    if (numel && !data) return sushi_error(SUSHI_EINVAL, "st_writer_add: tensor %s: no data", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 16;
        struct st_entry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return sushi_error(SUSHI_ENOMEM, "st_writer_add: out of memory");
        w->e = ne;
        w->cap = nc;
    }
    struct st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return sushi_error(SUSHI_ENOMEM, "st_writer_add: out of memory");
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = numel * dtype_size(dt);
    w->n++;
    return SUSHI_OK;
}

int st_writer_meta(struct st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return sushi_error(SUSHI_EINVAL, "st_writer_meta: null argument");
    if (json_object_set_new(w->meta, key, json_string(value)) != 0)
        return sushi_error(SUSHI_EINVAL, "st_writer_meta: key %s: not valid UTF-8", key);
    return SUSHI_OK;
}

/* The header JSON, padded with spaces so the data starts 8-byte aligned. */
static char *st_writer_header(struct st_writer *w, size_t *len) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (json_object_size(w->meta)) json_object_set(root, ST_META_KEY, w->meta);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct st_entry *e = &w->e[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *t = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_name(e->dtype), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + e->nbytes));
        if (!t || json_object_set_new(root, e->name, t) != 0) { json_decref(root); return NULL; }
        off += e->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) return NULL;
    size_t n = strlen(s), padded = (8 + n + 7) / 8 * 8 - 8;
    char *out = realloc(s, padded + 1);
    if (!out) { free(s); return NULL; }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
}

int st_writer_commit(struct st_writer *w, const char *path) {
    if (!w || !path) return sushi_error(SUSHI_EINVAL, "st_writer_commit: null argument");
    size_t hlen = 0;
    char *hdr = st_writer_header(w, &hlen);
    if (!hdr) return sushi_error(SUSHI_ENOMEM, "%s: cannot build the header (bad tensor name?)", path);
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    struct fs_atomic a;
    int rc = fs_atomic_begin(&a, path);
    if (rc) { free(hdr); return rc; }
    rc = fs_atomic_write(&a, lenbuf, 8);
    if (!rc) rc = fs_atomic_write(&a, hdr, hlen);
    for (size_t i = 0; i < w->n && !rc; i++)
        if (w->e[i].nbytes) rc = fs_atomic_write(&a, w->e[i].data, w->e[i].nbytes);
    free(hdr);
    if (rc) { fs_atomic_abort(&a); return rc; }
    return fs_atomic_commit(&a);
}
