/* Batches: regenerating batch `id` from the epoch plan (text rows located by binary
 * search over the prefix sums, media rows by the plan's row table, needle rows inserted
 * by the needle layout), and saving a batch as safetensors with the wire-format tensor
 * names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "common/data/data_internal.h"

int data_batch_alloc(struct data_batch *b, int B, int T) {
    if (!b || B < 1 || T < 1) return sushi_error(SUSHI_EINVAL, "data_batch_alloc: bad shape [%d,%d]", B, T);
    memset(b, 0, sizeof *b);
    size_t n = (size_t)B * (size_t)T;
    b->B = B;
    b->T = T;
    b->tokens = malloc(n * sizeof *b->tokens);
    b->targets = malloc(n * sizeof *b->targets);
    b->doc_ids = malloc(n * sizeof *b->doc_ids);
    b->positions = malloc(n * sizeof *b->positions);
    b->sample_ids = malloc((size_t)B * sizeof *b->sample_ids);
    b->answer_mask = malloc(n);
    if (!b->tokens || !b->targets || !b->doc_ids || !b->positions || !b->sample_ids || !b->answer_mask) {
        data_batch_free(b);
        return sushi_error(SUSHI_ENOMEM, "data_batch_alloc: out of memory for [%d,%d]", B, T);
    }
    return 0;
}

void data_batch_free(struct data_batch *b) {
    if (!b) return;
    free(b->tokens); free(b->targets); free(b->doc_ids); free(b->positions);
    free(b->sample_ids); free(b->answer_mask);
    for (int k = 0; k < MEDIA_NKINDS; k++) { free(b->media[k].data); free(b->media[k].rows); }
    memset(b, 0, sizeof *b);
}

/* The tokens of the last document read, reused by the next row of the same batch. */
struct doc_cache {
    uint32_t record;
    int valid;
    int32_t *ids;
    size_t n;
};

static int doc_tokens(const struct data_loader *l, uint32_t rec, struct doc_cache *c) {
    if (c->valid && c->record == rec) return 0;
    free(c->ids);
    c->ids = NULL;
    c->valid = 0;
    const struct data_record *r = &l->records[rec];
    char *text;
    size_t len;
    int rc = data_record_text(l, r, &text, &len);
    if (rc) return rc;
    rc = l->tok.encode(l->tok.ctx, text, len, &c->ids, &c->n);
    free(text);
    if (rc) return rc;
    if (c->n != r->n_tokens)
        return sushi_error(SUSHI_EFORMAT, "data: %s:%u: %zu tokens, %u when indexed (file changed?)",
                           l->files[r->file].path, r->line, c->n, r->n_tokens);
    c->record = rec;
    c->valid = 1;
    return 0;
}

/* Fills one row from stream row `srow` of the plan (T tokens plus one for the target). */
static int text_row(const struct data_loader *l, const struct data_plan *p, uint64_t srow,
                    struct doc_cache *c, int32_t *stream, uint64_t *slot, int32_t *tokens,
                    int32_t *targets, int32_t *doc_ids, int32_t *positions) {
    size_t T = (size_t)l->cfg.seq_len;
    uint64_t start = srow * T, end = start + T + 1, total = p->prefix[p->n_docs];
    if (end > total) end = total;
    /* the document slot holding `start`: last k with prefix[k] <= start */
    uint64_t lo = 0, hi = p->n_docs;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (p->prefix[mid] <= start) lo = mid; else hi = mid;
    }
    size_t count = 0;
    for (uint64_t k = lo, pos = start; pos < end; k++) {
        int rc = doc_tokens(l, p->order[k], c);
        if (rc) return rc;
        uint64_t stop = p->prefix[k + 1] < end ? p->prefix[k + 1] : end;
        for (; pos < stop; pos++, count++) {
            uint64_t off = pos - p->prefix[k];
            stream[count] = off < c->n ? c->ids[off] : l->tok.eos_id;
            slot[count] = k;
        }
    }
    int32_t seg = 0, seg_start = 0;
    for (size_t t = 0; t < T; t++) {
        if (t > 0 && slot[t] != slot[t - 1]) { seg++; seg_start = (int32_t)t; }
        tokens[t] = stream[t];
        targets[t] = t + 1 < count && slot[t + 1] == slot[t] ? stream[t + 1] : -1;
        doc_ids[t] = seg;
        positions[t] = (int32_t)t - seg_start;
    }
    return 0;
}

