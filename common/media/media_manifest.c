/* JSONL manifests pairing media files with text, one object per line:
 *   {"image": "cats/1.png", "text": "a cat"}   (or "audio", "video", "mesh")
 * Paths are resolved against the manifest's folder (absolute paths are kept). A bad
 * line (not JSON, not an object, no media key or several, a non-string value) is
 * skipped and logged as FILE:LINE: cause; blank lines are ignored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media_internal.h"

void media_manifest_free(struct media_manifest *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->records[i].path);
        free(m->records[i].text);
    }
    free(m->records);
    memset(m, 0, sizeof *m);
}

/* one line -> *r; returns a cause (static text or `why`) or NULL when the line is good */
static const char *manifest_line(const char *dir, const char *line, size_t len, struct media_record *r, char *why,
                                 size_t cap)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, len, 0, &jerr);
    if (!j) {
        snprintf(why, cap, "not JSON: %s (column %d)", jerr.text, jerr.column);
        return why;
    }
    const char *cause = NULL;
    int kind = -1;
    const char *rel = NULL;
    if (!json_is_object(j)) cause = "not a JSON object";
    for (int k = 0; !cause && k < MEDIA_NKINDS; k++) {
        json_t *v = json_object_get(j, media_kind_name((enum media_kind)k));
        if (!v) continue;
        if (!json_is_string(v) || !json_string_length(v)) {
            snprintf(why, cap, "\"%s\" must be a non-empty string", media_kind_name((enum media_kind)k));
            cause = why;
        } else if (kind >= 0) {
            snprintf(why, cap, "both \"%s\" and \"%s\"", media_kind_name((enum media_kind)kind),
                     media_kind_name((enum media_kind)k));
            cause = why;
        } else {
            kind = k;
            rel = json_string_value(v);
        }
    }
    if (!cause && kind < 0) cause = "no \"image\", \"audio\", \"video\" or \"mesh\" key";
    json_t *t = cause ? NULL : json_object_get(j, "text");
    if (!cause && t && !json_is_string(t) && !json_is_null(t)) cause = "\"text\" must be a string";
    if (!cause) {
        size_t n = strlen(dir) + strlen(rel) + 2;
        r->kind = (enum media_kind)kind;
        r->path = malloc(n);
        r->text = strdup(t && json_is_string(t) ? json_string_value(t) : "");
        if (!r->path || !r->text) {
            free(r->path);
            free(r->text);
            cause = "out of memory";
        } else if (rel[0] == '/' || !dir[0]) {
            snprintf(r->path, n, "%s", rel);
        } else {
            snprintf(r->path, n, "%s/%s", dir, rel);
        }
    }
    json_decref(j);
    return cause;
}

int media_manifest_read(const char *path, struct media_manifest *out)
{
    if (!path || !out) return sushi_error(SUSHI_EINVAL, "media_manifest_read: null argument");
    memset(out, 0, sizeof *out);
    char *buf;
    size_t n;
    int rc = fs_read_all(path, &buf, &n);
    if (rc) return rc;
    char *dir = strdup(path);
    if (!dir) {
        free(buf);
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    }
    char *slash = strrchr(dir, '/');
    if (slash) slash == dir ? (void)(dir[1] = 0) : (void)(*slash = 0);
    else dir[0] = 0;
    size_t cap = 0;
    int line_no = 0;
    for (size_t pos = 0; pos < n && !rc;) {
        char *line = buf + pos, *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        pos += len + 1;
        line_no++;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == len) continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct media_record *r = realloc(out->records, nc * sizeof *r);
            if (!r) {
                rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
                break;
            }
            out->records = r;
            cap = nc;
        }
        char why[256];
        struct media_record *r = &out->records[out->n];
        const char *cause = manifest_line(dir, line, len, r, why, sizeof why);
        if (cause) {
            log_warn("%s:%d: skipped: %s", path, line_no, cause);
            out->skipped++;
            continue;
        }
        r->line = line_no;
        out->n++;
    }
    free(dir);
    free(buf);
    if (rc) media_manifest_free(out);
    return rc;
}
