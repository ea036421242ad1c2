/* Encoder configuration, parameter layout (one buffer, HF-named views from one table),
 * allocation and deterministic initialisation. The per-modality math is in
 * encoder_proj.c (image, video, audio) and encoder_mesh.c; the prefix in encoder_prefix.c. */
#include "models/student/encoders.h"
#include "models/student/student.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/rng.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)
#define MAXDIM 1000000

int encoder_enabled(const struct encoder_config *c) {
    return c && (c->image || c->video_frames > 0 || c->audio_tokens > 0 || c->mesh_tokens > 0);
}

static int need_pos(int v, const char *field) {
    if (v <= 0 || v > MAXDIM)
        return sushi_error(SUSHI_EINVAL, "model.encoders.%s must be in [1, %d] (got %d)", field, MAXDIM, v);
    return 0;
}

int encoder_config_validate(struct encoder_config *c) {
    if (!c) return sushi_error(SUSHI_EINVAL, "model.encoders: NULL");
    if (!encoder_enabled(c)) return 0;
    CHECK(need_pos(c->d_model, "d_model"));
    if (c->video_frames < 0 || c->audio_tokens < 0 || c->mesh_tokens < 0)
        return sushi_error(SUSHI_EINVAL, "model.encoders: video_frames, audio_tokens, mesh_tokens must be ≥ 0");
    if (c->image || c->video_frames > 0) {
        CHECK(need_pos(c->patch_dim, "patch_dim"));
        CHECK(need_pos(c->grid_rows, "grid_rows"));
        CHECK(need_pos(c->grid_cols, "grid_cols"));
        if (c->video_frames > MAXDIM) return need_pos(c->video_frames, "video_frames");
    }
    if (c->audio_tokens > 0) {
        if (c->mel_bins == 0) c->mel_bins = 80;
        CHECK(need_pos(c->mel_bins, "mel_bins"));
        CHECK(need_pos(c->audio_stride, "audio_stride"));
        CHECK(need_pos(c->audio_tokens, "audio_tokens"));
    }
    if (c->mesh_tokens > 0) {
        CHECK(need_pos(c->mesh_tokens, "mesh_tokens"));
        CHECK(need_pos(c->mesh_hidden, "mesh_hidden"));
        CHECK(need_pos(c->mesh_points, "mesh_points"));
        if (c->mesh_points < c->mesh_tokens)
            return sushi_error(SUSHI_EINVAL, "model.encoders.mesh_points %d < mesh_tokens %d",
                               c->mesh_points, c->mesh_tokens);
    }
    /* products below stay in int: tokens per sample and per-sample input sizes */
    int64_t np = (int64_t)c->grid_rows * c->grid_cols, rows = 2 + np * (c->image + (int64_t)c->video_frames)
                 + c->audio_tokens + c->mesh_tokens;
    if (rows > MAXDIM || np * c->patch_dim * (1 + (int64_t)c->video_frames) > (int64_t)1 << 30 ||
        (int64_t)c->audio_stride * c->mel_bins > MAXDIM || (int64_t)c->mesh_points * c->mesh_hidden > (int64_t)1 << 30)
        return sushi_error(SUSHI_EINVAL, "model.encoders: sizes too large (%lld prefix rows per sample)", (long long)rows);
    return 0;
}

int encoder_prefix_len(const struct encoder_config *c) {
    if (!encoder_enabled(c)) return 0;
    int np = c->grid_rows * c->grid_cols;
    return 2 + (c->image ? np : 0) + c->video_frames * np + c->audio_tokens + c->mesh_tokens;
}

/* ---- layout: one table gives offsets, names and shapes ----------------------------- */

struct ptab {
    const char *name;
    size_t slot;        /* offsetof(struct encoder_params, field) */
    int64_t rows, cols; /* cols 0 = 1-D */
    int decay;
};

