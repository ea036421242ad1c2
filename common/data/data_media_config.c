/* The `data.media` section: the fixed per-sample shapes of the media tensors (defaults,
 * reading from JSON, validation), the per-item layout of each modality and the wire
 * names of the media tensors. */
#include <stdio.h>
#include <string.h>

#include "common/core/json_util.h"
#include "common/core/log.h"
#include "common/data/data_internal.h"

void data_media_config_defaults(struct data_media_config *m) {
    *m = (struct data_media_config){
        .image_h = 224, .image_w = 224, .filter = MEDIA_BICUBIC,
        .audio_rate = MEDIA_AUDIO_RATE, .audio_frames = 1000, .mel_bins = 80,
        .mel_window = 400, .mel_hop = 160,
        .video_frames = 8, .video_h = 224, .video_w = 224,
        .mesh_points = 2048, .mesh_seed = 0, .ops = NULL,
    };
}

int data_media_config_validate(const struct data_media_config *m) {
    if (m->image_h < 1 || m->image_w < 1 || m->image_h > 8192 || m->image_w > 8192 ||
        m->video_h < 1 || m->video_w < 1 || m->video_h > 8192 || m->video_w > 8192 ||
        m->video_frames < 1 || m->video_frames > 1024)
        return sushi_error(SUSHI_EINVAL, "data.media: image %dx%d, video %d frames of %dx%d: sizes "
                           "must be in 1..8192, frames in 1..1024", m->image_h, m->image_w,
                           m->video_frames, m->video_h, m->video_w);
    if (m->filter != MEDIA_BILINEAR && m->filter != MEDIA_BICUBIC)
        return sushi_error(SUSHI_EINVAL, "data.media.image.filter: unknown filter %d", (int)m->filter);
    if (m->audio_rate < 1000 || m->audio_rate > 192000 || m->audio_frames < 1 ||
        m->audio_frames > 1 << 20 || m->mel_bins < 1 || m->mel_bins > 512 || m->mel_window < 2 ||
        m->mel_hop < 1 || m->mel_hop > m->mel_window)
        return sushi_error(SUSHI_EINVAL, "data.media.audio: sample_rate %d (1000..192000), frames %d "
                           "(1..2^20), mel_bins %d (1..512), window %d (>= 2), hop %d (1..window)",
                           m->audio_rate, m->audio_frames, m->mel_bins, m->mel_window, m->mel_hop);
    if (m->mesh_points < 1 || m->mesh_points > 1 << 20)
        return sushi_error(SUSHI_EINVAL, "data.media.mesh.points: %d not in 1..2^20", m->mesh_points);
    return 0;
}

/* data.media.KIND: a map of the listed keys (absent: nothing read) */
static int media_part(const json_t *media, const char *file, const char *kind,
                      const char *const *known, json_t **out) {
    char path[64];
    snprintf(path, sizeof path, "data.media.%s", kind);
    *out = NULL;
    int rc = ju_object(media, (struct ju_where){file, "data.media"}, kind, 0, out);
    if (!rc && *out) rc = ju_check_keys(*out, (struct ju_where){file, path}, known);
    return rc;
}

