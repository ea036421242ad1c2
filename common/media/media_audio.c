/* Audio: WAV/FLAC/OGG decoding with libsndfile into mono f32 (channels averaged) and
 * resampling with libswresample. libsndfile records open failures in a process-wide
 * variable, so sf_open is serialised; reading runs unlocked. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <sndfile.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

#define AUDIO_MAX_SAMPLES (1LL << 28)   /* ~4.6 h at 16 kHz, 1 GiB of f32 */
#define AUDIO_MIN_RATE 1000
#define AUDIO_MAX_RATE 768000

static pthread_mutex_t g_sf_lock = PTHREAD_MUTEX_INITIALIZER;

void media_audio_free(struct media_audio *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* decodes the whole file, channels averaged; *rate gets the file's rate */
static int audio_decode(const char *path, float **out, int64_t *n, int *rate)
{
    SF_INFO info = {0};
    pthread_mutex_lock(&g_sf_lock);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    int rc = 0;
    if (!sf) {
        int e = sf_error(NULL);
        rc = sushi_error(e == SF_ERR_UNRECOGNISED_FORMAT ? SUSHI_EUNSUPPORTED
                         : access(path, R_OK) != 0   ? SUSHI_ENOTFOUND
                                                     : SUSHI_EFORMAT,
                         "%s: cannot decode audio: %s", path, sf_error_number(e));
    }
    pthread_mutex_unlock(&g_sf_lock);
    if (rc) return rc;
    if (info.channels <= 0 || info.channels > 256 || info.samplerate < AUDIO_MIN_RATE ||
        info.samplerate > AUDIO_MAX_RATE) {
        sf_close(sf);
        return sushi_error(SUSHI_EFORMAT, "%s: bad audio header (%d channels, %d Hz)", path, info.channels,
                           info.samplerate);
    }
    int ch = info.channels;
    enum { CHUNK = 4096 };
    float *buf = ch > 1 ? malloc(sizeof(float) * CHUNK * (size_t)ch) : NULL;   /* mono reads in place */
    /* the header's frame count is a hint only (it may lie): start at most at 1 M samples */
    int64_t cap = (info.frames > 0 && info.frames < (1 << 20) ? info.frames : 1 << 20) + CHUNK, len = 0;
    float *mono = malloc(sizeof(float) * (size_t)cap);
    while ((buf || ch == 1) && mono) {
        if (len + CHUNK > cap) {
            while (len + CHUNK > cap) cap *= 2;
            float *m = realloc(mono, sizeof(float) * (size_t)cap);
            if (!m) {
                free(mono);
                mono = NULL;
                break;
            }
            mono = m;
        }
        sf_count_t got = sf_readf_float(sf, ch == 1 ? mono + len : buf, CHUNK);
        if (got <= 0) break;
        if (len + got > AUDIO_MAX_SAMPLES) {
            rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: audio longer than %lld samples", path, AUDIO_MAX_SAMPLES);
            break;
        }
        for (sf_count_t i = 0; ch > 1 && i < got; i++) {
            float s = buf[i * ch];
            for (int c = 1; c < ch; c++) s += buf[i * ch + c];
            mono[len + i] = s / (float)ch;
        }
        len += got;
    }
    if (!rc && ((ch > 1 && !buf) || !mono)) rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory decoding audio", path);
    if (!rc && sf_error(sf) != SF_ERR_NO_ERROR)
        rc = sushi_error(SUSHI_EFORMAT, "%s: corrupt audio: %s", path, sf_strerror(sf));
    if (!rc && len == 0) rc = sushi_error(SUSHI_EFORMAT, "%s: no audio samples", path);
    sf_close(sf);
    free(buf);
    if (rc) {
        free(mono);
        return rc;
    }
    *out = mono;
    *n = len;
    *rate = info.samplerate;
    return 0;
}

int media_audio_resample(const float *in, int64_t n, int from, int to, struct media_audio *out)
{
    if (!out) return sushi_error(SUSHI_EINVAL, "media_audio_resample: null output");
    memset(out, 0, sizeof *out);
    if (!in || n <= 0 || from < AUDIO_MIN_RATE || to < AUDIO_MIN_RATE || from > AUDIO_MAX_RATE ||
        to > AUDIO_MAX_RATE || n > AUDIO_MAX_SAMPLES || n * (int64_t)to / from > AUDIO_MAX_SAMPLES)
        return sushi_error(SUSHI_EINVAL, "media_audio_resample: bad arguments (%lld samples, %d -> %d Hz; rates %d..%d)",
                           (long long)n, from, to, AUDIO_MIN_RATE, AUDIO_MAX_RATE);
    int64_t want = (int64_t)((n * (int64_t)to + from - 1) / from);   /* ceil(n * to / from) */
    float *dst = calloc((size_t)want + 1, sizeof(float));
    if (!dst) return sushi_error(SUSHI_ENOMEM, "media_audio_resample: out of memory");
    if (from == to) {
        memcpy(dst, in, sizeof(float) * (size_t)n);
        *out = (struct media_audio){.rate = to, .n = n, .data = dst};
        return 0;
    }
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    SwrContext *swr = NULL;
    int e = swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_FLT, to, &mono, AV_SAMPLE_FMT_FLT, from, 0, NULL);
    if (e >= 0) e = swr_init(swr);
    /* in pieces (swr counts in int), output grown to swr's bound before each call;
     * a last call with no input flushes the filter's tail */
    int64_t got = 0, cap = want + 1;
    const int64_t piece = 1 << 20;
    for (int64_t pos = 0; e >= 0; pos += piece) {
        int len = pos < n ? (int)(n - pos < piece ? n - pos : piece) : 0;
        int need = swr_get_out_samples(swr, len);
        if (need < 0) {
            e = need;
            break;
        }
        if (got + need > cap) {
            float *d = realloc(dst, sizeof(float) * (size_t)(got + need + 1));
            if (!d) {
                e = AVERROR(ENOMEM);
                break;
            }
            dst = d;
            cap = got + need + 1;
        }
        const uint8_t *src = (const uint8_t *)(in + (pos < n ? pos : 0));
        uint8_t *o = (uint8_t *)(dst + got);
        e = swr_convert(swr, &o, (int)(cap - got), len ? &src : NULL, len);
        if (e > 0) got += e;
        if (!len) break;
    }
    swr_free(&swr);
    if (e < 0) {
        char msg[128];
        free(dst);
        return sushi_error(SUSHI_EBACKEND, "media_audio_resample: %d -> %d Hz: %s", from, to,
                           media_av_err(e, msg, sizeof msg));
    }
    if (got < want) memset(dst + got, 0, sizeof(float) * (size_t)(want - got));
    *out = (struct media_audio){.rate = to, .n = want, .data = dst};
    return 0;
}

int media_audio_load(const char *path, int rate, struct media_audio *out, struct media_errors *errs)
{
    if (!path || !out || rate < 0) return sushi_error(SUSHI_EINVAL, "media_audio_load: bad arguments");
    memset(out, 0, sizeof *out);
    float *x = NULL;
    int64_t n = 0;
    int file_rate = 0;
    int rc = audio_decode(path, &x, &n, &file_rate);
    if (rc) return media_errors_add(errs, MEDIA_AUDIO, rc);
    if (!rate || rate == file_rate) {
        *out = (struct media_audio){.rate = file_rate, .n = n, .data = x};
        return 0;
    }
    rc = media_audio_resample(x, n, file_rate, rate, out);
    free(x);
    if (rc) rc = sushi_error(rc, "%s: %s", path, sushi_last_error());
    return media_errors_add(errs, MEDIA_AUDIO, rc);
}