int data_batch(struct data_loader *l, uint64_t id, struct data_batch *b) {
    if (!l || !b || !b->tokens) return sushi_error(SUSHI_EINVAL, "data_batch: NULL argument");
    const struct data_config *cfg = &l->cfg;
    if (b->B != cfg->batch_size || b->T != cfg->seq_len)
        return sushi_error(SUSHI_ESHAPE, "data_batch: batch is [%d,%d], the loader makes [%d,%d]",
                           b->B, b->T, cfg->batch_size, cfg->seq_len);
    uint64_t epoch = DATA_BATCH_EPOCH(id), index = DATA_BATCH_INDEX(id);
    const struct data_plan *p;
    int rc = data_plan_get(l, epoch, &p);
    if (rc) return rc;
    if (index >= p->n_batches)
        return sushi_error(SUSHI_EINVAL, "data_batch: batch %llu of epoch %llu out of range (%llu "
                           "batches)", (unsigned long long)index, (unsigned long long)epoch,
                           (unsigned long long)p->n_batches);
    size_t T = (size_t)cfg->seq_len;
    int32_t *stream = malloc((T + 1) * sizeof *stream);
    uint64_t *slot = malloc((T + 1) * sizeof *slot);
    struct doc_cache cache = {0};
    if (!stream || !slot) rc = sushi_error(SUSHI_ENOMEM, "data_batch: out of memory");
    b->id = id;
    b->epoch = epoch;
    b->index = index;
    b->n_needles = 0;
    if (!rc) rc = data_media_batch_reset(l, b);
    for (int r = 0; r < cfg->batch_size && !rc; r++) {
        uint64_t row = index * (uint64_t)cfg->batch_size + (uint64_t)r;
        size_t o = (size_t)r * T;
        b->sample_ids[r] = DATA_BATCH_ID(epoch, row);
        if (data_row_is_needle(cfg, epoch, row)) {
            rc = data_needle_row(l, epoch, row, b->tokens + o, b->targets + o, b->doc_ids + o,
                                 b->positions + o, b->answer_mask + o);
            b->n_needles++;
            continue;
        }
        uint64_t base = data_text_rows_before(cfg, epoch, row);
        uint64_t entry = p->row_table ? p->row_table[base] : base;
        if (entry & DATA_ROW_MEDIA) {
            uint32_t rec = p->media_order[entry & ~DATA_ROW_MEDIA];
            if (!(rc = doc_tokens(l, rec, &cache))) rc = data_media_row(l, rec, r, b, cache.ids, cache.n);
        } else {
            memset(b->answer_mask + o, 0, T);
            rc = text_row(l, p, entry, &cache, stream, slot, b->tokens + o, b->targets + o,
                          b->doc_ids + o, b->positions + o);
        }
    }
    free(cache.ids);
    free(stream);
    free(slot);
    return rc;
}

/* the media tensors with n > 0: NAME [n, dims...] and NAME_row [n] */
static int save_media(struct st_writer *w, const struct data_batch *b) {
    for (int k = 0; k < MEDIA_NKINDS; k++) {
        const struct data_media_tensor *t = &b->media[k];
        if (t->n <= 0) continue;
        int64_t shape[5], rows[1] = {t->n};
        int nd = data_media_tensor_shape(t, shape);
        if (nd < 0) return nd;
        int rc = st_writer_add(w, data_media_tensor_name((enum media_kind)k), t->dt, nd, shape, t->data);
        if (!rc) rc = st_writer_add(w, data_media_row_name((enum media_kind)k), DT_I32, 1, rows, t->rows);
        if (rc) return rc;
    }
    return 0;
}

int data_batch_save(const struct data_batch *b, const char *path) {
    if (!b || !b->tokens || !path) return sushi_error(SUSHI_EINVAL, "data_batch_save: NULL argument");
    struct st_writer *w = st_writer_new();
    if (!w) return SUSHI_ENOMEM;
    int64_t bt[2] = {b->B, b->T}, bb[1] = {b->B};
    char v[7][32];
    snprintf(v[0], sizeof v[0], "%llu", (unsigned long long)b->id);
    snprintf(v[1], sizeof v[1], "%llu", (unsigned long long)b->epoch);
    snprintf(v[2], sizeof v[2], "%llu", (unsigned long long)b->index);
    snprintf(v[3], sizeof v[3], "%d", b->T);
    snprintf(v[4], sizeof v[4], "%d", b->B);
    snprintf(v[5], sizeof v[5], "%d", b->n_needles);
    snprintf(v[6], sizeof v[6], "%d", b->n_media_rows);
    int rc = 0;
    if ((rc = st_writer_add(w, "tokens", DT_I32, 2, bt, b->tokens)) ||
        (rc = st_writer_add(w, "targets", DT_I32, 2, bt, b->targets)) ||
        (rc = st_writer_add(w, "doc_ids", DT_I32, 2, bt, b->doc_ids)) ||
        (rc = st_writer_add(w, "positions", DT_I32, 2, bt, b->positions)) ||
        (rc = st_writer_add(w, "sample_ids", DT_U64, 1, bb, b->sample_ids)) ||
        (rc = st_writer_add(w, "answer_mask", DT_U8, 2, bt, b->answer_mask)) ||
        (rc = st_writer_meta(w, "media_rows", v[6])) ||
        (rc = st_writer_meta(w, "batch_id", v[0])) || (rc = st_writer_meta(w, "epoch", v[1])) ||
        (rc = st_writer_meta(w, "cursor", v[2])) || (rc = st_writer_meta(w, "seq_len", v[3])) ||
        (rc = st_writer_meta(w, "batch_size", v[4])) || (rc = st_writer_meta(w, "needle_rows", v[5])) ||
        (rc = save_media(w, b)) || (rc = st_writer_commit(w, path))) {
        st_writer_free(w);
        return rc;
    }
    st_writer_free(w);
    return 0;
}
