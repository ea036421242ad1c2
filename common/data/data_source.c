/* Sources: finding the files of a source (file, folder, glob), splitting them into
 * records (documents, cut to max_doc_bytes), skipping corrupt ones with one log line
 * each, and reading a record's text back when a batch needs it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/data/data_internal.h"

int data_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { k = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return 0;
            c = (c << 6) | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

int data_record_error(struct data_loader *l, const char *file, long long line, const char *cause) {
    pthread_mutex_lock(&l->lock);
    l->errors++;
    long long run = ++l->consecutive_errors;
    pthread_mutex_unlock(&l->lock);
    log_warn("data: %s:%lld: skipped: %s", file, line, cause);
    if (run > l->cfg.max_consecutive_errors)
        return sushi_error(SUSHI_EFORMAT, "data: %s:%lld: %s (%lld corrupt records in a row, "
                           "max_consecutive_errors is %d)", file, line, cause, run,
                           l->cfg.max_consecutive_errors);
    return 0;
}

int data_push_record(struct data_loader *l, const struct data_record *r) {
    if (l->n_records == l->cap_records) {
        size_t cap = l->cap_records ? 2 * l->cap_records : 1024;
        void *p = realloc(l->records, cap * sizeof *l->records);
        if (!p) return sushi_error(SUSHI_ENOMEM, "data: out of memory (%zu records)", cap);
        l->records = p;
        l->cap_records = cap;
    }
    if (l->n_records >= UINT32_MAX) return sushi_error(SUSHI_EUNSUPPORTED, "data: more than 2^32 records");
    l->records[l->n_records++] = *r;
    l->consecutive_errors = 0;
    return 0;
}

/* Cuts text[0..len) into pieces of at most max bytes, preferring a line break, then a
 * space, then a UTF-8 character boundary; pushes one record per piece. */
static int push_pieces(struct data_loader *l, struct data_record base, const char *text,
                       size_t len, int file_range) {
    size_t max = (size_t)l->cfg.max_doc_bytes, at = 0;
    uint32_t line = base.line;
    while (at < len) {
        size_t n = len - at;
        if (n > max) {
            size_t cut = 0;
            for (size_t i = max; i > max / 2 && !cut; i--) if (text[at + i - 1] == '\n') cut = i;
            for (size_t i = max; i > max / 2 && !cut; i--) if (text[at + i - 1] == ' ') cut = i;
            if (!cut) {
                cut = max;
                while (cut > 1 && ((unsigned char)text[at + cut] & 0xc0) == 0x80) cut--;
            }
            n = cut;
        }
        struct data_record r = base;
        r.line = line;
        if (file_range) { r.offset = base.offset + at; r.len = (uint32_t)n; r.sub_off = 0; }
        else r.sub_off = (uint32_t)at;
        r.sub_len = (uint32_t)n;
        int rc = data_push_record(l, &r);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++) line += text[at + i] == '\n';
        at += n;
    }
    return 0;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) if (!strchr(" \t\r\n", s[i])) return 0;
    return 1;
}

/* One document of a text file: bytes [b, e) starting at `line`. */
static int text_document(struct data_loader *l, uint32_t file, const char *path, const char *buf,
                         size_t b, size_t e, uint32_t line) {
    if (blank(buf + b, e - b)) return 0;
    if (!data_utf8_valid(buf + b, e - b)) return data_record_error(l, path, line, "invalid UTF-8");
    struct data_record r = {.offset = b, .len = (uint32_t)(e - b), .line = line, .file = file};
    return push_pieces(l, r, buf + b, e - b, 1);
}

static int scan_text(struct data_loader *l, uint32_t file, const char *path, const char *buf,
                     size_t n, const char *sep) {
    if (!sep) return text_document(l, file, path, buf, 0, n, 1);
    size_t seplen = strlen(sep), doc = 0, at = 0;
    uint32_t line = 1, doc_line = 1;
    while (at < n) {
        const char *nl = memchr(buf + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - buf) : n, len = end - at;
        if (len && buf[at + len - 1] == '\r') len--;
        size_t next = nl ? end + 1 : n;
        if (len == seplen && !memcmp(buf + at, sep, seplen)) {
            int rc = text_document(l, file, path, buf, doc, at, doc_line);
            if (rc) return rc;
            doc = next;
            doc_line = line + 1;
        }
        at = next;
        line++;
    }
    return text_document(l, file, path, buf, doc, n, doc_line);
}

