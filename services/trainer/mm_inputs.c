/* Modality tensors of a batch → encoder inputs (mm_inputs.h). */
#include "services/trainer/mm_inputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/dtype.h"
#include "common/core/log.h"

int mm_patch_side(const struct encoder_config *c) {
    int P = (int)lround(sqrt(c->patch_dim / 3.0));
    return P > 0 && P * P * 3 == c->patch_dim ? P : 0;
}

void mm_patchify_chw(const uint8_t *img, int H, int W, int P, const float mean[3], const float std[3], float *out) {
    int cols = W / P, rows = H / P;
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++) {
            float *patch = out + ((size_t)r * cols + q) * (size_t)P * P * 3;
            for (int py = 0; py < P; py++)
                for (int px = 0; px < P; px++)
                    for (int c = 0; c < 3; c++) {
                        uint8_t v = img[((size_t)c * H + (size_t)r * P + py) * W + (size_t)q * P + px];
                        patch[(py * P + px) * 3 + c] = ((float)v / 255.0f - mean[c]) / std[c];
                    }
        }
}

int mm_inputs_init(struct mm_inputs *x, const struct encoder_config *c, int B, const float mean[3],
                   const float std[3]) {
    if (!x || !c || B <= 0) return sushi_error(SUSHI_EINVAL, "mm_inputs_init: bad arguments");
    memset(x, 0, sizeof *x);
    x->cfg = *c;
    x->B = B;
    memcpy(x->mean, mean, sizeof x->mean);
    memcpy(x->std, std, sizeof x->std);
    size_t np = (size_t)c->grid_rows * c->grid_cols * c->patch_dim;
    if ((c->image || c->video_frames > 0) && !mm_patch_side(c))
        return sushi_error(SUSHI_EINVAL, "model.encoders.patch_dim %d: the trainer takes RGB images, so it must be "
                           "P·P·3", c->patch_dim);
    int bad = 0;
    if (c->image) bad |= !(x->image = calloc((size_t)B * np, 4));
    if (c->video_frames > 0) bad |= !(x->video = calloc((size_t)B * c->video_frames * np, 4));
    if (c->audio_tokens > 0)
        bad |= !(x->audio = calloc((size_t)B * c->audio_tokens * c->audio_stride * c->mel_bins, 4));
    if (c->mesh_tokens > 0) bad |= !(x->mesh = calloc((size_t)B * c->mesh_points * 6, 4));
    x->in = (struct encoder_inputs){.image = x->image, .video = x->video, .audio = x->audio, .mesh = x->mesh};
    if (bad) {
        mm_inputs_free(x);
        return sushi_error(SUSHI_ENOMEM, "trainer: encoder input buffers");
    }
    return 0;
}

void mm_inputs_free(struct mm_inputs *x) {
    if (!x) return;
    free(x->image);
    free(x->video);
    free(x->audio);
    free(x->mesh);
    memset(x, 0, sizeof *x);
}

/* tensor `name` [N, dims...] of dtype dt with its `rows` tensor [N] i32 (distinct rows in
 * [0, B)); *n = 0 when both are absent */
static int get_mod(const struct wire_msg *m, int B, const char *name, const char *rows_name, enum dtype dt,
                   int ndim, const int64_t *dims, const void **data, const int32_t **rows, int *n) {
    unsigned long long id = (unsigned long long)m->id;
    const struct wire_tensor *t = wire_msg_tensor(m, name), *r = wire_msg_tensor(m, rows_name);
    *n = 0;
    if (!t && !r) return 0;
    if (!t || !r) return sushi_error(SUSHI_EFORMAT, "batch %llu: tensor %s without %s", id, t ? name : rows_name,
                                     t ? rows_name : name);
    if (r->dtype != DT_I32 || r->ndim != 1 || r->shape[0] < 1 || r->shape[0] > B)
        return sushi_error(SUSHI_ESHAPE, "batch %llu: tensor %s: expected i32 [N] with 1 ≤ N ≤ %d", id, rows_name, B);
    int N = (int)r->shape[0];
    int ok = t->dtype == dt && t->ndim == ndim + 1 && t->shape[0] == N;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i + 1] == dims[i];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), ",%lld", (long long)dims[i]);
        for (int i = 0; i < t->ndim && i < WIRE_MAX_NDIM; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
        return sushi_error(SUSHI_ESHAPE, "batch %llu: tensor %s: %s [%s], expected %s [%d%s] (model.encoders, "
                           "%s rows)", id, name, dtype_name(t->dtype), got, dtype_name(dt), N, want, rows_name);
    }
    const int32_t *rv = r->data;
    for (int i = 0; i < N; i++) {
        if (rv[i] < 0 || rv[i] >= B)
            return sushi_error(SUSHI_EFORMAT, "batch %llu: %s[%d] = %d outside [0, %d)", id, rows_name, i, rv[i], B);
        for (int j = 0; j < i; j++)
            if (rv[j] == rv[i])
                return sushi_error(SUSHI_EFORMAT, "batch %llu: %s: row %d twice", id, rows_name, rv[i]);
    }
    *data = t->data;
    *rows = rv;
    *n = N;
    return 0;
}

