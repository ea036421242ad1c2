/* Video: libavformat demuxing and libavcodec decoding of the best video stream, N
 * frames sampled uniformly by timestamp. Target i is t_i = (i + 0.5) * D / N seconds
 * after the stream start (D: the stream's duration, else the container's); it takes
 * the last frame whose timestamp is <= t_i, or the first frame when none is. Frames
 * are decoded in order (one reference to the previous frame kept; long gaps skipped by
 * seeking to a keyframe), converted to RGB
 * as PyAV's frame.to_ndarray(format="rgb24") does (swscale, SWS_BILINEAR, default
 * colour space and range), then resized as images are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

void media_video_defaults(struct media_video_opts *o)
{
    *o = (struct media_video_opts){.frames = 8, .h = 0, .w = 0, .filter = MEDIA_BILINEAR, .seek_s = 2.0};
}

void media_video_free(struct media_video *v)
{
    if (!v) return;
    free(v->data);
    free(v->t);
    memset(v, 0, sizeof *v);
}

struct vdec {
    const char *path;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    struct SwsContext *sws;
    uint8_t *rgb;          /* [fh, fw, 3] one converted frame */
    int rgb_cap;
    struct media_video *out;
    enum media_filter filter;
};

static int av_fail(const char *path, const char *what, int err)
{
    char msg[128];
    int code = err == AVERROR(ENOENT) ? SUSHI_ENOTFOUND
             : err == AVERROR(ENOMEM) ? SUSHI_ENOMEM
             : err == AVERROR_DECODER_NOT_FOUND || err == AVERROR_DEMUXER_NOT_FOUND ||
                       err == AVERROR_PATCHWELCOME ? SUSHI_EUNSUPPORTED
             : err == AVERROR(EIO) ? SUSHI_EIO : SUSHI_EFORMAT;
    return sushi_error(code, "%s: %s: %s", path, what, media_av_err(err, msg, sizeof msg));
}

/* frame -> RGB at its size -> out->data[i] as [3, h, w] */
static int vdec_store(struct vdec *v, const AVFrame *f, int i, double t)
{
    struct media_video *out = v->out;
    if (f->width <= 0 || f->height <= 0 || (int64_t)f->width * f->height > MEDIA_MAX_PIXELS)
        return sushi_error(SUSHI_EFORMAT, "%s: frame of bad size %dx%d", v->path, f->width, f->height);
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_RGB24,
                                  SWS_BILINEAR, NULL, NULL, NULL);
    if (!v->sws)
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: cannot convert pixel format %s to RGB", v->path,
                           av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    int stride = (f->width * 3 + 63) & ~63;
    int need = stride * f->height + 64;
    if (need > v->rgb_cap) {
        free(v->rgb);
        v->rgb = malloc((size_t)need);
        v->rgb_cap = v->rgb ? need : 0;
        if (!v->rgb) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", v->path);
    }
    uint8_t *dst[4] = {v->rgb};
    int dst_stride[4] = {stride};
    if (sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride) != f->height)
        return sushi_error(SUSHI_EBACKEND, "%s: swscale failed converting a frame to RGB", v->path);
    int h = out->h, w = out->w;
    uint8_t *hwc = media_scratch_get(MEDIA_SCRATCH_FRAME, (size_t)h * w * 3);
    if (!hwc) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", v->path);
    int rc = media_resize_rgb(v->rgb, f->height, f->width, stride, hwc, h, w, v->filter);
    if (!rc) {
        uint8_t *o = out->data + (size_t)i * 3 * h * w;
        for (int c = 0; c < 3; c++)
            for (size_t p = 0; p < (size_t)h * w; p++) o[(size_t)c * h * w + p] = hwc[p * 3 + c];
        out->t[i] = t;
    }
    media_scratch_put(MEDIA_SCRATCH_FRAME, hwc);
    return rc;
}

