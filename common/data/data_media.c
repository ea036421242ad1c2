/* Multimodal samples in the data path: manifest sources (one record per media file with
 * its text, a cheap existence probe while opening), media rows (the record's text alone
 * in a row, its media decoded into the batch's per-modality tensors) and those tensors'
 * buffers. Decoding goes through data_config.media.ops, so this file needs no media
 * library (see data.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/core/log.h"
#include "common/data/data_internal.h"

/* media_kind_name without the media library */
static const char *kind_name(enum media_kind k) {
    static const char *const names[MEDIA_NKINDS] = {"image", "audio", "video", "mesh"};
    return (unsigned)k < MEDIA_NKINDS ? names[k] : "media";
}

static int push_entry(struct data_loader *l, const struct media_record *m) {
    if (l->n_media == l->cap_media) {
        size_t cap = l->cap_media ? 2 * l->cap_media : 256;
        void *p = realloc(l->media, cap * sizeof *l->media);
        if (!p) return sushi_error(SUSHI_ENOMEM, "data: out of memory (%zu media records)", cap);
        l->media = p;
        l->cap_media = cap;
    }
    struct data_media_entry *e = &l->media[l->n_media];
    e->kind = m->kind;
    e->path = strdup(m->path);
    e->text = strdup(m->text ? m->text : "");
    atomic_init(&e->failed, 0);
    if (!e->path || !e->text) {
        free(e->path);
        free(e->text);
        return sushi_error(SUSHI_ENOMEM, "data: out of memory");
    }
    l->n_media++;
    return 0;
}

int data_scan_manifest(struct data_loader *l, uint32_t file, const char *path) {
    const struct data_media_ops *ops = l->cfg.media.ops;
    if (!ops || !ops->manifest_read || !ops->decode)
        return sushi_error(SUSHI_EUNSUPPORTED, "data: %s: a manifest source needs the media decoders "
                           "(data.media.ops: this program does not read media)", path);
    struct media_manifest m = {0};
    if (ops->manifest_read(path, &m)) return data_record_error(l, path, 0, sushi_last_error());
    int rc = 0;
    if (m.skipped) {   /* each already logged as FILE:LINE: cause by the reader */
        pthread_mutex_lock(&l->lock);
        l->errors += (long long)m.skipped;
        pthread_mutex_unlock(&l->lock);
    }
    for (size_t i = 0; i < m.n && !rc; i++) {
        const struct media_record *r = &m.records[i];
        struct stat st;
        char why[512];
        if (stat(r->path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
            snprintf(why, sizeof why, "%s %s: %s", kind_name(r->kind), r->path,
                     stat(r->path, &st) != 0 ? "no such file" : !S_ISREG(st.st_mode) ? "not a file" : "empty");
            rc = data_record_error(l, path, r->line, why);
            continue;
        }
        size_t tl = strlen(r->text ? r->text : "");
        if (tl > UINT32_MAX) {
            rc = data_record_error(l, path, r->line, "text longer than 4 GiB");
            continue;
        }
        struct data_record rec = {.offset = l->n_media, .len = 0, .sub_off = 0,
                                  .sub_len = (uint32_t)tl, .line = (uint32_t)r->line, .file = file};
        if (!(rc = push_entry(l, r))) rc = data_push_record(l, &rec);
    }
    if (ops->manifest_free) ops->manifest_free(&m);
    return rc;
}

void data_media_entries_free(struct data_loader *l) {
    for (size_t i = 0; i < l->n_media; i++) {
        free(l->media[i].path);
        free(l->media[i].text);
    }
    free(l->media);
    l->media = NULL;
    l->n_media = l->cap_media = 0;
}

int data_media_batch_reset(const struct data_loader *l, struct data_batch *b) {
    for (int k = 0; k < MEDIA_NKINDS; k++) {
        struct data_media_tensor *t = &b->media[k];
        t->n = 0;
        if (!l->n_media) continue;   /* no manifest: nothing to size */
        enum dtype dt = DT_U8;
        int64_t dims[4] = {0};
        int nd = data_media_item_shape(&l->cfg.media, (enum media_kind)k, &dt, dims);
        if (nd < 0) return nd;
        size_t bytes = data_media_item_bytes(&l->cfg.media, (enum media_kind)k);
        if (t->data && t->item_bytes == bytes && t->cap == b->B && t->ndim == nd &&
            !memcmp(t->dims, dims, sizeof dims))
            continue;
        free(t->data);
        free(t->rows);
        memset(t, 0, sizeof *t);
        t->dt = dt;
        t->ndim = nd;
        memcpy(t->dims, dims, sizeof dims);
        t->item_bytes = bytes;
        /* allocated on the first item of this kind */
    }
    b->n_media_rows = 0;
    return 0;
}

static int tensor_reserve(struct data_media_tensor *t, int B) {
    if (t->data) return 0;
    t->data = malloc((size_t)B * t->item_bytes);
    t->rows = malloc((size_t)B * sizeof *t->rows);
    if (!t->data || !t->rows) {
        free(t->data);
        free(t->rows);
        t->data = NULL;
        t->rows = NULL;
        return sushi_error(SUSHI_ENOMEM, "data: out of memory for %d media items of %zu bytes", B,
                           t->item_bytes);
    }
    t->cap = B;
    return 0;
}

int data_media_row(struct data_loader *l, uint32_t rec, int r, struct data_batch *b,
                   const int32_t *ids, size_t n_ids) {
    size_t T = (size_t)b->T, o = (size_t)r * T;
    int32_t *tokens = b->tokens + o, *targets = b->targets + o, *doc_ids = b->doc_ids + o,
            *positions = b->positions + o;
    size_t n = n_ids < T - 1 ? n_ids : T - 1, used = n + 1;   /* text, then EOS */
    memcpy(tokens, ids, n * sizeof *ids);
    for (size_t t = n; t < T; t++) tokens[t] = l->tok.eos_id;
    for (size_t t = 0; t < T; t++) {
        int in = t < used;
        targets[t] = in && t + 1 < used ? tokens[t + 1] : -1;
        doc_ids[t] = in ? 0 : 1;                    /* padding is a segment of its own */
        positions[t] = (int32_t)(in ? t : t - used);
    }
    memset(b->answer_mask + o, 0, T);
    b->n_media_rows++;
    const struct data_record *dr = &l->records[rec];
    struct data_media_entry *e = &l->media[dr->offset];
    struct data_media_tensor *mt = &b->media[e->kind];
    int rc = tensor_reserve(mt, b->B);
    if (rc) return rc;
    rc = l->cfg.media.ops->decode(&l->cfg.media, e->kind, e->path,
                                  (char *)mt->data + (size_t)mt->n * mt->item_bytes, &l->media_errs);
    if (rc == SUSHI_ENOMEM) return rc;
    if (rc) {   /* the row stays text-only; logged and counted once per record */
        if (atomic_exchange(&e->failed, 1) == 0) {
            pthread_mutex_lock(&l->lock);
            l->errors++;
            pthread_mutex_unlock(&l->lock);
            log_warn("data: %s:%u: %s not decoded, the sample is text-only: %s",
                     l->files[dr->file].path, dr->line, kind_name(e->kind), sushi_last_error());
        }
        return 0;
    }
    mt->rows[mt->n++] = r;
    return 0;
}