static int param_table(const struct encoder_config *c, struct ptab *t) {
    int64_t C = c->d_model, PD = c->patch_dim, R = c->grid_rows, Cc = c->grid_cols;
    int vis = c->image || c->video_frames > 0, au = c->audio_tokens > 0, me = c->mesh_tokens > 0;
    int64_t AIN = (int64_t)c->audio_stride * c->mel_bins, H = c->mesh_hidden;
    struct ptab all[] = {
        {"model.vision.patch_proj.weight", offsetof(struct encoder_params, patch_w), vis ? C : 0, PD, 1},
        {"model.audio.proj.weight", offsetof(struct encoder_params, audio_w), au ? C : 0, AIN, 1},
        {"model.mesh.fc1.weight", offsetof(struct encoder_params, mesh_w1), me ? H : 0, 6, 1},
        {"model.mesh.fc2.weight", offsetof(struct encoder_params, mesh_w2), me ? C : 0, H, 1},
        {"model.vision.patch_proj.bias", offsetof(struct encoder_params, patch_b), vis ? C : 0, 0, 0},
        {"model.vision.row_embed.weight", offsetof(struct encoder_params, row_emb), vis ? R : 0, C, 0},
        {"model.vision.col_embed.weight", offsetof(struct encoder_params, col_emb), vis ? Cc : 0, C, 0},
        {"model.video.temporal_embed.weight", offsetof(struct encoder_params, time_emb), c->video_frames, C, 0},
        {"model.audio.proj.bias", offsetof(struct encoder_params, audio_b), au ? C : 0, 0, 0},
        {"model.audio.pos_embed.weight", offsetof(struct encoder_params, audio_pos), c->audio_tokens, C, 0},
        {"model.mesh.fc1.bias", offsetof(struct encoder_params, mesh_b1), me ? H : 0, 0, 0},
        {"model.mesh.fc2.bias", offsetof(struct encoder_params, mesh_b2), me ? C : 0, 0, 0},
        {"model.mesh.token_embed.weight", offsetof(struct encoder_params, mesh_tok), c->mesh_tokens, C, 0},
        {"model.prefix.boundary.weight", offsetof(struct encoder_params, boundary), 2, C, 0},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) t[n++] = all[i];
    return n;
}
#define PTAB_MAX 16

static size_t ptab_numel(const struct ptab *t) { return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1); }

int encoder_layout(const struct encoder_config *c, void *base, size_t esz,
                   struct encoder_params *p, size_t *n_decay) {
    if (!c || !p) return sushi_error(SUSHI_EINVAL, "encoder_layout: NULL argument");
    struct ptab t[PTAB_MAX];
    int n = param_table(c, t);
    size_t off = 0;
    memset(p, 0, sizeof *p);
    if (n_decay) *n_decay = 0;
    if (!encoder_enabled(c)) return 0;
    for (int i = 0; i < n; i++) {
        size_t k = ptab_numel(&t[i]);
        void **slot = (void **)((char *)p + t[i].slot);
        *slot = (base && k) ? (char *)base + off * esz : NULL;
        off += k;
        if (t[i].decay && n_decay) *n_decay = off;
    }
    if (off > (size_t)1 << 40) return sushi_error(SUSHI_EINVAL, "model.encoders: parameter count overflow");
    return 0;
}

size_t encoder_param_count(const struct encoder_config *c) {
    if (!encoder_enabled(c)) return 0;
    struct ptab t[PTAB_MAX];
    int n = param_table(c, t);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += ptab_numel(&t[i]);
    return total;
}

int encoder_param_views(const struct encoder_config *c, float *base, struct param_view *out,
                        int max) {
    if (!c || !base || (!out && max > 0)) return sushi_error(SUSHI_EINVAL, "encoder_param_views: NULL argument");
    if (!encoder_enabled(c)) return 0;
    struct ptab t[PTAB_MAX];
    int n = param_table(c, t), nv = 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t k = ptab_numel(&t[i]);
        if (!k) continue;
        if (nv < max) {
            struct param_view *v = &out[nv];
            snprintf(v->name, sizeof v->name, "%s", t[i].name);
            v->data = base + off;
            v->ndim = t[i].cols ? 2 : 1;
            v->shape[0] = t[i].rows;
            v->shape[1] = t[i].cols;
            v->numel = k;
        }
        nv++;
        off += k;
    }
    return nv;
}

/* ---- allocation ---------------------------------------------------------------------- */

static int alloc_into(const struct ops *o, void **dst, size_t bytes, const char *what) {
    *dst = o->alloc(bytes ? bytes : 1);
    if (!*dst) return sushi_error(SUSHI_ENOMEM, "encoders: cannot allocate %zu bytes for %s", bytes, what);
    return 0;
}