/* Parses one JSONL line and returns the text member (borrowed from *root). */
static int jsonl_text(const char *line, size_t n, const char *field, json_t **root,
                      const char **text, size_t *len, char *why, size_t why_cap) {
    json_error_t err;
    *root = json_loadb(line, n, JSON_REJECT_DUPLICATES, &err);
    if (!*root) { snprintf(why, why_cap, "bad JSON: %s", err.text); return SUSHI_EFORMAT; }
    json_t *v = json_is_object(*root) ? json_object_get(*root, field) : NULL;
    if (!json_is_object(*root)) snprintf(why, why_cap, "expected a JSON object");
    else if (!v) snprintf(why, why_cap, "no member \"%s\"", field);
    else if (!json_is_string(v)) snprintf(why, why_cap, "member \"%s\" is not a string", field);
    else {
        *text = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    }
    json_decref(*root);
    *root = NULL;
    return SUSHI_EFORMAT;
}

static int scan_jsonl(struct data_loader *l, uint32_t file, const char *path, const char *buf,
                      size_t n, const char *field) {
    size_t at = 0;
    uint32_t line = 1;
    while (at < n) {
        const char *nl = memchr(buf + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - buf) : n;
        int rc = 0;
        if (!blank(buf + at, end - at)) {
            json_t *root;
            const char *text;
            size_t len;
            char why[256];
            if (end - at > UINT32_MAX) rc = data_record_error(l, path, line, "line longer than 4 GiB");
            else if (jsonl_text(buf + at, end - at, field, &root, &text, &len, why, sizeof why))
                rc = data_record_error(l, path, line, why);
            else {
                struct data_record r = {.offset = at, .len = (uint32_t)(end - at), .line = line,
                                        .file = file};
                if (!blank(text, len)) rc = push_pieces(l, r, text, len, 0);
                json_decref(root);
            }
        }
        if (rc) return rc;
        at = nl ? end + 1 : n;
        line++;
    }
    return 0;
}

static int add_file(struct data_loader *l, const char *path, int source) {
    if (l->n_files == l->cap_files) {
        size_t cap = l->cap_files ? 2 * l->cap_files : 64;
        void *p = realloc(l->files, cap * sizeof *l->files);
        if (!p) return sushi_error(SUSHI_ENOMEM, "data: out of memory (%zu files)", cap);
        l->files = p;
        l->cap_files = cap;
    }
    char *copy = strdup(path);
    if (!copy) return sushi_error(SUSHI_ENOMEM, "data: out of memory");
    l->files[l->n_files].path = copy;
    l->files[l->n_files].source = source;
    l->files[l->n_files].fd = l->n_files < DATA_OPEN_FILES ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    l->n_files++;
    return 0;
}

static int scan_file(struct data_loader *l, const char *path, int source) {
    const struct data_source_config *s = &l->cfg.sources[source];
    int rc = add_file(l, path, source);
    if (rc) return rc;
    uint32_t idx = (uint32_t)(l->n_files - 1);
    if (s->format == DATA_MANIFEST) return data_scan_manifest(l, idx, path);
    char *buf;
    size_t n;
    if (fs_read_all(path, &buf, &n)) return data_record_error(l, path, 0, sushi_last_error());
    rc = s->format == DATA_JSONL ? scan_jsonl(l, idx, path, buf, n, s->text_field)
                                 : scan_text(l, idx, path, buf, n, s->separator);
    free(buf);
    return rc;
}

static int scan_path(struct data_loader *l, const char *path, int source, int depth);

