/* The "linear projection + learned positions" encoders: image (patches → patch_proj +
 * row/col embeddings), video (the image path per frame + a temporal embedding) and audio
 * (S log-mel frames per token → proj + position). One forward/backward pair serves all
 * three: out = x·Wᵀ + b + Σ_t table_t[ids_t]. The bias is a rank-1 matmul with a ones
 * column, the tables are embedding gathers, so every step is an op of the table. */
#include "common/core/log.h"
#include "models/student/encoders.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

/* p->out (n, C) = p->x (n, in) · Wᵀ (W (C, in)) + 1·bᵀ + Σ_t tabs[t][p->ids[t]] */
static int proj_forward(struct encoders *e, struct encoder_path *p, const void *W, const void *b,
                        void *const tabs[3], int ntab) {
    const struct ops *o = e->ops;
    int n = e->B * p->rows, C = e->cfg.d_model;
    CHECK(o->matmul(p->out, p->x, W, n, C, p->in_dim, 0, 1, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(p->out, e->ones, b, n, C, 1, 0, 0, 1.0f, 1.0f, 0, 0, 0));
    for (int t = 0; t < ntab; t++) {
        CHECK(o->embedding_forward(e->tmp, p->ids[t], tabs[t], n, C));
        CHECK(o->axpy(p->out, 1.0f, e->tmp, (size_t)n * C));
    }
    e->have_forward = 1;
    return 0;
}

/* gW += doutᵀ·x, gb += doutᵀ·1, gtabs[t][ids] += dout; dx = dout·W when dx != NULL */
static int proj_backward(struct encoders *e, struct encoder_path *p, const void *dout, const void *W,
                         void *gW, void *gb, void *const gtabs[3], int ntab, void *dx) {
    const struct ops *o = e->ops;
    int n = e->B * p->rows, C = e->cfg.d_model;
    if (!dout) return sushi_error(SUSHI_EINVAL, "encoders: backward without an output gradient");
    CHECK(o->matmul(gW, dout, p->x, C, p->in_dim, n, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->matmul(gb, dout, e->ones, C, 1, n, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    for (int t = 0; t < ntab; t++) CHECK(o->embedding_backward(gtabs[t], p->ids[t], dout, n, C));
    if (dx) CHECK(o->matmul(dx, dout, W, n, p->in_dim, C, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    return 0;
}

static int upload(struct encoders *e, struct encoder_path *p, const float *src, const char *what) {
    return encoder_upload_input(e, p->x, src, (size_t)e->B * p->rows * p->in_dim, what);
}

int encoder_image_forward(struct encoders *e, const float *patches) {
    if (!e || !e->master || !e->cfg.image) return sushi_error(SUSHI_EINVAL, "encoder_image_forward: image encoder not enabled");
    CHECK(upload(e, &e->image, patches, "image patches"));
    void *tabs[3] = {e->w.row_emb, e->w.col_emb, NULL};
    return proj_forward(e, &e->image, e->w.patch_w, e->w.patch_b, tabs, 2);
}

int encoder_image_backward(struct encoders *e, const void *dout, void *dx) {
    if (!e || !e->master || !e->cfg.image) return sushi_error(SUSHI_EINVAL, "encoder_image_backward: image encoder not enabled");
    void *g[3] = {e->g.row_emb, e->g.col_emb, NULL};
    return proj_backward(e, &e->image, dout, e->w.patch_w, e->g.patch_w, e->g.patch_b, g, 2, dx);
}

int encoder_video_forward(struct encoders *e, const float *frames) {
    if (!e || !e->master || e->cfg.video_frames <= 0) return sushi_error(SUSHI_EINVAL, "encoder_video_forward: video encoder not enabled");
    CHECK(upload(e, &e->video, frames, "video frames"));
    void *tabs[3] = {e->w.row_emb, e->w.col_emb, e->w.time_emb};
    return proj_forward(e, &e->video, e->w.patch_w, e->w.patch_b, tabs, 3);
}

int encoder_video_backward(struct encoders *e, const void *dout, void *dx) {
    if (!e || !e->master || e->cfg.video_frames <= 0) return sushi_error(SUSHI_EINVAL, "encoder_video_backward: video encoder not enabled");
    void *g[3] = {e->g.row_emb, e->g.col_emb, e->g.time_emb};
    return proj_backward(e, &e->video, dout, e->w.patch_w, e->g.patch_w, e->g.patch_b, g, 3, dx);
}

/* mel (B, A·S, mel) row-major is already (B·A, S·mel): window a holds frames [a·S, a·S+S) */
int encoder_audio_forward(struct encoders *e, const float *mel) {
    if (!e || !e->master || e->cfg.audio_tokens <= 0) return sushi_error(SUSHI_EINVAL, "encoder_audio_forward: audio encoder not enabled");
    CHECK(upload(e, &e->audio, mel, "audio log-mel"));
    void *tabs[3] = {e->w.audio_pos, NULL, NULL};
    return proj_forward(e, &e->audio, e->w.audio_w, e->w.audio_b, tabs, 1);
}

int encoder_audio_backward(struct encoders *e, const void *dout, void *dx) {
    if (!e || !e->master || e->cfg.audio_tokens <= 0) return sushi_error(SUSHI_EINVAL, "encoder_audio_backward: audio encoder not enabled");
    void *g[3] = {e->g.audio_pos, NULL, NULL};
    return proj_backward(e, &e->audio, dout, e->w.audio_w, e->g.audio_w, e->g.audio_b, g, 1, dx);
}