/* position ids of a path: ids[0][i] = f(i) for each table, uploaded once */
static int path_ids(struct encoders *e, struct encoder_path *p, int ntab, int np, int cols, int frames) {
    size_t n = (size_t)e->B * p->rows;
    int32_t *h = malloc(n * sizeof *h);
    if (!h) return sushi_error(SUSHI_ENOMEM, "encoders: position ids");
    int rc = 0;
    for (int t = 0; t < ntab && !rc; t++) {
        for (size_t i = 0; i < n; i++) {
            int r = (int)(i % (size_t)p->rows);     /* token within its sample */
            h[i] = t == 0 ? (cols ? (r % np) / cols : r) : t == 1 ? (r % np) % cols : (r / np) % frames;
        }
        rc = alloc_into(e->ops, (void **)&p->ids[t], n * 4, "position ids");
        if (!rc) rc = e->ops->to_device(p->ids[t], h, n * 4);
    }
    free(h);
    return rc;
}

static int alloc_path(struct encoders *e, struct encoder_path *p, int rows, int in_dim, const char *what) {
    size_t es = dtype_size(e->ops->act_dtype), n = (size_t)e->B * rows, C = e->cfg.d_model;
    p->rows = rows;
    p->in_dim = in_dim;
    CHECK(alloc_into(e->ops, &p->x, n * in_dim * es, what));
    CHECK(alloc_into(e->ops, &p->out, n * C * es, what));
    return alloc_into(e->ops, &p->dout, n * C * es, what);
}