static int scan_dir(struct data_loader *l, const char *path, int source, int depth) {
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) return data_record_error(l, path, 0, strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc && names[i]->d_name[0] != '.') {
            size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
            char *child = malloc(len);
            if (!child) rc = sushi_error(SUSHI_ENOMEM, "data: out of memory");
            else {
                snprintf(child, len, "%s/%s", path, names[i]->d_name);
                rc = scan_path(l, child, source, depth + 1);
                free(child);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int scan_path(struct data_loader *l, const char *path, int source, int depth) {
    if (depth > 32) return data_record_error(l, path, 0, "folders nested deeper than 32 levels");
    const char *exclude = l->cfg.sources[source].exclude, *base = strrchr(path, '/');
    if (exclude && fnmatch(exclude, base ? base + 1 : path, 0) == 0) return 0;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return scan_dir(l, path, source, depth);
    return scan_file(l, path, source);
}

int data_scan_sources(struct data_loader *l) {
    for (int s = 0; s < l->cfg.n_sources; s++) {
        const struct data_source_config *src = &l->cfg.sources[s];
        size_t first = l->n_records;
        int rc = 0;
        if (strpbrk(src->path, "*?[")) {
            glob_t g;
            int grc = glob(src->path, 0, NULL, &g);
            if (grc == GLOB_NOMATCH)
                return sushi_error(SUSHI_ENOTFOUND, "data: source %s: no file matches %s", src->name,
                                   src->path);
            if (grc) return sushi_error(SUSHI_EIO, "data: source %s: glob %s failed", src->name, src->path);
            for (size_t i = 0; i < g.gl_pathc && !rc; i++) rc = scan_path(l, g.gl_pathv[i], s, 0);
            globfree(&g);
        } else if (!fs_exists(src->path)) {
            return sushi_error(SUSHI_ENOTFOUND, "data: source %s: %s: no such file or folder",
                               src->name, src->path);
        } else {
            rc = scan_path(l, src->path, s, 0);
        }
        if (rc) return rc;
        l->src_first[s] = first;
        l->src_count[s] = l->n_records - first;
        if (l->src_count[s] == 0 && src->weight > 0)
            return sushi_error(SUSHI_EFORMAT, "data: source %s (%s): no usable documents", src->name,
                               src->path);
    }
    return 0;
}

int data_record_is_media(const struct data_loader *l, const struct data_record *r) {
    return l->cfg.sources[l->files[r->file].source].format == DATA_MANIFEST;
}

int data_record_text(const struct data_loader *l, const struct data_record *r, char **text,
                     size_t *len) {
    const char *path = l->files[r->file].path;
    if (data_record_is_media(l, r)) {   /* the manifest's text, kept since the scan */
        if (r->offset >= l->n_media)
            return sushi_error(SUSHI_EINVAL, "data: %s:%u: no such manifest record", path, r->line);
        if (!(*text = strdup(l->media[r->offset].text)))
            return sushi_error(SUSHI_ENOMEM, "data: %s:%u: out of memory", path, r->line);
        *len = strlen(*text);
        return 0;
    }
    char *buf = malloc((size_t)r->len + 1);
    if (!buf) return sushi_error(SUSHI_ENOMEM, "data: %s:%u: out of memory", path, r->line);
    int kept = l->files[r->file].fd;
    int fd = kept >= 0 ? kept : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        free(buf);
        return sushi_error(SUSHI_EIO, "data: %s: %s", path, strerror(errno));
    }
    size_t got = 0;
    while (got < r->len) {
        ssize_t k = pread(fd, buf + got, r->len - got, (off_t)(r->offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (fd != kept) close(fd);
    if (got != r->len) {
        free(buf);
        return sushi_error(SUSHI_EIO, "data: %s:%u: file shorter than when indexed", path, r->line);
    }
    buf[r->len] = 0;
    if (l->cfg.sources[l->files[r->file].source].format == DATA_TEXT) {
        *text = buf;
        *len = r->len;
        return 0;
    }
    json_t *root;
    const char *s;
    size_t n;
    char why[256];
    int rc = jsonl_text(buf, r->len, l->cfg.sources[l->files[r->file].source].text_field, &root,
                        &s, &n, why, sizeof why);
    free(buf);
    if (rc) return sushi_error(SUSHI_EFORMAT, "data: %s:%u: %s (file changed since indexed?)", path,
                               r->line, why);
    if ((size_t)r->sub_off + r->sub_len > n || !(*text = malloc((size_t)r->sub_len + 1))) {
        json_decref(root);
        return sushi_error(SUSHI_EFORMAT, "data: %s:%u: record changed since indexed", path, r->line);
    }
    memcpy(*text, s + r->sub_off, r->sub_len);
    (*text)[r->sub_len] = 0;
    *len = r->sub_len;
    json_decref(root);
    return 0;
}
