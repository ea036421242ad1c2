/* The modality prefix: runs every enabled encoder and lays out, per sample,
 * [begin | image (R·Cc) | video (F·R·Cc) | audio (A) | mesh (M) | end] rows of width C,
 * the begin/end rows being the learned boundary embeddings. Backward splits d(prefix)
 * back into the encoders' output gradients and the boundary rows' gradients. */
#include "common/core/log.h"
#include "models/student/encoders.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

static void *at(const void *base, size_t elems, size_t es) { return (char *)base + elems * es; }

/* the encoders' outputs in prefix order: buffer (B·rows, C) and rows per sample */
struct part { void *out, *dout; int rows; };

static int parts_of(struct encoders *e, struct part *p) {
    int n = 0;
    if (e->cfg.image) p[n++] = (struct part){e->image.out, e->image.dout, e->image.rows};
    if (e->cfg.video_frames > 0) p[n++] = (struct part){e->video.out, e->video.dout, e->video.rows};
    if (e->cfg.audio_tokens > 0) p[n++] = (struct part){e->audio.out, e->audio.dout, e->audio.rows};
    if (e->cfg.mesh_tokens > 0) p[n++] = (struct part){e->mesh.out, e->mesh.dout, e->cfg.mesh_tokens};
    return n;
}

int encoder_prefix_forward(struct encoders *e, const struct encoder_inputs *in, void *prefix) {
    if (!e || !e->master || !in || !prefix) return sushi_error(SUSHI_EINVAL, "encoder_prefix_forward: NULL argument");
    const struct ops *o = e->ops;
    const struct encoder_config *c = &e->cfg;
    if (c->image) CHECK(encoder_image_forward(e, in->image));
    if (c->video_frames > 0) CHECK(encoder_video_forward(e, in->video));
    if (c->audio_tokens > 0) CHECK(encoder_audio_forward(e, in->audio));
    if (c->mesh_tokens > 0) CHECK(encoder_mesh_forward(e, in->mesh));
    size_t es = dtype_size(o->act_dtype), C = c->d_model, P = encoder_prefix_len(c);
    struct part parts[4];
    int np = parts_of(e, parts);
    for (int b = 0; b < e->B; b++) {
        void *row = at(prefix, (size_t)b * P * C, es);
        CHECK(o->copy(row, e->w.boundary, C * es));                         /* begin */
        size_t r = 1;
        for (int i = 0; i < np; i++) {
            size_t k = parts[i].rows;
            CHECK(o->copy(at(row, r * C, es), at(parts[i].out, b * k * C, es), k * C * es));
            r += k;
        }
        CHECK(o->copy(at(row, r * C, es), at(e->w.boundary, C, es), C * es)); /* end */
    }
    return 0;
}

int encoder_prefix_backward(struct encoders *e, const void *dprefix) {
    if (!e || !e->master || !dprefix) return sushi_error(SUSHI_EINVAL, "encoder_prefix_backward: NULL argument");
    if (!e->have_forward) return sushi_error(SUSHI_EINVAL, "encoder_prefix_backward: no forward pass to differentiate");
    const struct ops *o = e->ops;
    const struct encoder_config *c = &e->cfg;
    size_t es = dtype_size(o->act_dtype), C = c->d_model, P = encoder_prefix_len(c);
    struct part parts[4];
    int np = parts_of(e, parts);
    for (int b = 0; b < e->B; b++) {
        const void *row = at(dprefix, (size_t)b * P * C, es);
        CHECK(o->axpy(e->g.boundary, 1.0f, row, C));
        size_t r = 1;
        for (int i = 0; i < np; i++) {
            size_t k = parts[i].rows;
            CHECK(o->copy(at(parts[i].dout, b * k * C, es), at(row, r * C, es), k * C * es));
            r += k;
        }
        CHECK(o->axpy(at(e->g.boundary, C, es), 1.0f, at(row, r * C, es), C));
    }
    if (c->image) CHECK(encoder_image_backward(e, e->image.dout, NULL));
    if (c->video_frames > 0) CHECK(encoder_video_backward(e, e->video.dout, NULL));
    if (c->audio_tokens > 0) CHECK(encoder_audio_backward(e, e->audio.dout, NULL));
    if (c->mesh_tokens > 0) CHECK(encoder_mesh_backward(e, e->mesh.dout, NULL));
    e->have_forward = 0;
    return 0;
}