static int vdec_open(struct vdec *v, const char *path)
{
    int e = avformat_open_input(&v->fmt, path, NULL, NULL);
    if (e < 0) return av_fail(path, "cannot open", e);
    if ((e = avformat_find_stream_info(v->fmt, NULL)) < 0) return av_fail(path, "cannot read stream info", e);
    const AVCodec *codec = NULL;
    int idx = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (idx == AVERROR_STREAM_NOT_FOUND) return sushi_error(SUSHI_EUNSUPPORTED, "%s: no video stream", path);
    if (idx < 0 || !codec) return av_fail(path, "no decoder for the video stream", idx < 0 ? idx : AVERROR_DECODER_NOT_FOUND);
    v->st = v->fmt->streams[idx];
    v->dec = avcodec_alloc_context3(codec);
    if (!v->dec) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    if ((e = avcodec_parameters_to_context(v->dec, v->st->codecpar)) < 0) return av_fail(path, "bad codec parameters", e);
    v->dec->thread_count = 1;   /* the loader runs one decoder per worker thread */
    if ((e = avcodec_open2(v->dec, codec, NULL)) < 0) return av_fail(path, "cannot open the decoder", e);
    return 0;
}

static void vdec_close(struct vdec *v)
{
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    sws_freeContext(v->sws);
    free(v->rgb);
}

/* Seeks to the last keyframe at or before t seconds after the stream start and drops
 * the decoder's state; a failure (an unseekable input) is not an error. */
static int vdec_seek(struct vdec *v, double t, int64_t start)
{
    int64_t ts = start + (int64_t)floor(t / av_q2d(v->st->time_base));
    if (av_seek_frame(v->fmt, v->st->index, ts, AVSEEK_FLAG_BACKWARD) < 0) return -1;
    avcodec_flush_buffers(v->dec);
    return 0;
}

/* The sampling loop: frames arrive in presentation order; `prev` holds the latest one
 * at or before the pending target. When the next target lies more than seek_s ahead
 * of the last frame, the demuxer seeks to the keyframe before it instead of decoding
 * the gap; should that keyframe come after the target (an inexact index), it seeks
 * further back (1, 2, 4 ... s, then the start), so the frame chosen is always the one
 * an exhaustive decode would choose. */
static int vdec_sample(struct vdec *v, const double *target, int n, double seek_s)
{
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc(), *prev = av_frame_alloc();
    int rc = 0, next = 0, have_prev = 0, eof = 0, bad = 0, e, check_seek = 0, seeked_for = -1;
    double prev_t = 0, tb = av_q2d(v->st->time_base), seek_at = 0, back = 0;
    int64_t start = v->st->start_time != AV_NOPTS_VALUE ? v->st->start_time : 0;
    if (!pkt || !fr || !prev) rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", v->path);
    while (!rc && next < n) {
        e = avcodec_receive_frame(v->dec, fr);
        if (e == AVERROR(EAGAIN)) {
            if (eof) break;
            e = av_read_frame(v->fmt, pkt);
            if (e == AVERROR_EOF) {
                eof = 1;
                avcodec_send_packet(v->dec, NULL);
                continue;
            }
            if (e < 0) {
                rc = av_fail(v->path, "read error", e);
                break;
            }
            if (pkt->stream_index == v->st->index && avcodec_send_packet(v->dec, pkt) < 0) bad++;
            av_packet_unref(pkt);
            continue;
        }
        if (e == AVERROR_EOF) break;
        if (e < 0) {
            bad++;
            if (bad > 1000) rc = av_fail(v->path, "decoding failed", e);
            continue;
        }
        int64_t ts = fr->pts != AV_NOPTS_VALUE ? fr->pts : fr->best_effort_timestamp;
        double t = ts != AV_NOPTS_VALUE ? (ts - start) * tb : (have_prev ? prev_t : 0);
        if (check_seek) {   /* the first frame after a seek must not be past the target */
            check_seek = 0;
            if (t > target[next] && seek_at > 0) {
                back = back > 0 ? back * 2 : 1.0;
                seek_at = target[next] - back > 0 ? target[next] - back : 0;
                if (vdec_seek(v, seek_at, start) == 0) check_seek = 1;
                else seek_s = 0;   /* cannot seek back: decode on */
                av_frame_unref(fr);
                continue;
            }
        }
        /* targets before this frame take the previous frame (this one if it is the first) */
        while (!rc && next < n && t > target[next]) {
            rc = have_prev ? vdec_store(v, prev, next, prev_t) : vdec_store(v, fr, next, t);
            next++;
        }
        av_frame_unref(prev);
        av_frame_move_ref(prev, fr);
        prev_t = t;
        have_prev = 1;
        if (!rc && seek_s > 0 && next < n && next != seeked_for && target[next] - t > seek_s) {
            seek_at = target[next];
            seeked_for = next;   /* once per target: the keyframe may be this far back */
            back = 0;
            if (vdec_seek(v, seek_at, start) == 0) {
                check_seek = 1;
                have_prev = 0;   /* frames between it and the keyframe were skipped */
            } else {
                seek_s = 0;
            }
        }
    }
    while (!rc && next < n && have_prev) {   /* targets after the last frame */
        rc = vdec_store(v, prev, next, prev_t);
        next++;
    }
    if (!rc && !have_prev)
        rc = sushi_error(SUSHI_EFORMAT, "%s: no decodable video frame (%d packets refused)", v->path, bad);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    av_frame_free(&prev);
    return rc;
}

