/* The media decoders the data path uses (data_media_decoders): common/media results
 * turned into one batch item of the fixed data.media shape of each modality:
 *   image        decoded, resized to height x width with the filter, HWC -> [3,H,W] u8
 *   audio_mel    decoded at sample_rate, log-mel (window, hop, mel_bins), the first
 *                `frames` frames as [frames, bins] f16; a shorter clip is padded with
 *                log10(1e-10) = -10, the value of silence
 *   video        `frames` frames sampled uniformly, resized: [F,3,H,W] u8
 *   mesh_points  `points` surface points with normals, seeded by mesh.seed: [P,6] f32
 * This is the only data file that links the media library (see data.h). */
#include <string.h>

#include "common/core/dtype.h"
#include "common/core/log.h"
#include "common/data/data_internal.h"

#define MEL_PAD (-10.0f)

static int decode_image(const struct data_media_config *c, const char *path, uint8_t *out,
                        struct media_errors *errs) {
    struct media_image img = {0}, rs = {0};
    int rc = media_image_load(path, &img, errs);
    if (!rc) rc = media_image_resize(&img, c->image_h, c->image_w, c->filter, &rs);
    if (!rc && (rs.h != c->image_h || rs.w != c->image_w || rs.c != 3))
        rc = sushi_error(SUSHI_EFORMAT, "%s: resized to %dx%dx%d, expected %dx%dx3", path, rs.h,
                         rs.w, rs.c, c->image_h, c->image_w);
    if (!rc) {
        size_t hw = (size_t)rs.h * (size_t)rs.w;
        for (size_t i = 0; i < hw; i++)
            for (int ch = 0; ch < 3; ch++) out[(size_t)ch * hw + i] = rs.data[i * 3 + (size_t)ch];
    }
    media_image_free(&rs);
    media_image_free(&img);
    return rc;
}

static int decode_audio(const struct data_media_config *c, const char *path, uint16_t *out,
                        struct media_errors *errs) {
    struct media_audio a = {0};
    struct media_mel mel = {0};
    struct media_mel_opts o;
    media_mel_defaults(&o);
    o.rate = c->audio_rate;
    o.n_fft = c->mel_window;
    o.hop = c->mel_hop;
    o.n_mels = c->mel_bins;
    int rc = media_audio_load(path, c->audio_rate, &a, errs);
    if (!rc) rc = media_mel_compute(&a, &o, &mel);
    if (!rc && mel.n_mels != c->mel_bins)
        rc = sushi_error(SUSHI_EFORMAT, "%s: %d mel bins, expected %d", path, mel.n_mels, c->mel_bins);
    if (!rc) {
        int F = c->audio_frames, M = c->mel_bins;
        uint16_t pad = f32_to_f16(MEL_PAD);
        for (int f = 0; f < F; f++)
            for (int m = 0; m < M; m++)
                out[(size_t)f * (size_t)M + (size_t)m] =
                    f < mel.n_frames ? f32_to_f16(mel.data[(size_t)m * (size_t)mel.n_frames + (size_t)f]) : pad;
    }
    media_mel_free(&mel);
    media_audio_free(&a);
    return rc;
}

static int decode_video(const struct data_media_config *c, const char *path, uint8_t *out,
                        struct media_errors *errs) {
    struct media_video_opts o;
    struct media_video v = {0};
    media_video_defaults(&o);
    o.frames = c->video_frames;
    o.h = c->video_h;
    o.w = c->video_w;
    o.filter = c->filter;
    int rc = media_video_load(path, &o, &v, errs);
    if (!rc && (v.n != c->video_frames || v.c != 3 || v.h != c->video_h || v.w != c->video_w))
        rc = sushi_error(SUSHI_EFORMAT, "%s: %d frames of %dx%dx%d, expected %d of 3x%dx%d", path, v.n,
                         v.c, v.h, v.w, c->video_frames, c->video_h, c->video_w);
    if (!rc) memcpy(out, v.data, (size_t)v.n * 3 * (size_t)v.h * (size_t)v.w);
    media_video_free(&v);
    return rc;
}

static int decode_mesh(const struct data_media_config *c, const char *path, float *out,
                       struct media_errors *errs) {
    struct media_mesh_opts o;
    struct media_points pts = {0};
    media_mesh_defaults(&o);
    o.points = c->mesh_points;
    o.seed = c->mesh_seed;
    int rc = media_mesh_load(path, &o, &pts, errs);
    if (!rc && pts.n != c->mesh_points)
        rc = sushi_error(SUSHI_EFORMAT, "%s: %d points, expected %d", path, pts.n, c->mesh_points);
    if (!rc) memcpy(out, pts.data, (size_t)pts.n * 6 * sizeof *out);
    media_points_free(&pts);
    return rc;
}

static int decode(const struct data_media_config *c, enum media_kind kind, const char *path,
                  void *out, struct media_errors *errs) {
    if (!c || !path || !out) return sushi_error(SUSHI_EINVAL, "data: media decode: NULL argument");
    switch (kind) {
    case MEDIA_IMAGE: return decode_image(c, path, out, errs);
    case MEDIA_AUDIO: return decode_audio(c, path, out, errs);
    case MEDIA_VIDEO: return decode_video(c, path, out, errs);
    case MEDIA_MESH: return decode_mesh(c, path, out, errs);
    default: return sushi_error(SUSHI_EINVAL, "data: %s: unknown media kind %d", path, (int)kind);
    }
}

const struct data_media_ops *data_media_decoders(void) {
    static const struct data_media_ops ops = {
        .manifest_read = media_manifest_read,
        .manifest_free = media_manifest_free,
        .decode = decode,
    };
    return &ops;
}