int data_media_config_from_json(struct data_media_config *m, const json_t *media, const char *file) {
    static const char *const k_media[] = {"image", "audio", "video", "mesh", NULL};
    static const char *const k_image[] = {"height", "width", "filter", NULL};
    static const char *const k_audio[] = {"sample_rate", "frames", "mel_bins", "window", "hop", NULL};
    static const char *const k_video[] = {"frames", "height", "width", NULL};
    static const char *const k_mesh[] = {"points", "seed", NULL};
    if (!m || !file) return sushi_error(SUSHI_EINVAL, "data_media_config_from_json: NULL argument");
    if (!media || json_is_null(media)) return 0;
    if (!json_is_object(media)) return sushi_error(SUSHI_EINVAL, "%s: data.media: expected a map", file);
    json_t *im, *au, *vi, *me;
    int rc = ju_check_keys(media, (struct ju_where){file, "data.media"}, k_media);
    if (!rc) rc = media_part(media, file, "image", k_image, &im);
    if (!rc) rc = media_part(media, file, "audio", k_audio, &au);
    if (!rc) rc = media_part(media, file, "video", k_video, &vi);
    if (!rc) rc = media_part(media, file, "mesh", k_mesh, &me);
    if (rc) return rc;
    struct ju_where wi = {file, "data.media.image"}, wa = {file, "data.media.audio"},
                    wv = {file, "data.media.video"}, wm = {file, "data.media.mesh"};
    const char *filter = NULL;
    long long seed = (long long)m->mesh_seed;
    if (im && ((rc = ju_int(im, wi, "height", 0, 1, 8192, &m->image_h)) ||
               (rc = ju_int(im, wi, "width", 0, 1, 8192, &m->image_w)) ||
               (rc = ju_string(im, wi, "filter", 0, &filter))))
        return rc;
    if (filter) {
        if (!strcmp(filter, "bilinear")) m->filter = MEDIA_BILINEAR;
        else if (!strcmp(filter, "bicubic")) m->filter = MEDIA_BICUBIC;
        else return sushi_error(SUSHI_EINVAL, "%s: data.media.image.filter: expected bilinear or "
                                "bicubic, got \"%s\"", file, filter);
    }
    if (au && ((rc = ju_int(au, wa, "sample_rate", 0, 1000, 192000, &m->audio_rate)) ||
               (rc = ju_int(au, wa, "frames", 0, 1, 1 << 20, &m->audio_frames)) ||
               (rc = ju_int(au, wa, "mel_bins", 0, 1, 512, &m->mel_bins)) ||
               (rc = ju_int(au, wa, "window", 0, 2, 1 << 16, &m->mel_window)) ||
               (rc = ju_int(au, wa, "hop", 0, 1, 1 << 16, &m->mel_hop))))
        return rc;
    if (vi && ((rc = ju_int(vi, wv, "frames", 0, 1, 1024, &m->video_frames)) ||
               (rc = ju_int(vi, wv, "height", 0, 1, 8192, &m->video_h)) ||
               (rc = ju_int(vi, wv, "width", 0, 1, 8192, &m->video_w))))
        return rc;
    if (me && ((rc = ju_int(me, wm, "points", 0, 1, 1 << 20, &m->mesh_points)) ||
               (rc = ju_int64(me, wm, "seed", 0, &seed))))
        return rc;
    m->mesh_seed = (uint64_t)seed;
    if (m->mel_hop > m->mel_window)
        return sushi_error(SUSHI_EINVAL, "%s: data.media.audio.hop %d exceeds window %d", file,
                           m->mel_hop, m->mel_window);
    return data_media_config_validate(m);
}

int data_media_item_shape(const struct data_media_config *c, enum media_kind kind, enum dtype *dt,
                          int64_t dims[4]) {
    if (!c || !dt || !dims) return sushi_error(SUSHI_EINVAL, "data_media_item_shape: NULL argument");
    switch (kind) {
    case MEDIA_IMAGE:
        *dt = DT_U8; dims[0] = 3; dims[1] = c->image_h; dims[2] = c->image_w;
        return 3;
    case MEDIA_AUDIO:
        *dt = DT_F16; dims[0] = c->audio_frames; dims[1] = c->mel_bins;
        return 2;
    case MEDIA_VIDEO:
        *dt = DT_U8; dims[0] = c->video_frames; dims[1] = 3; dims[2] = c->video_h; dims[3] = c->video_w;
        return 4;
    case MEDIA_MESH:
        *dt = DT_F32; dims[0] = c->mesh_points; dims[1] = 6;
        return 2;
    default:
        return sushi_error(SUSHI_EINVAL, "data: unknown media kind %d", (int)kind);
    }
}

size_t data_media_item_bytes(const struct data_media_config *c, enum media_kind kind) {
    enum dtype dt = DT_U8;
    int64_t dims[4] = {0};
    int nd = data_media_item_shape(c, kind, &dt, dims);
    if (nd < 0) return 0;
    size_t n = dtype_size(dt);
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    return n;
}

const char *data_media_tensor_name(enum media_kind kind) {
    static const char *const names[MEDIA_NKINDS] = {"image", "audio_mel", "video", "mesh_points"};
    return (unsigned)kind < MEDIA_NKINDS ? names[kind] : "?";
}

const char *data_media_row_name(enum media_kind kind) {
    static const char *const names[MEDIA_NKINDS] = {"image_row", "audio_row", "video_row", "mesh_row"};
    return (unsigned)kind < MEDIA_NKINDS ? names[kind] : "?";
}

int data_media_tensor_shape(const struct data_media_tensor *t, int64_t shape[5]) {
    if (!t || !shape || t->ndim < 1 || t->ndim > 4)
        return sushi_error(SUSHI_EINVAL, "data_media_tensor_shape: bad tensor");
    shape[0] = t->n;
    memcpy(shape + 1, t->dims, (size_t)t->ndim * sizeof *shape);
    return t->ndim + 1;
}