int media_video_load(const char *path, const struct media_video_opts *opts, struct media_video *out,
                     struct media_errors *errs)
{
    if (!path || !out) return sushi_error(SUSHI_EINVAL, "media_video_load: null argument");
    memset(out, 0, sizeof *out);
    struct media_video_opts o;
    if (opts) o = *opts;
    else media_video_defaults(&o);
    if (o.frames < 1 || o.frames > 4096 || o.h < 0 || o.w < 0 || (!o.h != !o.w) ||
        (int64_t)o.h * o.w > MEDIA_MAX_PIXELS)
        return sushi_error(SUSHI_EINVAL, "%s: bad video options (frames %d, size %dx%d)", path, o.frames, o.w, o.h);
    struct vdec v = {.path = path, .out = out, .filter = o.filter};
    int rc = vdec_open(&v, path);
    double dur = 0;
    if (!rc) {
        if (v.st->duration != AV_NOPTS_VALUE && v.st->duration > 0) dur = v.st->duration * av_q2d(v.st->time_base);
        else if (v.fmt->duration != AV_NOPTS_VALUE && v.fmt->duration > 0) dur = v.fmt->duration / (double)AV_TIME_BASE;
        else rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: the video's duration is unknown", path);
    }
    if (!rc && (!isfinite(dur) || v.dec->width <= 0 || v.dec->height <= 0))
        rc = sushi_error(SUSHI_EFORMAT, "%s: bad video stream (%dx%d, %g s)", path, v.dec->width, v.dec->height, dur);
    if (!rc) {
        out->n = o.frames;
        out->c = 3;
        out->h = o.h ? o.h : v.dec->height;
        out->w = o.w ? o.w : v.dec->width;
        if ((int64_t)out->h * out->w > MEDIA_MAX_PIXELS ||
            (int64_t)out->n * 3 * out->h * out->w > MEDIA_MAX_VIDEO_BYTES)
            rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: %d frames of %dx%d are too large", path, out->n, out->w,
                             out->h);
    }
    double *target = NULL;
    if (!rc) {
        out->data = malloc((size_t)out->n * 3 * out->h * out->w);
        out->t = calloc((size_t)out->n, sizeof(double));
        target = malloc(sizeof(double) * out->n);
        if (!out->data || !out->t || !target) rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    }
    if (!rc) {
        for (int i = 0; i < o.frames; i++) target[i] = (i + 0.5) * dur / o.frames;
        rc = vdec_sample(&v, target, o.frames, o.seek_s);
    }
    free(target);
    vdec_close(&v);
    if (rc) media_video_free(out);
    return media_errors_add(errs, MEDIA_VIDEO, rc);
}