static int alloc_acts(struct encoders *e) {
    const struct encoder_config *c = &e->cfg;
    const struct ops *o = e->ops;
    size_t es = dtype_size(o->act_dtype), B = e->B, C = c->d_model, maxrows = 1;
    int np = c->grid_rows * c->grid_cols;
    if (c->image) {
        CHECK(alloc_path(e, &e->image, np, c->patch_dim, "image"));
        CHECK(path_ids(e, &e->image, 2, np, c->grid_cols, 1));
        maxrows = B * np;
    }
    if (c->video_frames > 0) {
        CHECK(alloc_path(e, &e->video, c->video_frames * np, c->patch_dim, "video"));
        CHECK(path_ids(e, &e->video, 3, np, c->grid_cols, c->video_frames));
        if (B * c->video_frames * np > maxrows) maxrows = B * c->video_frames * np;
    }
    if (c->audio_tokens > 0) {
        CHECK(alloc_path(e, &e->audio, c->audio_tokens, c->audio_stride * c->mel_bins, "audio"));
        CHECK(path_ids(e, &e->audio, 1, c->audio_tokens, 0, 1));
        if (B * c->audio_tokens > maxrows) maxrows = B * c->audio_tokens;
    }
    if (c->mesh_tokens > 0) {
        struct encoder_mesh_acts *a = &e->mesh;
        size_t P = B * c->mesh_points, H = c->mesh_hidden, M = B * c->mesh_tokens;
        struct { void **p; size_t bytes; } t[] = {
            {&a->x, P * 6 * es}, {&a->h, P * 2 * H * es}, {&a->a, P * H * es}, {&a->y, P * C * es},
            {&a->pool, M * c->mesh_points * es}, {&a->out, M * C * es}, {&a->dout, M * C * es},
            {&a->dy, P * C * es}, {&a->da, P * H * es}, {&a->dh, P * 2 * H * es}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK(alloc_into(o, t[i].p, t[i].bytes, "mesh"));
        struct encoder_path ids = {.rows = c->mesh_tokens};
        CHECK(path_ids(e, &ids, 1, c->mesh_tokens, 0, 1));
        a->tok_ids = ids.ids[0];
        if (P > maxrows) maxrows = P;
    }
    CHECK(alloc_into(o, &e->tmp, maxrows * C * es, "scratch"));
    CHECK(alloc_into(o, &e->ones, maxrows * es, "ones"));
    return o->fill(e->ones, 1.0f, maxrows);
}

int encoders_create(struct encoders *e, const struct encoder_config *cfg, const struct ops *ops,
                    int B, uint64_t seed) {
    if (!e || !cfg || !ops) return sushi_error(SUSHI_EINVAL, "encoders_create: NULL argument");
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    CHECK(encoder_config_validate(&e->cfg));
    if (!encoder_enabled(&e->cfg)) return sushi_error(SUSHI_EINVAL, "encoders_create: no modality enabled in model.encoders");
    if (B <= 0 || B > MAXDIM) return sushi_error(SUSHI_EINVAL, "encoders_create: batch %d invalid", B);
    e->ops = ops;
    e->B = B;
    size_t es = dtype_size(ops->act_dtype);
    e->n_params = encoder_param_count(&e->cfg);
    int rc = encoder_layout(&e->cfg, NULL, 4, &e->w, &e->n_decay);
    if (!rc) rc = alloc_into(ops, (void **)&e->master, e->n_params * 4, "master weights");
    if (!rc) {
        if (ops->act_dtype == DT_F32) e->wbuf = e->master;
        else rc = alloc_into(ops, &e->wbuf, e->n_params * es, "compute weights");
    }
    if (!rc) rc = alloc_into(ops, &e->gbuf, e->n_params * es, "gradients");
    if (!rc) rc = encoder_layout(&e->cfg, e->wbuf, es, &e->w, NULL);
    if (!rc) rc = encoder_layout(&e->cfg, e->gbuf, es, &e->g, NULL);
    if (!rc) rc = alloc_acts(e);
    if (!rc) {
        float *h = malloc(e->n_params * sizeof(float));
        struct param_view v[PTAB_MAX];
        int nv = h ? encoder_param_views(&e->cfg, h, v, PTAB_MAX) : 0;
        struct rng r;
        rng_seed(&r, seed);
        if (!h) rc = sushi_error(SUSHI_ENOMEM, "encoders_create: %zu parameters", e->n_params);
        for (int i = 0; i < nv && !rc; i++) {
            int bias = strstr(v[i].name, ".bias") != NULL;
            rng_fill_normal(&r, v[i].data, v[i].numel, 0.0f, bias ? 0.0f : 0.02f);
        }
        if (!rc) rc = ops->to_device(e->master, h, e->n_params * sizeof(float));
        free(h);
    }
    if (!rc) rc = encoders_sync_weights(e);
    if (!rc) rc = encoders_zero_grad(e);
    if (rc) encoders_free(e);
    return rc;
}

void encoders_free(struct encoders *e) {
    if (!e || !e->ops) return;
    const struct ops *o = e->ops;
    struct encoder_path *paths[] = {&e->image, &e->video, &e->audio};
    for (int i = 0; i < 3; i++) {
        void *b[] = {paths[i]->x, paths[i]->out, paths[i]->dout, paths[i]->ids[0], paths[i]->ids[1], paths[i]->ids[2]};
        for (int j = 0; j < 6; j++)
            if (b[j]) o->free(b[j]);
    }
    struct encoder_mesh_acts *a = &e->mesh;
    void *b[] = {a->x, a->h, a->a, a->y, a->pool, a->out, a->dout, a->dy, a->da, a->dh, a->tok_ids,
                 e->tmp, e->ones, e->gbuf, e->wbuf != (void *)e->master ? e->wbuf : NULL, e->master};
    for (size_t j = 0; j < sizeof b / sizeof b[0]; j++)
        if (b[j]) o->free(b[j]);
    memset(e, 0, sizeof *e);
}

int encoders_sync_weights(struct encoders *e) {
    if (!e || !e->master) return sushi_error(SUSHI_EINVAL, "encoders_sync_weights: no encoders");
    if (e->wbuf == (void *)e->master) return 0;
    return e->ops->f32_to_act(e->wbuf, e->master, e->n_params);
}

int encoders_zero_grad(struct encoders *e) {
    if (!e || !e->gbuf) return sushi_error(SUSHI_EINVAL, "encoders_zero_grad: no encoders");
    return e->ops->fill(e->gbuf, 0.0f, e->n_params);
}

/* host f32 → act input buffer (rejects NaN/Inf: a bad sample must not poison training) */
int encoder_upload_input(struct encoders *e, void *dst, const float *src, size_t n, const char *what) {
    if (!src) return sushi_error(SUSHI_EINVAL, "encoders: %s input missing", what);
    for (size_t i = 0; i < n; i++)
        if (!(src[i] - src[i] == 0.0f))
            return sushi_error(SUSHI_EINVAL, "encoders: %s input value %zu is not finite", what, i);
    if (e->ops->act_dtype == DT_F32) return e->ops->to_device(dst, src, n * sizeof(float));
    float *tmp = e->ops->alloc(n * sizeof(float));
    if (!tmp) return sushi_error(SUSHI_ENOMEM, "encoders: %s staging", what);
    int rc = e->ops->to_device(tmp, src, n * sizeof(float));
    if (!rc) rc = e->ops->f32_to_act(dst, tmp, n);
    e->ops->free(tmp);
    return rc;
}