int mm_inputs_fill(struct mm_inputs *x, const struct wire_msg *m) {
    if (!x || !m) return sushi_error(SUSHI_EINVAL, "mm_inputs_fill: NULL argument");
    const struct encoder_config *c = &x->cfg;
    int B = x->B, P = mm_patch_side(c), rc = 0, n;
    int H = c->grid_rows * P, W = c->grid_cols * P;
    size_t np = (size_t)c->grid_rows * c->grid_cols * c->patch_dim;
    const void *d;
    const int32_t *rows;
    if (c->image) {
        const int64_t dims[3] = {3, H, W};
        if ((rc = get_mod(m, B, "image", "image_row", DT_U8, 3, dims, &d, &rows, &n))) return rc;
        memset(x->image, 0, (size_t)B * np * 4);
        for (int i = 0; i < n; i++)
            mm_patchify_chw((const uint8_t *)d + (size_t)i * 3 * H * W, H, W, P, x->mean, x->std,
                            x->image + (size_t)rows[i] * np);
    }
    if (c->video_frames > 0) {
        int F = c->video_frames;
        const int64_t dims[4] = {F, 3, H, W};
        if ((rc = get_mod(m, B, "video", "video_row", DT_U8, 4, dims, &d, &rows, &n))) return rc;
        memset(x->video, 0, (size_t)B * F * np * 4);
        for (int i = 0; i < n; i++)
            for (int f = 0; f < F; f++)
                mm_patchify_chw((const uint8_t *)d + ((size_t)i * F + f) * 3 * H * W, H, W, P, x->mean, x->std,
                                x->video + ((size_t)rows[i] * F + f) * np);
    }
    if (c->audio_tokens > 0) {
        size_t per = (size_t)c->audio_tokens * c->audio_stride * c->mel_bins;
        const int64_t dims[2] = {(int64_t)c->audio_tokens * c->audio_stride, c->mel_bins};
        if ((rc = get_mod(m, B, "audio_mel", "audio_row", DT_F16, 2, dims, &d, &rows, &n))) return rc;
        memset(x->audio, 0, (size_t)B * per * 4);
        for (int i = 0; i < n && !rc; i++)
            rc = dtype_convert_to_f32(x->audio + (size_t)rows[i] * per, (const uint16_t *)d + (size_t)i * per, DT_F16, per);
        if (rc) return rc;
    }
    if (c->mesh_tokens > 0) {
        size_t per = (size_t)c->mesh_points * 6;
        const int64_t dims[2] = {c->mesh_points, 6};
        if ((rc = get_mod(m, B, "mesh_points", "mesh_row", DT_F32, 2, dims, &d, &rows, &n))) return rc;
        memset(x->mesh, 0, (size_t)B * per * 4);
        for (int i = 0; i < n; i++) {
            const float *src = (const float *)d + (size_t)i * per;
            for (size_t k = 0; k < per; k++)
                if (!isfinite(src[k]))
                    return sushi_error(SUSHI_EFORMAT, "batch %llu: mesh_points: non-finite value in row %d",
                                       (unsigned long long)m->id, rows[i]);
            memcpy(x->mesh + (size_t)rows[i] * per, src, per * 4);
        }
    }
    return 0;
}
